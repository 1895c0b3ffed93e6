/**
 * PlexRelease under Pulumi mocks: the exact Helm values (with the final-sync init container), the
 * claim token Secret and what waits for the VM's stop step. The config claim, the sync Secret and
 * the warm copy are PlexConfigVolume's (test/unit/plex-config-volume.test.ts).
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { parseMediaVolume, type MediaVolume } from "../../lib/plex/media-volumes";
import { plexHostUse } from "../../lib/plex/helm-values";
import { plexSyncValues } from "../../lib/plex/init-script";
import { podSecurityLabels } from "../../lib/plex/placement";
import { resolvePlexIds } from "../../lib/plex/vm-identity";
import {
  captureWarnings,
  isSecretInput,
  plainStrings,
  runWithMocks,
  type MockRun,
  type Registration,
  unwrap,
  unwrapSecrets,
} from "../support/pulumi-mocks";
import type { PlexReleaseArgs } from "../../components/plex-release";
import type { PlexNetworking } from "../../lib/plex/networking";
import { renderChart, type RenderedChart } from "../support/helm";

const ROOT = path.resolve(__dirname, "..", "..");
const GiB = 1024 ** 3;
const CLAIM = "claim-Secretclaimtoken123";
const SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const SYNC = plexSyncValues({
  containerName: "plex-plex-media-server-pms-init",
  image: "instrumentisto/rsync-ssh:alpine3.23-r3",
  connection: { host: "192.168.13.21", port: 22, user: "admin" },
  uid: 1000,
  gid: 1000,
  excludes: [],
  need: { libraryBytes: 4096, inodes: 1001 },
  databases: [
    { path: "Plug-in Support/Databases/com.plexapp.plugins.library.db", sha256: SHA, bytes: 4096 },
  ],
  secretName: "plex-plex-media-server-sync",
  scriptConfigMapName: "plex-plex-media-server-sync-script",
});
const VM_VERSION = "1.41.3.9314-a0bfb8370";
/** A direct path for clients, so only the warning a test is about is emitted. */
const LB = { networking: { mode: "loadBalancer", address: "192.168.13.40" } } as const;

const RELEASE_TYPE = "kubernetes:helm.sh/v3:Release";
const SECRET_TYPE = "kubernetes:core/v1:Secret";
const CONFIGMAP_TYPE = "kubernetes:core/v1:ConfigMap";
const STOPPED_TYPE = "plex-migrate:test:SourceStopped";

function media(entry: string): MediaVolume {
  const parsed = parseMediaVolume(entry);
  if (typeof parsed === "string") throw new Error(parsed);
  return parsed;
}

function baseArgs(overrides: Partial<PlexReleaseArgs> = {}): PlexReleaseArgs {
  return {
    namespace: "plex",
    configClaimName: "plex-plex-media-server-config",
    sync: SYNC,
    releaseName: "plex",
    chartVersion: "1.5.0",
    chartRepo: "https://raw.githubusercontent.com/plexinc/pms-docker/gh-pages",
    plexVersion: VM_VERSION,
    libraryBytes: 30 * GiB,
    mediaVolumes: [],
    uid: 1000,
    gid: 1000,
    timezone: "",
    supplementalGroups: [],
    clusterNetworks: [],
    nodeSelector: {},
    gpu: "none",
    podSecurity: "",
    networking: { mode: "internal" },
    advertiseUrls: [],
    resources: {},
    ...overrides,
  };
}

/** Stands for SourceVm's stop step (a remote command in the real program). */
class SourceStopped extends pulumi.CustomResource {
  constructor(name: string) {
    super(STOPPED_TYPE, name, {});
  }
}

interface Built {
  run: MockRun;
  outputs: Record<string, pulumi.Output<unknown>>;
  component: Registration;
  release: Registration;
  values: Record<string, unknown>;
}

/**
 * Builds a PlexRelease under mocks. Like index.ts, it depends on a resource standing for "Plex and
 * Tautulli are stopped on the VM" (`stopped`).
 */
async function build(
  args: PlexReleaseArgs,
  dependsOnShape: "list" | "single" | "none" = "list",
): Promise<Built> {
  const run = await runWithMocks(
    () => {
      const { PlexRelease } = require("../../components/plex-release") as {
        PlexRelease: typeof import("../../components/plex-release").PlexRelease;
      };
      const stopped = new SourceStopped("source-stopped");
      const dependsOn =
        dependsOnShape === "list" ? [stopped] : dependsOnShape === "single" ? stopped : undefined;
      const plex = new PlexRelease("plex", args, { dependsOn });
      return {
        namespace: plex.namespace,
        configClaimName: plex.configClaimName,
        imageTag: plex.imageTag,
        plexUrl: plex.plexUrl,
        advertisedUrl: plex.advertisedUrl,
        releaseUrn: plex.release.urn,
      };
    },
    {
      outputs: {
        "plex-migrate:plex:Release": () => ({}),
        [STOPPED_TYPE]: () => ({}),
      },
    },
  );
  const release = run.get(RELEASE_TYPE, "plex-chart");
  return {
    run,
    outputs: run.exports as Record<string, pulumi.Output<unknown>>,
    component: run.get("plex-migrate:plex:Release", "plex"),
    release,
    values: release.inputs.values as Record<string, unknown>,
  };
}

const READINESS = {
  httpGet: { path: "/identity", port: 32400 },
  initialDelaySeconds: 10,
  periodSeconds: 10,
  timeoutSeconds: 5,
  failureThreshold: 6,
};

describe("PlexRelease (components/plex-release.ts, mocks)", () => {
  it("passes the chart exactly these values for a full configuration", async () => {
    const mediaVolumes = [
      media("/mnt/nas-plex/Movies=nfs://192.168.13.5/volume1/movies"),
      media("/mnt/nas-plex/TV Shows=hostpath:///srv/tv?rw"),
      media("/srv/music=pvc://music-library"),
    ];
    const built = await build(
      baseArgs({
        mediaVolumes,
        claimToken: pulumi.secret(CLAIM),
        networking: {
          mode: "ingress",
          host: "plex.example.com",
          className: "nginx",
          tlsSecret: "plex-tls",
        },
        advertiseUrls: ["http://plex.example.net:32400"],
        resources: { cpuRequest: "1", memoryRequest: "2Gi", memoryLimit: "4Gi" },
      }),
    );
    assert.deepStrictEqual(built.values, {
      image: { tag: VM_VERSION },
      extraInitContainers: SYNC.extraInitContainers,
      pms: {
        configExistingClaim: "plex-plex-media-server-config",
        readinessProbe: READINESS,
        claimSecret: { name: "plex-plex-media-server-claim", key: "token" },
        resources: { requests: { cpu: "1", memory: "2Gi" }, limits: { memory: "4Gi" } },
      },
      service: { type: "ClusterIP" },
      extraEnv: {
        PLEX_UID: "1000",
        PLEX_GID: "1000",
        ADVERTISE_IP: "https://plex.example.com:443,http://plex.example.net:32400",
      },
      extraVolumes: [
        {
          name: "media-mnt-nas-plex-movies",
          nfs: { server: "192.168.13.5", path: "/volume1/movies", readOnly: true },
        },
        { name: "media-mnt-nas-plex-tv-shows", hostPath: { path: "/srv/tv", type: "Directory" } },
        {
          name: "media-srv-music",
          persistentVolumeClaim: { claimName: "music-library", readOnly: true },
        },
        {
          name: "plex-migrate-sync",
          secret: { secretName: "plex-plex-media-server-sync", defaultMode: 0o400 },
        },
        {
          name: "plex-migrate-script",
          configMap: { name: "plex-plex-media-server-sync-script", defaultMode: 0o555 },
        },
        {
          name: "plex-migrate-pms-setup",
          configMap: { name: "plex-plex-media-server-pms-setup", defaultMode: 0o755 },
        },
      ],
      extraVolumeMounts: [
        { name: "media-mnt-nas-plex-movies", mountPath: "/mnt/nas-plex/Movies", readOnly: true },
        {
          name: "media-mnt-nas-plex-tv-shows",
          mountPath: "/mnt/nas-plex/TV Shows",
          readOnly: false,
        },
        { name: "media-srv-music", mountPath: "/srv/music", readOnly: true },
        {
          name: "plex-migrate-pms-setup",
          mountPath: "/etc/cont-init.d/41-plex-migrate",
          subPath: "41-plex-migrate",
          readOnly: true,
        },
      ],
      ingress: {
        enabled: true,
        url: "https://plex.example.com",
        ingressClassName: "nginx",
        tls: [{ hosts: ["plex.example.com"], secretName: "plex-tls" }],
      },
    });
    // The chart's own init container (initContainer.script) is not used: ours is an extra one.
    assert.ok(!("initContainer" in built.values));
  });

  it("keeps the minimal values minimal (no claim, no resources, no ingress, no media)", async () => {
    const { values } = await build(baseArgs());
    assert.deepStrictEqual(Object.keys(values).sort(), [
      "extraEnv",
      "extraInitContainers",
      "extraVolumeMounts",
      "extraVolumes",
      "image",
      "ingress",
      "pms",
      "service",
    ]);
    assert.deepStrictEqual(values.ingress, { enabled: false, ingressClassName: "" });
    assert.deepStrictEqual(values.extraEnv, { PLEX_UID: "1000", PLEX_GID: "1000" });
    assert.deepStrictEqual(values.pms, {
      configExistingClaim: "plex-plex-media-server-config",
      readinessProbe: READINESS,
    });
    assert.deepStrictEqual(values.service, { type: "ClusterIP" });
  });

  it("installs the pinned chart under the fixed release name into the namespace", async () => {
    const { release, run } = await build(baseArgs({ releaseName: "media", chartVersion: "1.4.0" }));
    assert.strictEqual(release.inputs.name, "media");
    assert.strictEqual(release.inputs.chart, "plex-media-server");
    assert.strictEqual(release.inputs.version, "1.4.0");
    assert.deepStrictEqual(release.inputs.repositoryOpts, {
      repo: "https://raw.githubusercontent.com/plexinc/pms-docker/gh-pages",
    });
    assert.strictEqual(release.inputs.namespace, "plex");
    assert.strictEqual(release.inputs.createNamespace, false);
    assert.strictEqual(release.inputs.timeout, 600 + 3072, "10 min + 1 s per 10 MiB of library");
    assert.strictEqual(release.inputs.atomic, undefined, "a failed start must not uninstall");
    assert.strictEqual(run.byType("kubernetes:core/v1:PersistentVolumeClaim").length, 0);
  });

  it("takes the chart from an OCI registry when chartRepo is oci://", async () => {
    const { release } = await build(baseArgs({ chartRepo: "oci://ghcr.io/example/charts/" }));
    assert.strictEqual(release.inputs.chart, "oci://ghcr.io/example/charts/plex-media-server");
    assert.strictEqual(release.inputs.repositoryOpts, undefined);
  });

  it("keeps the claim token in its own Secret, never in plain inputs or outputs", async () => {
    const built = await build(baseArgs({ claimToken: pulumi.secret(CLAIM) }));
    const claimSecret = built.run.get(SECRET_TYPE, "plex-claim-token");
    assert.deepStrictEqual(unwrapSecrets(claimSecret.inputs.stringData), { token: CLAIM });
    assert.ok(isSecretInput(claimSecret, "stringData.token"));
    for (const registration of built.run.registrations) {
      for (const text of plainStrings(registration.rawInputs)) {
        assert.ok(!text.includes(CLAIM), `claim token in plain inputs of ${registration.name}`);
      }
    }
    for (const [name, output] of Object.entries(built.outputs)) {
      const { value } = await unwrap(output);
      assert.ok(!(JSON.stringify(value) ?? "").includes(CLAIM), `secret in output ${name}`);
    }
    const withoutClaim = await build(baseArgs());
    assert.strictEqual(withoutClaim.run.byType(SECRET_TYPE).length, 0);
  });

  it("waits for the VM's stop step: the final sync must not start while Plex runs there", async () => {
    for (const shape of ["list", "single"] as const) {
      const { run, release } = await build(baseArgs({ claimToken: pulumi.secret(CLAIM) }), shape);
      const stopped = run.get(STOPPED_TYPE, "source-stopped").urn;
      const claimSecret = run.get(SECRET_TYPE, "plex-claim-token").urn;
      const setup = run.get(CONFIGMAP_TYPE, "plex-pms-setup").urn;
      for (const urn of [stopped, claimSecret, setup]) {
        assert.ok(release.dependencies.includes(urn), `${shape}: release waits for ${urn}`);
      }
    }
    const alone = await build(baseArgs(), "none");
    assert.deepStrictEqual(alone.release.dependencies, [
      alone.run.get(CONFIGMAP_TYPE, "plex-pms-setup").urn,
    ]);
  });

  it("parents every child to the component with names derived from its name", async () => {
    const { run, component } = await build(baseArgs({ claimToken: pulumi.secret(CLAIM) }));
    const children = run.childrenOf(component).map((r) => `${r.type} ${r.name}`);
    assert.deepStrictEqual(children.sort(), [
      `${CONFIGMAP_TYPE} plex-pms-setup`,
      `${SECRET_TYPE} plex-claim-token`,
      `${RELEASE_TYPE} plex-chart`,
    ]);
  });

  it("outputs the namespace, claim, tag and URLs", async () => {
    const plain = await build(baseArgs());
    const value = async (name: string) => (await unwrap(plain.outputs[name])).value;
    assert.strictEqual(await value("namespace"), "plex");
    assert.strictEqual(await value("configClaimName"), "plex-plex-media-server-config");
    assert.strictEqual(await value("imageTag"), VM_VERSION);
    assert.strictEqual(
      await value("plexUrl"),
      "http://plex-plex-media-server.plex.svc.cluster.local:32400",
    );
    assert.strictEqual(await value("advertisedUrl"), "", "nothing advertised when internal");
    const withIngress = await build(
      baseArgs({ networking: { mode: "ingress", host: "plex.example.com" } }),
    );
    assert.strictEqual(
      (await unwrap(withIngress.outputs.plexUrl)).value,
      "http://plex.example.com:80",
    );
    assert.deepStrictEqual(withIngress.values.ingress, {
      enabled: true,
      url: "https://plex.example.com",
      ingressClassName: "",
      tls: [],
    });
  });

  it("runs the VM's Plex version; an override is used but warned about", async () => {
    const unchanged = await captureWarnings(async () => {
      const same = await build(baseArgs(LB));
      assert.deepStrictEqual(same.values.image, { tag: VM_VERSION });
    });
    assert.deepStrictEqual(unchanged, []);

    const warnings = await captureWarnings(async () => {
      const overridden = await build(
        baseArgs({ ...LB, imageTagOverride: "1.42.2.10156-f737b826c" }),
      );
      assert.deepStrictEqual(overridden.values.image, { tag: "1.42.2.10156-f737b826c" });
      assert.strictEqual(
        (await unwrap(overridden.outputs.imageTag)).value,
        "1.42.2.10156-f737b826c",
      );
    });
    assert.strictEqual(warnings.length, 1);
    assert.match(warnings[0], /plexImageTag "1\.42\.2\.10156-f737b826c" differs/);
    assert.match(warnings[0], /1\.41\.3\.9314-a0bfb8370/);
  });

  it("warns about library folders on the VM that no media volume mounts", async () => {
    const nas: MediaVolume = {
      name: "media-mnt-nas-plex",
      mountPath: "/mnt/nas-plex",
      source: { kind: "nfs", server: "nas", path: "/export/plex" },
      readOnly: true,
    };
    const covered = await captureWarnings(() =>
      build(
        baseArgs({
          ...LB,
          mediaVolumes: [nas],
          vmMediaRoots: ["/mnt/nas-plex/Movies", "/mnt/nas-plex/TV Shows"],
        }),
      ),
    );
    assert.deepStrictEqual(covered, [], "both roots are under /mnt/nas-plex");
    const warnings = await captureWarnings(() =>
      build(
        baseArgs({
          ...LB,
          mediaVolumes: [nas],
          vmMediaRoots: ["/mnt/nas-plex/Movies", "/srv/music", "/mnt/nas-plexx"],
        }),
      ),
    );
    assert.strictEqual(warnings.length, 1);
    assert.match(
      warnings[0],
      /uses "\/mnt\/nas-plexx", "\/srv\/music" on the VM, which no plexMediaVolumes entry mounts/,
    );
    assert.match(warnings[0], /plexMediaVolumes\[1\]' '\/mnt\/nas-plexx=nfs:/);
  });

  it("rejects bad arguments at construction, naming the field", () => {
    const { PlexRelease } =
      require("../../components/plex-release") as typeof import("../../components/plex-release");
    const cases: [Partial<PlexReleaseArgs>, RegExp][] = [
      [{ releaseName: "Plex_Server" }, /releaseName "Plex_Server"/],
      [{ chartVersion: "latest" }, /chartVersion "latest"/],
      [{ uid: -1 }, /uid -1/],
      [
        { mediaVolumes: [{ ...media("/srv/movies=hostpath:///srv"), mountPath: "/transcode/x" }] },
        /mediaVolumes: media mount path \/transcode\/x is used by the Plex pod itself/,
      ],
    ];
    for (const [overrides, message] of cases) {
      assert.throws(
        () => new PlexRelease("bad", baseArgs(overrides)),
        (error: Error) => error instanceof pulumi.ResourceError && message.test(error.message),
        `expected ${message}`,
      );
    }
  });

  // A value that is wrong only once the VM answers fails the registration that needs it. Under the
  // engine that ends `pulumi up` with the message; it is checked in a separate Node process because
  // the failed registration leaves the mocks' promises pending.
  it("fails with a clear message when the VM's measures do not fit (separate process)", function () {
    this.timeout(60_000);
    const program = `
      const pulumi = require("@pulumi/pulumi");
      const messages = [];
      process.on("unhandledRejection", (e) => messages.push(String(e && e.message)));
      const cases = JSON.parse(process.env.PLEX_RELEASE_CASES);
      (async () => {
        const out = [];
        for (const overrides of cases) {
          messages.length = 0;
          await pulumi.runtime.setMocks({
            newResource: (a) => ({ id: a.custom ? a.name + "-id" : undefined, state: a.inputs }),
            call: () => { throw new Error("unexpected call"); },
          }, "plex-migrate", "test", false);
          const { PlexRelease } = require("./components/plex-release");
          const base = JSON.parse(process.env.PLEX_RELEASE_BASE);
          await pulumi.runtime.runInPulumiStack(async () => {
            new PlexRelease("plex", { ...base, ...overrides });
            return {};
          });
          await new Promise((r) => setTimeout(r, 300));
          out.push([...new Set(messages)]);
        }
        process.stdout.write(JSON.stringify(out));
        process.exit(0);
      })();
    `;
    const base = baseArgs();
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ plexVersion: "" }, /the VM reported Plex version "", which is not a pms-docker image tag/],
      [
        { uid: "auto" },
        /plexUid is auto, but the preflight reported no owner of the VM's Plex data directory \(got undefined\)\. Fix: pulumi config set plexUid/,
      ],
      [
        { timezone: "auto", vmTimezone: "Mars/Olympus Mons" },
        /the VM reported the time zone "Mars\/Olympus Mons", which is not an IANA zone name/,
      ],
    ];
    const result = spawnSync(
      process.execPath,
      ["-r", "ts-node/register/transpile-only", "-e", program],
      {
        cwd: ROOT,
        encoding: "utf8",
        env: {
          ...process.env,
          PLEX_RELEASE_BASE: JSON.stringify(base),
          PLEX_RELEASE_CASES: JSON.stringify(cases.map(([c]) => c)),
        },
      },
    );
    // (Its exit status is 1: Pulumi's leak detector reports the pending promises at exit.)
    assert.ok(result.stdout.startsWith("[["), `no result from the child: ${result.stderr}`);
    const messages = JSON.parse(result.stdout) as string[][];
    cases.forEach(([overrides, expected], i) => {
      assert.ok(
        messages[i].some((m) => expected.test(m)),
        `${JSON.stringify(overrides)}: got ${JSON.stringify(messages[i])}`,
      );
    });
  });

  describe("the VM's owner, groups and time zone", () => {
    const OWNER = {
      uid: 999,
      gid: 997,
      user: "plex",
      group: "plex",
      groups: [
        { name: "video", gid: 44 },
        { name: "media", gid: 1001 },
      ],
    };

    it("runs Plex as the VM data directory's owner and in the VM's zone by default", async () => {
      const built = await build(
        baseArgs({
          uid: "auto",
          gid: "auto",
          timezone: "auto",
          vmDataOwner: OWNER,
          vmTimezone: "Europe/Berlin",
        }),
      );
      assert.deepStrictEqual(built.values.extraEnv, {
        PLEX_UID: "999",
        PLEX_GID: "997",
        TZ: "Europe/Berlin",
      });
      // index.ts gives the sync container (PlexConfigVolume) the ids from the same rule.
      assert.deepStrictEqual(resolvePlexIds("auto", "auto", OWNER), { uid: 999, gid: 997 });
      const env = pmsEnvOf(renderChart(built.values));
      assert.deepStrictEqual([env.PLEX_UID, env.PLEX_GID, env.TZ], ["999", "997", "Europe/Berlin"]);
    });

    it('uses explicit ids and zone over the VM\'s, and no TZ for ""', async () => {
      const built = await build(
        baseArgs({ uid: 1000, gid: 100, vmDataOwner: OWNER, vmTimezone: "Europe/Berlin" }),
      );
      assert.deepStrictEqual(built.values.extraEnv, { PLEX_UID: "1000", PLEX_GID: "100" });
      const zoned = await build(
        baseArgs({ timezone: "America/New_York", vmTimezone: "Europe/Berlin" }),
      );
      assert.strictEqual((zoned.values.extraEnv as Record<string, string>).TZ, "America/New_York");
    });

    it("adds the VM user's groups and the cluster's ranges to the LAN networks, through the setup script", async () => {
      const built = await build(
        baseArgs({
          uid: "auto",
          gid: "auto",
          supplementalGroups: "auto",
          vmDataOwner: OWNER,
          clusterNetworks: ["10.42.0.0/16", "192.168.13.0/24"],
          vmPreferences: { lanNetworks: "192.168.13.0/24", customConnections: "" },
        }),
      );
      const env = built.values.extraEnv as Record<string, string>;
      assert.strictEqual(env.PLEX_MIGRATE_GROUPS, "44,1001");
      assert.strictEqual(env.PLEX_MIGRATE_LAN_NETWORKS, "192.168.13.0/24,10.42.0.0/16");
      const configMap = built.run.get(CONFIGMAP_TYPE, "plex-pms-setup");
      assert.deepStrictEqual(configMap.inputs.data, {
        "41-plex-migrate": fs.readFileSync(path.join(ROOT, "scripts", "plex-pms-setup.sh"), "utf8"),
      });
      assert.strictEqual(
        (configMap.inputs.metadata as { name: string }).name,
        "plex-plex-media-server-pms-setup",
      );
      assert.ok(built.release.dependencies.includes(configMap.urn), "the release waits for it");

      const none = await build(
        baseArgs({
          supplementalGroups: [],
          vmPreferences: { lanNetworks: "192.168.13.0/24", customConnections: "" },
        }),
      );
      const noneEnv = none.values.extraEnv as Record<string, string>;
      assert.strictEqual(noneEnv.PLEX_MIGRATE_GROUPS, undefined);
      assert.strictEqual(
        noneEnv.PLEX_MIGRATE_LAN_NETWORKS,
        undefined,
        "no cluster range: Preferences.xml keeps the VM's LAN networks",
      );
      const explicit = await build(baseArgs({ gid: 100, supplementalGroups: [100, 1001, 44] }));
      assert.strictEqual(
        (explicit.values.extraEnv as Record<string, string>).PLEX_MIGRATE_GROUPS,
        "44,1001",
        "sorted, without the primary gid",
      );
    });

    it("warns when the VM's zone is unknown under auto", async () => {
      const warnings = await captureWarnings(() =>
        build(baseArgs({ ...LB, timezone: "auto", vmTimezone: "" })),
      );
      assert.strictEqual(warnings.length, 1);
      assert.match(warnings[0], /the preflight found no time zone on the VM, so Plex runs in UTC/);
      assert.match(warnings[0], /pulumi config set plexTimezone/);
    });

    it("rejects ids and zones that are neither auto nor valid", () => {
      const { PlexRelease } =
        require("../../components/plex-release") as typeof import("../../components/plex-release");
      const cases: [Partial<PlexReleaseArgs>, RegExp][] = [
        [{ gid: -5 }, /gid -5 must be a numeric id or "auto"/],
        [{ supplementalGroups: [44, -1] }, /supplementalGroups: -1 is not a gid/],
        [{ clusterNetworks: ["10.42.0.0"] }, /clusterNetworks: "10.42.0.0" is not a CIDR/],
        [
          { timezone: "Europe/../etc" },
          /timezone "Europe\/\.\.\/etc" must be "auto", "" or an IANA zone name/,
        ],
      ];
      for (const [overrides, message] of cases) {
        assert.throws(
          () => new PlexRelease("bad", baseArgs(overrides)),
          (error: Error) => error instanceof pulumi.ResourceError && message.test(error.message),
          `expected ${message}`,
        );
      }
    });
  });

  describe("placement and Pod Security", () => {
    // The namespace is PlexConfigVolume's: index.ts hands it these labels (namespaceLabels).
    it("labels a created namespace with the least Pod Security level the pod passes", async () => {
      const level = async (overrides: Partial<PlexReleaseArgs>) => {
        const args = baseArgs({ ...LB, ...overrides });
        const labels = podSecurityLabels(
          args.podSecurity,
          plexHostUse(args.networking, args.mediaVolumes, args.gpu),
        );
        return [
          labels["pod-security.kubernetes.io/enforce"],
          labels["pod-security.kubernetes.io/enforce-version"],
        ];
      };
      assert.deepStrictEqual(await level({}), [undefined, undefined], "off by default");
      assert.deepStrictEqual(await level({ podSecurity: "auto" }), ["baseline", "latest"]);
      assert.deepStrictEqual(
        await level({
          podSecurity: "auto",
          mediaVolumes: [media("/srv/tv=hostpath:///srv/tv")],
        }),
        ["privileged", "latest"],
      );
      assert.deepStrictEqual(await level({ podSecurity: "auto", gpu: "dev-dri" }), [
        "privileged",
        "latest",
      ]);
      assert.deepStrictEqual(
        await level({
          podSecurity: "auto",
          networking: { mode: "host", address: "192.168.13.30" },
          nodeSelector: { "kubernetes.io/hostname": "node-1" },
        }),
        ["privileged", "latest"],
      );
      assert.deepStrictEqual(await level({ podSecurity: "privileged" }), ["privileged", "latest"]);
    });

    it("refuses a level the pod cannot pass, and bad node labels or GPU modes", () => {
      const { PlexRelease } =
        require("../../components/plex-release") as typeof import("../../components/plex-release");
      const cases: [Partial<PlexReleaseArgs>, RegExp][] = [
        [
          { podSecurity: "restricted" },
          /podSecurity: Pod Security level "restricted" would refuse the Plex pod, which needs "baseline" \(the pms-docker image starts as root\)/,
        ],
        [
          { podSecurity: "baseline", gpu: "dev-dri" },
          /needs "privileged" \(host network, hostPath media or \/dev\/dri\)/,
        ],
        [{ nodeSelector: { "bad key!": "x" } }, /nodeSelector: "bad key!=x" is not a node label/],
        [{ gpu: "nvidia" as never }, /gpu "nvidia" must be one of none, intel, dev-dri/],
      ];
      for (const [overrides, message] of cases) {
        assert.throws(
          () => new PlexRelease("bad", baseArgs(overrides)),
          (error: Error) => error instanceof pulumi.ResourceError && message.test(error.message),
          `expected ${message}`,
        );
      }
    });

    it("warns when host networking advertises a node's address but nothing pins the pod there", async () => {
      const host = { mode: "host", address: "192.168.13.30" } as const;
      const warnings = await captureWarnings(() => build(baseArgs({ networking: host })));
      assert.strictEqual(warnings.length, 1);
      assert.match(
        warnings[0],
        /plexNetworking is "host" and Plex advertises 192\.168\.13\.30, but no plexNodeSelector pins the pod/,
      );
      const pinned = await captureWarnings(() =>
        build(baseArgs({ networking: host, nodeSelector: { "kubernetes.io/hostname": "node-1" } })),
      );
      assert.deepStrictEqual(pinned, []);
    });
  });

  describe("networking modes (values captured under mocks, rendered by real Helm)", () => {
    const modes: [PlexNetworking, string, (chart: RenderedChart) => void][] = [
      [
        { mode: "host", address: "192.168.13.30" },
        "http://192.168.13.30:32400",
        (chart) => {
          const spec = podSpecOf(chart);
          assert.strictEqual(spec.hostNetwork, true);
          assert.strictEqual(spec.dnsPolicy, "ClusterFirstWithHostNet");
          assert.strictEqual(serviceSpecOf(chart).type, "ClusterIP");
          assert.strictEqual(chart.has("Ingress"), false);
        },
      ],
      [
        { mode: "loadBalancer", address: "192.168.13.40" },
        "http://192.168.13.40:32400",
        (chart) => {
          assert.strictEqual(podSpecOf(chart).hostNetwork, undefined);
          const service = serviceSpecOf(chart);
          assert.strictEqual(service.type, "LoadBalancer");
          assert.strictEqual(service.loadBalancerIP, "192.168.13.40");
          assert.strictEqual(service.externalTrafficPolicy, "Local");
          assert.strictEqual(chart.has("Ingress"), false);
        },
      ],
      [
        { mode: "ingress", host: "plex.example.com", tlsSecret: "plex-tls" },
        "https://plex.example.com:443",
        (chart) => {
          const ingress = chart.get("Ingress").spec as Record<string, unknown>;
          assert.strictEqual("ingressClassName" in ingress, false, "the cluster's default class");
          assert.deepStrictEqual(ingress.tls, [
            { hosts: ["plex.example.com"], secretName: "plex-tls" },
          ]);
          assert.strictEqual(serviceSpecOf(chart).externalTrafficPolicy, undefined);
        },
      ],
    ];
    for (const [networking, url, check] of modes) {
      it(`${networking.mode}: advertises ${url}, outputs it, and warns about nothing`, async () => {
        let built: Built | undefined;
        const nodeSelector = { "kubernetes.io/hostname": "node-1" };
        const warnings = await captureWarnings(async () => {
          built = await build(baseArgs({ networking, nodeSelector }));
        });
        assert.deepStrictEqual(warnings, []);
        assert.ok(built);
        assert.strictEqual((await unwrap(built.outputs.advertisedUrl)).value, url);
        assert.strictEqual((await unwrap(built.outputs.plexUrl)).value, url);
        const chart = renderChart(built.values);
        assert.strictEqual(pmsEnvOf(chart).ADVERTISE_IP, url);
        check(chart);
      });
    }

    it("internal: warns at preview that clients have no direct path, advertises nothing", async () => {
      let built: Built | undefined;
      const warnings = await captureWarnings(async () => {
        built = await build(baseArgs({ networking: { mode: "internal" } }));
      });
      assert.strictEqual(warnings.length, 1);
      assert.match(warnings[0], /plexNetworking is "internal": Plex is reachable only inside/);
      assert.match(warnings[0], /bandwidth-limited relay/);
      assert.match(warnings[0], /Fix: pulumi config set plexNetworking host/);
      const stale = await captureWarnings(() =>
        build(
          baseArgs({
            vmPreferences: {
              lanNetworks: "",
              customConnections: "http://192.168.13.21:32400",
            },
          }),
        ),
      );
      assert.strictEqual(stale.length, 2, "the config warning, then the VM's stale address");
      assert.match(
        stale[1],
        /Plex keeps advertising what the VM's Preferences\.xml says \(http:\/\/192\.168\.13\.21:32400\), which no longer answers/,
      );
      assert.ok(built);
      assert.strictEqual((await unwrap(built.outputs.advertisedUrl)).value, "");
      const chart = renderChart(built.values);
      assert.strictEqual(pmsEnvOf(chart).ADVERTISE_IP, undefined);
      assert.strictEqual(serviceSpecOf(chart).type, "ClusterIP");
    });

    it("the first preview warns, while the VM's measures are still unknown", async () => {
      const PREFLIGHT_TYPE = "plex-migrate:test:Preflight";
      class Preflight extends pulumi.CustomResource {
        declare readonly preferences: pulumi.Output<{
          lanNetworks: string;
          customConnections: string;
        }>;
        constructor(name: string) {
          super(PREFLIGHT_TYPE, name, { preferences: undefined });
        }
      }
      const warnings = await captureWarnings(() =>
        runWithMocks(
          () => {
            const { PlexRelease } =
              require("../../components/plex-release") as typeof import("../../components/plex-release");
            const preflight = new Preflight("preflight");
            new PlexRelease("plex", baseArgs({ vmPreferences: preflight.preferences }));
            return {};
          },
          {
            preview: true,
            outputs: {
              "plex-migrate:plex:Release": () => ({}),
              [PREFLIGHT_TYPE]: () => ({
                preferences: { lanNetworks: "", customConnections: "http://192.168.13.21:32400" },
              }),
            },
          },
        ),
      );
      assert.strictEqual(warnings.length, 1, JSON.stringify(warnings));
      assert.match(warnings[0], /plexNetworking is "internal"/);
    });

    it("internal with advertised URLs of the user's own: no warning, those URLs advertised", async () => {
      let built: Built | undefined;
      const warnings = await captureWarnings(async () => {
        built = await build(
          baseArgs({
            networking: { mode: "internal" },
            advertiseUrls: ["https://plex.example.net:443"],
          }),
        );
      });
      assert.deepStrictEqual(warnings, []);
      assert.ok(built);
      assert.strictEqual(
        (await unwrap(built.outputs.advertisedUrl)).value,
        "https://plex.example.net:443",
      );
      assert.strictEqual(
        pmsEnvOf(renderChart(built.values)).ADVERTISE_IP,
        "https://plex.example.net:443",
      );
    });

    it("rejects a mode without its fields and malformed advertised URLs, naming them", () => {
      const { PlexRelease } =
        require("../../components/plex-release") as typeof import("../../components/plex-release");
      const cases: [Partial<PlexReleaseArgs>, RegExp][] = [
        [{ networking: { mode: "host", address: "" } }, /networking: mode host needs the address/],
        [
          { networking: { mode: "ingress", host: "Plex Server" } },
          /networking: ingress host "Plex Server" is not a host name/,
        ],
        [{ advertiseUrls: ["plex.lan"] }, /advertiseUrls: "plex.lan" is not a URL/],
        [
          { advertiseUrls: ["http://user:pw@plex.lan:32400"] },
          /advertiseUrls: "http:\/\/user:pw@plex.lan:32400" must not hold credentials/,
        ],
      ];
      for (const [overrides, message] of cases) {
        assert.throws(
          () => new PlexRelease("bad", baseArgs(overrides)),
          (error: Error) => error instanceof pulumi.ResourceError && message.test(error.message),
          `expected ${message}`,
        );
      }
    });
  });
});

function podSpecOf(chart: RenderedChart): { hostNetwork?: boolean; dnsPolicy?: string } {
  return (chart.get("StatefulSet").spec as { template: { spec: Record<string, never> } }).template
    .spec;
}

function serviceSpecOf(chart: RenderedChart): Record<string, string | undefined> {
  return chart.get("Service").spec as Record<string, string | undefined>;
}

function pmsEnvOf(chart: RenderedChart): Record<string, string | undefined> {
  const spec = (
    chart.get("StatefulSet").spec as {
      template: {
        spec: { containers: { name: string; env?: { name: string; value?: string }[] }[] };
      };
    }
  ).template.spec;
  const pms = spec.containers.find((c) => c.name.endsWith("-pms"));
  assert.ok(pms);
  return Object.fromEntries((pms.env ?? []).map((e) => [e.name, e.value]));
}
