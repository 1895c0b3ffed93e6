/**
 * From a `postgres://` URL to what `pg` and Sequelize need, with libpq's meaning of `sslmode`
 * (node-postgres alone treats `require` as `verify-full`).
 */
import { Client, type ClientConfig, type QueryResultRow } from "pg";
import { parse } from "pg-connection-string";
import { redactMessage, redactUrl } from "../redact";

/** `pg` client settings for `databaseUrl`; sslmode disable/require/verify-ca/verify-full as libpq. */
export function pgClientConfig(databaseUrl: string): ClientConfig {
  if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new Error(
      `invalid PostgreSQL URL ${redactUrl(databaseUrl)}: expected postgres://user:password@host:port/database`,
    );
  }
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(databaseUrl, { useLibpqCompat: true });
  } catch (err) {
    throw new Error(
      `invalid PostgreSQL URL ${redactUrl(databaseUrl)}: ${redactMessage(String((err as Error).message), [databaseUrl])}`,
    );
  }
  if (!parsed.host || !parsed.database) {
    throw new Error(
      `invalid PostgreSQL URL ${redactUrl(databaseUrl)}: expected postgres://user:password@host:port/database`,
    );
  }
  return {
    host: parsed.host,
    port: parsed.port ? Number(parsed.port) : 5432,
    user: parsed.user,
    password: parsed.password,
    database: parsed.database,
    ssl: parsed.ssl as ClientConfig["ssl"],
    application_name: parsed.application_name ?? "plex-migrate",
    // A server that does not answer (wrong endpoint, no Ready pod behind the tunnel) fails in seconds.
    connectionTimeoutMillis: parsed.connect_timeout
      ? Number(parsed.connect_timeout) * 1000
      : 15_000,
  };
}

/**
 * A connected client. A failed connect ends it and rethrows the driver's error; a connection the
 * server drops later is kept for `lost()`: a terminated backend is reported as an 'error' event,
 * which without a listener would crash the process.
 */
export async function openClient(
  config: ClientConfig,
): Promise<{ client: Client; lost: () => Error | undefined }> {
  const client = new Client(config);
  let lostError: Error | undefined;
  client.on("error", (error) => {
    lostError = error;
  });
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
  return { client, lost: () => lostError };
}

/** Runs `work` with a connected client for `databaseUrl`, and always closes it. */
export async function withClient<T>(
  databaseUrl: string,
  work: (client: Client) => Promise<T>,
): Promise<T> {
  const { client } = await openClient(pgClientConfig(databaseUrl));
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** The rows of one query on its own connection (tests, benchmarks, small one-off reads). */
export async function queryRows<T extends QueryResultRow>(
  databaseUrl: string,
  sql: string,
): Promise<T[]> {
  return withClient(databaseUrl, async (client) => (await client.query<T>(sql)).rows);
}
