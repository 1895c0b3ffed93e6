/**
 * The SchemaMigrations dynamic provider as the engine runs it: serialized by @pulumi/pulumi's
 * closure serializer, loaded from the text in a plain Node process (test/support/dynamic-provider-
 * host.ts), then check/create/diff/update/read/delete against a real PostgreSQL.
 */
import * as assert from "assert/strict";
import { schemaMigrationsProvider } from "../../components/schema-migrations";
import {
  BASELINE_MIGRATION,
  listMigrationNames,
  MIGRATIONS_TABLE,
} from "../../lib/postgres/migrator";
import { UNKNOWN_VALUE } from "../../lib/postgres/schema-migrations-provider";
import { LoadedProvider } from "../support/dynamic-provider-host";
import { queryRows as query } from "../../lib/postgres/client-config";
import { freshDatabase } from "../support/postgres";

const ALL = listMigrationNames();
const BASELINE = ALL.slice(0, ALL.indexOf(BASELINE_MIGRATION) + 1);

describe("SchemaMigrations provider (serialized, real PostgreSQL)", function () {
  this.timeout(120_000);
  let provider: LoadedProvider;

  before(async () => {
    provider = await LoadedProvider.load(schemaMigrationsProvider);
  });
  after(async () => {
    await provider?.close();
  });

  it("creates the schema, then diffs to no change, then to an update when one is pending", async () => {
    const url = await freshDatabase("provider");
    const older = { databaseUrl: url, migrations: BASELINE, stamp: false };
    const created = await provider.create<Record<string, unknown>>(older);
    assert.match(created.id, /^127\.0\.0\.1:\d+\/pm_provider_[0-9a-f]+$/);
    assert.deepEqual(
      { ...created.outs, __provider: undefined },
      {
        databaseUrl: url,
        migrations: BASELINE,
        stamp: false,
        applied: BASELINE,
        schemaVersion: BASELINE_MIGRATION,
        executed: BASELINE,
        stamped: [],
        __provider: undefined,
      },
    );

    // Same inputs, nothing pending: no change.
    const same = await provider.diff(created.id, created.outs, older);
    assert.equal(same.changes, false);

    // The program now knows more migrations: an update, never a replacement.
    const newer = { ...older, migrations: ALL };
    const pending = await provider.diff(created.id, created.outs, newer);
    assert.equal(pending.changes, true);
    assert.deepEqual(pending.replaces, []);

    const updated = await provider.update<Record<string, unknown>>(created.id, created.outs, newer);
    assert.deepEqual(updated.outs.applied, ALL);
    assert.deepEqual(updated.outs.executed, ALL.slice(BASELINE.length));
    assert.equal(updated.outs.schemaVersion, ALL[ALL.length - 1]);

    assert.equal((await provider.diff(created.id, updated.outs, newer)).changes, false);

    // Someone reverted a migration by hand: it is pending again, so diff says update.
    await query(url, `DELETE FROM ${MIGRATIONS_TABLE} WHERE name = '${ALL[ALL.length - 1]}'`);
    assert.equal((await provider.diff(created.id, updated.outs, newer)).changes, true);

    // read (refresh) reports what the database records.
    const read = await provider.read<Record<string, unknown>>(created.id, updated.outs);
    assert.equal(read.id, created.id);
    assert.deepEqual(read.props.applied, ALL.slice(0, -1));
    assert.equal(read.props.schemaVersion, ALL[ALL.length - 2]);
  });

  it("delete drops nothing", async () => {
    const url = await freshDatabase("providerdelete");
    const created = await provider.create({ databaseUrl: url, migrations: ALL, stamp: false });
    await query(url, "INSERT INTO users (user_id, username) VALUES (7, 'kept')");
    await provider.delete(created.id, created.outs);
    assert.deepEqual(await query(url, "SELECT username FROM users"), [{ username: "kept" }]);
    const tables = await query<{ n: number }>(
      url,
      `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'`,
    );
    assert.equal(tables[0].n, 23);
  });

  it("diff during preview: unknown URL means update; an unreachable server fails, naming the route and the fix", async () => {
    const unknown = await provider.diff(
      "x",
      {},
      { databaseUrl: UNKNOWN_VALUE, migrations: ALL, stamp: false },
    );
    assert.equal(unknown.changes, true);
    const unreachableUrl = "postgres://u:secret-pw@127.0.0.1:1/db";
    const reachedAt =
      "127.0.0.1:1 (the program's tunnel through the Kubernetes API to the Ready pod app.kubernetes.io/name=postgres in namespace plex, port 5432)";
    const failure = (error: Error) => {
      assert.match(
        error.message,
        new RegExp(
          `^cannot reach the Tautulli database at ${reachedAt.replace(/[().]/g, "\\$&")}: .*ECONNREFUSED.*\\. Fix: make the server reachable .*add --run-program \\(pulumi refresh --run-program\\)\\.$`,
        ),
      );
      assert.ok(!error.message.includes("secret-pw"));
      return true;
    };
    await assert.rejects(
      provider.diff(
        "x",
        {},
        { databaseUrl: unreachableUrl, migrations: ALL, stamp: false, reachedAt },
      ),
      failure,
    );
    // refresh (read) without the program: the same message.
    await assert.rejects(
      provider.read("x", {
        databaseUrl: unreachableUrl,
        migrations: ALL,
        stamp: false,
        reachedAt,
        applied: ALL,
        schemaVersion: ALL[ALL.length - 1],
        executed: [],
        stamped: [],
      }),
      failure,
    );
    // Without a route the URL's host:port is named.
    await assert.rejects(
      provider.diff("x", {}, { databaseUrl: unreachableUrl, migrations: ALL, stamp: false }),
      /^Error: cannot reach the Tautulli database at 127\.0\.0\.1:1: /,
    );
  });

  it("check names bad inputs; create reports a refusal without the password", async () => {
    const check = await provider.call<{ failures: { property: string; reason: string }[] }>(
      "check",
      {},
      { databaseUrl: "not a url", migrations: [ALL[1]], stamp: false },
    );
    assert.deepEqual(
      check.failures.map((f) => f.property),
      ["databaseUrl", "migrations"],
    );
    assert.match(
      check.failures[1].reason,
      /must be the first 1 migrations in order .*cannot be skipped/,
    );

    const url = await freshDatabase("providernewer");
    await provider.create({ databaseUrl: url, migrations: BASELINE, stamp: false });
    await query(
      url,
      `INSERT INTO ${MIGRATIONS_TABLE} (name, applied_at) VALUES ('20991231000000-future', now())`,
    );
    const password = decodeURIComponent(new URL(url).password);
    await assert.rejects(
      provider.diff("x", {}, { databaseUrl: url, migrations: ALL, stamp: false }),
      (err: Error) => {
        assert.match(err.message, /database is newer than this program/);
        assert.ok(!err.message.includes(password));
        return true;
      },
    );
    await assert.rejects(
      provider.create({ databaseUrl: url, migrations: ALL, stamp: false }),
      (err: Error) => {
        assert.match(err.message, /database is newer than this program.*20991231000000-future/);
        assert.ok(!err.message.includes(password));
        return true;
      },
    );
  });

  it("stamps a database that holds the schema without a record when asked", async () => {
    const url = await freshDatabase("providerstamp");
    await provider.create({ databaseUrl: url, migrations: BASELINE, stamp: false });
    await query(url, `DROP TABLE ${MIGRATIONS_TABLE}`);
    await assert.rejects(
      provider.create({ databaseUrl: url, migrations: ALL, stamp: false }),
      /already holds Tautulli tables/,
    );
    const stamped = await provider.create<Record<string, unknown>>({
      databaseUrl: url,
      migrations: ALL,
      stamp: true,
    });
    assert.deepEqual(stamped.outs.stamped, BASELINE);
    assert.deepEqual(stamped.outs.executed, ALL.slice(BASELINE.length));
  });
});
