/**
 * PlexRelease: Plex Media Server in Kubernetes, on the config volume PlexConfigVolume filled.
 *
 * A Helm release of Plex's plex-media-server chart that runs the VM's exact Plex version on the
 * config claim. Its init container (PlexConfigVolume.finalSyncValues) runs plex-init.sh's final
 * phase: the delta since the warm copy, checked against the databases the stop step measured,
 * before Plex starts.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { withDependencies } from "../lib/depends-on";
import { unmountedMediaRoots, type MediaVolume } from "../lib/plex/media-volumes";
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
  plexHostUse,
  plexUrl,
  releaseTimeoutSeconds,
} from "../lib/plex/helm-values";
import type { plexSyncValues } from "../lib/plex/init-script";
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
  podSecurityProblem,
  type GpuMode,
  type PodSecuritySetting,
} from "../lib/plex/placement";
import { isCidr } from "../lib/net";
import { isChartRepo, isDnsLabel, isDnsSubdomain, isExactVersion, isImageTag } from "../lib/checks";

export interface PlexReleaseArgs {
  /** Namespace for Plex (PlexConfigVolume's). */
  namespace: pulumi.Input<string>;
  /** The config volume claim (PlexConfigVolume's), mounted at /config. */
  configClaimName: pulumi.Input<string>;
  /** The final-sync init container and its volumes (PlexConfigVolume.finalSyncValues). */
  sync: pulumi.Input<ReturnType<typeof plexSyncValues>>;
  /**
   * Helm release name. Every name the chart creates derives from it, so it is fixed, never
   * auto-named.
   */
  releaseName: string;
  /** plex-media-server chart version, pinned. */
  chartVersion: string;
  /**
   * Helm repository of the chart (https://…), or an OCI registry path (oci://…) holding it.
   */
  chartRepo: string;
  /** pms-docker tag to run instead of the VM's version (warned about). @default the VM's version */
  imageTagOverride?: string;
  /** Plex version the VM runs (its dpkg version, which is the pms-docker tag). */
  plexVersion: pulumi.Input<string>;
  /** Bytes of the Plex data directory, measured on the VM by the preflight (the wait's length). */
  libraryBytes: pulumi.Input<number>;
  /** Media roots, mounted in the pod at the paths the VM used. */
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
   * Pod Security labels on the namespace (PlexConfigVolume creates it with plexNamespaceLabels):
   * "" none, "auto" the least level the Plex pod passes, or a level. Checked here.
   */
  podSecurity: PodSecuritySetting;
  /** The cluster's pod and node ranges (CIDRs), added to Plex's LAN networks. */
  clusterNetworks: string[];
  /** Preferences.xml's LAN settings on the VM, read by the preflight. */
  vmPreferences?: pulumi.Input<{ lanNetworks: string; customConnections: string }>;
  /** plex.tv claim token (secret); not needed when Preferences.xml is moved. @default none */
  claimToken?: pulumi.Input<string>;
  /** How clients reach Plex; decides the pod network, Service, Ingress and advertised URL. */
  networking: PlexNetworking;
  /** URLs Plex advertises after the mode's own (scheme://host:port each). */
  advertiseUrls: string[];
  /** Requests/limit of the Plex container. */
  resources: { cpuRequest?: string; memoryRequest?: string; memoryLimit?: string };
}

/** Who Plex runs as in the pod and what it carries over from the VM. */
interface PodIdentity {
  ids: PlexIds;
  timezone?: string;
  groups: number[];
  lanNetworks?: string;
}

/** Where Helm finds the chart: a named chart in an https repository, or a path in an OCI one. */
export function chartSource(chartRepo: string): {
  chart: string;
  repositoryOpts?: { repo: string };
} {
  return chartRepo.startsWith("oci://")
    ? { chart: `${chartRepo.replace(/\/+$/, "")}/${CHART_NAME}`, repositoryOpts: undefined }
    : { chart: CHART_NAME, repositoryOpts: { repo: chartRepo } };
}

export class PlexRelease extends pulumi.ComponentResource {
  /** The namespace, once it exists. */
  readonly namespace: pulumi.Output<string>;
  /** The config volume claim (mounted at /config). */
  readonly configClaimName: pulumi.Output<string>;
  /** The pms-docker tag the pod runs. */
  readonly imageTag: pulumi.Output<string>;
  /** Where Plex answers: the URL the networking mode gives clients, else the in-cluster one. */
  readonly plexUrl: pulumi.Output<string>;
  /**
   * The first URL Plex advertises to plex.tv (what clients outside the cluster connect to), or
   * "" when none is configured.
   */
  readonly advertisedUrl: pulumi.Output<string>;
  /** The Helm release (the VM's revoke-sync step runs after it). */
  readonly release: k8s.helm.v3.Release;
  /** Names of what the chart creates (StatefulSet, pod, containers, Service …). */
  readonly chartNames: ChartResourceNames;

  constructor(name: string, args: PlexReleaseArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("plex-migrate:plex:Release", name, {}, opts);
    this.validate(args);
    this.chartNames = chartResourceNames(args.releaseName);
    this.namespace = pulumi.output(args.namespace);
    this.configClaimName = pulumi.output(args.configClaimName);
    this.imageTag = this.decideImageTag(args);
    this.warnAboutSettings(args);

    const { claimSecret, pmsSetup } = this.podObjects(name, args);
    const values = pulumi
      .all([
        pulumi.all([this.podIdentity(args), this.imageTag]),
        this.configClaimName,
        args.sync,
        pulumi.all([claimSecret ? claimSecret.metadata.name : undefined, pmsSetup.metadata.name]),
      ])
      .apply(
        ([
          [{ ids, timezone, groups, lanNetworks }, imageTag],
          claimName,
          sync,
          [claimSecretName, pmsSetupName],
        ]) => {
          try {
            return buildPlexValues({
              releaseName: args.releaseName,
              imageTag,
              sync,
              configClaimName: claimName,
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

    this.release = new k8s.helm.v3.Release(
      `${name}-chart`,
      {
        ...chartSource(args.chartRepo),
        name: args.releaseName,
        version: args.chartVersion,
        namespace: this.namespace,
        createNamespace: false,
        values,
        // Ready means the init container synced and verified the library and Plex answers.
        timeout: pulumi.output(args.libraryBytes).apply(releaseTimeoutSeconds),
      },
      {
        parent: this,
        // The caller's dependsOn (the VM's stop step) must be done before the final sync starts.
        dependsOn: withDependencies(opts.dependsOn, [
          pmsSetup,
          ...(claimSecret ? [claimSecret] : []),
        ]),
      },
    );

    this.plexUrl = this.namespace.apply((namespace) =>
      plexUrl(args.releaseName, namespace, args.networking),
    );
    this.advertisedUrl = pulumi.output(
      advertisedUrls(args.networking, args.advertiseUrls)[0] ?? "",
    );

    this.registerOutputs({
      namespace: this.namespace,
      configClaimName: this.configClaimName,
      imageTag: this.imageTag,
      plexUrl: this.plexUrl,
      advertisedUrl: this.advertisedUrl,
    });
  }

  /**
   * The claim token's Secret (when one is set) and the ConfigMap with the script that applies the
   * VM user's groups and LAN networks in the Plex container before Plex starts.
   */
  private podObjects(
    name: string,
    args: PlexReleaseArgs,
  ): { claimSecret?: k8s.core.v1.Secret; pmsSetup: k8s.core.v1.ConfigMap } {
    const own = plexMigrateObjectNames(args.releaseName);
    const labels = {
      "app.kubernetes.io/part-of": "plex-migrate",
      "app.kubernetes.io/instance": args.releaseName,
      "app.kubernetes.io/managed-by": "pulumi",
    };
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
    const pmsSetup = new k8s.core.v1.ConfigMap(
      `${name}-pms-setup`,
      {
        metadata: { name: own.pmsSetupConfigMap, namespace: this.namespace, labels },
        data: { [PMS_SETUP_KEY]: pmsSetupScript() },
      },
      { parent: this, deleteBeforeReplace: true },
    );
    return { claimSecret, pmsSetup };
  }

  /** What the settings (and, once known, the VM's measures) leave clients without. */
  private warnAboutSettings(args: PlexReleaseArgs): void {
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
      if (!isImageTag(version)) {
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

  /** Library folders the pod would not see (Plex would show their items unavailable), at preview. */
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
    if (!isDnsLabel(args.releaseName, 53)) {
      problems.push(
        `releaseName "${args.releaseName}" must be a DNS label of at most 53 characters`,
      );
    }
    if (!isExactVersion(args.chartVersion)) {
      problems.push(`chartVersion "${args.chartVersion}" must be an exact version such as 1.5.0`);
    }
    if (!isChartRepo(args.chartRepo)) {
      problems.push(`chartRepo "${args.chartRepo}" must be an https:// or oci:// URL`);
    }
    if (args.imageTagOverride !== undefined && !isImageTag(args.imageTagOverride)) {
      problems.push(`imageTagOverride "${args.imageTagOverride}" is not an image tag`);
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
      return isDnsSubdomain(networking.host)
        ? []
        : [`networking: ingress host "${networking.host}" is not a host name`];
    case "internal":
      return [];
  }
}
