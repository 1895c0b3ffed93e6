/**
 * A Kubernetes API server for the tunnel tests: the pods a namespace holds (GET and list with a
 * labelSelector, as PodList JSON), bearer-token authentication (401 Status otherwise), and the
 * pods/portforward subresource speaking the WebSocket port-forward protocol exactly as the
 * kubelet behind the API server does, forwarding to a real TCP server (a real PostgreSQL).
 *
 * The protocol, from kubernetes/kubernetes:
 * * staging/src/k8s.io/kubelet/pkg/cri/streaming/portforward/websocket.go (handleWebSocketStreams):
 *   the `ports` query parameter (required, comma lists allowed); subprotocols "",
 *   "v4.channel.k8s.io" (binary) and "v4.base64.channel.k8s.io"; per port a read-write data
 *   channel 2n and a write-only error channel 2n+1; the port as 2 bytes little-endian is written
 *   first on both; a failed forward writes "error forwarding port P to pod NAME, uid UID: ..." on
 *   the error channel; when the forward ends both channels and the connection close.
 * * staging/src/k8s.io/apimachinery/pkg/util/httpstream/wsstream/conn.go: the first of the
 *   client's subprotocols, in its order, that the server supports is chosen; every message starts
 *   with its channel byte (base64: the channel as an ASCII digit, then base64 data).
 */
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as https from "https";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { WebSocketServer, type WebSocket } from "ws";
import { execServer, type ExecRecord } from "./fake-kube-exec";

export interface FakePod {
  name: string;
  labels: Record<string, string>;
  phase: "Pending" | "Running" | "Succeeded" | "Failed";
  ready: boolean;
  terminating?: boolean;
  uid: string;
  /** Where the pod's port leads (the real server behind it); undefined: nothing listens. */
  target?: { host: string; port: number };
}

const SUPPORTED_PROTOCOLS = ["", "v4.channel.k8s.io", "v4.base64.channel.k8s.io"];

export interface FakeKubeApi {
  url: string;
  token: string;
  namespace: string;
  pods: Map<string, FakePod>;
  addPod(pod: Omit<FakePod, "uid"> & { uid?: string }): FakePod;
  /** The kubelet restarts the pod's container: open forwards break, the pod is not Ready. */
  restartPod(name: string): void;
  /** Cuts every open port-forward WebSocket without a close frame (a dropped connection). */
  dropStreams(): number;
  /** Every port-forward request: pod, the subprotocol chosen, and whether it opened. */
  forwards: { pod: string; protocol: string; opened: boolean }[];
  /** Answer pods/portforward with 403 (a user without `create` on pods/portforward). */
  forbidPortForward: boolean;
  /** Every pods/exec request (the command runs on this machine, standing in for the container). */
  execs: ExecRecord[];
  /** Number of port-forward WebSockets open now. */
  openStreams(): number;
  /** A kubeconfig (YAML) with one context using this server and `token`. */
  kubeconfig(options?: { token?: string; context?: string }): string;
  close(): Promise<void>;
}

function status(code: number, reason: string, message: string) {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    code,
  };
}

function podJson(namespace: string, pod: FakePod) {
  return {
    kind: "Pod",
    apiVersion: "v1",
    metadata: {
      name: pod.name,
      namespace,
      uid: pod.uid,
      labels: pod.labels,
      ...(pod.terminating ? { deletionTimestamp: "2026-12-01T20:00:00Z" } : {}),
    },
    spec: { nodeName: pod.phase === "Pending" ? undefined : "node-1", containers: [] },
    status: {
      phase: pod.phase,
      conditions: [{ type: "Ready", status: pod.ready ? "True" : "False" }],
    },
  };
}

function matches(selector: string | null, labels: Record<string, string>): boolean {
  if (!selector) return true;
  return selector
    .split(",")
    .filter(Boolean)
    .every((term) => {
      const [key, value] = term.split("=");
      return labels[key] === value;
    });
}

/** Writes `data` on `channel` in the framing of the negotiated subprotocol. */
function frame(ws: WebSocket, protocol: string, channel: number, data: Buffer): void {
  if (protocol === "v4.base64.channel.k8s.io") {
    ws.send(String.fromCharCode(48 + channel) + data.toString("base64"));
  } else {
    const message = Buffer.allocUnsafe(data.length + 1);
    message[0] = channel;
    data.copy(message, 1);
    ws.send(message);
  }
}

/** A self-signed serving certificate for 127.0.0.1 (openssl), as API servers serve TLS. */
function servingCertificate(): { key: string; cert: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fake-kube-api-"));
  try {
    const run = spawnSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        path.join(dir, "key.pem"),
        "-out",
        path.join(dir, "cert.pem"),
        "-days",
        "1",
        "-subj",
        "/CN=kube-apiserver",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
      ],
      { encoding: "utf8" },
    );
    if (run.status !== 0) throw new Error(`openssl failed: ${run.stderr}`);
    return {
      key: fs.readFileSync(path.join(dir, "key.pem"), "utf8"),
      cert: fs.readFileSync(path.join(dir, "cert.pem"), "utf8"),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function startFakeKubeApi(namespace = "plex"): Promise<FakeKubeApi> {
  const tls = servingCertificate();
  const token = crypto.randomBytes(16).toString("hex");
  const pods = new Map<string, FakePod>();
  const forwards: FakeKubeApi["forwards"] = [];
  const live = new Map<WebSocket, { pod: string; target?: net.Socket }>();
  const execRecords: ExecRecord[] = [];
  const execs = execServer(execRecords);

  const authorized = (req: http.IncomingMessage) => req.headers.authorization === `Bearer ${token}`;

  const server = https.createServer(tls, (req, res) => {
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { "Content-Type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (!authorized(req)) return send(401, status(401, "Unauthorized", "Unauthorized"));
    const url = new URL(req.url ?? "/", "http://localhost");
    const list = new RegExp(`^/api/v1/namespaces/${namespace}/pods$`).exec(url.pathname);
    const one = new RegExp(`^/api/v1/namespaces/${namespace}/pods/([^/]+)$`).exec(url.pathname);
    if (req.method === "GET" && list) {
      const selector = url.searchParams.get("labelSelector");
      return send(200, {
        kind: "PodList",
        apiVersion: "v1",
        metadata: { resourceVersion: "1" },
        items: [...pods.values()]
          .filter((p) => matches(selector, p.labels))
          .map((p) => podJson(namespace, p)),
      });
    }
    if (req.method === "GET" && one) {
      const pod = pods.get(one[1]);
      return pod
        ? send(200, podJson(namespace, pod))
        : send(404, status(404, "NotFound", `pods "${one[1]}" not found`));
    }
    return send(404, status(404, "NotFound", "the server could not find the requested resource"));
  });

  const wss = new WebSocketServer({
    noServer: true,
    // wsstream's handshake: the first client protocol, in the client's order, that is supported.
    handleProtocols: (protocols) => {
      for (const protocol of protocols) if (SUPPORTED_PROTOCOLS.includes(protocol)) return protocol;
      return false;
    },
  });

  server.on("upgrade", (req, socket, head) => {
    const reject = (code: number, body: unknown) => {
      const text = JSON.stringify(body);
      socket.end(
        `HTTP/1.1 ${code} ${http.STATUS_CODES[code]}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
      );
    };
    if (!authorized(req)) return reject(401, status(401, "Unauthorized", "Unauthorized"));
    const url = new URL(req.url ?? "/", "http://localhost");
    const exec = new RegExp(`^/api/v1/namespaces/${namespace}/pods/([^/]+)/exec$`).exec(
      url.pathname,
    );
    if (exec) {
      const pod = pods.get(exec[1]);
      if (!pod) return reject(404, status(404, "NotFound", `pods "${exec[1]}" not found`));
      return execs.upgrade(req, socket, head, pod.name, url);
    }
    const match = new RegExp(`^/api/v1/namespaces/${namespace}/pods/([^/]+)/portforward$`).exec(
      url.pathname,
    );
    if (!match) return reject(404, status(404, "NotFound", "not found"));
    if (api.forbidPortForward) {
      return reject(
        403,
        status(
          403,
          "Forbidden",
          `pods "${match[1]}" is forbidden: User "tester" cannot create resource "pods/portforward" in API group "" in the namespace "${namespace}"`,
        ),
      );
    }
    const pod = pods.get(match[1]);
    if (!pod) return reject(404, status(404, "NotFound", `pods "${match[1]}" not found`));
    if (pod.phase === "Pending") {
      return reject(
        400,
        status(400, "BadRequest", `pod ${match[1]} does not have a host assigned`),
      );
    }
    const portValues = url.searchParams.getAll("ports");
    if (portValues.length === 0) {
      return reject(400, status(400, "BadRequest", 'query parameter "port" is required'));
    }
    const ports = portValues.flatMap((v) => v.split(",")).map(Number);
    if (ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
      return reject(400, status(400, "BadRequest", `unable to parse "${portValues}" as a port`));
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const protocol = ws.protocol;
      forwards.push({ pod: pod.name, protocol, opened: true });
      live.set(ws, { pod: pod.name });
      ws.on("close", () => live.delete(ws));
      // Only the first port is wired to a target: the tunnel asks for one.
      const port = ports[0];
      for (let i = 0; i < ports.length; i++) {
        const p = Buffer.alloc(2);
        p.writeUInt16LE(ports[i], 0);
        frame(ws, protocol, i * 2, p);
        frame(ws, protocol, i * 2 + 1, p);
      }
      const fail = (reason: string) => {
        frame(
          ws,
          protocol,
          1,
          Buffer.from(
            `error forwarding port ${port} to pod ${pod.name}, uid ${pod.uid}: ${reason}`,
          ),
        );
        ws.close();
      };
      if (!pod.target) {
        fail(
          `failed to connect to localhost:${port} inside namespace "${pod.uid}", IPv4: dial tcp4 127.0.0.1:${port}: connect: connection refused`,
        );
        return;
      }
      const target = net.connect(pod.target.port, pod.target.host);
      live.set(ws, { pod: pod.name, target });
      const early: Buffer[] = [];
      let connected = false;
      target.on("connect", () => {
        connected = true;
        for (const chunk of early.splice(0)) target.write(chunk);
      });
      target.on("data", (chunk: Buffer) => frame(ws, protocol, 0, chunk));
      target.on("end", () => ws.close());
      target.on("error", (error) => fail(error.message));
      ws.on("message", (data: Buffer, isBinary) => {
        const bytes =
          protocol === "v4.base64.channel.k8s.io" && !isBinary
            ? Buffer.concat([
                Buffer.from([data.toString()[0].charCodeAt(0) - 48]),
                Buffer.from(data.toString().slice(1), "base64"),
              ])
            : data;
        // Data on a write-only (error) channel is ignored, as wsstream does.
        if (bytes.length < 1 || bytes[0] !== 0) return;
        const payload = bytes.subarray(1);
        if (connected) target.write(payload);
        else early.push(Buffer.from(payload));
      });
      ws.on("close", () => target.destroy());
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`;

  const api: FakeKubeApi = {
    url,
    token,
    forbidPortForward: false,
    namespace,
    pods,
    forwards,
    addPod(pod) {
      const full: FakePod = { uid: crypto.randomUUID(), ...pod };
      pods.set(full.name, full);
      return full;
    },
    restartPod(name) {
      const pod = pods.get(name);
      if (!pod) throw new Error(`no pod ${name}`);
      pod.ready = false;
      for (const [ws, stream] of live) {
        if (stream.pod !== name) continue;
        // The container's process died: the connection inside the pod is reset.
        stream.target?.destroy();
        frame(
          ws,
          ws.protocol,
          1,
          Buffer.from(
            `error forwarding port 5432 to pod ${name}, uid ${pod.uid}: read: connection reset by peer`,
          ),
        );
        ws.close();
      }
    },
    dropStreams() {
      const all = [...live.keys()];
      for (const ws of all) ws.terminate();
      return all.length;
    },
    openStreams: () => live.size,
    execs: execRecords,
    kubeconfig(options = {}) {
      const context = options.context ?? "fake";
      return [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: fake",
        "  cluster:",
        `    server: ${url}`,
        `    certificate-authority-data: ${Buffer.from(tls.cert).toString("base64")}`,
        "users:",
        "- name: tester",
        "  user:",
        `    token: ${options.token ?? token}`,
        "contexts:",
        `- name: ${context}`,
        "  context:",
        "    cluster: fake",
        "    user: tester",
        `    namespace: ${namespace}`,
        `current-context: ${context}`,
        "",
      ].join("\n");
    },
    async close() {
      for (const ws of live.keys()) ws.terminate();
      wss.close();
      execs.wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return api;
}
