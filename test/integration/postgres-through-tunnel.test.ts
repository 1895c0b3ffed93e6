/**
 * The topology of `pulumi up` with an in-cluster server: the program's process holds the tunnel
 * (lib/kube/tunnel.ts, here against test/support/fake-kube-api.ts in front of a real PostgreSQL),
 * and the serialized dynamic providers run in their own process (test/support/dynamic-provider-
 * host.ts) and connect to its local end. Moving from a direct route (a NodePort, as earlier
 * versions required) to the tunnel is no change; a pod that is not Ready fails the diff naming
 * the tunnel.
 */
import * as assert from "assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type * as K8s from "@kubernetes/client-node" with { "resolution-mode": "import" };
import { schemaMigrationsProvider } from "../../components/schema-migrations";
import { sqliteImportProvider } from "../../components/sqlite-import";
import { openPodTunnel, PodTunnel } from "../../lib/kube/tunnel";
import type { SqliteImportOutputs } from "../../lib/import/provider";
import { listMigrationNames } from "../../lib/postgres/migrator";
import { postgresSelector } from "../../lib/postgres/instance-spec";
import { describeTunnel } from "../../lib/postgres/tunnel";
import { generateTautulliDb } from "../../lib/samples/tautulli-db";
import { LoadedProvider } from "../support/dynamic-provider-host";
import { FakeKubeApi, startFakeKubeApi } from "../support/fake-kube-api";
import { freshDatabase } from "../support/postgres";

const k8s = require("@kubernetes/client-node") as typeof K8s;
const ALL = listMigrationNames();

describe("Postgres consumers through the Kubernetes API tunnel (real PostgreSQL)", function () {
  this.timeout(180_000);
  let api: FakeKubeApi;
  let tunnel: PodTunnel;
  let schemaProvider: LoadedProvider;
  let importProvider: LoadedProvider;
  let workDir: string;
  let directUrl: string;
  let tunnelUrl: string;
  let reachedAt: string;

  before(async () => {
    directUrl = await freshDatabase("tunnel_route");
    const direct = new URL(directUrl);
    api = await startFakeKubeApi("plex");
    api.addPod({
      name: "postgres-0",
      labels: postgresSelector("postgres"),
      phase: "Running",
      ready: true,
      target: { host: direct.hostname, port: Number(direct.port) },
    });
    const kc = new k8s.KubeConfig();
    kc.loadFromString(api.kubeconfig());
    tunnel = await openPodTunnel({
      kubeConfig: kc,
      namespace: "plex",
      target: { selector: postgresSelector("postgres") },
      remotePort: 5432,
      readyTimeoutSeconds: 0,
    });
    const viaTunnel = new URL(directUrl);
    viaTunnel.hostname = tunnel.host;
    viaTunnel.port = String(tunnel.port);
    tunnelUrl = viaTunnel.toString();
    reachedAt = describeTunnel({ name: "postgres", namespace: "plex", localPort: tunnel.port });
    schemaProvider = await LoadedProvider.load(schemaMigrationsProvider);
    importProvider = await LoadedProvider.load(sqliteImportProvider);
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-tunnel-route-"));
  });

  after(async () => {
    await schemaProvider?.close();
    await importProvider?.close();
    await tunnel?.close();
    await api?.close();
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  it("migrations and import made by the direct route see no change through the tunnel", async () => {
    const schemaInputs = { databaseUrl: directUrl, migrations: ALL, stamp: false };
    const schema = await schemaProvider.create<Record<string, unknown>>(schemaInputs);
    const throughTunnel = { ...schemaInputs, databaseUrl: tunnelUrl, reachedAt };
    assert.equal((await schemaProvider.diff(schema.id, schema.outs, throughTunnel)).changes, false);

    const sample = generateTautulliDb(path.join(workDir, "tautulli.db"), { plays: 40, seed: 5 });
    const importInputs = {
      databaseUrl: directUrl,
      source: { path: sample.path },
      overwrite: false,
      schemaVersion: ALL[ALL.length - 1],
      integrityCheck: "full",
    };
    const imported = await importProvider.create<SqliteImportOutputs>(importInputs);
    const forwardsBefore = api.forwards.length;
    const moved = await importProvider.diff(imported.id, imported.outs, {
      ...importInputs,
      databaseUrl: tunnelUrl,
      reachedAt,
    });
    assert.deepEqual([moved.changes, moved.replaces], [false, []]);
    assert.ok(
      api.forwards.length > forwardsBefore,
      "the diff asked the database through the tunnel",
    );

    // A state written before identities were recorded (its id was host:port): the database's
    // import stamp shows it is the same one, so no replacement; the update records the identity
    // without importing again.
    const { targetIdentity, ...legacy } = imported.outs;
    const fromLegacy = await importProvider.diff("tautulli-import:127.0.0.1:30432/x", legacy, {
      ...importInputs,
      databaseUrl: tunnelUrl,
      reachedAt,
    });
    assert.deepEqual([fromLegacy.changes, fromLegacy.replaces], [true, []]);
    const recorded = await importProvider.update<SqliteImportOutputs>("legacy", legacy, {
      ...importInputs,
      databaseUrl: tunnelUrl,
      reachedAt,
    });
    assert.equal(recorded.outs.targetIdentity, targetIdentity);
    assert.deepEqual(recorded.outs.report, imported.outs.report, "nothing was imported again");
  });

  it("a pod that is not Ready fails the diff naming the tunnel (no change is planned)", async () => {
    api.pods.get("postgres-0")!.ready = false;
    try {
      await assert.rejects(
        schemaProvider.diff(
          "x",
          {},
          { databaseUrl: tunnelUrl, migrations: ALL, stamp: false, reachedAt },
        ),
        (error: Error) => {
          assert.ok(
            error.message.startsWith(
              `cannot reach the Tautulli database at 127.0.0.1:${tunnel.port} (the program's tunnel through the Kubernetes API`,
            ),
            error.message,
          );
          assert.match(error.message, /warnings above/);
          return true;
        },
      );
      assert.match(
        tunnel.lastError() ?? "",
        /^no Ready pod for .* \(postgres-0 Running, not Ready\)/,
      );
    } finally {
      api.pods.get("postgres-0")!.ready = true;
    }
  });
});
