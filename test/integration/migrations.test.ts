/**
 * The migrations and the migrator against a real PostgreSQL (test/support/postgres.ts: embedded
 * server, or PLEX_MIGRATE_TEST_PG_URL). Every test works in its own fresh database.
 */
import * as assert from "assert/strict";
import { Client } from "pg";
import {
  BASELINE_MIGRATION,
  listMigrationNames,
  migrateDown,
  migrateUp,
  MIGRATION_LOCK_KEY,
  MigrationRefusedError,
  MIGRATIONS_TABLE,
  migrationStatus,
} from "../../lib/postgres/migrator";
import {
  expectedPostgresSchema,
  PostgresColumn,
  postgresColumnType,
} from "../../lib/postgres/schema-contract";
import { compareSchemas, introspectPostgresSchema } from "../../lib/postgres/schema-introspection";
import { loadTautulliReference } from "../../lib/postgres/tautulli-reference";
import { withClient } from "../../lib/postgres/client-config";
import { freshDatabase } from "../support/postgres";

const schemaDifferences = (url: string) =>
  withClient(url, async (client) =>
    compareSchemas(expectedPostgresSchema(), await introspectPostgresSchema(client)),
  );

const tableNames = (url: string) =>
  withClient(url, async (client) =>
    (
      await client.query<{ name: string }>(
        "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
      )
    ).rows.map((r) => r.name),
  );

async function rejectsWith(
  promise: Promise<unknown>,
  reason: string,
  pattern: RegExp,
): Promise<Error> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(
    caught instanceof MigrationRefusedError,
    `expected a MigrationRefusedError, got ${String(caught)}`,
  );
  assert.equal(caught.reason, reason);
  assert.match(caught.message, pattern);
  return caught;
}

const ALL = listMigrationNames();
const BASELINE = ALL.slice(0, ALL.indexOf(BASELINE_MIGRATION) + 1);

describe("migrations (real PostgreSQL)", function () {
  this.timeout(120_000);

  it("lists the migration files in timestamp order, the baseline first", () => {
    assert.deepEqual(ALL, [
      "20261201000000-create-tautulli-tables",
      "20261201000100-create-tautulli-indexes",
      "20261201000200-describe-tautulli-columns",
    ]);
    assert.ok(BASELINE.length >= 1 && BASELINE.length < ALL.length);
  });

  describe("a fresh database, migrated", () => {
    let url: string;
    before(async () => {
      url = await freshDatabase("migrated");
      const result = await migrateUp(url);
      assert.deepEqual(result.executed, ALL);
      assert.deepEqual(result.applied, ALL);
      assert.deepEqual(result.stamped, []);
      assert.equal(result.schemaVersion, ALL[ALL.length - 1]);
    });

    it("has exactly the schema docs/schema.md derives from the Tautulli reference", async () => {
      assert.deepEqual(await schemaDifferences(url), []);
    });

    it("has every table, column and index of schema-current.sql, typed by the rules", async () => {
      const reference = loadTautulliReference("current");
      const actual = await withClient(url, (client) => introspectPostgresSchema(client));
      assert.equal(reference.tables.length, 22);
      assert.equal(reference.indexes.length, 22);
      let columns = 0;
      for (const table of reference.tables) {
        const found = actual.tables.find((t) => t.name === table.name);
        assert.ok(found, `table ${table.name}`);
        assert.equal(found.columns.length, table.columns.length, `column count of ${table.name}`);
        for (const column of table.columns) {
          const pg: PostgresColumn | undefined = found.columns.find(
            (c) => c.name === column.name.toLowerCase(),
          );
          assert.ok(pg, `column ${table.name}.${column.name}`);
          assert.equal(
            pg.type,
            postgresColumnType(table.name, column),
            `${table.name}.${column.name}`,
          );
          assert.equal(
            pg.identity,
            column.autoIncrement,
            `identity of ${table.name}.${column.name}`,
          );
          columns++;
        }
      }
      assert.equal(columns, 532);
      for (const index of reference.indexes) {
        const found = actual.indexes.find((i) => i.name === index.name);
        assert.ok(found, `index ${index.name}`);
        assert.equal(found.unique, index.unique, `uniqueness of ${index.name}`);
        assert.deepEqual(
          found.columns,
          index.columns.map((c) => c.name.toLowerCase()),
        );
      }
    });

    it("spells the decisions of docs/schema.md out in the catalog", async () => {
      const actual = await withClient(url, (client) => introspectPostgresSchema(client));
      const column = (table: string, name: string) =>
        actual.tables.find((t) => t.name === table)!.columns.find((c) => c.name === name);
      assert.deepEqual(column("session_history", "user"), {
        name: "user",
        type: "text",
        notNull: false,
        default: null,
        identity: false,
      });
      assert.equal(column("session_history", "id")!.identity, true);
      assert.equal(column("session_history_metadata", "id")!.identity, false);
      assert.equal(column("session_history_media_info", "subtitle_forced")!.type, "boolean");
      assert.equal(column("users", "is_active")!.default, "true");
      assert.equal(column("users", "deleted_user")!.default, "false");
      assert.equal(column("newsletter_log", "start_time")!.type, "double precision");
      assert.equal(column("newsletters", "cron")!.default, "'0 0 * * 0'::text");
      assert.equal(column("newsletters", "cron")!.notNull, true);
      assert.equal(column("exports", "squareart_level")!.default, "0");
      assert.equal(column("sessions", "view_offset")!.type, "bigint");
      assert.deepEqual(
        actual.tables.find((t) => t.name === "library_sections")!.uniqueConstraints,
        [
          {
            name: "library_sections_server_id_section_id_key",
            columns: ["server_id", "section_id"],
          },
        ],
      );
      assert.deepEqual(actual.indexes.find((i) => i.name === "idx_session_history_user")!.columns, [
        "user",
      ]);
      const foreignKeys = await withClient(
        url,
        async (client) =>
          (await client.query("SELECT 1 FROM pg_constraint WHERE contype = 'f'")).rowCount,
      );
      assert.equal(foreignKeys, 0);
    });

    it("accepts rows with Tautulli's ids and keeps generating past them", async () => {
      await withClient(url, async (client) => {
        await client.query("BEGIN");
        await client.query(`INSERT INTO users (id, user_id, username) VALUES (41, 0, 'Local')`);
        await client.query("SELECT setval(pg_get_serial_sequence('users', 'id'), 41)");
        const { rows } = await client.query(
          `INSERT INTO users (user_id, username) VALUES (12345, 'alice') RETURNING id, is_active, "deleted_user"`,
        );
        assert.deepEqual(rows, [{ id: "42", is_active: true, deleted_user: false }]);
        await client.query("ROLLBACK");
      });
    });

    it("reports nothing pending and changes nothing when run again", async () => {
      const again = await migrateUp(url);
      assert.deepEqual(again.executed, []);
      assert.deepEqual(again.applied, ALL);
      assert.deepEqual(await migrationStatus(url), {
        applied: ALL,
        pending: [],
        unknown: [],
        schemaVersion: ALL[ALL.length - 1],
        unrecordedTautulliTables: [],
      });
    });
  });

  it("the comparison catches one missing column, index, default or unique constraint", async () => {
    const url = await freshDatabase("sabotaged");
    await migrateUp(url);
    await withClient(url, async (client) => {
      await client.query("ALTER TABLE session_history DROP COLUMN platform_version");
      await client.query("DROP INDEX idx_session_history_user");
      await client.query("ALTER TABLE notifiers ALTER COLUMN on_play DROP DEFAULT");
      await client.query("ALTER TABLE users DROP CONSTRAINT users_user_id_key");
      await client.query("ALTER TABLE exports ADD COLUMN extra_column text");
    });
    assert.deepEqual((await schemaDifferences(url)).sort(), [
      "column exports.extra_column (text) is not expected",
      "column notifiers.on_play is boolean, expected boolean default false",
      "column session_history.platform_version is missing (expected text)",
      "index idx_session_history_user ON session_history (user) is missing",
      "table users lacks UNIQUE (user_id)",
    ]);
  });

  it("round-trips up -> down -> up", async () => {
    const url = await freshDatabase("roundtrip");
    await migrateUp(url);
    const lines: string[] = [];
    const down = await migrateDown(url, { to: 0, log: (line) => lines.push(line) });
    assert.deepEqual(down.reverted, [...ALL].reverse());
    assert.deepEqual(down.applied, []);
    assert.deepEqual(await tableNames(url), [MIGRATIONS_TABLE]);
    assert.ok(lines.some((line) => line.startsWith(`reverted ${ALL[0]}`)));
    const up = await migrateUp(url);
    assert.deepEqual(up.executed, ALL);
    assert.deepEqual(await schemaDifferences(url), []);
  });

  it("down reverts one migration by default and refuses to drop tables that hold rows", async () => {
    const url = await freshDatabase("downguard");
    await migrateUp(url);
    assert.deepEqual((await migrateDown(url)).reverted, [ALL[ALL.length - 1]]);
    await withClient(url, (client) =>
      client.query(`INSERT INTO users (user_id, username) VALUES (1, 'bob')`),
    );
    await rejectsWith(
      migrateDown(url, { to: 0 }),
      "data-loss",
      /refusing to drop table users: it holds rows/,
    );
    // The index migration was reverted before the refusal; the table migration rolled back whole.
    const status = await migrationStatus(url);
    assert.deepEqual(status.applied, [ALL[0]]);
    assert.ok((await tableNames(url)).includes("users"));
    const forced = await migrateDown(url, { to: 0, allowDataLoss: true });
    assert.deepEqual(forced.reverted, [ALL[0]]);
    assert.deepEqual(await tableNames(url), [MIGRATIONS_TABLE]);
  });

  it("applies only the pending migrations to an older database", async () => {
    const url = await freshDatabase("older");
    const first = await migrateUp(url, { to: BASELINE_MIGRATION });
    assert.deepEqual(first.executed, BASELINE);
    assert.deepEqual((await migrationStatus(url)).pending, ALL.slice(BASELINE.length));
    const second = await migrateUp(url);
    assert.deepEqual(second.executed, ALL.slice(BASELINE.length));
    assert.deepEqual(second.applied, ALL);
    // A target the database is already past changes nothing (up never reverts).
    const behind = await migrateUp(url, { to: ALL[0] });
    assert.deepEqual(behind.executed, []);
    assert.deepEqual(behind.applied, ALL);
  });

  it("refuses a database that is newer than this program, changing nothing", async () => {
    const url = await freshDatabase("newer");
    await migrateUp(url, { to: BASELINE_MIGRATION });
    await withClient(url, (client) =>
      client.query(
        `INSERT INTO ${MIGRATIONS_TABLE} (name, applied_at) VALUES ('20991231000000-from-the-future', now())`,
      ),
    );
    await rejectsWith(
      migrateUp(url),
      "newer-database",
      /^database is newer than this program: it records migration 20991231000000-from-the-future/,
    );
    const status = await migrationStatus(url);
    assert.deepEqual(status.unknown, ["20991231000000-from-the-future"]);
    assert.deepEqual(
      status.pending,
      ALL.slice(BASELINE.length),
      "the pending migration was not applied",
    );
    await rejectsWith(migrateDown(url), "newer-database", /database is newer than this program/);
  });

  describe("a database with Tautulli tables but no migration record", () => {
    /** A database that has this schema but was not made by these migrations. */
    async function unrecordedDatabase(label: string): Promise<string> {
      const url = await freshDatabase(label);
      await migrateUp(url, { to: BASELINE_MIGRATION });
      await withClient(url, (client) => client.query(`DROP TABLE ${MIGRATIONS_TABLE}`));
      return url;
    }

    it("is refused without a stamp and left untouched", async () => {
      const url = await unrecordedDatabase("unstamped");
      const before = await tableNames(url);
      await rejectsWith(
        migrateUp(url),
        "unstamped-database",
        /already holds Tautulli tables \(cloudinary_lookup, exports, .*\) but no record of plex-migrate migrations/,
      );
      assert.deepEqual(await tableNames(url), before);
      assert.equal((await migrationStatus(url)).unrecordedTautulliTables.length, 22);
    });

    it("is refused even when it holds a single Tautulli table", async () => {
      const url = await freshDatabase("onetable");
      await withClient(url, (client) => client.query("CREATE TABLE session_history (id integer)"));
      await rejectsWith(migrateUp(url), "unstamped-database", /\(session_history\)/);
    });

    it("is stamped when its schema matches, then gets the pending migrations", async () => {
      const url = await unrecordedDatabase("stamp");
      const lines: string[] = [];
      const result = await migrateUp(url, { stamp: true, log: (line) => lines.push(line) });
      assert.deepEqual(result.stamped, BASELINE);
      assert.deepEqual(result.executed, ALL.slice(BASELINE.length));
      assert.deepEqual(result.applied, ALL);
      assert.ok(
        lines.some((line) => /^stamped .*schema verified: 22 Tautulli tables match/.test(line)),
        lines.join("\n"),
      );
      assert.deepEqual(await schemaDifferences(url), []);
    });

    it("is refused a stamp when its schema differs, naming the difference", async () => {
      const url = await unrecordedDatabase("stampbad");
      await withClient(url, (client) =>
        client.query("ALTER TABLE users DROP COLUMN filter_photos"),
      );
      await rejectsWith(
        migrateUp(url, { stamp: true }),
        "stamp-mismatch",
        /cannot stamp: .*Differences:\n {2}- column users\.filter_photos is missing/s,
      );
      assert.ok(!(await tableNames(url)).includes(MIGRATIONS_TABLE), "no record was written");
    });
  });

  it("a stamp on an empty database just initialises it", async () => {
    const url = await freshDatabase("stampempty");
    const result = await migrateUp(url, { stamp: true });
    assert.deepEqual(result.stamped, []);
    assert.deepEqual(result.executed, ALL);
  });

  it("two migrators started at once apply each migration exactly once", async () => {
    const url = await freshDatabase("concurrent");
    // Hold the lock so that both runs are certainly waiting at the same time, then let go.
    const holder = new Client({ connectionString: url });
    await holder.connect();
    await holder.query("SELECT pg_advisory_lock($1, $2)", [...MIGRATION_LOCK_KEY]);
    const waiting: string[] = [];
    const runs = [0, 1].map((i) =>
      migrateUp(url, { log: (line) => line.includes("waiting") && waiting.push(`run ${i}`) }),
    );
    const deadline = Date.now() + 20_000;
    while (waiting.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(waiting.sort(), ["run 0", "run 1"]);
    await holder.query("SELECT pg_advisory_unlock($1, $2)", [...MIGRATION_LOCK_KEY]);
    await holder.end();
    const results = await Promise.all(runs);
    const executed = results.flatMap((r) => r.executed).sort();
    assert.deepEqual(executed, ALL);
    assert.ok(results.some((r) => r.executed.length === 0));
    for (const result of results) assert.deepEqual(result.applied, ALL);
    const rows = await withClient(
      url,
      async (client) =>
        (await client.query(`SELECT count(*)::int AS n FROM ${MIGRATIONS_TABLE}`)).rows[0].n,
    );
    assert.equal(rows, ALL.length);
  });

  it("gives up waiting for the lock after lockTimeoutMs, changing nothing", async () => {
    const url = await freshDatabase("locktimeout");
    const holder = new Client({ connectionString: url });
    await holder.connect();
    try {
      await holder.query("SELECT pg_advisory_lock($1, $2)", [...MIGRATION_LOCK_KEY]);
      await rejectsWith(
        migrateUp(url, { lockTimeoutMs: 500 }),
        "lock-timeout",
        /another migration run has held the lock/,
      );
      assert.deepEqual(await tableNames(url), []);
    } finally {
      await holder.end();
    }
  });

  it("rolls a failing migration back whole, its record included", async () => {
    const url = await freshDatabase("failing");
    await migrateUp(url, { to: ALL[0] });
    // An index name the index migration will create last is already taken by something else.
    await withClient(url, (client) =>
      client.query("CREATE INDEX idx_sessions_continued ON users (email)"),
    );
    await assert.rejects(migrateUp(url), (err: Error) => {
      assert.match(err.message, /20261201000100-create-tautulli-indexes/);
      assert.match(err.message, /idx_sessions_continued/);
      assert.match(err.message, /rolled back/);
      return true;
    });
    const status = await migrationStatus(url);
    assert.deepEqual(status.applied, [ALL[0]]);
    const created = await withClient(
      url,
      async (client) =>
        (
          await client.query(
            "SELECT indexname FROM pg_indexes WHERE indexname = 'idx_session_history_media_type'",
          )
        ).rowCount,
    );
    assert.equal(created, 0, "indexes created before the failure were rolled back");
  });

  it("never shows the password when the server cannot be reached", async () => {
    const url = "postgres://tautulli:s3cr%40t-pass@127.0.0.1:1/tautulli";
    for (const attempt of [migrateUp(url), migrationStatus(url), migrateDown(url)]) {
      await assert.rejects(attempt, (err: Error) => {
        assert.match(
          err.message,
          /cannot connect to PostgreSQL at postgres:\/\/tautulli:\*\*\*@127\.0\.0\.1:1\/tautulli/,
        );
        assert.doesNotMatch(err.message, /s3cr/);
        return true;
      });
    }
  });

  it("refuses an unknown target migration", async () => {
    const url = await freshDatabase("target");
    await rejectsWith(
      migrateUp(url, { to: "nope" }),
      "unknown-migration",
      /unknown migration "nope"/,
    );
  });
});
