/**
 * `npm run migrate -- up|down|status` as a user runs it (the same ts-node command package.json
 * uses), against a real PostgreSQL.
 */
import * as assert from "assert/strict";
import { spawnSync } from "child_process";
import * as path from "path";
import { listMigrationNames } from "../../lib/postgres/migrator";
import { freshDatabase } from "../support/postgres";

const ROOT = path.resolve(__dirname, "..", "..");
const ALL = listMigrationNames();

function migrate(args: string[], env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(
    process.execPath,
    [
      path.join(ROOT, "node_modules", "ts-node", "dist", "bin.js"),
      "--transpile-only",
      "scripts/migrate.ts",
      ...args,
    ],
    { cwd: ROOT, env: { ...process.env, ...env }, encoding: "utf8", timeout: 90_000 },
  );
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("npm run migrate (CLI, real PostgreSQL)", function () {
  this.timeout(180_000);

  it("status, up, status, down --to 0, with the password never printed", async () => {
    const url = await freshDatabase("cli");
    const password = decodeURIComponent(new URL(url).password);

    const before = migrate(["status", "--database-url", url]);
    assert.equal(before.code, 0, before.stderr);
    assert.equal(
      before.stdout,
      `${ALL.map((n) => `pending  ${n}\n`).join("")}schema version: (none)\n`,
    );

    const up = migrate(["up", "--database-url", url, "--json"]);
    assert.equal(up.code, 0, up.stderr);
    const result = JSON.parse(up.stdout);
    assert.deepEqual(result.executed, ALL);
    assert.match(up.stderr, /^\S+Z initialising an empty database$/m);
    assert.match(up.stderr, new RegExp(`^\\S+Z applied ${ALL[0]} \\(\\d+\\.\\d\\d s\\)$`, "m"));

    // The URL may come from the environment instead of the command line.
    const status = migrate(["status", "--json"], { PLEX_MIGRATE_DATABASE_URL: url });
    assert.equal(status.code, 0, status.stderr);
    assert.deepEqual(JSON.parse(status.stdout).pending, []);

    const down = migrate(["down", "--to", "0", "--database-url", url]);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stderr, new RegExp(`reverted ${ALL[0]}`));

    for (const output of [before, up, status, down]) {
      assert.ok(!output.stdout.includes(password) && !output.stderr.includes(password));
    }
  });

  it("exits 3 with the rule's message when a rule refuses, 1 when it cannot connect", async () => {
    const url = await freshDatabase("clirefuse");
    const { Client } = await import("pg");
    const client = new Client({ connectionString: url });
    await client.connect();
    await client.query("CREATE TABLE users (id integer)");
    await client.end();
    const refused = migrate(["up", "--database-url", url]);
    assert.equal(refused.code, 3);
    assert.match(refused.stderr, /error: database .* already holds Tautulli tables \(users\)/);
    assert.match(refused.stderr, /up --stamp/);

    const unreachable = migrate([
      "up",
      "--database-url",
      "postgres://tautulli:hunter2secret@127.0.0.1:1/x",
    ]);
    assert.equal(unreachable.code, 1);
    assert.match(
      unreachable.stderr,
      /cannot connect to PostgreSQL at postgres:\/\/tautulli:\*\*\*@127\.0\.0\.1:1\/x/,
    );
    assert.ok(!unreachable.stderr.includes("hunter2secret"));
  });

  it("exits 2 naming the problem for bad usage", () => {
    const cases: [string[], RegExp][] = [
      [[], /--database-url is required|expected one command/],
      [
        ["sideways", "--database-url", "postgres://h/d"],
        /expected one command, up, down or status; got "sideways"/,
      ],
      [["status"], /--database-url is required \(or set PLEX_MIGRATE_DATABASE_URL\)/],
      [["down", "--stamp", "--database-url", "postgres://h/d"], /--stamp only applies to up/],
      [
        ["up", "--to", "nope", "--database-url", "postgres://h/d"],
        /--to: unknown migration "nope"/,
      ],
      [["up", "--bogus"], /Unknown option '--bogus'/],
    ];
    for (const [args, pattern] of cases) {
      const result = migrate(args, { PLEX_MIGRATE_DATABASE_URL: "" });
      assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, pattern);
      assert.match(result.stderr, /^error: .*\nsee 'plex-migrate migrate --help'\n$/);
      assert.equal(result.stdout, "");
    }
  });
});
