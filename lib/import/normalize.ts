/**
 * Value normalisation: what a SQLite value becomes in a PostgreSQL column, decided by the target
 * column's type (read from the database at import time, never from a second copy of the schema).
 *
 * SQLite keeps whatever it is given (reference/tautulli/NOTES.md §3): '' and junk in INTEGER columns, REALs where
 * integers belong, NUL bytes and invalid UTF-8 in TEXT. Every conversion is one of the rules
 * below (documented in docs/import.md, counted per table and column in the report); a value that
 * no rule converts throws {@link UnconvertibleValue} and the import fails naming table, rowid,
 * column and value.
 */

/**
 * A SQLite value as better-sqlite3 returns it: numbers for INTEGER and REAL (bigint when read
 * again exactly, see NormalizeContext.exactValue), strings, Buffers for BLOBs, null.
 */
export type SqliteValue = null | bigint | number | string | Buffer;

/**
 * A normalised value, ready for COPY. Text types: string; integer types: a safe integer number or
 * a bigint; boolean; double precision: number; timestamp types: bigint microseconds since
 * 1970-01-01 UTC; date: string 'YYYY-MM-DD'.
 */
export type PgValue = null | bigint | boolean | number | string;

/** The PostgreSQL column types the import normalises to. */
export type TargetKind =
  | "smallint"
  | "integer"
  | "bigint"
  | "boolean"
  | "double"
  | "text"
  | "varchar"
  | "json"
  | "jsonb"
  | "timestamptz"
  | "timestamp"
  | "date";

/** Maps pg_type.typname to a kind; undefined = a type the import does not write. */
export function targetKindOf(typname: string): TargetKind | undefined {
  switch (typname) {
    case "int2":
      return "smallint";
    case "int4":
      return "integer";
    case "int8":
      return "bigint";
    case "bool":
      return "boolean";
    case "float8":
      return "double";
    case "text":
      return "text";
    case "varchar":
      return "varchar";
    case "json":
      return "json";
    case "jsonb":
      return "jsonb";
    case "timestamptz":
      return "timestamptz";
    case "timestamp":
      return "timestamp";
    case "date":
      return "date";
    default:
      return undefined;
  }
}

export interface RuleInfo {
  id: string;
  /** Target column types the rule applies to. */
  target: string;
  /** The SQLite values it applies to. */
  from: string;
  /** What they become. */
  to: string;
  /** True when the original cannot be recovered from the result; such conversions also warn. */
  lossy: boolean;
}

/** Every normalisation rule. docs/import.md lists the same table (a unit test keeps them equal). */
export const RULES: readonly RuleInfo[] = [
  {
    id: "integer.blank-text-to-null",
    target: "smallint, integer, bigint",
    from: "'' or whitespace-only text",
    to: "NULL",
    lossy: false,
  },
  {
    id: "integer.null-word-to-null",
    target: "smallint, integer, bigint",
    from: "'None', 'null', 'nil', 'undefined', 'NaN', 'N/A' (any case, trimmed)",
    to: "NULL",
    lossy: false,
  },
  {
    id: "integer.from-text",
    target: "smallint, integer, bigint",
    from: "text holding a decimal integer (sign and surrounding whitespace allowed)",
    to: "that integer",
    lossy: false,
  },
  {
    id: "integer.from-integral-real",
    target: "smallint, integer, bigint",
    from: "decimal text with no fractional part ('12.0'), or a REAL beyond ±2^53 with none (a REAL like 5.0 within that range is the same number as the INTEGER 5 and is not counted)",
    to: "that integer",
    lossy: false,
  },
  {
    id: "integer.rounded-real",
    target: "smallint, integer, bigint",
    from: "REAL, or decimal text, with a fractional part (12.5)",
    to: "rounded to the nearest integer, halves away from zero (13)",
    lossy: true,
  },
  {
    id: "boolean.from-integer",
    target: "boolean",
    from: "0 or 1 (INTEGER, or REAL 0.0/1.0)",
    to: "false / true",
    lossy: false,
  },
  {
    id: "boolean.nonzero-integer-to-true",
    target: "boolean",
    from: "any other integer, or integral REAL (2, -1)",
    to: "true (Python truthiness, as Tautulli reads it)",
    lossy: true,
  },
  {
    id: "boolean.from-text",
    target: "boolean",
    from: "'1' '0' 'true' 'false' 't' 'f' 'yes' 'no' 'y' 'n' 'on' 'off' (any case, trimmed)",
    to: "true / false",
    lossy: false,
  },
  {
    id: "boolean.blank-text-to-null",
    target: "boolean",
    from: "'' or whitespace-only text",
    to: "NULL",
    lossy: false,
  },
  {
    id: "boolean.null-word-to-null",
    target: "boolean",
    from: "'None', 'null', 'nil', 'undefined', 'NaN', 'N/A'",
    to: "NULL",
    lossy: false,
  },
  {
    id: "double.from-text",
    target: "double precision",
    from: "decimal or exponent text ('1.5', '1e3', 'Infinity')",
    to: "that number",
    lossy: false,
  },
  {
    id: "double.blank-text-to-null",
    target: "double precision",
    from: "'' or whitespace-only text",
    to: "NULL",
    lossy: false,
  },
  {
    id: "double.null-word-to-null",
    target: "double precision",
    from: "'None', 'null', 'nil', 'undefined', 'NaN', 'N/A'",
    to: "NULL",
    lossy: false,
  },
  {
    id: "text.nul-removed",
    target: "text, varchar, json, jsonb",
    from: "text containing NUL (U+0000) characters, which PostgreSQL text cannot hold",
    to: "the text without them",
    lossy: true,
  },
  {
    id: "text.invalid-utf8-replaced",
    target: "text, varchar, json, jsonb",
    from: "bytes that are not valid UTF-8",
    to: "each invalid sequence replaced by U+FFFD (WHATWG decoding)",
    lossy: true,
  },
  {
    id: "text.from-blob",
    target: "text, varchar, json, jsonb",
    from: "a BLOB",
    to: "its bytes decoded as UTF-8 (the two rules above apply too)",
    lossy: false,
  },
  {
    id: "text.from-integer",
    target: "text, varchar",
    from: "an INTEGER (possible only in untyped columns)",
    to: "its decimal digits",
    lossy: false,
  },
  {
    id: "text.from-real",
    target: "text, varchar",
    from: "a REAL (possible only in untyped columns)",
    to: "its shortest round-trip decimal form",
    lossy: false,
  },
  {
    id: "json.blank-text-to-null",
    target: "json, jsonb",
    from: "'' or whitespace-only text",
    to: "NULL",
    lossy: false,
  },
  {
    id: "timestamp.from-epoch-seconds",
    target: "timestamptz, timestamp",
    from: "a number below 100,000,000,000 (INTEGER, REAL or numeric text)",
    to: "that many seconds after 1970-01-01 UTC",
    lossy: false,
  },
  {
    id: "timestamp.from-epoch-milliseconds",
    target: "timestamptz, timestamp",
    from: "a number of 100,000,000,000 or more (after 1973 in milliseconds, after year 5138 in seconds)",
    to: "that many milliseconds after 1970-01-01 UTC",
    lossy: false,
  },
  {
    id: "timestamp.zero-to-null",
    target: "timestamptz, timestamp",
    from: "0 (Tautulli's 'never')",
    to: "NULL",
    lossy: false,
  },
  {
    id: "timestamp.from-iso-text",
    target: "timestamptz, timestamp",
    from: "ISO-8601 text ('2024-05-01T12:00:00.123456+00:00'; no offset = UTC)",
    to: "that instant",
    lossy: false,
  },
  {
    id: "timestamp.blank-text-to-null",
    target: "timestamptz, timestamp, date",
    from: "'' or whitespace-only text",
    to: "NULL",
    lossy: false,
  },
  {
    id: "date.from-epoch-seconds",
    target: "date",
    from: "a number (epoch seconds)",
    to: "its UTC calendar date",
    lossy: true,
  },
  {
    id: "date.from-iso-text",
    target: "date",
    from: "'YYYY-MM-DD' text, or ISO-8601 date-time text (its date part)",
    to: "that date",
    lossy: false,
  },
];

/** Rules are counted by index (an array increment per conversion, not a keyed lookup). */
export const RULE_COUNT = RULES.length;
const RULE_INDEX = new Map(RULES.map((rule, index) => [rule.id, index]));

function ruleIndex(id: string): number {
  const index = RULE_INDEX.get(id);
  if (index === undefined) throw new Error(`unknown normalisation rule ${id}`);
  return index;
}

/** Whether the rule at `index` loses information (such conversions also warn, with samples). */
export const LOSSY_RULES: readonly boolean[] = RULES.map((rule) => rule.lossy);

export function isLossyRule(rule: string): boolean {
  return RULES.some((r) => r.id === rule && r.lossy);
}

/** Rule indexes by name, for normalisers and the encoder's fast paths. */
export const R = {
  integerBlank: ruleIndex("integer.blank-text-to-null"),
  integerNullWord: ruleIndex("integer.null-word-to-null"),
  integerFromText: ruleIndex("integer.from-text"),
  integerIntegralReal: ruleIndex("integer.from-integral-real"),
  integerRounded: ruleIndex("integer.rounded-real"),
  booleanFromInteger: ruleIndex("boolean.from-integer"),
  booleanNonzero: ruleIndex("boolean.nonzero-integer-to-true"),
  booleanFromText: ruleIndex("boolean.from-text"),
  booleanBlank: ruleIndex("boolean.blank-text-to-null"),
  booleanNullWord: ruleIndex("boolean.null-word-to-null"),
  doubleFromText: ruleIndex("double.from-text"),
  doubleBlank: ruleIndex("double.blank-text-to-null"),
  doubleNullWord: ruleIndex("double.null-word-to-null"),
  textNul: ruleIndex("text.nul-removed"),
  textInvalidUtf8: ruleIndex("text.invalid-utf8-replaced"),
  textFromBlob: ruleIndex("text.from-blob"),
  textFromInteger: ruleIndex("text.from-integer"),
  textFromReal: ruleIndex("text.from-real"),
  jsonBlank: ruleIndex("json.blank-text-to-null"),
  timestampSeconds: ruleIndex("timestamp.from-epoch-seconds"),
  timestampMillis: ruleIndex("timestamp.from-epoch-milliseconds"),
  timestampZero: ruleIndex("timestamp.zero-to-null"),
  timestampIso: ruleIndex("timestamp.from-iso-text"),
  timestampBlank: ruleIndex("timestamp.blank-text-to-null"),
  dateFromEpoch: ruleIndex("date.from-epoch-seconds"),
  dateFromIso: ruleIndex("date.from-iso-text"),
} as const;

/** Thrown by a normaliser for a value no rule converts; the caller adds table/rowid/column. */
export class UnconvertibleValue extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** What a normaliser needs from the copy loop. */
export interface NormalizeContext {
  /** Records that the rule at index `rule` converted `original` (counted; lossy ones sampled). */
  note(rule: number, original: SqliteValue): void;
  /**
   * The cell read again with exact integers (BigInt). Rows are read with plain JS numbers, which
   * is faster but cannot hold integers beyond ±2^53 nor tell an INTEGER from an integral REAL;
   * a normaliser asks for the exact value whenever that matters (rarely).
   */
  exactValue(): SqliteValue;
  /** The cell's raw bytes (`CAST(col AS BLOB)`), read only when a text holds U+FFFD. */
  rawBytes(): Buffer | null;
}

export type Normalizer = (value: SqliteValue, ctx: NormalizeContext) => PgValue;

const NULL_WORDS = new Set(["none", "null", "nil", "undefined", "nan", "n/a"]);
const INTEGER_TEXT = /^\s*[+-]?\d+\s*$/;
const DECIMAL_TEXT = /^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$/;
const TRUE_WORDS = new Set(["1", "true", "t", "yes", "y", "on"]);
const FALSE_WORDS = new Set(["0", "false", "f", "no", "n", "off"]);

const RANGES: Record<"smallint" | "integer" | "bigint", [bigint, bigint]> = {
  smallint: [-32768n, 32767n],
  integer: [-2147483648n, 2147483647n],
  bigint: [-9223372036854775808n, 9223372036854775807n],
};

function isBlank(text: string): boolean {
  return text.trim() === "";
}

function isNullWord(text: string): boolean {
  return text.length <= 12 && NULL_WORDS.has(text.trim().toLowerCase());
}

/** Half away from zero; exact for every double (Math.round of |x| rounds ties up). */
function roundHalfAwayFromZero(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/** A JS number read from SQLite that may not be exact: an integral value beyond ±2^53. */
function maybeInexact(x: number): boolean {
  return Number.isInteger(x) && !Number.isSafeInteger(x);
}

function integerNormalizer(kind: "smallint" | "integer" | "bigint"): Normalizer {
  const [min, max] = RANGES[kind];
  const minNumber = Number(min);
  const maxNumber = Number(max);
  const outOfRange = (n: bigint | number) =>
    new UnconvertibleValue(`${n} is outside the range of ${kind}`);
  const inRange = (n: bigint): bigint => {
    if (n < min || n > max) throw outOfRange(n);
    return n;
  };
  const fromReal = (x: number, original: SqliteValue, ctx: NormalizeContext): bigint => {
    if (!Number.isFinite(x)) throw new UnconvertibleValue(`${x} is not a finite number`);
    if (Number.isInteger(x)) {
      ctx.note(R.integerIntegralReal, original);
      return inRange(BigInt(x));
    }
    ctx.note(R.integerRounded, original);
    return inRange(BigInt(roundHalfAwayFromZero(x)));
  };
  return (value, ctx) => {
    if (typeof value === "number") {
      if (Number.isSafeInteger(value)) {
        if (value < minNumber || value > maxNumber) throw outOfRange(value);
        return value;
      }
      if (!maybeInexact(value)) return fromReal(value, value, ctx);
      const exact = ctx.exactValue();
      return typeof exact === "bigint" ? inRange(exact) : fromReal(exact as number, exact, ctx);
    }
    if (value === null) return null;
    if (typeof value === "bigint") return inRange(value);
    if (typeof value === "string") {
      if (isBlank(value)) {
        ctx.note(R.integerBlank, value);
        return null;
      }
      if (isNullWord(value)) {
        ctx.note(R.integerNullWord, value);
        return null;
      }
      if (INTEGER_TEXT.test(value)) {
        ctx.note(R.integerFromText, value);
        return inRange(BigInt(value.trim()));
      }
      if (DECIMAL_TEXT.test(value)) return fromReal(Number(value), value, ctx);
      throw new UnconvertibleValue(`text that is not a number, in a ${kind} column`);
    }
    throw new UnconvertibleValue(`a BLOB in a ${kind} column`);
  };
}

const booleanNormalizer: Normalizer = (value, ctx) => {
  if (typeof value === "number") {
    if (value === 0 || value === 1) {
      ctx.note(R.booleanFromInteger, value);
      return value === 1;
    }
    if (Number.isInteger(value)) {
      ctx.note(R.booleanNonzero, value);
      return true;
    }
    throw new UnconvertibleValue("a REAL with a fractional part in a boolean column");
  }
  if (value === null) return null;
  if (typeof value === "bigint") {
    ctx.note(value === 0n || value === 1n ? R.booleanFromInteger : R.booleanNonzero, value);
    return value !== 0n;
  }
  if (typeof value === "string") {
    if (isBlank(value)) {
      ctx.note(R.booleanBlank, value);
      return null;
    }
    const word = value.trim().toLowerCase();
    if (TRUE_WORDS.has(word) || FALSE_WORDS.has(word)) {
      ctx.note(R.booleanFromText, value);
      return TRUE_WORDS.has(word);
    }
    if (isNullWord(value)) {
      ctx.note(R.booleanNullWord, value);
      return null;
    }
    throw new UnconvertibleValue("text that is not a boolean word, in a boolean column");
  }
  throw new UnconvertibleValue("a BLOB in a boolean column");
};

/** An INTEGER as a double, only if the double holds it exactly (all within ±2^53 do). */
function exactDouble(value: bigint): number {
  const x = Number(value);
  if (BigInt(x) !== value) {
    throw new UnconvertibleValue(
      "an INTEGER that double precision cannot hold exactly (beyond ±2^53)",
    );
  }
  return x;
}

const doubleNormalizer: Normalizer = (value, ctx) => {
  if (typeof value === "number") {
    if (!maybeInexact(value)) return value;
    const exact = ctx.exactValue();
    return typeof exact === "bigint" ? exactDouble(exact) : (exact as number);
  }
  if (value === null) return null;
  if (typeof value === "bigint") return exactDouble(value);
  if (typeof value === "string") {
    if (isBlank(value)) {
      ctx.note(R.doubleBlank, value);
      return null;
    }
    const trimmed = value.trim();
    if (DECIMAL_TEXT.test(value) || /^[+-]?Infinity$/.test(trimmed)) {
      ctx.note(R.doubleFromText, value);
      return Number(trimmed);
    }
    if (isNullWord(value)) {
      ctx.note(R.doubleNullWord, value);
      return null;
    }
    throw new UnconvertibleValue("text that is not a number, in a double precision column");
  }
  throw new UnconvertibleValue("a BLOB in a double precision column");
};

const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Lenient = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/** Decodes bytes as UTF-8, noting the replacement of invalid sequences. */
function decodeUtf8(bytes: Buffer, original: SqliteValue, ctx: NormalizeContext): string {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    ctx.note(R.textInvalidUtf8, original);
    return utf8Lenient.decode(bytes);
  }
}

function withoutNul(text: string, original: SqliteValue, ctx: NormalizeContext): string {
  if (text.indexOf("\u0000") === -1) return text;
  ctx.note(R.textNul, original);
  return text.split("\u0000").join("");
}

/**
 * better-sqlite3 decodes TEXT with V8, which silently turns invalid UTF-8 into U+FFFD. So when a
 * string holds U+FFFD, the raw bytes decide: a real U+FFFD (EF BF BD) stays, invalid bytes are
 * replaced by the documented rule.
 */
function textFromString(value: string, ctx: NormalizeContext): string {
  let text = value;
  if (text.indexOf("\uFFFD") !== -1) {
    const raw = ctx.rawBytes();
    if (raw) text = decodeUtf8(raw, raw, ctx);
  }
  return withoutNul(text, value, ctx);
}

function textNormalizer(maxLength: number | null): Normalizer {
  const checkLength = (text: string): string => {
    if (maxLength !== null && [...text].length > maxLength) {
      throw new UnconvertibleValue(`text longer than the column's ${maxLength} characters`);
    }
    return text;
  };
  return (value, ctx) => {
    if (typeof value === "string") return checkLength(textFromString(value, ctx));
    if (value === null) return null;
    if (Buffer.isBuffer(value)) {
      ctx.note(R.textFromBlob, value);
      return checkLength(withoutNul(decodeUtf8(value, value, ctx), value, ctx));
    }
    // A number in a text column (only possible in an untyped column): the exact value decides
    // between INTEGER and REAL.
    const exact = typeof value === "bigint" ? value : ctx.exactValue();
    if (typeof exact === "bigint") {
      ctx.note(R.textFromInteger, exact);
      return exact.toString();
    }
    ctx.note(R.textFromReal, exact);
    return String(exact);
  };
}

function jsonNormalizer(kind: "json" | "jsonb"): Normalizer {
  const text = textNormalizer(null);
  return (value, ctx) => {
    if (value === null) return null;
    if (typeof value === "bigint" || typeof value === "number") {
      throw new UnconvertibleValue(`a number where ${kind} text was expected`);
    }
    const decoded = text(value, ctx) as string;
    if (isBlank(decoded)) {
      ctx.note(R.jsonBlank, value);
      return null;
    }
    try {
      JSON.parse(decoded);
    } catch {
      throw new UnconvertibleValue(`text that is not valid JSON, in a ${kind} column`);
    }
    if (kind === "jsonb" && decoded.includes("\\u0000")) {
      throw new UnconvertibleValue("JSON with a \\u0000 escape, which jsonb cannot store");
    }
    return decoded;
  };
}

const EPOCH_MS_THRESHOLD = 1e11;
const ISO_DATE_TIME =
  /^\s*(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?\s*$/i;

/** Microseconds since the epoch from ISO-8601 text, or undefined if it is not ISO-8601. */
export function parseIsoMicros(text: string): bigint | undefined {
  const m = ISO_DATE_TIME.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h = "0", mi = "0", s = "0", frac = "", zone] = m;
  const millis = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  const check = new Date(millis);
  if (
    Number.isNaN(millis) ||
    check.getUTCFullYear() !== Number(y) ||
    check.getUTCMonth() !== Number(mo) - 1 ||
    check.getUTCDate() !== Number(d) ||
    Number(h) > 23 ||
    Number(mi) > 59 ||
    Number(s) > 59
  ) {
    return undefined;
  }
  let offsetMinutes = 0;
  if (zone && zone.toUpperCase() !== "Z") {
    const sign = zone.startsWith("-") ? -1 : 1;
    const digits = zone.slice(1).replace(":", "");
    offsetMinutes = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || "0"));
  }
  return (
    (BigInt(millis) - BigInt(offsetMinutes) * 60000n) * 1000n + BigInt(frac.padEnd(6, "0") || "0")
  );
}

function epochMicros(x: number, original: SqliteValue, ctx: NormalizeContext): bigint | null {
  if (!Number.isFinite(x)) throw new UnconvertibleValue(`${x} is not a finite number`);
  if (x === 0) {
    ctx.note(R.timestampZero, original);
    return null;
  }
  const millis = Math.abs(x) >= EPOCH_MS_THRESHOLD;
  ctx.note(millis ? R.timestampMillis : R.timestampSeconds, original);
  if (Number.isInteger(x)) return BigInt(x) * (millis ? 1000n : 1000000n);
  // Fractional epochs (arrow's float timestamps): to the microsecond, as PostgreSQL stores them.
  return BigInt(Math.round(x * (millis ? 1000 : 1e6)));
}

/** JS dates (and so the COPY literal) reach ±8.64e15 ms; PostgreSQL's range is wider. */
const MAX_TIMESTAMP_MICROS = 8640000000000000000n;

const timestampNormalizer: Normalizer = (value, ctx) => {
  const micros = timestampMicros(value, ctx);
  if (micros !== null && (micros > MAX_TIMESTAMP_MICROS || micros < -MAX_TIMESTAMP_MICROS)) {
    throw new UnconvertibleValue("a time outside the years -271821..275760");
  }
  return micros;
};

function timestampMicros(value: SqliteValue, ctx: NormalizeContext): bigint | null {
  if (value === null) return null;
  if (typeof value === "bigint") {
    if (value === 0n) {
      ctx.note(R.timestampZero, value);
      return null;
    }
    const abs = value < 0n ? -value : value;
    if (abs >= BigInt(EPOCH_MS_THRESHOLD)) {
      ctx.note(R.timestampMillis, value);
      return value * 1000n;
    }
    ctx.note(R.timestampSeconds, value);
    return value * 1000000n;
  }
  if (typeof value === "number") {
    if (!maybeInexact(value)) return epochMicros(value, value, ctx);
    const exact = ctx.exactValue();
    return typeof exact === "bigint"
      ? timestampMicros(exact, ctx)
      : epochMicros(exact as number, exact, ctx);
  }
  if (typeof value === "string") {
    if (isBlank(value)) {
      ctx.note(R.timestampBlank, value);
      return null;
    }
    if (DECIMAL_TEXT.test(value)) return epochMicros(Number(value), value, ctx);
    const micros = parseIsoMicros(value);
    if (micros !== undefined) {
      ctx.note(R.timestampIso, value);
      return micros;
    }
    throw new UnconvertibleValue(
      "text that is neither an epoch number nor ISO-8601, in a timestamp column",
    );
  }
  throw new UnconvertibleValue("a BLOB in a timestamp column");
}

const dateNormalizer: Normalizer = (value, ctx) => {
  if (value === null) return null;
  const fromEpoch = (seconds: number): string => {
    if (!Number.isFinite(seconds))
      throw new UnconvertibleValue(`${seconds} is not a finite number`);
    ctx.note(R.dateFromEpoch, value);
    return new Date(seconds * 1000).toISOString().slice(0, 10);
  };
  if (typeof value === "bigint") return fromEpoch(Number(value));
  if (typeof value === "number") return fromEpoch(value);
  if (typeof value === "string") {
    if (isBlank(value)) {
      ctx.note(R.timestampBlank, value);
      return null;
    }
    const micros = parseIsoMicros(value);
    if (micros !== undefined) {
      ctx.note(R.dateFromIso, value);
      return value.trim().slice(0, 10);
    }
    throw new UnconvertibleValue("text that is not an ISO-8601 date, in a date column");
  }
  throw new UnconvertibleValue("a BLOB in a date column");
};

/** The normaliser of a target column. `maxLength` is varchar(n)'s n. */
export function normalizerFor(kind: TargetKind, maxLength: number | null = null): Normalizer {
  switch (kind) {
    case "smallint":
    case "integer":
    case "bigint":
      return integerNormalizer(kind);
    case "boolean":
      return booleanNormalizer;
    case "double":
      return doubleNormalizer;
    case "text":
      return textNormalizer(null);
    case "varchar":
      return textNormalizer(maxLength);
    case "json":
    case "jsonb":
      return jsonNormalizer(kind);
    case "timestamptz":
    case "timestamp":
      return timestampNormalizer;
    case "date":
      return dateNormalizer;
  }
}
