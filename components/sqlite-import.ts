/**
 * SqliteImport: a dynamic resource that imports Tautulli's SQLite history into the migrated
 * PostgreSQL database during `pulumi up` (lib/import, rules in docs/import.md): one transaction,
 * verified before it commits. The source fingerprint drives it: the same file is no change, a
 * changed file is re-imported under the overwrite rule, and `pulumi destroy` never drops anything.
 *
 * The provider object is serialized by the engine and run in another process, so its methods
 * only load lib/import/provider.ts (tested on its own) and delegate.
 */
import * as pulumi from "@pulumi/pulumi";
import type * as ProviderModule from "../lib/import/provider";
import type { ImportReport } from "../lib/import/report";
import type { SshConnection } from "../lib/import/ssh-download";
import type { FileDigest } from "../lib/source-vm/outputs";
import { loadProjectModule } from "./provider-runtime";

export interface SqliteImportArgs {
  /** App-role URL of the Tautulli database, reachable from `pulumi up` (secret). */
  databaseUrl: pulumi.Input<string>;
  /** How `pulumi up` reaches the server, named when it cannot (PostgresInstance's reachedAt). */
  reachedAt?: pulumi.Input<string>;
  /**
   * Where tautulli.db comes from: a local file (`path`, absolute; a `-wal` beside it is read too);
   * the VM's snapshot over SSH (`ssh`: SourceVm's `sshConnection`, secret; `snapshot`: the stop
   * step's `tautulliSnapshot`), copied with the host key pinned and its sha256 verified.
   */
  source:
    | { path: string }
    | { ssh: pulumi.Input<SshConnection>; snapshot: pulumi.Input<FileDigest | null> };
  /**
   * Confirms that a non-empty Tautulli database may be replaced by the SQLite data.
   */
  overwrite: boolean;
  /** The migration the target must be at: SchemaMigrations' `schemaVersion` (also orders the import after it). */
  schemaVersion: pulumi.Input<string>;
  /**
   * SQLite's check of the file before the import commits: full (`PRAGMA integrity_check`) or
   * quick (`quick_check`, for very large files).
   */
  integrityCheck: "full" | "quick";
}

/** Loads the implementation inside the engine's provider process. */
function implementation(): typeof ProviderModule {
  return loadProjectModule<typeof ProviderModule>("lib/import/provider");
}

export const sqliteImportProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news) {
    return { inputs: news, failures: implementation().checkInputs(news) };
  },
  async create(inputs) {
    return implementation().createImport(inputs);
  },
  async diff(_id, olds, news) {
    return implementation().diffImport(olds, news);
  },
  async update(_id, olds, news) {
    return implementation().updateImport(olds, news);
  },
  async read(id, props) {
    return { id, props };
  },
  async delete() {
    // Never drops: the imported history stays in PostgreSQL.
  },
};

/** The provider's flat SSH source; no snapshot (no Tautulli on the VM) is refused by check. */
function sshSource(ssh: pulumi.Input<SshConnection>, snapshot: pulumi.Input<FileDigest | null>) {
  const taken = pulumi.output(snapshot);
  return {
    ssh: pulumi.secret(ssh),
    path: taken.apply((s) => s?.path ?? ""),
    sha256: taken.apply((s) => s?.sha256 ?? ""),
    bytes: taken.apply((s) => s?.bytes ?? 0),
  };
}

export class SqliteImport extends pulumi.dynamic.Resource {
  /** The import report (docs/import.md); holds no secret. */
  declare readonly report: pulumi.Output<ImportReport>;
  /** `sha256:<hex>` of the imported file (and its -wal). */
  declare readonly sourceFingerprint: pulumi.Output<string>;
  /** The human summary of the report. */
  declare readonly summary: pulumi.Output<string>;
  /** The database imported into: "<system_identifier>/<database>". */
  declare readonly targetIdentity: pulumi.Output<string>;

  constructor(name: string, args: SqliteImportArgs, opts?: pulumi.CustomResourceOptions) {
    const secretSource = "ssh" in args.source;
    const source =
      "ssh" in args.source
        ? sshSource(args.source.ssh, args.source.snapshot)
        : { path: args.source.path };
    super(
      sqliteImportProvider,
      name,
      {
        databaseUrl: pulumi.secret(args.databaseUrl),
        source,
        overwrite: args.overwrite ?? false,
        schemaVersion: args.schemaVersion,
        integrityCheck: args.integrityCheck ?? "full",
        reachedAt: args.reachedAt,
        report: undefined,
        targetIdentity: undefined,
        sourceFingerprint: undefined,
        summary: undefined,
      },
      {
        ...opts,
        additionalSecretOutputs: [
          ...(opts?.additionalSecretOutputs ?? []),
          "databaseUrl",
          ...(secretSource ? ["source"] : []),
        ],
      },
      "plex-migrate",
      "SqliteImport",
    );
  }
}
