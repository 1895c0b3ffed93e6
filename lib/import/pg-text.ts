/**
 * Text forms of normalised values: the COPY text format the import streams
 * (https://www.postgresql.org/docs/current/sql-copy.html, "Text Format"), and the canonical form
 * the content checksum hashes (PostgreSQL's record output). The two are deliberately different:
 * the checksum must catch a COPY escaping mistake, so it cannot reuse the COPY encoding.
 */
import type { PgValue, TargetKind } from "./normalize";

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIAL_GLOBAL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = {
  "\\": "\\\\",
  "\t": "\\t",
  "\n": "\\n",
  "\r": "\\r",
};

/** A text value for COPY: backslash, tab, newline and carriage return escaped. */
export function copyEscape(text: string): string {
  return COPY_SPECIAL.test(text) ? text.replace(COPY_SPECIAL_GLOBAL, (c) => COPY_ESCAPES[c]) : text;
}

/**
 * A double exactly as PostgreSQL's float8out prints it (extra_float_digits = 1, the default):
 * the shortest digits that round-trip, in positional notation for decimal exponents -4..14 and
 * as `d.ddde+XX` outside them.
 */
export function pgFloat8Text(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  let [digits, exponent] = shortestDigits(x.toExponential());
  // V8 accepts a shortest candidate lying exactly halfway to a neighbouring double (it parses
  // back by round-half-even); PostgreSQL's Ryu does not, and prints more digits instead.
  if (isHalfwayToNeighbour(x, digits, exponent)) {
    for (let precision = digits.length + 1; precision <= 17; precision++) {
      const candidate = shortestDigits(Math.abs(x).toExponential(precision - 1));
      if (Number(`${candidate[0]}e${candidate[1] - candidate[0].length + 1}`) !== Math.abs(x))
        continue;
      if (isHalfwayToNeighbour(x, candidate[0], candidate[1])) continue;
      [digits, exponent] = candidate;
      break;
    }
  }
  const sign = x < 0 ? "-" : "";
  if (exponent < -4 || exponent >= 15) {
    const fraction = digits.length > 1 ? `.${digits.slice(1)}` : "";
    const expSign = exponent < 0 ? "-" : "+";
    return `${sign}${digits[0]}${fraction}e${expSign}${String(Math.abs(exponent)).padStart(2, "0")}`;
  }
  if (exponent < 0) return `${sign}0.${"0".repeat(-exponent - 1)}${digits}`;
  if (digits.length <= exponent + 1)
    return `${sign}${digits}${"0".repeat(exponent + 1 - digits.length)}`;
  return `${sign}${digits.slice(0, exponent + 1)}.${digits.slice(exponent + 1)}`;
}

/** Significant digits (no trailing zeros) and decimal exponent of a toExponential() string. */
function shortestDigits(exponential: string): [string, number] {
  const [mantissa, exponentText] = exponential.split("e");
  const digits = mantissa.replace("-", "").replace(".", "").replace(/0+$/, "") || "0";
  return [digits, Number(exponentText)];
}

const float64 = new Float64Array(1);
const bits64 = new BigUint64Array(float64.buffer);

/** x = mantissa * 2^exponent exactly (finite, non-zero x). */
function exactBinary(x: number): { mantissa: bigint; exponent: number } {
  float64[0] = Math.abs(x);
  const bits = bits64[0];
  const biased = Number(bits >> 52n);
  const fraction = bits & ((1n << 52n) - 1n);
  return biased === 0
    ? { mantissa: fraction, exponent: -1074 }
    : { mantissa: fraction | (1n << 52n), exponent: biased - 1075 };
}

/** Whether digits * 10^(exponent - digits + 1) is exactly halfway between |x| and a neighbour. */
function isHalfwayToNeighbour(x: number, digits: string, exponent: number): boolean {
  const { mantissa, exponent: e2 } = exactBinary(x);
  const scale10 = exponent - digits.length + 1;
  const candidate = BigInt(digits);
  /** candidate * 10^scale10 === odd * 2^scale2, in integers only. */
  const equals = (odd: bigint, scale2: number): boolean => {
    let left = candidate;
    let right = odd;
    if (scale10 >= 0) left *= 10n ** BigInt(scale10);
    else right *= 10n ** BigInt(-scale10);
    if (scale2 >= 0) right <<= BigInt(scale2);
    else left <<= BigInt(-scale2);
    return left === right;
  };
  // Above: halfway to the next double is (2m + 1) * 2^(e2 - 1). Below: (2m - 1) * 2^(e2 - 1),
  // except at a power of two, where the gap below is half as wide: (4m - 1) * 2^(e2 - 2).
  const below =
    mantissa === 1n << 52n
      ? equals(4n * mantissa - 1n, e2 - 2)
      : equals(2n * mantissa - 1n, e2 - 1);
  return below || equals(2n * mantissa + 1n, e2 - 1);
}

const MICROS_PER_SECOND = 1000000n;

/** Microseconds since the epoch as a COPY timestamp literal in UTC (the session runs in UTC). */
export function timestampLiteral(micros: bigint): string {
  let seconds = micros / MICROS_PER_SECOND;
  let fraction = micros % MICROS_PER_SECOND;
  if (fraction < 0n) {
    fraction += MICROS_PER_SECOND;
    seconds -= 1n;
  }
  const iso = new Date(Number(seconds) * 1000).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${fraction.toString().padStart(6, "0")}+00`;
}

/** The COPY text of one value of a column of `kind` (`\N` for NULL). */
export type CopyEncoder = (value: PgValue) => string;

export function copyEncoderFor(kind: TargetKind): CopyEncoder {
  switch (kind) {
    case "smallint":
    case "integer":
    case "bigint":
      return (v) => (v === null ? "\\N" : String(v));
    case "boolean":
      return (v) => (v === null ? "\\N" : v ? "t" : "f");
    case "double":
      return (v) => (v === null ? "\\N" : pgFloat8Text(v as number));
    case "timestamptz":
    case "timestamp":
      return (v) => (v === null ? "\\N" : timestampLiteral(v as bigint));
    default:
      return (v) => (v === null ? "\\N" : copyEscape(v as string));
  }
}

// The content checksum's canonical form.

/**
 * One field of a row's canonical text: exactly what PostgreSQL's record output (`ROW(...)::text`)
 * prints for the stored value. NULL is empty; a value is double-quoted when it is empty or holds
 * `"` `\` `(` `)` `,` or ASCII white space, with `"` and `\` doubled inside the quotes.
 *
 * It is not the COPY encoding (backslash escapes): a mistake in one cannot cancel out in the other.
 */
export type CanonicalEncoder = (value: PgValue) => string;

const RECORD_SPECIAL = /[",\\() \t\n\r\v\f]/;
const RECORD_DOUBLED = /["\\]/g;

export function recordField(text: string): string {
  if (text === "") return '""';
  if (!RECORD_SPECIAL.test(text)) return text;
  return `"${text.replace(RECORD_DOUBLED, "$&$&")}"`;
}

/** timestamptz/timestamp as PostgreSQL prints it (ISO DateStyle, UTC): fraction without trailing zeros. */
export function timestampOutput(micros: bigint, withZone: boolean): string {
  const literal = timestampLiteral(micros); // YYYY-MM-DD HH:MM:SS.ffffff+00
  const fraction = literal.slice(20, 26).replace(/0+$/, "");
  return `${literal.slice(0, 19)}${fraction ? `.${fraction}` : ""}${withZone ? "+00" : ""}`;
}

export function canonicalEncoderFor(kind: TargetKind): CanonicalEncoder | undefined {
  switch (kind) {
    case "smallint":
    case "integer":
    case "bigint":
      return (v) => (v === null ? "" : String(v));
    case "boolean":
      return (v) => (v === null ? "" : v ? "t" : "f");
    case "double":
      return (v) => (v === null ? "" : pgFloat8Text(v as number));
    case "timestamptz":
    case "timestamp": {
      const withZone = kind === "timestamptz";
      return (v) => (v === null ? "" : `"${timestampOutput(v as bigint, withZone)}"`);
    }
    case "date":
      return (v) => (v === null ? "" : (v as string));
    case "jsonb":
      // jsonb re-serialises (key order, spacing); it is verified by count, not by content.
      return undefined;
    default:
      return (v) => (v === null ? "" : recordField(v as string));
  }
}

/** `"name"` with embedded quotes doubled. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The per-table checksum query: row count and the sum over rows of the first 64 bits of
 * md5(ROW(columns)::text), columns in the order the import hashes them.
 */
export function checksumSql(qualifiedTable: string, columns: string[]): string {
  const row = columns.length > 0 ? `ROW(${columns.map(quoteIdent).join(", ")})::text` : "'()'";
  return `SELECT count(*)::bigint::text AS rows, coalesce(sum(('x' || left(md5(${row}), 16))::bit(64)::bigint), 0)::text AS sum FROM ${qualifiedTable}`;
}
