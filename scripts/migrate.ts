/**
 * npm run migrate -- up|down|status --database-url URL [options]
 *
 * The migrator (lib/postgres/migrator.ts) by hand, for any reachable PostgreSQL 13+. The URL may
 * come from PLEX_MIGRATE_DATABASE_URL instead, which keeps the password out of `ps` and history.
 *
 * Exit codes: 0 done; 1 failed (connection, a migration that was rolled back); 2 bad usage;
 * 3 refused by a rule (newer or unstamped database, stamp mismatch, data loss, lock timeout).
 */
import { parseArgs } from "util";
import { redactSecrets } from "../lib/postgres/client-config";
import {
  listMigrationNames,
  migrateDown,
  migrateUp,
  MigrationRefusedError,
  migrationStatus,
} from "../lib/postgres/migrator";

export const DATABASE_URL_ENV = "PLEX_MIGRATE_DATABASE_URL";

const USAGE = `usage: npm run migrate -- <command> --database-url URL [options]

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
  --json               print the result as JSON on stdout
  -h, --help           show this help`;

class UsageError extends Error {}

const timestamp = () => new Date().toISOString();

const OPTIONS = {
  "database-url": { type: "string" },
  stamp: { type: "boolean" },
  to: { type: "string" },
  "allow-data-loss": { type: "boolean" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const parseCommandLine = (argv: string[]) =>
  parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });

export async function main(argv: string[], env = process.env): Promise<number> {
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const databaseUrl = values["database-url"] ?? env[DATABASE_URL_ENV] ?? "";
  const log = (line: string) => process.stderr.write(`${timestamp()} ${line}\n`);
  try {
    const command = positionals[0];
    if (positionals.length !== 1 || !["up", "down", "status"].includes(command)) {
      throw new UsageError(
        `expected one command, up, down or status; got "${positionals.join(" ")}"`,
      );
    }
    if (!databaseUrl)
      throw new UsageError(`--database-url is required (or set ${DATABASE_URL_ENV})`);
    if (values.stamp && command !== "up") throw new UsageError("--stamp only applies to up");
    if (values["allow-data-loss"] && command !== "down") {
      throw new UsageError("--allow-data-loss only applies to down");
    }
    if (values.to !== undefined && command === "status")
      throw new UsageError("--to does not apply to status");
    if (values.to !== undefined && values.to !== "0" && !listMigrationNames().includes(values.to)) {
      throw new UsageError(
        `--to: unknown migration "${values.to}"; known: ${listMigrationNames().join(", ")}`,
      );
    }

    let result: unknown;
    if (command === "up") {
      if (values.to === "0") throw new UsageError("--to 0 only applies to down");
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
      if (!values.json) {
        for (const name of status.applied) {
          process.stdout.write(
            `applied  ${name}${status.unknown.includes(name) ? "  (unknown to this program)" : ""}\n`,
          );
        }
        for (const name of status.pending) process.stdout.write(`pending  ${name}\n`);
        if (status.unknown.length > 0) {
          process.stdout.write("database is newer than this program: `up` will refuse it\n");
        }
        if (status.unrecordedTautulliTables.length > 0) {
          process.stdout.write(
            `holds ${status.unrecordedTautulliTables.length} Tautulli tables but no migration record: ` +
              "`up --stamp` verifies and records them\n",
          );
        }
        process.stdout.write(`schema version: ${status.schemaVersion || "(none)"}\n`);
      }
    }
    if (values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return 0;
  } catch (err) {
    const message = redactSecrets((err as Error).message ?? String(err), databaseUrl);
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${message}\n\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`${timestamp()} error: ${message}\n`);
    return err instanceof MigrationRefusedError ? 3 : 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err) => {
      process.stderr.write(`${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
