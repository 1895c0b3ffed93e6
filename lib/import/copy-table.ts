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

/** Whether a table is read by all workers in interleaved blocks, or by the first alone. */
export function parallelReaders<W>(
  workers: W[],
  totalRows: number,
  rowidRange: [number, number] | null,
  tuning: Required<ParallelReads>,
): { parallel: boolean; readers: W[] } {
  const span = rowidRange ? rowidRange[1] - rowidRange[0] + 1 : 0;
  // Sparse rowids would leave most blocks empty: one reader is faster there.
  const parallel =
    workers.length > 1 &&
    rowidRange !== null &&
    totalRows >= tuning.minRows &&
    span <= 4 * totalRows + tuning.blockRowids * workers.length;
  return { parallel, readers: parallel ? workers : workers.slice(0, 1) };
}

/** The COPY stream; its first failure stops the workers. */
interface CopyStream {
  stream: Writable;
  done: Promise<void>;
  error(): Error | undefined;
}

function startCopy(client: ClientBase, plan: TablePlan, workers: SourceWorker[]): CopyStream {
  const stream = client.query(copyFrom(plan.copySql));
  let copyError: Error | undefined;
  const done = new Promise<void>((resolve, reject) => {
    stream.on("finish", () => resolve());
    stream.on("error", (error) => {
      copyError ??= error;
      for (const worker of workers) worker.abort();
      reject(error);
    });
  });
  done.catch(() => undefined); // observed by the caller; avoid an unhandled rejection meanwhile
  return { stream, done, error: () => copyError };
}

/**
 * Writes the readers' blocks strictly in order: chunks of later blocks wait here (holding their
 * worker's flow-control slots) until the blocks before them are complete.
 */
class OrderedBlocks {
  private current = 0;
  private readonly waiting = new Map<
    number,
    { chunks: { chunk: Buffer; done: () => void }[]; complete: boolean }
  >();
  private readonly socket: Writable;

  constructor(
    client: ClientBase,
    private readonly copy: CopyStream,
  ) {
    this.socket = (client as unknown as { connection: { stream: Writable } }).connection.stream;
  }

  /** One chunk of `block` (null for a block's end without data); `done` frees its slot. */
  add(chunk: Buffer | null, block: number, blockDone: boolean, done: () => void): void {
    if (block === this.current) {
      if (chunk) this.write(chunk, done);
      if (blockDone) this.advance();
      return;
    }
    const entry = this.waiting.get(block) ?? { chunks: [], complete: false };
    if (chunk) entry.chunks.push({ chunk, done });
    entry.complete ||= blockDone;
    this.waiting.set(block, entry);
  }

  /** Blocks that arrived but were never written (a gap before them). */
  get pending(): number {
    return this.waiting.size;
  }

  // A chunk is a view into its worker's ring: its slot may only be reused once the bytes have
  // left this process, not merely once the socket accepted them. An empty write's callback runs
  // after every write queued before it has completed.
  private whenFlushed(done: () => void): void {
    if (this.socket.writableLength === 0) done();
    else this.socket.write(EMPTY, () => done());
  }

  private write(chunk: Buffer, done: () => void): void {
    if (this.copy.error()) done();
    else this.copy.stream.write(chunk, () => this.whenFlushed(done));
  }

  private advance(): void {
    this.current++;
    for (
      let entry = this.waiting.get(this.current);
      entry;
      entry = this.waiting.get(this.current)
    ) {
      this.waiting.delete(this.current);
      for (const { chunk, done } of entry.chunks) this.write(chunk, done);
      if (!entry.complete) return;
      this.current++;
    }
  }
}

/** Waits for the readers; on a failure stops the rest and rejects with the failure's cause. */
async function awaitReaders(
  encodes: Promise<EncodedTable>[],
  readers: SourceWorker[],
  copy: CopyStream,
): Promise<EncodedTable[]> {
  try {
    return await Promise.all(encodes);
  } catch (error) {
    for (const worker of readers) worker.abort();
    await Promise.allSettled(encodes);
    const copyError = copy.error();
    if (copyError || error instanceof WorkerAborted) {
      // PostgreSQL failed first: its error is the cause.
      await copy.done.catch(() => undefined);
      throw copyError ?? error;
    }
    // The source failed: abort the COPY (CopyFail; the transaction is then aborted too) without
    // sending the failure's text, which may quote data, to the server log.
    copy.stream.destroy(new Error("plex-migrate import aborted"));
    await copy.done.catch(() => undefined);
    throw error;
  }
}

export interface CopyTableOptions {
  /** The table's row count in the source (for progress and the parallel decision). */
  totalRows: number;
  /** Its lowest and highest rowid, or null when it is empty. */
  rowidRange: [number, number] | null;
  onProgress?: (progress: CopyProgress) => void;
  tuning?: ParallelReads;
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
  options: CopyTableOptions,
): Promise<TableCopyResult> {
  const { totalRows, rowidRange, onProgress } = options;
  const tuning = {
    blockRowids: options.tuning?.blockRowids ?? 4096,
    minRows: options.tuning?.minRows ?? 50_000,
  };
  const started = process.hrtime.bigint();
  const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
  const copy = startCopy(client, plan, workers);
  const { parallel, readers } = parallelReaders(workers, totalRows, rowidRange, tuning);
  const blocks = new OrderedBlocks(client, copy);
  const rowsByReader = readers.map(() => 0);
  let lastProgress = 0;

  const encodes = readers.map((worker, index) => {
    const partition: Partition | undefined = parallel
      ? {
          worker: index,
          workers: readers.length,
          minRowid: rowidRange![0],
          maxRowid: rowidRange![1],
          blockRowids: tuning.blockRowids,
        }
      : undefined;
    return worker.encode(plan, partition, (chunk, rows, block, blockDone, done) => {
      rowsByReader[index] = rows;
      blocks.add(chunk, block, blockDone, done);
      const now = seconds();
      if (onProgress && now - lastProgress >= 0.5) {
        lastProgress = now;
        const copied = rowsByReader.reduce((a, b) => a + b, 0);
        onProgress({ table: plan.name, rows: copied, totalRows, seconds: now });
      }
    });
  });

  const parts = await awaitReaders(encodes, readers, copy);
  if (blocks.pending > 0)
    throw new Error(`internal: ${blocks.pending} blocks of ${plan.name} were never written`);
  copy.stream.end();
  await copy.done;
  // Every slot is free again before the next table starts with these workers.
  while (readers.some((reader) => reader.slotsInUse() > 0))
    await new Promise((resolve) => setImmediate(resolve));
  const encoded = merge(parts);
  onProgress?.({ table: plan.name, rows: encoded.rows, totalRows, seconds: seconds() });
  return { ...encoded, seconds: seconds(), readers: readers.length };
}
