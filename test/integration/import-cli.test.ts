/**
 * `npm run import` (scripts/import.ts) against a real PostgreSQL and real SQLite files: exit
 * codes, the report file, the summary, the progress line, the embedded-server mode, and that the
 * database password never reaches the terminal.
 */
import * as assert from "assert/strict";
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import Database from "better-sqlite3";
import { Client } from "pg";
import type { ImportReport } from "../../lib/import/report";
import { migrateUp } from "../../lib/postgres/migrator";
import { generateTautulliDb, TautulliSample } from "../../lib/samples/tautulli-db";
import { writeNonSqliteFile } from "../../lib/samples/tautulli-hostile";
import { DATABASE_URL_ENV, main } from "../../scripts/import";
import { freshDatabase } from "../support/postgres";

const PROJECT_ROOT = path.resolve(__dirname, "..", "..");

async function run(argv: string[], options: { env?: NodeJS.ProcessEnv; isTty?: boolean } = {}) {
  let stdout = "";
  let stderr = "";
  const code = await main(argv, options.env ?? {}, {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    isTty: options.isTty ?? false,
  });
  return { code, stdout, stderr };
}

describe("npm run import (scripts/import.ts, real PostgreSQL)", function () {
  this.timeout(180_000);
  let workDir: string;
  let sample: TautulliSample;
  let url: string;
  let password: string;

  before(async () => {
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-import-cli-"));
    sample = generateTautulliDb(path.join(workDir, "tautulli.db"), {
      plays: 120,
      uncheckpointedPlays: 10,
      seed: 23,
    });
    url = await freshDatabase("import_cli");
    await migrateUp(url);
    password = decodeURIComponent(new URL(url).password);
    assert.ok(password.length >= 8);
  });
  after(() => fs.rmSync(workDir, { recursive: true, force: true }));

  it("bad usage exits 2 with the error and the help hint; --help exits 0", async () => {
    let result = await run([]);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /^error: --sqlite PATH is required\nsee 'plex-migrate import --help'\n$/,
    );
    result = await run(["--sqlite", sample.path, "--integrity-check", "fast"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--integrity-check must be full, quick or off/);
    result = await run(["--sqlite", sample.path, "--bogus"]);
    assert.equal(result.code, 2);
    result = await run(["--help"]);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /--overwrite/);
  });

  it("a dry run, then the import with a report file and a progress line, then the same file again", async () => {
    const dry = await run(["--sqlite", sample.path, "--database-url", url, "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^Dry run \(rolled back\): would import/);

    const reportFile = path.join(workDir, "report.json");
    const imported = await run(["--sqlite", sample.path, "--report", reportFile], {
      env: { [DATABASE_URL_ENV]: url },
      isTty: true,
    });
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /^Imported [\d,]+ rows from 22 tables/);
    assert.match(
      imported.stdout,
      /Verified in the transaction: row counts and content checksums of 22 tables/,
    );
    assert.match(
      imported.stderr,
      /\rcopy session_history [\d,]+\/[\d,]+ \| all \d+% \| [\d,]+ rows\/s/,
    );
    const report = JSON.parse(fs.readFileSync(reportFile, "utf8")) as ImportReport;
    assert.equal(report.status, "imported");
    assert.equal(
      report.tables.find((t) => t.table === "session_history")?.importedRows,
      sample.rowCounts.session_history,
    );

    const again = await run(["--sqlite", sample.path, "--database-url", url, "--json"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as ImportReport).status, "unchanged");

    for (const output of [dry, imported, again]) {
      assert.ok(
        !output.stdout.includes(password) && !output.stderr.includes(password),
        "the password was printed",
      );
    }
    assert.ok(!fs.readFileSync(reportFile, "utf8").includes(password));
  });

  it("exits 3 when a rule refuses (non-empty target without --overwrite) and 4 for an unusable source", async () => {
    const changed = path.join(workDir, "changed.db");
    fs.copyFileSync(sample.path, changed);
    fs.copyFileSync(`${sample.path}-wal`, `${changed}-wal`);
    const db = new Database(changed);
    db.exec("DELETE FROM notify_log WHERE id = 1");
    db.close();
    const refused = await run(["--sqlite", changed, "--database-url", url]);
    assert.equal(refused.code, 3);
    assert.match(
      refused.stderr,
      /^error: The target already holds \d+ rows .* Fix: .*--overwrite/m,
    );

    const zip = path.join(workDir, "backup.zip");
    writeNonSqliteFile(zip);
    const bad = await run(["--sqlite", zip, "--database-url", url]);
    assert.equal(bad.code, 4);
    assert.match(bad.stderr, /is not an SQLite database/);

    const wrong = new URL(url);
    wrong.password = "n0t-the-Passw0rd";
    const unreachable = await run(["--sqlite", sample.path, "--database-url", wrong.toString()]);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /Cannot connect to PostgreSQL/);
    assert.ok(!unreachable.stderr.includes("n0t-the-Passw0rd"));
  });

  it("without --database-url: starts an embedded PostgreSQL, migrates, imports and keeps its data directory; --json stays pure", async () => {
    // As root, PostgreSQL runs as the `postgres` user, which must be able to reach the directory.
    fs.chmodSync(workDir, 0o755);
    const parent = path.join(workDir, "embedded");
    const result = await run(["--sqlite", sample.path, "--data-dir", parent, "--json"]);
    assert.equal(result.code, 0, result.stderr);
    // stdout is the report and nothing else; where the server was kept is told on stderr.
    assert.equal((JSON.parse(result.stdout) as ImportReport).status, "imported");
    assert.match(result.stderr, /starting an embedded PostgreSQL/);
    const dataDir = /PostgreSQL data directory \(kept\): (\S+)/.exec(result.stderr)?.[1];
    assert.ok(dataDir && dataDir.startsWith(parent), result.stderr);
    assert.ok(fs.existsSync(path.join(dataDir, "PG_VERSION")), "the data directory was kept");
    const urlFile = /Connection URL \(with its password\): (\S+)/.exec(result.stderr)?.[1];
    assert.ok(urlFile);
    assert.equal(fs.statSync(urlFile).mode & 0o777, 0o600);
    const keptUrl = fs.readFileSync(urlFile, "utf8").trim();
    assert.ok(
      !`${result.stdout}${result.stderr}`.includes(decodeURIComponent(new URL(keptUrl).password)),
      "the password is only in the file",
    );
    assert.match(result.stderr, /pg_ctl -D /);
  });

  it("runs as `npm run import` does (ts-node, a separate process)", async () => {
    const other = await freshDatabase("import_cli_process");
    await migrateUp(other);
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        require.resolve("ts-node/dist/bin.js"),
        "--transpile-only",
        "scripts/import.ts",
        "--sqlite",
        sample.path,
        "--json",
      ],
      { cwd: PROJECT_ROOT, env: { ...process.env, [DATABASE_URL_ENV]: other } },
    );
    const report = JSON.parse(stdout) as ImportReport;
    assert.equal(report.status, "imported");
    const client = new Client({ connectionString: other });
    await client.connect();
    try {
      const rows = await client.query("SELECT count(*)::int AS n FROM session_history");
      assert.equal(rows.rows[0].n, sample.rowCounts.session_history);
    } finally {
      await client.end();
    }
  });
});
