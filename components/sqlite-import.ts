/**
 * SqliteImport (STUB — engineer B replaces the internals): a dynamic resource that imports
 * tautulli.db into the migrated schema. Contract: /work/notes/contracts.md.
 */
import * as pulumi from "@pulumi/pulumi";

export interface SqliteImportArgs {
  /** App-role database URL (secret). */
  databaseUrl: pulumi.Input<string>;
  /** A local file, or the VM's snapshot URL (secret) with its sha256. */
  source: { path: string } | { url: pulumi.Input<string>; sha256: pulumi.Input<string> };
  /** Confirmed overwrite of a non-empty target. @default false */
  overwrite: boolean;
  /** Schema version the import targets (from SchemaMigrations). */
  schemaVersion: pulumi.Input<string>;
  /** full (integrity_check) or quick (quick_check). @default full */
  integrityCheck: "full" | "quick";
}

const provider: pulumi.dynamic.ResourceProvider = {
  async create() {
    return { id: "import", outs: { report: {}, sourceFingerprint: "", summary: "" } };
  },
};

export class SqliteImport extends pulumi.dynamic.Resource {
  declare readonly report: pulumi.Output<Record<string, unknown>>;
  declare readonly sourceFingerprint: pulumi.Output<string>;
  declare readonly summary: pulumi.Output<string>;

  constructor(name: string, args: SqliteImportArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      provider,
      name,
      { ...args, report: undefined, sourceFingerprint: undefined, summary: undefined },
      opts,
      "plex-migrate",
      "SqliteImport",
    );
  }
}
