/**
 * PlexVerification: a dynamic resource that proves, after the Plex release is ready, that the
 * moved Plex is the VM's server (same machineIdentifier and version), that every library's media
 * is readable by it (sampled items, checked by Plex with checkFiles=1) and that the advertised
 * address answers from inside the cluster (lib/plex/verify*.ts). It reaches the pod through the
 * Kubernetes API (a port-forward tunnel, no exposed port) with the server's own token. A failed
 * verification fails `up` with what it means and the fix; the report is a stack output and is
 * appended to the migration log in the config volume.
 *
 * The provider object is serialized by the engine and run in another process, so its methods
 * only load lib/plex/verify-provider.ts (tested on its own) and delegate.
 */
import * as pulumi from "@pulumi/pulumi";
import type { MediaVolume } from "../lib/plex/media-volumes";
import type * as ProviderModule from "../lib/plex/verify-provider";
import {
  DEFAULT_SAMPLES_PER_SECTION,
  MIGRATION_LOG_IN_POD,
  type VerificationReport,
} from "../lib/plex/verify-report";
import { loadProjectModule } from "./provider-runtime";

export interface PlexVerificationArgs {
  /** Where Plex runs: kubeconfig context (default: current), namespace, pod and container. */
  kubernetes: {
    context?: string;
    namespace: pulumi.Input<string>;
    podName: string;
    container: string;
  };
  /** The server's own token, read on the VM (secret). */
  plexToken: pulumi.Input<string>;
  /** The VM's server identity (preflight's preferences.machineIdentifier). */
  machineIdentifier: pulumi.Input<string>;
  /** The Plex version the pod must run (the image tag the release runs). */
  plexVersion: pulumi.Input<string>;
  /** plexMediaVolumes, to name the volume behind an unreadable library. */
  mediaVolumes: MediaVolume[];
  /** The address clients are told to use; "" when the networking mode advertises none. */
  advertisedUrl: pulumi.Input<string>;
  /**
   * The Helm release revision to verify (a new revision verifies again): the Release's
   * `status.revision`, which Helm raises on every install or upgrade (@pulumi/kubernetes 4.x
   * types/output.d.ts helm.v3.ReleaseStatus).
   */
  releaseRevision: pulumi.Input<number>;
  /**
   * Items sampled per library section.
   * @default 5
   */
  samplesPerSection?: number;
}

function implementation(): typeof ProviderModule {
  return loadProjectModule<typeof ProviderModule>("lib/plex/verify-provider");
}

export const plexVerificationProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news) {
    return { inputs: news, failures: implementation().checkInputs(news) };
  },
  async create(inputs) {
    return implementation().createVerification(inputs);
  },
  async diff(_id, olds, news) {
    return implementation().diffVerification(olds, news);
  },
  async update(_id, olds, news) {
    return implementation().updateVerification(olds, news);
  },
  async read(id, props) {
    return { id, props };
  },
  async delete() {
    // Nothing to undo: the verification only read, and its report stays in the migration log.
  },
};

export class PlexVerification extends pulumi.dynamic.Resource {
  /** The verification report (identity, per-library sampled/readable counts, advertised address). */
  declare readonly report: pulumi.Output<VerificationReport>;
  /** The report as text, as appended to the migration log. */
  declare readonly summary: pulumi.Output<string>;

  constructor(name: string, args: PlexVerificationArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      plexVerificationProvider,
      name,
      {
        kubernetes: args.kubernetes,
        plexToken: pulumi.secret(args.plexToken),
        expected: { machineIdentifier: args.machineIdentifier, version: args.plexVersion },
        mediaVolumes: args.mediaVolumes,
        advertisedUrl: args.advertisedUrl,
        samplesPerSection: args.samplesPerSection ?? DEFAULT_SAMPLES_PER_SECTION,
        releaseRevision: args.releaseRevision,
        migrationLog: MIGRATION_LOG_IN_POD,
        report: undefined,
        summary: undefined,
      },
      {
        ...opts,
        additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "plexToken"],
      },
      "plex-migrate",
      "PlexVerification",
    );
    // The report's warnings (a partly readable library, an advertised address that does not
    // answer) are shown by `up`; failures already failed the resource.
    this.report.apply((report) => {
      for (const warning of report?.warnings ?? []) void pulumi.log.warn(warning, this);
    });
  }
}
