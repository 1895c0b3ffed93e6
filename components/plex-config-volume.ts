/**
 * PlexConfigVolume: the Plex config volume and its warm copy.
 *
 * Creates the namespace (unless it exists), the config volume claim (sized from the library the
 * preflight measured, never deleted by Pulumi), a Secret with the migration's SSH key and the
 * pinned VM host key, a ConfigMap with scripts/plex-init.sh, and a batch/v1 Job that runs the
 * script's warm phase: rsync over SSH from the VM's read-only rsync server into the volume,
 * while Plex still runs on the VM. `pulumi up` waits for the Job (pulumi-kubernetes' Job
 * awaiter: ready once the Complete condition is true, failed at once on Failed; 10 minutes by
 * default, here customTimeouts), so whatever depends on `warmCopy` (the VM's stop step) runs
 * only after the library is on the volume. The Plex release's init container (see
 * {@link PlexConfigVolume.finalSyncValues}) then transfers only what changed.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { withDependencies } from "../lib/depends-on";
import { isDnsLabel } from "../lib/checks";
import { plexMigrateObjectNames } from "../lib/plex/chart";
import {
  knownHostsFor,
  loadInitScript,
  plexSyncValues,
  scriptDigest,
  syncConnectionProblems,
  type DatabaseChecksum,
  type SyncConnection,
  type VolumeNeed,
} from "../lib/plex/init-script";
import { parseImageRef } from "../lib/plex/helm-values";
import { parseQuantity, requiredConfigInodes, resolveConfigSize } from "../lib/plex/sizing";
import { syncScriptData, syncSecretData, warmCopyJob } from "../lib/plex/warm-copy";

/** How the cluster pulls the library from the VM. */
export interface PlexSyncSettings {
  /** Image with rsync, an OpenSSH client and a POSIX sh. */
  image: string;
  /** The VM as the cluster reaches it, and the account the migration key is authorized for. */
  connection: SyncConnection;
  /** The VM's pinned SSH host key ("ssh-ed25519 AAAA..."). */
  hostKey: string;
  /** Top-level folders of the data directory not copied. */
  excludes: string[];
  /** How long `pulumi up` waits for the warm copy, in minutes. */
  warmCopyTimeoutMinutes: number;
  /**
   * The stack's transferGeneration. Both phases record it in the volume's marker; a new one
   * changes the Job's and the init container's environment, so the Job is replaced and the Plex
   * pod restarts, and both copy the VM again (scripts/plex-init.sh).
   */
  transferGeneration: number;
}

export interface PlexConfigVolumeArgs {
  /** Namespace of Plex (and the other workloads). */
  namespace: string;
  /** Create the namespace (false: it exists already). */
  createNamespace: boolean;
  /** Extra labels of a created namespace (Pod Security, lib/plex/placement.ts). @default none */
  namespaceLabels?: Record<string, string>;
  /** Helm release name of Plex: the object names derive from it. */
  releaseName: string;
  /** StorageClass of the config volume (must support file locking). @default the cluster default */
  storageClass?: string;
  /** "auto" or a Kubernetes quantity such as "200Gi". */
  configSize: string;
  /** Growth room (percent of the library) added when configSize is "auto". */
  configHeadroomPercent: number;
  /** Bytes of the Plex data directory, measured on the VM by the preflight. */
  libraryBytes: pulumi.Input<number>;
  /** Files, directories and links in it (the preflight's fileCount): the inodes the volume needs. */
  fileCount: pulumi.Input<number>;
  /** Owner of the copied files (the Plex container's PLEX_UID/PLEX_GID, resolved). */
  uid: pulumi.Input<number>;
  gid: pulumi.Input<number>;
  sync: PlexSyncSettings;
  /** The migration's private key (secret), authorized on the VM by SourceVm. */
  syncPrivateKey: pulumi.Input<string>;
  /** Nodes Plex may run on; the Job runs there too, since the claim binds where it is first used. */
  nodeSelector?: Record<string, string>;
  /** Protect the namespace and the claim from `pulumi destroy`. */
  protectData: boolean;
  /**
   * What the warm copy waits for (SourceVm's syncAuthorized). Only the Job depends on it: as a
   * component-level dependsOn it would reach the protected claim and namespace through their
   * parent, and a refused delete of theirs would skip what they depend on (pulumi/pulumi
   * pkg/resource/graph/dependency_graph.go DependenciesOf counts the parent). @default nothing
   */
  warmCopyAfter?: pulumi.Resource[];
}

export class PlexConfigVolume extends pulumi.ComponentResource {
  readonly namespace: pulumi.Output<string>;
  readonly configClaimName: pulumi.Output<string>;
  /** The claim's requested size. */
  readonly configSize: pulumi.Output<string>;
  /** The warm-copy Job: done once the library is on the volume. */
  readonly warmCopy: k8s.batch.v1.Job;
  readonly syncSecretName: pulumi.Output<string>;
  readonly scriptConfigMapName: pulumi.Output<string>;
  private readonly args: PlexConfigVolumeArgs;

  constructor(
    name: string,
    args: PlexConfigVolumeArgs,
    opts: pulumi.ComponentResourceOptions = {},
  ) {
    super("plex-migrate:plex:ConfigVolume", name, {}, opts);
    this.args = args;
    this.validate(args);
    const own = plexMigrateObjectNames(args.releaseName);
    const labels = {
      "app.kubernetes.io/part-of": "plex-migrate",
      "app.kubernetes.io/instance": args.releaseName,
      "app.kubernetes.io/managed-by": "pulumi",
    };

    // Deleting a namespace deletes the claim in it, so the namespace is never deleted either.
    this.namespace = args.createNamespace
      ? new k8s.core.v1.Namespace(
          `${name}-namespace`,
          { metadata: { name: args.namespace, labels: { ...labels, ...args.namespaceLabels } } },
          { parent: this, retainOnDelete: true, protect: args.protectData },
        ).metadata.name
      : pulumi.output(args.namespace);

    const claim = this.createClaim(name, labels, own.configClaim);
    const secret = new k8s.core.v1.Secret(
      `${name}-sync-key`,
      {
        metadata: { name: own.syncSecret, namespace: this.namespace, labels },
        type: "Opaque",
        stringData: pulumi.secret(
          pulumi.output(args.syncPrivateKey).apply((key) => this.secretData(key)),
        ),
      },
      { parent: this, deleteBeforeReplace: true },
    );
    const script = loadInitScript();
    const configMap = new k8s.core.v1.ConfigMap(
      `${name}-sync-script`,
      {
        metadata: { name: own.syncScript, namespace: this.namespace, labels },
        data: syncScriptData(script),
      },
      { parent: this, deleteBeforeReplace: true },
    );

    const manifest = pulumi
      .all([this.namespace, claim.metadata.name, this.need(), args.uid, args.gid])
      .apply(([namespace, claimName, need, uid, gid]) => {
        try {
          return warmCopyJob({
            name: own.warmCopyJob,
            namespace,
            labels,
            image: args.sync.image,
            connection: args.sync.connection,
            uid,
            gid,
            excludes: args.sync.excludes,
            need,
            generation: args.sync.transferGeneration,
            claimName,
            secretName: own.syncSecret,
            scriptConfigMapName: own.syncScript,
            scriptSha256: scriptDigest(script),
            timeoutMinutes: args.sync.warmCopyTimeoutMinutes,
            nodeSelector: args.nodeSelector,
          });
        } catch (error) {
          throw new pulumi.ResourceError((error as Error).message, this);
        }
      });
    const timeout = `${args.sync.warmCopyTimeoutMinutes}m`;
    this.warmCopy = new k8s.batch.v1.Job(
      `${name}-warm-copy`,
      { metadata: manifest.metadata, spec: manifest.spec },
      {
        parent: this,
        // The VM's authorize-sync step (warmCopyAfter) must be done before the copy.
        dependsOn: withDependencies(opts.dependsOn, [
          ...(args.warmCopyAfter ?? []),
          claim,
          secret,
          configMap,
        ]),
        customTimeouts: { create: timeout, update: timeout },
        deleteBeforeReplace: true,
      },
    );

    this.configClaimName = claim.metadata.name;
    this.configSize = claim.spec.apply((spec) => spec.resources?.requests?.storage ?? "");
    this.syncSecretName = secret.metadata.name;
    this.scriptConfigMapName = configMap.metadata.name;
    this.registerOutputs({
      namespace: this.namespace,
      configClaimName: this.configClaimName,
      configSize: this.configSize,
    });
  }

  /**
   * The Plex chart's values for the final phase (`extraInitContainers`, `extraVolumes`): the
   * init container that syncs what changed since the warm copy and proves the copy against the
   * database checksums the stop step measured.
   */
  finalSyncValues(
    databases: pulumi.Input<DatabaseChecksum[]>,
    containerName: string,
  ): pulumi.Output<ReturnType<typeof plexSyncValues>> {
    const own = plexMigrateObjectNames(this.args.releaseName);
    const values = pulumi.all([databases, this.need(), this.args.uid, this.args.gid]);
    return values.apply(([dbs, need, uid, gid]) => {
      try {
        return plexSyncValues({
          containerName,
          image: this.args.sync.image,
          connection: this.args.sync.connection,
          uid,
          gid,
          excludes: this.args.sync.excludes,
          need,
          generation: this.args.sync.transferGeneration,
          databases: dbs,
          secretName: own.syncSecret,
          scriptConfigMapName: own.syncScript,
        });
      } catch (error) {
        throw new pulumi.ResourceError((error as Error).message, this);
      }
    });
  }

  /** What both sync phases check on the volume before copying. */
  private need(): pulumi.Output<VolumeNeed> {
    return pulumi
      .all([this.args.libraryBytes, this.args.fileCount])
      .apply(([libraryBytes, fileCount]) => ({
        libraryBytes,
        inodes: requiredConfigInodes(fileCount),
      }));
  }

  private validate(args: PlexConfigVolumeArgs): void {
    const problems: string[] = [];
    if (!isDnsLabel(args.namespace)) {
      problems.push(`namespace "${args.namespace}" must be a DNS label`);
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
    try {
      parseImageRef(args.sync.image);
    } catch (error) {
      problems.push(`sync.image: ${(error as Error).message}`);
    }
    try {
      knownHostsFor(args.sync.hostKey);
    } catch (error) {
      problems.push(`sync.hostKey: ${(error as Error).message}`);
    }
    problems.push(
      ...syncConnectionProblems(args.sync.connection).map((p) => `sync.connection: ${p}`),
    );
    const timeout = args.sync.warmCopyTimeoutMinutes;
    if (!Number.isInteger(timeout) || timeout < 1) {
      problems.push(`sync.warmCopyTimeoutMinutes ${timeout} must be a whole number of minutes`);
    }
    if (problems.length > 0) {
      throw new pulumi.ResourceError(`PlexConfigVolume ${problems.join("; ")}`, this);
    }
  }

  private secretData(privateKey: string): Record<string, string> {
    try {
      return syncSecretData(privateKey, this.args.sync.hostKey);
    } catch (error) {
      throw new pulumi.ResourceError((error as Error).message, this);
    }
  }

  private createClaim(
    name: string,
    labels: Record<string, string>,
    claimName: string,
  ): k8s.core.v1.PersistentVolumeClaim {
    const args = this.args;
    const size = pulumi.all([args.libraryBytes, args.fileCount]).apply(([libraryBytes, files]) => {
      try {
        return resolveConfigSize(args.configSize, libraryBytes, args.configHeadroomPercent, files);
      } catch (error) {
        throw new pulumi.ResourceError((error as Error).message, this);
      }
    });
    return new k8s.core.v1.PersistentVolumeClaim(
      `${name}-config`,
      {
        metadata: {
          name: claimName,
          namespace: this.namespace,
          labels: { ...labels, "app.kubernetes.io/component": "plex-config" },
          // Binding may wait for the first pod (WaitForFirstConsumer): the warm-copy Job's.
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
        ignoreChanges: args.configSize === "auto" ? ["spec.resources.requests.storage"] : [],
      },
    );
  }
}
