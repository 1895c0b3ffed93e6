/**
 * A local TCP port that leads to a port of a pod, through the Kubernetes API server's
 * port-forward subresource (what `kubectl port-forward` does), with the official client
 * (`@kubernetes/client-node` 1.4.0: KubeConfig for the credentials, PortForward for the WebSocket
 * protocol). Nothing is exposed in the cluster: the Service can stay ClusterIP.
 *
 *   const tunnel = await openPodTunnel({
 *     context: "homelab",                                  // kubeconfig context; default current
 *     namespace: "plex",
 *     target: { selector: { "app.kubernetes.io/name": "postgres" } }, // or { podName: "postgres-0" }
 *     remotePort: 5432,
 *     localPort: 15432,                                    // default 0: any free port
 *   });
 *   // connect to tunnel.host:tunnel.port as if it were the pod; then
 *   await tunnel.close();
 *
 * Each local connection gets its own port-forward stream to a pod that is Ready at that moment
 * (chosen again for every connection), so the tunnel can be opened before the pod exists, and
 * keeps working after the pod is restarted or replaced. A connection waits up to
 * `readyTimeoutSeconds` for a Ready pod; the API server's refusals (401, 403, 404) fail it at once.
 * Failures close the local connection and are reported through `log` with the pod, the port and
 * what to do.
 *
 * The listening socket and every connection are unref'd: an open tunnel never keeps the Node
 * process alive by itself. A Pulumi program relies on that: the Node SDK decides the program is
 * done when the event loop is empty (@pulumi/pulumi 3.248 cmd/run/index.js: on `beforeExit` it
 * calls SignalAndWaitForShutdown, which returns once the engine finished every step, deletes
 * included), and while any step is running a registration RPC is pending and keeps the process,
 * and so the tunnel, alive.
 *
 * The wire protocol (followed by the client, mirrored by test/support/fake-kube-api.ts):
 * kubernetes/kubernetes staging/src/k8s.io/kubelet/pkg/cri/streaming/portforward/websocket.go
 * (subprotocol v4.channel.k8s.io; per port a data channel 2n and an error channel 2n+1; the first
 * frame on each is the port as 2 bytes little-endian; every frame starts with its channel byte),
 * and kubernetes-client/javascript src/portforward.ts (strips the port prefix, writes the error
 * channel to `err`).
 */
import * as net from "net";
import { Writable, PassThrough } from "stream";
import type * as K8s from "@kubernetes/client-node" with { "resolution-mode": "import" };
import type * as Handler from "@kubernetes/client-node/dist/web-socket-handler.js" with {
  "resolution-mode": "import",
};
import type WebSocket from "ws";

// @kubernetes/client-node 1.x is an ES module; Node 20.19+ loads it with require(). Its
// WebSocketHandler (not re-exported by the index) takes the socket factory used below.
const k8s = require("@kubernetes/client-node") as typeof K8s;
const { WebSocketHandler } =
  require("@kubernetes/client-node/dist/web-socket-handler.js") as typeof Handler;

/** Which pod the tunnel leads to: any Ready pod matching labels, or one named pod. */
export type PodTarget = { selector: Record<string, string> } | { podName: string };

export interface PodTunnelOptions {
  /**
   * The kubeconfig: a loaded KubeConfig, or undefined for the default (KUBECONFIG or
   * ~/.kube/config, as kubectl and the Pulumi Kubernetes provider read it).
   */
  kubeConfig?: K8s.KubeConfig;
  /** kubeconfig context. @default the kubeconfig's current context */
  context?: string;
  namespace: string;
  target: PodTarget;
  /** Port in the pod. */
  remotePort: number;
  /** Local address to listen on. @default 127.0.0.1 */
  localHost?: string;
  /** Local port; 0 lets the system choose. @default 0 */
  localPort?: number;
  /** How long one connection waits for a Ready pod. @default 120 */
  readyTimeoutSeconds?: number;
  /** Pause between two looks for a Ready pod. @default 1000 */
  pollIntervalMs?: number;
  /** Progress ("info") and failures ("error"), one line each (never a credential). */
  log?: (line: string, level: "info" | "error") => void;
}

export interface PodTunnel {
  host: string;
  port: number;
  /** What the tunnel is: "namespace/selector → port" (for messages). */
  description: string;
  /** The last failure of a connection, if any (also passed to `log`). */
  lastError(): string | undefined;
  /** Stops listening and ends every open connection. */
  close(): Promise<void>;
}

/** A failure the tunnel reports for one connection; `permanent` ones are not retried. */
export class TunnelError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
  ) {
    super(message);
    this.name = "TunnelError";
  }
}

/** "a=b,c=d": the labelSelector query value of a label map, keys sorted. */
export function labelSelector(labels: Record<string, string>): string {
  return Object.keys(labels)
    .sort()
    .map((key) => `${key}=${labels[key]}`)
    .join(",");
}

/** The kubeconfig the tunnel uses, with `context` selected; unknown contexts are refused. */
export function loadKubeConfig(options: { kubeConfig?: K8s.KubeConfig; context?: string }) {
  const kc = options.kubeConfig ?? new k8s.KubeConfig();
  if (!options.kubeConfig) kc.loadFromDefault();
  if (options.context) {
    const names = kc.getContexts().map((c) => c.name);
    if (!names.includes(options.context)) {
      throw new TunnelError(
        `kubeconfig context "${options.context}" does not exist (contexts: ${names.join(", ") || "none"}). ` +
          "Set kubeContext to one of them, or point KUBECONFIG at the kubeconfig that has it",
        true,
      );
    }
    kc.setCurrentContext(options.context);
  }
  if (!kc.getCurrentCluster()) {
    throw new TunnelError(
      "the kubeconfig has no current cluster. Set kubeContext, or point KUBECONFIG at a kubeconfig",
      true,
    );
  }
  return kc;
}

interface PodSummary {
  name: string;
  ready: boolean;
  state: string;
}

function summarize(pod: K8s.V1Pod): PodSummary {
  const name = pod.metadata?.name ?? "?";
  const phase = pod.status?.phase ?? "Unknown";
  const ready =
    phase === "Running" &&
    !pod.metadata?.deletionTimestamp &&
    (pod.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
  const state = pod.metadata?.deletionTimestamp
    ? "terminating"
    : ready
      ? "Ready"
      : `${phase}, not Ready`;
  return { name, ready, state };
}

/** The API server's answer as a sentence, with the fix for the refusals users meet. */
function apiFailure(error: unknown, server: string, context: string): TunnelError {
  const code = (error as { code?: number }).code;
  const body = (error as { body?: unknown }).body;
  let reason = "";
  try {
    const status = (typeof body === "string" ? JSON.parse(body) : body) as { message?: string };
    reason = status?.message && status.message !== "Unauthorized" ? `: ${status.message}` : "";
  } catch {
    reason = "";
  }
  if (code === 401) {
    return new TunnelError(
      `the Kubernetes API server ${server} refused the credentials of context "${context}" (401 Unauthorized${reason}). ` +
        "Renew them (log in to the cluster again, or refresh the kubeconfig's token or certificate) and rerun",
      true,
    );
  }
  if (code === 403) {
    return new TunnelError(
      `the Kubernetes API server ${server} forbids this for context "${context}" (403 Forbidden${reason}). ` +
        "Its user needs get/list on pods and create on pods/portforward in the namespace",
      true,
    );
  }
  if (typeof code === "number") {
    return new TunnelError(
      `the Kubernetes API server ${server} answered ${code}${reason}`,
      code < 500,
    );
  }
  const message = (error as Error).message ?? String(error);
  return new TunnelError(
    `cannot reach the Kubernetes API server ${server} (${message}). Check the network and kubeContext`,
    false,
  );
}

/** "Unexpected server response: 401" from `ws` to its status code. */
function upgradeStatus(error: unknown): number | undefined {
  const message = (error as { message?: string }).message ?? "";
  const match = /Unexpected server response: (\d{3})/.exec(message);
  return match ? Number(match[1]) : undefined;
}

const HIGH_WATER_BYTES = 1 << 20;

/** One tunnel's way to its pods: finding a Ready one, and one port-forward stream per connection. */
class PodRoute {
  readonly description: string;
  lastError: string | undefined;
  closing = false;
  readonly streams = new Set<WebSocket>();
  private readonly context: string;
  private readonly server: string;
  private readonly core: K8s.CoreV1Api;
  private readonly portForward: K8s.PortForward;
  private readonly log: (line: string, level: "info" | "error") => void;

  constructor(
    kc: K8s.KubeConfig,
    private readonly options: PodTunnelOptions,
  ) {
    this.context = kc.getCurrentContext();
    this.server = kc.getCurrentCluster()!.server;
    this.core = kc.makeApiClient(k8s.CoreV1Api);
    this.log = options.log ?? (() => undefined);
    const ns = options.namespace;
    const target =
      "podName" in options.target
        ? `pod ${ns}/${options.target.podName}`
        : `a Ready pod in ${ns} with ${labelSelector(options.target.selector)}`;
    this.description = `${target}, port ${options.remotePort}`;
    // The socket factory hook of WebSocketHandler lets the tunnel unref the connection to the API
    // server once it is open (see the module comment).
    const handler = new WebSocketHandler(kc, (uri, protocols, opts) => {
      const WebSocketClass = require("ws") as typeof WebSocket;
      const ws = new WebSocketClass(uri, protocols, opts);
      ws.on("upgrade", (response) => response.socket.unref());
      return ws;
    });
    this.portForward = new k8s.PortForward(kc, true, handler);
  }

  report(message: string): void {
    this.lastError = message;
    this.log(message, "error");
  }

  private failure(error: unknown): TunnelError {
    return apiFailure(error, this.server, this.context);
  }

  private async listPods(): Promise<PodSummary[]> {
    const { namespace, target } = this.options;
    try {
      if ("podName" in target) {
        return [summarize(await this.core.readNamespacedPod({ name: target.podName, namespace }))];
      }
      const list = await this.core.listNamespacedPod({
        namespace,
        labelSelector: labelSelector(target.selector),
      });
      return list.items.map(summarize).sort((a, b) => a.name.localeCompare(b.name));
    } catch (error) {
      if ((error as { code?: number }).code === 404 && "podName" in target) return [];
      throw this.failure(error);
    }
  }

  /** The name of a Ready pod, waiting for one up to readyTimeoutSeconds. */
  private async readyPod(local: net.Socket): Promise<string> {
    const waitMs = (this.options.readyTimeoutSeconds ?? 120) * 1000;
    const deadline = Date.now() + waitMs;
    let waited = false;
    for (;;) {
      const pods = await this.listPods();
      const ready = pods.find((p) => p.ready);
      if (ready) {
        if (waited) this.log(`${ready.name} is Ready: forwarding to it`, "info");
        return ready.name;
      }
      const seen = pods.length
        ? pods.map((p) => `${p.name} ${p.state}`).join("; ")
        : "no pod matches";
      if (Date.now() >= deadline || local.destroyed || this.closing) {
        throw new TunnelError(
          `no Ready pod for ${this.description} after ${waitMs / 1000} s (${seen}). ` +
            `Check the pod (kubectl -n ${this.options.namespace} describe pod ...): it must be Running and Ready`,
          true,
        );
      }
      if (!waited) this.log(`waiting for ${this.description} to be Ready (${seen})`, "info");
      waited = true;
      await new Promise((resolve) =>
        setTimeout(resolve, this.options.pollIntervalMs ?? 1000).unref(),
      );
    }
  }

  /** Forwards one local connection to a Ready pod, until either side closes. */
  async forward(local: net.Socket): Promise<void> {
    local.pause();
    const pod = await this.readyPod(local);
    const errorText: Buffer[] = [];
    let ws: WebSocket | undefined;
    const toLocal = new Writable({
      write(chunk: Buffer, _encoding, done) {
        if (!local.write(chunk)) {
          ws?.pause();
          local.once("drain", () => ws?.resume());
        }
        done();
      },
    });
    const errors = new Writable({
      write(chunk: Buffer, _encoding, done) {
        errorText.push(chunk);
        done();
      },
    });
    try {
      // Data to the pod is sent by `pipe` with flow control; PortForward only needs an input.
      ws = (await this.portForward.portForward(
        this.options.namespace,
        pod,
        [this.options.remotePort],
        toLocal,
        errors,
        new PassThrough(),
      )) as unknown as WebSocket;
    } catch (error) {
      const status = upgradeStatus(error);
      throw this.failure(status ? { code: status } : error);
    }
    this.pipe(local, ws, `${this.options.namespace}/${pod} port ${this.options.remotePort}`, () =>
      Buffer.concat(errorText).toString("utf8").trim(),
    );
  }

  /** Local bytes to the pod (channel 0, paused while 1 MiB is unsent), and the endings. */
  private pipe(local: net.Socket, ws: WebSocket, where: string, errorText: () => string): void {
    this.streams.add(ws);
    let pending = 0;
    local.on("data", (chunk: Buffer) => {
      const frame = Buffer.allocUnsafe(chunk.length + 1);
      frame[0] = 0;
      chunk.copy(frame, 1);
      pending += frame.length;
      if (pending > HIGH_WATER_BYTES) local.pause();
      ws.send(frame, () => {
        pending -= frame.length;
        if (pending <= HIGH_WATER_BYTES && !local.destroyed) local.resume();
      });
    });
    // v4 has no half-close: the stream ends when either side closes.
    local.on("end", () => ws.close());
    local.on("close", () => ws.close());
    local.on("error", () => ws.close());
    ws.on("close", (code: number) => {
      this.streams.delete(ws);
      const text = errorText();
      if (text) {
        this.report(`port-forward to ${where} failed: ${text}`);
        local.destroy();
      } else if (code === 1006 && !this.closing) {
        // 1006: the connection ended without a close frame (network, API server restart).
        this.report(`the port-forward stream to ${where} dropped`);
        local.destroy();
      } else {
        local.end();
      }
    });
    ws.on("error", (error) => {
      this.report(`the port-forward stream to ${where} broke: ${error.message}`);
      local.destroy();
    });
    local.resume();
  }
}

/** Listens on host:port; a taken port is a TunnelError naming it. */
async function listen(server: net.Server, host: string, port: number, what: string) {
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        new TunnelError(
          error.code === "EADDRINUSE"
            ? `local port ${host}:${port} for the tunnel to ${what} is in use. ` +
                "Stop what listens there, or choose another port"
            : `cannot listen on ${host}:${port}: ${error.message}`,
          true,
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
}

/**
 * Opens the tunnel: listens on localHost:localPort and forwards each connection to the target.
 * Rejects when the kubeconfig or context is unusable or the local port is taken.
 */
export async function openPodTunnel(options: PodTunnelOptions): Promise<PodTunnel> {
  const route = new PodRoute(loadKubeConfig(options), options);
  const open = new Set<net.Socket>();
  const listener = net.createServer((local) => {
    local.unref();
    open.add(local);
    local.on("close", () => open.delete(local));
    local.on("error", () => undefined);
    route.forward(local).catch((error) => {
      route.report((error as Error).message);
      local.destroy();
    });
  });
  const host = options.localHost ?? "127.0.0.1";
  await listen(listener, host, options.localPort ?? 0, route.description);
  listener.unref();
  return {
    host,
    port: (listener.address() as net.AddressInfo).port,
    description: route.description,
    lastError: () => route.lastError,
    close: async () => {
      route.closing = true;
      for (const ws of route.streams) ws.terminate();
      for (const local of open) local.destroy();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}

const programTunnelsOpen = new Map<string, Promise<PodTunnel>>();

/**
 * The tunnels a Pulumi program opens: one per target and local port, opened on first use and
 * reused when asked again in the same process (a program run again by tests). The mocks harness
 * (test/support/pulumi-mocks.ts) replaces `open` to record what the program asks for.
 */
export const programTunnels = {
  open(options: PodTunnelOptions): Promise<PodTunnel> {
    const key = JSON.stringify([
      options.context,
      options.namespace,
      options.target,
      options.remotePort,
      options.localHost,
      options.localPort,
    ]);
    let tunnel = programTunnelsOpen.get(key);
    if (!tunnel) {
      tunnel = openPodTunnel(options);
      programTunnelsOpen.set(key, tunnel);
      tunnel.catch(() => programTunnelsOpen.delete(key));
    }
    return tunnel;
  },
};
