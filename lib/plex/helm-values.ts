/**
 * Values for the plex-media-server chart (1.5.0). Every key used here exists in the chart's
 * values.yaml (checked by test/unit/plex-chart-values.test.ts against reference/pms-chart/).
 * No secret goes into the values: the migration key and the claim token are Secrets the pod reads.
 */
import { isAtOrUnder } from "../checks";
import type { MediaVolume } from "./media-volumes";
import { CHART_MOUNT_PATHS, PMS_PORT, chartResourceNames } from "./chart";
import type { plexSyncValues } from "./init-script";
import {
  DEV_DRI,
  DEV_DRI_VOLUME,
  INTEL_GPU_RESOURCE,
  type GpuMode,
  type HostUse,
} from "./placement";
import { advertisedUrls, modeUrl, networkingChartValues, type PlexNetworking } from "./networking";
import {
  PMS_SETUP_MOUNT_PATH,
  pmsSetupEnv,
  pmsSetupVolume,
  type PmsSetupSettings,
} from "./pms-setup";

/** Key of the claim token in its Secret. */
export const CLAIM_TOKEN_KEY = "token";

/** The chart's image fields for one image reference. */
export interface ChartImage {
  registry: string;
  repository: string;
  tag: string;
  sha: string;
}

/**
 * Splits "alpine:3.22", "ghcr.io/org/img:1.0" or "img@sha256:…" into the chart's
 * registry/repository/tag/sha fields (the chart renders `<registry>/<repository>:<tag>[@<sha>]`).
 */
export function parseImageRef(ref: string): ChartImage {
  let rest = ref.trim();
  let sha = "";
  const at = rest.indexOf("@");
  if (at >= 0) {
    sha = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag = "";
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  let registry = "index.docker.io";
  const firstSlash = rest.indexOf("/");
  if (firstSlash > 0) {
    const first = rest.slice(0, firstSlash);
    if (first.includes(".") || first.includes(":") || first === "localhost") {
      registry = first;
      rest = rest.slice(firstSlash + 1);
    }
  }
  if (!rest || (sha && !/^sha256:[0-9a-f]{64}$/.test(sha))) {
    throw new Error(`"${ref}" is not an image reference such as "alpine:3.22"`);
  }
  // An empty tag would make the chart pull :latest; with a digest the digest decides anyway.
  return { registry, repository: rest, tag: tag || "latest", sha };
}

/** One media root as the pod volume the chart appends (`extraVolumes`). */
export function mediaPodVolume(volume: MediaVolume): Record<string, unknown> {
  switch (volume.source.kind) {
    case "nfs":
      return {
        name: volume.name,
        nfs: { server: volume.source.server, path: volume.source.path, readOnly: volume.readOnly },
      };
    case "hostPath":
      return { name: volume.name, hostPath: { path: volume.source.path, type: "Directory" } };
    case "pvc":
      return {
        name: volume.name,
        persistentVolumeClaim: { claimName: volume.source.claimName, readOnly: volume.readOnly },
      };
  }
}

export interface PlexValuesInput {
  releaseName: string;
  /** pms-docker tag (the VM's Plex version unless overridden). */
  imageTag: string;
  /** The final-sync init container and its pod volumes (lib/plex/init-script.ts). */
  sync: ReturnType<typeof plexSyncValues>;
  /** Our PersistentVolumeClaim for /config. */
  configClaimName: string;
  /** Secret holding the claim token under {@link CLAIM_TOKEN_KEY}, if a token is given. */
  claimSecretName?: string;
  mediaVolumes: MediaVolume[];
  uid: number;
  gid: number;
  /** TZ of the Plex container (the VM's zone), or undefined for the image's UTC. */
  timezone?: string;
  networking: PlexNetworking;
  /** URLs Plex advertises besides the mode's own (e.g. a public name the router forwards). */
  advertiseUrls: string[];
  /** Node selection and the GPU for hardware transcoding. */
  placement: { nodeSelector: Record<string, string>; gpu: GpuMode };
  /** The ConfigMap with plex-pms-setup.sh, and what it applies. */
  pmsSetup: PmsSetupSettings & { configMapName: string };
  resources: { cpuRequest?: string; memoryRequest?: string; memoryLimit?: string };
}

/**
 * Paths the Plex pod itself mounts, so no media root may be mounted at or under them. `/data` is
 * not among them: the chart mounts under it only for its rclone sidecars, which plex-migrate never
 * enables, and the image merely creates it empty (pms-docker Dockerfile: `mkdir -p /config
 * /transcode /data`), so media keeps a VM path under /data.
 */
export const RESERVED_MOUNT_PATHS: readonly string[] = [
  ...CHART_MOUNT_PATHS,
  PMS_SETUP_MOUNT_PATH,
  DEV_DRI,
];

/** The reserved path `mountPath` is at or under, or undefined: the one rule config and values use. */
export function reservedMountPathClash(mountPath: string): string | undefined {
  return RESERVED_MOUNT_PATHS.find((p) => isAtOrUnder(mountPath, p));
}

/** Problems with media roots that cannot be mounted in the Plex pod, one line each. */
export function mediaVolumeProblems(volumes: MediaVolume[]): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  for (const volume of volumes) {
    const clash = reservedMountPathClash(volume.mountPath);
    if (clash) {
      problems.push(
        `media mount path ${volume.mountPath} is used by the Plex pod itself (${clash})`,
      );
    }
    if (names.has(volume.name)) problems.push(`two media roots use the volume name ${volume.name}`);
    names.add(volume.name);
  }
  return problems;
}

/** The chart values plex-migrate sets (everything else keeps the chart's default). */
export function buildPlexValues(input: PlexValuesInput): Record<string, unknown> {
  const problems = mediaVolumeProblems(input.mediaVolumes);
  if (problems.length > 0) throw new Error(problems.join("; "));
  const extraVolumes: Record<string, unknown>[] = input.mediaVolumes.map(mediaPodVolume);
  const extraVolumeMounts: Record<string, unknown>[] = input.mediaVolumes.map((v) => ({
    name: v.name,
    mountPath: v.mountPath,
    readOnly: v.readOnly,
  }));
  // The sync Secret and script are pod volumes mounted only by the sync init container (its own
  // volumeMounts): extraVolumeMounts would mount them in the PMS container too.
  extraVolumes.push(...input.sync.extraVolumes);
  const setup = pmsSetupVolume(input.pmsSetup.configMapName);
  extraVolumes.push(setup.volume);
  extraVolumeMounts.push(setup.mount);

  const pms: Record<string, unknown> = {
    configExistingClaim: input.configClaimName,
    // Ready only once Plex answers, so the release waits for the final sync and Plex's start.
    readinessProbe: {
      httpGet: { path: "/identity", port: PMS_PORT },
      initialDelaySeconds: 10,
      periodSeconds: 10,
      timeoutSeconds: 5,
      failureThreshold: 6,
    },
  };
  if (input.claimSecretName) {
    pms.claimSecret = { name: input.claimSecretName, key: CLAIM_TOKEN_KEY };
  }
  const { cpuRequest, memoryRequest, memoryLimit } = input.resources;
  const gpu = input.placement.gpu;
  if (cpuRequest || memoryRequest || memoryLimit || gpu === "intel") {
    const resources: Record<string, Record<string, string>> = {};
    if (cpuRequest || memoryRequest) {
      resources.requests = {
        ...(cpuRequest ? { cpu: cpuRequest } : {}),
        ...(memoryRequest ? { memory: memoryRequest } : {}),
      };
    }
    if (memoryLimit || gpu === "intel") {
      resources.limits = {
        ...(memoryLimit ? { memory: memoryLimit } : {}),
        ...(gpu === "intel" ? { [INTEL_GPU_RESOURCE]: "1" } : {}),
      };
    }
    pms.resources = resources;
  }
  if (gpu === "dev-dri") {
    extraVolumes.push({ name: DEV_DRI_VOLUME, hostPath: { path: DEV_DRI, type: "Directory" } });
    extraVolumeMounts.push({ name: DEV_DRI_VOLUME, mountPath: DEV_DRI });
    pms.securityContext = { privileged: true };
  }

  // The image chowns to plex only when Preferences.xml is not plex's; pinning the ids makes the
  // owner plex-init.sh sets the owner Plex runs as, whatever uid the image was built with.
  const extraEnv: Record<string, string> = {
    PLEX_UID: String(input.uid),
    PLEX_GID: String(input.gid),
    ...pmsSetupEnv(input.pmsSetup),
  };
  // pms-docker ships tzdata, so TZ sets the zone Plex's scheduled tasks run in.
  if (input.timezone) extraEnv.TZ = input.timezone;
  const advertised = advertisedUrls(input.networking, input.advertiseUrls);
  // The chart sets ADVERTISE_IP from this key before falling back to "<ingress.url>:443", and the
  // image writes it into Preferences.xml as customConnections at every start.
  if (advertised.length > 0) extraEnv.ADVERTISE_IP = advertised.join(",");

  return {
    image: { tag: input.imageTag },
    extraInitContainers: input.sync.extraInitContainers,
    pms,
    ...networkingChartValues(input.networking),
    ...(Object.keys(input.placement.nodeSelector).length > 0
      ? { nodeSelector: input.placement.nodeSelector }
      : {}),
    extraEnv,
    extraVolumes,
    extraVolumeMounts,
  };
}

/** The in-cluster address of the Plex Service (what the cluster's own clients use). */
export function clusterUrl(releaseName: string, namespace: string): string {
  return `http://${chartResourceNames(releaseName).service}.${namespace}.svc.cluster.local:${PMS_PORT}`;
}

/** Where Plex is reached: the URL the networking mode gives clients, else the in-cluster one. */
export function plexUrl(
  releaseName: string,
  namespace: string,
  networking: PlexNetworking,
): string {
  return modeUrl(networking) ?? clusterUrl(releaseName, namespace);
}

/**
 * Seconds the Helm release waits for the pod to become ready: the init container's final sync
 * walks the whole library twice and transfers what changed since the warm copy (everything, if
 * there was none), so allow 10 minutes plus one second per 10 MiB of the library.
 */
export function releaseTimeoutSeconds(libraryBytes: number): number {
  return 600 + Math.ceil(libraryBytes / (10 * 1024 * 1024));
}

/** What of the host the Plex pod uses with these values' inputs (for its Pod Security level). */
export function plexHostUse(
  networking: PlexNetworking,
  mediaVolumes: MediaVolume[],
  gpu: GpuMode,
): HostUse {
  return {
    hostNetwork: networking.mode === "host",
    hostPathVolumes: gpu === "dev-dri" || mediaVolumes.some((v) => v.source.kind === "hostPath"),
    privileged: gpu === "dev-dri",
  };
}
