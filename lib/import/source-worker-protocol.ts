/** Messages between the import and its source worker thread (see source-worker.ts). */
import type { DroppedRows } from "./dbcheck";
import type { ImportErrorCode } from "./errors";
import type { TablePlan } from "./plan";
import type { SourceIndex, SourceTable } from "./sqlite-source";
import type { Partition } from "./table-encoder";

/**
 * Each worker encodes COPY text into its own ring of shared-memory slots, which the import writes
 * to the PostgreSQL socket straight from shared memory and frees once the bytes have left the
 * process. Memory is fixed: RING_SLOTS * SLOT_BYTES per worker, no garbage buffers.
 */
export const RING_SLOTS = 16;
export const SLOT_BYTES = 256 * 1024;
/** Indexes into the shared Int32Array used for flow control: slots in use, abort flag. */
export const FLOW_IN_FLIGHT = 0;
export const FLOW_ABORT = 1;

export type WorkerRequest =
  | { id: number; op: "open"; path: string; cleanup: boolean }
  | { id: number; op: "integrity"; mode: string }
  | { id: number; op: "countNonNull"; columns: { table: string; column: string }[] }
  | { id: number; op: "encode"; plan: TablePlan; partition?: Partition }
  | { id: number; op: "rowidRanges"; tables: string[] }
  | { id: number; op: "close" };

export interface SerializedError {
  message: string;
  aborted?: boolean;
  importError?: {
    code: ImportErrorCode;
    problem: string;
    fix: string;
    details: Record<string, unknown>;
  };
}

export type WorkerReply =
  | { id: number; result: unknown }
  | { id: number; error: SerializedError }
  | { id: number; slot: number; length: number; rows: number; block: number; blockDone: boolean };

export interface OpenResult {
  tables: SourceTable[];
  indexes: SourceIndex[];
  /** sqlite_sequence: [lower-cased table, seq as decimal text]. */
  sequences: [string, string][];
  storedVersion: string | null;
  /** Rows per source table. */
  counts: Record<string, number>;
  /** Rows Tautulli's own upgrade would delete (dbcheck.ts), by rule. */
  dropped: DroppedRows[];
}
