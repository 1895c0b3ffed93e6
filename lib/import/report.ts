/**
 * The import report (JSON: resource output, `--report FILE`, stored with the import stamp) and its
 * human summary. No field ever holds a secret: values shown in warnings are redacted for secret
 * columns, and the target is described without its password.
 */

export interface ValueSample {
  /** SQLite rowid of the row. */
  rowid: string;
  /** The original value as shown in messages (redacted for secret columns). */
  value: string;
}

export interface ImportWarning {
  /** Stable code: LOSSY_CONVERSION, EXTRA_TABLE, EXTRA_COLUMN, TARGET_ONLY_TABLE, DEFAULTED_COLUMNS, SOURCE_INDEX_MISSING, NOT_CHECKSUMMED, WAL_IGNORED, ROWS_DROPPED. */
  code: string;
  message: string;
  table?: string;
  column?: string;
  rule?: string;
  count?: number;
  samples?: ValueSample[];
}

export interface TableReport {
  table: string;
  sourceTable: string;
  /** Rows SQLite counts in the source table. */
  sourceRows: number;
  /** Of those, rows left out as Tautulli's own upgrade deletes them (docs/import.md). */
  droppedRows: number;
  importedRows: number;
  seconds: number;
  rowsPerSecond: number;
  /** Columns copied. */
  columns: number;
  /** Reader threads that shared the table (interleaved blocks of rowids). */
  readers: number;
  /** Target columns the source lacks, which took their default. */
  defaultedColumns: { column: string; default: string | null }[];
  /** Conversions applied, by rule id (docs/import.md). */
  conversions: Record<string, number>;
  /** Conversions by column, then rule id. */
  conversionsByColumn: Record<string, Record<string, number>>;
  checksum: { source: string; target: string; match: boolean; notChecksummed: string[] };
  sequence?: { name: string; nextValue: string; maxId: string | null; sqliteSeq: string | null };
}

export interface ImportReport {
  reportVersion: 1;
  /** imported: committed. dry-run: everything done and verified, then rolled back. unchanged: this source fingerprint was already imported (the stored report of that import follows). */
  status: "imported" | "dry-run" | "unchanged";
  startedAt: string;
  finishedAt: string;
  seconds: number;
  source: {
    path: string;
    bytes: number;
    journalMode: "wal" | "rollback";
    walBytes: number;
    walFrames: number;
    fingerprint: string;
    tautulliVersion: string | null;
    versionSource: "version_info" | "inferred from tables";
    integrityCheck: "full" | "quick" | "off";
    integrityResult: "ok" | "skipped";
    tables: number;
  };
  target: {
    host: string;
    port: number;
    database: string;
    user: string;
    schema: string;
    serverVersion: string;
    /** Last applied migration (plex_migrate_migrations), or null when unknown. */
    schemaVersion: string | null;
  };
  overwrite: {
    requested: boolean;
    /** Rows the target held before, by table (only tables that had rows). */
    previousRows: Record<string, number>;
    /** Tables truncated (children first); empty when the target was empty. */
    truncated: string[];
  };
  tables: TableReport[];
  totals: {
    rows: number;
    seconds: number;
    rowsPerSecond: number;
    conversions: Record<string, number>;
  };
  /** Rows left out by Tautulli's upgrade rules, per rule that found any (docs/import.md). */
  droppedRows: {
    rule: string;
    table: string;
    rows: number;
    /** The rowids (Tautulli's id), ascending; the first 1000 when there are more. */
    rowids: number[];
  }[];
  schemaDrift: {
    targetOnlyTables: string[];
    extraTables: { table: string; rows: number }[];
    extraColumns: { table: string; column: string; nonNullValues: number }[];
    relocated: { from: string; to: string }[];
  };
  verification: {
    rowCounts: "ok";
    checksums: "ok";
    checksummedTables: number;
    indexes: number;
    constraints: number;
    sequences: number;
  };
  warnings: ImportWarning[];
  /** For status "unchanged": when the same fingerprint was imported. */
  unchangedSince?: string;
}

const number = new Intl.NumberFormat("en-US");

function bytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function conversionsText(conversions: Record<string, number>): string {
  const entries = Object.entries(conversions).sort((a, b) => b[1] - a[1]);
  return entries.length === 0
    ? "-"
    : entries.map(([rule, n]) => `${rule} ${number.format(n)}`).join(", ");
}

/** The human summary printed by the CLI and exposed as the resource's `summary` output. */
export function formatSummary(report: ImportReport): string {
  const lines: string[] = [];
  const verb = {
    imported: "Imported",
    "dry-run": "Dry run (rolled back): would import",
    unchanged: "Unchanged: already imported",
  }[report.status];
  lines.push(
    `${verb} ${number.format(report.totals.rows)} rows from ${report.tables.length} tables in ${report.totals.seconds.toFixed(1)} s (${number.format(report.totals.rowsPerSecond)} rows/s).`,
  );
  if (report.unchangedSince)
    lines.push(
      `Source fingerprint ${report.source.fingerprint} was imported at ${report.unchangedSince}.`,
    );
  const wal =
    report.source.walBytes > 0
      ? `, -wal ${bytes(report.source.walBytes)} (${report.source.walFrames} frames) read through SQLite`
      : "";
  lines.push(
    `Source: ${report.source.path} (${bytes(report.source.bytes)}${wal}), Tautulli ${report.source.tautulliVersion ?? "unknown"} (${report.source.versionSource}), ${report.source.integrityCheck === "off" ? "integrity check skipped" : `${report.source.integrityCheck === "full" ? "integrity_check" : "quick_check"} ${report.source.integrityResult}`}.`,
  );
  lines.push(
    `Target: ${report.target.user}@${report.target.host}:${report.target.port}/${report.target.database} (schema ${report.target.schema}, PostgreSQL ${report.target.serverVersion}, migration ${report.target.schemaVersion ?? "unknown"}).`,
  );
  if (report.overwrite.truncated.length > 0) {
    const previous = Object.values(report.overwrite.previousRows).reduce((a, b) => a + b, 0);
    lines.push(`Overwrite confirmed: replaced ${number.format(previous)} existing rows.`);
  }
  const width = Math.max(5, ...report.tables.map((t) => t.table.length));
  lines.push(
    `  ${"table".padEnd(width)}  ${"rows".padStart(11)}  ${"seconds".padStart(8)}  conversions`,
  );
  for (const t of report.tables) {
    lines.push(
      `  ${t.table.padEnd(width)}  ${number.format(t.importedRows).padStart(11)}  ${t.seconds.toFixed(2).padStart(8)}  ${conversionsText(t.conversions)}`,
    );
  }
  const v = report.verification;
  lines.push(
    `Verified in the transaction: row counts and content checksums of ${v.checksummedTables} tables, ${v.indexes} indexes and ${v.constraints} constraints present, ${v.sequences} sequences past max(id).`,
  );
  const drift = report.schemaDrift;
  if (drift.targetOnlyTables.length > 0)
    lines.push(`Tables the source lacks (left empty): ${drift.targetOnlyTables.join(", ")}.`);
  if (drift.relocated.length > 0)
    lines.push(`Moved: ${drift.relocated.map((r) => `${r.from} -> ${r.to}`).join(", ")}.`);
  if (report.warnings.length > 0) {
    lines.push(`Warnings (${report.warnings.length}):`);
    for (const w of report.warnings) lines.push(`  - ${w.message}`);
  }
  return lines.join("\n");
}
