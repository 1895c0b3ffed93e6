/**
 * A PostgreSQL connection as the program passes it around, and its URL form. The password is a
 * secret wherever this travels inside Pulumi outputs.
 */

export type SslMode = "disable" | "require" | "verify-full";

export interface PostgresConnection {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  sslMode: SslMode;
}

/** postgres://user:password@host:port/database?sslmode=... with every part escaped. */
export function connectionUrl(connection: PostgresConnection): string {
  const host = connection.host.includes(":") ? `[${connection.host}]` : connection.host;
  const url = new URL(`postgres://${host}:${connection.port}`);
  url.username = encodeURIComponent(connection.user);
  url.password = encodeURIComponent(connection.password);
  url.pathname = `/${encodeURIComponent(connection.database)}`;
  if (connection.sslMode !== "disable") url.searchParams.set("sslmode", connection.sslMode);
  return url.toString();
}
