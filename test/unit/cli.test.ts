/**
 * The command-line conventions (lib/cli.ts) on the three programs, in process and through the
 * `plex-migrate` bin as a user runs it: help and version on stdout with exit 0, bad usage as one
 * `error:` line plus the help hint with exit 2 before any work (a bad URL before the SQLite
 * file), nothing on stdout but results.
 */
import * as assert from "assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { CliIo } from "../../lib/cli";
import { generateTautulliDb } from "../../lib/samples/tautulli-db";
import { main as importMain } from "../../scripts/import";
import { main as migrateMain } from "../../scripts/migrate";
import { main as rehearseMain } from "../../scripts/rehearse";

const ROOT = path.resolve(__dirname, "..", "..");
const VERSION = (
  JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
    version: string;
  }
).version;

type Main = (argv: string[], env?: NodeJS.ProcessEnv, io?: CliIo) => Promise<number>;

async function run(main: Main, argv: string[], env: NodeJS.ProcessEnv = {}) {
  let stdout = "";
  let stderr = "";
  const code = await main(argv, env, {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    isTty: false,
  });
  return { code, stdout, stderr };
}

const PROGRAMS: [string, Main][] = [
  ["import", importMain],
  ["migrate", migrateMain],
  ["rehearse", rehearseMain],
];

function assertUsageError(
  result: { code: number; stdout: string; stderr: string },
  command: string,
  pattern: RegExp,
) {
  assert.equal(result.code, 2, result.stderr);
  assert.equal(result.stdout, "", "nothing on stdout");
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 2, result.stderr);
  assert.match(lines[0], /^error: /);
  assert.match(lines[0], pattern);
  assert.equal(lines[1], `see 'plex-migrate ${command} --help'`);
}

describe("command-line conventions (lib/cli.ts)", () => {
  for (const [command, main] of PROGRAMS) {
    describe(`plex-migrate ${command}`, () => {
      it("-h and --help print the usage on stdout and exit 0", async () => {
        for (const flag of ["-h", "--help"]) {
          const result = await run(main, [flag]);
          assert.equal(result.code, 0);
          assert.match(result.stdout, new RegExp(`^usage: plex-migrate ${command}`));
          assert.match(result.stdout, /--version/);
          assert.equal(result.stderr, "");
        }
      });

      it("--version prints the version and exits 0", async () => {
        const result = await run(main, ["--version"]);
        assert.deepEqual(result, {
          code: 0,
          stdout: `plex-migrate ${command} ${VERSION}\n`,
          stderr: "",
        });
      });

      it("an unknown option is one error line and the help hint, exit 2", async () => {
        assertUsageError(await run(main, ["--bogus"]), command, /Unknown option '--bogus'/);
        assertUsageError(
          await run(main, ["--json=x", "--work-dir"]),
          command,
          /Unknown option|argument missing|does not take an argument/,
        );
      });
    });
  }

  it("import: a bad URL is a usage error, found before the SQLite file", async () => {
    const missing = path.join(os.tmpdir(), "plex-migrate-no-such-dir", "tautulli.db");
    assertUsageError(
      await run(importMain, ["--sqlite", missing, "--database-url", "mysql://u:5439@h:5439/d"]),
      "import",
      /^error: --database-url: invalid PostgreSQL URL mysql:\/\/u:\*\*\*@h:5439\/d: expected postgres:\/\//,
    );
    assertUsageError(
      await run(importMain, ["--sqlite", missing], {
        PLEX_MIGRATE_DATABASE_URL: "postgres://tautulli:tautulli@",
      }),
      "import",
      /^error: PLEX_MIGRATE_DATABASE_URL: invalid PostgreSQL URL/,
    );
    assertUsageError(await run(importMain, []), "import", /--sqlite PATH is required/);
    assertUsageError(
      await run(importMain, ["--sqlite", missing, "--integrity-check", "fast"]),
      "import",
      /--integrity-check must be full, quick or off, not "fast"/,
    );
    assertUsageError(
      await run(importMain, ["--sqlite", missing, "stray"]),
      "import",
      /unexpected argument "stray"/,
    );
  });

  it("import: a missing SQLite file (with a good URL) is not a usage error", async () => {
    const result = await run(importMain, [
      "--sqlite",
      path.join(os.tmpdir(), "plex-migrate-no-such-dir", "tautulli.db"),
      "--database-url",
      "postgres://u:pw@127.0.0.1:1/d",
    ]);
    assert.equal(result.code, 4, result.stderr);
    assert.equal(result.stdout, "");
    assert.match(result.stderr, /^error: The SQLite file .* does not exist\. Fix: /m);
    assert.doesNotMatch(result.stderr, /see 'plex-migrate/);
  });

  it("migrate: commands and option combinations are checked before connecting", async () => {
    assertUsageError(await run(migrateMain, []), "migrate", /expected one command/);
    assertUsageError(
      await run(migrateMain, ["sideways", "--database-url", "postgres://h/d"]),
      "migrate",
      /expected one command, up, down or status; got "sideways"/,
    );
    assertUsageError(
      await run(migrateMain, ["status"]),
      "migrate",
      /--database-url is required \(or set PLEX_MIGRATE_DATABASE_URL\)/,
    );
    assertUsageError(
      await run(migrateMain, ["down", "--stamp", "--database-url", "postgres://h/d"]),
      "migrate",
      /--stamp only applies to up/,
    );
    assertUsageError(
      await run(migrateMain, ["up", "--database-url", "http://postgres:postgres@h/postgres"]),
      "migrate",
      /invalid PostgreSQL URL http:\/\/postgres:\*\*\*@h\/postgres/,
    );
  });

  it("errors show the URL without its password, and nothing else is garbled by it", async () => {
    // Passwords that also spell the scheme, the user, the database, the port and the file name.
    const migrate = await run(migrateMain, [
      "status",
      "--database-url",
      "postgres://postgres:postgres@127.0.0.1:1/postgres",
    ]);
    assert.equal(migrate.code, 1);
    assert.equal(
      migrate.stderr,
      "error: cannot connect to PostgreSQL at postgres://postgres:***@127.0.0.1:1/postgres: connect ECONNREFUSED 127.0.0.1:1\n",
    );
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-cli-test-"));
    try {
      const sqlite = path.join(dir, "tautulli.db");
      generateTautulliDb(sqlite, { plays: 5, seed: 2 });
      for (const [password, url] of [
        ["tautulli", "postgres://tautulli:tautulli@127.0.0.1:1/tautulli"],
        ["1", "postgresql://plex:1@127.0.0.1:1/tautulli"],
      ]) {
        const imported = await run(importMain, ["--sqlite", sqlite, "--database-url", url]);
        assert.equal(imported.code, 1, imported.stderr);
        assert.match(
          imported.stderr,
          new RegExp(
            `^error: Cannot connect to PostgreSQL at ${url.replace(`:${password}@`, ":***@").replace(/[.*?/]/g, "\\$&")}: connect ECONNREFUSED 127\\.0\\.0\\.1:1\\. Fix: `,
            "m",
          ),
        );
        assert.ok(!imported.stderr.includes(`:${password}@`));
      }
      const port = await run(importMain, [
        "--sqlite",
        sqlite,
        "--database-url",
        "postgres://plex:5439@127.0.0.1:5439/tautulli?connect_timeout=2",
      ]);
      assert.match(port.stderr, /at postgres:\/\/plex:\*\*\*@127\.0\.0\.1:5439\/tautulli/);
      assert.ok(
        !port.stderr.includes("***@127.0.0.1:***"),
        "the port is not taken for the password",
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("rehearse: bad numbers and sizes are usage errors", async () => {
    assertUsageError(
      await run(rehearseMain, ["--link-mbps", "fast"]),
      "rehearse",
      /--link-mbps must be a positive number, not "fast"/,
    );
    assertUsageError(
      await run(rehearseMain, ["--sample", "huge"]),
      "rehearse",
      /--sample must be standard or small, not "huge"/,
    );
  });

  it("the plex-migrate bin runs the commands without npm's banner", () => {
    const bin = path.join(ROOT, "scripts", "plex-migrate.js");
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
      bin: Record<string, string>;
    };
    assert.deepEqual(manifest.bin, { "plex-migrate": "scripts/plex-migrate.js" });
    const exec = (args: string[]) =>
      spawnSync(process.execPath, [bin, ...args], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
    const version = exec(["migrate", "--version"]);
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout, `plex-migrate migrate ${VERSION}\n`);
    const top = exec(["--version"]);
    assert.equal(top.stdout, `plex-migrate ${VERSION}\n`);
    const help = exec(["--help"]);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /^usage: plex-migrate <command>/);
    const unknown = exec(["sideways"]);
    assert.equal(unknown.status, 2);
    assert.equal(unknown.stdout, "");
    assert.equal(
      unknown.stderr,
      `error: unknown command "sideways"; expected import, migrate, rehearse\nsee 'plex-migrate --help'\n`,
    );
    const usage = exec(["import", "--sqlite", "/x", "--database-url", "nope"]);
    assert.equal(usage.status, 2);
    assert.equal(usage.stdout, "");
    assert.match(usage.stderr, /^error: --database-url: invalid PostgreSQL URL/);
  });
});
