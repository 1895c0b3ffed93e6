/**
 * A model of Tautulli's SQLite schema: the tables, columns (declared type, default, constraints)
 * and indexes of a schema script such as `reference/tautulli/schema-current.sql`. The migrations
 * are checked against it, the stamp rule verifies an existing database with it, and the import
 * tests use it to recognise Tautulli's tables and indexes.
 *
 * SQLite itself reads the script: it runs in an in-memory database, and the model is what
 * SQLite then reports (sqlite_master, PRAGMA table_xinfo, index_list, index_xinfo) plus the rows
 * the script inserted. So every quirk of Tautulli's DDL (quoting styles, untyped columns,
 * double-quoted DEFAULT strings, table-level UNIQUE) means exactly what it means to SQLite.
 */
import * as fs from "fs";
import * as path from "path";
import Database from "better-sqlite3";

/** Where the vendored Tautulli schemas live in the repository. */
export const REFERENCE_DIR = path.resolve(__dirname, "..", "..", "reference", "tautulli");

/** The reference scripts: the current release and an old one (for schema-drift tests). */
export const REFERENCE_FILES = {
  current: path.join(REFERENCE_DIR, "schema-current.sql"),
  "v2.1": path.join(REFERENCE_DIR, "schema-v2.1.sql"),
} as const;

export type ReferenceName = keyof typeof REFERENCE_FILES;

/** SQLite's type affinity of a declared column type (https://sqlite.org/datatype3.html §3.1). */
export type SqliteAffinity = "INTEGER" | "TEXT" | "BLOB" | "REAL" | "NUMERIC";

/** A column `DEFAULT`. `value` is undefined when the default is an expression, not a literal. */
export interface SqliteDefault {
  /** The default as SQLite keeps it (PRAGMA table_xinfo), e.g. `0`, `'0 0 * * 0'`, `"0 0 * * 0"`, `NULL`. */
  sql: string;
  /** The literal's value: a string, a number, null for `NULL`, undefined for an expression. */
  value: string | number | null | undefined;
}

export interface SqliteColumn {
  name: string;
  /** Declared type as written, upper-cased (`INTEGER`, `TEXT`), or null when untyped. */
  declaredType: string | null;
  affinity: SqliteAffinity;
  notNull: boolean;
  /** Column-level `UNIQUE`. */
  unique: boolean;
  primaryKey: boolean;
  autoIncrement: boolean;
  /** Absent when the column has no `DEFAULT` clause. */
  default?: SqliteDefault;
}

export interface SqliteTable {
  name: string;
  columns: SqliteColumn[];
  /** Primary-key column names (column-level or table-level), in key order. */
  primaryKey: string[];
  /** Table-level `UNIQUE (a, b)` constraints, each a list of column names. */
  uniqueConstraints: string[][];
}

export interface SqliteIndexColumn {
  name: string;
  /** `DESC` for a descending key, else null (ascending, SQLite's default). */
  order: "DESC" | null;
}

export interface SqliteIndex {
  name: string;
  table: string;
  unique: boolean;
  columns: SqliteIndexColumn[];
  /** The `WHERE` clause of a partial index, if any. */
  where?: string;
}

/** A row the script inserts (every column, defaults included). */
export interface SqliteSeedRow {
  table: string;
  values: Record<string, string | number | null>;
}

export interface TautulliSchema {
  /** Tautulli release the script describes (`v2.17.2`), from its version_info row or header. */
  tautulliVersion: string | null;
  tables: SqliteTable[];
  /** Explicit `CREATE INDEX` statements (not SQLite's implicit autoindexes). */
  indexes: SqliteIndex[];
  seedRows: SqliteSeedRow[];
}

/** SQLite's affinity rules, in their documented order. */
export function sqliteAffinity(declaredType: string | null): SqliteAffinity {
  if (declaredType === null) return "BLOB";
  const type = declaredType.toUpperCase();
  if (type.includes("INT")) return "INTEGER";
  if (type.includes("CHAR") || type.includes("CLOB") || type.includes("TEXT")) return "TEXT";
  if (type.includes("BLOB") || type === "") return "BLOB";
  if (type.includes("REAL") || type.includes("FLOA") || type.includes("DOUB")) return "REAL";
  return "NUMERIC";
}

/** The value of a DEFAULT as PRAGMA table_xinfo gives it, or undefined for an expression. */
function defaultValue(sql: string): string | number | null | undefined {
  if (/^NULL$/i.test(sql)) return null;
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(sql)) return Number(sql);
  // A double-quoted text that names no column is a string to SQLite, as in Tautulli's old DDL.
  const quoted = /^'((?:[^']|'')*)'$/s.exec(sql) ?? /^"((?:[^"]|"")*)"$/s.exec(sql);
  if (quoted) return quoted[1].split(sql[0] + sql[0]).join(sql[0]);
  return undefined;
}

interface TableXinfoRow {
  name: string;
  type: string;
  notnull: number;
  dflt_value: string | null;
  pk: number;
  hidden: number;
}

interface IndexListRow {
  name: string;
  unique: number;
  origin: string;
  partial: number;
}

interface IndexXinfoRow {
  name: string | null;
  desc: number;
  key: number;
}

function quoteName(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function keyColumns(db: Database.Database, index: string): IndexXinfoRow[] {
  return (db.prepare(`PRAGMA index_xinfo(${quoteName(index)})`).all() as IndexXinfoRow[]).filter(
    (c) => c.key === 1,
  );
}

function readTable(db: Database.Database, name: string, sql: string): SqliteTable {
  const uniques = (db.prepare(`PRAGMA index_list(${quoteName(name)})`).all() as IndexListRow[])
    .filter((i) => i.origin === "u")
    .map((i) => keyColumns(db, i.name).map((c) => c.name!));
  const columnUnique = new Set(uniques.filter((u) => u.length === 1).map((u) => u[0]));
  const rows = (
    db.prepare(`PRAGMA table_xinfo(${quoteName(name)})`).all() as TableXinfoRow[]
  ).filter((c) => c.hidden === 0);
  // SQLite reports no pragma for AUTOINCREMENT; it can only follow the INTEGER PRIMARY KEY.
  const autoIncrement = /\bAUTOINCREMENT\b/i.test(sql);
  const primaryKey = rows
    .filter((c) => c.pk > 0)
    .sort((a, b) => a.pk - b.pk)
    .map((c) => c.name);
  const columns = rows.map((c): SqliteColumn => {
    const declaredType = c.type === "" ? null : c.type.toUpperCase();
    const column: SqliteColumn = {
      name: c.name,
      declaredType,
      affinity: sqliteAffinity(declaredType),
      notNull: c.notnull === 1,
      unique: columnUnique.has(c.name),
      primaryKey: c.pk > 0,
      autoIncrement: autoIncrement && c.pk > 0 && primaryKey.length === 1,
    };
    if (c.dflt_value !== null)
      column.default = { sql: c.dflt_value, value: defaultValue(c.dflt_value) };
    return column;
  });
  return {
    name,
    columns,
    primaryKey,
    uniqueConstraints: uniques.filter((u) => u.length > 1),
  };
}

function readIndex(db: Database.Database, name: string, table: string, sql: string): SqliteIndex {
  const listed = (
    db.prepare(`PRAGMA index_list(${quoteName(table)})`).all() as IndexListRow[]
  ).find((i) => i.name === name)!;
  const index: SqliteIndex = {
    name,
    table,
    unique: listed.unique === 1,
    columns: keyColumns(db, name).map((c) => ({
      name: c.name!,
      order: c.desc === 1 ? "DESC" : null,
    })),
  };
  if (listed.partial === 1) index.where = /\bWHERE\b([\s\S]*)$/i.exec(sql)![1].trim();
  return index;
}

/** What SQLite makes of a schema script: run in an in-memory database and read back. */
export function schemaOfSql(script: string): TautulliSchema {
  const db = new Database(":memory:");
  try {
    db.exec(script);
    const objects = db
      .prepare(
        "SELECT type, name, tbl_name AS tbl, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
      )
      .all() as { type: string; name: string; tbl: string; sql: string | null }[];
    const tables = objects
      .filter((o) => o.type === "table")
      .map((o) => readTable(db, o.name, o.sql ?? ""));
    const indexes = objects
      .filter((o) => o.type === "index" && o.sql !== null)
      .map((o) => readIndex(db, o.name, o.tbl, o.sql!));
    const seedRows: SqliteSeedRow[] = tables.flatMap((t) =>
      (
        db.prepare(`SELECT * FROM ${quoteName(t.name)} ORDER BY rowid`).all() as Record<
          string,
          string | number | null
        >[]
      ).map((values) => ({ table: t.name, values })),
    );
    const versionRow = seedRows.find(
      (row) => row.table === "version_info" && row.values.key === "version",
    );
    return {
      tautulliVersion:
        typeof versionRow?.values.value === "string"
          ? versionRow.values.value
          : (/Tautulli version\s*:\s*(v\d+(?:\.\d+)+)/.exec(script)?.[1] ?? null),
      tables,
      indexes,
      seedRows,
    };
  } finally {
    db.close();
  }
}

const cache = new Map<ReferenceName, TautulliSchema>();

/** The reference schema (`current` = the release the migrations create). */
export function loadTautulliReference(name: ReferenceName = "current"): TautulliSchema {
  let schema = cache.get(name);
  if (!schema) {
    schema = schemaOfSql(fs.readFileSync(REFERENCE_FILES[name], "utf8"));
    cache.set(name, schema);
  }
  return schema;
}

/** The table named `name` (case-insensitive, as SQLite matches names), or undefined. */
export function findTable(schema: TautulliSchema, name: string): SqliteTable | undefined {
  const lower = name.toLowerCase();
  return schema.tables.find((t) => t.name.toLowerCase() === lower);
}
