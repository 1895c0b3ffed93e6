/**
 * `runImport`: tautulli.db -> the migrated PostgreSQL schema, all or nothing.
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
import { pgClientConfig } from "../postgres/client-config";
import { redactMessage, redactUrl } from "../redact";
import { copyTable, CopyProgress, ParallelReads } from "./copy-table";
import type { DroppedRows } from "./dbcheck";
import type { EncodedTable } from "./table-encoder";
import { ImportError, isImportError } from "./errors";
import { isLossyRule } from "./normalize";
import { buildPlan, ImportPlan, TablePlan } from "./plan";
import { quoteIdent } from "./pg-text";
import type { ImportReport, ImportWarning, TableReport } from "./report";
import { SourceWorker } from "./source-worker";
import {
  inspectSourceFile,
  IntegrityMode,
  SourceFileFacts,
  sourceFingerprint,
} from "./sqlite-source";
import { appliedSchemaVersion, latestStamp, writeStamp } from "./stamp";
import {
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
  const client = new Client({ ...config, application_name: APPLICATION_NAME });
  let lostError: Error | undefined;
  // A terminated backend is reported as an 'error' event; without a listener it would crash us.
  client.on("error", (error) => {
    lostError = error;
  });
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw new ImportError(
      "TARGET_UNREACHABLE",
      `Cannot connect to PostgreSQL at ${redactUrl(databaseUrl)}: ${redactMessage((error as Error).message, [databaseUrl])}.`,
      "Check host, port, database name, user and password of the target (and sslmode), and that the database exists.",
    );
  }
  // Fixed session settings: the text forms the checksum compares depend on them.
  await client.query(
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1; SET client_encoding = 'UTF8'; SET statement_timeout = 0",
  );
  return { client, lost: () => lostError };
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

/** Imports `options.sqlitePath` into `options.databaseUrl`; see the module comment. */
export async function runImport(options: ImportOptions): Promise<ImportReport> {
  const startedAt = new Date();
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
  const log = options.log ?? (() => undefined);
  const progress = options.onProgress ?? (() => undefined);
  const integrityMode = options.integrityCheck ?? "full";

  // --- 1. The source file, before anything touches the target ---------------------------------
  progress({
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
  // One worker thread reads and encodes the rows; a second one runs SQLite's integrity check
  // meanwhile. The check's verdict is awaited before COMMIT: a damaged file is never committed.
  let source: SourceWorker | undefined;
  let checker: SourceWorker | undefined;
  const helpers: SourceWorker[] = [];
  let inTransaction = false;
  let step = "reading the target schema";
  try {
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
    const fingerprint = await fingerprinting;
    log(
      `source ${facts.path}: ${facts.bytes} bytes, ${facts.journalMode} mode, -wal ${facts.wal.bytes} bytes; fingerprint ${fingerprint}`,
    );
    const previous = await latestStamp(client);
    if (previous && previous.fingerprint === fingerprint && !options.force) {
      log(`source fingerprint already imported at ${previous.importedAt}: nothing to do`);
      return { ...previous.report, status: "unchanged", unchangedSince: previous.importedAt };
    }

    // --- The SQLite side: integrity, shape, release --------------------------------------------
    step = "checking the SQLite file";
    source = new SourceWorker();
    const opened = await source.open(facts.path, true);
    const readerCount = Math.max(1, Math.min(options.readers ?? os.availableParallelism(), 4));
    for (let i = 1; i < readerCount; i++) {
      const helper = new SourceWorker();
      helpers.push(helper);
      await helper.open(facts.path, false);
    }
    const readers = [source, ...helpers];
    let integrity: Promise<"ok" | "skipped"> = Promise.resolve("skipped");
    if (integrityMode !== "off") {
      checker = new SourceWorker();
      await checker.open(facts.path, false);
      integrity = checker.integrityCheck(integrityMode);
      integrity.catch(() => undefined); // awaited before COMMIT
    }
    const sourceTables = opened.tables;
    const plan: ImportPlan = buildPlan(sourceTables, target, opened.dropped);
    const storedVersion = opened.storedVersion;
    const tautulliVersion =
      storedVersion ?? inferVersion(new Set(sourceTables.map((t) => t.name.toLowerCase())));
    const sqliteSequences = new Map(opened.sequences.map(([name, seq]) => [name, BigInt(seq)]));
    const sourceRows = new Map(plan.tables.map((t) => [t.name, opened.counts[t.sourceName] ?? 0]));
    const rowsToImport = new Map(
      plan.tables.map((t) => [t.name, (sourceRows.get(t.name) ?? 0) - t.droppedRowids.length]),
    );
    const ranges = await source.rowidRanges(plan.tables.map((t) => t.sourceName));
    const rowidRanges = new Map(plan.tables.map((t, i) => [t.name, ranges[i]]));
    const totalRows = [...rowsToImport.values()].reduce((a, b) => a + b, 0);
    log(
      `Tautulli ${tautulliVersion}${storedVersion ? "" : " (inferred)"}; ${plan.tables.length} tables, ${totalRows} rows to import`,
    );

    const warnings: ImportWarning[] = droppedRowsWarnings(opened.dropped);
    if (facts.wal.present && facts.journalMode !== "wal") {
      warnings.push({
        code: "WAL_IGNORED",
        message: `${facts.path}-wal exists but the database is not in WAL mode; SQLite ignores that file.`,
      });
    }
    const extraTables = plan.extraTables.map((table) => ({
      table,
      rows: opened.counts[table] ?? 0,
    }));
    for (const extra of extraTables) {
      warnings.push({
        code: "EXTRA_TABLE",
        table: extra.table,
        count: extra.rows,
        message: `Source table ${extra.table} (${extra.rows} rows) has no counterpart in the target and was not imported.`,
      });
    }
    const nonNull = await source.countNonNull(plan.extraColumns);
    const extraColumns = plan.extraColumns.map((c, i) => ({ ...c, nonNullValues: nonNull[i] }));
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
    const importedTables = new Set(plan.tables.map((t) => t.name.toLowerCase()));

    // --- 2. One transaction ---------------------------------------------------------------------
    step = "locking the target tables";
    await client.query("BEGIN");
    inTransaction = true;
    await client.query("SET LOCAL lock_timeout = '30s'");
    const allTables = plan.truncateOrder;
    const qualified = allTables
      .map((t) => `${quoteIdent(target.schema)}.${quoteIdent(t)}`)
      .join(", ");
    await client.query(`LOCK TABLE ${qualified} IN ACCESS EXCLUSIVE MODE`);
    await client.query("SET LOCAL lock_timeout = 0");
    const objectsBefore = await readSchemaObjects(client, allTables);

    step = "checking that the target is empty";
    const previousRows = await rowCountsOf(client, target.schema, allTables);
    const nonEmpty = Object.keys(previousRows).sort();
    if (nonEmpty.length > 0 && !options.overwrite) {
      const total = Object.values(previousRows).reduce((a, b) => a + b, 0);
      throw new ImportError(
        "TARGET_NOT_EMPTY",
        `The target already holds ${total} rows (${nonEmpty.map((t) => `${t}: ${previousRows[t]}`).join(", ")}); the import refuses to replace them unless told to.`,
        "If those rows may be replaced by the SQLite data, confirm it: `--overwrite` on the command line, or `importOverwrite: true` in the stack config. Otherwise point the import at an empty database.",
        { previousRows },
      );
    }
    step = "truncating the target tables";
    await client.query(`TRUNCATE ${qualified} RESTART IDENTITY`);
    // Secondary indexes are built once after each table's COPY (a sort) rather than updated row
    // by row; the before/after comparison below proves they all came back identical.
    const deferred = await deferrableIndexes(
      client,
      plan.tables.map((t) => t.name),
    );
    for (const index of deferred)
      await client.query(`DROP INDEX ${quoteIdent(target.schema)}.${quoteIdent(index.name)}`);
    await client.query(`SET LOCAL maintenance_work_mem = '${INDEX_BUILD_MEMORY}'`);

    // --- Copy -------------------------------------------------------------------------------------
    const tableReports: TableReport[] = [];
    let copiedRows = 0;
    const copyStarted = elapsed();
    for (const [index, tablePlan] of plan.tables.entries()) {
      step = `copying table ${tablePlan.name}`;
      const expected = rowsToImport.get(tablePlan.name) ?? 0;
      const onCopy = (p: CopyProgress) => {
        const rows = copiedRows + p.rows;
        const rate = rows / Math.max(elapsed() - copyStarted, 1e-3);
        progress({
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
      const result = await copyTable(
        client,
        readers,
        tablePlan,
        expected,
        rowidRanges.get(tablePlan.name) ?? null,
        onCopy,
        options.parallelReads,
      );
      copiedRows += result.rows;
      step = `building the indexes of ${tablePlan.name}`;
      const t0 = elapsed();
      for (const index of deferred.filter((i) => i.table === tablePlan.name)) {
        await client.query(index.definition);
        if (index.comment !== null) {
          await client.query(
            `COMMENT ON INDEX ${quoteIdent(target.schema)}.${quoteIdent(index.name)} IS ${quoteLiteral(index.comment)}`,
          );
        }
      }

      const t1 = elapsed();
      step = `verifying table ${tablePlan.name}`;
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
      const sequence = await alignSequence(
        client,
        target.schema,
        tablePlan,
        sqliteSequences.get(tablePlan.sourceName.toLowerCase()),
      );
      const conversions: Record<string, number> = {};
      for (const rules of Object.values(result.conversionsByColumn)) {
        for (const [rule, n] of Object.entries(rules))
          conversions[rule] = (conversions[rule] ?? 0) + n;
      }
      warnings.push(...lossyWarnings(tablePlan.name, result));
      tableReports.push({
        table: tablePlan.name,
        sourceTable: tablePlan.sourceName,
        sourceRows: sourceRows.get(tablePlan.name) ?? 0,
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
          target: stored.rows[0].sum,
          match: true,
          notChecksummed: tablePlan.notChecksummed,
        },
        ...(sequence ? { sequence } : {}),
      });
      log(
        `${tablePlan.name}: ${result.rows} rows in ${result.seconds.toFixed(2)} s, indexes ${(t1 - t0).toFixed(2)} s, checksum ${(elapsed() - t1).toFixed(2)} s`,
      );
    }

    // --- Verify the schema objects ----------------------------------------------------------------
    step = "verifying indexes and constraints";
    progress({
      phase: "verify",
      message: "indexes, constraints, sequences",
      rows: copiedRows,
      totalRows,
      rowsPerSecond: 0,
    });
    const objectsAfter = await readSchemaObjects(client, allTables);
    const problems = compareSchemaObjects(objectsBefore, objectsAfter);
    if (problems.length > 0) {
      throw new ImportError(
        "VERIFICATION_FAILED",
        `Schema objects changed during the import: ${problems.join("; ")}. Rolled back.`,
        "Report this as a bug; the target was left unchanged.",
      );
    }
    const targetIndexNames = new Set([...objectsAfter.indexes.keys()].map((n) => n.toLowerCase()));
    for (const index of opened.indexes) {
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

    step = "waiting for SQLite's integrity check";
    progress({
      phase: "verify",
      message: "SQLite integrity check",
      rows: copiedRows,
      totalRows,
      rowsPerSecond: 0,
    });
    const integrityResult = await integrity;
    // The readers each had their own snapshot: they agree only if nothing wrote the file meanwhile.
    step = "checking that tautulli.db did not change";
    const changed = sourceChanged(facts);
    if (changed) {
      throw new ImportError(
        "VERIFICATION_FAILED",
        `${facts.path} changed during the import (${changed}): something (Tautulli?) is writing to it. Rolled back.`,
        'Stop Tautulli (or import a copy taken with `sqlite3 tautulli.db ".backup copy.db"`), then run the import again.',
      );
    }

    const seconds = elapsed();
    const totalConversions: Record<string, number> = {};
    for (const t of tableReports)
      for (const [rule, n] of Object.entries(t.conversions))
        totalConversions[rule] = (totalConversions[rule] ?? 0) + n;
    const report: ImportReport = {
      reportVersion: 1,
      status: options.dryRun ? "dry-run" : "imported",
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      seconds: round(seconds),
      source: {
        path: facts.path,
        bytes: facts.bytes,
        journalMode: facts.journalMode,
        walBytes: facts.wal.bytes,
        walFrames: facts.wal.frames,
        fingerprint,
        tautulliVersion,
        versionSource: storedVersion ? "version_info" : "inferred from tables",
        integrityCheck: integrityMode,
        integrityResult,
        tables: sourceTables.length,
      },
      target: targetDescription(options.databaseUrl, target, schemaVersion),
      overwrite: {
        requested: options.overwrite ?? false,
        previousRows,
        truncated: nonEmpty.length > 0 ? allTables : [],
      },
      tables: tableReports,
      totals: {
        rows: copiedRows,
        seconds: round(seconds),
        rowsPerSecond: Math.round(copiedRows / Math.max(seconds, 1e-3)),
        conversions: totalConversions,
      },
      droppedRows: opened.dropped.map((d) => ({
        rule: d.rule,
        table: d.table,
        rows: d.rowids.length,
        rowids: d.rowids.slice(0, MAX_REPORTED_ROWIDS),
      })),
      schemaDrift: {
        targetOnlyTables: plan.targetOnlyTables,
        extraTables,
        extraColumns,
        relocated: plan.relocations.map((r) => ({
          from: `${r.fromTable}.${r.fromColumn}`,
          to: `${r.table}.${r.column}`,
        })),
      },
      verification: {
        rowCounts: "ok",
        checksums: "ok",
        checksummedTables: tableReports.length,
        indexes: objectsAfter.indexes.size,
        constraints: objectsAfter.constraints.size,
        sequences: tableReports.filter((t) => t.sequence).length,
      },
      warnings,
    };

    // --- Commit (or roll back a dry run) ----------------------------------------------------------
    if (options.dryRun) {
      step = "rolling back the dry run";
      await client.query("ROLLBACK");
      inTransaction = false;
      log("dry run: verified, rolled back");
    } else {
      step = "committing";
      progress({
        phase: "commit",
        message: "committing",
        rows: copiedRows,
        totalRows,
        rowsPerSecond: 0,
      });
      await writeStamp(client, fingerprint, report);
      await client.query("COMMIT");
      inTransaction = false;
      log("committed");
    }
    return report;
  } catch (error) {
    const failure = classify(lost() ?? error, options.databaseUrl, step);
    if (inTransaction && !lost()) await client.query("ROLLBACK").catch(() => undefined);
    throw failure;
  } finally {
    // The primary reader removes SQLite's companion files, so it closes last.
    await checker?.close();
    for (const helper of helpers) await helper.close();
    await source?.close();
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
