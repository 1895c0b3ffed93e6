/**
 * The one migrator: Umzug running the Sequelize QueryInterface migrations of `migrations/`, by
 * these rules:
 *
 * * a fresh database is initialised; an existing one gets only its pending migrations;
 * * a database that records a migration this program does not know is refused ("database is
 *   newer than this program");
 * * a database that already holds Tautulli tables but no migration record is refused, unless a
 *   stamp is asked for and its schema verifiably matches the baseline the migrations create;
 * * each migration and its record in `plex_migrate_migrations` commit in one transaction;
 * * a PostgreSQL advisory lock serialises concurrent runs on a database, so each migration is
 *   applied once however many migrators start.
 *
 * Used by the CLI (`npm run migrate`), the SchemaMigrations dynamic provider, the import and the
 * rehearsal. Passwords never appear in messages: every error is passed through redactMessage.
 */
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { DataTypes, ModelStatic, Model, QueryInterface, Sequelize, Transaction } from "sequelize";
import { MigrationFn, MigrationParams, SequelizeStorage, Umzug } from "umzug";
import { redactMessage, redactUrl } from "../redact";
import { openClient, pgClientConfig } from "./client-config";
import { expectedPostgresSchema, MIGRATIONS_TABLE } from "./schema-contract";
import { compareSchemas, introspectPostgresSchema } from "./schema-introspection";
import { loadTautulliReference, REFERENCE_FILES, ReferenceName } from "./tautulli-reference";

export { MIGRATIONS_TABLE };

/** Where the migration files live. */
export const MIGRATIONS_DIR = path.resolve(__dirname, "..", "..", "migrations");

/**
 * The last migration of the baseline: together with those before it, it creates exactly the
 * Tautulli v2.17.2 schema (reference/tautulli/schema-current.sql). A stamp marks these as applied
 * on a database whose schema matches; later migrations then run as usual.
 */
export const BASELINE_MIGRATION = "20261201000100-create-tautulli-indexes";

/** A migration file name: `<yyyymmddhhmmss>-<what>.ts` (or `.js` once compiled). */
const MIGRATION_FILE = /^(\d{14}-[a-z0-9-]+)\.(ts|js)$/;

/** Session-level advisory lock key ("plex", "migr"); advisory locks are per database. */
export const MIGRATION_LOCK_KEY: readonly [number, number] = [
  Buffer.from("plex").readInt32BE(0),
  Buffer.from("migr").readInt32BE(0),
];

/** What every migration's `up`/`down` receives as `context`. */
export interface MigrationContext {
  queryInterface: QueryInterface;
  sequelize: Sequelize;
  /** The transaction this migration runs in; pass it to every query. */
  readonly transaction: Transaction;
  /** Whether `down` may drop tables that hold rows (the CLI's `--allow-data-loss`). */
  readonly allowDataLoss: boolean;
  /** Drops `tables` in order; refuses, naming them, when one holds rows and allowDataLoss is off. */
  dropTables(tables: string[]): Promise<void>;
}

/** The type of a migration's `up` and `down`. */
export type Migration = MigrationFn<MigrationContext>;

export type RefusalReason =
  | "newer-database"
  | "unstamped-database"
  | "stamp-mismatch"
  | "unknown-migration"
  | "lock-timeout"
  | "data-loss";

/** A rule of the migrator said no; nothing was changed. The message names the problem and fix. */
export class MigrationRefusedError extends Error {
  constructor(
    readonly reason: RefusalReason,
    message: string,
  ) {
    super(message);
    this.name = "MigrationRefusedError";
  }
}

export interface MigrateUpOptions {
  /**
   * The database already holds Tautulli tables but no migration record: verify that its schema is
   * the baseline and, if so, record the baseline migrations as applied without running them.
   * @default false
   */
  stamp?: boolean;
  /** Apply pending migrations up to and including this one. @default the last one */
  to?: string;
  /** Receives one line per step (no secrets). @default discard */
  log?: (line: string) => void;
  /** How long to wait for another migrator holding the lock. @default 600000 (10 min) */
  lockTimeoutMs?: number;
}

export interface MigrateUpResult {
  /** Every migration recorded in the database after the run, in order. */
  applied: string[];
  /** The migrations this run executed. */
  executed: string[];
  /** The migrations this run recorded by stamping (not executed). */
  stamped: string[];
  /** The last applied migration ("" when none). */
  schemaVersion: string;
}

export interface MigrationStatus {
  applied: string[];
  /** Known migrations not applied yet, in the order they would run. */
  pending: string[];
  /** Applied migrations this program does not know (the database is newer). */
  unknown: string[];
  schemaVersion: string;
  /** Tautulli tables present while no migration is recorded (the database needs a stamp). */
  unrecordedTautulliTables: string[];
}

export interface MigrateDownOptions {
  /**
   * Revert down to and including this migration (Umzug's meaning), or 0 for all.
   * @default only the last applied migration
   */
  to?: string | 0;
  /** Let `down` drop tables that hold rows. @default false */
  allowDataLoss?: boolean;
  log?: (line: string) => void;
  lockTimeoutMs?: number;
}

export interface MigrateDownResult {
  reverted: string[];
  applied: string[];
  schemaVersion: string;
}

/** Names of the migration files, sorted (timestamp order). */
export function listMigrationNames(directory = MIGRATIONS_DIR): string[] {
  const names = new Set<string>();
  for (const file of fs.readdirSync(directory)) {
    if (file.endsWith(".d.ts")) continue;
    const match = MIGRATION_FILE.exec(file);
    if (match) names.add(match[1]);
  }
  return [...names].sort();
}

function migrationPath(name: string, directory = MIGRATIONS_DIR): string {
  const ts = path.join(directory, `${name}.ts`);
  return fs.existsSync(ts) ? ts : path.join(directory, `${name}.js`);
}

/** Every table name any Tautulli release (in the references) creates. */
function tautulliTableNames(): Set<string> {
  const names = new Set<string>();
  for (const reference of Object.keys(REFERENCE_FILES) as ReferenceName[]) {
    for (const table of loadTautulliReference(reference).tables)
      names.add(table.name.toLowerCase());
  }
  return names;
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

interface DatabaseState {
  schema: string;
  applied: string[];
  unrecordedTautulliTables: string[];
}

async function readState(client: Client): Promise<DatabaseState> {
  const schema = (await client.query<{ schema: string }>("SELECT current_schema() AS schema"))
    .rows[0].schema;
  const tables = await client.query<{ name: string }>(
    "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
    [schema],
  );
  const names = tables.rows.map((r) => r.name);
  let applied: string[] = [];
  if (names.includes(MIGRATIONS_TABLE)) {
    const rows = await client.query<{ name: string }>(
      `SELECT name FROM ${quoteIdent(schema)}.${quoteIdent(MIGRATIONS_TABLE)} ORDER BY name`,
    );
    applied = rows.rows.map((r) => r.name);
  }
  const tautulli = tautulliTableNames();
  const unrecordedTautulliTables =
    applied.length === 0 ? names.filter((n) => tautulli.has(n)).sort() : [];
  return { schema, applied, unrecordedTautulliTables };
}

function newerDatabaseError(unknown: string[], known: string[]): MigrationRefusedError {
  return new MigrationRefusedError(
    "newer-database",
    `database is newer than this program: it records migration${unknown.length === 1 ? "" : "s"} ` +
      `${unknown.join(", ")} that this program does not know (it knows up to ${known[known.length - 1]}). ` +
      "Nothing was changed. Use the plex-migrate version that applied them, or a newer one.",
  );
}

/** A connected client, or an error that names the server without its password. */
async function connect(databaseUrl: string): Promise<Client> {
  const config = pgClientConfig(databaseUrl);
  try {
    return (await openClient(config)).client;
  } catch (err) {
    throw new Error(
      `cannot connect to PostgreSQL at ${redactUrl(databaseUrl)}: ${redactMessage((err as Error).message, [databaseUrl])}`,
    );
  }
}

/** Connects, takes the advisory lock (waiting up to timeoutMs), runs `work`, always unlocks. */
async function withLock<T>(
  databaseUrl: string,
  timeoutMs: number,
  log: (line: string) => void,
  work: (client: Client) => Promise<T>,
): Promise<T> {
  const client = await connect(databaseUrl);
  // An error on an idle client (server restart) must not crash the process; the next query fails.
  client.on("error", () => undefined);
  try {
    const deadline = Date.now() + timeoutMs;
    let waiting = false;
    for (;;) {
      const { rows } = await client.query<{ locked: boolean }>(
        "SELECT pg_try_advisory_lock($1, $2) AS locked",
        [...MIGRATION_LOCK_KEY],
      );
      if (rows[0].locked) break;
      if (!waiting) log("another migration run holds the lock on this database; waiting for it");
      waiting = true;
      if (Date.now() > deadline) {
        throw new MigrationRefusedError(
          "lock-timeout",
          `another migration run has held the lock on ${redactUrl(databaseUrl)} for over ${Math.round(timeoutMs / 1000)} s. ` +
            "Nothing was changed. Wait for it to finish (or end it) and run again.",
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    try {
      return await work(client);
    } finally {
      await client
        .query("SELECT pg_advisory_unlock($1, $2)", [...MIGRATION_LOCK_KEY])
        .catch(() => undefined);
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

interface MigrationRow extends Model {
  name: string;
}

/** SequelizeStorage that records each migration inside the migration's own transaction. */
class TransactionalStorage extends SequelizeStorage {
  constructor(private readonly rows: ModelStatic<MigrationRow>) {
    super({ model: rows });
  }
  async logMigration({ name, context }: MigrationParams<MigrationContext>): Promise<void> {
    await this.rows.create({ name }, { transaction: context.transaction });
  }
  async unlogMigration({ name, context }: MigrationParams<MigrationContext>): Promise<void> {
    await this.rows.destroy({ where: { name }, transaction: context.transaction });
  }
  // The table is created once, under the lock, before Umzug starts (see openUmzug).
  async syncModel(): Promise<void> {}
}

interface Session {
  umzug: Umzug<MigrationContext>;
  sequelize: Sequelize;
  model: ModelStatic<MigrationRow>;
  context: MigrationContext;
  /** Rolls back the transaction of a migration that failed. */
  rollbackOpen(): Promise<void>;
}

/** Sequelize on the server of `databaseUrl`, with the same TLS and timeouts as `pg`. */
function sequelizeFor(databaseUrl: string): Sequelize {
  const config = pgClientConfig(databaseUrl);
  return new Sequelize(config.database!, config.user!, config.password as string, {
    dialect: "postgres",
    host: config.host,
    port: config.port,
    logging: false,
    dialectOptions: {
      ssl: config.ssl,
      application_name: config.application_name,
      connectionTimeoutMillis: config.connectionTimeoutMillis,
    },
    pool: { max: 2, min: 0 },
  });
}

/** Drops `tables` in `transaction`; one that holds rows is refused unless data loss is allowed. */
async function dropTables(
  sequelize: Sequelize,
  tables: string[],
  transaction: Transaction,
  allowDataLoss: boolean,
): Promise<void> {
  const queryInterface = sequelize.getQueryInterface();
  if (!allowDataLoss) {
    const holding: string[] = [];
    for (const table of tables) {
      const [rows] = await sequelize.query(
        `SELECT EXISTS (SELECT 1 FROM ${queryInterface.quoteIdentifier(table)}) AS has_rows`,
        { transaction },
      );
      if ((rows as { has_rows: boolean }[])[0]?.has_rows) holding.push(table);
    }
    if (holding.length > 0) {
      throw new MigrationRefusedError(
        "data-loss",
        `refusing to drop table${holding.length === 1 ? "" : "s"} ${holding.join(", ")}: ` +
          `${holding.length === 1 ? "it holds" : "they hold"} rows. Nothing was changed. Back the data up; ` +
          "run down with --allow-data-loss only if it really may be deleted.",
      );
    }
  }
  for (const table of tables) await queryInterface.dropTable(table, { transaction });
}

async function openUmzug(
  databaseUrl: string,
  names: string[],
  log: (line: string) => void,
  allowDataLoss: boolean,
): Promise<Session> {
  const sequelize = sequelizeFor(databaseUrl);
  const model = sequelize.define<MigrationRow>(
    "PlexMigrateMigration",
    {
      name: { type: DataTypes.STRING(255), primaryKey: true, allowNull: false },
    },
    { tableName: MIGRATIONS_TABLE, timestamps: true, createdAt: "applied_at", updatedAt: false },
  );
  await model.sync();

  let current: Transaction | undefined;
  const queryInterface = sequelize.getQueryInterface();
  const context: MigrationContext = {
    queryInterface,
    sequelize,
    get transaction(): Transaction {
      if (!current)
        throw new Error("MigrationContext.transaction is only available while a migration runs");
      return current;
    },
    allowDataLoss,
    dropTables: (tables: string[]) =>
      dropTables(sequelize, tables, context.transaction, allowDataLoss),
  };

  const umzug = new Umzug<MigrationContext>({
    migrations: names.map((name) => {
      const file = migrationPath(name);
      return {
        name,
        path: file,
        // Loaded when run: the engine's dynamic-provider process has ts-node registered by then.
        up: async (params) => (require(file) as { up: Migration }).up(params),
        down: async (params) => (require(file) as { down: Migration }).down(params),
      };
    }),
    context,
    storage: new TransactionalStorage(model),
    logger: undefined,
  });
  const started = new Map<string, number>();
  const begin = async ({ name }: { name: string }) => {
    started.set(name, Date.now());
    current = await sequelize.transaction();
  };
  const commit =
    (verb: string) =>
    async ({ name }: { name: string }) => {
      await current!.commit();
      current = undefined;
      log(
        `${verb} ${name} (${((Date.now() - (started.get(name) ?? Date.now())) / 1000).toFixed(2)} s)`,
      );
    };
  umzug.on("migrating", async (params) => {
    log(`applying ${params.name}`);
    await begin(params);
  });
  umzug.on("migrated", commit("applied"));
  umzug.on("reverting", async (params) => {
    log(`reverting ${params.name}`);
    await begin(params);
  });
  umzug.on("reverted", commit("reverted"));
  return {
    umzug,
    sequelize,
    model,
    context,
    async rollbackOpen() {
      if (current) {
        const transaction = current;
        current = undefined;
        await transaction.rollback().catch(() => undefined);
      }
    },
  };
}

/** A refusal as it is; anything else with the failing migration named, secrets removed. */
function explain(err: unknown, databaseUrl: string): Error {
  if (err instanceof MigrationRefusedError) return err;
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof MigrationRefusedError) return cause;
  // Umzug's MigrationError message already names the migration and quotes the original error.
  const message = redactMessage(String((err as Error)?.message ?? err), [databaseUrl]);
  return new Error(
    `${message}. The failed migration was rolled back; the ones before it stay applied.`,
  );
}

function checkTarget(to: string | undefined, known: string[]): void {
  if (to !== undefined && !known.includes(to)) {
    throw new MigrationRefusedError(
      "unknown-migration",
      `unknown migration "${to}"; known migrations: ${known.join(", ")}`,
    );
  }
}

/** Refuses, listing the differences, unless the database's schema is the baseline's. */
async function verifyBaselineSchema(client: Client, state: DatabaseState): Promise<void> {
  const actual = await introspectPostgresSchema(client, state.schema);
  const differences = compareSchemas(expectedPostgresSchema(), actual);
  if (differences.length === 0) return;
  const shown = differences.slice(0, 15).map((d) => `  - ${d}`);
  if (differences.length > shown.length)
    shown.push(`  - ... and ${differences.length - shown.length} more`);
  throw new MigrationRefusedError(
    "stamp-mismatch",
    `cannot stamp: the existing Tautulli tables do not match the schema these migrations create ` +
      `(Tautulli ${loadTautulliReference().tautulliVersion}, docs/schema.md). Nothing was changed. ` +
      `Differences:\n${shown.join("\n")}\nUse an empty database, or fix the schema first.`,
  );
}

/** Records the baseline migrations as applied, in one transaction. */
async function stampBaseline(session: Session, known: string[]): Promise<string[]> {
  const baseline = known.slice(0, known.indexOf(BASELINE_MIGRATION) + 1);
  await session.sequelize.transaction(async (transaction) => {
    for (const name of baseline) await session.model.create({ name }, { transaction });
  });
  return baseline;
}

/**
 * Brings the database up to date (or up to `to`) under the rules above.
 * @throws MigrationRefusedError when a rule refuses (nothing changed), Error when a migration failed
 *   (that migration rolled back; earlier ones stay applied).
 */
export async function migrateUp(
  databaseUrl: string,
  options: MigrateUpOptions = {},
): Promise<MigrateUpResult> {
  const log = options.log ?? (() => undefined);
  const known = listMigrationNames();
  checkTarget(options.to, known);
  return withLock(databaseUrl, options.lockTimeoutMs ?? 600_000, log, async (client) => {
    const state = await readState(client);
    const unknown = state.applied.filter((name) => !known.includes(name));
    if (unknown.length > 0) throw newerDatabaseError(unknown, known);
    if (state.unrecordedTautulliTables.length > 0 && !options.stamp) {
      throw new MigrationRefusedError(
        "unstamped-database",
        `database ${redactUrl(databaseUrl)} already holds Tautulli tables ` +
          `(${state.unrecordedTautulliTables.join(", ")}) but no record of plex-migrate migrations ` +
          `(table ${MIGRATIONS_TABLE}). Nothing was changed. If it was created with this schema by ` +
          "other means, run `npm run migrate -- up --stamp` (the stamp checks every table, column and " +
          "index first); otherwise use an empty database.",
      );
    }
    if (state.unrecordedTautulliTables.length > 0) await verifyBaselineSchema(client, state);
    const session = await openUmzug(databaseUrl, known, log, false);
    try {
      let stamped: string[] = [];
      if (state.unrecordedTautulliTables.length > 0) {
        stamped = await stampBaseline(session, known);
        log(
          `stamped ${stamped.join(", ")} (schema verified: ` +
            `${state.unrecordedTautulliTables.length} Tautulli tables match)`,
        );
      } else if (options.stamp) {
        log(
          state.applied.length > 0
            ? "already stamped; nothing to stamp"
            : "database is empty; nothing to stamp",
        );
      }
      if (state.applied.length === 0 && stamped.length === 0) log("initialising an empty database");
      let executed: string[] = [];
      // `to` already applied (the database is ahead of the target): nothing to do, never a downgrade.
      const reached =
        options.to !== undefined && [...state.applied, ...stamped].includes(options.to);
      try {
        if (!reached) {
          executed = (await session.umzug.up(options.to ? { to: options.to } : {})).map(
            (m) => m.name,
          );
        }
      } catch (err) {
        await session.rollbackOpen();
        throw explain(err, databaseUrl);
      }
      const applied = (await session.model.findAll({ order: [["name", "ASC"]] })).map(
        (m) => m.name,
      );
      if (executed.length === 0 && stamped.length === 0) log("schema is up to date");
      return { applied, executed, stamped, schemaVersion: applied[applied.length - 1] ?? "" };
    } finally {
      await session.sequelize.close();
    }
  });
}

/** Reads the migration state without changing anything (no lock, no meta table created). */
export async function migrationStatus(databaseUrl: string): Promise<MigrationStatus> {
  const known = listMigrationNames();
  const client = await connect(databaseUrl);
  try {
    const state = await readState(client);
    return {
      applied: state.applied,
      pending: known.filter((name) => !state.applied.includes(name)),
      unknown: state.applied.filter((name) => !known.includes(name)),
      schemaVersion: state.applied[state.applied.length - 1] ?? "",
      unrecordedTautulliTables: state.unrecordedTautulliTables,
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Reverts the last migration, or down to and including `to` (0: all). Refuses to drop tables
 * holding rows unless allowDataLoss. Never called by `pulumi destroy`.
 */
export async function migrateDown(
  databaseUrl: string,
  options: MigrateDownOptions = {},
): Promise<MigrateDownResult> {
  const log = options.log ?? (() => undefined);
  const known = listMigrationNames();
  if (options.to !== 0) checkTarget(options.to, known);
  return withLock(databaseUrl, options.lockTimeoutMs ?? 600_000, log, async (client) => {
    const state = await readState(client);
    const unknown = state.applied.filter((name) => !known.includes(name));
    if (unknown.length > 0) throw newerDatabaseError(unknown, known);
    if (typeof options.to === "string" && !state.applied.includes(options.to)) {
      throw new MigrationRefusedError(
        "unknown-migration",
        `migration "${options.to}" is not applied; applied: ${state.applied.join(", ") || "none"}`,
      );
    }
    const session = await openUmzug(databaseUrl, known, log, options.allowDataLoss ?? false);
    try {
      let reverted: string[];
      try {
        const down = options.to === undefined ? {} : { to: options.to };
        reverted = (await session.umzug.down(down)).map((m) => m.name);
      } catch (err) {
        await session.rollbackOpen();
        throw explain(err, databaseUrl);
      }
      const applied = (await session.model.findAll({ order: [["name", "ASC"]] })).map(
        (m) => m.name,
      );
      if (reverted.length === 0) log("nothing to revert");
      return { reverted, applied, schemaVersion: applied[applied.length - 1] ?? "" };
    } finally {
      await session.sequelize.close();
    }
  });
}
