/**
 * The parsed model of Tautulli's SQLite schema (lib/postgres/tautulli-reference.ts), the type
 * rules of docs/schema.md (lib/postgres/schema-contract.ts) and the URL/secret helpers.
 */
import * as assert from "assert/strict";
import { pgClientConfig } from "../../lib/postgres/client-config";
import {
  BOOLEAN_COLUMNS,
  expectedPostgresSchema,
  postgresColumnType,
} from "../../lib/postgres/schema-contract";
import { parseIndexDefinition } from "../../lib/postgres/schema-introspection";
import {
  findTable,
  loadTautulliReference,
  schemaOfSql,
} from "../../lib/postgres/tautulli-reference";

describe("Tautulli reference schema model", () => {
  it("parses schema-current.sql: 22 tables, 532 columns, 22 indexes, the seed rows", () => {
    const schema = loadTautulliReference("current");
    assert.equal(schema.tautulliVersion, "v2.17.2");
    assert.equal(schema.tables.length, 22);
    assert.equal(
      schema.tables.reduce((n, t) => n + t.columns.length, 0),
      532,
    );
    assert.equal(schema.indexes.length, 22);
    assert.equal(schema.indexes.filter((i) => i.unique).length, 7);
    assert.deepEqual(
      [...schema.seedRows]
        .sort((a, b) => a.table.localeCompare(b.table))
        .map((row) => ({
          table: row.table,
          values:
            row.table === "users"
              ? { user_id: row.values.user_id, username: row.values.username }
              : row.values,
        })),
      [
        { table: "users", values: { user_id: 0, username: "Local" } },
        { table: "version_info", values: { key: "version", value: "v2.17.2" } },
      ],
    );
  });

  it("parses schema-v2.1.sql: 19 tables, 435 columns, 3 indexes, no version row", () => {
    const schema = loadTautulliReference("v2.1");
    assert.equal(schema.tautulliVersion, "v2.1.44");
    assert.equal(schema.tables.length, 19);
    assert.equal(
      schema.tables.reduce((n, t) => n + t.columns.length, 0),
      435,
    );
    assert.equal(schema.indexes.length, 3);
    assert.equal(
      findTable(schema, "session_history_metadata")!.columns.some((c) => c.name === "section_id"),
      true,
    );
    assert.equal(findTable(schema, "exports"), undefined);
  });

  it("keeps the quirks: untyped column, double-quoted defaults, mixed case, reserved names", () => {
    const current = loadTautulliReference("current");
    const mediaInfo = findTable(current, "session_history_media_info")!;
    assert.deepEqual(
      mediaInfo.columns.find((c) => c.name === "subtitle_forced"),
      {
        name: "subtitle_forced",
        declaredType: null,
        affinity: "BLOB",
        notNull: false,
        unique: false,
        primaryKey: false,
        autoIncrement: false,
      },
    );
    assert.deepEqual(mediaInfo.primaryKey, ["id"]);
    assert.equal(mediaInfo.columns[0].autoIncrement, false);
    assert.equal(findTable(current, "sessions")!.columns[0].autoIncrement, true);
    assert.ok(findTable(current, "exports")!.columns.some((c) => c.name === "squareArt_level"));
    assert.ok(findTable(current, "notify_log")!.columns.some((c) => c.name === "user"));
    assert.deepEqual(findTable(current, "library_sections")!.uniqueConstraints, [
      ["server_id", "section_id"],
    ]);
    const cron = findTable(loadTautulliReference("v2.1"), "newsletters")!.columns.find(
      (c) => c.name === "cron",
    );
    assert.deepEqual(cron!.default, { sql: '"0 0 * * 0"', value: "0 0 * * 0" });
    assert.equal(cron!.notNull, true);
  });

  it("reads sqlite_master-style DDL through SQLite: run-together commas, quoting styles, table constraints", () => {
    const {
      tables: [table],
    } = schemaOfSql(
      'CREATE TABLE IF NOT EXISTS "odd table" (id INTEGER PRIMARY KEY AUTOINCREMENT,' +
        "[user] TEXT,`count` INTEGER DEFAULT -1,width INTEGER,transcode_width INTEGER," +
        "note VARCHAR(20) NOT NULL DEFAULT 'it''s', ratio REAL DEFAULT (1.5), untyped, " +
        "cron TEXT DEFAULT \"0 0 * * 0\", made INTEGER DEFAULT (strftime('%s', 'now')), " +
        "CONSTRAINT k UNIQUE (width, transcode_width), CHECK (width > 0))",
    );
    assert.equal(table.name, "odd table");
    assert.deepEqual(
      table.columns.map((c) => [c.name, c.declaredType, c.affinity, c.default?.value]),
      [
        ["id", "INTEGER", "INTEGER", undefined],
        ["user", "TEXT", "TEXT", undefined],
        ["count", "INTEGER", "INTEGER", -1],
        ["width", "INTEGER", "INTEGER", undefined],
        ["transcode_width", "INTEGER", "INTEGER", undefined],
        ["note", "VARCHAR(20)", "TEXT", "it's"],
        ["ratio", "REAL", "REAL", 1.5],
        ["untyped", null, "BLOB", undefined],
        ["cron", "TEXT", "TEXT", "0 0 * * 0"],
        ["made", "INTEGER", "INTEGER", undefined],
      ],
    );
    assert.deepEqual(table.columns.find((c) => c.name === "made")!.default, {
      sql: "strftime('%s', 'now')",
      value: undefined,
    });
    assert.equal(table.columns[0].autoIncrement, true);
    assert.deepEqual(table.uniqueConstraints, [["width", "transcode_width"]]);
    assert.deepEqual(table.primaryKey, ["id"]);
  });

  it("reads CREATE INDEX through SQLite: key order, uniqueness and a WHERE clause", () => {
    const { indexes } = schemaOfSql(
      'CREATE TABLE t (a INTEGER, "user" TEXT); CREATE UNIQUE INDEX IF NOT EXISTS ix ON t (a, "user" DESC) WHERE a > 0;',
    );
    assert.deepEqual(indexes, [
      {
        name: "ix",
        table: "t",
        unique: true,
        columns: [
          { name: "a", order: null },
          { name: "user", order: "DESC" },
        ],
        where: "a > 0",
      },
    ]);
  });

  it("refuses a script SQLite refuses", () => {
    assert.throws(() => schemaOfSql("CREATE TABLE x (a TEXT,);"), /syntax error/);
  });
});

describe("schema contract (docs/schema.md as code)", () => {
  it("maps flags to boolean, the two float times to double precision, integers to bigint", () => {
    assert.equal(postgresColumnType("users", { name: "is_admin", affinity: "INTEGER" }), "boolean");
    assert.equal(
      postgresColumnType("session_history_media_info", {
        name: "subtitle_forced",
        affinity: "BLOB",
      }),
      "boolean",
    );
    assert.equal(
      postgresColumnType("newsletter_log", { name: "start_time", affinity: "INTEGER" }),
      "double precision",
    );
    assert.equal(
      postgresColumnType("sessions", { name: "view_offset", affinity: "INTEGER" }),
      "bigint",
    );
    assert.equal(
      postgresColumnType("exports", { name: "squareArt_level", affinity: "INTEGER" }),
      "bigint",
    );
    assert.equal(
      postgresColumnType("notifiers", { name: "on_play_subject", affinity: "TEXT" }),
      "text",
    );
  });

  it("every listed flag exists in the current schema as an INTEGER or untyped column", () => {
    const current = loadTautulliReference("current");
    let flags = 0;
    for (const [tableName, columns] of Object.entries(BOOLEAN_COLUMNS)) {
      const table = findTable(current, tableName)!;
      assert.ok(table, tableName);
      for (const name of columns) {
        const column = table.columns.find((c) => c.name === name);
        if (!column) continue; // a history flag not present in every history table
        assert.ok(
          column.affinity === "INTEGER" || column.declaredType === null,
          `${tableName}.${name}`,
        );
        flags++;
      }
    }
    assert.equal(flags, 71);
  });

  it("derives defaults, identities, keys and unique constraints as PostgreSQL prints them", () => {
    const expected = expectedPostgresSchema();
    const users = expected.tables.find((t) => t.name === "users")!;
    assert.deepEqual(users.columns.slice(0, 3), [
      { name: "id", type: "bigint", notNull: true, default: null, identity: true },
      { name: "user_id", type: "bigint", notNull: false, default: null, identity: false },
      { name: "username", type: "text", notNull: true, default: null, identity: false },
    ]);
    assert.deepEqual(users.uniqueConstraints, [
      { name: "users_user_id_key", columns: ["user_id"] },
    ]);
    const newsletters = expected.tables.find((t) => t.name === "newsletters")!;
    assert.equal(newsletters.columns.find((c) => c.name === "cron")!.default, "'0 0 * * 0'::text");
    assert.equal(newsletters.columns.find((c) => c.name === "active")!.default, "false");
    assert.deepEqual(
      expected.indexes.find((i) => i.name === "idx_session_history_user_id_stopped"),
      {
        name: "idx_session_history_user_id_stopped",
        table: "session_history",
        unique: false,
        columns: ["user_id", "stopped"],
      },
    );
  });

  it("reads pg_indexes definitions back", () => {
    assert.deepEqual(
      parseIndexDefinition(
        "i",
        "t",
        'CREATE UNIQUE INDEX i ON public.t USING btree ("user", stopped DESC, "we""ird")',
      ),
      { name: "i", table: "t", unique: true, columns: ["user", "stopped DESC", 'we"ird'] },
    );
  });
});

describe("PostgreSQL URL helpers", () => {
  it("gives libpq's meaning to sslmode", () => {
    assert.equal(pgClientConfig("postgres://u:p@h:5433/d").ssl, undefined);
    assert.equal(pgClientConfig("postgres://u:p@h/d?sslmode=disable").ssl, false);
    assert.deepEqual(pgClientConfig("postgres://u:p@h/d?sslmode=require").ssl, {
      rejectUnauthorized: false,
    });
    assert.deepEqual(pgClientConfig("postgres://u:p@h/d?sslmode=verify-full").ssl, {});
    const config = pgClientConfig("postgresql://tautulli:p%40ss@db.example:5433/tautulli");
    assert.deepEqual(
      [config.host, config.port, config.user, config.password, config.database],
      ["db.example", 5433, "tautulli", "p@ss", "tautulli"],
    );
  });

  it("rejects what is not a postgres URL without echoing the password", () => {
    assert.throws(
      () => pgClientConfig("mysql://u:pw@h/d"),
      /invalid PostgreSQL URL mysql:\/\/u:\*\*\*@h\/d/,
    );
    assert.throws(
      () => pgClientConfig("postgres://u:pw@h"),
      (err: Error) => !err.message.includes("pw@"),
    );
  });
});
