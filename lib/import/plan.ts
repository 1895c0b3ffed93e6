/**
 * Matches the source tables and columns to the target's, by name (case-insensitively, as SQLite
 * and unquoted PostgreSQL names both are), and decides for every column how its values are read,
 * normalised, encoded and checksummed.
 *
 * * A target column the source lacks (an older Tautulli) is left out of the COPY, so it takes its
 *   target default.
 * * Source tables and columns the target lacks are reported, never silently dropped.
 * * Before Tautulli v2.7 the library id lived in session_history_metadata.section_id; it moves to
 *   session_history.section_id the way Tautulli's own upgrade does (reference/tautulli/NOTES.md §7).
 */
import type { DroppedRows } from "./dbcheck";
import { ImportError } from "./errors";
import type { TargetKind } from "./normalize";
import { canonicalEncoderFor, checksumSql, quoteIdent } from "./pg-text";
import { isSecretColumn } from "../redact";
import { quote as quoteSqlite, SourceTable } from "./sqlite-source";
import { dependencyOrder, TargetColumn, TargetSchema, TargetTable } from "./target-schema";

/** How one target column is filled (plain data: it is sent to the source worker thread). */
export interface ColumnPlan {
  /** Target column name. */
  name: string;
  /** Target type as PostgreSQL prints it (for messages). */
  type: string;
  kind: TargetKind;
  /** varchar(n)'s n. */
  maxLength: number | null;
  /** Where the value is read from (a relocated column comes from another table). */
  source: { table: string; column: string };
  /** The SQLite expression selecting it (rows of the table are aliased `t`). */
  selectExpr: string;
  relocated: boolean;
  /** Values are secrets: redacted in every message. */
  secret: boolean;
  /** Covered by the content checksum (all kinds but jsonb). */
  checksummed: boolean;
}

export interface TablePlan {
  /** Target table name. */
  name: string;
  /** Source table name as SQLite spells it. */
  sourceName: string;
  columns: ColumnPlan[];
  /** Target columns the source lacks: they take their default. */
  defaulted: { column: string; default: string | null }[];
  /** Source rowids left out, as Tautulli's own upgrade deletes them (dbcheck.ts). */
  droppedRowids: number[];
  selectSql: string;
  /** The same, for the rowids between two bound parameters (one block of a parallel read). */
  blockSql: string;
  copySql: string;
  checksumSql: string;
  /** Columns the content checksum cannot cover (jsonb), verified by count only. */
  notChecksummed: string[];
  /** The column fed by a sequence (identity/serial), to move it past the imported ids. */
  sequence?: { column: string; sequence: string; identity: boolean };
}

export interface Relocation {
  table: string;
  column: string;
  fromTable: string;
  fromColumn: string;
  /** Join column present in both tables. */
  joinColumn: string;
}

/** Columns that moved between Tautulli releases (reference/tautulli/NOTES.md §7). */
export const RELOCATIONS: readonly Relocation[] = [
  {
    table: "session_history",
    column: "section_id",
    fromTable: "session_history_metadata",
    fromColumn: "section_id",
    joinColumn: "id",
  },
];

export interface ImportPlan {
  /** Tables copied, in copy order (parents first). */
  tables: TablePlan[];
  /** Every Tautulli table of the target, children first (the TRUNCATE order). */
  truncateOrder: string[];
  /** Target tables the source does not have: left empty. */
  targetOnlyTables: string[];
  /** Source tables the target does not have: reported, not imported. */
  extraTables: string[];
  /** Source columns the target does not have (relocated ones excluded): reported. */
  extraColumns: { table: string; column: string }[];
  /** Relocations applied. */
  relocations: Relocation[];
}

/** Tables whose presence makes a SQLite file a Tautulli database (all releases since v1.4). */
export const REQUIRED_TAUTULLI_TABLES = [
  "session_history",
  "session_history_metadata",
  "session_history_media_info",
  "users",
];

/** Refuses a file that is not a Tautulli database, naming the tables it lacks and has. */
function requireTautulliTables(sourceTables: SourceTable[]): void {
  const names = new Set(sourceTables.map((t) => t.name.toLowerCase()));
  const missingCore = REQUIRED_TAUTULLI_TABLES.filter((t) => !names.has(t));
  if (missingCore.length === 0) return;
  const found =
    sourceTables
      .map((t) => t.name)
      .slice(0, 12)
      .join(", ") || "none";
  throw new ImportError(
    "NOT_TAUTULLI",
    `This SQLite file is not a Tautulli database: it lacks ${missingCore.join(", ")} (tables found: ${found}).`,
    "Point the import at Tautulli's tautulli.db (not Plex's com.plexapp.plugins.library.db or another file).",
    { missingTables: missingCore, foundTables: sourceTables.map((t) => t.name) },
  );
}

const hasColumn = (table: { columns: { name: string }[] } | undefined, lower: string) =>
  table?.columns.some((c) => c.name.toLowerCase() === lower) ?? false;

/** The relocations this source needs: the target has the column, the source has it elsewhere. */
function applicableRelocations(
  sourceByName: Map<string, SourceTable>,
  target: TargetSchema,
): Relocation[] {
  return RELOCATIONS.filter(
    (r) =>
      hasColumn(target.tables.get(r.table), r.column) &&
      sourceByName.has(r.table) &&
      !hasColumn(sourceByName.get(r.table), r.column) &&
      hasColumn(sourceByName.get(r.fromTable), r.fromColumn),
  );
}

/** How one target column is filled from the source column or its relocation. */
function planColumn(
  column: TargetColumn & { kind: TargetKind },
  source: SourceTable,
  sourceColumn: SourceTable["columns"][number] | undefined,
  relocation: Relocation | undefined,
): ColumnPlan {
  const from = sourceColumn
    ? { table: source.name, column: sourceColumn.name }
    : { table: relocation!.fromTable, column: relocation!.fromColumn };
  const selectExpr = sourceColumn
    ? `t.${quoteSqlite(sourceColumn.name)}`
    : `(SELECT r.${quoteSqlite(relocation!.fromColumn)} FROM ${quoteSqlite(relocation!.fromTable)} AS r WHERE r.${quoteSqlite(relocation!.joinColumn)} = t.${quoteSqlite(relocation!.joinColumn)})`;
  return {
    name: column.name,
    type: column.type,
    kind: column.kind,
    maxLength: column.maxLength,
    source: from,
    selectExpr,
    relocated: !sourceColumn,
    secret: isSecretColumn(column.name),
    checksummed: canonicalEncoderFor(column.kind) !== undefined,
  };
}

/** The copied columns of a table and the target columns left to their default. */
function planColumns(
  source: SourceTable,
  targetTable: TargetTable,
  relocations: Relocation[],
): Pick<TablePlan, "columns" | "defaulted"> {
  const sourceColumns = new Map(source.columns.map((c) => [c.name.toLowerCase(), c]));
  const columns: ColumnPlan[] = [];
  const defaulted: TablePlan["defaulted"] = [];
  for (const column of targetTable.columns) {
    if (column.generated) continue;
    const lower = column.name.toLowerCase();
    const sourceColumn = sourceColumns.get(lower);
    const relocation = relocations.find(
      (r) => r.table === targetTable.name.toLowerCase() && r.column === lower,
    );
    if (!sourceColumn && !relocation) {
      defaulted.push({ column: column.name, default: column.default });
      continue;
    }
    if (!column.kind) {
      throw new ImportError(
        "UNSUPPORTED_TARGET_TYPE",
        `Target column ${targetTable.name}.${column.name} has type ${column.type}, which the import does not write.`,
        "Use one of the types in docs/schema.md (bigint, integer, smallint, boolean, double precision, text, varchar, json, jsonb, timestamptz, timestamp, date) in the migration.",
        { table: targetTable.name, column: column.name, type: column.type },
      );
    }
    columns.push(planColumn({ ...column, kind: column.kind }, source, sourceColumn, relocation));
  }
  return { columns, defaulted };
}

/** Source columns the target lacks, except those a relocation moves. */
function extraColumnsOf(
  source: SourceTable,
  targetTable: TargetTable,
  relocations: Relocation[],
): { table: string; column: string }[] {
  const targetNames = new Set(targetTable.columns.map((c) => c.name.toLowerCase()));
  return source.columns
    .filter((column) => {
      const lower = column.name.toLowerCase();
      if (targetNames.has(lower)) return false;
      return !relocations.some(
        (r) => r.fromTable === source.name.toLowerCase() && r.fromColumn === lower,
      );
    })
    .map((column) => ({ table: source.name, column: column.name }));
}

/** The whole plan of one table: its columns, the SQL that reads, copies and checksums it. */
function planTable(
  source: SourceTable,
  targetTable: TargetTable,
  schema: string,
  relocations: Relocation[],
  dropped: readonly DroppedRows[],
): TablePlan {
  if (!source.hasRowid) {
    throw new ImportError(
      "NOT_TAUTULLI",
      `Source table ${source.name} is a WITHOUT ROWID table, which no Tautulli release creates.`,
      "Import an unmodified tautulli.db.",
    );
  }
  const { columns, defaulted } = planColumns(source, targetTable, relocations);
  const sequenced = targetTable.columns.find(
    (c) => c.sequence && columns.some((p) => p.name === c.name),
  );
  const qualified = `${quoteIdent(schema)}.${quoteIdent(targetTable.name)}`;
  const droppedRowids = dropped
    .filter((d) => d.table === source.name)
    .flatMap((d) => d.rowids)
    .sort((a, b) => a - b);
  const select = `SELECT t.rowid, ${columns.map((c) => c.selectExpr).join(", ") || "NULL"} FROM ${quoteSqlite(source.name)} AS t`;
  const notDropped = droppedRowids.length > 0 ? `t.rowid NOT IN (${droppedRowids.join(", ")})` : "";
  return {
    name: targetTable.name,
    sourceName: source.name,
    columns,
    defaulted,
    droppedRowids,
    selectSql: `${select}${notDropped ? ` WHERE ${notDropped}` : ""} ORDER BY t.rowid`,
    blockSql: `${select} WHERE t.rowid BETWEEN ? AND ?${notDropped ? ` AND ${notDropped}` : ""} ORDER BY t.rowid`,
    copySql: `COPY ${qualified} (${columns.map((c) => quoteIdent(c.name)).join(", ")}) FROM STDIN`,
    checksumSql: checksumSql(
      qualified,
      columns.filter((c) => c.checksummed).map((c) => c.name),
    ),
    notChecksummed: columns.filter((c) => !c.checksummed).map((c) => c.name),
    sequence: sequenced
      ? {
          column: sequenced.name,
          sequence: sequenced.sequence!,
          identity: sequenced.identity !== "",
        }
      : undefined,
  };
}

export function buildPlan(
  sourceTables: SourceTable[],
  target: TargetSchema,
  dropped: readonly DroppedRows[] = [],
): ImportPlan {
  requireTautulliTables(sourceTables);
  const sourceByName = new Map(sourceTables.map((t) => [t.name.toLowerCase(), t]));
  const relocations = applicableRelocations(sourceByName, target);

  const extraTables: string[] = [];
  const extraColumns: { table: string; column: string }[] = [];
  const plans = new Map<string, TablePlan>();
  for (const source of sourceTables) {
    const targetTable = target.tables.get(source.name.toLowerCase());
    if (!targetTable) {
      extraTables.push(source.name);
      continue;
    }
    const plan = planTable(source, targetTable, target.schema, relocations, dropped);
    extraColumns.push(...extraColumnsOf(source, targetTable, relocations));
    plans.set(targetTable.name, plan);
  }

  const allTargetTables = [...target.tables.values()].map((t) => t.name);
  const copyOrder = dependencyOrder(allTargetTables, target.foreignKeys);
  return {
    tables: copyOrder.filter((t) => plans.has(t)).map((t) => plans.get(t)!),
    truncateOrder: [...copyOrder].reverse(),
    targetOnlyTables: copyOrder.filter((t) => !plans.has(t)),
    extraTables,
    extraColumns,
    relocations,
  };
}
