/**
 * The rows Tautulli's own upgrade removes from an old tautulli.db before its constraints hold.
 *
 * Tautulli runs `dbcheck()` (plexpy/__init__.py, Tautulli/Tautulli v2.17.2 @ c7153deb) at every
 * start. Among its upgrade steps, a few delete rows: libraries with an empty server_id, the
 * mobile_devices table of the 2017 app registration, http images in image_hash_lookup, and, under
 * "Fix unique constraints", every duplicate of the six lookup caches except the one with the
 * lowest id; then it creates the unique indexes the target schema has. A file from an older
 * release (or one whose unique index went missing) still holds those rows, and PostgreSQL would
 * refuse them under the same unique indexes. The import leaves them out exactly as Tautulli
 * deletes them: same tables, same conditions, in dbcheck's order, each rule seeing the table as
 * the rules before it left it, evaluated by SQLite itself on the read snapshot (so `GROUP BY`
 * puts all NULL keys in one group and `LIKE` ignores ASCII case, as in Tautulli). The file is
 * never changed; every rule is counted in the report with the rowids it left out.
 *
 * Not applied: dbcheck steps that add or rewrite rows (the 'Local' user, platform names, codec
 * spellings): no constraint of the target needs them, and the import copies what the file holds.
 */
import type Database from "better-sqlite3";
import type { SourceTable } from "./sqlite-source";
import { quote } from "./sqlite-source";

export interface DbcheckRule {
  id: string;
  table: string;
  /** Rows it leaves out, as docs/import.md says it. */
  drops: string;
  /** Tautulli's statement (or condition) the rule reproduces. */
  tautulli: string;
  /** Columns the rule reads; a table without them is skipped, as Tautulli's `except sqlite3.OperationalError: pass` skips it. */
  columns: readonly string[];
  /**
   * The query of the rowids the rule deletes from table `t` (quoted), or undefined when it
   * deletes none. `alive` is an SQL condition selecting the rows the rules before it kept;
   * `tableSql` is the table's CREATE statement.
   */
  select(t: string, alive: string, tableSql: string): string | undefined;
}

function keepLowestId(table: string, key: string): DbcheckRule {
  return {
    id: `${table}.duplicates`,
    table,
    drops: `every row whose ${key} another row with a lower id has (NULL counts as one value)`,
    tautulli: `DELETE FROM ${table} WHERE id NOT IN (SELECT MIN(id) FROM ${table} GROUP BY ${key})`,
    columns: ["id", key],
    select: (t, alive) =>
      `SELECT rowid FROM ${t} WHERE ${alive} AND id NOT IN (SELECT MIN(id) FROM ${t} WHERE ${alive} GROUP BY ${key})`,
  };
}

/** In dbcheck's order. docs/import.md lists the same table (a unit test keeps them equal). */
export const DBCHECK_RULES: readonly DbcheckRule[] = [
  {
    id: "library_sections.empty-server-id",
    table: "library_sections",
    drops: "libraries with server_id '' (duplicates written before libraries were keyed by server)",
    tautulli: "DELETE FROM library_sections WHERE server_id = ''",
    columns: ["server_id"],
    select: (t, alive) => `SELECT rowid FROM ${t} WHERE ${alive} AND server_id = ''`,
  },
  {
    id: "mobile_devices.device-token-table",
    table: "mobile_devices",
    drops:
      "all rows of a mobile_devices table created with device_token TEXT NOT NULL UNIQUE (PlexPy before 2017-03: no device_id, which the target requires)",
    tautulli:
      "DROP TABLE mobile_devices (then CREATE it again, empty) when its CREATE statement contains 'device_token TEXT NOT NULL UNIQUE'",
    columns: [],
    select: (t, alive, tableSql) =>
      tableSql.includes("device_token TEXT NOT NULL UNIQUE")
        ? `SELECT rowid FROM ${t} WHERE ${alive}`
        : undefined,
  },
  {
    id: "image_hash_lookup.http-image",
    table: "image_hash_lookup",
    drops: "images whose img starts with http (any case): hashes of remote images",
    tautulli: "DELETE FROM image_hash_lookup WHERE img LIKE 'http%'",
    columns: ["img"],
    select: (t, alive) => `SELECT rowid FROM ${t} WHERE ${alive} AND img LIKE 'http%'`,
  },
  keepLowestId("tvmaze_lookup", "rating_key"),
  keepLowestId("themoviedb_lookup", "rating_key"),
  keepLowestId("musicbrainz_lookup", "rating_key"),
  keepLowestId("image_hash_lookup", "img_hash"),
  keepLowestId("cloudinary_lookup", "img_hash"),
  keepLowestId("imgur_lookup", "img_hash"),
];

/** The rows one rule leaves out (none are reported for rules that found nothing). */
export interface DroppedRows {
  rule: string;
  /** Source table as SQLite spells it. */
  table: string;
  /** Rowids (= Tautulli's id) in ascending order. */
  rowids: number[];
}

/**
 * Evaluates every rule on `db` (inside the caller's read transaction) for the tables of
 * `tables`; the tables' names are matched case-insensitively, as SQLite matches them.
 */
export function findDroppedRows(db: Database.Database, tables: SourceTable[]): DroppedRows[] {
  const byName = new Map(tables.map((t) => [t.name.toLowerCase(), t]));
  const droppedByTable = new Map<string, number[]>();
  const result: DroppedRows[] = [];
  for (const rule of DBCHECK_RULES) {
    const table = byName.get(rule.table);
    if (!table) continue;
    const columns = new Set(table.columns.map((c) => c.name.toLowerCase()));
    if (!rule.columns.every((c) => columns.has(c))) continue;
    const tableSql =
      (
        db
          .prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?")
          .get(table.name) as { sql: string | null } | undefined
      )?.sql ?? "";
    const before = droppedByTable.get(rule.table) ?? [];
    const alive = "rowid NOT IN (SELECT value FROM json_each(@dropped))";
    const sql = rule.select(quote(table.name), alive, tableSql);
    if (sql === undefined) continue;
    const rowids = (
      db
        .prepare(sql)
        .pluck()
        .all({ dropped: JSON.stringify(before) }) as number[]
    ).sort((a, b) => a - b);
    if (rowids.length === 0) continue;
    droppedByTable.set(rule.table, [...before, ...rowids]);
    result.push({ rule: rule.id, table: table.name, rowids });
  }
  return result;
}
