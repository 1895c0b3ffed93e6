/**
 * SchemaMigrations: a dynamic resource that brings the Tautulli database's schema up to date
 * during `pulumi up` with the one migrator (lib/postgres/migrator.ts). Preview shows an update
 * exactly when migrations are pending; `pulumi destroy` never drops anything.
 *
 * The provider object is serialized by the engine and run in another process, so its methods
 * only load lib/postgres/schema-migrations-provider.ts (tested on its own) and delegate.
 */
import * as pulumi from "@pulumi/pulumi";
import type * as ProviderModule from "../lib/postgres/schema-migrations-provider";
import { listMigrationNames } from "../lib/postgres/migrator";
import { loadProjectModule } from "./provider-runtime";

export interface SchemaMigrationsArgs {
  /** URL of the Tautulli database as its owner role, reachable from `pulumi up` (secret). */
  databaseUrl: pulumi.Input<string>;
  /** How `pulumi up` reaches the server, named when it cannot (PostgresInstance's reachedAt). */
  reachedAt?: pulumi.Input<string>;
  /**
   * Migrations to have applied: a prefix of the files in `migrations/`, in order.
   * @default every migration in migrations/
   */
  migrations?: pulumi.Input<string[]>;
  /**
   * Accept a database that already holds the Tautulli schema but no migration record, after
   * verifying every table, column and index against the baseline.
   * @default false
   */
  stamp?: pulumi.Input<boolean>;
}

/** Loads the implementation inside the engine's provider process. */
function implementation(): typeof ProviderModule {
  return loadProjectModule<typeof ProviderModule>("lib/postgres/schema-migrations-provider");
}

export const schemaMigrationsProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news) {
    return { inputs: news, failures: implementation().checkInputs(news) };
  },
  async create(inputs) {
    return implementation().applySchema(inputs);
  },
  async diff(_id, olds, news) {
    return implementation().diffSchema(olds, news);
  },
  async update(_id, _olds, news) {
    const { outs } = await implementation().applySchema(news);
    return { outs };
  },
  async read(id, props) {
    return implementation().readSchema(id, props);
  },
  async delete() {
    // Never drops: the schema holds Tautulli's history (`npm run migrate -- down` is explicit).
  },
};

export class SchemaMigrations extends pulumi.dynamic.Resource {
  /** Every migration the database records, in order. */
  declare readonly applied: pulumi.Output<string[]>;
  /** Name of the last applied migration (the import checks it). */
  declare readonly schemaVersion: pulumi.Output<string>;
  /** What the last create/update executed, and what it stamped. */
  declare readonly executed: pulumi.Output<string[]>;
  declare readonly stamped: pulumi.Output<string[]>;

  constructor(name: string, args: SchemaMigrationsArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      schemaMigrationsProvider,
      name,
      {
        databaseUrl: pulumi.secret(args.databaseUrl),
        migrations: args.migrations ?? listMigrationNames(),
        stamp: args.stamp ?? false,
        reachedAt: args.reachedAt,
        applied: undefined,
        schemaVersion: undefined,
        executed: undefined,
        stamped: undefined,
      },
      {
        ...opts,
        additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "databaseUrl"],
      },
      "plex-migrate",
      "SchemaMigrations",
    );
  }
}
