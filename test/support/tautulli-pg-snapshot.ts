/**
 * A fingerprint of everything an import could change in a PostgreSQL database: every row of every
 * table (plex_migrate_* bookkeeping included), every sequence's position, every index and
 * constraint. Tests take one before a failing import and one after: equal means the target was
 * left exactly as it was.
 */
import { Client } from "pg";

export interface DatabaseSnapshot {
  /** table -> "rows:md5 of the ordered row texts". */
  tables: Record<string, string>;
  /** sequence -> "last_value/is_called". */
  sequences: Record<string, string>;
  /** index name -> definition. */
  indexes: Record<string, string>;
  /** "table.constraint" -> definition. */
  constraints: Record<string, string>;
}

export async function snapshotDatabase(databaseUrl: string): Promise<DatabaseSnapshot> {
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const snapshot: DatabaseSnapshot = { tables: {}, sequences: {}, indexes: {}, constraints: {} };
    const tables = await client.query<{ name: string }>(
      "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
    );
    for (const { name } of tables.rows) {
      const q = `"${name.replace(/"/g, '""')}"`;
      const digest = await client.query<{ rows: string; md5: string | null }>(
        `SELECT count(*)::text AS rows, md5(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE "C")) AS md5 FROM ${q} t`,
      );
      snapshot.tables[name] = `${digest.rows[0].rows}:${digest.rows[0].md5 ?? ""}`;
    }
    const sequences = await client.query<{ name: string }>(
      "SELECT sequencename AS name FROM pg_sequences WHERE schemaname = current_schema() ORDER BY 1",
    );
    for (const { name } of sequences.rows) {
      const state = await client.query<{ last_value: string; is_called: boolean }>(
        `SELECT last_value::text, is_called FROM "${name.replace(/"/g, '""')}"`,
      );
      snapshot.sequences[name] = `${state.rows[0].last_value}/${state.rows[0].is_called}`;
    }
    const indexes = await client.query<{ name: string; definition: string }>(
      "SELECT indexname AS name, indexdef AS definition FROM pg_indexes WHERE schemaname = current_schema()",
    );
    for (const row of indexes.rows) snapshot.indexes[row.name] = row.definition;
    const constraints = await client.query<{ name: string; definition: string }>(
      `SELECT c.conrelid::regclass::text || '.' || c.conname AS name, pg_get_constraintdef(c.oid) AS definition
         FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = current_schema()`,
    );
    for (const row of constraints.rows) snapshot.constraints[row.name] = row.definition;
    return snapshot;
  } finally {
    await client.end();
  }
}
