/**
 * The import stamp: one row per committed import in `plex_migrate_imports` (next to the migration
 * table `plex_migrate_migrations`), holding the source fingerprint and the report. It makes the
 * import idempotent: the same fingerprint imported again is a no-op that returns the stored report.
 */
import type { ClientBase } from "pg";
import type { ImportReport } from "./report";

export const STAMP_TABLE = "plex_migrate_imports";

export interface ImportStamp {
  fingerprint: string;
  importedAt: string;
  report: ImportReport;
}

async function stampTableExists(client: ClientBase): Promise<boolean> {
  const result = await client.query<{ exists: boolean }>(
    "SELECT to_regclass(format('%I.%I', current_schema(), $1::text)) IS NOT NULL AS exists",
    [STAMP_TABLE],
  );
  return result.rows[0].exists;
}

/** The most recent import, or undefined when none was committed. */
export async function latestStamp(client: ClientBase): Promise<ImportStamp | undefined> {
  if (!(await stampTableExists(client))) return undefined;
  const result = await client.query<{
    fingerprint: string;
    imported_at: Date;
    report: ImportReport;
  }>(
    `SELECT source_fingerprint AS fingerprint, imported_at, report FROM ${STAMP_TABLE} ORDER BY id DESC LIMIT 1`,
  );
  const row = result.rows[0];
  return row
    ? {
        fingerprint: row.fingerprint,
        importedAt: row.imported_at.toISOString(),
        report: row.report,
      }
    : undefined;
}

/** Records an import inside its transaction (created on first use). */
export async function writeStamp(
  client: ClientBase,
  fingerprint: string,
  report: ImportReport,
): Promise<void> {
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${STAMP_TABLE} (
       id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       source_fingerprint text NOT NULL,
       imported_at timestamptz NOT NULL DEFAULT now(),
       report jsonb NOT NULL
     )`,
  );
  await client.query(`INSERT INTO ${STAMP_TABLE} (source_fingerprint, report) VALUES ($1, $2)`, [
    fingerprint,
    JSON.stringify(report),
  ]);
}

/** The last applied migration name, or null when the migration table is absent. */
export async function appliedSchemaVersion(client: ClientBase): Promise<string | null> {
  const exists = await client.query<{ exists: boolean }>(
    "SELECT to_regclass(format('%I.%I', current_schema(), 'plex_migrate_migrations')) IS NOT NULL AS exists",
  );
  if (!exists.rows[0].exists) return null;
  const result = await client.query<{ name: string }>(
    "SELECT name FROM plex_migrate_migrations ORDER BY name DESC LIMIT 1",
  );
  return result.rows[0]?.name ?? null;
}
