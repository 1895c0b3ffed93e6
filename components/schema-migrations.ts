/**
 * SchemaMigrations (STUB — engineer A replaces the internals): a dynamic resource that runs the
 * pending Umzug migrations. Contract: /work/notes/contracts.md.
 */
import * as pulumi from "@pulumi/pulumi";

export interface SchemaMigrationsArgs {
  /** App-role database URL (secret). */
  databaseUrl: pulumi.Input<string>;
  /** Migration names; defaults to the files in migrations/. */
  migrations?: pulumi.Input<string[]>;
}

const provider: pulumi.dynamic.ResourceProvider = {
  async create() {
    return { id: "schema", outs: { applied: [], schemaVersion: "" } };
  },
};

export class SchemaMigrations extends pulumi.dynamic.Resource {
  declare readonly applied: pulumi.Output<string[]>;
  declare readonly schemaVersion: pulumi.Output<string>;

  constructor(name: string, args: SchemaMigrationsArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      provider,
      name,
      { ...args, applied: undefined, schemaVersion: undefined },
      opts,
      "plex-migrate",
      "SchemaMigrations",
    );
  }
}
