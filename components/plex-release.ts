/**
 * PlexRelease: Plex Media Server in Kubernetes, filled with the VM's library.
 *
 * Creates the namespace (unless it exists), the config volume claim (sized from the library the
 * preflight measured, never deleted by Pulumi), a Secret holding the archive URL, and a Helm
 * release of Plex's plex-media-server chart that runs the VM's exact Plex version on that claim.
 * The chart's init container runs scripts/plex-init.sh, which streams the archive served by the VM
 * into /config (verified, staged, renamed into place) before Plex starts.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { MediaVolume } from "../lib/config";
import {
  CHART_NAME,
  chartResourceNames,
  plexMigrateObjectNames,
  type ChartResourceNames,
} from "../lib/plex/chart";
import {
  CLAIM_TOKEN_KEY,
  buildPlexValues,
  mediaVolumeProblems,
  parseImageRef,
  plexHostUse,
  plexUrl,
  releaseTimeoutSeconds,
} from "../lib/plex/helm-values";
import { ARCHIVE_URL_KEY, renderInitScript } from "../lib/plex/init-script";
import {
  isId,
  isTimezoneName,
  resolvePlexIds,
  resolveSupplementalGroups,
  resolveTimezone,
  type GroupsSetting,
  type IdSetting,
  type PlexIds,
  type TimezoneSetting,
  type VmDataOwner,
} from "../lib/plex/vm-identity";
import {
  advertiseUrlProblem,
  advertisedUrls,
  noDirectPathWarning,
  podLanNetworks,
  staleAddressWarning,
  type PlexNetworking,
} from "../lib/plex/networking";
import { PMS_SETUP_KEY, pmsSetupScript } from "../lib/plex/pms-setup";
import {
  GPU_MODES,
  parseNodeSelectorEntry,
  podSecurityLabels,
  podSecurityProblem,
  type GpuMode,
  type PodSecuritySetting,
} from "../lib/plex/placement";
import { isCidr } from "../lib/net";
import { parseQuantity, resolveConfigSize } from "../lib/plex/sizing";

export interface PlexReleaseArgs {
  /** Namespace for Plex (and the other workloads). @default plex */
  namespace: string;
  /** Create the namespace (false: it exists already). @default true */
  createNamespace: boolean;
  /**
   * Helm release name. Every name the chart creates derives from it, so it is fixed, never
   * auto-named. @default plex
   */
  releaseName: string;
  /** plex-media-server chart version, pinned. @default 1.5.0 */
  chartVersion: string;
  /**
   * Helm repository of the chart (https://…), or an OCI registry path (oci://…) holding it.
   * @default https://raw.githubusercontent.com/plexinc/pms-docker/gh-pages
   */
  chartRepo: string;
  /** pms-docker tag to run instead of the VM's version (warned about). @default the VM's version */
  imageTagOverride?: string;
  /** Plex version the VM runs (its dpkg version, which is the pms-docker tag). */
  plexVersion: pulumi.Input<string>;
  /** Init container image; needs sh, curl, GNU tar and zstd, or apk to add them. @default alpine:3.22 */
  initImage: string;
  /** StorageClass of the config volume (must support file locking). @default the cluster default */
  storageClass?: string;
  /** Size of the config volume: "auto" or a Kubernetes quantity such as "200Gi". @default auto */
  configSize: string;
  /** Growth room (percent of the library) added when configSize is "auto". @default 50 */
  configHeadroomPercent: number;
  /** Bytes of the Plex data directory, measured on the VM by the preflight. */
  libraryBytes: pulumi.Input<number>;
  /**
   * Files, directories and links in the data directory (the preflight's fileCount): the inodes
   * the volume must have. @default 0 (inodes not considered)
   */
  fileCount?: pulumi.Input<number>;
  /** Media roots, mounted in the pod at the paths the VM used. @default [] */
  mediaVolumes: MediaVolume[];
  /**
   * Media paths Plex's library refers to on the VM (the preflight's mediaRoots); each one not
   * under a mediaVolumes mount is warned about, since Plex would show its items as unavailable.
   * @default not checked
   */
  vmMediaRoots?: pulumi.Input<string[]>;
  /** uid Plex runs as and the copied files belong to; "auto": the VM data directory's owner. */
  uid: IdSetting;
  /** gid of the same; "auto": the VM data directory's group. */
  gid: IdSetting;
  /** TZ of Plex: "auto" (the VM's), "" (none: UTC) or an IANA zone name. */
  timezone: TimezoneSetting;
  /** The VM data directory's owner, measured by the preflight (needed for "auto" ids). */
  vmDataOwner?: pulumi.Input<VmDataOwner>;
  /** The VM's time zone, measured by the preflight ("" when unknown). */
  vmTimezone?: pulumi.Input<string>;
  /** Groups Plex gets besides its own: "auto" (the VM user's other groups) or these gids. */
  supplementalGroups: GroupsSetting;
  /** Labels the Plex pod must run on (node label key -> value). */
  nodeSelector: Record<string, string>;
  /** Hardware transcoding: none, Intel's GPU device plugin, or the node's /dev/dri (privileged). */
  gpu: GpuMode;
  /**
   * Pod Security labels on the namespace when it is created: "" none, "auto" the least level the
   * Plex pod passes, or a level.
   */
  podSecurity: PodSecuritySetting;
  /** The cluster's pod and node ranges (CIDRs), added to Plex's LAN networks. @default [] */
  clusterNetworks: string[];
  /** Preferences.xml's LAN settings on the VM, read by the preflight. */
  vmPreferences?: pulumi.Input<{ lanNetworks: string; customConnections: string }>;
  /** plex.tv claim token (secret); not needed when Preferences.xml is moved. @default none */
  claimToken?: pulumi.Input<string>;
  /** How clients reach Plex; decides the pod network, Service, Ingress and advertised URL. */
  networking: PlexNetworking;
  /** URLs Plex advertises after the mode's own (scheme://host:port each). */
  advertiseUrls: string[];
  /** Requests/limit of the Plex container. @default none */
  resources: { cpuRequest?: string; memoryRequest?: string; memoryLimit?: string };
  /** The archive served by the VM; `url` is a secret (it holds the serving token). */
  archive: {
    url: pulumi.Input<string>;
    sha256: pulumi.Input<string>;
    bytes: pulumi.Input<number>;
    format: pulumi.Input<string>;
  };
  /** Protect the namespace and the config volume claim from `pulumi destroy`. @default true */
  protectData: boolean;
}

/** Who Plex runs as in the pod and what it carries over from the VM. */
interface PodIdentity {
  ids: PlexIds;
  timezone?: string;
  groups: number[];
  lanNetworks?: string;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const IMAGE_TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** `extra` added to the caller's `dependsOn` (which may be one resource, a list or an Output). */
function withDependencies(
  callerDependsOn: pulumi.ResourceOptions["dependsOn"],
  extra: pulumi.Resource[],
): pulumi.Input<pulumi.Input<pulumi.Resource>[]> {
  if (!callerDependsOn) return extra;
  return pulumi
    .output(callerDependsOn as pulumi.Input<pulumi.Resource | pulumi.Resource[]>)
    .apply((deps) => [...(Array.isArray(deps) ? deps : [deps]), ...extra]);
}

export class PlexRelease extends pulumi.ComponentResource {
  /** The namespace, once it exists. */
  readonly namespace: pulumi.Output<string>;
  /** The config volume claim (mounted at /config). */
  readonly configClaimName: pulumi.Output<string>;
  /** The claim's requested size. */
  readonly configSize: pulumi.Output<string>;
  /** The pms-docker tag the pod runs. */
  readonly imageTag: pulumi.Output<string>;
  /** Where Plex answers: the URL the networking mode gives clients, else the in-cluster one. */
  readonly plexUrl: pulumi.Output<string>;
  /**
   * The first URL Plex advertises to plex.tv (what clients outside the cluster connect to), or
   * "" when none is configured.
   */
  readonly advertisedUrl: pulumi.Output<string>;
  /** The Helm release (stop serving the archive after it). */
  readonly release: k8s.helm.v3.Release;
  /** Names of what the chart creates (StatefulSet, pod, containers, Service …). */
  readonly chartNames: ChartResourceNames;

  constructor(name: string, args: PlexReleaseArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("plex-migrate:plex:Release", name, {}, opts);
    this.validate(args);
    const own = plexMigrateObjectNames(args.releaseName);
    this.chartNames = chartResourceNames(args.releaseName);
    const labels = {
      "app.kubernetes.io/part-of": "plex-migrate",
      "app.kubernetes.io/instance": args.releaseName,
      "app.kubernetes.io/managed-by": "pulumi",
    };

    // Deleting a namespace deletes the claim in it, so the namespace is never deleted either.
    this.namespace = args.createNamespace
      ? new k8s.core.v1.Namespace(
          `${name}-namespace`,
          {
            metadata: {
              name: args.namespace,
              labels: {
                ...labels,
                ...podSecurityLabels(
                  args.podSecurity,
                  plexHostUse(args.networking, args.mediaVolumes, args.gpu),
                ),
              },
            },
          },
          { parent: this, retainOnDelete: true, protect: args.protectData },
        ).metadata.name
      : pulumi.output(args.namespace);

    const size = pulumi
      .all([args.libraryBytes, args.fileCount ?? 0])
      .apply(([libraryBytes, files]) => {
        try {
          return resolveConfigSize(
            args.configSize,
            libraryBytes,
            args.configHeadroomPercent,
            files,
          );
        } catch (error) {
          throw new pulumi.ResourceError((error as Error).message, this);
        }
      });
    const autoSized = args.configSize === "auto";
    const configClaim = new k8s.core.v1.PersistentVolumeClaim(
      `${name}-config`,
      {
        metadata: {
          name: own.configClaim,
          namespace: this.namespace,
          labels: { ...labels, "app.kubernetes.io/component": "plex-config" },
          // Binding may wait for the first pod (WaitForFirstConsumer); the release waits for it.
          annotations: { "pulumi.com/skipAwait": "true" },
        },
        spec: {
          accessModes: ["ReadWriteOnce"],
          storageClassName: args.storageClass,
          resources: { requests: { storage: size.quantity } },
        },
      },
      {
        parent: this,
        retainOnDelete: true,
        protect: args.protectData,
        // An "auto" size is decided once: a later, different measure must not resize (or fail to
        // shrink) the volume holding the library. An explicit size is applied (volume expansion).
        ignoreChanges: autoSized ? ["spec.resources.requests.storage"] : [],
      },
    );

    const servedFirst = opts.dependsOn;
    const archiveSecret = new k8s.core.v1.Secret(
      `${name}-archive-url`,
      {
        metadata: { name: own.archiveSecret, namespace: this.namespace, labels },
        type: "Opaque",
        stringData: { [ARCHIVE_URL_KEY]: pulumi.secret(args.archive.url) },
      },
      { parent: this, dependsOn: servedFirst, deleteBeforeReplace: true },
    );
    const claimSecret =
      args.claimToken === undefined
        ? undefined
        : new k8s.core.v1.Secret(
            `${name}-claim-token`,
            {
              metadata: { name: own.claimSecret, namespace: this.namespace, labels },
              type: "Opaque",
              stringData: { [CLAIM_TOKEN_KEY]: pulumi.secret(args.claimToken) },
            },
            { parent: this, deleteBeforeReplace: true },
          );

    this.imageTag = this.decideImageTag(args);
    // From config alone, so the first preview shows it (the VM's measures are unknown then).
    const noDirectPath = noDirectPathWarning(args.networking, args.advertiseUrls);
    if (noDirectPath) void pulumi.log.warn(noDirectPath, this);
    pulumi.output(args.vmPreferences).apply((preferences) => {
      const stale = staleAddressWarning(
        args.networking,
        args.advertiseUrls,
        preferences?.customConnections ?? "",
      );
      if (stale) void pulumi.log.warn(stale, this);
    });
    if (args.networking.mode === "host" && Object.keys(args.nodeSelector).length === 0) {
      void pulumi.log.warn(
        `plexNetworking is "host" and Plex advertises ${args.networking.address}, but no ` +
          `plexNodeSelector pins the pod to that node: on another node clients reach nothing. ` +
          `Fix: pulumi config set --path 'plexNodeSelector[0]' kubernetes.io/hostname=<node>.`,
        this,
      );
    }
    if (args.vmMediaRoots) this.warnAboutUnmountedMedia(args.vmMediaRoots, args.mediaVolumes);

    // The VM user's groups and LAN networks, applied in the Plex container before Plex starts.
    const pmsSetup = new k8s.core.v1.ConfigMap(
      `${name}-pms-setup`,
      {
        metadata: { name: own.pmsSetupConfigMap, namespace: this.namespace, labels },
        data: { [PMS_SETUP_KEY]: pmsSetupScript() },
      },
      { parent: this, deleteBeforeReplace: true },
    );
    const identity = this.podIdentity(args);
    const values = pulumi
      .all([
        pulumi.all([identity, this.imageTag]),
        args.archive.sha256,
        args.archive.bytes,
        args.archive.format,
        args.libraryBytes,
        configClaim.metadata.name,
        archiveSecret.metadata.name,
        pulumi.all([claimSecret ? claimSecret.metadata.name : undefined, pmsSetup.metadata.name]),
      ])
      .apply(
        ([
          [{ ids, timezone, groups, lanNetworks }, imageTag],
          sha256,
          bytes,
          format,
          libraryBytes,
          claimName,
          archiveName,
          [claimSecretName, pmsSetupName],
        ]) => {
          try {
            const initScript = renderInitScript({
              archiveSha256: sha256,
              archiveBytes: bytes,
              archiveFormat: format,
              libraryBytes,
              uid: ids.uid,
              gid: ids.gid,
            });
            return buildPlexValues({
              releaseName: args.releaseName,
              imageTag,
              initImage: args.initImage,
              initScript,
              configClaimName: claimName,
              archiveSecretName: archiveName,
              claimSecretName,
              mediaVolumes: args.mediaVolumes,
              uid: ids.uid,
              gid: ids.gid,
              timezone,
              networking: args.networking,
              advertiseUrls: args.advertiseUrls,
              pmsSetup: { configMapName: pmsSetupName, groups, lanNetworks },
              placement: { nodeSelector: args.nodeSelector, gpu: args.gpu },
              resources: args.resources,
            });
          } catch (error) {
            throw new pulumi.ResourceError((error as Error).message, this);
          }
        },
      );

    const oci = args.chartRepo.startsWith("oci://");
    this.release = new k8s.helm.v3.Release(
      `${name}-chart`,
      {
        name: args.releaseName,
        chart: oci ? `${args.chartRepo.replace(/\/+$/, "")}/${CHART_NAME}` : CHART_NAME,
        version: args.chartVersion,
        repositoryOpts: oci ? undefined : { repo: args.chartRepo },
        namespace: this.namespace,
        createNamespace: false,
        values,
        // Ready means the init container imported the library and Plex answers /identity.
        timeout: pulumi.output(args.archive.bytes).apply(releaseTimeoutSeconds),
      },
      {
        parent: this,
        dependsOn: withDependencies(servedFirst, [
          configClaim,
          archiveSecret,
          pmsSetup,
          ...(claimSecret ? [claimSecret] : []),
        ]),
      },
    );

    this.configClaimName = configClaim.metadata.name;
    this.configSize = configClaim.spec.apply((spec) => spec.resources?.requests?.storage ?? "");
    this.plexUrl = this.namespace.apply((namespace) =>
      plexUrl(args.releaseName, namespace, args.networking),
    );
    this.advertisedUrl = pulumi.output(
      advertisedUrls(args.networking, args.advertiseUrls)[0] ?? "",
    );

    this.registerOutputs({
      namespace: this.namespace,
      configClaimName: this.configClaimName,
      configSize: this.configSize,
      imageTag: this.imageTag,
      plexUrl: this.plexUrl,
      advertisedUrl: this.advertisedUrl,
    });
  }

  /**
   * Who Plex runs as and its time zone: what the preflight measured on the VM unless set. An
   * unknown VM time zone under "auto" is warned about (Plex's scheduled tasks then run in UTC).
   */
  private podIdentity(args: PlexReleaseArgs): pulumi.Output<PodIdentity> {
    return pulumi
      .all([args.vmDataOwner, args.vmTimezone, args.vmPreferences])
      .apply(([owner, vmTimezone, preferences]) => {
        try {
          const ids = resolvePlexIds(args.uid, args.gid, owner);
          const timezone = resolveTimezone(args.timezone, vmTimezone);
          if (args.timezone === "auto" && timezone === undefined) {
            void pulumi.log.warn(
              `the preflight found no time zone on the VM, so Plex runs in UTC and its scheduled ` +
                `maintenance shifts. Set it: pulumi config set plexTimezone <zone, e.g. Europe/Berlin>.`,
              this,
            );
          }
          return {
            ids,
            timezone,
            groups: resolveSupplementalGroups(args.supplementalGroups, ids.gid, owner),
            lanNetworks: podLanNetworks(preferences?.lanNetworks ?? "", args.clusterNetworks),
          };
        } catch (error) {
          throw new pulumi.ResourceError((error as Error).message, this);
        }
      });
  }

  /** The VM's exact Plex version, so the database is never upgraded by the move itself. */
  private decideImageTag(args: PlexReleaseArgs): pulumi.Output<string> {
    const vmVersion = pulumi.output(args.plexVersion).apply((version) => {
      if (!IMAGE_TAG.test(version)) {
        throw new pulumi.ResourceError(
          `the VM reported Plex version "${version}", which is not a pms-docker image tag. ` +
            `Fix: check the preflight, or set plexImageTag to the tag of that version`,
          this,
        );
      }
      return version;
    });
    const override = args.imageTagOverride;
    if (!override) return vmVersion;
    return pulumi.output(args.plexVersion).apply((version) => {
      if (version !== override) {
        void pulumi.log.warn(
          `plexImageTag "${override}" differs from the Plex version on the VM ("${version}"): ` +
            `the pod runs a different Plex than the one that wrote the database, and a newer one ` +
            `upgrades it in place, after which the VM cannot take it back. ` +
            `Unset plexImageTag to run "${version}".`,
          this,
        );
      }
      return override;
    });
  }

  /** Library folders the pod would not see: the plan's manual path remap, caught at preview. */
  private warnAboutUnmountedMedia(roots: pulumi.Input<string[]>, volumes: MediaVolume[]): void {
    pulumi.output(roots).apply((vmRoots) => {
      const unmounted = unmountedMediaRoots(vmRoots, volumes);
      if (unmounted.length > 0) {
        void pulumi.log.warn(
          `Plex's library uses ${unmounted.map((r) => `"${r}"`).join(", ")} on the VM, which no ` +
            `plexMediaVolumes entry mounts: Plex will show those items as unavailable. Add e.g. ` +
            `pulumi config set --path 'plexMediaVolumes[${volumes.length}]' '${unmounted[0]}=nfs://<server>/<export>'.`,
          this,
        );
      }
      return unmounted;
    });
  }

  private validate(args: PlexReleaseArgs): void {
    const problems: string[] = [];
    if (!DNS_LABEL.test(args.releaseName) || args.releaseName.length > 53) {
      problems.push(
        `releaseName "${args.releaseName}" must be a DNS label of at most 53 characters`,
      );
    }
    if (!DNS_LABEL.test(args.namespace) || args.namespace.length > 63) {
      problems.push(`namespace "${args.namespace}" must be a DNS label`);
    }
    if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(args.chartVersion)) {
      problems.push(`chartVersion "${args.chartVersion}" must be an exact version such as 1.5.0`);
    }
    if (!/^(https|oci):\/\/\S+$/.test(args.chartRepo)) {
      problems.push(`chartRepo "${args.chartRepo}" must be an https:// or oci:// URL`);
    }
    if (args.imageTagOverride !== undefined && !IMAGE_TAG.test(args.imageTagOverride)) {
      problems.push(`imageTagOverride "${args.imageTagOverride}" is not an image tag`);
    }
    try {
      parseImageRef(args.initImage);
    } catch (error) {
      problems.push(`initImage: ${(error as Error).message}`);
    }
    if (args.configSize !== "auto") {
      try {
        parseQuantity(args.configSize);
      } catch (error) {
        problems.push(`configSize: ${(error as Error).message}, or "auto"`);
      }
    }
    if (!Number.isInteger(args.configHeadroomPercent) || args.configHeadroomPercent < 0) {
      problems.push(
        `configHeadroomPercent ${args.configHeadroomPercent} must be a whole number >= 0`,
      );
    }
    for (const [field, id] of [
      ["uid", args.uid],
      ["gid", args.gid],
    ] as const) {
      if (id !== "auto" && !isId(id))
        problems.push(`${field} ${id} must be a numeric id or "auto"`);
    }
    if (!["auto", ""].includes(args.timezone) && !isTimezoneName(args.timezone)) {
      problems.push(`timezone "${args.timezone}" must be "auto", "" or an IANA zone name`);
    }
    problems.push(...mediaVolumeProblems(args.mediaVolumes).map((p) => `mediaVolumes: ${p}`));
    problems.push(...networkingProblems(args.networking));
    if (args.supplementalGroups !== "auto") {
      for (const gid of args.supplementalGroups) {
        if (!isId(gid)) problems.push(`supplementalGroups: ${gid} is not a gid`);
      }
    }
    if (!(GPU_MODES as readonly string[]).includes(args.gpu)) {
      problems.push(`gpu "${args.gpu}" must be one of ${GPU_MODES.join(", ")}`);
    }
    for (const [key, value] of Object.entries(args.nodeSelector)) {
      const parsed = parseNodeSelectorEntry(`${key}=${value}`);
      if (typeof parsed === "string") problems.push(`nodeSelector: ${parsed}`);
    }
    const security = podSecurityProblem(
      args.podSecurity,
      plexHostUse(args.networking, args.mediaVolumes, args.gpu),
    );
    if (security) problems.push(`podSecurity: ${security}`);
    for (const cidr of args.clusterNetworks) {
      if (!isCidr(cidr))
        problems.push(`clusterNetworks: "${cidr}" is not a CIDR such as 10.42.0.0/16`);
    }
    for (const url of args.advertiseUrls) {
      const problem = advertiseUrlProblem(url);
      if (problem) problems.push(`advertiseUrls: ${problem}`);
    }
    if (problems.length > 0) {
      throw new pulumi.ResourceError(`PlexRelease ${problems.join("; ")}`, this);
    }
  }
}

/** The VM media roots that no media volume's mount path covers. */
export function unmountedMediaRoots(vmRoots: string[], volumes: MediaVolume[]): string[] {
  const covered = (root: string) =>
    volumes.some((v) => root === v.mountPath || root.startsWith(`${v.mountPath}/`));
  return [...new Set(vmRoots)].filter((root) => !covered(root)).sort();
}

/** Problems with the networking fields config would also catch (the component stands alone). */
function networkingProblems(networking: PlexNetworking): string[] {
  switch (networking.mode) {
    case "host":
    case "loadBalancer":
      return networking.address.trim() && !/[\s/]/.test(networking.address)
        ? []
        : [
            `networking: mode ${networking.mode} needs the address clients use, got "${networking.address}"`,
          ];
    case "ingress":
      return DNS_SUBDOMAIN.test(networking.host)
        ? []
        : [`networking: ingress host "${networking.host}" is not a host name`];
    case "internal":
      return [];
  }
}
