/**
 * The whole program (index.ts) under Pulumi mocks, with the example stack files: the resource
 * graph a real `pulumi up` would get. Parents, ordering edges, secrets, stack differences and
 * the effect of every config key.
 */
import * as assert from "assert";
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";
import { projectConfigDeclarations } from "../../lib/config";
import {
  isSecretInput,
  MockRun,
  plainStrings,
  Registration,
  rerunProgram,
  runWithMocks,
  unwrap,
} from "../support/pulumi-mocks";
import { resolveConfigSize } from "../../lib/plex/sizing";
import { remoteCommandLine } from "../../lib/source-vm/commands";
import {
  DestroyStep,
  planDestroy,
  planUpdate,
  transitiveDependencies,
  vmCommands,
} from "../support/engine-model";
import { SAMPLE_LIBRARY_BYTES, sourceVmCommandOutputs } from "../support/fake-vm/mock-outputs";
import { tunnelPortFor } from "../../lib/postgres/tunnel";

const ROOT = path.resolve(__dirname, "..", "..");
const SSH_KEY =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nTEST-SSH-KEY-MATERIAL\n-----END OPENSSH PRIVATE KEY-----";
const PG_ADMIN_PASSWORD = "TEST-PG-ADMIN-PASSWORD";
const CLAIM_TOKEN = "claim-TEST-CLAIM-TOKEN";
const SECRET_KEYS = ["sshPrivateKey", "postgresAdminPassword", "plexClaimToken"];

const CMD = "command:remote:Command";
const RELEASE = "kubernetes:helm.sh/v3:Release";
const SCHEMA = "pulumi-nodejs:dynamic/plex-migrate:SchemaMigrations";
const IMPORT = "pulumi-nodejs:dynamic/plex-migrate:SqliteImport";
/** The dev stack's tunnel to its in-cluster Postgres: a port fixed by the stack name. */
const DEV_TUNNEL_PORT = tunnelPortFor("plex-migrate", "dev");

/**
 * The stack files the program is run with: "dev" is the home-lab example (the neutral
 * Pulumi.dev.yaml sets almost nothing; test/unit/config.test.ts checks it), "prod" Pulumi.prod.yaml.
 */
const STACK_FILES: Record<string, string> = {
  dev: "examples/Pulumi.homelab.yaml",
  prod: "Pulumi.prod.yaml",
};

/** Values of the stack's file without the project prefix. */
function stackFile(stack: string): Record<string, unknown> {
  const file = YAML.parse(fs.readFileSync(path.join(ROOT, STACK_FILES[stack]), "utf8"));
  return Object.fromEntries(
    Object.entries(file.config as Record<string, unknown>).map(([k, v]) => [
      k.replace(/^plex-migrate:/, ""),
      v,
    ]),
  );
}

const dynamicOutputs = {
  [SCHEMA]: () => ({
    applied: ["20261201000000-create-tautulli-tables"],
    schemaVersion: "20261201000000-create-tautulli-tables",
  }),
  [IMPORT]: () => ({ summary: "Imported 12 rows", sourceFingerprint: "f".repeat(64), report: {} }),
};

/** The stack's file, its secrets as `pulumi config set --secret` holds them, then `overrides`. */
function stackConfig(stack: string, overrides: Record<string, unknown>): Record<string, unknown> {
  return {
    ...stackFile(stack),
    sshPrivateKey: SSH_KEY,
    postgresAdminPassword: PG_ADMIN_PASSWORD,
    plexClaimToken: CLAIM_TOKEN,
    ...overrides,
  };
}

async function runStack(stack: string, overrides: Record<string, unknown> = {}): Promise<MockRun> {
  return runWithMocks(() => rerunProgram("index.ts"), {
    stack,
    config: stackConfig(stack, overrides),
    secretKeys: SECRET_KEYS,
    outputs: { [CMD]: sourceVmCommandOutputs(), ...dynamicOutputs },
  });
}

/**
 * `pulumi preview` of the stack: resources named in `recorded` are in the state with the same
 * inputs (their outputs known), every other one would be created (its outputs unknown).
 */
async function previewStack(
  stack: string,
  overrides: Record<string, unknown> = {},
  recorded: string[] = [],
): Promise<MockRun> {
  return runWithMocks(() => rerunProgram("index.ts"), {
    stack,
    config: stackConfig(stack, overrides),
    secretKeys: SECRET_KEYS,
    preview: true,
    recorded,
    outputs: { [CMD]: sourceVmCommandOutputs(), ...dynamicOutputs },
  });
}

/** The Node SDK's marker of a value a preview does not know (sdk/nodejs/runtime/rpc.ts). */
const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** URNs reachable from `from` through dependencies (explicit and per-property) and parents' deps. */
function dependsTransitively(run: MockRun, from: Registration, to: Registration): boolean {
  const byUrn = new Map(run.registrations.map((r) => [r.urn, r]));
  const seen = new Set<string>();
  const stack = [from.urn];
  while (stack.length > 0) {
    const urn = stack.pop()!;
    if (urn === to.urn) return true;
    if (seen.has(urn)) continue;
    seen.add(urn);
    const r = byUrn.get(urn);
    if (!r) continue;
    stack.push(...r.dependencies, ...Object.values(r.propertyDependencies).flat());
  }
  return false;
}

function command(run: MockRun, step: string): Registration {
  const found = run.byType(CMD).filter((r) => r.name === `source-vm-${step}`);
  assert.strictEqual(found.length, 1, `one ${step} command`);
  return found[0];
}

describe("the program (index.ts) under Pulumi mocks", function () {
  this.timeout(120_000);
  let dev: MockRun;
  let prod: MockRun;

  before(async () => {
    dev = await runStack("dev");
    prod = await runStack("prod");
  });

  it("creates the six components, each under the stack, and every resource under a parent", () => {
    const stackUrn = dev.get("pulumi:pulumi:Stack", "plex-migrate-dev").urn;
    const components = dev.registrations.filter((r) => r.type.startsWith("plex-migrate:"));
    assert.deepStrictEqual(components.map((r) => r.type).sort(), [
      "plex-migrate:plex:ConfigVolume",
      "plex-migrate:plex:Release",
      "plex-migrate:postgres:Database",
      "plex-migrate:postgres:Instance",
      "plex-migrate:source:Vm",
    ]);
    for (const c of components)
      assert.strictEqual(c.parentUrn, stackUrn, `${c.type} under the stack`);
    for (const type of [SCHEMA, IMPORT, "pulumi:providers:kubernetes"]) {
      assert.strictEqual(dev.byType(type)[0].parentUrn, stackUrn, type);
    }
    // Everything else belongs to one of the components.
    const componentUrns = new Set(components.map((c) => c.urn));
    const topLevel = new Set([stackUrn, ...componentUrns]);
    for (const r of dev.registrations) {
      if (r.type === "pulumi:pulumi:Stack" || r.parentUrn === stackUrn) continue;
      let parent = dev.registrations.find((p) => p.urn === r.parentUrn);
      while (parent && !componentUrns.has(parent.urn)) {
        parent = dev.registrations.find((p) => p.urn === parent!.parentUrn);
      }
      assert.ok(parent && topLevel.has(parent.urn), `${r.type} ${r.name} belongs to a component`);
    }
  });

  it("deploys every Kubernetes resource through the stack's own provider (its kubeContext)", () => {
    const provider = dev.get("pulumi:providers:kubernetes", "cluster");
    assert.strictEqual(provider.inputs.context, "homelab");
    for (const r of dev.registrations.filter((x) => x.type.startsWith("kubernetes:"))) {
      assert.ok(
        r.provider.startsWith(`${provider.urn}::`),
        `${r.type} ${r.name} uses the cluster provider`,
      );
    }
  });

  it("orders the work by data flow", () => {
    const release = dev.byType(RELEASE)[0];
    const schema = dev.byType(SCHEMA)[0];
    const tautulliImport = dev.byType(IMPORT)[0];
    const warmCopy = dev.get("kubernetes:batch/v1:Job", "plex-warm-copy");
    assert.ok(
      dependsTransitively(dev, command(dev, "authorize-sync"), command(dev, "preflight")),
      "authorize-sync after preflight",
    );
    assert.ok(
      dependsTransitively(dev, warmCopy, command(dev, "authorize-sync")),
      "the warm copy after the key is authorized",
    );
    assert.ok(dependsTransitively(dev, command(dev, "stop"), warmCopy), "stop after the warm copy");
    assert.ok(dependsTransitively(dev, release, command(dev, "stop")), "final sync after the stop");
    assert.ok(dependsTransitively(dev, tautulliImport, schema), "import after the migrations");
    assert.ok(
      dependsTransitively(dev, tautulliImport, command(dev, "stop")),
      "import after Tautulli stopped",
    );
    const database = dev.byType("postgresql:index/database:Database")[0];
    assert.ok(dependsTransitively(dev, schema, database), "migrations after the database exists");
    const revoke = command(dev, "revoke-sync");
    assert.ok(dependsTransitively(dev, revoke, release), "revoke after the Plex release");
    assert.ok(dependsTransitively(dev, revoke, tautulliImport), "revoke after the import");
    // And never the other way round (Plex is not stopped before its library is on the volume).
    assert.ok(!dependsTransitively(dev, warmCopy, command(dev, "stop")));
    assert.ok(!dependsTransitively(dev, command(dev, "stop"), release));
  });

  it("gives the Tautulli import its exact inputs: the snapshot over SSH and the database secret", () => {
    const tautulliImport = dev.byType(IMPORT)[0];
    const { __provider, ...inputs } = tautulliImport.inputs;
    assert.match(String(__provider), /exports\.handler/, "the serialized provider travels with it");
    assert.deepStrictEqual(inputs, {
      databaseUrl: `postgres://tautulli:mock-password-tautulli-db-role-password-0123456789@127.0.0.1:${DEV_TUNNEL_PORT}/tautulli`,
      reachedAt: `127.0.0.1:${DEV_TUNNEL_PORT} (the program's tunnel through the Kubernetes API to the Ready pod app.kubernetes.io/name=postgres,app.kubernetes.io/instance=postgres in namespace plex, port 5432)`,
      // The stop step's snapshot, fetched over the admin SSH connection with the host key pinned.
      source: {
        ssh: {
          host: stackFile("dev").vmHost,
          port: 22,
          user: stackFile("dev").vmUser,
          sudo: true,
          hostKey: stackFile("dev").vmHostKey,
          privateKey: SSH_KEY,
        },
        path: "/var/lib/plex-migrate/snapshot/tautulli.db",
        sha256: "b".repeat(64),
        bytes: 52428800,
      },
      overwrite: false,
      schemaVersion: "20261201000000-create-tautulli-tables",
      integrityCheck: "full",
    });
    assert.ok(isSecretInput(tautulliImport, "databaseUrl"), "database URL is secret");
    assert.ok(
      isSecretInput(tautulliImport, "source.ssh"),
      "the SSH connection (its key) is secret",
    );
    assert.ok(tautulliImport.additionalSecretOutputs.includes("databaseUrl"));
  });

  it("reaches the in-cluster Postgres only through the tunnel: every consumer is wired to it", async () => {
    // One tunnel, through the stack's kubeContext, to the server's pod; no endpoint configured.
    assert.strictEqual(stackFile("dev").postgresEndpoint, undefined);
    assert.deepStrictEqual(dev.tunnels, [
      {
        context: stackFile("dev").kubeContext,
        namespace: "plex",
        target: {
          selector: {
            "app.kubernetes.io/name": "postgres",
            "app.kubernetes.io/instance": "postgres",
          },
        },
        remotePort: 5432,
        localPort: DEV_TUNNEL_PORT,
      },
    ]);
    const local = `127.0.0.1:${DEV_TUNNEL_PORT}`;
    const provider = dev.byType("pulumi:providers:postgresql")[0].inputs;
    assert.strictEqual(`${provider.host}:${provider.port}`, local, "role, database, grant");
    const login = dev.byType("pulumi-nodejs:dynamic/plex-migrate:PostgresAdminLogin")[0].inputs;
    assert.strictEqual(`${login.host}:${login.port}`, local, "the admin login check");
    for (const type of [SCHEMA, IMPORT]) {
      const url = new URL(String(dev.byType(type)[0].inputs.databaseUrl));
      assert.strictEqual(url.host, local, type);
    }
    // Pods keep using the Service; the Service publishes nothing.
    const connection = dev.get("kubernetes:core/v1:Secret", "tautulli-db-connection").inputs
      .stringData as Record<string, string>;
    assert.strictEqual(`${connection.host}:${connection.port}`, "postgres.plex.svc:5432");
    const service = dev.get("kubernetes:core/v1:Service", "postgres").inputs.spec as {
      type: string;
    };
    assert.strictEqual(service.type, "ClusterIP");
    // An external server is reached directly: no tunnel.
    assert.deepStrictEqual(prod.tunnels, []);
    // A second run with the same config has the same inputs everywhere.
    const again = await runStack("dev");
    const inputsOf = (run: MockRun) =>
      Object.fromEntries(run.registrations.map((r) => [r.urn, r.rawInputs]));
    assert.deepStrictEqual(inputsOf(again), inputsOf(dev));
  });

  it("keeps every secret out of plain inputs and plain stack outputs", async () => {
    const generated = dev
      .byType("random:index/randomPassword:RandomPassword")
      .map((r) => `mock-password-${r.name}-0123456789`);
    assert.ok(generated.length >= 1, "generated passwords (app role, admin) exist");
    for (const run of [dev, prod]) {
      const secrets = [
        SSH_KEY,
        "TEST-SSH-KEY-MATERIAL",
        PG_ADMIN_PASSWORD,
        CLAIM_TOKEN,
        ...generated,
      ];
      for (const r of run.registrations) {
        for (const text of plainStrings(r.rawInputs)) {
          for (const secret of secrets) {
            assert.ok(!text.includes(secret), `${r.type} ${r.name} has a secret in a plain input`);
          }
        }
      }
      for (const [name, value] of Object.entries(run.exports)) {
        const { value: resolved, secret } = await unwrap(value as never);
        if (secret) continue;
        const text = JSON.stringify(resolved) ?? "";
        for (const s of secrets)
          assert.ok(!text.includes(s), `stack output ${name} leaks a secret`);
      }
    }
  });

  it("exports the outputs users read after the move (README: Stack outputs)", async () => {
    for (const name of [
      "plexUrl",
      "plexConfigClaim",
      "plexConfigSize",
      "plexVersion",
      "postgresService",
      "tautulliConnectionSecret",
      "importSummary",
    ]) {
      assert.ok(name in dev.exports, name);
    }
    assert.strictEqual(
      (await unwrap(dev.exports.plexVersion as never)).value,
      "1.41.3.9314-a0bfb8370",
    );
    assert.strictEqual(
      (await unwrap(dev.exports.tautulliConnectionSecret as never)).value,
      "plex/tautulli-database",
    );
    assert.strictEqual(
      (await unwrap(dev.exports.importSummary as never)).value,
      "Imported 12 rows",
    );
  });

  it("protects the data-holding resources unless protectData is false", async () => {
    const dataHolding = (run: MockRun) =>
      run.registrations.filter(
        (r) =>
          r.type === "kubernetes:core/v1:PersistentVolumeClaim" ||
          r.type === "postgresql:index/database:Database" ||
          (r.type === "kubernetes:apps/v1:StatefulSet" &&
            JSON.stringify(r.inputs).includes("volumeClaimTemplates")),
      );
    assert.ok(dataHolding(dev).length >= 3, "config PVC, Postgres volume, database");
    for (const r of dataHolding(dev)) {
      assert.ok(r.protect, `${r.type} ${r.name} is protected`);
      assert.ok(r.retainOnDelete, `${r.type} ${r.name} is retained on delete`);
    }
    const unprotected = await runStack("dev", { protectData: false });
    for (const r of dataHolding(unprotected))
      assert.ok(!r.protect, `${r.type} ${r.name} not protected`);
  });

  it("turns the dev and prod stack files into the differences their values say", () => {
    // dev creates its namespace and runs Postgres in the cluster; prod uses existing ones.
    assert.strictEqual(dev.byType("kubernetes:core/v1:Namespace").length, 1);
    assert.strictEqual(prod.byType("kubernetes:core/v1:Namespace").length, 0);
    assert.strictEqual(dev.byType("kubernetes:apps/v1:StatefulSet").length, 1);
    assert.strictEqual(prod.byType("kubernetes:apps/v1:StatefulSet").length, 0);
    assert.strictEqual(prod.get("pulumi:providers:kubernetes", "cluster").inputs.context, "prod");

    interface ReleaseValues {
      service: { type: string };
      ingress?: { enabled: boolean };
      extraVolumes: unknown[];
      extraVolumeMounts: { mountPath: string }[];
    }
    const devRelease = dev.byType(RELEASE)[0].inputs as {
      name: string;
      namespace: string;
      values: ReleaseValues;
    };
    const prodRelease = prod.byType(RELEASE)[0].inputs as typeof devRelease;
    assert.strictEqual(devRelease.name, "plex");
    assert.strictEqual(prodRelease.name, "plex-media-server");
    assert.strictEqual(devRelease.namespace, "plex");
    assert.strictEqual(prodRelease.namespace, "media");
    assert.strictEqual(devRelease.values.service.type, "LoadBalancer");
    assert.strictEqual(
      (devRelease.values as { extraEnv?: Record<string, string> }).extraEnv?.ADVERTISE_IP,
      "http://192.168.13.40:32400",
    );
    assert.strictEqual(prodRelease.values.service.type, "ClusterIP");
    assert.ok(!devRelease.values.ingress?.enabled);
    assert.strictEqual(prodRelease.values.ingress?.enabled, true);
    assert.match(JSON.stringify(prodRelease.values.ingress), /plex\.example\.com/);
    assert.match(JSON.stringify(prodRelease.values.ingress), /plex-example-com-tls/);

    const devVolumes = JSON.stringify(devRelease.values.extraVolumes);
    const prodVolumes = JSON.stringify(prodRelease.values.extraVolumes);
    assert.match(devVolumes, /"nfs":\{[^}]*"server":"192\.168\.13\.5"/);
    assert.match(prodVolumes, /"hostPath":\{[^}]*"path":"\/data\/media\/movies"/);
    assert.match(prodVolumes, /"claimName":"media-tv"/);
    const mounts = (values: ReleaseValues) => values.extraVolumeMounts.map((m) => m.mountPath);
    assert.ok(mounts(devRelease.values).includes("/mnt/nas-plex"));
    assert.ok(mounts(prodRelease.values).includes("/srv/media/tv"));

    const pvc = (run: MockRun) => {
      const plex = run.get("plex-migrate:plex:ConfigVolume", "plex");
      const claims = run
        .childrenOf(plex)
        .filter((r) => r.type === "kubernetes:core/v1:PersistentVolumeClaim");
      assert.strictEqual(claims.length, 1, "one config claim");
      return claims[0].inputs as {
        spec: { storageClassName: string; resources: { requests: { storage: string } } };
      };
    };
    assert.strictEqual(pvc(dev).spec.storageClassName, "proxmox-zpool");
    assert.strictEqual(pvc(prod).spec.storageClassName, "ceph-block");
    assert.strictEqual(pvc(prod).spec.resources.requests.storage, "200Gi");
    // auto: the measured 12 GiB library + 50% headroom, as formatted ext4 must hold it (the
    // sizing rule is lib/plex/sizing.ts, tested there with exact values).
    assert.strictEqual(
      pvc(dev).spec.resources.requests.storage,
      resolveConfigSize("auto", SAMPLE_LIBRARY_BYTES, 50).quantity,
    );

    const connection = (run: MockRun) =>
      command(run, "preflight").inputs.connection as Record<string, unknown>;
    assert.strictEqual(connection(dev).user, "alex");
    assert.strictEqual(connection(prod).user, "root");
    // Both pin the VM's ed25519 host key (required: lib/source-vm/host-key.ts).
    assert.match(String(connection(dev).hostKey), /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINowGt/);
    assert.match(String(connection(prod).hostKey), /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhVWJ/);

    const pgProvider = (run: MockRun) =>
      run.byType("pulumi:providers:postgresql")[0].inputs as Record<string, unknown>;
    assert.strictEqual(pgProvider(prod).host, "pg.prod.internal");
    assert.strictEqual(pgProvider(prod).sslmode, "verify-full");
    assert.strictEqual(pgProvider(dev).host, "127.0.0.1");
    assert.strictEqual(
      String(pgProvider(dev).port),
      String(DEV_TUNNEL_PORT),
      "provider inputs travel as strings",
    );
    const role = (run: MockRun) =>
      run.byType("postgresql:index/role:Role")[0].inputs as { name: string };
    assert.strictEqual(role(dev).name, "tautulli");
    assert.strictEqual(role(prod).name, "tautulli_app");
  });

  describe("every config key changes what gets deployed", () => {
    // A valid alternative for every key, against the dev stack.
    const alternatives: Record<string, unknown> = {
      vmHost: "192.168.13.99",
      vmPort: 2222,
      vmUser: "root",
      vmSudo: false,
      vmHostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhVWJ2m6JqfJvVtN6pKQ0fO9g5Y2oYdJ3sLw1bq3mXn",
      sshPrivateKey:
        "-----BEGIN OPENSSH PRIVATE KEY-----\nOTHER\n-----END OPENSSH PRIVATE KEY-----",
      vmWorkDir: "/srv/plex-migrate",
      plexDataDir: "/srv/plex/Library/Application Support/Plex Media Server",
      plexService: "plex",
      tautulliService: "tautulli-docker",
      tautulliDbPath: "/config/tautulli.db",
      syncHost: "plex-vm.lan",
      syncPort: 2222,
      syncAllowedCidrs: ["10.0.0.0/8"],
      warmCopyTimeoutMinutes: 60,
      rollbackOnDestroy: true,
      transferGeneration: 2,
      tautulliImportGeneration: 2,
      vmRetired: true,
      kubeContext: "other",
      namespace: "media",
      createNamespace: false,
      plexReleaseName: "pms",
      plexChartVersion: "1.4.0",
      plexChartRepo: "https://charts.example.com/plex",
      plexImageTag: "1.41.4.9463-630c9f557",
      plexInitImage: "alpine:3.21",
      plexConfigStorageClass: "local-path",
      plexConfigSize: "300Gi",
      plexConfigHeadroomPercent: 100,
      plexMediaVolumes: ["/mnt/media=pvc://media"],
      plexUid: 1001,
      plexGid: 1001,
      plexClaimToken: "claim-OTHER",
      plexNetworking: "host",
      plexAddress: "192.168.13.41",
      plexAdvertiseUrls: ["http://plex.example.net:32400"],
      plexTimezone: "America/New_York",
      plexSupplementalGroups: "44,1001",
      plexClusterNetworks: ["10.42.0.0/16"],
      plexNodeSelector: ["kubernetes.io/hostname=node-1"],
      plexHardwareTranscoding: "intel",
      plexPodSecurity: "auto",
      plexIngressHost: "plex.home.arpa",
      plexIngressClass: "traefik",
      plexIngressTlsSecret: "plex-tls",
      plexCpuRequest: "500m",
      plexMemoryRequest: "1Gi",
      plexMemoryLimit: "6Gi",
      postgresMode: "external",
      postgresVersion: "16",
      postgresStorageSize: "20Gi",
      postgresStorageClass: "local-path",
      postgresEndpoint: "192.168.13.31:31432",
      postgresTunnelPort: 24001,
      postgresHost: "db.lan",
      postgresPort: 5433,
      postgresAdminUser: "pgadmin",
      postgresAdminPassword: "OTHER-PASSWORD",
      postgresSslMode: "verify-full",
      tautulliDatabase: "tautulli_history",
      tautulliRole: "tautulli_rw",
      tautulliSecretName: "tautulli-pg",
      importOverwrite: true,
      importIntegrityCheck: "quick",
      protectData: false,
    };
    // Keys that only mean something next to another value: [baseline, changed] overrides, so
    // that only the key itself differs between the two runs.
    const external = { postgresMode: "external", postgresHost: "db.lan" };
    const ingress = {
      plexNetworking: "ingress",
      plexAddress: "",
      plexIngressHost: "plex.home.arpa",
    };
    const pairs: Record<string, [Record<string, unknown>, Record<string, unknown>]> = {
      postgresMode: [{}, external],
      postgresHost: [external, { ...external, postgresHost: "db2.lan" }],
      postgresPort: [external, { ...external, postgresPort: 5433 }],
      postgresSslMode: [external, { ...external, postgresSslMode: "verify-full" }],
      postgresEndpoint: [external, { ...external, postgresEndpoint: "192.168.13.31:31432" }],
      plexIngressHost: [ingress, { ...ingress, plexIngressHost: "plex2.home.arpa" }],
      plexIngressClass: [ingress, { ...ingress, plexIngressClass: "traefik" }],
      plexIngressTlsSecret: [ingress, { ...ingress, plexIngressTlsSecret: "plex-tls" }],
    };

    /** The deployment as data: every registration's type, name, inputs and options. */
    function deployment(run: MockRun): Map<string, string> {
      return new Map(
        run.registrations.map((r) => [
          `${r.type}::${r.name}`,
          JSON.stringify([r.rawInputs, r.protect, r.retainOnDelete, r.dependencies.length]),
        ]),
      );
    }

    let devDeployment: Map<string, string>;
    before(async () => {
      devDeployment = deployment(dev);
    });

    it("has an alternative for every declared key", () => {
      assert.deepStrictEqual(
        Object.keys(projectConfigDeclarations()).filter((k) => !(k in alternatives)),
        [],
      );
    });

    for (const [key, value] of Object.entries(alternatives)) {
      it(`${key}`, async () => {
        const [before, after] = pairs[key] ?? [{}, { [key]: value }];
        const baseline =
          Object.keys(before).length > 0
            ? deployment(await runStack("dev", before))
            : devDeployment;
        const run = await runStack("dev", after);
        const changed = deployment(run);
        const differs =
          changed.size !== baseline.size || [...changed].some(([k, v]) => baseline.get(k) !== v);
        assert.ok(differs, `setting ${key} to ${JSON.stringify(value)} changed nothing`);
      });
    }
  });
});

// `pulumi destroy` of the real program's graph, as the engine schedules it
// (test/support/engine-model.ts cites pulumi/pulumi pkg/resource/deploy for each rule).
describe("pulumi destroy of the program (the real graph under the engine's rules)", function () {
  this.timeout(120_000);
  const HOOKS = ["source-vm-on-destroy-revoke-sync", "source-vm-on-destroy-rollback"];
  const runs = (steps: DestroyStep[]) =>
    steps.filter((s) => s.runs).map((s) => `${s.name}: ${s.runs}`);

  it("no protected or retained resource depends on a destroy hook, in either stack", async () => {
    for (const stack of ["dev", "prod"]) {
      for (const protectData of [true, false]) {
        const run = await runStack(stack, { rollbackOnDestroy: true, protectData });
        const hooks = HOOKS.map((h) => run.get(CMD, h).urn);
        const kept = run.registrations.filter((r) => r.protect || r.retainOnDelete);
        assert.ok(kept.length >= 1, `${stack}: the data-holding resources are protected/retained`);
        for (const r of kept) {
          const deps = transitiveDependencies(run.registrations, r);
          for (const hook of hooks) assert.ok(!deps.has(hook), `${stack}: ${r.name} -> ${hook}`);
        }
      }
    }
  });

  it("protectData true: the data is refused, the hooks run after the Plex release is gone", async () => {
    const steps = planDestroy((await runStack("dev", { rollbackOnDestroy: true })).registrations);
    const refused = steps.filter((s) => s.outcome === "refused (protected)").map((s) => s.name);
    assert.ok(refused.includes("plex-config"), refused.join());
    const vmUser = { user: String(stackFile("dev").vmUser), sudo: true };
    assert.deepEqual(runs(steps).sort(), [
      `source-vm-on-destroy-revoke-sync: ${remoteCommandLine("revoke-sync", vmUser)}`,
      `source-vm-on-destroy-rollback: ${remoteCommandLine("rollback", vmUser)}`,
    ]);
    const names = steps.map((s) => s.name);
    const release = names.indexOf("plex-chart");
    assert.ok(release >= 0 && steps[release].outcome === "deleted", "the release is deleted");
    for (const hook of HOOKS) assert.ok(release < names.indexOf(hook), `${hook} after the release`);
  });

  it("protectData false: nothing is refused or skipped, the claim and namespace are retained", async () => {
    const steps = planDestroy(
      (await runStack("dev", { rollbackOnDestroy: true, protectData: false })).registrations,
    );
    assert.deepEqual(
      steps.filter((s) => s.outcome === "refused (protected)" || s.outcome === "skipped"),
      [],
    );
    assert.equal(steps.find((s) => s.name === "plex-config")?.outcome, "retained");
    assert.equal(runs(steps).length, 2);
  });
});

// `pulumi preview`: the program runs with what the engine knows. On a fresh stack no VM step has
// run, so every VM output is unknown (a create in a dry run returns only its inputs,
// pulumi-go-provider infer/resource.go); steps already in the state keep their recorded outputs
// (pulumi/pulumi pkg/resource/deploy/step.go SameStep.Apply).
describe("pulumi preview of the program", function () {
  this.timeout(120_000);
  const keys = (run: MockRun) => run.registrations.map((r) => `${r.type}::${r.name}`).sort();
  let full: MockRun;
  before(async () => {
    full = await runStack("dev");
  });

  it("a fresh stack: every VM output unknown, the program still plans every resource", async () => {
    const preview = await previewStack("dev");
    assert.deepStrictEqual(keys(preview), keys(full));
    // What the preflight measures is not known yet: the claim's size waits for it.
    const claim = preview.get("kubernetes:core/v1:PersistentVolumeClaim", "plex-config");
    assert.ok(JSON.stringify(claim.rawInputs).includes(UNKNOWN), "claim size unknown");
    assert.ok(!JSON.stringify(full.get(claim.type, claim.name).rawInputs).includes(UNKNOWN));
    // The stack outputs measured on the VM are unknown too (OutputImpl.isKnown, sdk/nodejs/output.ts).
    const isKnown = (run: MockRun, name: string) =>
      (run.exports[name] as { isKnown: Promise<boolean> }).isKnown;
    for (const name of ["plexVersion", "plexConfigSize", "plexImageTag"]) {
      assert.strictEqual(await isKnown(preview, name), false, name);
      assert.strictEqual(await isKnown(full, name), true, name);
    }
  });

  it("vmRetired on a stack whose steps never ran: refused, naming the step and the fix", async () => {
    await assert.rejects(previewStack("dev", { vmRetired: true }), (err: Error) => {
      assert.match(
        err.message,
        /vmRetired is true, but the VM steps source-vm-preflight, source-vm-authorize-sync have not run in this stack/,
      );
      assert.match(
        err.message,
        /Fix: while the VM is still reachable, pulumi config set vmRetired false/,
      );
      return true;
    });
  });

  it("vmRetired after the up that ran every step: the preview passes and nothing can contact the VM", async () => {
    const steps = full.byType(CMD).map((r) => r.name);
    const preview = await previewStack("dev", { vmRetired: true, rollbackOnDestroy: true }, steps);
    const commands = preview.byType(CMD);
    // The steps stay (frozen, their recorded outputs feed the cluster side); revoke-sync is
    // dropped (it has no delete, so dropping it runs nothing); the hooks keep no delete.
    assert.deepStrictEqual(
      commands.map((r) => r.name).sort(),
      steps.filter((n) => n !== "source-vm-revoke-sync").sort(),
    );
    for (const hook of commands.filter((r) => r.name.includes("on-destroy"))) {
      assert.strictEqual(hook.inputs.delete, undefined, hook.name);
      assert.strictEqual(hook.inputs.create, undefined, hook.name);
      assert.strictEqual(hook.inputs.update, undefined, hook.name);
    }
  });

  it("vmRetired after a stop step that failed: refused, naming the stop step", async () => {
    const steps = full.byType(CMD).map((r) => r.name);
    await assert.rejects(
      previewStack(
        "dev",
        { vmRetired: true },
        steps.filter((n) => n !== "source-vm-stop"),
      ),
      /the VM step source-vm-stop has not run in this stack/,
    );
  });

  it("vmRetired with a raised transferGeneration: refused, since the new steps would need the VM", async () => {
    const steps = full.byType(CMD).map((r) => r.name);
    await assert.rejects(
      previewStack("dev", { vmRetired: true, transferGeneration: 2 }, steps),
      /the VM steps source-vm-preflight-gen-2, source-vm-authorize-sync-gen-2 have not run/,
    );
  });
});

// A later `pulumi up` of the program with one setting changed, against the state the first `up`
// left: which resources the engine changes and which VM commands run (test/support/engine-model.ts
// applies pulumi/pulumi's processIgnoreChanges and pulumi-command's create/update/delete rules).
describe("a later pulumi up of the program, one setting changed", function () {
  this.timeout(180_000);
  const JOB = "kubernetes:batch/v1:Job";
  const HOOK_UPDATES = [
    `update ${CMD}::source-vm-on-destroy-revoke-sync`,
    `update ${CMD}::source-vm-on-destroy-rollback`,
  ];
  let first: MockRun;
  before(async () => {
    first = await runStack("dev");
  });
  const changed = async (overrides: Record<string, unknown>) => {
    const plan = planUpdate(first.registrations, (await runStack("dev", overrides)).registrations);
    return {
      plan,
      vm: vmCommands(plan),
      notSame: plan.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.type}::${s.name}`),
    };
  };
  const vmUser = () => ({ user: String(stackFile("dev").vmUser), sudo: true });

  it("the same inputs: every resource the same, no VM command", async () => {
    const { notSame, vm } = await changed({});
    assert.deepStrictEqual(notSame, []);
    assert.deepStrictEqual(vm, []);
  });

  it("a new VM host key or SSH key: only the hooks record it, no VM command", async () => {
    for (const overrides of [
      {
        vmHostKey:
          "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhVWJ2m6JqfJvVtN6pKQ0fO9g5Y2oYdJ3sLw1bq3mXn",
      },
      {
        sshPrivateKey:
          "-----BEGIN OPENSSH PRIVATE KEY-----\nROTATED\n-----END OPENSSH PRIVATE KEY-----",
      },
    ]) {
      const { notSame, vm } = await changed(overrides);
      assert.deepStrictEqual(
        notSame.filter((s) => s.includes(CMD)).sort(),
        HOOK_UPDATES,
        JSON.stringify(overrides),
      );
      assert.deepStrictEqual(vm, []);
    }
  });

  it("a new VM address: the hooks, the warm Job and the Plex pod's init container record it, no VM command", async () => {
    const { notSame, vm } = await changed({ vmHost: "192.168.13.99" });
    assert.deepStrictEqual(vm, []);
    assert.deepStrictEqual(notSame.filter((s) => s.includes(CMD)).sort(), HOOK_UPDATES);
    // Both copies run again, and find the volume's marker: nothing is copied.
    assert.ok(notSame.includes(`replace kubernetes:batch/v1:Job::plex-warm-copy`), notSame.join());
    assert.ok(notSame.includes(`update ${RELEASE}::plex-chart`), notSame.join());
  });

  it("a Kubernetes setting: its object is updated, no VM step changes", async () => {
    const { notSame, vm } = await changed({ plexMemoryLimit: "6Gi" });
    assert.deepStrictEqual(notSame, [`update ${RELEASE}::plex-chart`]);
    assert.deepStrictEqual(vm, []);
  });

  it("transferGeneration 2: the whole transfer again, the warm copy and the Plex pod too", async () => {
    const { notSame, vm } = await changed({ transferGeneration: 2 });
    assert.deepStrictEqual(vm, [
      `source-vm-preflight-gen-2: ${remoteCommandLine("preflight", vmUser())}`,
      `source-vm-authorize-sync-gen-2: ${remoteCommandLine("authorize-sync", vmUser())}`,
      `source-vm-stop-gen-2-1: ${remoteCommandLine("stop", vmUser())}`,
      `source-vm-revoke-sync-gen-2-1: ${remoteCommandLine("revoke-sync", vmUser())}`,
    ]);
    // The old steps are dropped: they have no delete command, so that runs nothing.
    for (const step of ["preflight", "authorize-sync", "stop", "revoke-sync"]) {
      assert.ok(notSame.includes(`delete ${CMD}::source-vm-${step}`), step);
    }
    // The Job and the release's init container carry the generation: both copy again.
    assert.ok(notSame.includes(`replace ${JOB}::plex-warm-copy`), notSame.join("\n"));
    assert.ok(notSame.includes(`update ${RELEASE}::plex-chart`), notSame.join("\n"));
  });

  it("tautulliImportGeneration 2: a new stop (a new snapshot) and revoke-sync, no new transfer", async () => {
    const { notSame, vm } = await changed({ tautulliImportGeneration: 2 });
    assert.deepStrictEqual(vm, [
      `source-vm-stop-gen-1-2: ${remoteCommandLine("stop", vmUser())}`,
      `source-vm-revoke-sync-gen-1-2: ${remoteCommandLine("revoke-sync", vmUser())}`,
    ]);
    assert.ok(!notSame.some((s) => s.includes("warm-copy")), notSame.join("\n"));
  });

  it("vmRetired: the hooks lose their delete, revoke-sync is dropped, no VM command; destroy then contacts nothing", async () => {
    const retired = await runStack("dev", { vmRetired: true, rollbackOnDestroy: true });
    const plan = planUpdate(first.registrations, retired.registrations);
    assert.deepStrictEqual(vmCommands(plan), []);
    assert.deepStrictEqual(
      plan
        .filter((s) => s.op !== "same" && s.type === CMD)
        .map((s) => `${s.op} ${s.name}`)
        .sort(),
      // The dev stack's rollback hook had no delete (rollbackOnDestroy was off) and keeps none.
      ["delete source-vm-revoke-sync", "update source-vm-on-destroy-revoke-sync"],
    );
    const steps = planDestroy(retired.registrations);
    assert.deepStrictEqual(
      steps.filter((s) => s.runs),
      [],
    );
    // protectData stays: the data is still refused, the Plex release still deleted.
    assert.ok(steps.some((s) => s.name === "plex-config" && s.outcome === "refused (protected)"));
    assert.ok(steps.some((s) => s.name === "plex-chart" && s.outcome === "deleted"));
  });
});
