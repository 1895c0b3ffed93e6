/**
 * plex-migrate migrate up|down|status --database-url URL [options]
 *
 * The migrator (lib/postgres/migrator.ts) by hand, for any reachable PostgreSQL 13+. The URL may
 * come from PLEX_MIGRATE_DATABASE_URL instead, which keeps the password out of `ps` and history.
 * Conventions: lib/cli.ts.
 *
 * Exit codes: 0 done; 1 failed (connection, a migration that was rolled back); 2 bad usage;
 * 3 refused by a rule (newer or unstamped database, stamp mismatch, data loss, lock timeout).
 */
import {
  CliRun,
  DATABASE_URL_ENV,
  databaseUrlOption,
  exitWith,
  cliMain,
  type CliMain,
  UsageError,
} from "../lib/cli";
import {
  listMigrationNames,
  migrateDown,
  migrateUp,
  MigrationRefusedError,
  migrationStatus,
  type MigrationStatus,
} from "../lib/postgres/migrator";

export { DATABASE_URL_ENV };

const USAGE = `usage: plex-migrate migrate <command> --database-url URL [options]
       npm run -s migrate -- <command> --database-url URL [options]

commands:
  up       apply pending migrations (a fresh database is initialised)
  down     revert the last migration (or down to and including --to NAME, or --to 0 for all)
  status   list applied, pending and unknown migrations (changes nothing)

options:
  --database-url URL   postgres://user:password@host:port/database[?sslmode=require]
                       (or set ${DATABASE_URL_ENV})
  --stamp              up: accept a database that already has the Tautulli schema but no
                       migration record, after verifying every table, column and index
  --to NAME            up: stop after NAME; down: revert down to and including NAME (0 = all)
  --allow-data-loss    down: allow dropping tables that hold rows
  --json               print the result as JSON on stdout (and nothing else)
  -h, --help           show this help
  --version            show the version

exit codes: 0 done; 1 failed (connection, a migration rolled back); 2 bad usage;
3 refused by a rule (newer or unstamped database, stamp mismatch, data loss, lock timeout).`;

const timestamp = () => new Date().toISOString();

const OPTIONS = {
  "database-url": { type: "string" },
  stamp: { type: "boolean" },
  to: { type: "string" },
  "allow-data-loss": { type: "boolean" },
  json: { type: "boolean" },
} as const;

type MigrateRun = CliRun<typeof OPTIONS>;
type Command = "up" | "down" | "status";

/** Every check of the command line, before any work. */
function checkArgs({ values, positionals, env }: MigrateRun): {
  command: Command;
  databaseUrl: string;
} {
  const command = positionals[0];
  if (positionals.length !== 1 || !["up", "down", "status"].includes(command)) {
    throw new UsageError(
      `expected one command, up, down or status; got "${positionals.join(" ")}"`,
    );
  }
  const databaseUrl = databaseUrlOption(values["database-url"], env);
  if (!databaseUrl) throw new UsageError(`--database-url is required (or set ${DATABASE_URL_ENV})`);
  if (values.stamp && command !== "up") throw new UsageError("--stamp only applies to up");
  if (values["allow-data-loss"] && command !== "down") {
    throw new UsageError("--allow-data-loss only applies to down");
  }
  if (values.to !== undefined && command === "status")
    throw new UsageError("--to does not apply to status");
  if (values.to === "0" && command === "up") throw new UsageError("--to 0 only applies to down");
  if (values.to !== undefined && values.to !== "0" && !listMigrationNames().includes(values.to)) {
    throw new UsageError(
      `--to: unknown migration "${values.to}"; known: ${listMigrationNames().join(", ")}`,
    );
  }
  return { command: command as Command, databaseUrl };
}

function statusText(status: MigrationStatus): string {
  const lines: string[] = [];
  for (const name of status.applied) {
    lines.push(
      `applied  ${name}${status.unknown.includes(name) ? "  (unknown to this program)" : ""}`,
    );
  }
  for (const name of status.pending) lines.push(`pending  ${name}`);
  if (status.unknown.length > 0)
    lines.push("database is newer than this program: `up` will refuse it");
  if (status.unrecordedTautulliTables.length > 0) {
    lines.push(
      `holds ${status.unrecordedTautulliTables.length} Tautulli tables but no migration record: ` +
        "`up --stamp` verifies and records them",
    );
  }
  lines.push(`schema version: ${status.schemaVersion || "(none)"}`);
  return `${lines.join("\n")}\n`;
}

async function migrateCommand(run: MigrateRun): Promise<number> {
  const { values, io } = run;
  const { command, databaseUrl } = checkArgs(run);
  const log = (line: string) => io.stderr(`${timestamp()} ${line}\n`);
  let result: unknown;
  if (command === "up") {
    result = await migrateUp(databaseUrl, { stamp: values.stamp, to: values.to, log });
  } else if (command === "down") {
    result = await migrateDown(databaseUrl, {
      to: values.to === "0" ? 0 : values.to,
      allowDataLoss: values["allow-data-loss"],
      log,
    });
  } else {
    const status = await migrationStatus(databaseUrl);
    result = status;
    if (!values.json) io.stdout(statusText(status));
  }
  if (values.json) io.stdout(`${JSON.stringify(result, null, 2)}\n`);
  return 0;
}

export const main: CliMain = cliMain({
  command: "migrate",
  usage: USAGE,
  options: OPTIONS,
  positionals: true,
  urls: ({ values, env }) => [values["database-url"], env[DATABASE_URL_ENV]],
  run: migrateCommand,
  exitCode: (error) => (error instanceof MigrationRefusedError ? 3 : 1),
});

if (require.main === module) exitWith(main(process.argv.slice(2)));
