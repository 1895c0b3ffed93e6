/**
 * Streams one table into PostgreSQL with `COPY ... FROM STDIN` (pg-copy-streams, text format).
 * Source workers encode the rows into shared-memory rings; for a large table several of them read
 * interleaved blocks of rowids in parallel and this side writes the blocks back in rowid order,
 * straight from the rings, freeing each slot once its bytes have left the process (so memory is
 * fixed: a worker that is ahead waits for a free slot).
 */
import type { Writable } from "stream";
import type { ClientBase } from "pg";
import { from as copyFrom } from "pg-copy-streams";
import type { TablePlan } from "./plan";
import { SourceWorker, WorkerAborted } from "./source-worker";
import type { EncodedTable, Partition } from "./table-encoder";

export interface ParallelReads {
  /** Rowids per block of a parallel read. @default 4096 (a few MiB of COPY text for the widest tables) */
  blockRowids?: number;
  /** Tables with fewer rows are read by one reader. @default 50000 */
  minRows?: number;
}

const EMPTY = Buffer.alloc(0);

export interface CopyProgress {
  table: string;
  rows: number;
  totalRows: number;
  seconds: number;
}

export interface TableCopyResult extends EncodedTable {
  seconds: number;
  /** Readers that shared the table. */
  readers: number;
}

/** Several readers' results as one: rows and checksums add up, conversions and samples merge. */
function merge(parts: EncodedTable[]): EncodedTable {
  if (parts.length === 1) return parts[0];
  const conversionsByColumn: Record<string, Record<string, number>> = {};
  for (const part of parts) {
    for (const [column, rules] of Object.entries(part.conversionsByColumn)) {
      const merged = (conversionsByColumn[column] ??= {});
      for (const [rule, n] of Object.entries(rules)) merged[rule] = (merged[rule] ?? 0) + n;
    }
  }
  const samples = new Map<string, EncodedTable["samples"][number]>();
  for (const part of parts) {
    for (const [column, rule, values] of part.samples) {
      const key = `${column}\u0000${rule}`;
      const entry = samples.get(key) ?? [column, rule, []];
      entry[2].push(...values);
      samples.set(key, entry);
    }
  }
  for (const entry of samples.values()) {
    entry[2].sort((a, b) => Number(a.rowid) - Number(b.rowid));
    entry[2].splice(3);
  }
  return {
    rows: parts.reduce((n, p) => n + p.rows, 0),
    checksum: parts.reduce((sum, p) => sum + BigInt(p.checksum), 0n).toString(),
    conversionsByColumn,
    samples: [...samples.values()],
  };
}

/**
 * Copies `plan`'s table with `workers` (in parallel when the table is large and its rowids dense).
 * A source-side failure (an unconvertible value, a damaged page) aborts the COPY and rejects with
 * that failure; a PostgreSQL failure (the connection lost, a constraint) stops the workers and
 * rejects with PostgreSQL's error.
 */
export async function copyTable(
  client: ClientBase,
  workers: SourceWorker[],
  plan: TablePlan,
  totalRows: number,
  rowidRange: [number, number] | null,
  onProgress?: (progress: CopyProgress) => void,
  tuning: ParallelReads = {},
): Promise<TableCopyResult> {
  const blockRowids = tuning.blockRowids ?? 4096;
  const minRows = tuning.minRows ?? 50_000;
  const started = process.hrtime.bigint();
  const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
  const stream = client.query(copyFrom(plan.copySql));
  let copyError: Error | undefined;
  const copyDone = new Promise<void>((resolve, reject) => {
    stream.on("finish", () => resolve());
    stream.on("error", (error) => {
      copyError ??= error;
      for (const worker of workers) worker.abort();
      reject(error);
    });
  });
  copyDone.catch(() => undefined); // observed below; avoid an unhandled rejection meanwhile

  const span = rowidRange ? rowidRange[1] - rowidRange[0] + 1 : 0;
  const parallel =
    workers.length > 1 &&
    rowidRange !== null &&
    totalRows >= minRows &&
    span <= 4 * totalRows + blockRowids * workers.length;
  const readers = parallel ? workers : workers.slice(0, 1);

  // Blocks are written strictly in order; chunks of later blocks wait here (holding their
  // worker's flow-control slots) until the blocks before them are complete.
  let current = 0;
  const waiting = new Map<
    number,
    { chunks: { chunk: Buffer; done: () => void }[]; complete: boolean }
  >();
  // A chunk is a view into its worker's ring: its slot may only be reused once the bytes have
  // left this process, not merely once the socket accepted them. An empty write's callback runs
  // after every write queued before it has completed.
  const socket = (client as unknown as { connection: { stream: Writable } }).connection.stream;
  const whenFlushed = (done: () => void) => {
    if (socket.writableLength === 0) done();
    else socket.write(EMPTY, () => done());
  };
  const write = (chunk: Buffer, done: () => void) => {
    if (copyError) done();
    else stream.write(chunk, () => whenFlushed(done));
  };
  const advance = () => {
    current++;
    for (let entry = waiting.get(current); entry; entry = waiting.get(current)) {
      waiting.delete(current);
      for (const { chunk, done } of entry.chunks) write(chunk, done);
      if (!entry.complete) return;
      current++;
    }
  };
  const rowsByReader = readers.map(() => 0);
  let lastProgress = 0;

  const encodes = readers.map((worker, index) => {
    const partition: Partition | undefined = parallel
      ? {
          worker: index,
          workers: readers.length,
          minRowid: rowidRange![0],
          maxRowid: rowidRange![1],
          blockRowids,
        }
      : undefined;
    return worker.encode(plan, partition, (chunk, rows, block, blockDone, done) => {
      rowsByReader[index] = rows;
      if (block === current) {
        if (chunk) write(chunk, done);
        if (blockDone) advance();
      } else {
        const entry = waiting.get(block) ?? { chunks: [], complete: false };
        if (chunk) entry.chunks.push({ chunk, done });
        entry.complete ||= blockDone;
        waiting.set(block, entry);
      }
      if (onProgress) {
        const now = seconds();
        if (now - lastProgress >= 0.5) {
          lastProgress = now;
          onProgress({
            table: plan.name,
            rows: rowsByReader.reduce((a, b) => a + b, 0),
            totalRows,
            seconds: now,
          });
        }
      }
    });
  });

  let parts: EncodedTable[];
  try {
    parts = await Promise.all(encodes);
  } catch (error) {
    for (const worker of readers) worker.abort();
    await Promise.allSettled(encodes);
    if (copyError || error instanceof WorkerAborted) {
      // PostgreSQL failed first: its error is the cause.
      await copyDone.catch(() => undefined);
      throw copyError ?? error;
    }
    // The source failed: abort the COPY (CopyFail; the transaction is then aborted too) without
    // sending the failure's text, which may quote data, to the server log.
    stream.destroy(new Error("plex-migrate import aborted"));
    await copyDone.catch(() => undefined);
    throw error;
  }
  if (waiting.size > 0)
    throw new Error(`internal: ${waiting.size} blocks of ${plan.name} were never written`);
  stream.end();
  await copyDone;
  // Every slot is free again before the next table starts with these workers.
  while (readers.some((reader) => reader.slotsInUse() > 0))
    await new Promise((resolve) => setImmediate(resolve));
  const encoded = merge(parts);
  onProgress?.({ table: plan.name, rows: encoded.rows, totalRows, seconds: seconds() });
  return { ...encoded, seconds: seconds(), readers: readers.length };
}
