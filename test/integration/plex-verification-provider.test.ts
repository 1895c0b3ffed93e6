/**
 * The PlexVerification dynamic provider as the engine runs it: serialized and loaded in a plain
 * Node process (test/support/dynamic-provider-host.ts), reaching Plex through the Kubernetes
 * API: test/support/fake-kube-api.ts serves the pod, its port-forward (to
 * test/support/fake-plex.ts, answering as Plex Media Server) and pods/exec (the command runs on
 * this machine: real curl for the advertised address, real sh for the migration log).
 */
import * as assert from "assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { plexVerificationProvider } from "../../components/plex-verification";
import { chartResourceNames } from "../../lib/plex/chart";
import type {
  PlexVerificationInputs,
  PlexVerificationOutputs,
} from "../../lib/plex/verify-provider";
import { MIGRATION_LOG_IN_POD } from "../../lib/plex/verify-report";
import { LoadedProvider } from "../support/dynamic-provider-host";
import { FakeKubeApi, startFakeKubeApi } from "../support/fake-kube-api";
import { FakePlex } from "../support/fake-plex";

const MACHINE_ID = "4b1c2f9e0d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";
const VERSION = "1.41.3.9314-a0bfb8370";
const TOKEN = "pLexOnline-Token-7777";
const NAMES = chartResourceNames("plex");

describe("PlexVerification provider (serialized, through the Kubernetes API)", function () {
  let dir: string;
  let api: FakeKubeApi;
  let plex: FakePlex;
  let provider: LoadedProvider;
  let savedKubeconfig: string | undefined;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-verification-"));
    const movies = path.join(dir, "media", "movies");
    fs.mkdirSync(movies, { recursive: true });
    const items = Array.from({ length: 6 }, (_, i) => {
      const file = path.join(movies, `Movie ${i} (2020).mkv`);
      fs.writeFileSync(file, "media");
      return { ratingKey: String(100 + i), title: `Movie ${i}`, file };
    });
    plex = await new FakePlex({
      machineIdentifier: MACHINE_ID,
      version: VERSION,
      token: TOKEN,
      autoEmptyTrash: false,
      sections: [{ key: "1", title: "Movies", type: "movie", locations: [movies], items }],
    }).start();
    api = await startFakeKubeApi("plex");
    api.addPod({
      name: NAMES.pod,
      labels: { "app.kubernetes.io/name": "plex-media-server" },
      phase: "Running",
      ready: true,
      target: { host: "127.0.0.1", port: Number(new URL(plex.url).port) },
    });
    fs.writeFileSync(path.join(dir, "kubeconfig"), api.kubeconfig({ context: "homelab" }));
    // The engine's provider process reads the kubeconfig as kubectl does.
    savedKubeconfig = process.env.KUBECONFIG;
    process.env.KUBECONFIG = path.join(dir, "kubeconfig");
    provider = await LoadedProvider.load(plexVerificationProvider);
  });

  after(async () => {
    await provider?.close();
    if (savedKubeconfig === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = savedKubeconfig;
    await api?.close();
    await plex?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function inputs(over: Partial<PlexVerificationInputs> = {}): PlexVerificationInputs {
    return {
      kubernetes: {
        context: "homelab",
        namespace: "plex",
        podName: NAMES.pod,
        container: NAMES.pmsContainer,
      },
      plexToken: TOKEN,
      expected: { machineIdentifier: MACHINE_ID, version: VERSION },
      mediaVolumes: [
        {
          name: "media-movies",
          mountPath: path.join(dir, "media", "movies"),
          source: { kind: "nfs", server: "nas", path: "/movies" },
          readOnly: true,
        },
      ],
      advertisedUrl: plex.url,
      samplesPerSection: 3,
      releaseRevision: 1,
      migrationLog: path.join(dir, "config", ".plex-migrate", "import.log"),
      ...over,
    };
  }

  it("verifies through the tunnel, asks the advertised address from the pod, logs the report", async () => {
    const before = api.execs.length;
    const { id, outs } = await provider.create<PlexVerificationOutputs>(inputs());
    assert.equal(id, `plex-verification:plex/${NAMES.pod}`);
    assert.equal(outs.report.passed, true);
    assert.deepEqual(
      outs.report.sections.map((s) => [s.title, s.status, s.sampled, s.readable, s.items]),
      [["Movies", "readable", 3, 3, 6]],
    );
    assert.deepEqual(outs.report.advertised, {
      url: plex.url,
      answered: true,
      machineIdentifier: MACHINE_ID,
    });
    // Plex was read through the port-forward of the Plex pod, and only read.
    assert.ok(api.forwards.some((f) => f.pod === NAMES.pod && f.opened));
    assert.ok(plex.requests.every((r) => r.method === "GET" && !r.tokenInQuery));
    // Inside the pod: curl of the advertised /identity, then the log append; no token in either.
    const execs = api.execs.slice(before);
    assert.deepEqual(
      execs.map((e) => [e.pod, e.container, e.command[0]]),
      [
        [NAMES.pod, NAMES.pmsContainer, "curl"],
        [NAMES.pod, NAMES.pmsContainer, "sh"],
      ],
    );
    assert.equal(execs[0].command.at(-1), `${plex.url}/identity`);
    const logged = fs.readFileSync(inputs().migrationLog, "utf8");
    assert.match(
      logged,
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ plex-verify: Plex verification PASSED at /,
    );
    assert.match(
      logged,
      /plex-verify: {3}Movies \[movie\]: readable, 3\/3 sampled items readable \(of 6\)\n/,
    );
    assert.match(logged, /plex-verify: From outside the cluster: open https:\/\/app\.plex\.tv/);
    assert.match(logged, /plex-verify: Keep Plex's "Empty trash automatically after every scan"/);
    assert.equal(outs.summary.split("\n").length, logged.trimEnd().split("\n").length);
    for (const text of [JSON.stringify(outs.report), outs.summary, logged, JSON.stringify(execs)]) {
      assert.ok(!text.includes(TOKEN));
    }
  });

  it("fails up for another server, logging why, with no token in the error", async () => {
    const other = inputs({ expected: { machineIdentifier: "0".repeat(40), version: VERSION } });
    await assert.rejects(provider.create(other), (error: Error) => {
      assert.match(error.message, /a new, unclaimed server was created/);
      assert.ok(!error.message.includes(TOKEN));
      return true;
    });
    assert.match(
      fs.readFileSync(other.migrationLog, "utf8"),
      /plex-verify: Plex verification FAILED/,
    );
  });

  it("fails with what a rejected token means (401), never printing either token", async () => {
    const wrong = "a-rotated-token-123";
    await assert.rejects(provider.create(inputs({ plexToken: wrong })), (error: Error) => {
      assert.match(
        error.message,
        /rejected the server's own token \(HTTP 401 on \/library\/sections\)/,
      );
      assert.ok(!error.message.includes(wrong) && !error.message.includes(TOKEN));
      return true;
    });
    const logged = fs.readFileSync(inputs().migrationLog, "utf8");
    assert.match(
      logged,
      /plex-verify: Plex verification FAILED at \S+: Plex in the cluster .* rejected the server's own token/,
    );
    assert.ok(!logged.includes(wrong) && !logged.includes(TOKEN));
  });

  it("fails naming the pod and the port-forward's error when Plex does not answer", async () => {
    api.addPod({ name: "plex-silent-0", labels: {}, phase: "Running", ready: true });
    const silent = inputs({ kubernetes: { ...inputs().kubernetes, podName: "plex-silent-0" } });
    await assert.rejects(provider.create(silent), (error: Error) => {
      assert.match(
        error.message,
        /Plex in the cluster \(pod plex\/plex-silent-0\) did not answer \/identity/,
      );
      assert.match(
        error.message,
        /tunnel: port-forward to plex\/plex-silent-0 port 32400 failed: error forwarding port 32400/,
      );
      return true;
    });
  });

  it("reports an advertised address that does not answer from inside the cluster as a warning", async () => {
    const { outs } = await provider.create<PlexVerificationOutputs>(
      inputs({ advertisedUrl: "http://127.0.0.1:9" }),
    );
    assert.equal(outs.report.passed, true);
    assert.equal(outs.report.advertised.url, "http://127.0.0.1:9");
    assert.match(
      outs.report.warnings.join("\n"),
      /did not answer \/identity from inside the cluster \(curl: \(7\)/,
    );
  });

  it("verifies again only when an input changes", async () => {
    const { outs } = await provider.create<PlexVerificationOutputs>(inputs());
    assert.equal((await provider.diff("x", outs, inputs())).changes, false);
    assert.deepEqual(await provider.diff("x", outs, inputs({ releaseRevision: 2 })), {
      changes: true,
      replaces: [],
      deleteBeforeReplace: false,
    });
  });

  it("checks its inputs: an empty token names where it comes from", async () => {
    const { failures } = await provider.call<{ failures: { property: string; reason: string }[] }>(
      "check",
      {},
      inputs({ plexToken: "" }),
    );
    assert.deepEqual(
      failures.map((f) => f.property),
      ["plexToken"],
    );
    assert.match(failures[0].reason, /no PlexOnlineToken/);
  });

  it("appends to the init container's log in the config volume", () => {
    const script = fs.readFileSync(
      path.join(__dirname, "..", "..", "scripts", "plex-init.sh"),
      "utf8",
    );
    const configDir = /^CONFIG_DIR=\$\{PLEX_CONFIG_DIR:-(\S+)\}$/m.exec(script)?.[1];
    const stateDir = /^STATE_DIR=\$CONFIG_DIR\/(\S+)$/m.exec(script)?.[1];
    const logFile = /^LOG_FILE=\$STATE_DIR\/(\S+)$/m.exec(script)?.[1];
    assert.equal(MIGRATION_LOG_IN_POD, `${configDir}/${stateDir}/${logFile}`);
  });
});
