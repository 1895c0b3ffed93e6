/**
 * What the SchemaMigrations dynamic provider (components/schema-migrations.ts) does, as plain
 * functions tested on their own. The provider object only loads this module and delegates.
 *
 * * create/update: run the migrator up to the last of the requested migrations;
 * * diff: an update exactly when one of the requested migrations is not applied yet (it asks the
 *   database), never a replacement;
 * * read: the applied migrations as the database records them;
 * * delete: nothing. The schema holds Tautulli's history; dropping it is never a side effect of
 *   `pulumi destroy` (`npm run migrate -- down` exists for people who mean it).
 *
 * The outputs echo the database URL so that `read` (refresh) can reach the database: the
 * component marks it with `additionalSecretOutputs`, and the engine keeps an output secret when
 * the same-named input was (this provider does not accept secrets). No message ever holds it.
 */
import type * as pulumi from "@pulumi/pulumi";
import { redactMessage } from "../redact";
import { pgClientConfig } from "./client-config";
import { listMigrationNames, migrateUp, migrationStatus, MigrationRefusedError } from "./migrator";
import { cannotReach } from "./reach";

/** The value the engine passes for an input that is not known yet (preview). */
export const UNKNOWN_VALUE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export interface SchemaMigrationsInputs {
  /** App-role URL of the Tautulli database (secret). */
  databaseUrl: string;
  /** Migrations to have applied: a prefix of the files in migrations/, in order. */
  migrations: string[];
  /** Stamp a database that already holds the baseline schema but no record. */
  stamp: boolean;
  /** How `pulumi up` reaches the server, for messages (PostgresInstance's reachedAt). */
  reachedAt?: string;
}

export interface SchemaMigrationsOutputs {
  /** Secret (see the module comment). */
  databaseUrl: string;
  migrations: string[];
  stamp: boolean;
  reachedAt?: string;
  /** Every migration the database records, in order. */
  applied: string[];
  /** The last applied migration. */
  schemaVersion: string;
  /** What the last create/update ran, and what it stamped. */
  executed: string[];
  stamped: string[];
}

const isUnknown = (value: unknown): boolean =>
  value === UNKNOWN_VALUE || (Array.isArray(value) && value.some((item) => item === UNKNOWN_VALUE));

/** Problems with the inputs, as the engine's check failures (empty when fine). */
export function checkInputs(
  inputs: Partial<SchemaMigrationsInputs>,
): pulumi.dynamic.CheckFailure[] {
  const failures: pulumi.dynamic.CheckFailure[] = [];
  if (!isUnknown(inputs.databaseUrl)) {
    if (typeof inputs.databaseUrl !== "string" || inputs.databaseUrl === "") {
      failures.push({ property: "databaseUrl", reason: "is required: the Tautulli database URL" });
    } else {
      try {
        pgClientConfig(inputs.databaseUrl);
      } catch (err) {
        failures.push({ property: "databaseUrl", reason: (err as Error).message });
      }
    }
  }
  if (!isUnknown(inputs.migrations)) {
    const known = listMigrationNames();
    const requested = inputs.migrations;
    if (!Array.isArray(requested) || requested.length === 0) {
      failures.push({
        property: "migrations",
        reason: "must list at least one migration (omit it to apply them all)",
      });
    } else {
      const unknown = requested.filter((name) => !known.includes(name));
      if (unknown.length > 0) {
        failures.push({
          property: "migrations",
          reason: `unknown migration${unknown.length === 1 ? "" : "s"} ${unknown.join(", ")}; this program has ${known.join(", ")}`,
        });
      } else if (requested.some((name, i) => known[i] !== name)) {
        failures.push({
          property: "migrations",
          reason: `must be the first ${requested.length} migrations in order (${known.slice(0, requested.length).join(", ")}); migrations cannot be skipped`,
        });
      }
    }
  }
  return failures;
}

function assertValid(inputs: SchemaMigrationsInputs): void {
  const failures = checkInputs(inputs);
  if (failures.length > 0) {
    throw new Error(failures.map((f) => `${f.property}: ${f.reason}`).join("; "));
  }
}

/** A stable, secret-free id: where the schema lives. */
export function resourceId(databaseUrl: string): string {
  const config = pgClientConfig(databaseUrl);
  return `${config.host}:${config.port}/${config.database}`;
}

/** create and update: migrate up to the last requested migration. */
export async function applySchema(
  inputs: SchemaMigrationsInputs,
): Promise<{ id: string; outs: SchemaMigrationsOutputs }> {
  assertValid(inputs);
  const lines: string[] = [];
  try {
    const result = await migrateUp(inputs.databaseUrl, {
      to: inputs.migrations[inputs.migrations.length - 1],
      stamp: inputs.stamp,
      log: (line) => lines.push(line),
    });
    return {
      id: resourceId(inputs.databaseUrl),
      outs: {
        databaseUrl: inputs.databaseUrl,
        migrations: inputs.migrations,
        stamp: inputs.stamp,
        ...(inputs.reachedAt === undefined ? {} : { reachedAt: inputs.reachedAt }),
        applied: result.applied,
        schemaVersion: result.schemaVersion,
        executed: result.executed,
        stamped: result.stamped,
      },
    };
  } catch (err) {
    // Keep the steps that did run in the message: the engine shows only the error.
    const steps = lines.length > 0 ? ` (steps: ${lines.join("; ")})` : "";
    const error = new Error(
      redactMessage(`${(err as Error).message}${steps}`, [inputs.databaseUrl]),
    );
    if (err instanceof MigrationRefusedError) error.name = err.name;
    throw error;
  }
}

/** The database's record of migrations, or the error naming where it was expected. */
async function statusOrUnreachable(databaseUrl: string, reachedAt: string | undefined) {
  try {
    return await migrationStatus(databaseUrl);
  } catch (err) {
    if (err instanceof MigrationRefusedError) throw err;
    throw cannotReach("the Tautulli database", databaseUrl, reachedAt, err);
  }
}

/**
 * diff: an update exactly when a requested migration is pending; never a replacement. A database
 * that cannot be asked fails the preview (an unknown answer is not a change).
 */
export async function diffSchema(
  _olds: Partial<SchemaMigrationsOutputs>,
  news: SchemaMigrationsInputs,
): Promise<pulumi.dynamic.DiffResult> {
  const update: pulumi.dynamic.DiffResult = {
    changes: true,
    replaces: [],
    deleteBeforeReplace: false,
  };
  // Not known yet (a database being created in this same update): it will be migrated.
  if (isUnknown(news.databaseUrl) || isUnknown(news.migrations)) return update;
  assertValid(news);
  const status = await statusOrUnreachable(news.databaseUrl, news.reachedAt);
  if (status.unknown.length > 0) {
    throw new MigrationRefusedError(
      "newer-database",
      `database is newer than this program: it records migration${status.unknown.length === 1 ? "" : "s"} ` +
        `${status.unknown.join(", ")} that this program does not know. Use the plex-migrate version that applied them.`,
    );
  }
  const pending = news.migrations.filter((name) => !status.applied.includes(name));
  return { ...update, changes: pending.length > 0 };
}

/** read (refresh): the database's record of applied migrations. */
export async function readSchema(
  id: string,
  props: SchemaMigrationsOutputs,
): Promise<{ id: string; props: SchemaMigrationsOutputs }> {
  const status = await statusOrUnreachable(props.databaseUrl, props.reachedAt);
  return { id, props: { ...props, applied: status.applied, schemaVersion: status.schemaVersion } };
}
