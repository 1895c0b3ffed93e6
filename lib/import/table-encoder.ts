/**
 * Turns one SQLite table into COPY text, in the source worker thread: better-sqlite3's row
 * iterator, each value normalised by its target column's rule, encoded for COPY, and fed to the
 * content checksum, all in one pass. Chunks are handed to `emit` as UTF-8 bytes; the caller's
 * flow control (not this loop) bounds how many are in flight, so memory stays flat.
 */
import type Database from "better-sqlite3";
import { ContentChecksum } from "./checksum";
import { ImportError } from "./errors";
import {
  LOSSY_RULES,
  NormalizeContext,
  normalizerFor,
  PgValue,
  R,
  RULE_COUNT,
  RULES,
  SqliteValue,
  TargetKind,
  UnconvertibleValue,
} from "./normalize";
import { canonicalEncoderFor, copyEncoderFor, copyEscape, recordField } from "./pg-text";
import type { TablePlan } from "./plan";
import { describeValue } from "../redact";
import type { ValueSample } from "./report";
import { quote as quoteSqlite } from "./sqlite-source";

/** Characters of COPY text per chunk (about one ring slot of UTF-8, see source-worker-protocol). */
const CHUNK_CHARS = 1 << 17;
/** Samples kept per column and lossy rule. */
const SAMPLES_PER_RULE = 3;

export interface EncodedTable {
  rows: number;
  /** The content checksum of what was sent (sum of the rows' 64-bit MD5 prefixes, decimal). */
  checksum: string;
  /** Conversions by column name, then rule id (non-zero counts only). */
  conversionsByColumn: Record<string, Record<string, number>>;
  /** Samples of lossy conversions: [column, rule id, samples]. */
  samples: [string, string, ValueSample[]][];
}

class EncodeContext implements NormalizeContext {
  rowid = 0;
  column = 0;
  /** Conversions: counts[column * RULE_COUNT + rule]. */
  readonly counts: Float64Array;
  readonly samples = new Map<string, [string, string, ValueSample[]]>();
  private readonly rawStatements: (Database.Statement | undefined)[];
  private readonly exactStatements: (Database.Statement | undefined)[];

  constructor(
    private readonly db: Database.Database,
    readonly plan: TablePlan,
  ) {
    this.counts = new Float64Array(plan.columns.length * RULE_COUNT);
    this.rawStatements = plan.columns.map(() => undefined);
    this.exactStatements = plan.columns.map(() => undefined);
  }

  note(rule: number, original: SqliteValue): void {
    this.counts[this.column * RULE_COUNT + rule]++;
    if (!LOSSY_RULES[rule]) return;
    const column = this.plan.columns[this.column];
    const key = `${column.name}\u0000${rule}`;
    let entry = this.samples.get(key);
    if (!entry) this.samples.set(key, (entry = [column.name, RULES[rule].id, []]));
    if (entry[2].length < SAMPLES_PER_RULE) {
      entry[2].push({ rowid: String(this.rowid), value: describeValue(original, column.secret) });
    }
  }

  /** One cell read again by rowid: `CAST(expr AS BLOB)` for raw bytes, or with exact integers. */
  private cell(statements: (Database.Statement | undefined)[], asBlob: boolean): SqliteValue {
    let statement = statements[this.column];
    if (!statement) {
      const column = this.plan.columns[this.column];
      const expr = asBlob ? `CAST(${column.selectExpr} AS BLOB)` : column.selectExpr;
      statement = this.db
        .prepare(`SELECT ${expr} FROM ${quoteSqlite(this.plan.sourceName)} AS t WHERE t.rowid = ?`)
        .pluck()
        .safeIntegers(true);
      statements[this.column] = statement;
    }
    return (statement.get(this.rowid) as SqliteValue | undefined) ?? null;
  }

  rawBytes(): Buffer | null {
    return this.cell(this.rawStatements, true) as Buffer | null;
  }

  exactValue(): SqliteValue {
    return this.cell(this.exactStatements, false);
  }

  conversionsByColumn(): Record<string, Record<string, number>> {
    const result: Record<string, Record<string, number>> = {};
    this.plan.columns.forEach((column, c) => {
      for (let r = 0; r < RULE_COUNT; r++) {
        const n = this.counts[c * RULE_COUNT + r];
        if (n > 0) (result[column.name] ??= {})[RULES[r].id] = n;
      }
    });
    return result;
  }
}

function unconvertible(
  plan: TablePlan,
  context: EncodeContext,
  value: SqliteValue,
  reason: string,
): ImportError {
  const column = plan.columns[context.column];
  const where = column.relocated ? ` (moved to ${plan.name}.${column.name})` : "";
  const shown = describeValue(value, column.secret);
  const table = column.relocated ? column.source.table : plan.sourceName;
  return new ImportError(
    "UNCONVERTIBLE_VALUE",
    `Cannot import table ${table}, rowid ${context.rowid}, column ${column.source.column}${where}: value ${shown} is ${reason} (target type ${column.type}); no rule of docs/import.md converts it. Nothing was written.`,
    `Correct the value in a copy of tautulli.db, e.g. \`UPDATE ${quoteSqlite(plan.sourceName)} SET ${quoteSqlite(column.source.column)} = NULL WHERE rowid = ${context.rowid}\`${column.relocated ? " (in the table it comes from)" : ""}, and import that copy.`,
    {
      table,
      rowid: String(context.rowid),
      column: column.source.column,
      value: shown,
      targetType: column.type,
    },
  );
}

/** One value's two text forms: COPY text and the checksum's record field. */
interface FieldText {
  copy: string;
  record: string;
}

/** Normalises one value and renders both text forms into `out`. */
type FieldEncoder = (raw: SqliteValue, ctx: EncodeContext, out: FieldText) => void;

const RANGES = {
  smallint: [-32768, 32767],
  integer: [-2147483648, 2147483647],
  bigint: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
} as const;

// Finding NUL characters is the point of these two (text.nul-removed).
/** Anything that may need more than the plainest handling in a text value. */
// eslint-disable-next-line no-control-regex
const TEXT_NOT_PLAIN = /[\u0000\uFFFD\\\t\n\r",() \v\f]/;
// eslint-disable-next-line no-control-regex
const TEXT_NEEDS_RULE = /[\u0000\uFFFD]/;

/**
 * The per-column encoder: fast paths for the values that fill real databases (safe integers,
 * 0/1 flags, plain text), the general normaliser (normalize.ts) for everything else. Both paths
 * give the same results; the fast ones only skip work.
 */
function fieldEncoderFor(
  kind: TargetKind,
  maxLength: number | null,
  checksummed: boolean,
): FieldEncoder {
  const normalize = normalizerFor(kind, maxLength);
  const encode = copyEncoderFor(kind);
  const canonical = canonicalEncoderFor(kind);
  const general: FieldEncoder = (raw, ctx, out) => {
    let value: PgValue;
    try {
      value = normalize(raw, ctx);
    } catch (error) {
      if (error instanceof UnconvertibleValue)
        throw unconvertible(ctx.plan, ctx, raw, error.reason);
      throw error;
    }
    out.copy = encode(value);
    out.record = checksummed && canonical ? canonical(value) : "";
  };
  switch (kind) {
    case "smallint":
    case "integer":
    case "bigint": {
      const [min, max] = RANGES[kind];
      return (raw, ctx, out) => {
        if (typeof raw === "number" && Number.isInteger(raw) && raw >= min && raw <= max) {
          out.copy = out.record = `${raw}`;
        } else if (raw === null) {
          out.copy = "\\N";
          out.record = "";
        } else {
          general(raw, ctx, out);
        }
      };
    }
    case "boolean": {
      const fromInteger = R.booleanFromInteger;
      return (raw, ctx, out) => {
        if (raw === 0 || raw === 1) {
          ctx.counts[ctx.column * RULE_COUNT + fromInteger]++;
          out.copy = out.record = raw === 1 ? "t" : "f";
        } else if (raw === null) {
          out.copy = "\\N";
          out.record = "";
        } else {
          general(raw, ctx, out);
        }
      };
    }
    case "text":
      return (raw, ctx, out) => {
        if (typeof raw === "string") {
          if (!TEXT_NOT_PLAIN.test(raw)) {
            out.copy = raw;
            out.record = raw === "" ? '""' : raw;
            return;
          }
          if (!TEXT_NEEDS_RULE.test(raw)) {
            out.copy = copyEscape(raw);
            out.record = recordField(raw);
            return;
          }
        } else if (raw === null) {
          out.copy = "\\N";
          out.record = "";
          return;
        }
        general(raw, ctx, out);
      };
    default:
      return general;
  }
}

/**
 * How the rows of one table are shared between parallel readers: rowids [minRowid, maxRowid] cut
 * into blocks of `blockRowids`; reader `worker` of `workers` encodes blocks worker, worker +
 * workers, ... (the writer puts the blocks back in order).
 */
export interface Partition {
  worker: number;
  workers: number;
  minRowid: number;
  maxRowid: number;
  blockRowids: number;
}

/** Receives each chunk of COPY text (null: nothing more) and whether it ends a block. */
export type ChunkSink = (
  chunk: string | null,
  rows: number,
  block: number,
  blockDone: boolean,
) => void;

/**
 * Encodes `plan`'s table (or this reader's blocks of it). Chunks go to `emit` in order; each block
 * ends with a call whose `blockDone` is true. Throws ImportError UNCONVERTIBLE_VALUE for a value
 * no rule converts.
 */
export function encodeTable(
  db: Database.Database,
  plan: TablePlan,
  emit: ChunkSink,
  partition?: Partition,
): EncodedTable {
  const context = new EncodeContext(db, plan);
  const checksum = new ContentChecksum();
  const columnCount = plan.columns.length;
  const fields = plan.columns.map((c) => fieldEncoderFor(c.kind, c.maxLength, c.checksummed));
  const inRecord = plan.columns.map((c) => c.checksummed);
  const out: FieldText = { copy: "", record: "" };

  // Rows are assembled with join() from reused arrays: flat strings in one allocation each,
  // instead of chains of concatenations the GC, the hash and the UTF-8 encoder would each walk.
  const recordCount = inRecord.filter(Boolean).length;
  const copyParts = new Array<string>(columnCount);
  const recordParts = new Array<string>(recordCount);
  const lines: string[] = [];
  let chunkChars = 0;
  const flush = (block: number, blockDone: boolean) => {
    lines.push(""); // the final newline
    emit(lines.length > 1 ? lines.join("\n") : null, checksum.rows, block, blockDone);
    lines.length = 0;
    chunkChars = 0;
  };

  const encodeRows = (rows: Iterable<SqliteValue[]>, block: number) => {
    try {
      for (const row of rows) {
        context.rowid = row[0] as number;
        for (let i = 0, r = 0; i < columnCount; i++) {
          context.column = i;
          fields[i](row[i + 1], context, out);
          copyParts[i] = out.copy;
          if (inRecord[i]) recordParts[r++] = out.record;
        }
        const line = copyParts.join("\t");
        lines.push(line);
        chunkChars += line.length + 1;
        if (recordCount > 0) {
          recordParts[0] = `(${recordParts[0]}`;
          recordParts[recordCount - 1] += ")";
          checksum.add(recordParts.join(","));
        } else {
          checksum.add("()");
        }
        if (chunkChars >= CHUNK_CHARS) flush(block, false);
      }
    } finally {
      (rows as IterableIterator<SqliteValue[]>).return?.();
    }
    flush(block, true);
  };

  // Plain numbers, not BigInt: much cheaper; normalisers ask for the exact value when it matters.
  if (!partition) {
    encodeRows(
      db.prepare(plan.selectSql).raw(true).safeIntegers(false).iterate() as IterableIterator<
        SqliteValue[]
      >,
      0,
    );
  } else {
    const statement = db.prepare(plan.blockSql).raw(true).safeIntegers(false);
    const { worker, workers, minRowid, maxRowid, blockRowids } = partition;
    for (let block = worker; minRowid + block * blockRowids <= maxRowid; block += workers) {
      const from = minRowid + block * blockRowids;
      encodeRows(
        statement.iterate(from, from + blockRowids - 1) as IterableIterator<SqliteValue[]>,
        block,
      );
    }
  }
  return {
    rows: checksum.rows,
    checksum: checksum.value(),
    conversionsByColumn: context.conversionsByColumn(),
    samples: [...context.samples.values()],
  };
}
