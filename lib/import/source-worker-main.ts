/**
 * The source worker thread (started by source-worker.ts): owns one read-only SQLite connection
 * and answers requests from the import. Reading and encoding rows is the CPU-heavy half of an
 * import; in its own thread it runs in parallel with PostgreSQL ingesting the previous chunks,
 * as `sqlite3 | psql` would, instead of taking turns with it on one thread.
 */
import { parentPort, workerData } from "worker_threads";
import { ImportError, isImportError } from "./errors";
import { inspectSourceFile, IntegrityMode, SqliteSource, wrapSqliteError } from "./sqlite-source";
import { encodeTable } from "./table-encoder";
import {
  RING_SLOTS,
  SLOT_BYTES,
  FLOW_IN_FLIGHT,
  FLOW_ABORT,
  WorkerRequest,
  WorkerReply,
  SerializedError,
  OpenResult,
} from "./source-worker-protocol";

const flow = new Int32Array((workerData as { flow: SharedArrayBuffer }).flow);
const ring = (workerData as { ring: SharedArrayBuffer }).ring;
const utf8 = new TextEncoder();
/** The next ring slot to fill; the import frees slots in the order they were filled. */
let nextSlot = 0;
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

/** Blocks until a ring slot is free, or the import aborts. */
function waitForSlot(): void {
  for (;;) {
    if (Atomics.load(flow, FLOW_ABORT) !== 0) throw new Aborted();
    const inFlight = Atomics.load(flow, FLOW_IN_FLIGHT);
    if (inFlight < RING_SLOTS) return;
    Atomics.wait(flow, FLOW_IN_FLIGHT, inFlight, 1000);
  }
}

/** UTF-8-encodes `text` into ring slots (as many as it needs) and announces each. */
function send(
  id: number,
  text: string | null,
  rows: number,
  block: number,
  blockDone: boolean,
): void {
  if (text === null) {
    if (Atomics.load(flow, FLOW_ABORT) !== 0) throw new Aborted();
    parentPort!.postMessage({
      id,
      slot: -1,
      length: 0,
      rows,
      block,
      blockDone,
    } satisfies WorkerReply);
    return;
  }
  let rest = text;
  while (rest.length > 0) {
    waitForSlot();
    const slot = nextSlot;
    nextSlot = (nextSlot + 1) % RING_SLOTS;
    const { read, written } = utf8.encodeInto(
      rest,
      new Uint8Array(ring, slot * SLOT_BYTES, SLOT_BYTES),
    );
    rest = rest.slice(read);
    Atomics.add(flow, FLOW_IN_FLIGHT, 1);
    parentPort!.postMessage({
      id,
      slot,
      length: written,
      rows,
      block,
      blockDone: blockDone && rest.length === 0,
    } satisfies WorkerReply);
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
        dropped: source.droppedRows(tables),
      };
      return result;
    }
    case "integrity":
      return opened().integrityCheck(request.mode as IntegrityMode);
    case "countNonNull":
      return request.columns.map((c) => opened().countNonNull(c.table, c.column));
    case "encode":
      return encodeTable(
        opened().db,
        request.plan,
        (chunk, rows, block, blockDone) => send(request.id, chunk, rows, block, blockDone),
        request.partition,
      );
    case "rowidRanges":
      return request.tables.map((table) => opened().rowidRange(table));
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
