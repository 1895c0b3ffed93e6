/**
 * The import's handle on a source worker thread (source-worker-main.ts): requests answered by
 * promises, and table encoding streamed back as chunks under shared-memory flow control (the
 * worker blocks once MAX_CHUNKS_IN_FLIGHT chunks wait to be written, so memory stays bounded
 * whatever the table size).
 */
import * as fs from "fs";
import * as path from "path";
import { Worker } from "worker_threads";
import { ImportError } from "./errors";
import type { EncodedTable, Partition } from "./table-encoder";
import type { TablePlan } from "./plan";
import {
  FLOW_ABORT,
  FLOW_IN_FLIGHT,
  RING_SLOTS,
  SLOT_BYTES,
  OpenResult,
  SerializedError,
  WorkerReply,
  WorkerRequest,
} from "./source-worker-protocol";

type Pending = {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  onChunk?: (chunk: Buffer | null, rows: number, block: number, blockDone: boolean) => void;
};

type RequestBody = WorkerRequest extends infer R
  ? R extends { id: number }
    ? Omit<R, "id">
    : never
  : never;

/** Raised in the import when the worker stopped encoding because the import aborted it. */
export class WorkerAborted extends Error {}

function revive(error: SerializedError): Error {
  if (error.aborted) return new WorkerAborted(error.message);
  if (error.importError) {
    const e = error.importError;
    return new ImportError(e.code, e.problem, e.fix, e.details);
  }
  return new Error(error.message);
}

/** Transpiled worker modules by absolute .ts path (built once per process, under ts-node only). */
let transpiledSources: Record<string, string> | undefined;

/**
 * The worker's own modules as JavaScript. Under ts-node (tests, `npm run import`, a provider
 * loaded by loadProjectModule) the worker thread has no TypeScript loader, and registering ts-node
 * there would load the whole compiler again (~80 MB per thread). Instead this thread, whose ts-node
 * already holds the compiler, transpiles the worker's import closure once and hands it over.
 */
function workerSources(entry: string): Record<string, string> {
  if (transpiledSources) return transpiledSources;
  const ts = require("typescript") as typeof import("typescript");
  const sources: Record<string, string> = {};
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (sources[file] !== undefined) continue;
    const text = fs.readFileSync(file, "utf8");
    sources[file] = ts.transpileModule(text, {
      fileName: file,
      compilerOptions: {
        module: ts.ModuleKind.CommonJS,
        target: ts.ScriptTarget.ES2022,
        esModuleInterop: true,
        isolatedModules: true,
        noLib: true,
        noResolve: true,
      },
    }).outputText;
    // Type-only imports vanish from the JavaScript: only real ones are needed in the worker.
    for (const match of text.matchAll(/^import (?!type )[^;]*? from "(\.{1,2}\/[^"]+)";/gms)) {
      queue.push(path.resolve(path.dirname(file), `${match[1]}.ts`));
    }
  }
  transpiledSources = sources;
  return sources;
}

/** What the worker thread runs first: its entry module, given as JavaScript when under ts-node. */
function bootstrap(): { code: string; sources?: Record<string, string> } {
  const entry = path.join(__dirname, `source-worker-main${path.extname(__filename)}`);
  if (!entry.endsWith(".ts")) return { code: `require(${JSON.stringify(entry)});` };
  const code = [
    'const { workerData } = require("worker_threads");',
    'require.extensions[".ts"] = (module, filename) => {',
    "  const source = workerData.sources[filename];",
    '  if (source === undefined) throw new Error("source worker: no transpiled module " + filename);',
    "  module._compile(source, filename);",
    "};",
    `require(${JSON.stringify(entry)});`,
  ].join("\n");
  return { code, sources: workerSources(entry) };
}

export class SourceWorker {
  private readonly worker: Worker;
  private readonly flow = new Int32Array(new SharedArrayBuffer(8));
  /** The worker's ring of encoded COPY text (source-worker-protocol.ts). */
  private readonly ring = new SharedArrayBuffer(RING_SLOTS * SLOT_BYTES);
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private exited: Error | undefined;

  constructor() {
    const { code, sources } = bootstrap();
    this.worker = new Worker(code, {
      eval: true,
      workerData: { flow: this.flow.buffer, ring: this.ring, sources },
      stdout: false,
      stderr: false,
      // Not the parent's flags: a `-r ts-node/register` there would load the compiler in here.
      execArgv: [],
      // The encoder's garbage is short-lived: a small young generation keeps the heap compact.
      resourceLimits: { maxYoungGenerationSizeMb: 8 },
    });
    this.worker.on("message", (reply: WorkerReply) => this.receive(reply));
    this.worker.on("error", (error) => this.fail(error));
    this.worker.on("exit", (code) =>
      this.fail(new Error(`the source worker thread exited (code ${code})`)),
    );
  }

  private fail(error: Error): void {
    this.exited ??= error;
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
  }

  private receive(reply: WorkerReply): void {
    const waiter = this.pending.get(reply.id);
    if (!waiter) return;
    if ("slot" in reply) {
      const chunk =
        reply.slot < 0 ? null : Buffer.from(this.ring, reply.slot * SLOT_BYTES, reply.length);
      waiter.onChunk?.(chunk, reply.rows, reply.block, reply.blockDone);
      return;
    }
    this.pending.delete(reply.id);
    if ("error" in reply) waiter.reject(revive(reply.error));
    else waiter.resolve(reply.result);
  }

  private request<T>(body: RequestBody, onChunk?: Pending["onChunk"]): Promise<T> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onChunk });
      this.worker.postMessage({ ...body, id });
    });
  }

  open(filePath: string, cleanup: boolean): Promise<OpenResult> {
    return this.request({ op: "open", path: filePath, cleanup });
  }

  integrityCheck(mode: "full" | "quick" | "off"): Promise<"ok" | "skipped"> {
    return this.request({ op: "integrity", mode });
  }

  countNonNull(columns: { table: string; column: string }[]): Promise<number[]> {
    return this.request({ op: "countNonNull", columns });
  }

  /**
   * Encodes `plan`'s table, or this worker's blocks of it. `onChunk` receives each chunk (a view
   * into the worker's ring; null when a block ends without more text) and must call `done` once
   * the chunk's bytes have left this process: that frees its ring slot for the worker.
   */
  encode(
    plan: TablePlan,
    partition: Partition | undefined,
    onChunk: (
      chunk: Buffer | null,
      rows: number,
      block: number,
      blockDone: boolean,
      done: () => void,
    ) => void,
  ): Promise<EncodedTable> {
    Atomics.store(this.flow, FLOW_ABORT, 0);
    const done = () => {
      Atomics.sub(this.flow, FLOW_IN_FLIGHT, 1);
      Atomics.notify(this.flow, FLOW_IN_FLIGHT);
    };
    return this.request({ op: "encode", plan, partition }, (chunk, rows, block, blockDone) =>
      onChunk(chunk, rows, block, blockDone, chunk ? done : () => undefined),
    );
  }

  /** Ring slots not yet freed (0 once every chunk of an encode has been written and flushed). */
  slotsInUse(): number {
    return Atomics.load(this.flow, FLOW_IN_FLIGHT);
  }

  rowidRanges(tables: string[]): Promise<([number, number] | null)[]> {
    return this.request({ op: "rowidRanges", tables });
  }

  /** Makes a running encode stop at its next chunk (it then rejects with WorkerAborted). */
  abort(): void {
    Atomics.store(this.flow, FLOW_ABORT, 1);
    Atomics.notify(this.flow, FLOW_IN_FLIGHT);
  }

  /** Closes the database (removing companion files it created) and ends the thread. */
  async close(): Promise<void> {
    if (!this.exited) {
      this.abort();
      await this.request({ op: "close" }).catch(() => undefined);
    }
    await this.worker.terminate();
  }
}
