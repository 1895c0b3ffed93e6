/**
 * PlexConfigVolume under Pulumi mocks: the namespace, the config claim (size, retain, protect),
 * the sync Secret (the key only as a secret), the script ConfigMap, the warm-copy Job with its
 * exact manifest, what it waits for and how long `pulumi up` waits for it, and the final-sync
 * values it hands to the Plex release.
 */
import * as assert from "assert";
import * as pulumi from "@pulumi/pulumi";
import type { PlexConfigVolumeArgs } from "../../components/plex-config-volume";
import { loadInitScript, scriptDigest } from "../../lib/plex/init-script";
import {
  isSecretInput,
  plainStrings,
  runWithMocks,
  unwrap,
  unwrapSecrets,
  type MockRun,
  type Registration,
} from "../support/pulumi-mocks";

const GiB = 1024 ** 3;
const PRIVATE_KEY =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheVmxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const AUTHORIZED_TYPE = "plex-migrate:test:SyncAuthorized";
const LABELS = {
  "app.kubernetes.io/part-of": "plex-migrate",
  "app.kubernetes.io/instance": "plex",
  "app.kubernetes.io/managed-by": "pulumi",
};

function baseArgs(overrides: Partial<PlexConfigVolumeArgs> = {}): PlexConfigVolumeArgs {
  return {
    namespace: "plex",
    createNamespace: true,
    releaseName: "plex",
    configSize: "auto",
    configHeadroomPercent: 50,
    libraryBytes: 30 * GiB,
    fileCount: 250_000,
    uid: 1000,
    gid: 1000,
    sync: {
      image: "instrumentisto/rsync-ssh:alpine3.23-r3",
      connection: { host: "192.168.13.21", port: 22, user: "admin" },
      hostKey: HOST_KEY,
      excludes: [],
      warmCopyTimeoutMinutes: 360,
      transferGeneration: 1,
    },
    syncPrivateKey: pulumi.secret(PRIVATE_KEY),
    protectData: true,
    ...overrides,
  };
}

/** Stands for SourceVm.syncAuthorized (a remote command in the real program). */
class SyncAuthorized extends pulumi.CustomResource {
  constructor(name: string) {
    super(AUTHORIZED_TYPE, name, {});
  }
}

interface Built {
  run: MockRun;
  outputs: Record<string, pulumi.Output<unknown>>;
  component: Registration;
  claim: Registration;
  secret: Registration;
  configMap: Registration;
  job: Registration;
}

async function build(args: PlexConfigVolumeArgs): Promise<Built> {
  const run = await runWithMocks(
    () => {
      const { PlexConfigVolume } =
        require("../../components/plex-config-volume") as typeof import("../../components/plex-config-volume");
      const authorized = new SyncAuthorized("sync-authorized");
      const volume = new PlexConfigVolume("plex-config", { ...args, warmCopyAfter: [authorized] });
      return {
        namespace: volume.namespace,
        configClaimName: volume.configClaimName,
        configSize: volume.configSize,
        finalSync: volume.finalSyncValues(
          [
            {
              path: "Plug-in Support/Databases/com.plexapp.plugins.library.db",
              sha256: SHA,
              bytes: 4096,
            },
          ],
          "plex-plex-media-server-pms-init",
        ),
      };
    },
    { outputs: { [AUTHORIZED_TYPE]: () => ({}) } },
  );
  return {
    run,
    outputs: run.exports as Record<string, pulumi.Output<unknown>>,
    component: run.get("plex-migrate:plex:ConfigVolume", "plex-config"),
    claim: run.get("kubernetes:core/v1:PersistentVolumeClaim", "plex-config-config"),
    secret: run.get("kubernetes:core/v1:Secret", "plex-config-sync-key"),
    configMap: run.get("kubernetes:core/v1:ConfigMap", "plex-config-sync-script"),
    job: run.get("kubernetes:batch/v1:Job", "plex-config-warm-copy"),
  };
}

describe("PlexConfigVolume (components/plex-config-volume.ts, mocks)", () => {
  it("runs the warm copy as exactly this Job, after authorize-sync, waited for by pulumi up", async () => {
    // (authorize-sync reaches only the Job: the protected claim and namespace never depend on it)
    const built = await build(baseArgs());
    const script = loadInitScript();
    assert.deepStrictEqual(built.job.inputs.metadata, {
      name: "plex-plex-media-server-warm-copy",
      namespace: "plex",
      labels: { ...LABELS, "app.kubernetes.io/component": "plex-warm-copy" },
      annotations: { "pulumi.com/replaceUnready": "true" },
    });
    assert.deepStrictEqual(built.job.inputs.spec, {
      backoffLimit: 4,
      activeDeadlineSeconds: 360 * 60,
      template: {
        metadata: {
          labels: { ...LABELS, "app.kubernetes.io/component": "plex-warm-copy" },
          annotations: { "plex-migrate/sync-script-sha256": scriptDigest(script) },
        },
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          containers: [
            {
              name: "warm-copy",
              image: "instrumentisto/rsync-ssh:alpine3.23-r3",
              imagePullPolicy: "IfNotPresent",
              command: ["sh", "/plex-migrate-script/plex-init.sh"],
              env: [
                { name: "PLEX_SYNC_PHASE", value: "warm" },
                { name: "PLEX_CONFIG_DIR", value: "/config" },
                { name: "PLEX_SYNC_HOST", value: "192.168.13.21" },
                { name: "PLEX_SYNC_PORT", value: "22" },
                { name: "PLEX_SYNC_USER", value: "admin" },
                { name: "PLEX_SYNC_KEY_FILE", value: "/plex-migrate-sync/id_ed25519" },
                { name: "PLEX_SYNC_KNOWN_HOSTS", value: "/plex-migrate-sync/known_hosts" },
                { name: "PLEX_UID", value: "1000" },
                { name: "PLEX_GID", value: "1000" },
                // sizing.ts requiredConfigBytes(30 GiB): +5% and 16 MiB
                { name: "PLEX_REQUIRED_BYTES", value: "33839644672" },
                // sizing.ts requiredConfigInodes(250,000 files): +10% and 1,000
                { name: "PLEX_REQUIRED_INODES", value: "276000" },
              ],
              securityContext: { runAsUser: 0, runAsGroup: 0, allowPrivilegeEscalation: false },
              volumeMounts: [
                { name: "pms-config", mountPath: "/config" },
                { name: "plex-migrate-sync", mountPath: "/plex-migrate-sync", readOnly: true },
                { name: "plex-migrate-script", mountPath: "/plex-migrate-script", readOnly: true },
              ],
            },
          ],
          volumes: [
            {
              name: "pms-config",
              persistentVolumeClaim: { claimName: "plex-plex-media-server-config" },
            },
            {
              name: "plex-migrate-sync",
              secret: { secretName: "plex-plex-media-server-sync", defaultMode: 0o400 },
            },
            {
              name: "plex-migrate-script",
              configMap: { name: "plex-plex-media-server-sync-script", defaultMode: 0o555 },
            },
          ],
        },
      },
    });
    // pulumi-kubernetes waits for a Job's Complete condition, 10 minutes unless customTimeouts
    // says otherwise (provider/pkg/await/job.go, DefaultJobTimeoutMins, getTimeout).
    assert.deepStrictEqual(built.job.customTimeouts, {
      create: "360m",
      update: "360m",
      delete: "",
    });
    assert.strictEqual(built.job.deleteBeforeReplace, true, "fixed name: the old Job goes first");
    const authorized = built.run.get(AUTHORIZED_TYPE, "sync-authorized").urn;
    for (const urn of [authorized, built.claim.urn, built.secret.urn, built.configMap.urn]) {
      assert.ok(built.job.dependencies.includes(urn), `the Job waits for ${urn}`);
    }
    assert.ok(!built.claim.dependencies.includes(authorized), "the claim does not wait for the VM");
    assert.ok(!built.component.dependencies.includes(authorized), "nor does the component");
  });

  it("keeps the migration key in the Secret only, marked secret, with the pinned host key", async () => {
    const built = await build(baseArgs());
    assert.deepStrictEqual(unwrapSecrets(built.secret.inputs.stringData), {
      id_ed25519: PRIVATE_KEY,
      known_hosts: `plex-migrate-vm ${HOST_KEY}\n`,
    });
    assert.ok(isSecretInput(built.secret, "stringData"), "the key is a secret input");
    assert.deepStrictEqual(built.secret.inputs.metadata, {
      name: "plex-plex-media-server-sync",
      namespace: "plex",
      labels: LABELS,
    });
    for (const registration of built.run.registrations) {
      for (const text of plainStrings(registration.rawInputs)) {
        assert.ok(
          !text.includes("OPENSSH PRIVATE KEY"),
          `key in plain inputs of ${registration.name}`,
        );
      }
    }
    for (const [name, output] of Object.entries(built.outputs)) {
      const text = JSON.stringify((await unwrap(output)).value) ?? "";
      assert.ok(!text.includes("OPENSSH PRIVATE KEY"), `key in output ${name}`);
    }
    assert.deepStrictEqual(built.configMap.inputs.data, { "plex-init.sh": loadInitScript() });
  });

  it("creates the config claim sized auto, retained always and protected with protectData", async () => {
    const { claim } = await build(baseArgs({ storageClass: "local-zfs" }));
    assert.deepStrictEqual(claim.inputs.metadata, {
      name: "plex-plex-media-server-config",
      namespace: "plex",
      labels: { ...LABELS, "app.kubernetes.io/component": "plex-config" },
      annotations: { "pulumi.com/skipAwait": "true" },
    });
    assert.deepStrictEqual(claim.inputs.spec, {
      accessModes: ["ReadWriteOnce"],
      storageClassName: "local-zfs",
      // 30 GiB + 50% = 45 GiB, + 5% + 16 MiB + 1 GiB journal, / 0.93 for ext4: 52 GiB
      resources: { requests: { storage: "52Gi" } },
    });
    assert.strictEqual(claim.retainOnDelete, true);
    assert.strictEqual(claim.protect, true);
    assert.deepStrictEqual(claim.ignoreChanges, ["spec.resources.requests.storage"]);
    const explicit = await build(baseArgs({ configSize: "200Gi", protectData: false }));
    assert.deepStrictEqual(explicit.claim.ignoreChanges, [], "an explicit size is applied");
    assert.strictEqual(explicit.claim.protect, false);
    assert.strictEqual(explicit.claim.retainOnDelete, true, "never deleted by pulumi destroy");
    assert.strictEqual((await unwrap(explicit.outputs.configSize)).value, "200Gi");
    const manyFiles = await build(baseArgs({ libraryBytes: 2 * GiB, fileCount: 3_000_000 }));
    assert.strictEqual(
      (manyFiles.claim.inputs.spec as { resources: { requests: { storage: string } } }).resources
        .requests.storage,
      "76Gi",
      "3M files + 50%: 4.95M inodes of 16 KiB",
    );
  });

  it("creates a retained namespace, or uses an existing one", async () => {
    const created = await build(baseArgs());
    const namespace = created.run.get("kubernetes:core/v1:Namespace", "plex-config-namespace");
    assert.strictEqual((namespace.inputs.metadata as { name: string }).name, "plex");
    assert.strictEqual(namespace.retainOnDelete, true, "deleting it would delete the claim");
    assert.strictEqual(namespace.protect, true);
    const existing = await build(baseArgs({ createNamespace: false, namespace: "media" }));
    assert.strictEqual(existing.run.byType("kubernetes:core/v1:Namespace").length, 0);
    assert.strictEqual((await unwrap(existing.outputs.namespace)).value, "media");
    assert.strictEqual((existing.job.inputs.metadata as { namespace: string }).namespace, "media");
  });

  it("hands the release the final phase's init container and the two pod volumes", async () => {
    const built = await build(baseArgs({ nodeSelector: { "kubernetes.io/hostname": "node-a" } }));
    const finalSync = (await unwrap(built.outputs.finalSync)).value as {
      extraInitContainers: { name: string; env: { name: string; value: string }[] }[];
      extraVolumes: unknown[];
    };
    const [container] = finalSync.extraInitContainers;
    assert.strictEqual(container.name, "plex-plex-media-server-pms-init");
    const env = Object.fromEntries(container.env.map((e) => [e.name, e.value]));
    assert.strictEqual(env.PLEX_SYNC_PHASE, "final");
    // The final phase checks the volume too: without a warm copy it copies everything.
    assert.strictEqual(env.PLEX_REQUIRED_BYTES, "33839644672");
    assert.strictEqual(env.PLEX_REQUIRED_INODES, "276000");
    assert.strictEqual(
      env.PLEX_SYNC_DATABASES,
      `${SHA} 4096 Plug-in Support/Databases/com.plexapp.plugins.library.db`,
    );
    assert.strictEqual(finalSync.extraVolumes.length, 2);
    const podSpec = (built.job.inputs.spec as { template: { spec: { nodeSelector?: unknown } } })
      .template.spec;
    assert.deepStrictEqual(podSpec.nodeSelector, { "kubernetes.io/hostname": "node-a" });
  });

  it("hands the transfer generation to both phases, so a new one replaces the Job and restarts the pod", async () => {
    const first = await build(baseArgs());
    const next = await build(baseArgs({ sync: { ...baseArgs().sync, transferGeneration: 2 } }));
    const generationOf = (env: { name: string; value: string }[]) =>
      env.find((e) => e.name === "PLEX_SYNC_GENERATION")?.value;
    const jobEnv = (b: Built) =>
      (b.job.inputs.spec as { template: { spec: { containers: { env: [] }[] } } }).template.spec
        .containers[0].env;
    const initEnv = async (b: Built) =>
      (
        (await unwrap(b.outputs.finalSync)).value as {
          extraInitContainers: { env: { name: string; value: string }[] }[];
        }
      ).extraInitContainers[0].env;
    // The script reads an absent PLEX_SYNC_GENERATION as 1.
    assert.strictEqual(generationOf(jobEnv(first)), undefined);
    assert.strictEqual(generationOf(jobEnv(next)), "2");
    assert.strictEqual(generationOf(await initEnv(first)), undefined);
    assert.strictEqual(generationOf(await initEnv(next)), "2");
    // A changed Job template is a replacement (pulumi-kubernetes provider/pkg/provider/diff.go:
    // .spec.template of a batch/v1 Job is forceNew), and a changed init container a new pod of
    // the StatefulSet: both run the script again.
    assert.notDeepStrictEqual(first.job.inputs.spec, next.job.inputs.spec);
  });

  it("rejects bad arguments at construction, naming the field", () => {
    const { PlexConfigVolume } =
      require("../../components/plex-config-volume") as typeof import("../../components/plex-config-volume");
    const sync = baseArgs().sync;
    const cases: [Partial<PlexConfigVolumeArgs>, RegExp][] = [
      [{ namespace: "-bad" }, /namespace "-bad"/],
      [{ configSize: "lots" }, /configSize: "lots" is not a Kubernetes quantity/],
      [{ sync: { ...sync, image: "alpine@sha256:nope" } }, /sync.image: "alpine@sha256:nope"/],
      [{ sync: { ...sync, hostKey: "" } }, /sync.hostKey: no VM host key is pinned/],
      [
        { sync: { ...sync, connection: { host: "vm", port: 22, user: "x y" } } },
        /"x y" is not a user name/,
      ],
      [{ sync: { ...sync, warmCopyTimeoutMinutes: 0 } }, /warmCopyTimeoutMinutes 0/],
    ];
    for (const [overrides, message] of cases) {
      assert.throws(
        () => new PlexConfigVolume("bad", baseArgs(overrides)),
        (error: Error) => error instanceof pulumi.ResourceError && message.test(error.message),
        `expected ${message}`,
      );
    }
  });

  it("parents every child to the component", async () => {
    const { run, component } = await build(baseArgs());
    assert.deepStrictEqual(
      run
        .childrenOf(component)
        .map((r) => `${r.type} ${r.name}`)
        .sort(),
      [
        "kubernetes:batch/v1:Job plex-config-warm-copy",
        "kubernetes:core/v1:ConfigMap plex-config-sync-script",
        "kubernetes:core/v1:Namespace plex-config-namespace",
        "kubernetes:core/v1:PersistentVolumeClaim plex-config-config",
        "kubernetes:core/v1:Secret plex-config-sync-key",
      ],
    );
  });
});
