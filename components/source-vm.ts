/**
 * SourceVm (STUB — engineer C replaces the internals): the VM side of the Plex move as
 * `@pulumi/command` remote steps over SSH. Contract: /work/notes/contracts.md.
 */
import * as pulumi from "@pulumi/pulumi";
import type { ArchiveCompression } from "../lib/config";

export interface SourceVmArgs {
  /** SSH connection to the VM; `privateKey` is a secret. */
  connection: {
    host: string;
    port: number;
    user: string;
    privateKey: pulumi.Input<string>;
    hostKey?: string;
  };
  /** Run privileged steps with `sudo -n` when the user is not root. @default true */
  sudo: boolean;
  /** Work directory on the VM. @default /var/tmp/plex-migrate */
  workDir: string;
  /** Plex data directory on the VM (never modified). */
  plexDataDir: string;
  /** systemd unit of Plex. @default plexmediaserver */
  plexService: string;
  /** systemd unit of Tautulli. @default tautulli */
  tautulliService: string;
  /** Path of tautulli.db on the VM. @default /opt/Tautulli/tautulli.db */
  tautulliDbPath: string;
  /** Top-level folders left out of the archive. @default [] */
  archiveExcludes: string[];
  /** Archive compression. @default auto */
  archiveCompression: ArchiveCompression;
  /** The archive server on the VM. */
  serve: { address: string; host: string; port: number; lifetimeMinutes: number; allowedCidrs: string[] };
  /** Keep the archive on the VM after serving. @default false */
  keepArchive: boolean;
  /** Start Plex and Tautulli again on `pulumi destroy`. @default false */
  rollbackOnDestroy: boolean;
}

export class SourceVm extends pulumi.ComponentResource {
  readonly plexVersion: pulumi.Output<string>;
  readonly libraryBytes: pulumi.Output<number>;
  readonly databasesOk: pulumi.Output<boolean>;
  /** Secret: the URL holds the serving token. */
  readonly archiveUrl: pulumi.Output<string>;
  readonly archiveSha256: pulumi.Output<string>;
  readonly archiveBytes: pulumi.Output<number>;
  readonly archiveFormat: pulumi.Output<"tar.zst" | "tar.gz" | "tar">;
  /** Secret: the URL holds the serving token. */
  readonly tautulliSnapshotUrl: pulumi.Output<string>;
  readonly tautulliSnapshotSha256: pulumi.Output<string>;
  /** Done once Plex and Tautulli are stopped. */
  readonly servicesStopped: pulumi.Resource;
  /** Done once the archive is being served. */
  readonly archiveServed: pulumi.Resource;

  constructor(name: string, args: SourceVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("plex-migrate:source:Vm", name, {}, opts);
    void args;
    this.servicesStopped = this;
    this.archiveServed = this;
    this.plexVersion = pulumi.output("");
    this.libraryBytes = pulumi.output(0);
    this.databasesOk = pulumi.output(false);
    this.archiveUrl = pulumi.secret("");
    this.archiveSha256 = pulumi.output("");
    this.archiveBytes = pulumi.output(0);
    this.archiveFormat = pulumi.output("tar" as const);
    this.tautulliSnapshotUrl = pulumi.secret("");
    this.tautulliSnapshotSha256 = pulumi.output("");
    this.registerOutputs({});
  }

  /** Creates the stop-serving step, run after `after` (the Plex release, the import). */
  stopServingAfter(after: pulumi.Resource[]): pulumi.Resource {
    void after;
    return this;
  }
}
