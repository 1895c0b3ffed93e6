/**
 * The import against target column types beyond the current schema's (json, jsonb, timestamptz,
 * timestamp, date, varchar, integer, smallint: a later migration may use them), and doubles of
 * every shape: real SQLite, real PostgreSQL. The in-transaction checksum compares the import's
 * text forms with PostgreSQL's own output, so any formatting difference fails the import.
 */
import * as assert from "assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import Database from "better-sqlite3";
import { runImport } from "../../lib/import/run-import";
import { migrateUp } from "../../lib/postgres/migrator";
import { generateTautulliDb } from "../../lib/samples/tautulli-db";
import { SampleRandom } from "../../lib/samples/random";
import { queryRows as query } from "../../lib/postgres/client-config";
import { freshDatabase } from "../support/postgres";

/** Doubles of every shape: shortest-digit ties, huge, tiny, subnormal, negative zero, integers past 2^53. */
function hostileDoubles(count: number): number[] {
  const rng = new SampleRandom(99);
  const values = [
    0,
    -0,
    Infinity,
    -Infinity,
    1e15,
    1e14,
    123456789012345.6,
    1e-5,
    5e-324,
    1.7976931348623157e308,
    2 ** 60,
    2 ** 53 + 2,
    29343956445939150,
    -2.5e-7,
    0.1,
    1 / 3,
  ];
  const bits = new Float64Array(1);
  const words = new Uint32Array(bits.buffer);
  while (values.length < count) {
    values.push((rng.next() - 0.5) * 10 ** rng.int(-30, 30));
    words[0] = Math.floor(rng.next() * 2 ** 32);
    words[1] = Math.floor(rng.next() * 2 ** 32);
    if (Number.isFinite(bits[0])) values.push(bits[0]);
  }
  return values;
}

describe("Tautulli import into other column types (real SQLite, real PostgreSQL)", function () {
  this.timeout(120_000);
  let workDir: string;

  before(() => (workDir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-import-types-"))));
  after(() => fs.rmSync(workDir, { recursive: true, force: true }));

  it("normalises by whatever type the target declares, and verifies it", async () => {
    const sample = generateTautulliDb(path.join(workDir, "tautulli.db"), { plays: 120, seed: 31 });
    const db = new Database(sample.path);
    db.exec(`
      UPDATE notify_log SET script_args = '' WHERE id = 2;
      UPDATE session_history SET started = 1700000000123 WHERE id = 3;  -- milliseconds
      UPDATE session_history SET started = 0 WHERE id = 4;              -- "never"
      UPDATE user_login SET expiry = '' WHERE id = 1;
    `);
    const insert = db.prepare(
      "INSERT INTO newsletter_log (start_time, end_time, uuid) VALUES (?, ?, ?)",
    );
    const doubles = hostileDoubles(3000);
    db.transaction(() => doubles.forEach((x, i) => insert.run(x, -x, `double-${i}`)))();
    db.close();

    const url = await freshDatabase("import_types");
    await migrateUp(url);
    await query(
      url,
      `ALTER TABLE notify_log ALTER COLUMN script_args TYPE json USING script_args::json;
       ALTER TABLE recently_added ALTER COLUMN media_info TYPE jsonb USING media_info::jsonb;
       ALTER TABLE user_login ALTER COLUMN expiry TYPE timestamptz USING expiry::timestamptz;
       ALTER TABLE session_history ALTER COLUMN started TYPE timestamptz USING to_timestamp(started);
       ALTER TABLE session_history ALTER COLUMN stopped TYPE timestamp USING to_timestamp(stopped) AT TIME ZONE 'UTC';
       ALTER TABLE newsletter_log ALTER COLUMN start_date TYPE date USING start_date::date;
       ALTER TABLE users ALTER COLUMN username TYPE varchar(64);
       ALTER TABLE sessions_continued ALTER COLUMN user_id TYPE integer;
       ALTER TABLE exports ALTER COLUMN thumb_level TYPE smallint;`,
    );

    const report = await runImport({ sqlitePath: sample.path, databaseUrl: url });
    assert.equal(report.verification.checksums, "ok");
    const table = (name: string) => report.tables.find((t) => t.table === name)!;
    assert.deepEqual(table("recently_added").checksum.notChecksummed, ["media_info"]);
    assert.ok(
      report.warnings.some((w) => w.code === "NOT_CHECKSUMMED" && w.table === "recently_added"),
    );
    assert.equal(
      table("session_history").conversionsByColumn.started["timestamp.from-epoch-milliseconds"],
      1,
    );
    assert.equal(table("session_history").conversionsByColumn.started["timestamp.zero-to-null"], 1);
    assert.equal(table("user_login").conversionsByColumn.expiry["timestamp.blank-text-to-null"], 1);
    assert.equal(table("notify_log").conversionsByColumn.script_args["json.blank-text-to-null"], 1);

    const started = await query<{ id: string; t: string | null }>(
      url,
      "SELECT id, to_char(started AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS t FROM session_history WHERE id IN (3, 4) ORDER BY id",
    );
    assert.deepEqual(started, [
      { id: "3", t: "2023-11-14 22:13:20.123000" },
      { id: "4", t: null },
    ]);
    const source = new Database(sample.path, { readonly: true });
    try {
      const expiry = source
        .prepare("SELECT expiry FROM user_login WHERE id = 2")
        .pluck()
        .get() as string;
      const [stored] = await query<{ t: string }>(
        url,
        "SELECT to_char(expiry AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || '+00:00' AS t FROM user_login WHERE id = 2",
      );
      assert.equal(stored.t, expiry, "ISO text with microseconds, exactly");
      const args = source
        .prepare(
          "SELECT script_args FROM notify_log WHERE script_args IS NOT NULL AND script_args <> '' LIMIT 1",
        )
        .pluck()
        .get() as string;
      const [json] = await query<{ n: string }>(
        url,
        `SELECT count(*)::text AS n FROM notify_log WHERE script_args::text = ${"'" + args.replace(/'/g, "''") + "'"}`,
      );
      assert.ok(Number(json.n) >= 1, "json kept byte for byte");
    } finally {
      source.close();
    }

    // Every double arrived bit for bit as SQLite holds it (the INTEGER-affinity column stores
    // integral ones as INTEGER, -0.0 as 0); pg hands float8 over as a JS number.
    const stored = new Database(sample.path, { readonly: true });
    const expected = new Map(
      (
        stored
          .prepare(
            "SELECT uuid, start_time, end_time FROM newsletter_log WHERE uuid LIKE 'double-%'",
          )
          .raw(true)
          .all() as [string, number, number][]
      ).map((r) => [r[0], r]),
    );
    stored.close();
    const rows = await query<{ uuid: string; start_time: number; end_time: number }>(
      url,
      "SELECT uuid, start_time, end_time FROM newsletter_log WHERE uuid LIKE 'double-%'",
    );
    assert.equal(rows.length, doubles.length);
    for (const row of rows) {
      const [, start, end] = expected.get(row.uuid)!;
      assert.ok(Object.is(row.start_time, start), `${start} arrived as ${row.start_time}`);
      assert.ok(Object.is(row.end_time, end), `${end} arrived as ${row.end_time}`);
    }
  });
});
