/**
 * A parsed model of Tautulli's SQLite schema: the tables, columns (declared type, default,
 * constraints) and indexes of a `CREATE TABLE` / `CREATE INDEX` script such as
 * `reference/tautulli/schema-current.sql`, or of the `sql` column of a real database's
 * `sqlite_master`. The migrations are checked against it, the stamp rule verifies an existing
 * database with it, and the import uses it to recognise Tautulli tables and releases.
 *
 * The parser understands the SQLite DDL that Tautulli's `dbcheck()` writes (and what SQLite stores
 * after `ALTER TABLE ... ADD COLUMN`): quoted identifiers in all three SQLite styles, untyped
 * columns, `DEFAULT` literals (including SQLite's double-quoted strings), `NOT NULL`, `UNIQUE`,
 * `PRIMARY KEY [AUTOINCREMENT]`, table-level `UNIQUE (...)`/`PRIMARY KEY (...)`, and comments.
 */
import * as fs from "fs";
import * as path from "path";

/** Where the vendored Tautulli schemas live in the repository. */
export const REFERENCE_DIR = path.resolve(__dirname, "..", "..", "reference", "tautulli");

/** The reference scripts: the current release and an old one (for schema-drift tests). */
export const REFERENCE_FILES = {
  current: path.join(REFERENCE_DIR, "schema-current.sql"),
  "v2.1": path.join(REFERENCE_DIR, "schema-v2.1.sql"),
} as const;

export type ReferenceName = keyof typeof REFERENCE_FILES;

/** SQLite's type affinity of a declared column type (https://sqlite.org/datatype3.html §3.1). */
export type SqliteAffinity = "INTEGER" | "TEXT" | "BLOB" | "REAL" | "NUMERIC";

/** A column `DEFAULT`. `value` is undefined when the default is an expression, not a literal. */
export interface SqliteDefault {
  /** The default as written, e.g. `0`, `'0 0 * * 0'`, `"0 0 * * 0"`, `NULL`. */
  sql: string;
  /** The literal's value: a string, a number, null for `NULL`, undefined for an expression. */
  value: string | number | null | undefined;
}

export interface SqliteColumn {
  name: string;
  /** Declared type as written, upper-cased (`INTEGER`, `TEXT`), or null when untyped. */
  declaredType: string | null;
  affinity: SqliteAffinity;
  notNull: boolean;
  /** Column-level `UNIQUE`. */
  unique: boolean;
  primaryKey: boolean;
  autoIncrement: boolean;
  /** Absent when the column has no `DEFAULT` clause. */
  default?: SqliteDefault;
}

export interface SqliteTable {
  name: string;
  columns: SqliteColumn[];
  /** Primary-key column names (column-level or table-level), in key order. */
  primaryKey: string[];
  /** Table-level `UNIQUE (a, b)` constraints, each a list of column names. */
  uniqueConstraints: string[][];
}

export interface SqliteIndexColumn {
  name: string;
  /** `ASC`/`DESC` when written, else null. */
  order: "ASC" | "DESC" | null;
}

export interface SqliteIndex {
  name: string;
  table: string;
  unique: boolean;
  columns: SqliteIndexColumn[];
  /** The `WHERE` clause of a partial index, if any. */
  where?: string;
}

/** A row an `INSERT INTO t (cols) VALUES (...)` statement of the script writes. */
export interface SqliteSeedRow {
  table: string;
  values: Record<string, string | number | null>;
}

export interface TautulliSchema {
  /** Tautulli release the script describes (`v2.17.2`), from its version_info row or header. */
  tautulliVersion: string | null;
  tables: SqliteTable[];
  /** Explicit `CREATE INDEX` statements (not SQLite's implicit autoindexes). */
  indexes: SqliteIndex[];
  seedRows: SqliteSeedRow[];
}

// --- Tokenizer ---------------------------------------------------------------------------------

type TokenKind = "word" | "ident" | "string" | "number" | "punct";

interface Token {
  kind: TokenKind;
  /** Identifier/word text without quotes, string value without quotes, or the punctuation. */
  text: string;
  /** The token as written. */
  raw: string;
}

/** Splits SQL into tokens, dropping whitespace and comments. */
function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const ch = sql[i];
    if (/\s/.test(ch)) {
      i++;
    } else if (ch === "-" && sql[i + 1] === "-") {
      while (i < n && sql[i] !== "\n") i++;
    } else if (ch === "/" && sql[i + 1] === "*") {
      const end = sql.indexOf("*/", i + 2);
      i = end < 0 ? n : end + 2;
    } else if (ch === "'" || ch === '"' || ch === "`") {
      // SQLite escapes a quote inside a quoted text by doubling it.
      let j = i + 1;
      let text = "";
      for (;;) {
        if (j >= n) throw new Error(`unterminated ${ch}-quoted text in SQL at offset ${i}`);
        if (sql[j] === ch) {
          if (sql[j + 1] === ch) {
            text += ch;
            j += 2;
            continue;
          }
          break;
        }
        text += sql[j++];
      }
      tokens.push({ kind: ch === "'" ? "string" : "ident", text, raw: sql.slice(i, j + 1) });
      i = j + 1;
    } else if (ch === "[") {
      const end = sql.indexOf("]", i);
      if (end < 0) throw new Error(`unterminated [identifier] in SQL at offset ${i}`);
      tokens.push({ kind: "ident", text: sql.slice(i + 1, end), raw: sql.slice(i, end + 1) });
      i = end + 1;
    } else if (/[0-9.]/.test(ch) && /[0-9]/.test(sql[i + (ch === "." ? 1 : 0)] ?? "")) {
      const match = /^(0x[0-9a-fA-F]+|\d*\.?\d+(?:[eE][-+]?\d+)?)/.exec(sql.slice(i))!;
      tokens.push({ kind: "number", text: match[0], raw: match[0] });
      i += match[0].length;
    } else if (/[A-Za-z_]/.test(ch)) {
      const match = /^[A-Za-z_][A-Za-z0-9_$]*/.exec(sql.slice(i))!;
      tokens.push({ kind: "word", text: match[0], raw: match[0] });
      i += match[0].length;
    } else {
      tokens.push({ kind: "punct", text: ch, raw: ch });
      i++;
    }
  }
  return tokens;
}

/** Splits a script into statements on top-level `;` (outside strings and comments). */
export function splitSqlStatements(sql: string): string[] {
  const statements: string[] = [];
  let start = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const ch = sql[i];
    if (ch === "-" && sql[i + 1] === "-") {
      while (i < n && sql[i] !== "\n") i++;
    } else if (ch === "/" && sql[i + 1] === "*") {
      const end = sql.indexOf("*/", i + 2);
      i = end < 0 ? n : end + 2;
    } else if (ch === "'" || ch === '"' || ch === "`") {
      let j = i + 1;
      while (j < n && !(sql[j] === ch && sql[j + 1] !== ch)) j += sql[j] === ch ? 2 : 1;
      i = j + 1;
    } else if (ch === ";") {
      statements.push(sql.slice(start, i));
      start = ++i;
    } else {
      i++;
    }
  }
  statements.push(sql.slice(start));
  return statements.filter((s) => tokenize(s).length > 0);
}

const isWord = (token: Token | undefined, ...words: string[]) =>
  token !== undefined && token.kind === "word" && words.includes(token.text.toUpperCase());

const isPunct = (token: Token | undefined, text: string) =>
  token !== undefined && token.kind === "punct" && token.text === text;

const identifierText = (token: Token | undefined): string => {
  if (!token || (token.kind !== "word" && token.kind !== "ident" && token.kind !== "string")) {
    throw new Error(`expected a name, found ${token ? `"${token.raw}"` : "the end"}`);
  }
  return token.text;
};

/** Splits tokens on commas that are not inside parentheses. */
function splitTopLevel(tokens: Token[]): Token[][] {
  const parts: Token[][] = [[]];
  let depth = 0;
  for (const token of tokens) {
    if (isPunct(token, "(")) depth++;
    if (isPunct(token, ")")) depth--;
    if (depth === 0 && isPunct(token, ",")) parts.push([]);
    else parts[parts.length - 1].push(token);
  }
  return parts.filter((part) => part.length > 0);
}

/** Index of the `)` matching the `(` at `open`. */
function closingParen(tokens: Token[], open: number): number {
  let depth = 0;
  for (let i = open; i < tokens.length; i++) {
    if (isPunct(tokens[i], "(")) depth++;
    if (isPunct(tokens[i], ")") && --depth === 0) return i;
  }
  throw new Error("unbalanced parentheses");
}

const joinRaw = (tokens: Token[]) =>
  tokens
    .map((t) => t.raw)
    .join(" ")
    .replace(/\( /g, "(")
    .replace(/ \)/g, ")")
    .replace(/ ,/g, ",");

// --- Column definitions --------------------------------------------------------------------------

const CONSTRAINT_WORDS = [
  "CONSTRAINT",
  "PRIMARY",
  "NOT",
  "NULL",
  "UNIQUE",
  "CHECK",
  "DEFAULT",
  "COLLATE",
  "REFERENCES",
  "GENERATED",
  "AS",
];

/** SQLite's affinity rules, in their documented order. */
export function sqliteAffinity(declaredType: string | null): SqliteAffinity {
  if (declaredType === null) return "BLOB";
  const type = declaredType.toUpperCase();
  if (type.includes("INT")) return "INTEGER";
  if (type.includes("CHAR") || type.includes("CLOB") || type.includes("TEXT")) return "TEXT";
  if (type.includes("BLOB") || type === "") return "BLOB";
  if (type.includes("REAL") || type.includes("FLOA") || type.includes("DOUB")) return "REAL";
  return "NUMERIC";
}

function parseDefault(tokens: Token[], at: number): { value: SqliteDefault; next: number } {
  const token = tokens[at];
  if (!token) throw new Error("DEFAULT without a value");
  if (isPunct(token, "(")) {
    const close = closingParen(tokens, at);
    return {
      value: { sql: joinRaw(tokens.slice(at, close + 1)), value: undefined },
      next: close + 1,
    };
  }
  if ((isPunct(token, "-") || isPunct(token, "+")) && tokens[at + 1]?.kind === "number") {
    const number = Number(tokens[at + 1].text) * (token.text === "-" ? -1 : 1);
    return { value: { sql: token.raw + tokens[at + 1].raw, value: number }, next: at + 2 };
  }
  if (token.kind === "number")
    return { value: { sql: token.raw, value: Number(token.text) }, next: at + 1 };
  // SQLite reads a double-quoted word it cannot resolve as a column as a string literal; in a
  // DEFAULT there is no column to resolve, so `DEFAULT "x"` is the text x (Tautulli v2.1 wrote that).
  if (token.kind === "string" || (token.kind === "ident" && token.raw.startsWith('"'))) {
    return { value: { sql: token.raw, value: token.text }, next: at + 1 };
  }
  if (isWord(token, "NULL")) return { value: { sql: token.raw, value: null }, next: at + 1 };
  if (isWord(token, "TRUE", "FALSE")) {
    return {
      value: { sql: token.raw, value: token.text.toUpperCase() === "TRUE" ? 1 : 0 },
      next: at + 1,
    };
  }
  // CURRENT_TIMESTAMP and friends: an expression evaluated on insert.
  return { value: { sql: token.raw, value: undefined }, next: at + 1 };
}

function parseColumn(tokens: Token[]): SqliteColumn {
  const name = identifierText(tokens[0]);
  let i = 1;
  const typeWords: string[] = [];
  while (i < tokens.length && !isWord(tokens[i], ...CONSTRAINT_WORDS)) {
    if (isPunct(tokens[i], "(")) {
      const close = closingParen(tokens, i);
      typeWords.push(joinRaw(tokens.slice(i, close + 1)));
      i = close + 1;
    } else {
      typeWords.push(tokens[i].raw);
      i++;
    }
  }
  const declaredType =
    typeWords.length > 0 ? typeWords.join(" ").replace(/ \(/g, "(").toUpperCase() : null;
  const column: SqliteColumn = {
    name,
    declaredType,
    affinity: sqliteAffinity(declaredType),
    notNull: false,
    unique: false,
    primaryKey: false,
    autoIncrement: false,
  };
  while (i < tokens.length) {
    const token = tokens[i];
    if (isWord(token, "CONSTRAINT")) {
      i += 2; // the constraint's name
    } else if (isWord(token, "PRIMARY")) {
      column.primaryKey = true;
      i += 2; // PRIMARY KEY
    } else if (isWord(token, "AUTOINCREMENT")) {
      column.autoIncrement = true;
      i++;
    } else if (isWord(token, "NOT") && isWord(tokens[i + 1], "NULL")) {
      column.notNull = true;
      i += 2;
    } else if (isWord(token, "UNIQUE")) {
      column.unique = true;
      i++;
    } else if (isWord(token, "DEFAULT")) {
      const parsed = parseDefault(tokens, i + 1);
      // `DEFAULT NULL` is how SQLite spells "no default"; keep the clause, it is what was written.
      column.default = parsed.value;
      i = parsed.next;
    } else if (isPunct(token, "(")) {
      i = closingParen(tokens, i) + 1; // CHECK (...), REFERENCES t (...), GENERATED AS (...)
    } else {
      i++; // NULL, ASC/DESC, ON CONFLICT ..., COLLATE x, REFERENCES t: no effect on the model
    }
  }
  return column;
}

function parseColumnList(tokens: Token[]): SqliteIndexColumn[] {
  return splitTopLevel(tokens).map((part) => {
    const last = part[part.length - 1];
    const order = isWord(last, "ASC", "DESC") ? (last.text.toUpperCase() as "ASC" | "DESC") : null;
    return { name: identifierText(part[0]), order };
  });
}

/** Parses one `CREATE TABLE` statement (as in a script or in `sqlite_master.sql`). */
export function parseCreateTable(sql: string): SqliteTable {
  const tokens = tokenize(sql);
  let i = 0;
  if (!isWord(tokens[i++], "CREATE"))
    throw new Error(`not a CREATE TABLE statement: ${sql.slice(0, 60)}`);
  while (isWord(tokens[i], "TEMP", "TEMPORARY")) i++;
  if (!isWord(tokens[i++], "TABLE"))
    throw new Error(`not a CREATE TABLE statement: ${sql.slice(0, 60)}`);
  if (isWord(tokens[i], "IF")) i += 3; // IF NOT EXISTS
  let name = identifierText(tokens[i++]);
  if (isPunct(tokens[i], ".")) name = identifierText(tokens[(i += 2) - 1]); // schema.table
  if (!isPunct(tokens[i], "(")) throw new Error(`CREATE TABLE ${name}: expected a column list`);
  const body = tokens.slice(i + 1, closingParen(tokens, i));
  const table: SqliteTable = { name, columns: [], primaryKey: [], uniqueConstraints: [] };
  for (const part of splitTopLevel(body)) {
    let head = 0;
    if (isWord(part[0], "CONSTRAINT")) head = 2;
    if (isWord(part[head], "UNIQUE", "PRIMARY")) {
      const open = part.findIndex((t) => isPunct(t, "("));
      const columns = parseColumnList(part.slice(open + 1, closingParen(part, open))).map(
        (c) => c.name,
      );
      if (isWord(part[head], "UNIQUE")) table.uniqueConstraints.push(columns);
      else table.primaryKey = columns;
    } else if (isWord(part[head], "CHECK", "FOREIGN")) {
      // Tautulli declares neither; nothing in this model depends on them.
    } else {
      table.columns.push(parseColumn(part));
    }
  }
  if (table.primaryKey.length === 0) {
    table.primaryKey = table.columns.filter((c) => c.primaryKey).map((c) => c.name);
  } else {
    for (const column of table.columns)
      column.primaryKey ||= table.primaryKey.includes(column.name);
  }
  return table;
}

/** Parses one `CREATE [UNIQUE] INDEX` statement. */
export function parseCreateIndex(sql: string): SqliteIndex {
  const tokens = tokenize(sql);
  let i = 0;
  if (!isWord(tokens[i++], "CREATE"))
    throw new Error(`not a CREATE INDEX statement: ${sql.slice(0, 60)}`);
  const unique = isWord(tokens[i], "UNIQUE");
  if (unique) i++;
  if (!isWord(tokens[i++], "INDEX"))
    throw new Error(`not a CREATE INDEX statement: ${sql.slice(0, 60)}`);
  if (isWord(tokens[i], "IF")) i += 3;
  let name = identifierText(tokens[i++]);
  if (isPunct(tokens[i], ".")) name = identifierText(tokens[(i += 2) - 1]);
  if (!isWord(tokens[i++], "ON")) throw new Error(`CREATE INDEX ${name}: expected ON <table>`);
  const table = identifierText(tokens[i++]);
  const close = closingParen(tokens, i);
  const columns = parseColumnList(tokens.slice(i + 1, close));
  const index: SqliteIndex = { name, table, unique, columns };
  if (isWord(tokens[close + 1], "WHERE")) index.where = joinRaw(tokens.slice(close + 2));
  return index;
}

function parseInsert(sql: string): SqliteSeedRow[] {
  const tokens = tokenize(sql);
  let i = 2; // INSERT INTO
  const table = identifierText(tokens[i++]);
  const columnsClose = closingParen(tokens, i);
  const columns = parseColumnList(tokens.slice(i + 1, columnsClose)).map((c) => c.name);
  i = columnsClose + 1;
  if (!isWord(tokens[i++], "VALUES"))
    throw new Error(`INSERT INTO ${table}: only VALUES lists are understood`);
  const rows: SqliteSeedRow[] = [];
  while (isPunct(tokens[i], "(")) {
    const close = closingParen(tokens, i);
    const values = splitTopLevel(tokens.slice(i + 1, close)).map(
      (part) => parseDefault(part, 0).value.value,
    );
    const row: Record<string, string | number | null> = {};
    columns.forEach((column, k) => (row[column] = values[k] ?? null));
    rows.push({ table, values: row });
    i = close + 1;
    if (isPunct(tokens[i], ",")) i++;
  }
  return rows;
}

/** Parses a whole schema script: every CREATE TABLE, CREATE INDEX and INSERT in it. */
export function parseTautulliSchemaSql(sql: string): TautulliSchema {
  const schema: TautulliSchema = { tautulliVersion: null, tables: [], indexes: [], seedRows: [] };
  for (const statement of splitSqlStatements(sql)) {
    const tokens = tokenize(statement);
    const kind = tokens
      .slice(0, 3)
      .map((t) => t.text.toUpperCase())
      .join(" ");
    if (/^CREATE (TEMP |TEMPORARY )?TABLE/.test(kind))
      schema.tables.push(parseCreateTable(statement));
    else if (/^CREATE (UNIQUE )?INDEX/.test(kind)) schema.indexes.push(parseCreateIndex(statement));
    else if (/^INSERT INTO/.test(kind)) schema.seedRows.push(...parseInsert(statement));
    else
      throw new Error(`unsupported statement in schema script: ${statement.trim().slice(0, 60)}`);
  }
  const versionRow = schema.seedRows.find(
    (row) => row.table === "version_info" && row.values.key === "version",
  );
  if (typeof versionRow?.values.value === "string") {
    schema.tautulliVersion = versionRow.values.value;
  } else {
    schema.tautulliVersion = /Tautulli version\s*:\s*(v\d+(?:\.\d+)+)/.exec(sql)?.[1] ?? null;
  }
  return schema;
}

const cache = new Map<ReferenceName, TautulliSchema>();

/** The parsed reference schema (`current` = the release the migrations create). */
export function loadTautulliReference(name: ReferenceName = "current"): TautulliSchema {
  let schema = cache.get(name);
  if (!schema) {
    schema = parseTautulliSchemaSql(fs.readFileSync(REFERENCE_FILES[name], "utf8"));
    cache.set(name, schema);
  }
  return schema;
}

/** The table named `name` (case-insensitive, as SQLite matches names), or undefined. */
export function findTable(schema: TautulliSchema, name: string): SqliteTable | undefined {
  const lower = name.toLowerCase();
  return schema.tables.find((t) => t.name.toLowerCase() === lower);
}
