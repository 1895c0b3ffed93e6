/**
 * Streams one table into PostgreSQL with `COPY ... FROM STDIN` (pg-copy-streams, text format):
 * the source worker encodes rows into chunks, this side writes them to the COPY stream and frees
 * the worker's flow-control slot once the socket has taken each chunk.
 */
import type { ClientBase } from "pg";
import { from as copyFrom } from "pg-copy-streams";
import type { TablePlan } from "./plan";
import { SourceWorker, WorkerAborted } from "./source-worker";
import type { EncodedTable } from "./table-encoder";

export interface CopyProgress {
  table: string;
  rows: number;
  totalRows: number;
  seconds: number;
}

export interface TableCopyResult extends EncodedTable {
  seconds: number;
}

/**
 * Copies `plan`'s table. A source-side failure (an unconvertible value, a damaged page) aborts
 * the COPY and rejects with that failure; a PostgreSQL failure (the connection lost, a constraint)
 * stops the worker and rejects with PostgreSQL's error.
 */
export async function copyTable(
  client: ClientBase,
  worker: SourceWorker,
  plan: TablePlan,
  totalRows: number,
  onProgress?: (progress: CopyProgress) => void,
): Promise<TableCopyResult> {
  const started = process.hrtime.bigint();
  const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
  const stream = client.query(copyFrom(plan.copySql));
  let copyError: Error | undefined;
  const copyDone = new Promise<void>((resolve, reject) => {
    stream.on("finish", () => resolve());
    stream.on("error", (error) => {
      copyError ??= error;
      worker.abort();
      reject(error);
    });
  });
  copyDone.catch(() => undefined); // observed below; avoid an unhandled rejection meanwhile

  let lastProgress = 0;
  let encoded: EncodedTable;
  try {
    encoded = await worker.encode(plan, (chunk, rows, done) => {
      if (copyError) return done();
      stream.write(chunk, () => done());
      if (onProgress) {
        const now = seconds();
        if (now - lastProgress >= 0.5) {
          lastProgress = now;
          onProgress({ table: plan.name, rows, totalRows, seconds: now });
        }
      }
    });
  } catch (error) {
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
  stream.end();
  await copyDone;
  onProgress?.({ table: plan.name, rows: encoded.rows, totalRows, seconds: seconds() });
  return { ...encoded, seconds: seconds() };
}
