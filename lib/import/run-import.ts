/**
 * `runImport`: tautulli.db -> the migrated PostgreSQL schema, all or nothing. It reads as its
 * phases: checkTarget, openSource (+ sourceFindings), then in one transaction prepareTarget,
 * copyTables, verifySchemaObjects, the integrity verdict and source check, buildReport (pure),
 * COMMIT.
 *
 * 1. Check the file (header, size, SQLite integrity check, Tautulli tables, release) and take its
 *    fingerprint; a fingerprint already imported is a no-op.
 * 2. In one transaction: lock the Tautulli tables, refuse a non-empty target unless overwrite is
 *    confirmed, truncate (children first), stream every table with COPY, move each sequence past
 *    max(id) and sqlite_sequence.seq, verify (row counts, content checksums computed on both
 *    sides, indexes and constraints unchanged and valid, sequences), stamp, commit. Any failure,
 *    a dry run, or a lost connection leaves the target exactly as it was.
 */
import * as os from "os";
import { Client, ClientConfig } from "pg";
import { openClient, pgClientConfig } from "../postgres/client-config";
import { redactMessage, redactUrl } from "../redact";
import { copyTable, CopyProgress, ParallelReads, TableCopyResult } from "./copy-table";
import type { DroppedRows } from "./dbcheck";
import type { EncodedTable } from "./table-encoder";
import { ImportError, isImportError } from "./errors";
import { isLossyRule } from "./normalize";
import { buildPlan, ImportPlan, TablePlan } from "./plan";
import { quoteIdent } from "./pg-text";
import type { ImportReport, ImportWarning, TableReport } from "./report";
import { SourceWorker } from "./source-worker";
import type { OpenResult } from "./source-worker-protocol";
import {
  inspectSourceFile,
  IntegrityMode,
  SourceFileFacts,
  sourceFingerprint,
} from "./sqlite-source";
import { appliedSchemaVersion, latestStamp, writeStamp } from "./stamp";
import {
  DeferrableIndex,
  deferrableIndexes,
  readSchemaObjects,
  readTargetSchema,
  SchemaObjects,
  TargetSchema,
} from "./target-schema";

export interface ImportOptions {
  /** Path of tautulli.db (a `-wal` beside it is read too). */
  sqlitePath: string;
  /** Target database URL (secret: never logged or reported). */
  databaseUrl: string;
  /** Confirms that a non-empty target may be replaced. @default false */
  overwrite?: boolean;
  /** Do everything, verification included, then roll back. @default false */
  dryRun?: boolean;
  /** SQLite check before the import. @default "full" */
  integrityCheck?: IntegrityMode;
  /** Fail unless the target's last applied migration has this name. @default no check */
  expectedSchemaVersion?: string;
  /** Import even if this fingerprint was already imported (still under the overwrite rule). @default false */
  force?: boolean;
  /** The fingerprint, when the caller already computed it (the provider, from the download). */
  sourceFingerprint?: string;
  /** Threads reading and encoding rows in parallel (big tables are split between them). @default the CPU count, at most 4 */
  readers?: number;
  /** Tuning of the parallel reads (tests use tiny blocks to exercise them). */
  parallelReads?: ParallelReads;
  /** Progress of the long steps (the CLI renders a progress line from it). */
  onProgress?: (event: ImportProgress) => void;
  /** Log lines (steps, warnings); never holds secrets. */
  log?: (line: string) => void;
}

export interface ImportProgress {
  phase: "check" | "copy" | "verify" | "commit";
  message: string;
  table?: string;
  tableRows?: number;
  tableTotalRows?: number;
  /** Rows copied so far, all tables. */
  rows: number;
  totalRows: number;
  rowsPerSecond: number;
  /** Estimated seconds until the copy ends, when known. */
  etaSeconds?: number;
}

const APPLICATION_NAME = "plex-migrate-import";
/** Server-side memory for sorting during index builds (PostgreSQL's, not this process's). */
const INDEX_BUILD_MEMORY = "256MB";

function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

function inferVersion(tableNames: Set<string>): string {
  if (tableNames.has("exports")) return "v2.6.x";
  if (tableNames.has("sessions_continued")) return "v2.2-v2.5";
  return "v2.1 or older";
}

function targetDescription(
  databaseUrl: string,
  schema: TargetSchema | undefined,
  schemaVersion: string | null,
): ImportReport["target"] {
  const url = new URL(databaseUrl);
  return {
    host: url.hostname,
    port: Number(url.port || 5432),
    database: decodeURIComponent(url.pathname.replace(/^\//, "")),
    user: decodeURIComponent(url.username),
    schema: schema?.schema ?? "",
    serverVersion: schema?.serverVersion ?? "",
    schemaVersion,
  };
}

const CONNECTION_LOST_CODES = new Set([
  "57P01",
  "57P02",
  "57P03",
  "08000",
  "08003",
  "08006",
  "ECONNRESET",
  "EPIPE",
]);

/** Turns any failure into an ImportError whose text holds no secret. */
function classify(error: unknown, databaseUrl: string, step: string): ImportError {
  if (isImportError(error)) return error;
  const e = error as { code?: string; message?: string; detail?: string; table?: string };
  const message = redactMessage(e.message ?? String(error), [databaseUrl]);
  if (
    (e.code && CONNECTION_LOST_CODES.has(e.code)) ||
    /Connection terminated|connection.*(closed|ended)/i.test(message)
  ) {
    return new ImportError(
      "CONNECTION_LOST",
      `The connection to PostgreSQL was lost while ${step} (${message}). The import runs in one transaction, so nothing was committed.`,
      "Check that the server is up and reachable (and that nothing terminates long-running sessions), then run the import again.",
    );
  }
  if (e.code === "55P03") {
    return new ImportError(
      "TARGET_BUSY",
      `The Tautulli tables are in use by another session (${message}).`,
      "Stop whatever uses the database (Tautulli already pointing at PostgreSQL, another import), then run the import again.",
    );
  }
  if (e.code?.startsWith("23")) {
    return new ImportError(
      "COPY_FAILED",
      `PostgreSQL rejected the data while ${step}: ${message}${e.detail ? ` (${redactMessage(e.detail, [databaseUrl])})` : ""}. Nothing was committed.`,
      "The source breaks a constraint of the target schema (duplicates where the schema has a UNIQUE index, say): correct those rows in a copy of tautulli.db and import that copy.",
    );
  }
  return new ImportError(
    "COPY_FAILED",
    `The import failed while ${step}: ${message}. Nothing was committed.`,
    "See the message; fix the cause and run the import again.",
  );
}

async function connect(
  databaseUrl: string,
): Promise<{ client: Client; lost: () => Error | undefined }> {
  let config: ClientConfig;
  try {
    config = pgClientConfig(databaseUrl);
  } catch (error) {
    throw new ImportError(
      "TARGET_UNREACHABLE",
      redactMessage((error as Error).message, [databaseUrl]),
      "Pass the target as postgres://user:password@host:port/database[?sslmode=...].",
    );
  }
  let opened: Awaited<ReturnType<typeof openClient>>;
  try {
    opened = await openClient({ ...config, application_name: APPLICATION_NAME });
  } catch (error) {
    throw new ImportError(
      "TARGET_UNREACHABLE",
      `Cannot connect to PostgreSQL at ${redactUrl(databaseUrl)}: ${redactMessage((error as Error).message, [databaseUrl])}.`,
      "Check host, port, database name, user and password of the target (and sslmode), and that the database exists.",
    );
  }
  const { client } = opened;
  // Fixed session settings: the text forms the checksum compares depend on them.
  await client.query(
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1; SET client_encoding = 'UTF8'; SET statement_timeout = 0",
  );
  return opened;
}

async function rowCountsOf(
  client: Client,
  schema: string,
  tables: string[],
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of tables) {
    const result = await client.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${quoteIdent(schema)}.${quoteIdent(table)}`,
    );
    const n = Number(result.rows[0].n);
    if (n > 0) counts[table] = n;
  }
  return counts;
}

function compareSchemaObjects(before: SchemaObjects, after: SchemaObjects): string[] {
  const problems: string[] = [];
  for (const [name, index] of before.indexes) {
    const now = after.indexes.get(name);
    if (!now) problems.push(`index ${name} is missing`);
    else if (now.definition !== index.definition)
      problems.push(`index ${name} changed: ${now.definition}`);
  }
  for (const [name, index] of after.indexes) {
    if (!index.valid || !index.ready) problems.push(`index ${name} is not valid`);
  }
  for (const [name, constraint] of before.constraints) {
    const now = after.constraints.get(name);
    if (!now) problems.push(`constraint ${name} is missing`);
    else if (now.definition !== constraint.definition) problems.push(`constraint ${name} changed`);
    else if (!now.validated && constraint.validated)
      problems.push(`constraint ${name} is no longer validated`);
  }
  return problems;
}

/** Moves the table's sequence past max(id) and sqlite_sequence.seq; returns what it did. */
async function alignSequence(
  client: Client,
  schema: string,
  plan: TablePlan,
  sqliteSeq: bigint | undefined,
): Promise<NonNullable<TableReport["sequence"]> | undefined> {
  const seq = plan.sequence;
  if (!seq) return undefined;
  const table = `${quoteIdent(schema)}.${quoteIdent(plan.name)}`;
  const max = await client.query<{ max: string | null }>(
    `SELECT max(${quoteIdent(seq.column)})::text AS max FROM ${table}`,
  );
  const maxId = max.rows[0].max === null ? null : BigInt(max.rows[0].max);
  let next = 1n;
  if (maxId !== null && maxId + 1n > next) next = maxId + 1n;
  if (sqliteSeq !== undefined && sqliteSeq + 1n > next) next = sqliteSeq + 1n;
  // ALTER ... RESTART is transactional (setval is not): a rollback restores the sequence too.
  if (seq.identity) {
    await client.query(
      `ALTER TABLE ${table} ALTER COLUMN ${quoteIdent(seq.column)} RESTART WITH ${next}`,
    );
  } else {
    await client.query(`ALTER SEQUENCE ${seq.sequence} RESTART WITH ${next}`);
  }
  // Verify from the sequence itself what nextval() would return.
  const state = await client.query<{ last_value: string; is_called: boolean; increment: string }>(
    `SELECT s.last_value::text, s.is_called, p.seqincrement::text AS increment FROM ${seq.sequence} s, pg_sequence p WHERE p.seqrelid = $1::regclass`,
    [seq.sequence],
  );
  const { last_value, is_called, increment } = state.rows[0];
  const nextValue = is_called ? BigInt(last_value) + BigInt(increment) : BigInt(last_value);
  if (
    (maxId !== null && nextValue <= maxId) ||
    (sqliteSeq !== undefined && nextValue <= sqliteSeq)
  ) {
    throw new ImportError(
      "VERIFICATION_FAILED",
      `Sequence ${seq.sequence} would hand out ${nextValue}, not past max(${seq.column}) = ${maxId} / sqlite_sequence.seq = ${sqliteSeq}.`,
      "Report this as a bug; the target was left unchanged.",
    );
  }
  return {
    name: seq.sequence,
    nextValue: nextValue.toString(),
    maxId: maxId === null ? null : maxId.toString(),
    sqliteSeq: sqliteSeq === undefined ? null : sqliteSeq.toString(),
  };
}

/** Rowids named per rule in the report (the count is always exact). */
const MAX_REPORTED_ROWIDS = 1000;

function droppedRowsWarnings(dropped: readonly DroppedRows[]): ImportWarning[] {
  return dropped.map((d) => ({
    code: "ROWS_DROPPED",
    table: d.table,
    rule: d.rule,
    count: d.rowids.length,
    message: `${d.table}: ${d.rowids.length} row(s) left out by ${d.rule}, as Tautulli's own upgrade deletes them (id ${d.rowids.slice(0, 20).join(", ")}${d.rowids.length > 20 ? ", ..." : ""}).`,
  }));
}

function lossyWarnings(table: string, result: EncodedTable): ImportWarning[] {
  const warnings: ImportWarning[] = [];
  for (const [column, rules] of Object.entries(result.conversionsByColumn)) {
    for (const [rule, count] of Object.entries(rules)) {
      if (!isLossyRule(rule)) continue;
      const samples = result.samples.find(([c, r]) => c === column && r === rule)?.[2] ?? [];
      warnings.push({
        code: "LOSSY_CONVERSION",
        message: `${table}.${column}: ${count} value(s) converted by ${rule} (rowid ${samples.map((s) => `${s.rowid}: ${s.value}`).join(", ")}${count > samples.length ? ", ..." : ""}).`,
        table,
        column,
        rule,
        count,
        samples,
      });
    }
  }
  return warnings;
}

/** The elapsed-time clock, the progress and log sinks, and the step failures are named after. */
interface RunContext {
  options: ImportOptions;
  startedAt: Date;
  elapsed: () => number;
  log: (line: string) => void;
  progress: (event: ImportProgress) => void;
  /** What the import is doing now (a failure says "while <step>"). */
  step: string;
}

/** The target must be a UTF8 database holding the migrated Tautulli tables (at the expected version). */
async function checkTarget(
  client: Client,
  options: ImportOptions,
): Promise<{ target: TargetSchema; schemaVersion: string | null }> {
  const target = await readTargetSchema(client);
  if (target.encoding !== "UTF8") {
    throw new ImportError(
      "TARGET_NOT_MIGRATED",
      `The target database uses encoding ${target.encoding}; Tautulli's text needs UTF8.`,
      "Create the database with ENCODING 'UTF8' (the TautulliDatabase component does) and run the migrations again.",
    );
  }
  if (!target.tables.has("session_history")) {
    throw new ImportError(
      "TARGET_NOT_MIGRATED",
      `The target database ${redactUrl(options.databaseUrl)} has no Tautulli tables (schema ${target.schema}).`,
      "Apply the migrations first (`npm run migrate`, or let the SchemaMigrations resource run), then import.",
    );
  }
  const schemaVersion = await appliedSchemaVersion(client);
  if (
    options.expectedSchemaVersion !== undefined &&
    schemaVersion !== options.expectedSchemaVersion
  ) {
    throw new ImportError(
      "TARGET_SCHEMA_VERSION",
      `The target's last applied migration is ${schemaVersion ?? "none"}, not ${options.expectedSchemaVersion} as expected.`,
      "Apply the pending migrations (or pass the schema version the target really has), then import.",
    );
  }
  return { target, schemaVersion };
}

/**
 * The worker threads reading the file: the primary reader (which removes SQLite's companion
 * files, so it closes last), helper readers, and the integrity checker.
 */
class SourceReaders {
  primary = new SourceWorker();
  helpers: SourceWorker[] = [];
  checker: SourceWorker | undefined;

  get all(): SourceWorker[] {
    return [this.primary, ...this.helpers];
  }

  async close(): Promise<void> {
    await this.checker?.close();
    for (const helper of this.helpers) await helper.close();
    await this.primary.close();
  }
}

/** What the SQLite side holds, as the copy needs it. */
interface SourceState {
  opened: OpenResult;
  plan: ImportPlan;
  storedVersion: string | null;
  tautulliVersion: string;
  sqliteSequences: Map<string, bigint>;
  /** Rows SQLite counts, by target table. */
  sourceRows: Map<string, number>;
  /** Rows to import (without those Tautulli's upgrade deletes), by target table. */
  rowsToImport: Map<string, number>;
  rowidRanges: Map<string, [number, number] | null>;
  totalRows: number;
  /** SQLite's integrity check, running in its own thread; awaited before COMMIT. */
  integrity: Promise<"ok" | "skipped">;
}

/**
 * Opens the file in the reader threads (one read snapshot each), starts SQLite's integrity check
 * in a thread of its own, recognises the release and plans every table.
 */
async function openSource(
  facts: SourceFileFacts,
  target: TargetSchema,
  options: ImportOptions,
  readers: SourceReaders,
  log: (line: string) => void,
): Promise<SourceState> {
  const integrityMode = options.integrityCheck ?? "full";
  const opened = await readers.primary.open(facts.path, true);
  const readerCount = Math.max(1, Math.min(options.readers ?? os.availableParallelism(), 4));
  for (let i = 1; i < readerCount; i++) {
    const helper = new SourceWorker();
    readers.helpers.push(helper);
    await helper.open(facts.path, false);
  }
  let integrity: Promise<"ok" | "skipped"> = Promise.resolve("skipped");
  if (integrityMode !== "off") {
    readers.checker = new SourceWorker();
    await readers.checker.open(facts.path, false);
    integrity = readers.checker.integrityCheck(integrityMode);
    integrity.catch(() => undefined); // awaited before COMMIT
  }
  const plan = buildPlan(opened.tables, target, opened.dropped);
  const storedVersion = opened.storedVersion;
  const tautulliVersion =
    storedVersion ?? inferVersion(new Set(opened.tables.map((t) => t.name.toLowerCase())));
  const sourceRows = new Map(plan.tables.map((t) => [t.name, opened.counts[t.sourceName] ?? 0]));
  const rowsToImport = new Map(
    plan.tables.map((t) => [t.name, (sourceRows.get(t.name) ?? 0) - t.droppedRowids.length]),
  );
  const ranges = await readers.primary.rowidRanges(plan.tables.map((t) => t.sourceName));
  const totalRows = [...rowsToImport.values()].reduce((a, b) => a + b, 0);
  log(
    `Tautulli ${tautulliVersion}${storedVersion ? "" : " (inferred)"}; ${plan.tables.length} tables, ${totalRows} rows to import`,
  );
  return {
    opened,
    plan,
    storedVersion,
    tautulliVersion,
    sqliteSequences: new Map(opened.sequences.map(([name, seq]) => [name, BigInt(seq)])),
    sourceRows,
    rowsToImport,
    rowidRanges: new Map(plan.tables.map((t, i) => [t.name, ranges[i]])),
    totalRows,
    integrity,
  };
}

/** What the source holds that the copy does not carry over, and the warnings known before it. */
interface SourceFindings {
  extraTables: { table: string; rows: number }[];
  extraColumns: { table: string; column: string; nonNullValues: number }[];
  /** Rows left out, schema drift, an ignored -wal, unchecked columns. */
  warnings: ImportWarning[];
}

async function sourceFindings(
  facts: SourceFileFacts,
  source: SourceState,
  readers: SourceReaders,
): Promise<SourceFindings> {
  const { plan } = source;
  const extraTables = plan.extraTables.map((table) => ({
    table,
    rows: source.opened.counts[table] ?? 0,
  }));
  const nonNull = await readers.primary.countNonNull(plan.extraColumns);
  const extraColumns = plan.extraColumns.map((c, i) => ({ ...c, nonNullValues: nonNull[i] }));
  return {
    extraTables,
    extraColumns,
    warnings: planWarnings(facts, source, extraTables, extraColumns),
  };
}

/** The warnings known before the copy: rows left out, schema drift, WAL, unchecked columns. */
function planWarnings(
  facts: SourceFileFacts,
  source: SourceState,
  extraTables: { table: string; rows: number }[],
  extraColumns: { table: string; column: string; nonNullValues: number }[],
): ImportWarning[] {
  const { plan } = source;
  const warnings: ImportWarning[] = droppedRowsWarnings(source.opened.dropped);
  if (facts.wal.present && facts.journalMode !== "wal") {
    warnings.push({
      code: "WAL_IGNORED",
      message: `${facts.path}-wal exists but the database is not in WAL mode; SQLite ignores that file.`,
    });
  }
  for (const extra of extraTables) {
    warnings.push({
      code: "EXTRA_TABLE",
      table: extra.table,
      count: extra.rows,
      message: `Source table ${extra.table} (${extra.rows} rows) has no counterpart in the target and was not imported.`,
    });
  }
  for (const extra of extraColumns) {
    warnings.push({
      code: "EXTRA_COLUMN",
      table: extra.table,
      column: extra.column,
      count: extra.nonNullValues,
      message: `Source column ${extra.table}.${extra.column} (${extra.nonNullValues} non-NULL values) has no counterpart in the target and was not imported.`,
    });
  }
  for (const table of plan.targetOnlyTables) {
    warnings.push({
      code: "TARGET_ONLY_TABLE",
      table,
      message: `Target table ${table} has no counterpart in the source (an older Tautulli); it is left empty.`,
    });
  }
  for (const table of plan.tables.filter((t) => t.defaulted.length > 0)) {
    warnings.push({
      code: "DEFAULTED_COLUMNS",
      table: table.name,
      count: table.defaulted.length,
      message: `${table.name}: ${table.defaulted.length} column(s) the source lacks took their defaults (${table.defaulted.map((d) => d.column).join(", ")}).`,
    });
  }
  for (const table of plan.tables.filter((t) => t.notChecksummed.length > 0)) {
    warnings.push({
      code: "NOT_CHECKSUMMED",
      table: table.name,
      message: `${table.name}: jsonb column(s) ${table.notChecksummed.join(", ")} are verified by row count only (jsonb re-serialises JSON).`,
    });
  }
  return warnings;
}

/** The target inside the transaction, prepared for the COPY. */
interface PreparedTarget {
  /** Every Tautulli table of the target, children first. */
  allTables: string[];
  objectsBefore: SchemaObjects;
  previousRows: Record<string, number>;
  /** Tables that held rows (replaced under overwrite). */
  nonEmpty: string[];
  /** Secondary indexes dropped, rebuilt after their table's COPY. */
  deferred: DeferrableIndex[];
}

/**
 * In the open transaction: locks every Tautulli table, refuses a non-empty target unless
 * overwrite is confirmed, truncates, and drops the secondary indexes (built again after each
 * table's COPY: one sort instead of a b-tree insert per row).
 */
async function prepareTarget(
  client: Client,
  ctx: RunContext,
  target: TargetSchema,
  plan: ImportPlan,
): Promise<PreparedTarget> {
  await client.query("SET LOCAL lock_timeout = '30s'");
  const allTables = plan.truncateOrder;
  const qualified = allTables
    .map((t) => `${quoteIdent(target.schema)}.${quoteIdent(t)}`)
    .join(", ");
  await client.query(`LOCK TABLE ${qualified} IN ACCESS EXCLUSIVE MODE`);
  await client.query("SET LOCAL lock_timeout = 0");
  const objectsBefore = await readSchemaObjects(client, allTables);

  ctx.step = "checking that the target is empty";
  const previousRows = await rowCountsOf(client, target.schema, allTables);
  const nonEmpty = Object.keys(previousRows).sort();
  if (nonEmpty.length > 0 && !ctx.options.overwrite) {
    const total = Object.values(previousRows).reduce((a, b) => a + b, 0);
    throw new ImportError(
      "TARGET_NOT_EMPTY",
      `The target already holds ${total} rows (${nonEmpty.map((t) => `${t}: ${previousRows[t]}`).join(", ")}); the import refuses to replace them unless told to.`,
      "If those rows may be replaced by the SQLite data, confirm it: `--overwrite` on the command line, or `importOverwrite: true` in the stack config. Otherwise point the import at an empty database.",
      { previousRows },
    );
  }
  ctx.step = "truncating the target tables";
  await client.query(`TRUNCATE ${qualified} RESTART IDENTITY`);
  // The before/after comparison proves the dropped indexes all came back identical.
  const deferred = await deferrableIndexes(
    client,
    plan.tables.map((t) => t.name),
  );
  for (const index of deferred)
    await client.query(`DROP INDEX ${quoteIdent(target.schema)}.${quoteIdent(index.name)}`);
  await client.query(`SET LOCAL maintenance_work_mem = '${INDEX_BUILD_MEMORY}'`);
  return { allTables, objectsBefore, previousRows, nonEmpty, deferred };
}

/** Builds the table's dropped secondary indexes again, with their comments. */
async function rebuildIndexes(
  client: Client,
  schema: string,
  indexes: DeferrableIndex[],
): Promise<void> {
  for (const index of indexes) {
    await client.query(index.definition);
    if (index.comment !== null) {
      await client.query(
        `COMMENT ON INDEX ${quoteIdent(schema)}.${quoteIdent(index.name)} IS ${quoteLiteral(index.comment)}`,
      );
    }
  }
}

/** Row counts and the content checksum of one copied table; any mismatch rolls back. */
async function verifyTable(
  client: Client,
  tablePlan: TablePlan,
  expected: number,
  result: TableCopyResult,
): Promise<string> {
  const stored = await client.query<{ rows: string; sum: string }>(tablePlan.checksumSql);
  const targetRows = Number(stored.rows[0].rows);
  if (result.rows !== expected || targetRows !== expected) {
    throw new ImportError(
      "VERIFICATION_FAILED",
      `Row count mismatch in ${tablePlan.name}: SQLite counts ${expected}${tablePlan.droppedRowids.length > 0 ? ` after the ${tablePlan.droppedRowids.length} rows Tautulli's upgrade deletes` : ""}, the import sent ${result.rows}, PostgreSQL holds ${targetRows}. Rolled back.`,
      "Make sure nothing writes to tautulli.db during the import (stop Tautulli), then run it again.",
    );
  }
  if (stored.rows[0].sum !== result.checksum) {
    throw new ImportError(
      "VERIFICATION_FAILED",
      `Content checksum mismatch in ${tablePlan.name}: the rows PostgreSQL stored differ from the rows sent (sent ${result.checksum}, stored ${stored.rows[0].sum}). Rolled back.`,
      "Report this as a bug with the report file; the target was left unchanged.",
    );
  }
  return stored.rows[0].sum;
}

/** One table's part of the report (pure). */
function tableReportOf(
  tablePlan: TablePlan,
  sourceRows: number,
  result: TableCopyResult,
  targetChecksum: string,
  sequence: TableReport["sequence"],
): TableReport {
  const conversions: Record<string, number> = {};
  for (const rules of Object.values(result.conversionsByColumn)) {
    for (const [rule, n] of Object.entries(rules)) conversions[rule] = (conversions[rule] ?? 0) + n;
  }
  return {
    table: tablePlan.name,
    sourceTable: tablePlan.sourceName,
    sourceRows,
    droppedRows: tablePlan.droppedRowids.length,
    importedRows: result.rows,
    seconds: round(result.seconds),
    rowsPerSecond: Math.round(result.rows / Math.max(result.seconds, 1e-3)),
    columns: tablePlan.columns.length,
    readers: result.readers,
    defaultedColumns: tablePlan.defaulted,
    conversions,
    conversionsByColumn: result.conversionsByColumn,
    checksum: {
      source: result.checksum,
      target: targetChecksum,
      match: true,
      notChecksummed: tablePlan.notChecksummed,
    },
    ...(sequence ? { sequence } : {}),
  };
}

/**
 * Copies every planned table in turn: COPY, its indexes built again, verified, its sequence
 * moved. Returns the table reports and the lossy-conversion warnings.
 */
async function copyTables(
  client: Client,
  ctx: RunContext,
  target: TargetSchema,
  source: SourceState,
  readers: SourceWorker[],
  deferred: DeferrableIndex[],
): Promise<{ tables: TableReport[]; rows: number; warnings: ImportWarning[] }> {
  const { plan, totalRows } = source;
  const tables: TableReport[] = [];
  const warnings: ImportWarning[] = [];
  let copiedRows = 0;
  const copyStarted = ctx.elapsed();
  for (const [index, tablePlan] of plan.tables.entries()) {
    ctx.step = `copying table ${tablePlan.name}`;
    const expected = source.rowsToImport.get(tablePlan.name) ?? 0;
    const onCopy = (p: CopyProgress) => {
      const rows = copiedRows + p.rows;
      const rate = rows / Math.max(ctx.elapsed() - copyStarted, 1e-3);
      ctx.progress({
        phase: "copy",
        message: `table ${index + 1}/${plan.tables.length} ${p.table}`,
        table: p.table,
        tableRows: p.rows,
        tableTotalRows: p.totalRows,
        rows,
        totalRows,
        rowsPerSecond: rate,
        etaSeconds: rate > 0 ? (totalRows - rows) / rate : undefined,
      });
    };
    const result = await copyTable(client, readers, tablePlan, {
      totalRows: expected,
      rowidRange: source.rowidRanges.get(tablePlan.name) ?? null,
      onProgress: onCopy,
      tuning: ctx.options.parallelReads,
    });
    copiedRows += result.rows;
    ctx.step = `building the indexes of ${tablePlan.name}`;
    const t0 = ctx.elapsed();
    await rebuildIndexes(
      client,
      target.schema,
      deferred.filter((i) => i.table === tablePlan.name),
    );
    const t1 = ctx.elapsed();
    ctx.step = `verifying table ${tablePlan.name}`;
    const targetChecksum = await verifyTable(client, tablePlan, expected, result);
    const sequence = await alignSequence(
      client,
      target.schema,
      tablePlan,
      source.sqliteSequences.get(tablePlan.sourceName.toLowerCase()),
    );
    warnings.push(...lossyWarnings(tablePlan.name, result));
    tables.push(
      tableReportOf(
        tablePlan,
        source.sourceRows.get(tablePlan.name) ?? 0,
        result,
        targetChecksum,
        sequence,
      ),
    );
    ctx.log(
      `${tablePlan.name}: ${result.rows} rows in ${result.seconds.toFixed(2)} s, indexes ${(t1 - t0).toFixed(2)} s, checksum ${(ctx.elapsed() - t1).toFixed(2)} s`,
    );
  }
  return { tables, rows: copiedRows, warnings };
}

/**
 * After the copy: every index and constraint as before and valid (else roll back); explicit
 * SQLite indexes without a target index of that name are reported.
 */
async function verifySchemaObjects(
  client: Client,
  prepared: PreparedTarget,
  source: SourceState,
): Promise<{ objectsAfter: SchemaObjects; warnings: ImportWarning[] }> {
  const objectsAfter = await readSchemaObjects(client, prepared.allTables);
  const problems = compareSchemaObjects(prepared.objectsBefore, objectsAfter);
  if (problems.length > 0) {
    throw new ImportError(
      "VERIFICATION_FAILED",
      `Schema objects changed during the import: ${problems.join("; ")}. Rolled back.`,
      "Report this as a bug; the target was left unchanged.",
    );
  }
  const importedTables = new Set(source.plan.tables.map((t) => t.name.toLowerCase()));
  const targetIndexNames = new Set([...objectsAfter.indexes.keys()].map((n) => n.toLowerCase()));
  const warnings: ImportWarning[] = [];
  for (const index of source.opened.indexes) {
    if (
      importedTables.has(index.table.toLowerCase()) &&
      !targetIndexNames.has(index.name.toLowerCase())
    ) {
      warnings.push({
        code: "SOURCE_INDEX_MISSING",
        table: index.table,
        message: `Source index ${index.name} on ${index.table} has no index of that name in the target.`,
      });
    }
  }
  return { objectsAfter, warnings };
}

/** Everything the report is assembled from. */
interface ReportParts {
  options: ImportOptions;
  startedAt: Date;
  seconds: number;
  facts: SourceFileFacts;
  fingerprint: string;
  source: SourceState;
  integrityResult: "ok" | "skipped";
  target: TargetSchema;
  schemaVersion: string | null;
  prepared: PreparedTarget;
  tables: TableReport[];
  copiedRows: number;
  extraTables: { table: string; rows: number }[];
  extraColumns: { table: string; column: string; nonNullValues: number }[];
  objectsAfter: SchemaObjects;
  warnings: ImportWarning[];
}

/** The import report (pure). */
function buildReport(parts: ReportParts): ImportReport {
  const { options, facts, source, prepared, tables, seconds } = parts;
  const totalConversions: Record<string, number> = {};
  for (const t of tables)
    for (const [rule, n] of Object.entries(t.conversions))
      totalConversions[rule] = (totalConversions[rule] ?? 0) + n;
  return {
    reportVersion: 1,
    status: options.dryRun ? "dry-run" : "imported",
    startedAt: parts.startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    seconds: round(seconds),
    source: {
      path: facts.path,
      bytes: facts.bytes,
      journalMode: facts.journalMode,
      walBytes: facts.wal.bytes,
      walFrames: facts.wal.frames,
      fingerprint: parts.fingerprint,
      tautulliVersion: source.tautulliVersion,
      versionSource: source.storedVersion ? "version_info" : "inferred from tables",
      integrityCheck: options.integrityCheck ?? "full",
      integrityResult: parts.integrityResult,
      tables: source.opened.tables.length,
    },
    target: targetDescription(options.databaseUrl, parts.target, parts.schemaVersion),
    overwrite: {
      requested: options.overwrite ?? false,
      previousRows: prepared.previousRows,
      truncated: prepared.nonEmpty.length > 0 ? prepared.allTables : [],
    },
    tables,
    totals: {
      rows: parts.copiedRows,
      seconds: round(seconds),
      rowsPerSecond: Math.round(parts.copiedRows / Math.max(seconds, 1e-3)),
      conversions: totalConversions,
    },
    droppedRows: source.opened.dropped.map((d) => ({
      rule: d.rule,
      table: d.table,
      rows: d.rowids.length,
      rowids: d.rowids.slice(0, MAX_REPORTED_ROWIDS),
    })),
    schemaDrift: {
      targetOnlyTables: source.plan.targetOnlyTables,
      extraTables: parts.extraTables,
      extraColumns: parts.extraColumns,
      relocated: source.plan.relocations.map((r) => ({
        from: `${r.fromTable}.${r.fromColumn}`,
        to: `${r.table}.${r.column}`,
      })),
    },
    verification: {
      rowCounts: "ok",
      checksums: "ok",
      checksummedTables: tables.length,
      indexes: parts.objectsAfter.indexes.size,
      constraints: parts.objectsAfter.constraints.size,
      sequences: tables.filter((t) => t.sequence).length,
    },
    warnings: parts.warnings,
  };
}

/**
 * Copies, verifies and commits (or, for a dry run, rolls back) inside the open transaction.
 * Returns the report.
 */
async function importInTransaction(
  client: Client,
  ctx: RunContext,
  facts: SourceFileFacts,
  fingerprint: string,
  checked: { target: TargetSchema; schemaVersion: string | null },
  source: SourceState,
  findings: SourceFindings,
  readers: SourceReaders,
): Promise<ImportReport> {
  const { target } = checked;
  const warnings = [...findings.warnings];
  const prepared = await prepareTarget(client, ctx, target, source.plan);
  const copied = await copyTables(client, ctx, target, source, readers.all, prepared.deferred);
  warnings.push(...copied.warnings);

  ctx.step = "verifying indexes and constraints";
  const verifying = (message: string) =>
    ctx.progress({
      phase: "verify",
      message,
      rows: copied.rows,
      totalRows: source.totalRows,
      rowsPerSecond: 0,
    });
  verifying("indexes, constraints, sequences");
  const verified = await verifySchemaObjects(client, prepared, source);
  warnings.push(...verified.warnings);

  ctx.step = "waiting for SQLite's integrity check";
  verifying("SQLite integrity check");
  const integrityResult = await source.integrity;
  // The readers each had their own snapshot: they agree only if nothing wrote the file meanwhile.
  ctx.step = "checking that tautulli.db did not change";
  const changed = sourceChanged(facts);
  if (changed) {
    throw new ImportError(
      "VERIFICATION_FAILED",
      `${facts.path} changed during the import (${changed}): something (Tautulli?) is writing to it. Rolled back.`,
      'Stop Tautulli (or import a copy taken with `sqlite3 tautulli.db ".backup copy.db"`), then run the import again.',
    );
  }

  const report = buildReport({
    options: ctx.options,
    startedAt: ctx.startedAt,
    seconds: ctx.elapsed(),
    facts,
    fingerprint,
    source,
    integrityResult,
    target,
    schemaVersion: checked.schemaVersion,
    prepared,
    tables: copied.tables,
    copiedRows: copied.rows,
    extraTables: findings.extraTables,
    extraColumns: findings.extraColumns,
    objectsAfter: verified.objectsAfter,
    warnings,
  });
  if (ctx.options.dryRun) {
    ctx.step = "rolling back the dry run";
    await client.query("ROLLBACK");
    ctx.log("dry run: verified, rolled back");
  } else {
    ctx.step = "committing";
    ctx.progress({
      phase: "commit",
      message: "committing",
      rows: copied.rows,
      totalRows: source.totalRows,
      rowsPerSecond: 0,
    });
    await writeStamp(client, fingerprint, report);
    await client.query("COMMIT");
    ctx.log("committed");
  }
  return report;
}

/** Imports `options.sqlitePath` into `options.databaseUrl`; see the module comment. */
export async function runImport(options: ImportOptions): Promise<ImportReport> {
  const started = process.hrtime.bigint();
  const ctx: RunContext = {
    options,
    startedAt: new Date(),
    elapsed: () => Number(process.hrtime.bigint() - started) / 1e9,
    log: options.log ?? (() => undefined),
    progress: options.onProgress ?? (() => undefined),
    step: "reading the target schema",
  };
  // The source file is checked before anything touches the target.
  ctx.progress({
    phase: "check",
    message: "checking the SQLite file",
    rows: 0,
    totalRows: 0,
    rowsPerSecond: 0,
  });
  const facts = inspectSourceFile(options.sqlitePath);
  // The fingerprint (a hash of the file) and PostgreSQL's first answers overlap.
  const fingerprinting = options.sourceFingerprint
    ? Promise.resolve(options.sourceFingerprint)
    : sourceFingerprint(options.sqlitePath);
  fingerprinting.catch(() => undefined);

  const { client, lost } = await connect(options.databaseUrl);
  let readers: SourceReaders | undefined;
  let inTransaction = false;
  try {
    const checked = await checkTarget(client, options);
    const fingerprint = await fingerprinting;
    ctx.log(
      `source ${facts.path}: ${facts.bytes} bytes, ${facts.journalMode} mode, -wal ${facts.wal.bytes} bytes; fingerprint ${fingerprint}`,
    );
    const previous = await latestStamp(client);
    if (previous && previous.fingerprint === fingerprint && !options.force) {
      ctx.log(`source fingerprint already imported at ${previous.importedAt}: nothing to do`);
      return { ...previous.report, status: "unchanged", unchangedSince: previous.importedAt };
    }

    ctx.step = "checking the SQLite file";
    readers = new SourceReaders();
    const source = await openSource(facts, checked.target, options, readers, ctx.log);
    const findings = await sourceFindings(facts, source, readers);
    ctx.step = "locking the target tables";
    await client.query("BEGIN");
    inTransaction = true;
    const report = await importInTransaction(
      client,
      ctx,
      facts,
      fingerprint,
      checked,
      source,
      findings,
      readers,
    );
    inTransaction = false;
    return report;
  } catch (error) {
    const failure = classify(lost() ?? error, options.databaseUrl, ctx.step);
    if (inTransaction && !lost()) await client.query("ROLLBACK").catch(() => undefined);
    throw failure;
  } finally {
    await readers?.close();
    await client.end().catch(() => undefined);
  }
}

/** What changed in the file or its -wal since `facts` were taken, or undefined. */
function sourceChanged(facts: SourceFileFacts): string | undefined {
  const now = inspectSourceFile(facts.path);
  if (now.bytes !== facts.bytes || now.mtimeMs !== facts.mtimeMs)
    return "the database file was modified";
  if (now.wal.bytes !== facts.wal.bytes)
    return `its -wal grew from ${facts.wal.bytes} to ${now.wal.bytes} bytes`;
  return undefined;
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
