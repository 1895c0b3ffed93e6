/**
 * Reads a PostgreSQL schema back from the catalog (information_schema, pg_indexes, pg_constraint)
 * and compares it with an expected one (normally {@link expectedPostgresSchema}, derived from the
 * Tautulli reference). The schema tests use this, and so does the migrator before it stamps an
 * existing database: a stamp is only written when this finds no difference.
 */
import type { ClientBase } from "pg";
import type {
  PostgresColumn,
  PostgresIndex,
  PostgresSchema,
  PostgresTable,
} from "./schema-contract";

/** Reads every table, column, key, unique constraint and explicit index of `schema`. */
export async function introspectPostgresSchema(
  client: ClientBase,
  schema = "public",
): Promise<PostgresSchema> {
  const columns = await client.query<{
    table_name: string;
    column_name: string;
    data_type: string;
    is_nullable: "YES" | "NO";
    column_default: string | null;
    is_identity: "YES" | "NO";
  }>(
    `SELECT c.table_name, c.column_name, c.data_type, c.is_nullable, c.column_default, c.is_identity
       FROM information_schema.columns c
       JOIN information_schema.tables t
         ON t.table_schema = c.table_schema AND t.table_name = c.table_name
      WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE'
      ORDER BY c.table_name, c.ordinal_position`,
    [schema],
  );
  const constraints = await client.query<{
    table_name: string;
    name: string;
    type: "p" | "u";
    columns: string[];
  }>(
    `SELECT rel.relname AS table_name, con.conname AS name, con.contype AS type,
            array_agg(att.attname::text ORDER BY k.ordinality) AS columns
       FROM pg_constraint con
       JOIN pg_class rel ON rel.oid = con.conrelid
       JOIN pg_namespace ns ON ns.oid = rel.relnamespace
       CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ordinality)
       JOIN pg_attribute att ON att.attrelid = con.conrelid AND att.attnum = k.attnum
      WHERE ns.nspname = $1 AND con.contype IN ('p', 'u')
      GROUP BY rel.relname, con.conname, con.contype
      ORDER BY rel.relname, con.conname`,
    [schema],
  );
  // pg_indexes lists constraint-backed indexes too; those are compared as constraints.
  const indexes = await client.query<{ tablename: string; indexname: string; indexdef: string }>(
    `SELECT i.tablename, i.indexname, i.indexdef
       FROM pg_indexes i
      WHERE i.schemaname = $1
        AND NOT EXISTS (
          SELECT 1 FROM pg_constraint con
            JOIN pg_namespace ns ON ns.oid = con.connamespace
           WHERE ns.nspname = i.schemaname AND con.conname = i.indexname AND con.contype IN ('p', 'u', 'x'))
      ORDER BY i.tablename, i.indexname`,
    [schema],
  );

  const tables = new Map<string, PostgresTable>();
  for (const row of columns.rows) {
    let table = tables.get(row.table_name);
    if (!table) {
      table = { name: row.table_name, columns: [], primaryKey: [], uniqueConstraints: [] };
      tables.set(row.table_name, table);
    }
    table.columns.push({
      name: row.column_name,
      type: row.data_type,
      notNull: row.is_nullable === "NO",
      default: row.column_default,
      identity: row.is_identity === "YES",
    });
  }
  for (const row of constraints.rows) {
    const table = tables.get(row.table_name);
    if (!table) continue;
    if (row.type === "p") table.primaryKey = row.columns;
    else table.uniqueConstraints.push({ name: row.name, columns: row.columns });
  }
  return {
    tables: [...tables.values()],
    indexes: indexes.rows.map((row) =>
      parseIndexDefinition(row.indexname, row.tablename, row.indexdef),
    ),
  };
}

/** Splits an index key list on top-level commas. */
function splitKeys(list: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let quoted = false;
  let current = "";
  for (const ch of list) {
    if (ch === '"') quoted = !quoted;
    if (!quoted && ch === "(") depth++;
    if (!quoted && ch === ")") depth--;
    if (!quoted && depth === 0 && ch === ",") {
      keys.push(current.trim());
      current = "";
    } else {
      current += ch;
    }
  }
  if (current.trim()) keys.push(current.trim());
  return keys;
}

/** `CREATE UNIQUE INDEX x ON public.t USING btree ("user", stopped DESC)` -> the model. */
export function parseIndexDefinition(
  name: string,
  table: string,
  definition: string,
): PostgresIndex {
  const match = /^CREATE (UNIQUE )?INDEX .*? ON .*? USING \w+ \((.*)\)(?: WHERE .*)?$/s.exec(
    definition,
  );
  if (!match) return { name, table, unique: false, columns: [definition] };
  const columns = splitKeys(match[2]).map((key) => {
    const keyMatch =
      /^("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)(?: (DESC))?(?: NULLS (?:FIRST|LAST))?$/.exec(key);
    if (!keyMatch) return key; // an expression key: compared as written
    const column = keyMatch[1].startsWith('"')
      ? keyMatch[1].slice(1, -1).replace(/""/g, '"')
      : keyMatch[1];
    return keyMatch[2] ? `${column} DESC` : column;
  });
  return { name, table, unique: Boolean(match[1]), columns };
}

export interface CompareOptions {
  /**
   * Report tables, columns and indexes that exist but are not expected, on the expected tables.
   * Other tables (the migration meta table, anything unrelated) are never reported.
   * @default true
   */
  reportUnexpected?: boolean;
}

const describeColumn = (c: PostgresColumn) =>
  `${c.type}${c.identity ? " identity" : ""}${c.notNull ? " not null" : ""}${c.default !== null ? ` default ${c.default}` : ""}`;

const sameList = (a: string[], b: string[]) =>
  a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * Every way `actual` differs from `expected`, one readable line each (empty when they match):
 * missing or unexpected tables' columns, a column's type/nullability/default/identity, primary
 * keys, unique constraints (by columns) and explicit indexes (by name, columns and uniqueness).
 * Column order is not compared (ALTER TABLE upgrades make it differ; the import matches by name).
 */
export function compareSchemas(
  expected: PostgresSchema,
  actual: PostgresSchema,
  options: CompareOptions = {},
): string[] {
  const reportUnexpected = options.reportUnexpected ?? true;
  const differences: string[] = [];
  const actualTables = new Map(actual.tables.map((t) => [t.name, t]));
  for (const table of expected.tables) {
    const found = actualTables.get(table.name);
    if (!found) {
      differences.push(`table ${table.name} is missing`);
      continue;
    }
    const foundColumns = new Map(found.columns.map((c) => [c.name, c]));
    for (const column of table.columns) {
      const other = foundColumns.get(column.name);
      if (!other) {
        differences.push(
          `column ${table.name}.${column.name} is missing (expected ${describeColumn(column)})`,
        );
      } else if (describeColumn(other) !== describeColumn(column)) {
        differences.push(
          `column ${table.name}.${column.name} is ${describeColumn(other)}, expected ${describeColumn(column)}`,
        );
      }
    }
    if (reportUnexpected) {
      const expectedNames = new Set(table.columns.map((c) => c.name));
      for (const column of found.columns) {
        if (!expectedNames.has(column.name)) {
          differences.push(
            `column ${table.name}.${column.name} (${describeColumn(column)}) is not expected`,
          );
        }
      }
    }
    if (!sameList(found.primaryKey, table.primaryKey)) {
      differences.push(
        `table ${table.name} has primary key (${found.primaryKey.join(", ")}), expected (${table.primaryKey.join(", ")})`,
      );
    }
    const key = (columns: string[]) => columns.join(", ");
    const foundUnique = new Set(found.uniqueConstraints.map((u) => key(u.columns)));
    const expectedUnique = new Set(table.uniqueConstraints.map((u) => key(u.columns)));
    for (const unique of expectedUnique) {
      if (!foundUnique.has(unique))
        differences.push(`table ${table.name} lacks UNIQUE (${unique})`);
    }
    if (reportUnexpected) {
      for (const unique of foundUnique) {
        if (!expectedUnique.has(unique))
          differences.push(`table ${table.name} has an unexpected UNIQUE (${unique})`);
      }
    }
  }

  const expectedTableNames = new Set(expected.tables.map((t) => t.name));
  const actualIndexes = new Map(actual.indexes.map((i) => [i.name, i]));
  const describeIndex = (i: PostgresIndex) =>
    `${i.unique ? "UNIQUE " : ""}ON ${i.table} (${i.columns.join(", ")})`;
  for (const index of expected.indexes) {
    const found = actualIndexes.get(index.name);
    if (!found) {
      differences.push(`index ${index.name} ${describeIndex(index)} is missing`);
    } else if (describeIndex(found) !== describeIndex(index)) {
      differences.push(
        `index ${index.name} is ${describeIndex(found)}, expected ${describeIndex(index)}`,
      );
    }
  }
  if (reportUnexpected) {
    const expectedIndexNames = new Set(expected.indexes.map((i) => i.name));
    for (const index of actual.indexes) {
      if (expectedTableNames.has(index.table) && !expectedIndexNames.has(index.name)) {
        differences.push(`index ${index.name} ${describeIndex(index)} is not expected`);
      }
    }
  }
  return differences;
}
