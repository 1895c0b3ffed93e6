/**
 * The per-table content checksum, computed independently on both sides: here from the values the
 * import sent (after normalisation), in PostgreSQL from the values it stored (TablePlan.checksumSql).
 *
 * Each row's canonical text (pg-text.ts: length-prefixed values, `~` for NULL) is hashed with MD5;
 * the first 8 bytes, read as a signed 64-bit integer, are summed over the table. The sum does not
 * depend on row order, and PostgreSQL computes the same thing with
 * `sum(('x' || left(md5(row), 16))::bit(64)::bigint)`.
 */
import * as crypto from "crypto";

// crypto.hash (Node >= 20.12) is a one-shot digest without a Hash object per row.
const oneShot = (
  crypto as unknown as { hash?: (algorithm: string, data: string, encoding: "buffer") => Buffer }
).hash;

function md5(text: string): Buffer {
  return oneShot ? oneShot("md5", text, "buffer") : crypto.createHash("md5").update(text).digest();
}

export class ContentChecksum {
  private sum = 0n;
  // Per-row BigInt arithmetic would dominate the cost; the two 32-bit halves are summed as
  // doubles (exact below 2^53) and folded into the BigInt every FOLD_EVERY rows.
  private high = 0;
  private low = 0;
  private pending = 0;
  rows = 0;

  add(canonicalRow: string): void {
    const digest = md5(canonicalRow);
    this.high += digest.readInt32BE(0);
    this.low += digest.readUInt32BE(4);
    this.rows++;
    if (++this.pending === FOLD_EVERY) this.fold();
  }

  private fold(): void {
    this.sum += BigInt(this.high) * 4294967296n + BigInt(this.low);
    this.high = 0;
    this.low = 0;
    this.pending = 0;
  }

  /** The sum in decimal, as PostgreSQL prints the numeric sum. */
  value(): string {
    this.fold();
    return this.sum.toString();
  }
}

/** 1,000,000 * 2^32 < 2^53: the halves stay exact. */
const FOLD_EVERY = 1_000_000;
