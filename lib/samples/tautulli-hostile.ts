/**
 * Hostile content for a generated tautulli.db, and hostile files. Every hostile value comes with
 * the value PostgreSQL must hold after the import (written out by hand here, not computed by the
 * import code) and the documented normalisation rule that gets it there (docs/import.md), so tests
 * compare values, not only counts.
 */
import * as fs from "fs";
import Database from "better-sqlite3";

/** A value the import must turn into exactly `expected` in PostgreSQL. */
export interface HostileCell {
  table: string;
  /** `id` (= SQLite rowid) of the row. */
  id: number;
  column: string;
  /** What the cell holds in SQLite, for assertion messages. */
  stored: string;
  /**
   * The PostgreSQL value: text as a JS string, bigint columns as bigint, booleans as boolean,
   * double precision as number, NULL as null.
   */
  expected: string | bigint | boolean | number | null;
  /** The rule of docs/import.md that applies, if the value is converted. */
  rule?: string;
}

export interface HostileOptions {
  /** First session_history id the hostile plays use. */
  startId: number;
  /** Size of the huge text value. */
  hugeTextBytes: number;
}

/** The Unicode text used across the hostile rows (combining marks, RTL, emoji with ZWJ, CJK). */
export const UNICODE_TITLE = "Amélie — 日本語のタイトル — Ωμέγα — שלום — 🎬👩‍👩‍👧‍👦 — e\u0301";

/** Escape-looking and control characters a COPY stream must carry unchanged. */
export const ESCAPES_TEXT =
  "quotes ' \" ` ; tab\there; newline\nsecond line; CRLF\r\nend; backslash C:\\Users\\new\\table\\; literal \\N and \\\\N; \\t not a tab";

/** `\.` alone on a line ends COPY text input unless escaped. */
export const END_OF_COPY_TEXT = "line one\n\\.\nline three";

interface Spec {
  column: string;
  /** SQL expression inserted (for bytes SQLite must hold exactly), or a bound value. */
  sql?: string;
  value?: string | number | bigint | Buffer | null;
  expected: HostileCell["expected"];
  rule?: string;
  stored: string;
}

function insertRow(db: Database.Database, table: string, id: number, specs: Spec[]): HostileCell[] {
  const existing = new Set(
    (db.prepare(`PRAGMA table_info("${table}")`).all() as { name: string }[]).map((c) => c.name),
  );
  const used = specs.filter((s) => existing.has(s.column));
  const columns = ["id", ...used.map((s) => s.column)];
  const placeholders = ["?", ...used.map((s) => s.sql ?? "?")];
  const values = [id, ...used.filter((s) => s.sql === undefined).map((s) => s.value ?? null)];
  db.prepare(
    `INSERT INTO "${table}" (${columns.map((c) => `"${c}"`).join(", ")}) VALUES (${placeholders.join(", ")})`,
  ).run(values);
  return used.map((s) =>
    // Before v2.7 section_id lived in _metadata; the import moves it to session_history.
    table === "session_history_metadata" && s.column === "section_id"
      ? {
          table: "session_history",
          id,
          column: s.column,
          stored: s.stored,
          expected: s.expected,
          rule: s.rule,
        }
      : {
          table,
          id,
          column: s.column.toLowerCase(),
          stored: s.stored,
          expected: s.expected,
          rule: s.rule,
        },
  );
}

/** A row with NULL in every column but `id` (explicit NULLs also override DEFAULTs). */
function insertNullRow(db: Database.Database, table: string, id: number): HostileCell[] {
  const columns = (
    db.prepare(`PRAGMA table_info("${table}")`).all() as { name: string; notnull: number }[]
  ).filter((c) => c.name !== "id");
  if (columns.some((c) => c.notnull)) throw new Error(`${table} has NOT NULL columns`);
  db.prepare(
    `INSERT INTO "${table}" (id, ${columns.map((c) => `"${c.name}"`).join(", ")}) VALUES (?${", NULL".repeat(columns.length)})`,
  ).run(id);
  return columns.map((c) => ({
    // Before v2.7 section_id lived in _metadata; the import moves it to session_history.
    table:
      table === "session_history_metadata" && c.name === "section_id" ? "session_history" : table,
    id,
    column: c.name.toLowerCase(),
    stored: "NULL",
    expected: null,
  }));
}

/** A huge text value made of multi-byte characters, tabs, newlines and backslashes. */
export function hugeText(bytes: number): string {
  const unit = "Ä🎬\t\\ line\n";
  const unitBytes = Buffer.byteLength(unit);
  return unit.repeat(Math.max(1, Math.ceil(bytes / unitBytes)));
}

/**
 * Adds the hostile rows to a database created by generateTautulliDb (inside its transaction) and
 * returns every hostile cell with its expected PostgreSQL value.
 */
export function addHostileRows(db: Database.Database, options: HostileOptions): HostileCell[] {
  const cells: HostileCell[] = [];
  const play = options.startId;
  const nullPlay = play + 1;
  const huge = hugeText(options.hugeTextBytes);

  cells.push(
    ...insertRow(db, "session_history", play, [
      { column: "reference_id", value: play, expected: BigInt(play), stored: "integer" },
      { column: "started", value: 1700000000, expected: 1700000000n, stored: "1700000000" },
      { column: "stopped", value: 1700003600, expected: 1700003600n, stored: "1700003600" },
      {
        column: "user",
        value: 'O\'Brien "the" Tab\tUser',
        expected: 'O\'Brien "the" Tab\tUser',
        stored: "quotes and a tab",
      },
      {
        column: "user_id",
        value: 9007199254740993n,
        expected: 9007199254740993n,
        stored: "2^53+1",
      },
      {
        column: "ip_address",
        value: "::ffff:192.168.1.1",
        expected: "::ffff:192.168.1.1",
        stored: "IPv6",
      },
      { column: "player", value: "\\", expected: "\\", stored: "one backslash" },
      { column: "product", value: "\t", expected: "\t", stored: "one tab" },
      { column: "platform", value: "\r", expected: "\r", stored: "one CR" },
      { column: "platform_version", value: "\n", expected: "\n", stored: "one newline" },
      { column: "profile", value: "a\\tb", expected: "a\\tb", stored: "backslash-t (not a tab)" },
      {
        column: "product_version",
        value: "\\N",
        expected: "\\N",
        stored: "literal \\N (not NULL)",
      },
      { column: "location", value: "\\\\N", expected: "\\\\N", stored: "two backslashes and N" },
      { column: "machine_id", value: "", expected: "", stored: "'' in a text column stays ''" },
      {
        column: "quality_profile",
        value: "   ",
        expected: "   ",
        stored: "whitespace-only text stays",
      },
      {
        column: "secure",
        value: "",
        expected: null,
        rule: "boolean.blank-text-to-null",
        stored: "'' in a flag",
      },
      {
        column: "relayed",
        value: "True",
        expected: true,
        rule: "boolean.from-text",
        stored: "'True' (Python str)",
      },
      {
        column: "bandwidth",
        value: "None",
        expected: null,
        rule: "integer.null-word-to-null",
        stored: "'None' (Python str)",
      },
      {
        column: "paused_counter",
        value: "  ",
        expected: null,
        rule: "integer.blank-text-to-null",
        stored: "whitespace in an integer column",
      },
      {
        column: "view_offset",
        value: 12.5,
        expected: 13n,
        rule: "integer.rounded-real",
        stored: "REAL 12.5",
      },
      {
        column: "rating_key",
        value: "",
        expected: null,
        rule: "integer.blank-text-to-null",
        stored: "'' in an integer column",
      },
      { column: "parent_rating_key", value: -5, expected: -5n, stored: "negative" },
      {
        column: "grandparent_rating_key",
        value: 9223372036854775807n,
        expected: 9223372036854775807n,
        stored: "max int64",
      },
      { column: "media_type", value: "movie", expected: "movie", stored: "movie" },
      {
        column: "section_id",
        value: "",
        expected: null,
        rule: "integer.blank-text-to-null",
        stored: "''",
      },
    ]),
  );

  cells.push(
    ...insertRow(db, "session_history_metadata", play, [
      {
        column: "title",
        value: UNICODE_TITLE,
        expected: UNICODE_TITLE,
        stored: "unicode and emoji",
      },
      {
        column: "summary",
        value: ESCAPES_TEXT,
        expected: ESCAPES_TEXT,
        stored: "quotes, tabs, newlines, backslashes, \\N",
      },
      {
        column: "original_title",
        value: END_OF_COPY_TEXT,
        expected: END_OF_COPY_TEXT,
        stored: "\\. alone on a line",
      },
      { column: "tagline", value: "\\N", expected: "\\N", stored: "literal \\N" },
      { column: "content_rating", value: "", expected: "", stored: "''" },
      {
        column: "labels",
        value: "Kids\u0000Family\u0000",
        expected: "KidsFamily",
        rule: "text.nul-removed",
        stored: "NUL bytes",
      },
      {
        column: "directors",
        sql: "CAST(X'4dc3a4ff6b20fe41' AS TEXT)",
        expected: "Mä\uFFFDk \uFFFDA",
        rule: "text.invalid-utf8-replaced",
        stored: "invalid UTF-8 bytes ff and fe",
      },
      {
        column: "writers",
        value: Buffer.from("Zoë;Chloé", "utf8"),
        expected: "Zoë;Chloé",
        rule: "text.from-blob",
        stored: "a BLOB of UTF-8 bytes",
      },
      {
        column: "actors",
        value: huge,
        expected: huge,
        stored: `huge text (${Buffer.byteLength(huge)} bytes)`,
      },
      {
        column: "genres",
        value: "Drama\uFFFD",
        expected: "Drama\uFFFD",
        stored: "a real U+FFFD (valid UTF-8)",
      },
      {
        column: "studio",
        value: "Ünïcödé 😀 Studio",
        expected: "Ünïcödé 😀 Studio",
        stored: "emoji",
      },
      {
        column: "media_index",
        value: "null",
        expected: null,
        rule: "integer.null-word-to-null",
        stored: "'null'",
      },
      {
        column: "parent_media_index",
        value: 5.0,
        expected: 5n,
        stored: "REAL 5.0 (SQLite stores INTEGER 5)",
      },
      {
        column: "duration",
        value: 1.5,
        expected: 2n,
        rule: "integer.rounded-real",
        stored: "REAL 1.5",
      },
      {
        column: "year",
        value: -2.5,
        expected: -3n,
        rule: "integer.rounded-real",
        stored: "REAL -2.5 (half away from zero)",
      },
      {
        column: "added_at",
        value: 9007199254740993n,
        expected: 9007199254740993n,
        stored: "2^53+1",
      },
      { column: "updated_at", value: -1, expected: -1n, stored: "-1" },
      {
        column: "last_viewed_at",
        value: " ",
        expected: null,
        rule: "integer.blank-text-to-null",
        stored: "' '",
      },
      {
        column: "rating_key",
        value: "",
        expected: null,
        rule: "integer.blank-text-to-null",
        stored: "''",
      },
      {
        column: "live",
        value: "",
        expected: null,
        rule: "boolean.blank-text-to-null",
        stored: "'' in a flag",
      },
      {
        column: "guid",
        value: "plex://movie/' OR 1=1; --",
        expected: "plex://movie/' OR 1=1; --",
        stored: "SQL-looking text",
      },
      { column: "rating", value: "7.5", expected: "7.5", stored: "text" },
      { column: "channel_vcn", value: null, expected: null, stored: "NULL" },
      {
        column: "marker_credits_first",
        value: 1e3,
        expected: 1000n,
        stored: "REAL 1000.0 (SQLite stores INTEGER)",
      },
      // v2.1: section_id still lives in _metadata and moves to session_history (reference/tautulli/NOTES.md §7).
      { column: "section_id", value: 2, expected: 2n, stored: "2" },
    ]),
  );

  cells.push(
    ...insertRow(db, "session_history_media_info", play, [
      {
        column: "subtitle_forced",
        value: "1",
        expected: true,
        rule: "boolean.from-text",
        stored: "text '1' in the untyped column",
      },
      {
        column: "optimized_version",
        value: 2,
        expected: true,
        rule: "boolean.nonzero-integer-to-true",
        stored: "2 in a flag",
      },
      {
        column: "stream_subtitle_forced",
        value: "false",
        expected: false,
        rule: "boolean.from-text",
        stored: "'false'",
      },
      { column: "subtitles", value: 0, expected: false, rule: "boolean.from-integer", stored: "0" },
      {
        column: "synced_version",
        value: 1.0,
        expected: true,
        rule: "boolean.from-integer",
        stored: "REAL 1.0 (SQLite stores INTEGER 1)",
      },
      {
        column: "video_codec",
        value: "h264\u0000",
        expected: "h264",
        rule: "text.nul-removed",
        stored: "trailing NUL",
      },
      {
        column: "bitrate",
        value: "",
        expected: null,
        rule: "integer.blank-text-to-null",
        stored: "''",
      },
      { column: "width", value: 1920.0, expected: 1920n, stored: "REAL 1920.0" },
      {
        column: "transcode_decision",
        value: "direct play",
        expected: "direct play",
        stored: "text",
      },
    ]),
  );

  // A play with NULL in every column of its three rows.
  cells.push(...insertNullRow(db, "session_history", nullPlay));
  cells.push(...insertNullRow(db, "session_history_metadata", nullPlay));
  cells.push(...insertNullRow(db, "session_history_media_info", nullPlay));

  const notifyId = nextId(db, "notify_log");
  cells.push(
    ...insertRow(db, "notify_log", notifyId, [
      {
        column: "subject_text",
        value: '🔔 {title} — "quoted"',
        expected: '🔔 {title} — "quoted"',
        stored: "emoji and quotes",
      },
      {
        column: "body_text",
        value: Buffer.from('{"content":"a\\tb"}', "utf8"),
        expected: '{"content":"a\\tb"}',
        rule: "text.from-blob",
        stored: "JSON as a BLOB",
      },
      { column: "script_args", value: "[]", expected: "[]", stored: "empty JSON list" },
      {
        column: "success",
        value: "",
        expected: null,
        rule: "boolean.blank-text-to-null",
        stored: "''",
      },
      { column: "user", value: "\\.", expected: "\\.", stored: "\\. alone" },
    ]),
  );
  cells.push(...insertNullRow(db, "notify_log", notifyId + 1));

  const newsletterId = nextId(db, "newsletter_log");
  cells.push(
    ...insertRow(db, "newsletter_log", newsletterId, [
      { column: "start_time", value: 1700000000.5, expected: 1700000000.5, stored: "REAL epoch" },
      {
        column: "end_time",
        value: "",
        expected: null,
        rule: "double.blank-text-to-null",
        stored: "''",
      },
      { column: "uuid", value: "hostile-uuid", expected: "hostile-uuid", stored: "text" },
    ]),
  );
  cells.push(
    ...insertRow(db, "newsletter_log", newsletterId + 1, [
      { column: "start_time", value: 1e20, expected: 1e20, stored: "REAL 1e20" },
      {
        column: "end_time",
        value: 1700000001,
        expected: 1700000001,

        stored: "INTEGER in a float column (the same number)",
      },
      { column: "uuid", value: "hostile-uuid-2", expected: "hostile-uuid-2", stored: "text" },
    ]),
  );

  const userId = nextId(db, "users");
  cells.push(
    ...insertRow(db, "users", userId, [
      { column: "user_id", value: 4200000001, expected: 4200000001n, stored: "> 2^31" },
      {
        column: "username",
        value: "Zoë 🦊 \\ \t",
        expected: "Zoë 🦊 \\ \t",
        stored: "emoji, backslash, tab",
      },
      {
        column: "is_home_user",
        value: "",
        expected: null,
        rule: "boolean.blank-text-to-null",
        stored: "''",
      },
      {
        column: "is_allow_sync",
        value: "",
        expected: null,
        rule: "boolean.blank-text-to-null",
        stored: "''",
      },
      {
        column: "is_restricted",
        value: 1,
        expected: true,
        rule: "boolean.from-integer",
        stored: "1",
      },
      {
        column: "user_token",
        value: "tok\u0000en-with-nul",
        expected: "token-with-nul",
        rule: "text.nul-removed",
        stored: "NUL in a secret",
      },
    ]),
  );

  cells.push(...insertNullRow(db, "library_sections", nextId(db, "library_sections")));
  return cells;
}

function nextId(db: Database.Database, table: string): number {
  return (
    ((db.prepare(`SELECT max(id) AS id FROM "${table}"`).get() as { id: number | null }).id ?? 0) +
    1
  );
}

// Hostile files.

/** Copies `source` cut to `fraction` of its bytes: a download or copy that stopped early. */
export function writeTruncatedCopy(source: string, dest: string, fraction = 0.5): void {
  const bytes = fs.readFileSync(source);
  fs.writeFileSync(dest, bytes.subarray(0, Math.max(1, Math.floor(bytes.length * fraction))));
}

/** A file that is not SQLite at all (a zip of a Tautulli backup, say). */
export function writeNonSqliteFile(dest: string): void {
  // "PK\x03\x04": what `tautulli.backup-*.db.zip` starts with (reference/tautulli/NOTES.md §10).
  const zipHeader = Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00]);
  fs.writeFileSync(
    dest,
    Buffer.concat([zipHeader, Buffer.from("tautulli.db".padEnd(4096, "\u0000"))]),
  );
}

/** A valid SQLite database that is not Tautulli's (here: shaped like Plex's own library db). */
export function writeForeignSqliteDb(dest: string): void {
  const db = new Database(dest);
  try {
    db.exec(`
      CREATE TABLE metadata_items (id INTEGER PRIMARY KEY, library_section_id INTEGER, title TEXT, added_at INTEGER);
      CREATE TABLE library_sections (id INTEGER PRIMARY KEY, name TEXT, section_type INTEGER);
      INSERT INTO library_sections (name, section_type) VALUES ('Movies', 1);
      INSERT INTO metadata_items (library_section_id, title, added_at) VALUES (1, 'Heat', 1700000000);
    `);
  } finally {
    db.close();
  }
}
