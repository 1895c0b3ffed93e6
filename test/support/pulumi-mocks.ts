/**
 * Pulumi mocks that behave like the engine where the tests depend on it, and record everything a
 * real `pulumi up` would be asked to do: every registration's type, name, parent, custom flag,
 * inputs (with secret markers intact), dependencies, protect/retainOnDelete, provider and
 * additionalSecretOutputs.
 *
 * Like the engine, a resource's outputs are its inputs (secrets stay secret) plus the outputs its
 * type adds; fields in `additionalSecretOutputs` come back secret. A type the mocks do not know
 * fails the registration, and so the test.
 */
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { PodTunnel, PodTunnelOptions, programTunnels } from "../../lib/kube/tunnel";

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270";

export interface Registration {
  type: string;
  name: string;
  urn: string;
  parentUrn: string;
  custom: boolean;
  /** Inputs as plain values (secrets unwrapped). */
  inputs: Record<string, unknown>;
  /** Inputs as sent to the engine: secrets are `{ [SECRET_SIG]: ..., value }` objects. */
  rawInputs: Record<string, unknown>;
  dependencies: string[];
  propertyDependencies: Record<string, string[]>;
  protect: boolean;
  retainOnDelete: boolean;
  provider: string;
  additionalSecretOutputs: string[];
  ignoreChanges: string[];
  deleteBeforeReplace: boolean;
  /** customTimeouts as registered ("" where unset). */
  customTimeouts: { create: string; update: string; delete: string };
}

/** The public half of every mocked tls.PrivateKey. */
export const MOCK_SYNC_PUBLIC_KEY =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5nT8c0bqzP2mZq3U4nX1m7WJcQ9kYJbYt7f3sLQ1ab";

export type OutputsFor = (registration: Registration) => Record<string, unknown>;

/** Types the program may create, with the outputs each adds to its inputs. */
export const KNOWN_TYPES: Record<string, OutputsFor> = {
  "pulumi:pulumi:Stack": () => ({}),
  "pulumi:providers:kubernetes": () => ({}),
  "pulumi:providers:postgresql": () => ({}),
  "pulumi:providers:command": () => ({}),
  "pulumi:providers:random": () => ({}),
  "pulumi:providers:tls": () => ({}),
  "kubernetes:core/v1:Namespace": () => ({}),
  "kubernetes:core/v1:PersistentVolumeClaim": () => ({}),
  "kubernetes:core/v1:Secret": () => ({}),
  "kubernetes:core/v1:ConfigMap": () => ({}),
  "kubernetes:batch/v1:Job": () => ({}),
  "kubernetes:core/v1:Service": (r) => ({
    status:
      (r.inputs.spec as { type?: string } | undefined)?.type === "LoadBalancer"
        ? { loadBalancer: { ingress: [{ ip: "192.0.2.10" }] } }
        : { loadBalancer: {} },
  }),
  "kubernetes:apps/v1:StatefulSet": () => ({}),
  "kubernetes:networking.k8s.io/v1:Ingress": () => ({}),
  "kubernetes:helm.sh/v3:Release": (r) => ({
    status: { name: r.inputs.name, namespace: r.inputs.namespace, status: "deployed", revision: 1 },
  }),
  "random:index/randomPassword:RandomPassword": (r) => ({
    result: secretValue(`mock-password-${r.name}-0123456789`),
  }),
  // Like the provider: an OpenSSH public key line with its newline, the private key secret.
  "tls:index/privateKey:PrivateKey": (r) => ({
    publicKeyOpenssh: `${MOCK_SYNC_PUBLIC_KEY}\n`,
    privateKeyOpenssh: secretValue(
      `-----BEGIN OPENSSH PRIVATE KEY-----\nmock-${r.name}\n-----END OPENSSH PRIVATE KEY-----\n`,
    ),
    publicKeyFingerprintSha256: "SHA256:mockmockmockmockmockmockmockmockmockmockmoc",
  }),
  "postgresql:index/role:Role": () => ({}),
  "postgresql:index/database:Database": () => ({}),
  "postgresql:index/grant:Grant": () => ({}),
  "postgresql:index/defaultPrivileges:DefaultPrivileges": () => ({}),
  "command:remote:Command": () => ({ stdout: "", stderr: "" }),
  "command:remote:CopyToRemote": () => ({}),
  "pulumi-nodejs:dynamic/plex-migrate:SchemaMigrations": () => ({}),
  "pulumi-nodejs:dynamic/plex-migrate:SqliteImport": () => ({}),
  "pulumi-nodejs:dynamic/plex-migrate:PlexVerification": () => ({}),
  "pulumi-nodejs:dynamic/plex-migrate:PostgresAdminLogin": () => ({}),
};

export function secretValue(value: unknown): Record<string, unknown> {
  return { [SECRET_SIG]: SECRET_VALUE, value };
}

export function isSecretMarker(value: unknown): value is { value: unknown } {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as Record<string, unknown>)[SECRET_SIG] === SECRET_VALUE
  );
}

/** The value with every secret marker replaced by what it wraps. */
export function unwrapSecrets(value: unknown): unknown {
  if (isSecretMarker(value)) return unwrapSecrets(value.value);
  if (Array.isArray(value)) return value.map(unwrapSecrets);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrapSecrets(v)]));
  }
  return value;
}

/** True when the raw input at `dotted.path` (or any value above it) is marked secret. */
export function isSecretInput(registration: Registration, dottedPath: string): boolean {
  let current: unknown = registration.rawInputs;
  for (const part of dottedPath.split(".")) {
    if (isSecretMarker(current)) return true;
    if (current === null || typeof current !== "object") return false;
    current = (current as Record<string, unknown>)[part];
  }
  return isSecretMarker(current);
}

/** Every string anywhere in the raw inputs that is NOT inside a secret marker. */
export function plainStrings(value: unknown, out: string[] = []): string[] {
  if (isSecretMarker(value)) return out;
  if (typeof value === "string") out.push(value);
  else if (Array.isArray(value)) value.forEach((v) => plainStrings(v, out));
  else if (value && typeof value === "object")
    Object.values(value).forEach((v) => plainStrings(v, out));
  return out;
}

export interface MockRun {
  registrations: Registration[];
  /** The tunnels through the Kubernetes API the program opened (recorded, not listening). */
  tunnels: Omit<PodTunnelOptions, "log" | "kubeConfig">[];
  /** The program module's exports (stack outputs). */
  exports: Record<string, unknown>;
  byType(type: string): Registration[];
  /** The one registration with this type and name (throws if not exactly one). */
  get(type: string, name: string): Registration;
  /** Registrations whose parent is `parent`. */
  childrenOf(parent: Registration): Registration[];
}

let capturing: Registration[] | undefined;
let previewing = false;
let recorded = new Set<string>();
let extraOutputs: Record<string, OutputsFor> = {};
let patched = false;

/** The parts of the engine's RegisterResourceRequest (protobuf) that are recorded. */
interface RegisterResourceRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getCustom(): boolean;
  getObject(): { toJavaScript(): Record<string, unknown> } | undefined;
  getDependenciesList(): string[];
  getPropertydependenciesMap(): {
    toArray(): Array<[string, [string[]] | []]>;
  };
  getProtect(): boolean | undefined;
  getRetainondelete(): boolean | undefined;
  getProvider(): string;
  getAdditionalsecretoutputsList(): string[];
  getIgnorechangesList(): string[];
  getDeletebeforereplace(): boolean;
  getCustomtimeouts():
    { getCreate(): string; getUpdate(): string; getDelete(): string } | undefined;
}

function patchMonitor(): void {
  if (patched) return;
  patched = true;
  const { MockMonitor } = require("@pulumi/pulumi/runtime/mocks");
  const original = MockMonitor.prototype.registerResource;
  MockMonitor.prototype.registerResource = function (
    this: { newUrn(parent: string, type: string, name: string): string },
    req: RegisterResourceRequest,
    callback: unknown,
  ) {
    const rawInputs = req.getObject()?.toJavaScript() ?? {};
    const registration: Registration = {
      type: req.getType(),
      name: req.getName(),
      urn: this.newUrn(req.getParent(), req.getType(), req.getName()),
      parentUrn: req.getParent(),
      custom: req.getCustom(),
      inputs: unwrapSecrets(rawInputs) as Record<string, unknown>,
      rawInputs,
      dependencies: req.getDependenciesList(),
      propertyDependencies: Object.fromEntries(
        req
          .getPropertydependenciesMap()
          .toArray()
          .map(([key, deps]) => [key, deps[0] ?? []]),
      ),
      protect: Boolean(req.getProtect()),
      retainOnDelete: Boolean(req.getRetainondelete()),
      provider: req.getProvider(),
      additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
      ignoreChanges: req.getIgnorechangesList(),
      deleteBeforeReplace: req.getDeletebeforereplace(),
      customTimeouts: {
        create: req.getCustomtimeouts()?.getCreate() ?? "",
        update: req.getCustomtimeouts()?.getUpdate() ?? "",
        delete: req.getCustomtimeouts()?.getDelete() ?? "",
      },
    };
    capturing?.push(registration);
    return original.call(this, req, callback);
  };
}

function mocks(registrations: () => Registration[]): pulumi.runtime.Mocks {
  return {
    newResource(args: pulumi.runtime.MockResourceArgs) {
      // Our own components are known by their token; anything else must be listed.
      const ownComponent = !args.custom && args.type.startsWith(`${PROJECT}:`);
      const outputsFor =
        extraOutputs[args.type] ??
        KNOWN_TYPES[args.type] ??
        (ownComponent ? () => ({}) : undefined);
      if (!outputsFor) throw new Error(`mocks: unknown resource type ${args.type} (${args.name})`);
      const registration = [...registrations()]
        .reverse()
        .find((r) => r.type === args.type && r.name === args.name);
      if (!registration) throw new Error(`mocks: no registration captured for ${args.name}`);
      // A preview of a fresh stack creates everything: what the provider would compute is not
      // known yet, only the inputs are (pulumi-go-provider v1.3.0 infer/resource.go markComputed
      // makes every output of a create that is not an input computed; the Node SDK resolves a
      // property missing from a dry run's response as unknown, runtime/resource.js resolveOutputs).
      const state: Record<string, unknown> = {
        ...registration.rawInputs,
        ...(previewing && !recorded.has(registration.name) ? {} : outputsFor(registration)),
      };
      for (const key of registration.additionalSecretOutputs) {
        if (key in state && !isSecretMarker(state[key])) state[key] = secretValue(state[key]);
      }
      return { id: args.custom ? `${args.name}-id` : undefined, state };
    },
    call(args: pulumi.runtime.MockCallArgs) {
      throw new Error(`mocks: unexpected call ${args.token}`);
    },
  };
}

export interface RunOptions {
  /** Stack name. @default test */
  stack?: string;
  /** Config values by key without the project prefix; non-strings are JSON-encoded. */
  config?: Record<string, unknown>;
  /** Keys of `config` that are secrets. */
  secretKeys?: string[];
  /**
   * Preview (dry run) of a fresh stack instead of an update: resources get only their inputs back,
   * so every computed output is unknown. @default false
   */
  preview?: boolean;
  /**
   * With `preview`: names of resources already in the stack's state with the same inputs. The
   * engine hands them their recorded outputs (a SameStep keeps the old outputs, pulumi/pulumi
   * pkg/resource/deploy/step.go SameStep.Apply), so they are known. @default none
   */
  recorded?: string[];
  /** Outputs added per type, on top of KNOWN_TYPES. */
  outputs?: Record<string, OutputsFor>;
}

const PROJECT = "plex-migrate";

/** Loads `modulePath` fresh under mocks with the given config and waits for it to finish. */
export async function runWithMocks(
  load: () => Record<string, unknown>,
  options: RunOptions = {},
): Promise<MockRun> {
  patchMonitor();
  const registrations: Registration[] = [];
  capturing = registrations;
  extraOutputs = options.outputs ?? {};
  previewing = options.preview ?? false;
  recorded = new Set(options.recorded ?? []);
  const config: Record<string, string> = {};
  for (const [key, value] of Object.entries(options.config ?? {})) {
    config[`${PROJECT}:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
  }
  pulumi.runtime.setAllConfig(
    config,
    (options.secretKeys ?? []).map((k) => `${PROJECT}:${k}`),
  );
  await pulumi.runtime.setMocks(
    mocks(() => registrations),
    PROJECT,
    options.stack ?? "test",
    options.preview ?? false,
  );
  let exports: Record<string, unknown> = {};
  // No cluster here: a tunnel the program opens is recorded and answers at its fixed local port.
  const tunnels: MockRun["tunnels"] = [];
  const realOpen = programTunnels.open;
  programTunnels.open = async (tunnelOptions): Promise<PodTunnel> => {
    const { log: _log, kubeConfig: _kc, ...recorded } = tunnelOptions;
    tunnels.push(recorded);
    return {
      host: tunnelOptions.localHost ?? "127.0.0.1",
      port: tunnelOptions.localPort ?? 0,
      description: "recorded by the mocks",
      lastError: () => undefined,
      close: async () => undefined,
    };
  };
  // A failed registration (unknown type, a component's ResourceError) surfaces as an unhandled
  // rejection inside the runtime; turn the first one into this run's failure instead of a hang.
  let rejectRun: (err: unknown) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => (rejectRun = reject));
  const onUnhandled = (err: unknown) => rejectRun(err);
  process.on("unhandledRejection", onUnhandled);
  try {
    await Promise.race([
      (async () => {
        await pulumi.runtime.runInPulumiStack(async () => {
          exports = load();
          return exports;
        });
        const { waitForRPCs } = require("@pulumi/pulumi/runtime/settings");
        await waitForRPCs();
        // The real language host keeps its unhandledRejection handler for the whole process
        // (sdk/nodejs/cmd/run/index.js) and fails the run on any rejection before exit. Node
        // reports rejections left unhandled once the microtask queue drains, before the next
        // macrotask: one setImmediate turn delivers those to ours too.
        await new Promise((resolve) => setImmediate(resolve));
      })(),
      failed,
    ]);
  } finally {
    process.off("unhandledRejection", onUnhandled);
    capturing = undefined;
    programTunnels.open = realOpen;
  }
  const run: MockRun = {
    registrations,
    tunnels,
    exports,
    byType: (type) => registrations.filter((r) => r.type === type),
    get(type, name) {
      const found = registrations.filter((r) => r.type === type && r.name === name);
      if (found.length !== 1) {
        throw new Error(`expected one ${type} named ${name}, found ${found.length}`);
      }
      return found[0];
    },
    childrenOf: (parent) => registrations.filter((r) => r.parentUrn === parent.urn),
  };
  return run;
}

/** Requires `file` (relative to the project root) fresh, with every project module reloaded. */
export function freshRequire(file: string): Record<string, unknown> {
  const root = path.resolve(__dirname, "..", "..");
  for (const key of Object.keys(require.cache)) {
    if (
      key.startsWith(root) &&
      !key.includes(`${path.sep}node_modules${path.sep}`) &&
      !key.includes(`${path.sep}test${path.sep}support${path.sep}`)
    ) {
      delete require.cache[key];
    }
  }
  return require(path.join(root, file));
}

/**
 * Runs `file` (relative to the project root) again: only that module is dropped from the require
 * cache, so the components and libraries it imports stay loaded (much faster than freshRequire).
 */
export function rerunProgram(file: string): Record<string, unknown> {
  const full = require.resolve(path.resolve(__dirname, "..", "..", file));
  delete require.cache[full];
  return require(full);
}

/** Resolves an Output to its value and whether it is secret (tests only). */
export async function unwrap<T>(output: pulumi.Output<T>): Promise<{ value: T; secret: boolean }> {
  const internal = output as unknown as { promise(): Promise<T>; isSecret: Promise<boolean> };
  return { value: await internal.promise(), secret: await internal.isSecret };
}

/** Runs `work` with `pulumi.log.warn` recorded instead of printed; returns the messages. */
export async function captureWarnings(work: () => Promise<unknown>): Promise<string[]> {
  const logModule = require("@pulumi/pulumi/log") as { warn: (message: string) => unknown };
  const original = logModule.warn;
  const warnings: string[] = [];
  logModule.warn = (message: string) => {
    warnings.push(message);
    return Promise.resolve();
  };
  try {
    await work();
  } finally {
    logModule.warn = original;
  }
  return warnings;
}
