/**
 * When a table is read in parallel (lib/import/copy-table.ts, parallelReaders): only with more
 * than one worker, a non-empty table of at least minRows rows, and rowids dense enough that the
 * interleaved blocks are not mostly empty.
 */
import * as assert from "assert/strict";
import { parallelReaders } from "../../lib/import/copy-table";

const tuning = { blockRowids: 4096, minRows: 50_000 };
const workers = ["a", "b", "c"];

describe("parallel reads of a table", () => {
  it("uses every worker for a large table with dense rowids", () => {
    assert.deepEqual(parallelReaders(workers, 100_000, [1, 100_000], tuning), {
      parallel: true,
      readers: workers,
    });
  });

  it("uses the first worker alone below minRows, for an empty table, or with one worker", () => {
    const alone = { parallel: false, readers: ["a"] };
    assert.deepEqual(parallelReaders(workers, 49_999, [1, 49_999], tuning), alone);
    assert.deepEqual(parallelReaders(workers, 60_000, null, tuning), alone);
    assert.deepEqual(parallelReaders(["a"], 100_000, [1, 100_000], tuning), alone);
  });

  it("uses one worker when the rowids are sparse: span above 4 rows per row plus a block each", () => {
    // 50,000 rows: dense enough up to a span of 200,000 + 3 * 4096 = 212,288.
    assert.equal(parallelReaders(workers, 50_000, [1, 212_288], tuning).parallel, true);
    assert.equal(parallelReaders(workers, 50_000, [1, 212_289], tuning).parallel, false);
  });
});
