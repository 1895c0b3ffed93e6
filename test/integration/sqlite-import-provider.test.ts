/**
 * The SqliteImport dynamic provider as the engine runs it: serialized by @pulumi/pulumi's closure
 * serializer and loaded in a plain Node process (test/support/dynamic-provider-host.ts), against a
 * real PostgreSQL, with the snapshot served by a local HTTP server the way the source VM serves it
 * (token path, Range). Never the internet.
 */
import * as assert from "assert/strict";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import Database from "better-sqlite3";
import { Client } from "pg";
import { sqliteImportProvider } from "../../components/sqlite-import";
import type { SqliteImportOutputs } from "../../lib/import/provider";
import { migrateUp, listMigrationNames } from "../../lib/postgres/migrator";
import { generateTautulliDb, TautulliSample } from "../../lib/samples/tautulli-db";
import { snapshotDatabase } from "../../lib/samples/tautulli-pg-snapshot";
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

interface SnapshotServer {
  url: string;
  token: string;
  requests: { range?: string }[];
  close(): Promise<void>;
}

/**
 * Serves `file` at /<token>/tautulli.db like the VM's server (Range supported, anything else 404).
 * With `dropFirstAfter`, the first response is cut off after that many bytes.
 */
async function serveSnapshot(file: string, dropFirstAfter?: number): Promise<SnapshotServer> {
  const token = crypto.randomBytes(16).toString("hex");
  const requests: { range?: string }[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ range: req.headers.range });
    if (req.url !== `/${token}/tautulli.db`) {
      res.writeHead(404).end();
      return;
    }
    const bytes = fs.readFileSync(file);
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    const start = range ? Number(range[1]) : 0;
    res.writeHead(range ? 206 : 200, {
      "Content-Length": bytes.length - start,
      ...(range ? { "Content-Range": `bytes ${start}-${bytes.length - 1}/${bytes.length}` } : {}),
    });
    if (dropFirstAfter !== undefined && requests.length === 1) {
      res.write(bytes.subarray(0, dropFirstAfter), () => res.socket?.destroy());
      return;
    }
    res.end(bytes.subarray(start));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/${token}/tautulli.db`,
    token,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function sha256(file: string): string {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

describe("SqliteImport provider (serialized, real PostgreSQL, local snapshot server)", function () {
  this.timeout(180_000);
  let provider: LoadedProvider;
  let workDir: string;
  let sample: TautulliSample;

  before(async () => {
    provider = await LoadedProvider.load(sqliteImportProvider);
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-import-provider-"));
    // A snapshot as the VM serves it: one file, checkpointed (no -wal).
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

  it("downloads the VM's snapshot by URL, resuming a cut transfer, and verifies its sha256", async () => {
    const server = await serveSnapshot(sample.path, 100_000);
    try {
      const url = await migrated("provider_url");
      const inputs = {
        databaseUrl: url,
        source: { url: server.url, sha256: sha256(sample.path) },
        overwrite: false,
        schemaVersion: SCHEMA_VERSION,
        integrityCheck: "full",
      };
      const created = await provider.create<SqliteImportOutputs>(inputs);
      assert.equal(created.outs.report.status, "imported");
      assert.equal(created.outs.sourceFingerprint, `sha256:${sha256(sample.path)}`);
      // The first response was cut after 100,000 bytes: the second asks for the rest (from what arrived).
      assert.equal(server.requests.length, 2);
      assert.equal(server.requests[0].range, undefined);
      const resumedAt = Number(/^bytes=(\d+)-$/.exec(server.requests[1].range ?? "")?.[1]);
      assert.ok(resumedAt > 0 && resumedAt <= 100_000, `resumed at ${server.requests[1].range}`);
      assert.equal(await count(url, "session_history"), sample.rowCounts.session_history);
      const text = JSON.stringify(created.outs.report) + created.outs.summary;
      assert.ok(!text.includes(server.token), "the token is not in the report");
      assert.ok(!text.includes(new URL(url).password), "the password is not in the report");
      assert.deepEqual(
        fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("plex-migrate-snapshot-")),
        [],
        "the download is removed",
      );

      // The VM serves the same bytes again under a new token: no change.
      const again = await provider.diff(created.id, created.outs, {
        ...inputs,
        source: {
          url: server.url.replace(server.token, "0".repeat(32)),
          sha256: inputs.source.sha256,
        },
      });
      assert.equal(again.changes, false, "the same bytes under another URL are no change");
      const updated = await provider.update<SqliteImportOutputs>(created.id, created.outs, {
        ...inputs,
        source: { url: "http://127.0.0.1:1/x/tautulli.db", sha256: inputs.source.sha256 },
      });
      assert.deepEqual(
        updated.outs.report,
        created.outs.report,
        "same fingerprint: nothing downloaded, nothing imported",
      );
    } finally {
      await server.close();
    }
  });

  it("refuses a snapshot whose sha256 differs, or that is not served, without leaking the token", async () => {
    const server = await serveSnapshot(sample.path);
    try {
      const url = await migrated("provider_bad_url");
      const before = await snapshotDatabase(url);
      const base = {
        databaseUrl: url,
        overwrite: false,
        schemaVersion: SCHEMA_VERSION,
        integrityCheck: "full",
      };
      const wrongSha = "f".repeat(64);
      let error = await provider
        .create({ ...base, source: { url: server.url, sha256: wrongSha } })
        .catch((e: Error) => e);
      assert.ok(error instanceof Error);
      assert.match(error.message, /has sha256 [0-9a-f]{64}, not the published f{64}/);
      assert.ok(!error.message.includes(server.token));

      error = await provider
        .create({
          ...base,
          source: { url: server.url.replace(server.token, "wrong-token"), sha256: wrongSha },
        })
        .catch((e: Error) => e);
      assert.ok(error instanceof Error);
      assert.match(
        error.message,
        /Downloading the Tautulli snapshot from http:\/\/127\.0\.0\.1:\d+\/<redacted> failed: HTTP 404/,
      );
      assert.ok(!error.message.includes("wrong-token"));
      assert.deepEqual(await snapshotDatabase(url), before);

      const check = await provider.call<{ failures: { property: string }[] }>(
        "check",
        {},
        { ...base, source: { url: "ftp://x", sha256: "abc" }, integrityCheck: "fast" },
      );
      assert.deepEqual(
        check.failures.map((f) => f.property),
        ["source", "source", "integrityCheck"],
      );
    } finally {
      await server.close();
    }
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
