/**
 * Our values and names against the real plex-media-server chart copied in reference/pms-chart/:
 * every key we pass exists in its values.yaml, and the names we print and output are the names
 * its templates create.
 */
import * as assert from "assert";
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";
import { projectConfigDeclarations } from "../../lib/config";
import { parseMediaVolume, type MediaVolume } from "../../lib/plex/media-volumes";
import {
  CHART_NAME,
  CHART_REFERENCE_DIR,
  chartFullname,
  plexMigrateObjectNames,
} from "../../lib/plex/chart";
import { loadChartValues, unknownValueKeys } from "../support/chart-values";
import { buildPlexValues } from "../../lib/plex/helm-values";
import type { PlexNetworking } from "../../lib/plex/networking";
import { GPU_MODES, type GpuMode } from "../../lib/plex/placement";
import { plexSyncValues } from "../../lib/plex/init-script";

const template = (name: string) =>
  fs.readFileSync(path.join(CHART_REFERENCE_DIR, "templates", name), "utf8");

function media(entry: string): MediaVolume {
  const parsed = parseMediaVolume(entry);
  if (typeof parsed === "string") throw new Error(parsed);
  return parsed;
}

const EVERY_MODE: PlexNetworking[] = [
  { mode: "host", address: "192.168.13.30" },
  { mode: "loadBalancer", address: "192.168.13.40" },
  { mode: "ingress", host: "plex.example.com", className: "nginx", tlsSecret: "plex-tls" },
  { mode: "internal" },
];

/** Values with every optional feature on, so every key we can ever pass is checked. */
function everyFeatureValues(
  networking: PlexNetworking,
  gpu: GpuMode = "intel",
): Record<string, unknown> {
  return buildPlexValues({
    releaseName: "plex",
    imageTag: "1.41.3.9314-a0bfb8370",
    sync: plexSyncValues({
      containerName: "plex-plex-media-server-pms-init",
      image: "instrumentisto/rsync-ssh:alpine3.23-r3",
      connection: { host: "vm", port: 22, user: "root" },
      uid: 1000,
      gid: 1000,
      excludes: ["Cache"],
      need: { libraryBytes: 4000, inodes: 1100 },
      databases: [{ path: "x.db", sha256: "a".repeat(64), bytes: 4000 }],
      secretName: "plex-plex-media-server-sync",
      scriptConfigMapName: "plex-plex-media-server-sync-script",
    }),
    configClaimName: "plex-plex-media-server-config",
    claimSecretName: "plex-plex-media-server-claim",
    mediaVolumes: [
      media("/mnt/nas-plex/Movies=nfs://nas/volume1/movies"),
      media("/mnt/tv=hostpath:///srv/tv?rw"),
      media("/mnt/music=pvc://music"),
    ],
    uid: 1000,
    gid: 1000,
    networking,
    advertiseUrls: ["http://plex.example.net:32400"],
    timezone: "Europe/Berlin",
    pmsSetup: {
      configMapName: "plex-plex-media-server-pms-setup",
      groups: [44],
      lanNetworks: "10.42.0.0/16",
    },
    placement: { nodeSelector: { "kubernetes.io/hostname": "node-1" }, gpu },
    resources: { cpuRequest: "1", memoryRequest: "2Gi", memoryLimit: "4Gi" },
  });
}

describe("plex-media-server chart facts (reference/pms-chart)", () => {
  const chartValues = loadChartValues();

  it("has every values key we pass, with the kind (map/list/scalar) the chart expects", () => {
    for (const networking of EVERY_MODE) {
      for (const gpu of GPU_MODES) {
        assert.deepStrictEqual(
          unknownValueKeys(everyFeatureValues(networking, gpu), chartValues),
          [],
        );
      }
    }
    const values = everyFeatureValues(EVERY_MODE[0]);
    // The keys that carry the move are really among them.
    const pms = values.pms as Record<string, unknown>;
    assert.strictEqual(pms.configExistingClaim, "plex-plex-media-server-config");
    assert.strictEqual((values.extraInitContainers as unknown[]).length, 1);
  });

  it("the checker catches misspelt keys and wrong kinds (so the test above can fail)", () => {
    assert.deepStrictEqual(
      unknownValueKeys(
        {
          pms: { configExistingClam: "x", resources: { limits: { cpu: "1" } } },
          initContainer: { image: { tag: "3.22", pullPolicy: "Always", digest: "x" } },
          extraVolumes: { name: "not-a-list" },
          extraInitContainers: { name: "not-a-list" },
          extraEnv: ["PLEX_UID=1000"],
          image: "plexinc/pms-docker",
          ingres: { enabled: true },
        },
        chartValues,
      ),
      [
        "pms.configExistingClam: not a value of the chart",
        "initContainer.image.digest: not a value of the chart",
        "extraVolumes: the chart expects a list",
        "extraInitContainers: the chart expects a list",
        "extraEnv: the chart expects a map",
        "image: the chart expects a map",
        "ingres: not a value of the chart",
      ],
    );
  });

  it("is the chart version the stack pins by default", () => {
    const chart = YAML.parse(fs.readFileSync(path.join(CHART_REFERENCE_DIR, "Chart.yaml"), "utf8"));
    assert.strictEqual(chart.name, CHART_NAME);
    assert.strictEqual(chart.version, projectConfigDeclarations().plexChartVersion.default);
  });

  it("names things the way _helpers.tpl does", () => {
    const helpers = template("_helpers.tpl");
    // The rules mirrored by chartFullname, as written in the chart.
    assert.ok(helpers.includes('{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}'));
    assert.ok(helpers.includes("{{- if contains $name .Release.Name }}"));
    assert.ok(helpers.includes('{{- .Release.Name | trunc 63 | trimSuffix "-" }}'));
    assert.ok(
      helpers.includes('{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}'),
    );
    assert.strictEqual(chartFullname("plex"), "plex-plex-media-server");
    assert.strictEqual(chartFullname("plex-media-server"), "plex-media-server");
    assert.strictEqual(chartFullname("home-plex-media-server-1"), "home-plex-media-server-1");
    assert.strictEqual(chartFullname("plex", { fullnameOverride: "pms" }), "pms");
    assert.strictEqual(chartFullname("plex", { nameOverride: "plex" }), "plex");
    const long = "a".repeat(40) + "-b";
    assert.strictEqual(chartFullname(long), `${long}-plex-media-server`.slice(0, 63));
    // Truncation never leaves a trailing "-".
    assert.strictEqual(chartFullname("a".repeat(45)), `${"a".repeat(45)}-plex-media-server`);
    assert.strictEqual(chartFullname("a".repeat(46)), `${"a".repeat(46)}-plex-media-serve`);
    assert.strictEqual(
      chartFullname("a".repeat(62) + "-x", { fullnameOverride: "a".repeat(62) + "-x" }),
      "a".repeat(62),
    );
  });

  it("names plex-migrate's own objects after the chart's fullname", () => {
    assert.deepStrictEqual(plexMigrateObjectNames("plex"), {
      configClaim: "plex-plex-media-server-config",
      syncSecret: "plex-plex-media-server-sync",
      syncScript: "plex-plex-media-server-sync-script",
      warmCopyJob: "plex-plex-media-server-warm-copy",
      claimSecret: "plex-plex-media-server-claim",
      pmsSetupConfigMap: "plex-plex-media-server-pms-setup",
    });
  });
});
