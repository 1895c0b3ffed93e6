/**
 * lib/kube/tunnel.ts against test/support/fake-kube-api.ts (the API server's pods and
 * pods/portforward, protocol as the kubelet speaks it) in front of a real PostgreSQL (embedded,
 * test/support/postgres.ts): queries through the tunnel, many at once, a dropped stream, a pod
 * that becomes Ready later or never, a restarted pod, and the API server's 401/403.
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as net from "net";
import * as path from "path";
import { Client } from "pg";
import type * as K8s from "@kubernetes/client-node" with { "resolution-mode": "import" };
import { openPodTunnel, PodTunnel, PodTunnelOptions, TunnelError } from "../../lib/kube/tunnel";
import { FakeKubeApi, startFakeKubeApi } from "../support/fake-kube-api";
import { testServerAdminUrl } from "../support/postgres";

const k8s = require("@kubernetes/client-node") as typeof K8s;
const ROOT = path.resolve(__dirname, "..", "..");
const LABELS = { "app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": "postgres" };

function kubeConfig(api: FakeKubeApi, token?: string): K8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(api.kubeconfig({ token }));
  return kc;
}

describe("kube tunnel: port-forward through the Kubernetes API to a real PostgreSQL", function () {
  let api: FakeKubeApi;
  let pg: { host: string; port: number; user: string; password: string };
  const tunnels: PodTunnel[] = [];
  const clients: Client[] = [];

  before(async () => {
    const admin = new URL(await testServerAdminUrl());
    pg = {
      host: admin.hostname,
      port: Number(admin.port),
      user: decodeURIComponent(admin.username),
      password: decodeURIComponent(admin.password),
    };
  });

  beforeEach(async () => {
    api = await startFakeKubeApi("plex");
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.end().catch(() => undefined);
    for (const tunnel of tunnels.splice(0)) await tunnel.close();
    await api.close();
  });

  function addPostgresPod(overrides: Partial<Parameters<FakeKubeApi["addPod"]>[0]> = {}) {
    return api.addPod({
      name: "postgres-0",
      labels: LABELS,
      phase: "Running",
      ready: true,
      target: { host: pg.host, port: pg.port },
      ...overrides,
    });
  }

  async function open(options: Partial<PodTunnelOptions> = {}): Promise<PodTunnel> {
    const tunnel = await openPodTunnel({
      kubeConfig: kubeConfig(api),
      namespace: "plex",
      target: { selector: LABELS },
      remotePort: 5432,
      pollIntervalMs: 20,
      ...options,
    });
    tunnels.push(tunnel);
    return tunnel;
  }

  async function connect(tunnel: PodTunnel): Promise<Client> {
    const client = new Client({
      host: tunnel.host,
      port: tunnel.port,
      user: pg.user,
      password: pg.password,
      database: "postgres",
      connectionTimeoutMillis: 60_000,
    });
    clients.push(client);
    client.on("error", () => undefined);
    await client.connect();
    return client;
  }

  it("answers queries as the pod's server, over v4.channel.k8s.io (the client offers v5 first)", async () => {
    addPostgresPod();
    const tunnel = await open();
    assert.strictEqual(tunnel.host, "127.0.0.1");
    const client = await connect(tunnel);
    const { rows } = await client.query<{ id: string }>(
      "SELECT system_identifier::text AS id FROM pg_control_system()",
    );
    const direct = new Client({ ...pg, database: "postgres" });
    await direct.connect();
    const expected = await direct.query<{ id: string }>(
      "SELECT system_identifier::text AS id FROM pg_control_system()",
    );
    await direct.end();
    assert.strictEqual(rows[0].id, expected.rows[0].id);
    assert.deepStrictEqual(api.forwards, [
      { pod: "postgres-0", protocol: "v4.channel.k8s.io", opened: true },
    ]);
    assert.match(tunnel.description, /plex with app\.kubernetes\.io\/instance=postgres/);
  });

  it("carries many concurrent connections, each with its own stream, bytes intact both ways", async () => {
    addPostgresPod();
    const tunnel = await open();
    const results = await Promise.all(
      Array.from({ length: 24 }, async (_, i) => {
        const client = await connect(tunnel);
        // ~2 MB up (a parameter) and ~2 MB down (the echo) per connection, checked by md5.
        const payload = `${i}:`.padEnd(2_000_000, String.fromCharCode(97 + (i % 26)));
        const { rows } = await client.query<{ md5: string; echo: string }>(
          "SELECT md5($1::text) AS md5, $1::text AS echo",
          [payload],
        );
        return { ok: rows[0].echo === payload, md5: rows[0].md5, payload };
      }),
    );
    for (const result of results) {
      assert.ok(result.ok);
      assert.strictEqual(
        result.md5,
        require("crypto").createHash("md5").update(result.payload).digest("hex"),
      );
    }
    assert.strictEqual(api.forwards.length, 24);
    assert.strictEqual(api.openStreams(), 24);
  });

  it("a dropped stream fails only its connection, names the pod, and new connections work", async () => {
    addPostgresPod();
    const lines: string[] = [];
    const tunnel = await open({ log: (line) => lines.push(line) });
    const first = await connect(tunnel);
    await first.query("SELECT 1");
    const ended = new Promise<void>((resolve) => first.once("end", resolve));
    assert.strictEqual(api.dropStreams(), 1);
    await ended;
    await assert.rejects(first.query("SELECT 1"), /Connection terminated|not queryable/);
    assert.match(tunnel.lastError() ?? "", /stream to plex\/postgres-0 port 5432 dropped/);
    const second = await connect(tunnel);
    assert.deepStrictEqual((await second.query("SELECT 2 AS n")).rows, [{ n: 2 }]);
  });

  it("a connection made before the pod is Ready waits for it, then goes through", async () => {
    const pod = addPostgresPod({ phase: "Pending", ready: false });
    const lines: string[] = [];
    const tunnel = await open({
      log: (line) => {
        lines.push(line);
        // The pod becomes Ready once the tunnel said it waits: no race with a timer.
        if (line.startsWith("waiting for")) Object.assign(pod, { phase: "Running", ready: true });
      },
    });
    const client = await connect(tunnel);
    assert.deepStrictEqual((await client.query("SELECT 3 AS n")).rows, [{ n: 3 }]);
    assert.match(
      lines[0],
      /^waiting for a Ready pod in plex .* \(postgres-0 Pending, not Ready\)$/,
    );
    assert.match(lines[1], /^postgres-0 is Ready: forwarding to it$/);
  });

  it("no Ready pod within the wait: the connection is closed and the reason names the pods", async () => {
    addPostgresPod({ phase: "Running", ready: false });
    const tunnel = await open({ readyTimeoutSeconds: 0 });
    await assert.rejects(connect(tunnel), /Connection terminated|ECONNRESET/);
    assert.match(
      tunnel.lastError() ?? "",
      /^no Ready pod for a Ready pod in plex with .* after 0 s \(postgres-0 Running, not Ready\)\. Check the pod \(kubectl -n plex describe pod/,
    );
    assert.strictEqual(api.forwards.length, 0);
  });

  it("a restarted pod: open connections fail with the kubelet's error, new ones reach the new pod", async () => {
    const pod = addPostgresPod();
    const lines: string[] = [];
    const tunnel = await open({
      log: (line) => {
        lines.push(line);
        if (line.startsWith("waiting for")) {
          api.pods.delete("postgres-0");
          addPostgresPod({ uid: "second-life" });
        }
      },
    });
    const before = await connect(tunnel);
    await before.query("SELECT 1");
    const ended = new Promise<void>((resolve) => before.once("end", resolve));
    api.restartPod("postgres-0");
    await ended;
    assert.match(
      tunnel.lastError() ?? "",
      new RegExp(
        `^port-forward to plex/postgres-0 port 5432 failed: error forwarding port 5432 to pod postgres-0, uid ${pod.uid}: read: connection reset by peer$`,
      ),
    );
    const after = await connect(tunnel);
    assert.deepStrictEqual((await after.query("SELECT 4 AS n")).rows, [{ n: 4 }]);
    assert.ok(lines.some((l) => l.startsWith("waiting for")));
    assert.strictEqual(api.pods.get("postgres-0")?.uid, "second-life");
  });

  it("the pod's port not listening: the error channel's message is reported", async () => {
    addPostgresPod({ target: undefined });
    const tunnel = await open();
    await assert.rejects(connect(tunnel), /Connection terminated|ECONNRESET/);
    assert.match(
      tunnel.lastError() ?? "",
      /^port-forward to plex\/postgres-0 port 5432 failed: error forwarding port 5432 to pod postgres-0, uid [0-9a-f-]+: failed to connect to localhost:5432 .*connection refused$/,
    );
  });

  it("a 401 from the API server fails the connection at once, saying to renew the credentials", async () => {
    addPostgresPod();
    const tunnel = await open({ kubeConfig: kubeConfig(api, "expired-token") });
    await assert.rejects(connect(tunnel), /Connection terminated|ECONNRESET/);
    assert.strictEqual(
      tunnel.lastError(),
      `the Kubernetes API server ${api.url} refused the credentials of context "fake" (401 Unauthorized). ` +
        "Renew them (log in to the cluster again, or refresh the kubeconfig's token or certificate) and rerun",
    );
    assert.ok(!(tunnel.lastError() ?? "").includes("expired-token"));
  });

  it("a 403 on pods/portforward names the permission the user lacks", async () => {
    addPostgresPod();
    api.forbidPortForward = true;
    const tunnel = await open();
    await assert.rejects(connect(tunnel), /Connection terminated|ECONNRESET/);
    assert.match(
      tunnel.lastError() ?? "",
      /403 Forbidden\)\. Its user needs get\/list on pods and create on pods\/portforward in the namespace$/,
    );
  });

  it("an API server that does not answer fails the connection, naming the server", async () => {
    addPostgresPod();
    const closed = new URL(api.url);
    await api.close();
    api = await startFakeKubeApi("plex"); // afterEach closes this one
    const kc = new k8s.KubeConfig();
    kc.loadFromString(api.kubeconfig().replace(api.url, closed.origin));
    const tunnel = await open({ kubeConfig: kc });
    await assert.rejects(connect(tunnel), /Connection terminated|ECONNRESET/);
    assert.match(
      tunnel.lastError() ?? "",
      new RegExp(
        `^cannot reach the Kubernetes API server ${closed.origin.replace(/[.]/g, "\\.")} \\(.*ECONNREFUSED.*\\)\\. Check the network and kubeContext$`,
      ),
    );
  });

  it("refuses an unknown kubeconfig context and a local port in use, before listening", async () => {
    await assert.rejects(
      open({ context: "prod" }),
      (error: Error) =>
        error instanceof TunnelError &&
        /^kubeconfig context "prod" does not exist \(contexts: fake\)\. Set kubeContext/.test(
          error.message,
        ),
    );
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", resolve));
    const port = (squatter.address() as net.AddressInfo).port;
    try {
      await assert.rejects(
        open({ localPort: port }),
        new RegExp(`^TunnelError: local port 127\\.0\\.0\\.1:${port} for the tunnel .* is in use`),
      );
    } finally {
      squatter.close();
    }
  });

  it("an open, idle tunnel does not keep a Node process alive (the Pulumi program can end)", function () {
    this.timeout(60_000);
    const script = [
      "const { openPodTunnel } = require('./lib/kube/tunnel');",
      "const k8s = require('@kubernetes/client-node');",
      "const kc = new k8s.KubeConfig();",
      `kc.loadFromString(${JSON.stringify(api.kubeconfig())});`,
      "openPodTunnel({ kubeConfig: kc, namespace: 'plex', target: { podName: 'postgres-0' }, remotePort: 5432 })",
      "  .then((t) => console.log('listening', t.port));",
    ].join("\n");
    const run = spawnSync(
      process.execPath,
      ["-r", "ts-node/register/transpile-only", "-e", script],
      { cwd: ROOT, encoding: "utf8", timeout: 50_000 },
    );
    assert.strictEqual(run.status, 0, run.stderr);
    assert.match(run.stdout, /^listening \d+\n$/);
  });
});
