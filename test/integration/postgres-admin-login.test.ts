/**
 * The PostgresAdminLogin dynamic provider, serialized and run in its own process
 * (test/support/dynamic-provider-host.ts), against a real PostgreSQL: a volume that does not
 * accept the configured password is named with the fix, a changed postgresAdminPassword is
 * rotated (ALTER ROLE, logged in with the previous one), a changed admin user is refused.
 */
import * as assert from "assert/strict";
import * as crypto from "crypto";
import { Client } from "pg";
import { postgresAdminLoginProvider } from "../../components/postgres-admin-login";
import { LoadedProvider } from "../support/dynamic-provider-host";
import { testServerAdminUrl } from "../support/postgres";

describe("PostgresAdminLogin provider (serialized, real PostgreSQL)", function () {
  this.timeout(120_000);
  let provider: LoadedProvider;
  let admin: string;
  let role: string;
  let server: { host: string; port: number };

  async function asAdmin(sql: string): Promise<void> {
    const client = new Client({ connectionString: admin });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  }

  async function canLogIn(password: string): Promise<boolean> {
    const client = new Client({ ...server, user: role, password, database: "postgres" });
    try {
      await client.connect();
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  before(async () => {
    provider = await LoadedProvider.load(postgresAdminLoginProvider);
    admin = await testServerAdminUrl();
    const url = new URL(admin);
    server = { host: url.hostname, port: Number(url.port) };
    role = `pm_admin_${crypto.randomBytes(4).toString("hex")}`;
    await asAdmin(`CREATE ROLE ${role} LOGIN PASSWORD 'initdb-Password1'`);
  });
  after(async () => {
    await provider?.close();
    await asAdmin(`DROP ROLE IF EXISTS ${role}`);
  });

  const inputs = (password: string) => ({
    ...server,
    user: role,
    password,
    reachedAt: `${server.host}:${server.port} (the test server)`,
  });

  it("create proves the server accepts the password, or names the fix", async () => {
    const created = await provider.create<Record<string, unknown>>(inputs("initdb-Password1"));
    assert.equal(created.id, `postgres-admin:${role}`);
    await assert.rejects(provider.create(inputs("a-new-random-one")), (error: Error) => {
      assert.match(
        error.message,
        /does not accept the configured password of pm_admin_[0-9a-f]+: its data volume was initialized with another one .*Fix: set postgresAdminPassword to the password the volume was created with/,
      );
      assert.ok(!error.message.includes("a-new-random-one"));
      return true;
    });
  });

  it("a changed password is an update that rotates it; a changed user is refused", async () => {
    const olds = (await provider.create<Record<string, unknown>>(inputs("initdb-Password1"))).outs;
    assert.equal((await provider.diff("x", olds, inputs("initdb-Password1"))).changes, false);
    // Another route to the same server is not a change.
    assert.equal(
      (await provider.diff("x", olds, { ...inputs("initdb-Password1"), port: 1 })).changes,
      false,
    );
    const rotated = `it's "new" ${crypto.randomBytes(6).toString("hex")}`;
    const diff = await provider.diff("x", olds, inputs(rotated));
    assert.deepEqual([diff.changes, diff.replaces], [true, []]);
    const updated = await provider.update<Record<string, unknown>>("x", olds, inputs(rotated));
    assert.equal(updated.outs.password, rotated);
    assert.deepEqual([await canLogIn(rotated), await canLogIn("initdb-Password1")], [true, false]);

    // Rotated by hand already: the update only checks.
    await asAdmin(`ALTER ROLE ${role} PASSWORD 'by-hand-Password2'`);
    await provider.update("x", updated.outs, inputs("by-hand-Password2"));
    assert.equal(await canLogIn("by-hand-Password2"), true);

    // Neither the old nor the new one works: named, nothing changed.
    await assert.rejects(
      provider.update("x", inputs("lost-one"), inputs("another-one")),
      /does not accept the configured password/,
    );

    await assert.rejects(
      provider.diff("x", olds, { ...inputs(rotated), user: "someone_else" }),
      new RegExp(
        `postgresAdminUser changed from "${role}" to "someone_else", but the in-cluster server creates its superuser at initdb only\\. Fix: set it back`,
      ),
    );
  });

  it("an unreachable server fails naming the route", async () => {
    await assert.rejects(
      provider.create({ ...inputs("x-password"), port: 1, reachedAt: "127.0.0.1:1 (the tunnel)" }),
      /^Error: cannot reach the in-cluster PostgreSQL server at 127\.0\.0\.1:1 \(the tunnel\): .*ECONNREFUSED/,
    );
  });
});
