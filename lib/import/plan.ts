/**
 * Matches the source tables and columns to the target's, by name (case-insensitively, as SQLite
 * and unquoted PostgreSQL names both are), and decides for every column how its values are read,
 * normalised, encoded and checksummed.
 *
 * * A target column the source lacks (an older Tautulli) is left out of the COPY, so it takes its
 *   target default.
 * * Source tables and columns the target lacks are reported, never silently dropped.
 * * Before Tautulli v2.7 the library id lived in session_history_metadata.section_id; it moves to
 *   session_history.section_id the way Tautulli's own upgrade does (NOTES.md §7).
 */
import type { DroppedRows } from "./dbcheck";
import { ImportError } from "./errors";
import type { TargetKind } from "./normalize";
import { canonicalEncoderFor, checksumSql, quoteIdent } from "./pg-text";
import { isSecretColumn } from "../redact";
import { quote as quoteSqlite, SourceTable } from "./sqlite-source";
import { dependencyOrder, TargetSchema } from "./target-schema";

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

/** Columns that moved between Tautulli releases (NOTES.md §7). */
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

export function buildPlan(
  sourceTables: SourceTable[],
  target: TargetSchema,
  dropped: readonly DroppedRows[] = [],
): ImportPlan {
  const sourceByName = new Map(sourceTables.map((t) => [t.name.toLowerCase(), t]));
  const missingCore = REQUIRED_TAUTULLI_TABLES.filter((t) => !sourceByName.has(t));
  if (missingCore.length > 0) {
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

  const relocations = RELOCATIONS.filter((r) => {
    const targetTable = target.tables.get(r.table);
    const sourceTable = sourceByName.get(r.table);
    const fromTable = sourceByName.get(r.fromTable);
    return (
      targetTable?.columns.some((c) => c.name.toLowerCase() === r.column) &&
      sourceTable &&
      !sourceTable.columns.some((c) => c.name.toLowerCase() === r.column) &&
      fromTable?.columns.some((c) => c.name.toLowerCase() === r.fromColumn)
    );
  });

  const extraTables: string[] = [];
  const extraColumns: { table: string; column: string }[] = [];
  const plans = new Map<string, TablePlan>();
  for (const source of sourceTables) {
    const targetTable = target.tables.get(source.name.toLowerCase());
    if (!targetTable) {
      extraTables.push(source.name);
      continue;
    }
    if (!source.hasRowid) {
      throw new ImportError(
        "NOT_TAUTULLI",
        `Source table ${source.name} is a WITHOUT ROWID table, which no Tautulli release creates.`,
        "Import an unmodified tautulli.db.",
      );
    }
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
      const selectExpr = sourceColumn
        ? `t.${quoteSqlite(sourceColumn.name)}`
        : `(SELECT r.${quoteSqlite(relocation!.fromColumn)} FROM ${quoteSqlite(relocation!.fromTable)} AS r WHERE r.${quoteSqlite(relocation!.joinColumn)} = t.${quoteSqlite(relocation!.joinColumn)})`;
      columns.push({
        name: column.name,
        type: column.type,
        kind: column.kind,
        maxLength: column.maxLength,
        source: sourceColumn
          ? { table: source.name, column: sourceColumn.name }
          : { table: relocation!.fromTable, column: relocation!.fromColumn },
        selectExpr,
        relocated: !sourceColumn,
        secret: isSecretColumn(column.name),
        checksummed: canonicalEncoderFor(column.kind) !== undefined,
      });
    }
    const targetNames = new Set(targetTable.columns.map((c) => c.name.toLowerCase()));
    for (const column of source.columns) {
      const lower = column.name.toLowerCase();
      if (targetNames.has(lower)) continue;
      if (
        relocations.some((r) => r.fromTable === source.name.toLowerCase() && r.fromColumn === lower)
      )
        continue;
      extraColumns.push({ table: source.name, column: column.name });
    }
    const sequenced = targetTable.columns.find(
      (c) => c.sequence && columns.some((p) => p.name === c.name),
    );
    const qualified = `${quoteIdent(target.schema)}.${quoteIdent(targetTable.name)}`;
    const droppedRowids = dropped
      .filter((d) => d.table === source.name)
      .flatMap((d) => d.rowids)
      .sort((a, b) => a - b);
    const select = `SELECT t.rowid, ${columns.map((c) => c.selectExpr).join(", ") || "NULL"} FROM ${quoteSqlite(source.name)} AS t`;
    const notDropped =
      droppedRowids.length > 0 ? `t.rowid NOT IN (${droppedRowids.join(", ")})` : "";
    plans.set(targetTable.name, {
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
    });
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
