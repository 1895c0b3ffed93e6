/**
 * Pure builders for the objects of the warm copy: the Secret with the migration key and the
 * pinned host key, the ConfigMap with plex-init.sh, and the batch/v1 Job that runs the script's
 * warm phase against the config volume while Plex still runs on the VM.
 */
import type * as k8s from "@pulumi/kubernetes";
import {
  SYNC_KNOWN_HOSTS_KEY,
  SYNC_PRIVATE_KEY_KEY,
  SYNC_SCRIPT_KEY,
  SYNC_VOLUMES,
  knownHostsFor,
  syncContainer,
  syncCopySettings,
  syncPodVolumes,
  type SyncCopySettings,
} from "./init-script";

/** Annotation carrying the script's sha256 on the Job's pod template. */
export const SCRIPT_DIGEST_ANNOTATION = "plex-migrate/sync-script-sha256";

/** Pod failures the Job retries (each attempt resumes from the volume). */
export const WARM_COPY_BACKOFF_LIMIT = 4;

/** The sync Secret's data: the migration's private key and the known_hosts for the VM. */
export function syncSecretData(privateKey: string, hostKey: string): Record<string, string> {
  if (
    !/^-----BEGIN OPENSSH PRIVATE KEY-----\n[\s\S]+\n-----END OPENSSH PRIVATE KEY-----\n?$/.test(
      privateKey,
    )
  ) {
    throw new Error("the migration's private key is not an OpenSSH private key");
  }
  return {
    [SYNC_PRIVATE_KEY_KEY]: privateKey.endsWith("\n") ? privateKey : `${privateKey}\n`,
    [SYNC_KNOWN_HOSTS_KEY]: knownHostsFor(hostKey),
  };
}

/** The script ConfigMap's data. */
export function syncScriptData(script: string): Record<string, string> {
  return { [SYNC_SCRIPT_KEY]: script };
}

/** The copy settings (the stack's transferGeneration: a new one replaces the Job, a new copy). */
export interface WarmCopyJobInput extends SyncCopySettings {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  claimName: string;
  secretName: string;
  scriptConfigMapName: string;
  scriptSha256: string;
  /** The Job gives up after this long (the same as `pulumi up`'s wait). */
  timeoutMinutes: number;
  /** Nodes the Plex pod may run on: the volume is bound where the Job runs. @default any */
  nodeSelector?: Record<string, string>;
}

/** The batch/v1 Job manifest (metadata + spec). */
export function warmCopyJob(input: WarmCopyJobInput): {
  metadata: k8s.types.input.meta.v1.ObjectMeta;
  spec: k8s.types.input.batch.v1.JobSpec;
} {
  if (!Number.isInteger(input.timeoutMinutes) || input.timeoutMinutes < 1) {
    throw new Error(`warm copy timeout ${input.timeoutMinutes} must be a whole number of minutes`);
  }
  const container = syncContainer({
    phase: "warm",
    name: "warm-copy",
    ...syncCopySettings(input),
  });
  const podSpec: k8s.types.input.core.v1.PodSpec = {
    restartPolicy: "Never",
    containers: [container],
    volumes: [
      { name: SYNC_VOLUMES.config, persistentVolumeClaim: { claimName: input.claimName } },
      ...syncPodVolumes(input),
    ],
    automountServiceAccountToken: false,
  };
  if (input.nodeSelector && Object.keys(input.nodeSelector).length > 0) {
    podSpec.nodeSelector = input.nodeSelector;
  }
  const labels = { ...input.labels, "app.kubernetes.io/component": "plex-warm-copy" };
  return {
    metadata: {
      name: input.name,
      namespace: input.namespace,
      labels,
      annotations: {
        // A Job that failed or timed out is replaced at the next `pulumi up` (pulumi-kubernetes
        // provider.go, ReplaceUnready): the new one resumes from what the volume holds.
        "pulumi.com/replaceUnready": "true",
      },
    },
    spec: {
      backoffLimit: WARM_COPY_BACKOFF_LIMIT,
      activeDeadlineSeconds: input.timeoutMinutes * 60,
      template: {
        metadata: {
          labels,
          annotations: { [SCRIPT_DIGEST_ANNOTATION]: input.scriptSha256 },
        },
        spec: podSpec,
      },
    },
  };
}
