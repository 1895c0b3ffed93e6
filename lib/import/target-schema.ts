/**
 * The PostgreSQL side as it is, read from the catalog at import time: tables, column types,
 * defaults, identity sequences, indexes and constraints. The import normalises by these types,
 * so the migrations (docs/schema.md) stay the only definition of the schema.
 */
import type { ClientBase } from "pg";
import { targetKindOf, TargetKind } from "./normalize";

/** Tables of the import's own bookkeeping, never treated as Tautulli tables. */
export const OWN_TABLE_PREFIX = "plex_migrate_";

export interface TargetColumn {
  name: string;
  /** pg_type.typname (int8, bool, text, ...). */
  typname: string;
  /** format_type() text, e.g. "character varying(20)". */
  type: string;
  /** The kind the import normalises to; undefined for types it cannot write. */
  kind?: TargetKind;
  /** varchar(n): n. */
  maxLength: number | null;
  notNull: boolean;
  /** Default expression, or null. */
  default: string | null;
  /** 'a' (ALWAYS), 'd' (BY DEFAULT) or '' (not an identity column). */
  identity: string;
  /** A generated column: PostgreSQL computes it, the import never writes it. */
  generated: boolean;
  /** The sequence feeding the column (identity or serial), as a qualified name. */
  sequence: string | null;
}

export interface TargetTable {
  name: string;
  columns: TargetColumn[];
}

export interface TargetSchema {
  /** The schema the import writes to (current_schema()). */
  schema: string;
  serverVersion: string;
  encoding: string;
  /** Tautulli tables by lower-cased name (our own plex_migrate_* tables excluded). */
  tables: Map<string, TargetTable>;
  /** Referenced -> referencing edges between these tables (foreign keys, if any). */
  foreignKeys: { table: string; references: string }[];
}

export async function readTargetSchema(client: ClientBase): Promise<TargetSchema> {
  const info = await client.query<{ schema: string; version: string; encoding: string }>(
    "SELECT current_schema() AS schema, current_setting('server_version') AS version, current_setting('server_encoding') AS encoding",
  );
  const { schema, version, encoding } = info.rows[0];
  const columns = await client.query<{
    table_name: string;
    column_name: string;
    typname: string;
    type: string;
    typmod: number;
    not_null: boolean;
    default: string | null;
    identity: string;
    generated: string;
    sequence: string | null;
  }>(
    `SELECT c.relname AS table_name, a.attname AS column_name, t.typname, format_type(a.atttypid, a.atttypmod) AS type,
            a.atttypmod AS typmod, a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default,
            a.attidentity AS identity, a.attgenerated AS generated,
            pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) AS sequence
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
      WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
        AND left(c.relname, ${OWN_TABLE_PREFIX.length}) <> '${OWN_TABLE_PREFIX}'
      ORDER BY c.relname, a.attnum`,
  );
  const tables = new Map<string, TargetTable>();
  for (const row of columns.rows) {
    let table = tables.get(row.table_name.toLowerCase());
    if (!table) {
      table = { name: row.table_name, columns: [] };
      tables.set(row.table_name.toLowerCase(), table);
    }
    const kind = targetKindOf(row.typname);
    table.columns.push({
      name: row.column_name,
      typname: row.typname,
      type: row.type,
      kind,
      maxLength: kind === "varchar" && row.typmod > 4 ? row.typmod - 4 : null,
      notNull: row.not_null,
      default: row.default,
      identity: row.identity,
      generated: row.generated !== "",
      sequence: row.sequence,
    });
  }
  const fks = await client.query<{ table_name: string; references: string }>(
    `SELECT c.conrelid::regclass::text AS table_name, c.confrelid::regclass::text AS references
       FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
      WHERE c.contype = 'f' AND n.nspname = current_schema()`,
  );
  return {
    schema,
    serverVersion: version,
    encoding,
    tables,
    foreignKeys: fks.rows.map((r) => ({
      table: unquote(r.table_name),
      references: unquote(r.references),
    })),
  };
}

function unquote(regclassText: string): string {
  const last = regclassText.split(".").pop() ?? regclassText;
  return last.startsWith('"') ? last.slice(1, -1).replace(/""/g, '"') : last;
}

/**
 * Orders tables so that a table comes after every table it references (parents first), for the
 * copy; truncation uses the reverse. Ties keep alphabetical order.
 */
export function dependencyOrder(
  tables: string[],
  foreignKeys: { table: string; references: string }[],
): string[] {
  const remaining = new Set(tables);
  const ordered: string[] = [];
  while (remaining.size > 0) {
    const ready = [...remaining]
      .filter(
        (t) =>
          !foreignKeys.some(
            (fk) => fk.table === t && fk.references !== t && remaining.has(fk.references),
          ),
      )
      .sort();
    // A cycle: take the rest alphabetically (TRUNCATE of all of them at once still works).
    const next = ready.length > 0 ? ready : [...remaining].sort();
    for (const t of next) {
      ordered.push(t);
      remaining.delete(t);
    }
  }
  return ordered;
}

export interface SchemaObjects {
  /** name -> definition (pg_get_indexdef) of every index on the tables. */
  indexes: Map<string, { definition: string; valid: boolean; ready: boolean }>;
  /** "table.name" -> definition (pg_get_constraintdef) of every constraint on the tables. */
  constraints: Map<string, { definition: string; validated: boolean }>;
}

/** Indexes and constraints of `tables`, for the before/after comparison. */
export async function readSchemaObjects(
  client: ClientBase,
  tables: string[],
): Promise<SchemaObjects> {
  const indexes = await client.query<{
    name: string;
    definition: string;
    valid: boolean;
    ready: boolean;
  }>(
    `SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS definition, i.indisvalid AS valid, i.indisready AS ready
       FROM pg_index i
       JOIN pg_class tc ON tc.oid = i.indrelid
       JOIN pg_class ic ON ic.oid = i.indexrelid
       JOIN pg_namespace n ON n.oid = tc.relnamespace
      WHERE n.nspname = current_schema() AND tc.relname = ANY($1)`,
    [tables],
  );
  const constraints = await client.query<{
    table_name: string;
    name: string;
    definition: string;
    validated: boolean;
  }>(
    `SELECT tc.relname AS table_name, c.conname AS name, pg_get_constraintdef(c.oid) AS definition, c.convalidated AS validated
       FROM pg_constraint c
       JOIN pg_class tc ON tc.oid = c.conrelid
       JOIN pg_namespace n ON n.oid = tc.relnamespace
      WHERE n.nspname = current_schema() AND tc.relname = ANY($1)`,
    [tables],
  );
  return {
    indexes: new Map(
      indexes.rows.map((r) => [
        r.name,
        { definition: r.definition, valid: r.valid, ready: r.ready },
      ]),
    ),
    constraints: new Map(
      constraints.rows.map((r) => [
        `${r.table_name}.${r.name}`,
        { definition: r.definition, validated: r.validated },
      ]),
    ),
  };
}

export interface DeferrableIndex {
  name: string;
  table: string;
  definition: string;
  comment: string | null;
}

/**
 * Secondary indexes of `tables` that the import may drop before the COPY and build again after
 * it (one sort instead of a b-tree insert per row): every index that backs no constraint, on a
 * table the current role owns. Primary keys and UNIQUE constraints stay in place throughout.
 */
export async function deferrableIndexes(
  client: ClientBase,
  tables: string[],
): Promise<DeferrableIndex[]> {
  const result = await client.query<DeferrableIndex>(
    `SELECT ic.relname AS name, tc.relname AS table, pg_get_indexdef(i.indexrelid) AS definition,
            obj_description(i.indexrelid, 'pg_class') AS comment
       FROM pg_index i
       JOIN pg_class ic ON ic.oid = i.indexrelid
       JOIN pg_class tc ON tc.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = tc.relnamespace
      WHERE n.nspname = current_schema() AND tc.relname = ANY($1)
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        AND pg_has_role(tc.relowner, 'USAGE')
      ORDER BY tc.relname, ic.relname`,
    [tables],
  );
  return result.rows;
}
