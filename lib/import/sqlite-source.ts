/**
 * The SQLite side: checks a tautulli.db before anything is written, and reads it.
 *
 * * The file is checked by its header first (not SQLite, truncated), then by SQLite itself
 *   (`PRAGMA integrity_check`, or `quick_check` for very large files).
 * * It is opened read-only through SQLite, never copied as a bare file: committed rows that live
 *   only in a `-wal` beside it are read like any other (reference/tautulli/NOTES.md §8), and the main file and its
 *   `-wal` are never modified (a read-only connection neither checkpoints nor truncates). SQLite
 *   needs a `-shm` index (and for a WAL database an empty `-wal`) to read; companions it had to
 *   create are removed again on close, so the directory is left as it was.
 * * Each connection reads inside one read transaction (a snapshot). The import's reader threads
 *   each have one; the import checks before COMMIT that nothing wrote the file meanwhile.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import Database from "better-sqlite3";
import { ImportError } from "./errors";
import { DroppedRows, findDroppedRows } from "./dbcheck";

const SQLITE_HEADER = Buffer.from("SQLite format 3\u0000", "latin1");
const SQLITE_FIX =
  "Point the import at tautulli.db itself (on the VM: the tautulliDbPath config key; Docker installs keep it at /config/tautulli.db).";

export interface SourceFileFacts {
  path: string;
  bytes: number;
  /** Modification time of the main file (ms), to notice a writer during the import. */
  mtimeMs: number;
  pageSize: number;
  /** Pages the header says the main file holds (0 when the header field is not valid). */
  headerPages: number;
  /** "wal" when the file is in WAL mode (header bytes 18/19 = 2). */
  journalMode: "wal" | "rollback";
  wal: { present: boolean; bytes: number; frames: number };
}

/** Checks what can be checked without SQLite: existence, header, size. */
export function inspectSourceFile(filePath: string): SourceFileFacts {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(filePath);
  } catch {
    throw new ImportError(
      "SOURCE_NOT_FOUND",
      `The SQLite file ${filePath} does not exist.`,
      SQLITE_FIX,
    );
  }
  if (!stat.isFile()) {
    throw new ImportError("SOURCE_NOT_FOUND", `${filePath} is not a file.`, SQLITE_FIX);
  }
  const header = Buffer.alloc(100);
  let read = 0;
  try {
    const fd = fs.openSync(filePath, "r");
    try {
      read = fs.readSync(fd, header, 0, 100, 0);
    } finally {
      fs.closeSync(fd);
    }
  } catch (error) {
    throw new ImportError(
      "SOURCE_UNREADABLE",
      `${filePath} cannot be read (${(error as Error).message}).`,
      "Give the user running the import read access to the file and its directory.",
    );
  }
  if (read < 16 || !header.subarray(0, 16).equals(SQLITE_HEADER)) {
    const what =
      read === 0
        ? "an empty file"
        : `a file starting with ${JSON.stringify(header.subarray(0, 8).toString("latin1"))}`;
    throw new ImportError(
      "NOT_SQLITE",
      `${filePath} is not an SQLite database (${what}; SQLite files start with "SQLite format 3").`,
      `${SQLITE_FIX} A Tautulli backup (tautulli.backup-*.db.zip) must be unzipped first.`,
    );
  }
  if (read < 100) {
    throw new ImportError(
      "TRUNCATED",
      `${filePath} is truncated: it holds ${stat.size} bytes, less than the 100-byte SQLite header.`,
      'Copy the database again, completely (stop Tautulli first, or use `sqlite3 tautulli.db ".backup copy.db"`).',
    );
  }
  const rawPageSize = header.readUInt16BE(16);
  const pageSize = rawPageSize === 1 ? 65536 : rawPageSize;
  const changeCounter = header.readUInt32BE(24);
  const versionValidFor = header.readUInt32BE(92);
  const headerPages = versionValidFor === changeCounter ? header.readUInt32BE(28) : 0;
  if (headerPages > 0 && stat.size < headerPages * pageSize) {
    throw new ImportError(
      "TRUNCATED",
      `${filePath} is truncated: its header says ${headerPages} pages of ${pageSize} bytes (${headerPages * pageSize} bytes) but the file has ${stat.size} bytes.`,
      'Copy the database again, completely (stop Tautulli first, or use `sqlite3 tautulli.db ".backup copy.db"`), and check the disk it came from.',
    );
  }
  const walPath = `${filePath}-wal`;
  const walBytes = fs.existsSync(walPath) ? fs.statSync(walPath).size : 0;
  return {
    path: filePath,
    bytes: stat.size,
    mtimeMs: stat.mtimeMs,
    pageSize,
    headerPages,
    journalMode: header[18] === 2 && header[19] === 2 ? "wal" : "rollback",
    wal: {
      present: walBytes > 0,
      bytes: walBytes,
      frames: walBytes > 32 ? Math.floor((walBytes - 32) / (pageSize + 24)) : 0,
    },
  };
}

/**
 * The source fingerprint: `sha256:` + the SHA-256 of the main file's bytes followed by the bytes
 * of its `-wal` (when there is a non-empty one). For a file without `-wal` this is the sha256 of
 * the file, the same digest the source VM publishes for the snapshot it serves.
 */
export async function sourceFingerprint(filePath: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  for (const file of [filePath, `${filePath}-wal`]) {
    if (file !== filePath && (!fs.existsSync(file) || fs.statSync(file).size === 0)) continue;
    await new Promise<void>((resolve, reject) => {
      fs.createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })
        .on("data", (chunk) => hash.update(chunk))
        .on("end", () => resolve())
        .on("error", reject);
    });
  }
  return `sha256:${hash.digest("hex")}`;
}

export interface SourceColumn {
  name: string;
  /** Declared type as SQLite reports it ('' when untyped). */
  declaredType: string;
}

export interface SourceTable {
  name: string;
  columns: SourceColumn[];
  /** True when the table has a rowid (every Tautulli table does). */
  hasRowid: boolean;
}

export interface SourceIndex {
  name: string;
  table: string;
}

export type IntegrityMode = "full" | "quick" | "off";

export function wrapSqliteError(filePath: string, error: unknown): ImportError {
  if (error instanceof ImportError) return error;
  const code = (error as { code?: string }).code ?? "";
  const message = (error as Error).message;
  if (code.startsWith("SQLITE_NOTADB")) {
    return new ImportError(
      "NOT_SQLITE",
      `${filePath} is not an SQLite database (${message}).`,
      SQLITE_FIX,
    );
  }
  if (code.startsWith("SQLITE_CORRUPT")) {
    return new ImportError(
      "CORRUPT",
      `${filePath} is damaged: SQLite reports "${message}".`,
      "Import a healthy copy: Tautulli keeps backups in the backups folder of its data directory (tautulli.backup-*.db.zip; unzip one to get tautulli.db); " +
        '`sqlite3 tautulli.db ".recover" | sqlite3 recovered.db` can rescue what is readable.',
    );
  }
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
    return new ImportError(
      "SOURCE_UNREADABLE",
      `${filePath} is locked by another process (${message}).`,
      "Stop Tautulli before the import (it must not write during the snapshot), then run the import again.",
    );
  }
  if (code.startsWith("SQLITE_READONLY") || code.startsWith("SQLITE_CANTOPEN")) {
    return new ImportError(
      "SOURCE_UNREADABLE",
      `${filePath} cannot be opened for reading (${message}).`,
      "SQLite needs to create a -shm file beside a WAL database: make the directory writable, " +
        'or take a consistent copy first with `sqlite3 tautulli.db ".backup /tmp/tautulli.db"`.',
    );
  }
  return new ImportError("SOURCE_UNREADABLE", `Reading ${filePath} failed: ${message}`, SQLITE_FIX);
}

/** A read-only, single-snapshot view of a tautulli.db. */
export class SqliteSource {
  readonly db: Database.Database;
  private readonly createdCompanions: string[];

  private constructor(
    readonly facts: SourceFileFacts,
    db: Database.Database,
    createdCompanions: string[],
  ) {
    this.db = db;
    this.createdCompanions = createdCompanions;
  }

  /**
   * Opens `facts.path` read-only and starts the read transaction. With `cleanup` false, companion
   * files SQLite creates are left for another connection (the one that closes last) to remove.
   */
  static open(facts: SourceFileFacts, cleanup = true, cacheKib = 2048): SqliteSource {
    const companions = [`${facts.path}-wal`, `${facts.path}-shm`];
    const existedBefore = companions.map((file) => fs.existsSync(file));
    let db: Database.Database | undefined;
    try {
      db = new Database(facts.path, { readonly: true, fileMustExist: true });
      // The rows are read once, in order: a small page cache does as well as better-sqlite3's
      // 16 MB default, and each reader thread has its own.
      db.pragma(`cache_size = -${cacheKib}`);
      db.exec("BEGIN");
      // The first read takes the snapshot every later read sees.
      db.prepare("SELECT count(*) FROM sqlite_master").get();
    } catch (error) {
      db?.close();
      removeCreated(companions, existedBefore);
      throw wrapSqliteError(facts.path, error);
    }
    return new SqliteSource(
      facts,
      db,
      cleanup ? companions.filter((_, i) => !existedBefore[i]) : [],
    );
  }

  /** Runs SQLite's own check; anything but "ok" fails the import before it writes. */
  integrityCheck(mode: IntegrityMode): "ok" | "skipped" {
    if (mode === "off") return "skipped";
    let rows: { [key: string]: string }[];
    try {
      rows = this.db.pragma(mode === "full" ? "integrity_check(20)" : "quick_check(20)") as {
        [key: string]: string;
      }[];
    } catch (error) {
      throw wrapSqliteError(this.facts.path, error);
    }
    const messages = rows.map((row) => Object.values(row)[0]);
    if (messages.length === 1 && messages[0] === "ok") return "ok";
    throw new ImportError(
      "CORRUPT",
      `${this.facts.path} fails SQLite's ${mode === "full" ? "integrity_check" : "quick_check"}: ${messages.slice(0, 5).join("; ")}${messages.length > 5 ? `; ... (${messages.length} problems)` : ""}.`,
      "Import a healthy copy: Tautulli keeps backups in the backups folder of its data directory (tautulli.backup-*.db.zip; unzip one to get tautulli.db); " +
        '`sqlite3 tautulli.db ".recover" | sqlite3 recovered.db` can rescue what is readable.',
      { problems: messages.slice(0, 20) },
    );
  }

  /** Every table except SQLite's own, with its columns in declaration order. */
  tables(): SourceTable[] {
    try {
      const rows = this.db
        .prepare(
          "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
        .all() as { name: string; sql: string | null }[];
      return rows.map((row) => ({
        name: row.name,
        columns: (
          this.db.prepare(`PRAGMA table_info(${quote(row.name)})`).all() as {
            name: string;
            type: string;
          }[]
        ).map((c) => ({ name: c.name, declaredType: c.type })),
        hasRowid: !/\)\s*WITHOUT\s+ROWID\s*;?\s*$/i.test(row.sql ?? ""),
      }));
    } catch (error) {
      throw wrapSqliteError(this.facts.path, error);
    }
  }

  /** Explicitly created indexes (not SQLite's automatic ones). */
  indexes(): SourceIndex[] {
    return (
      this.db
        .prepare(
          "SELECT name, tbl_name AS tbl FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
        )
        .all() as { name: string; tbl: string }[]
    ).map((r) => ({ name: r.name, table: r.tbl }));
  }

  /** `sqlite_sequence` (AUTOINCREMENT high-water marks) by lower-cased table name. */
  sequences(): Map<string, bigint> {
    const result = new Map<string, bigint>();
    const exists = this.db
      .prepare("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
      .get();
    if (!exists) return result;
    const rows = this.db
      .prepare("SELECT name, seq FROM sqlite_sequence")
      .safeIntegers(true)
      .all() as {
      name: string;
      seq: bigint | number | string | null;
    }[];
    for (const row of rows) {
      if (typeof row.seq === "bigint") result.set(row.name.toLowerCase(), row.seq);
    }
    return result;
  }

  count(table: string): number {
    try {
      const row = this.db.prepare(`SELECT count(*) AS n FROM ${quote(table)}`).get() as {
        n: number;
      };
      return row.n;
    } catch (error) {
      throw wrapSqliteError(this.facts.path, error);
    }
  }

  /** The rows Tautulli's own upgrade would delete from these tables (dbcheck.ts). */
  droppedRows(tables: SourceTable[]): DroppedRows[] {
    try {
      return findDroppedRows(this.db, tables);
    } catch (error) {
      throw wrapSqliteError(this.facts.path, error);
    }
  }

  /** The smallest and largest rowid of `table`, or null when it is empty. */
  rowidRange(table: string): [number, number] | null {
    const row = this.db
      .prepare(`SELECT min(rowid) AS lo, max(rowid) AS hi FROM ${quote(table)}`)
      .get() as {
      lo: number | null;
      hi: number | null;
    };
    return row.lo === null || row.hi === null ? null : [row.lo, row.hi];
  }

  /** Rows holding a non-NULL value in `column` (for reporting columns the target lacks). */
  countNonNull(table: string, column: string): number {
    return (
      this.db.prepare(`SELECT count(${quote(column)}) AS n FROM ${quote(table)}`).get() as {
        n: number;
      }
    ).n;
  }

  /** The `version_info` row Tautulli v2.7+ keeps, or null. */
  storedVersion(): string | null {
    const exists = this.db
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'version_info'")
      .get();
    if (!exists) return null;
    const row = this.db.prepare("SELECT value FROM version_info WHERE key = 'version'").get() as
      { value: unknown } | undefined;
    return typeof row?.value === "string" ? row.value : null;
  }

  /** Ends the read transaction, closes, and removes companion files SQLite created for us. */
  close(): void {
    if (this.db.open) {
      try {
        this.db.exec("COMMIT");
      } catch {
        // the transaction may already be gone after an error
      }
      this.db.close();
    }
    removeCreated(
      this.createdCompanions,
      this.createdCompanions.map(() => false),
    );
  }
}

/**
 * Removes companion files that did not exist before we opened the database: the -shm index,
 * and a -wal only if it is empty (a non-empty one would hold rows, which never happens for a
 * read-only connection, but then it is kept).
 */
function removeCreated(files: string[], existedBefore: boolean[]): void {
  files.forEach((file, i) => {
    if (existedBefore[i] || !fs.existsSync(file)) return;
    if (file.endsWith("-wal") && fs.statSync(file).size > 0) return;
    fs.rmSync(file, { force: true });
  });
}

export function quote(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
