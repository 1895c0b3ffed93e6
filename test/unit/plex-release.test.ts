/**
 * PlexRelease under Pulumi mocks: the exact Helm values, the config claim (size, retain, protect),
 * the Secrets (archive URL, claim token) and what waits for the archive being served.
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { parseMediaVolume, type MediaVolume } from "../../lib/config";
import { renderInitScript } from "../../lib/plex/init-script";
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
const TOKEN = "3q2-7wEbSecretServingTokenZm9vYmFy";
const ARCHIVE_URL = `http://192.168.13.21:32499/${TOKEN}/plex-library.tar.zst`;
const CLAIM = "claim-Secretclaimtoken123";
const SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const VM_VERSION = "1.41.3.9314-a0bfb8370";
/** A direct path for clients, so only the warning a test is about is emitted. */
const LB = { networking: { mode: "loadBalancer", address: "192.168.13.40" } } as const;

const RELEASE_TYPE = "kubernetes:helm.sh/v3:Release";
const PVC_TYPE = "kubernetes:core/v1:PersistentVolumeClaim";
const SECRET_TYPE = "kubernetes:core/v1:Secret";
const NAMESPACE_TYPE = "kubernetes:core/v1:Namespace";
const CONFIGMAP_TYPE = "kubernetes:core/v1:ConfigMap";
const SERVED_TYPE = "plex-migrate:test:ArchiveServed";

function media(entry: string): MediaVolume {
  const parsed = parseMediaVolume(entry);
  if (typeof parsed === "string") throw new Error(parsed);
  return parsed;
}

function baseArgs(overrides: Partial<PlexReleaseArgs> = {}): PlexReleaseArgs {
  return {
    namespace: "plex",
    createNamespace: true,
    releaseName: "plex",
    chartVersion: "1.5.0",
    chartRepo: "https://raw.githubusercontent.com/plexinc/pms-docker/gh-pages",
    plexVersion: VM_VERSION,
    initImage: "alpine:3.22",
    configSize: "auto",
    configHeadroomPercent: 50,
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
    archive: {
      url: pulumi.secret(ARCHIVE_URL),
      sha256: SHA,
      bytes: 12_345_678,
      format: "tar.zst",
    },
    protectData: true,
    ...overrides,
  };
}

/** Stands for SourceVm.archiveServed (a remote command in the real program). */
class ArchiveServed extends pulumi.CustomResource {
  constructor(name: string) {
    super(SERVED_TYPE, name, {});
  }
}

interface Built {
  run: MockRun;
  outputs: Record<string, pulumi.Output<unknown>>;
  component: Registration;
  release: Registration;
  claim: Registration;
  archiveSecret: Registration;
  values: Record<string, unknown>;
}

/**
 * Builds a PlexRelease under mocks. Like index.ts, it depends on a resource standing for "the
 * archive is being served" (`served`).
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
      const served = new ArchiveServed("archive-served");
      const dependsOn =
        dependsOnShape === "list" ? [served] : dependsOnShape === "single" ? served : undefined;
      const plex = new PlexRelease("plex", args, { dependsOn });
      return {
        namespace: plex.namespace,
        configClaimName: plex.configClaimName,
        configSize: plex.configSize,
        imageTag: plex.imageTag,
        plexUrl: plex.plexUrl,
        advertisedUrl: plex.advertisedUrl,
        releaseUrn: plex.release.urn,
      };
    },
    {
      outputs: {
        "plex-migrate:plex:Release": () => ({}),
        [SERVED_TYPE]: () => ({}),
      },
    },
  );
  const release = run.get(RELEASE_TYPE, "plex-chart");
  return {
    run,
    outputs: run.exports as Record<string, pulumi.Output<unknown>>,
    component: run.get("plex-migrate:plex:Release", "plex"),
    release,
    claim: run.get(PVC_TYPE, "plex-config"),
    archiveSecret: run.get(SECRET_TYPE, "plex-archive-url"),
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
    const script = renderInitScript({
      archiveSha256: SHA,
      archiveBytes: 12_345_678,
      archiveFormat: "tar.zst",
      libraryBytes: 30 * GiB,
      uid: 1000,
      gid: 1000,
    });
    assert.deepStrictEqual(built.values, {
      image: { tag: VM_VERSION },
      initContainer: {
        image: { registry: "index.docker.io", repository: "alpine", tag: "3.22", sha: "" },
        script,
      },
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
          name: "plex-migrate-archive",
          secret: {
            secretName: "plex-plex-media-server-archive",
            defaultMode: 0o400,
            optional: true,
          },
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
        { name: "plex-migrate-archive", mountPath: "/plex-migrate", readOnly: true },
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
    assert.ok(script.startsWith("#!/bin/sh\n"), "the chart runs /init/init.sh directly");
    assert.ok(script.includes(`PLEX_ARCHIVE_SHA256='${SHA}'`));
  });

  it("keeps the minimal values minimal (no claim, no resources, no ingress, no media)", async () => {
    const { values } = await build(baseArgs());
    assert.deepStrictEqual(Object.keys(values).sort(), [
      "extraEnv",
      "extraVolumeMounts",
      "extraVolumes",
      "image",
      "ingress",
      "initContainer",
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
    assert.strictEqual(release.inputs.timeout, 600 + 2, "10 min + 1 s per 10 MiB of archive");
    assert.strictEqual(release.inputs.atomic, undefined, "a failed start must not uninstall");
    assert.strictEqual(run.get(PVC_TYPE, "plex-config").inputs.metadata instanceof Object, true);
    assert.strictEqual(
      (run.get(PVC_TYPE, "plex-config").inputs.metadata as { name: string }).name,
      "media-plex-media-server-config",
    );
  });

  it("takes the chart from an OCI registry when chartRepo is oci://", async () => {
    const { release } = await build(baseArgs({ chartRepo: "oci://ghcr.io/example/charts/" }));
    assert.strictEqual(release.inputs.chart, "oci://ghcr.io/example/charts/plex-media-server");
    assert.strictEqual(release.inputs.repositoryOpts, undefined);
  });

  it("creates the config claim sized auto, retained always and protected with protectData", async () => {
    const { claim } = await build(baseArgs({ storageClass: "local-zfs" }));
    assert.deepStrictEqual(claim.inputs.metadata, {
      name: "plex-plex-media-server-config",
      namespace: "plex",
      labels: {
        "app.kubernetes.io/part-of": "plex-migrate",
        "app.kubernetes.io/instance": "plex",
        "app.kubernetes.io/managed-by": "pulumi",
        "app.kubernetes.io/component": "plex-config",
      },
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

    const unprotected = await build(baseArgs({ protectData: false }));
    assert.strictEqual(unprotected.claim.retainOnDelete, true, "never deleted by pulumi destroy");
    assert.strictEqual(unprotected.claim.protect, false);
    assert.strictEqual(
      (unprotected.claim.inputs.spec as { storageClassName?: string }).storageClassName,
      undefined,
      "no storage class: the cluster default",
    );
  });

  it("sizes auto claims: rounds up to whole GiB, at least 10Gi; explicit sizes pass through", async () => {
    const storage = (b: Built) =>
      (b.claim.inputs.spec as { resources: { requests: { storage: string } } }).resources.requests
        .storage;
    const small = await build(baseArgs({ libraryBytes: 2 * GiB }));
    assert.strictEqual(storage(small), "10Gi");
    const justOver = await build(
      baseArgs({ libraryBytes: 20 * GiB + 1, configHeadroomPercent: 0 }),
    );
    assert.strictEqual(storage(justOver), "24Gi");
    const manyFiles = await build(baseArgs({ libraryBytes: 2 * GiB, fileCount: 3_000_000 }));
    assert.strictEqual(storage(manyFiles), "76Gi", "3M files + 50%: 4.95M inodes of 16 KiB");
    const explicit = await build(baseArgs({ configSize: "200Gi" }));
    assert.strictEqual(storage(explicit), "200Gi");
    assert.deepStrictEqual(explicit.claim.ignoreChanges, [], "an explicit size is applied");
    assert.strictEqual((await unwrap(explicit.outputs.configSize)).value, "200Gi");
  });

  it("keeps the archive URL in a Secret only, and the claim token in its own Secret", async () => {
    const built = await build(baseArgs({ claimToken: pulumi.secret(CLAIM) }));
    const { run, archiveSecret } = built;
    assert.deepStrictEqual(unwrapSecrets(archiveSecret.inputs.stringData), {
      "archive-url": ARCHIVE_URL,
    });
    assert.ok(isSecretInput(archiveSecret, "stringData.archive-url"), "URL marked secret");
    assert.deepStrictEqual(archiveSecret.inputs.metadata, {
      name: "plex-plex-media-server-archive",
      namespace: "plex",
      labels: {
        "app.kubernetes.io/part-of": "plex-migrate",
        "app.kubernetes.io/instance": "plex",
        "app.kubernetes.io/managed-by": "pulumi",
      },
    });
    assert.strictEqual(archiveSecret.deleteBeforeReplace, true, "fixed name: replace in place");
    const claimSecret = run.get(SECRET_TYPE, "plex-claim-token");
    assert.deepStrictEqual(unwrapSecrets(claimSecret.inputs.stringData), { token: CLAIM });
    assert.ok(isSecretInput(claimSecret, "stringData.token"));

    for (const registration of run.registrations) {
      for (const text of plainStrings(registration.rawInputs)) {
        assert.ok(!text.includes(TOKEN), `serving token in plain inputs of ${registration.name}`);
        assert.ok(!text.includes(CLAIM), `claim token in plain inputs of ${registration.name}`);
      }
    }
    for (const [name, output] of Object.entries(built.outputs)) {
      const { value } = await unwrap(output);
      const text = JSON.stringify(value) ?? "";
      assert.ok(!text.includes(TOKEN) && !text.includes(CLAIM), `secret in output ${name}`);
    }

    const withoutClaim = await build(baseArgs());
    assert.strictEqual(withoutClaim.run.byType(SECRET_TYPE).length, 1, "only the archive Secret");
  });

  it("waits for the archive being served: the release and the URL Secret depend on it", async () => {
    for (const shape of ["list", "single"] as const) {
      const { run, release, archiveSecret, claim } = await build(
        baseArgs({ claimToken: pulumi.secret(CLAIM) }),
        shape,
      );
      const served = run.get(SERVED_TYPE, "archive-served").urn;
      const claimSecret = run.get(SECRET_TYPE, "plex-claim-token").urn;
      for (const urn of [served, claim.urn, archiveSecret.urn, claimSecret]) {
        assert.ok(release.dependencies.includes(urn), `${shape}: release waits for ${urn}`);
      }
      assert.ok(archiveSecret.dependencies.includes(served), `${shape}: Secret waits for serving`);
    }
    // Without a caller dependency the release still waits for its own claim and Secret.
    const alone = await build(baseArgs(), "none");
    assert.ok(alone.release.dependencies.includes(alone.claim.urn));
    assert.ok(alone.release.dependencies.includes(alone.archiveSecret.urn));
  });

  it("creates a retained namespace, or uses an existing one", async () => {
    const created = await build(baseArgs());
    const namespace = created.run.get(NAMESPACE_TYPE, "plex-namespace");
    assert.strictEqual((namespace.inputs.metadata as { name: string }).name, "plex");
    assert.strictEqual(namespace.retainOnDelete, true, "deleting it would delete the claim");
    assert.strictEqual(namespace.protect, true);
    assert.strictEqual(namespace.parentUrn, created.component.urn);

    const existing = await build(baseArgs({ createNamespace: false, namespace: "media" }));
    assert.strictEqual(existing.run.byType(NAMESPACE_TYPE).length, 0);
    assert.strictEqual((await unwrap(existing.outputs.namespace)).value, "media");
    assert.strictEqual(existing.release.inputs.namespace, "media");
  });

  it("parents every child to the component with names derived from its name", async () => {
    const { run, component } = await build(baseArgs({ claimToken: pulumi.secret(CLAIM) }));
    const children = run.childrenOf(component).map((r) => `${r.type} ${r.name}`);
    assert.deepStrictEqual(children.sort(), [
      `${CONFIGMAP_TYPE} plex-pms-setup`,
      `${NAMESPACE_TYPE} plex-namespace`,
      `${PVC_TYPE} plex-config`,
      `${SECRET_TYPE} plex-archive-url`,
      `${SECRET_TYPE} plex-claim-token`,
      `${RELEASE_TYPE} plex-chart`,
    ]);
  });

  it("outputs the namespace, claim, size, tag and URLs", async () => {
    const plain = await build(baseArgs());
    const value = async (name: string) => (await unwrap(plain.outputs[name])).value;
    assert.strictEqual(await value("namespace"), "plex");
    assert.strictEqual(await value("configClaimName"), "plex-plex-media-server-config");
    assert.strictEqual(await value("configSize"), "52Gi");
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

  it("passes a registry, digest and tag of the init image to the chart's fields", async () => {
    const digest = `sha256:${"ab".repeat(32)}`;
    const { values } = await build(
      baseArgs({ initImage: `registry.example.com:5000/tools/plex-init:2.1@${digest}` }),
    );
    assert.deepStrictEqual((values.initContainer as { image: unknown }).image, {
      registry: "registry.example.com:5000",
      repository: "tools/plex-init",
      tag: "2.1",
      sha: digest,
    });
  });

  it("rejects bad arguments at construction, naming the field", () => {
    const { PlexRelease } =
      require("../../components/plex-release") as typeof import("../../components/plex-release");
    const cases: [Partial<PlexReleaseArgs>, RegExp][] = [
      [{ releaseName: "Plex_Server" }, /releaseName "Plex_Server"/],
      [{ namespace: "-bad" }, /namespace "-bad"/],
      [{ chartVersion: "latest" }, /chartVersion "latest"/],
      [{ configSize: "lots" }, /configSize: "lots" is not a Kubernetes quantity/],
      [{ initImage: "alpine@sha256:nope" }, /initImage: "alpine@sha256:nope"/],
      [{ uid: -1 }, /uid -1/],
      [
        { mediaVolumes: [{ ...media("/srv/movies=hostpath:///srv"), mountPath: "/plex-migrate" }] },
        /mediaVolumes: media mount path \/plex-migrate is used by the Plex pod itself/,
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
          base.archive.url = pulumi.secret(base.archive.url);
          await pulumi.runtime.runInPulumiStack(async () => {
            new PlexRelease("plex", { ...base, ...overrides, archive: { ...base.archive, ...(overrides.archive || {}) } });
            return {};
          });
          await new Promise((r) => setTimeout(r, 300));
          out.push([...new Set(messages)]);
        }
        process.stdout.write(JSON.stringify(out));
        process.exit(0);
      })();
    `;
    const base = { ...baseArgs(), archive: { ...baseArgs().archive, url: ARCHIVE_URL } };
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { configSize: "20Gi" },
        /plexConfigSize 20Gi cannot hold the Plex library \(30\.00 GiB and 0 files measured on the VM\) once formatted: .*Fix: pulumi config set plexConfigSize 35Gi/,
      ],
      [{ plexVersion: "" }, /the VM reported Plex version "", which is not a pms-docker image tag/],
      [{ archive: { sha256: "not-a-sha" } }, /archive sha256 "not-a-sha" is not 64 hex digits/],
      [{ archive: { format: "zip" } }, /archive format "zip" is not one of tar\.zst, tar\.gz, tar/],
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
      for (const m of messages[i]) assert.ok(!m.includes(TOKEN), "the token never in an error");
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
      const script = (built.values.initContainer as { script: string }).script;
      assert.ok(script.includes("PLEX_UID='999'") && script.includes("PLEX_GID='997'"));
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
    it("labels a created namespace with the least Pod Security level the pod passes", async () => {
      const level = async (overrides: Partial<PlexReleaseArgs>) => {
        const built = await build(baseArgs({ ...LB, ...overrides }));
        const labels = (
          built.run.get(NAMESPACE_TYPE, "plex-namespace").inputs.metadata as {
            labels: Record<string, string>;
          }
        ).labels;
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
