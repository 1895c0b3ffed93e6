/**
 * The values plex-migrate builds, rendered by real Helm (`helm template`, the binary
 * scripts/ensure-test-tools.sh builds from Helm's Go module) with the vendored chart in
 * reference/pms-chart/: the assertions are on the StatefulSet, Service, Ingress and ConfigMap
 * Helm writes, for every networking mode.
 */
import * as assert from "assert";
import { execFileSync } from "child_process";
import { parseMediaVolume, type MediaVolume } from "../../lib/plex/media-volumes";
import { chartResourceNames } from "../../lib/plex/chart";
import { buildPlexValues, type PlexValuesInput } from "../../lib/plex/helm-values";
import { plexSyncValues } from "../../lib/plex/init-script";
import { HELM_MODULE_VERSION, helmBinary, renderChart, type Manifest } from "../support/helm";

const NAMES = chartResourceNames("plex");
/** scripts/plex-pms-setup.sh where the image's s6 init runs it, after 40-plex-first-run. */
const PMS_SETUP_MOUNT = {
  name: "plex-migrate-pms-setup",
  mountPath: "/etc/cont-init.d/41-plex-migrate",
  subPath: "41-plex-migrate",
  readOnly: true,
};

function media(entry: string): MediaVolume {
  const parsed = parseMediaVolume(entry);
  if (typeof parsed === "string") throw new Error(parsed);
  return parsed;
}

const SYNC = plexSyncValues({
  containerName: NAMES.initContainer,
  image: "instrumentisto/rsync-ssh:alpine3.23-r3",
  connection: { host: "192.168.13.21", port: 2222, user: "admin" },
  uid: 999,
  gid: 999,
  excludes: [],
  need: { libraryBytes: 9_500_000, inodes: 4300 },
  databases: [
    {
      path: "Plug-in Support/Databases/com.plexapp.plugins.library.db",
      sha256: "c".repeat(64),
      bytes: 9_000_000,
    },
  ],
  secretName: "plex-plex-media-server-sync",
  scriptConfigMapName: "plex-plex-media-server-sync-script",
});

function input(overrides: Partial<PlexValuesInput> = {}): PlexValuesInput {
  return {
    releaseName: "plex",
    imageTag: "1.41.3.9314-a0bfb8370",
    sync: SYNC,
    configClaimName: "plex-plex-media-server-config",
    mediaVolumes: [
      media("/data/movies=nfs://192.168.13.5/volume1/movies"),
      media("/mnt/tv=hostpath:///srv/tv?rw"),
    ],
    uid: 999,
    gid: 999,
    networking: { mode: "internal" },
    advertiseUrls: [],
    pmsSetup: { configMapName: "plex-plex-media-server-pms-setup", groups: [] },
    placement: { nodeSelector: {}, gpu: "none" },
    resources: {},
    ...overrides,
  };
}

interface PodSpec {
  hostNetwork?: boolean;
  dnsPolicy?: string;
  initContainers: Container[];
  containers: Container[];
  volumes: Record<string, unknown>[];
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  ports?: { containerPort: number; name: string }[];
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
  readinessProbe?: unknown;
  securityContext?: unknown;
}

function podSpec(statefulSet: Manifest): PodSpec {
  return (statefulSet.spec as { template: { spec: PodSpec } }).template.spec;
}

function pms(statefulSet: Manifest): Container {
  const container = podSpec(statefulSet).containers.find((c) => c.name === NAMES.pmsContainer);
  assert.ok(container, "the PMS container is rendered");
  return container;
}

function env(container: Container): Record<string, string | undefined> {
  return Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
}

function render(overrides: Partial<PlexValuesInput> = {}) {
  return renderChart(buildPlexValues(input(overrides)));
}

describe("the Plex chart rendered by real Helm (reference/pms-chart, helm template)", () => {
  it(`runs Helm ${HELM_MODULE_VERSION} built from its Go module`, () => {
    const info = execFileSync("go", ["version", "-m", helmBinary()], { encoding: "utf8" });
    assert.match(info, new RegExp(`\\tmod\\thelm\\.sh/helm/v3\\t${HELM_MODULE_VERSION}\\t`));
  });

  it("creates the objects under the names chartResourceNames gives (the outputs and hints)", () => {
    for (const releaseName of ["plex", "plex-media-server", "home-plex-media-server-1"]) {
      const names = chartResourceNames(releaseName);
      const sync = plexSyncValues({
        containerName: names.initContainer,
        image: "instrumentisto/rsync-ssh:alpine3.23-r3",
        connection: { host: "vm", port: 22, user: "root" },
        uid: 999,
        gid: 999,
        excludes: [],
        need: { libraryBytes: 1, inodes: 1001 },
        databases: [],
        secretName: "s",
        scriptConfigMapName: "c",
      });
      const chart = renderChart(buildPlexValues(input({ releaseName, sync })), { releaseName });
      const kinds = chart.manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort();
      assert.deepStrictEqual(kinds, [
        `Service/${names.service}`,
        `ServiceAccount/${names.serviceAccount}`,
        `StatefulSet/${names.statefulSet}`,
      ]);
      const statefulSet = chart.get("StatefulSet");
      assert.strictEqual(
        (statefulSet.spec as { replicas?: number }).replicas,
        undefined,
        "one pod: <fullname>-0",
      );
      assert.strictEqual(`${statefulSet.metadata.name}-0`, names.pod);
      const spec = podSpec(statefulSet);
      assert.deepStrictEqual(
        spec.initContainers.map((c) => c.name),
        [names.initContainer],
      );
      assert.deepStrictEqual(
        spec.containers.map((c) => c.name),
        [names.pmsContainer],
      );
      const withIngress = renderChart(
        buildPlexValues(input({ releaseName, networking: { mode: "ingress", host: "p.lan" } })),
        { releaseName },
      );
      assert.strictEqual(withIngress.get("Ingress").metadata.name, names.ingress);
    }
  });

  it("renders our init container, its volumes (the key in no other container), mounts and probe", () => {
    const chart = render();
    const statefulSet = chart.get("StatefulSet", NAMES.statefulSet);
    const spec = podSpec(statefulSet);
    assert.strictEqual(spec.hostNetwork, undefined);
    assert.strictEqual(spec.dnsPolicy, undefined);

    assert.deepStrictEqual(
      spec.initContainers.map((c) => c.name),
      [NAMES.initContainer],
    );
    const init = spec.initContainers[0];
    // Our own container (extraInitContainers), byte for byte: the chart adds nothing to it.
    assert.deepStrictEqual(init, SYNC.extraInitContainers[0]);
    assert.strictEqual(init.image, "instrumentisto/rsync-ssh:alpine3.23-r3");
    assert.deepStrictEqual(init.command, ["sh", "/plex-migrate-script/plex-init.sh"]);
    assert.strictEqual(env(init).PLEX_SYNC_PHASE, "final");
    assert.strictEqual(env(init).PLEX_SYNC_PORT, "2222");
    assert.deepStrictEqual(init.volumeMounts, [
      { name: "pms-config", mountPath: "/config" },
      { name: "plex-migrate-sync", mountPath: "/plex-migrate-sync", readOnly: true },
      { name: "plex-migrate-script", mountPath: "/plex-migrate-script", readOnly: true },
    ]);
    assert.strictEqual(chart.has("ConfigMap"), false, "the chart's own init script is not used");
    assert.deepStrictEqual(
      spec.volumes.filter((v) =>
        ["plex-migrate-sync", "plex-migrate-script"].includes(String(v.name)),
      ),
      [
        {
          name: "plex-migrate-sync",
          secret: { secretName: "plex-plex-media-server-sync", defaultMode: 0o400 },
        },
        {
          name: "plex-migrate-script",
          configMap: { name: "plex-plex-media-server-sync-script", defaultMode: 0o555 },
        },
      ],
    );
    assert.deepStrictEqual(
      spec.volumes.find((v) => v.name === "pms-config"),
      { name: "pms-config", persistentVolumeClaim: { claimName: "plex-plex-media-server-config" } },
    );
    assert.strictEqual(
      statefulSet.spec && "volumeClaimTemplates" in (statefulSet.spec as object),
      false,
    );

    const plex = pms(statefulSet);
    assert.strictEqual(plex.image, "index.docker.io/plexinc/pms-docker:1.41.3.9314-a0bfb8370");
    assert.deepStrictEqual(plex.ports, [{ containerPort: 32400, name: "pms" }]);
    assert.deepStrictEqual(plex.volumeMounts, [
      { name: "pms-config", mountPath: "/config" },
      { name: "pms-transcode", mountPath: "/transcode" },
      { name: "media-data-movies", mountPath: "/data/movies", readOnly: true },
      { name: "media-mnt-tv", mountPath: "/mnt/tv", readOnly: false },
      PMS_SETUP_MOUNT,
    ]);
    assert.deepStrictEqual(
      spec.volumes.find((v) => v.name === "plex-migrate-pms-setup"),
      {
        name: "plex-migrate-pms-setup",
        configMap: { name: "plex-plex-media-server-pms-setup", defaultMode: 0o755 },
      },
      "the image's init runs it: executable",
    );
    assert.deepStrictEqual(plex.readinessProbe, {
      httpGet: { path: "/identity", port: 32400 },
      initialDelaySeconds: 10,
      periodSeconds: 10,
      timeoutSeconds: 5,
      failureThreshold: 6,
    });
    assert.strictEqual(plex.securityContext, undefined, "s6 in the image starts as root");
  });

  it("internal: a ClusterIP Service only, no Ingress, nothing advertised", () => {
    const chart = render({ networking: { mode: "internal" } });
    assert.strictEqual(chart.has("Ingress"), false);
    const service = chart.get("Service", NAMES.service);
    assert.deepStrictEqual(service.spec, {
      type: "ClusterIP",
      ports: [{ port: 32400, targetPort: 32400, protocol: "TCP", name: "pms" }],
      selector: {
        "app.kubernetes.io/name": "plex-media-server",
        "app.kubernetes.io/instance": "plex",
      },
    });
    const plex = pms(chart.get("StatefulSet"));
    assert.deepStrictEqual(env(plex), { PLEX_GID: "999", PLEX_UID: "999" });
  });

  it("host: the node's network with cluster DNS, and the node's address advertised", () => {
    const chart = render({ networking: { mode: "host", address: "192.168.13.30" } });
    const spec = podSpec(chart.get("StatefulSet"));
    assert.strictEqual(spec.hostNetwork, true);
    assert.strictEqual(spec.dnsPolicy, "ClusterFirstWithHostNet");
    assert.strictEqual(chart.has("Ingress"), false);
    assert.strictEqual((chart.get("Service").spec as { type: string }).type, "ClusterIP");
    assert.deepStrictEqual(env(pms(chart.get("StatefulSet"))), {
      ADVERTISE_IP: "http://192.168.13.30:32400",
      PLEX_GID: "999",
      PLEX_UID: "999",
    });
  });

  it("loadBalancer: the fixed address, client addresses kept (Local), advertised with extras", () => {
    const chart = render({
      networking: { mode: "loadBalancer", address: "192.168.13.40" },
      advertiseUrls: ["https://plex.example.net:32443"],
    });
    const service = chart.get("Service", NAMES.service);
    assert.deepStrictEqual(service.spec, {
      type: "LoadBalancer",
      loadBalancerIP: "192.168.13.40",
      externalTrafficPolicy: "Local",
      ports: [{ port: 32400, targetPort: 32400, protocol: "TCP", name: "pms" }],
      selector: {
        "app.kubernetes.io/name": "plex-media-server",
        "app.kubernetes.io/instance": "plex",
      },
    });
    assert.strictEqual(podSpec(chart.get("StatefulSet")).hostNetwork, undefined);
    assert.strictEqual(
      env(pms(chart.get("StatefulSet"))).ADVERTISE_IP,
      "http://192.168.13.40:32400,https://plex.example.net:32443",
    );
  });

  it("loadBalancer on IPv6: the address in brackets in the URL, bare in the Service", () => {
    const chart = render({ networking: { mode: "loadBalancer", address: "fd00:13::40" } });
    assert.strictEqual(
      (chart.get("Service").spec as { loadBalancerIP: string }).loadBalancerIP,
      "fd00:13::40",
    );
    assert.strictEqual(
      env(pms(chart.get("StatefulSet"))).ADVERTISE_IP,
      "http://[fd00:13::40]:32400",
    );
  });

  it("ingress without a class: the cluster's default IngressClass, http advertised", () => {
    const chart = render({ networking: { mode: "ingress", host: "plex.home.arpa" } });
    const ingress = chart.get("Ingress", NAMES.ingress);
    assert.deepStrictEqual(ingress.spec, {
      rules: [
        {
          host: "plex.home.arpa",
          http: {
            paths: [
              {
                path: "/",
                pathType: "Prefix",
                backend: { service: { name: NAMES.service, port: { number: 32400 } } },
              },
            ],
          },
        },
      ],
    });
    assert.strictEqual((chart.get("Service").spec as { type: string }).type, "ClusterIP");
    assert.strictEqual(
      env(pms(chart.get("StatefulSet"))).ADVERTISE_IP,
      "http://plex.home.arpa:80",
      "no TLS, so not the chart's https://…:443",
    );
  });

  it("ingress with class and TLS: https advertised on 443", () => {
    const chart = render({
      networking: {
        mode: "ingress",
        host: "plex.example.com",
        className: "traefik",
        tlsSecret: "plex-example-com-tls",
      },
    });
    const ingress = chart.get("Ingress", NAMES.ingress);
    const spec = ingress.spec as {
      ingressClassName?: string;
      tls?: unknown;
      rules: { host: string }[];
    };
    assert.strictEqual(spec.ingressClassName, "traefik");
    assert.deepStrictEqual(spec.tls, [
      { hosts: ["plex.example.com"], secretName: "plex-example-com-tls" },
    ]);
    assert.strictEqual(spec.rules[0].host, "plex.example.com");
    assert.strictEqual(
      env(pms(chart.get("StatefulSet"))).ADVERTISE_IP,
      "https://plex.example.com:443",
    );
  });

  it("hands the VM's groups, LAN networks and time zone to the Plex container's environment", () => {
    const chart = render({
      timezone: "Europe/Berlin",
      pmsSetup: {
        configMapName: "plex-plex-media-server-pms-setup",
        groups: [44, 1001],
        lanNetworks: "192.168.13.0/24,10.42.0.0/16",
      },
    });
    assert.deepStrictEqual(env(pms(chart.get("StatefulSet"))), {
      PLEX_GID: "999",
      PLEX_MIGRATE_GROUPS: "44,1001",
      PLEX_MIGRATE_LAN_NETWORKS: "192.168.13.0/24,10.42.0.0/16",
      PLEX_UID: "999",
      TZ: "Europe/Berlin",
    });
  });

  it("pins the pod with the node selector, and leaves the chart's empty one otherwise", () => {
    const pinned = render({
      placement: { nodeSelector: { "kubernetes.io/hostname": "node-1" }, gpu: "none" },
    });
    assert.deepStrictEqual(
      (podSpec(pinned.get("StatefulSet")) as { nodeSelector?: unknown }).nodeSelector,
      { "kubernetes.io/hostname": "node-1" },
    );
    assert.deepStrictEqual(
      (podSpec(render().get("StatefulSet")) as { nodeSelector?: unknown }).nodeSelector,
      {},
    );
  });

  it("gpu intel: one gpu.intel.com/i915 from the device plugin, nothing privileged", () => {
    const chart = render({
      placement: { nodeSelector: {}, gpu: "intel" },
      resources: { memoryLimit: "4Gi" },
    });
    const plex = pms(chart.get("StatefulSet")) as Container & { resources?: unknown };
    assert.deepStrictEqual(plex.resources, {
      limits: { memory: "4Gi", "gpu.intel.com/i915": "1" },
    });
    assert.strictEqual(plex.securityContext, undefined);
    assert.ok(!plex.volumeMounts.some((m) => m.mountPath === "/dev/dri"));
  });

  it("gpu dev-dri: the node's /dev/dri in a privileged Plex container", () => {
    const chart = render({ placement: { nodeSelector: {}, gpu: "dev-dri" } });
    const statefulSet = chart.get("StatefulSet");
    const plex = pms(statefulSet);
    assert.deepStrictEqual(plex.securityContext, { privileged: true });
    assert.deepStrictEqual(
      plex.volumeMounts.find((m) => m.mountPath === "/dev/dri"),
      { name: "dev-dri", mountPath: "/dev/dri" },
    );
    assert.deepStrictEqual(
      podSpec(statefulSet).volumes.find((v) => v.name === "dev-dri"),
      { name: "dev-dri", hostPath: { path: "/dev/dri", type: "Directory" } },
    );
  });

  it("the claim token reaches PMS from its Secret, never as a plain value", () => {
    const chart = render({ claimSecretName: "plex-plex-media-server-claim" });
    const claim = (pms(chart.get("StatefulSet")).env ?? []).find((e) => e.name === "PLEX_CLAIM");
    assert.deepStrictEqual(claim, {
      name: "PLEX_CLAIM",
      valueFrom: { secretKeyRef: { name: "plex-plex-media-server-claim", key: "token" } },
    });
  });

  it("renders resources as requests and limits of the PMS container", () => {
    const chart = render({
      resources: { cpuRequest: "1", memoryRequest: "2Gi", memoryLimit: "4Gi" },
    });
    assert.deepStrictEqual((pms(chart.get("StatefulSet")) as { resources?: unknown }).resources, {
      limits: { memory: "4Gi" },
      requests: { cpu: "1", memory: "2Gi" },
    });
  });

  it("fails loudly when Helm cannot render the values (the renderer really runs)", () => {
    assert.throws(
      () => renderChart({ extraVolumes: "not-a-list", initContainer: { script: "x" } }),
      /Command failed/,
    );
  });
});
