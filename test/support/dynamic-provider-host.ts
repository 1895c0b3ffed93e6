/**
 * Runs a dynamic provider the way `pulumi up` does: serialized by @pulumi/pulumi's closure
 * serializer (the same call `pulumi.dynamic.Resource` makes), then loaded from that text in a
 * separate Node process (test/support/dynamic-provider-child.js) with no TypeScript loader, and
 * called with JSON-shaped inputs that carry the serialized `__provider` like the engine's do.
 */
import { ChildProcess, fork } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";

const PROJECT_ROOT = path.resolve(__dirname, "..", "..");

/** The provider's serialized text, as stored in the `__provider` input. */
export async function serializeProvider(
  provider: pulumi.dynamic.ResourceProvider,
): Promise<string> {
  const { serializeFunction } = require("@pulumi/pulumi/runtime/closure/serializeClosure");
  const serialized = await serializeFunction(() => provider, { allowSecrets: true });
  return serialized.text as string;
}

export class LoadedProvider {
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();

  private constructor(
    private readonly child: ChildProcess,
    /** The serialized text, passed as `__provider` in every call's properties. */
    readonly text: string,
  ) {
    child.on(
      "message",
      (message: { id: number; result?: unknown; error?: { message: string } }) => {
        const waiter = this.pending.get(message.id);
        if (!waiter) return;
        this.pending.delete(message.id);
        if (message.error) waiter.reject(new Error(message.error.message));
        else waiter.resolve(message.result);
      },
    );
    child.on("exit", (code) => {
      for (const waiter of this.pending.values()) {
        waiter.reject(new Error(`provider process exited with code ${code}`));
      }
      this.pending.clear();
    });
  }

  /** Serializes `provider` and loads it in a fresh Node process rooted at `cwd`. */
  static async load(
    provider: pulumi.dynamic.ResourceProvider,
    cwd = PROJECT_ROOT,
  ): Promise<LoadedProvider> {
    return LoadedProvider.loadText(await serializeProvider(provider), cwd);
  }

  /**
   * Loads serialized provider text (the `__provider` stored in the state) in a fresh Node process
   * rooted at `cwd`: what the engine does for a refresh or destroy, possibly in another checkout.
   */
  static async loadText(text: string, cwd = PROJECT_ROOT): Promise<LoadedProvider> {
    const file = path.join(
      fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-provider-")),
      "provider.js",
    );
    fs.writeFileSync(file, text);
    const child = fork(path.join(__dirname, "dynamic-provider-child.js"), [file], {
      cwd,
      // The engine's host process has no TypeScript loader: make sure ours has none either.
      execArgv: [],
      env: { ...process.env, NODE_OPTIONS: "", TS_NODE_PROJECT: "" },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    await new Promise<void>((resolve, reject) => {
      child.once("message", () => resolve());
      child.once("exit", (code) =>
        reject(new Error(`provider process failed to load (exit ${code})`)),
      );
    });
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
    return new LoadedProvider(child, text);
  }

  /** Calls a provider method; object arguments get `__provider` added as the engine does. */
  call<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    const withProvider = args.map((arg) =>
      arg && typeof arg === "object" && !Array.isArray(arg)
        ? { ...(arg as object), __provider: this.text }
        : arg,
    );
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, method, args: JSON.parse(JSON.stringify(withProvider)) });
    });
  }

  create<T = Record<string, unknown>>(inputs: object) {
    return this.call<{ id: string; outs: T }>("create", inputs);
  }
  diff(id: string, olds: object, news: object) {
    return this.call<pulumi.dynamic.DiffResult>("diff", id, olds, news);
  }
  update<T = Record<string, unknown>>(id: string, olds: object, news: object) {
    return this.call<{ outs: T }>("update", id, olds, news);
  }
  delete(id: string, props: object) {
    return this.call<void>("delete", id, props);
  }
  read<T = Record<string, unknown>>(id: string, props: object) {
    return this.call<{ id: string; props: T }>("read", id, props);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      this.child.once("exit", () => resolve());
      this.child.kill();
    });
  }
}
