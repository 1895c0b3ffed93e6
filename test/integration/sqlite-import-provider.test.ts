/**
 * The SqliteImport dynamic provider as the engine runs it: serialized by @pulumi/pulumi's closure
 * serializer and loaded in a plain Node process (test/support/dynamic-provider-host.ts), against a
 * real PostgreSQL, from a local tautulli.db (the VM's snapshot over SSH: ssh-snapshot-download.test.ts).
 * Never the internet.
 */
import * as assert from "assert/strict";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import Database from "better-sqlite3";
import { Client } from "pg";
import { sqliteImportProvider } from "../../components/sqlite-import";
import type { SqliteImportOutputs } from "../../lib/import/provider";
import { migrateUp, listMigrationNames } from "../../lib/postgres/migrator";
import { generateTautulliDb, TautulliSample } from "../../lib/samples/tautulli-db";
import { snapshotDatabase } from "../support/tautulli-pg-snapshot";
import { LoadedProvider } from "../support/dynamic-provider-host";
import { freshDatabase } from "../support/postgres";

const SCHEMA_VERSION = listMigrationNames()[listMigrationNames().length - 1];

async function count(url: string, table: string): Promise<number> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n;
  } finally {
    await client.end();
  }
}

function sha256(file: string): string {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

describe("SqliteImport provider (serialized, real PostgreSQL)", function () {
  this.timeout(180_000);
  let provider: LoadedProvider;
  let workDir: string;
  let sample: TautulliSample;

  before(async () => {
    provider = await LoadedProvider.load(sqliteImportProvider);
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-import-provider-"));
    // A snapshot as the VM takes it: one file, checkpointed (no -wal).
    sample = generateTautulliDb(path.join(workDir, "tautulli.db"), {
      plays: 150,
      hostile: true,
      hugeTextBytes: 8192,
      seed: 17,
    });
  });
  after(async () => {
    await provider?.close();
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  async function migrated(label: string): Promise<string> {
    const url = await freshDatabase(label);
    await migrateUp(url);
    return url;
  }

  it("imports a local file; the same file is no change; delete leaves the data", async () => {
    const url = await migrated("provider_path");
    const inputs = {
      databaseUrl: url,
      source: { path: sample.path },
      overwrite: false,
      schemaVersion: SCHEMA_VERSION,
      integrityCheck: "full",
    };
    const check = await provider.call<{ failures: unknown[] }>("check", {}, inputs);
    assert.deepEqual(check.failures, []);

    const created = await provider.create<SqliteImportOutputs>(inputs);
    // The identity is the server's system_identifier and the database name, never host:port.
    assert.match(created.id, /^tautulli-import:\d+\/pm_provider_path_[0-9a-f]+$/);
    assert.equal(created.outs.targetIdentity, created.id.slice("tautulli-import:".length));
    assert.equal(created.outs.report.status, "imported");
    assert.equal(created.outs.sourceFingerprint, `sha256:${sha256(sample.path)}`);
    assert.match(created.outs.summary, /^Imported [\d,]+ rows from 22 tables/);
    assert.equal(await count(url, "session_history"), sample.rowCounts.session_history);

    const same = await provider.diff(created.id, created.outs, inputs);
    assert.equal(same.changes, false);
    // The same database by another address (another route to the server) is no change.
    const otherRoute = new URL(url);
    otherRoute.hostname = "localhost";
    const rerouted = await provider.diff(created.id, created.outs, {
      ...inputs,
      databaseUrl: otherRoute.toString(),
    });
    assert.deepEqual([rerouted.changes, rerouted.replaces], [false, []]);
    // Another database on the same server is another target: a replacement (the old keeps its data).
    const moved = await provider.diff(created.id, created.outs, {
      ...inputs,
      databaseUrl: await migrated("provider_elsewhere"),
    });
    assert.deepEqual([moved.changes, moved.replaces], [true, ["databaseUrl"]]);

    await provider.delete(created.id, created.outs);
    assert.equal(
      await count(url, "session_history"),
      sample.rowCounts.session_history,
      "delete never drops",
    );
    assert.equal(await count(url, "plex_migrate_imports"), 1);
  });

  it("a changed file is an update under the same overwrite rule", async () => {
    const url = await migrated("provider_update");
    const file = path.join(workDir, "changing.db");
    fs.copyFileSync(sample.path, file);
    const inputs = {
      databaseUrl: url,
      source: { path: file },
      overwrite: false,
      schemaVersion: SCHEMA_VERSION,
      integrityCheck: "quick",
    };
    const created = await provider.create<SqliteImportOutputs>(inputs);

    const db = new Database(file);
    db.exec(
      "INSERT INTO session_history (started, stopped, user) VALUES (1800000000, 1800000100, 'late')",
    );
    db.close();
    const changed = await provider.diff(created.id, created.outs, inputs);
    assert.equal(changed.changes, true);
    assert.deepEqual(changed.replaces, []);

    const before = await snapshotDatabase(url);
    await assert.rejects(
      provider.update(created.id, created.outs, inputs),
      /TARGET_NOT_EMPTY|already holds \d+ rows.*importOverwrite: true/s,
    );
    assert.deepEqual(await snapshotDatabase(url), before, "a refused update changes nothing");

    const updated = await provider.update<SqliteImportOutputs>(created.id, created.outs, {
      ...inputs,
      overwrite: true,
    });
    assert.equal(updated.outs.report.status, "imported");
    assert.notEqual(updated.outs.sourceFingerprint, created.outs.sourceFingerprint);
    assert.equal(await count(url, "session_history"), sample.rowCounts.session_history + 1);
    assert.equal(
      (await provider.diff(created.id, updated.outs, { ...inputs, overwrite: true })).changes,
      false,
    );
  });

  it("check refuses a source that is neither a local file nor the VM's snapshot over SSH, naming both", async () => {
    const check = await provider.call<{ failures: { property: string; reason: string }[] }>(
      "check",
      {},
      {
        databaseUrl: "postgres://u@h/d",
        overwrite: false,
        schemaVersion: SCHEMA_VERSION,
        source: { url: "http://192.0.2.1:32499/token/tautulli.db", sha256: "a".repeat(64) },
        integrityCheck: "fast",
      },
    );
    assert.deepEqual(
      check.failures.map((f) => f.property),
      ["source", "integrityCheck"],
    );
    assert.match(
      check.failures[0].reason,
      /must be \{ path \} of a local tautulli\.db or \{ ssh, path, sha256, bytes \} of the VM's snapshot/,
    );
  });

  it("checks the target is at the schema version the migrations reported", async () => {
    const url = await migrated("provider_schema");
    const error = await provider
      .create({
        databaseUrl: url,
        source: { path: sample.path },
        overwrite: false,
        schemaVersion: "20990101000000-from-the-future",
        integrityCheck: "quick",
      })
      .catch((e: Error) => e);
    assert.ok(error instanceof Error);
    assert.match(error.message, /last applied migration is .*, not 20990101000000-from-the-future/);
    assert.ok(!error.message.includes(new URL(url).password));
  });
});
