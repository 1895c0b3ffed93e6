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
  RULE_COUNT,
  RULES,
  SqliteValue,
  UnconvertibleValue,
} from "./normalize";
import { canonicalEncoderFor, copyEncoderFor } from "./pg-text";
import type { TablePlan } from "./plan";
import { describeValue } from "./redact";
import type { ValueSample } from "./report";
import { quote as quoteSqlite } from "./sqlite-source";

/** Characters of COPY text per chunk. */
const CHUNK_CHARS = 1 << 18;
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
    private readonly plan: TablePlan,
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

const utf8 = new TextEncoder();

/**
 * Encodes every row of `plan`'s table. `emit` receives each chunk (its own ArrayBuffer, ready to
 * transfer) and the rows encoded so far. Throws ImportError UNCONVERTIBLE_VALUE for a value no
 * rule converts.
 */
export function encodeTable(
  db: Database.Database,
  plan: TablePlan,
  emit: (chunk: Uint8Array, rows: number) => void,
): EncodedTable {
  const context = new EncodeContext(db, plan);
  const checksum = new ContentChecksum();
  const columnCount = plan.columns.length;
  const normalizers = plan.columns.map((c) => normalizerFor(c.kind, c.maxLength));
  const encoders = plan.columns.map((c) => copyEncoderFor(c.kind));
  const canonicals = plan.columns.map((c) => canonicalEncoderFor(c.kind));
  // Plain numbers, not BigInt: much cheaper; normalisers ask for the exact value when it matters.
  const statement = db.prepare(plan.selectSql).raw(true).safeIntegers(false);
  const iterator = statement.iterate() as IterableIterator<SqliteValue[]>;
  try {
    let chunk = "";
    for (const row of iterator) {
      context.rowid = row[0] as number;
      let line = "";
      let canonical = "";
      let fields = 0;
      for (let i = 0; i < columnCount; i++) {
        context.column = i;
        const raw = row[i + 1];
        let value: PgValue;
        try {
          value = normalizers[i](raw, context);
        } catch (error) {
          if (error instanceof UnconvertibleValue)
            throw unconvertible(plan, context, raw, error.reason);
          throw error;
        }
        line = i === 0 ? encoders[i](value) : `${line}\t${encoders[i](value)}`;
        const canonicalOf = canonicals[i];
        if (canonicalOf)
          canonical = fields++ === 0 ? canonicalOf(value) : `${canonical},${canonicalOf(value)}`;
      }
      chunk += `${line}\n`;
      checksum.add(`(${canonical})`);
      if (chunk.length >= CHUNK_CHARS) {
        emit(utf8.encode(chunk), checksum.rows);
        chunk = "";
      }
    }
    if (chunk.length > 0) emit(utf8.encode(chunk), checksum.rows);
  } finally {
    iterator.return?.();
  }
  return {
    rows: checksum.rows,
    checksum: checksum.value(),
    conversionsByColumn: context.conversionsByColumn(),
    samples: [...context.samples.values()],
  };
}
