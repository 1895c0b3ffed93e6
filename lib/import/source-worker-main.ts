/**
 * The source worker thread (started by source-worker.ts): owns one read-only SQLite connection
 * and answers requests from the import. Reading and encoding rows is the CPU-heavy half of an
 * import; in its own thread it runs in parallel with PostgreSQL ingesting the previous chunks,
 * as `sqlite3 | psql` would, instead of taking turns with it on one thread.
 */
import { parentPort, workerData } from "worker_threads";
import { ImportError, isImportError } from "./errors";
import type { TablePlan } from "./plan";
import { inspectSourceFile, IntegrityMode, SqliteSource, wrapSqliteError } from "./sqlite-source";
import { encodeTable } from "./table-encoder";
import {
  MAX_CHUNKS_IN_FLIGHT,
  FLOW_IN_FLIGHT,
  FLOW_ABORT,
  WorkerRequest,
  WorkerReply,
  SerializedError,
  OpenResult,
} from "./source-worker-protocol";

const flow = new Int32Array((workerData as { flow: SharedArrayBuffer }).flow);
let source: SqliteSource | undefined;
let sourcePath = "";

class Aborted extends Error {}

function serializeError(error: unknown): SerializedError {
  if (error instanceof Aborted) return { aborted: true, message: "aborted" };
  const wrapped = isImportError(error) ? error : wrapSqliteError(sourcePath, error);
  return {
    importError: {
      code: wrapped.code,
      problem: wrapped.problem,
      fix: wrapped.fix,
      details: wrapped.details,
    },
    message: wrapped.message,
  };
}

function opened(): SqliteSource {
  if (!source)
    throw new ImportError(
      "SOURCE_UNREADABLE",
      "The source worker has no open database.",
      "Report this as a bug.",
    );
  return source;
}

/** Blocks until fewer than MAX_CHUNKS_IN_FLIGHT chunks are unwritten, or the import aborts. */
function waitForRoom(): void {
  for (;;) {
    if (Atomics.load(flow, FLOW_ABORT) !== 0) throw new Aborted();
    const inFlight = Atomics.load(flow, FLOW_IN_FLIGHT);
    if (inFlight < MAX_CHUNKS_IN_FLIGHT) return;
    Atomics.wait(flow, FLOW_IN_FLIGHT, inFlight, 1000);
  }
}

function handle(request: WorkerRequest): unknown {
  switch (request.op) {
    case "open": {
      sourcePath = request.path;
      source = SqliteSource.open(inspectSourceFile(request.path), request.cleanup);
      const tables = source.tables();
      const result: OpenResult = {
        tables,
        indexes: source.indexes(),
        sequences: [...source.sequences()].map(([name, seq]) => [name, seq.toString()]),
        storedVersion: source.storedVersion(),
        counts: Object.fromEntries(tables.map((t) => [t.name, source!.count(t.name)])),
      };
      return result;
    }
    case "integrity":
      return opened().integrityCheck(request.mode as IntegrityMode);
    case "countNonNull":
      return request.columns.map((c) => opened().countNonNull(c.table, c.column));
    case "encode": {
      const plan: TablePlan = request.plan;
      return encodeTable(opened().db, plan, (chunk, rows) => {
        waitForRoom();
        Atomics.add(flow, FLOW_IN_FLIGHT, 1);
        const buffer = chunk.buffer as ArrayBuffer;
        parentPort!.postMessage({ id: request.id, chunk: buffer, rows } satisfies WorkerReply, [
          buffer,
        ]);
      });
    }
    case "close":
      source?.close();
      source = undefined;
      return null;
  }
}

parentPort!.on("message", (request: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    reply = { id: request.id, result: handle(request) };
  } catch (error) {
    reply = { id: request.id, error: serializeError(error) };
  }
  parentPort!.postMessage(reply);
});
