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
  plexUrl,
  releaseTimeoutSeconds,
} from "../lib/plex/helm-values";
import type { plexSyncValues } from "../lib/plex/init-script";
import {
  advertiseUrlProblem,
  advertisedUrls,
  noDirectPathWarning,
  type PlexNetworking,
} from "../lib/plex/networking";

export interface PlexReleaseArgs {
  /** Namespace for Plex (PlexConfigVolume's). */
  namespace: pulumi.Input<string>;
  /** The config volume claim (PlexConfigVolume's), mounted at /config. */
  configClaimName: pulumi.Input<string>;
  /** The final-sync init container and its volumes (PlexConfigVolume.finalSyncValues). */
  sync: pulumi.Input<ReturnType<typeof plexSyncValues>>;
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
  /** Bytes of the Plex data directory, measured on the VM by the preflight (the wait's length). */
  libraryBytes: pulumi.Input<number>;
  /** Media roots, mounted in the pod at the paths the VM used. @default [] */
  mediaVolumes: MediaVolume[];
  /**
   * Media paths Plex's library refers to on the VM (the preflight's mediaRoots); each one not
   * under a mediaVolumes mount is warned about, since Plex would show its items as unavailable.
   * @default not checked
   */
  vmMediaRoots?: pulumi.Input<string[]>;
  /** uid of the plex user the imported files belong to. @default 1000 */
  uid: number;
  /** gid of the plex user. @default 1000 */
  gid: number;
  /** plex.tv claim token (secret); not needed when Preferences.xml is moved. @default none */
  claimToken?: pulumi.Input<string>;
  /** How clients reach Plex; decides the pod network, Service, Ingress and advertised URL. */
  networking: PlexNetworking;
  /** URLs Plex advertises after the mode's own (scheme://host:port each). */
  advertiseUrls: string[];
  /** Requests/limit of the Plex container. @default none */
  resources: { cpuRequest?: string; memoryRequest?: string; memoryLimit?: string };
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
    const own = plexMigrateObjectNames(args.releaseName);
    this.chartNames = chartResourceNames(args.releaseName);
    const labels = {
      "app.kubernetes.io/part-of": "plex-migrate",
      "app.kubernetes.io/instance": args.releaseName,
      "app.kubernetes.io/managed-by": "pulumi",
    };

    this.namespace = pulumi.output(args.namespace);
    this.configClaimName = pulumi.output(args.configClaimName);

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
    const noDirectPath = noDirectPathWarning(args.networking, args.advertiseUrls);
    if (noDirectPath) void pulumi.log.warn(noDirectPath, this);
    if (args.vmMediaRoots) this.warnAboutUnmountedMedia(args.vmMediaRoots, args.mediaVolumes);

    const values = pulumi
      .all([
        this.imageTag,
        this.configClaimName,
        args.sync,
        claimSecret ? claimSecret.metadata.name : undefined,
      ])
      .apply(([imageTag, claimName, sync, claimSecretName]) => {
        try {
          return buildPlexValues({
            releaseName: args.releaseName,
            imageTag,
            sync,
            configClaimName: claimName,
            claimSecretName,
            mediaVolumes: args.mediaVolumes,
            uid: args.uid,
            gid: args.gid,
            networking: args.networking,
            advertiseUrls: args.advertiseUrls,
            resources: args.resources,
          });
        } catch (error) {
          throw new pulumi.ResourceError((error as Error).message, this);
        }
      });

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
        // Ready means the init container synced and verified the library and Plex answers.
        timeout: pulumi.output(args.libraryBytes).apply(releaseTimeoutSeconds),
      },
      {
        parent: this,
        // The caller's dependsOn (the VM's stop step) must be done before the final sync starts.
        dependsOn: withDependencies(opts.dependsOn, claimSecret ? [claimSecret] : []),
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
    if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(args.chartVersion)) {
      problems.push(`chartVersion "${args.chartVersion}" must be an exact version such as 1.5.0`);
    }
    if (!/^(https|oci):\/\/\S+$/.test(args.chartRepo)) {
      problems.push(`chartRepo "${args.chartRepo}" must be an https:// or oci:// URL`);
    }
    if (args.imageTagOverride !== undefined && !IMAGE_TAG.test(args.imageTagOverride)) {
      problems.push(`imageTagOverride "${args.imageTagOverride}" is not an image tag`);
    }
    for (const [field, id] of [
      ["uid", args.uid],
      ["gid", args.gid],
    ] as const) {
      if (!Number.isInteger(id) || id < 0) problems.push(`${field} ${id} must be a numeric id`);
    }
    problems.push(...mediaVolumeProblems(args.mediaVolumes).map((p) => `mediaVolumes: ${p}`));
    problems.push(...networkingProblems(args.networking));
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
