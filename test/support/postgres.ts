/**
 * The real PostgreSQL the integration tests use. By default one embedded server per test process
 * (started on first use, stopped by the root hook in test/support/hooks.ts); set
 * PLEX_MIGRATE_TEST_PG_URL to an admin URL (a role with CREATEDB) to use an existing server.
 * Every caller gets its own fresh database, so tests never see each other's rows.
 */
import * as crypto from "crypto";
import { Client } from "pg";
import { EmbeddedServer, startEmbeddedPostgres, withDatabase } from "../../lib/postgres/embedded";

export const EXTERNAL_URL_ENV = "PLEX_MIGRATE_TEST_PG_URL";

let embedded: Promise<EmbeddedServer> | undefined;
const createdOnExternal: string[] = [];

async function adminUrl(): Promise<string> {
  const external = process.env[EXTERNAL_URL_ENV];
  if (external) return external;
  embedded ??= startEmbeddedPostgres();
  return (await embedded).adminUrl;
}

/** Admin URL of the test server (for tests that need to act as a superuser). */
export async function testServerAdminUrl(): Promise<string> {
  return adminUrl();
}

/** Creates a fresh, empty database named after `label` and returns its URL. */
export async function freshDatabase(label = "test"): Promise<string> {
  const admin = await adminUrl();
  const name = `pm_${label
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "_")
    .slice(0, 40)}_${crypto.randomBytes(4).toString("hex")}`;
  const client = new Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
  if (process.env[EXTERNAL_URL_ENV]) createdOnExternal.push(name);
  return withDatabase(admin, name);
}

/** Stops the embedded server, or drops the databases made on an external one. */
export async function stopTestPostgres(): Promise<void> {
  if (embedded) {
    const server = await embedded;
    embedded = undefined;
    await server.stop();
  }
  const external = process.env[EXTERNAL_URL_ENV];
  if (external && createdOnExternal.length > 0) {
    const client = new Client({ connectionString: external });
    await client.connect();
    try {
      for (const name of createdOnExternal.splice(0)) {
        await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      }
    } finally {
      await client.end();
    }
  }
}
