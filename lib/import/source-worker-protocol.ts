/** Messages between the import and its source worker thread (see source-worker.ts). */
import type { ImportErrorCode } from "./errors";
import type { TablePlan } from "./plan";
import type { SourceIndex, SourceTable } from "./sqlite-source";

/** Chunks (256 KiB of COPY text each) encoded but not yet handed to the PostgreSQL socket. */
export const MAX_CHUNKS_IN_FLIGHT = 8;
/** Indexes into the shared Int32Array used for flow control. */
export const FLOW_IN_FLIGHT = 0;
export const FLOW_ABORT = 1;

export type WorkerRequest =
  | { id: number; op: "open"; path: string; cleanup: boolean }
  | { id: number; op: "integrity"; mode: string }
  | { id: number; op: "countNonNull"; columns: { table: string; column: string }[] }
  | { id: number; op: "encode"; plan: TablePlan }
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
  | { id: number; chunk: ArrayBuffer; rows: number };

export interface OpenResult {
  tables: SourceTable[];
  indexes: SourceIndex[];
  /** sqlite_sequence: [lower-cased table, seq as decimal text]. */
  sequences: [string, string][];
  storedVersion: string | null;
  /** Rows per source table. */
  counts: Record<string, number>;
}
