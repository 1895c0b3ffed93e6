/**
 * lib/postgres/instance-spec.ts and lib/postgres/tunnel.ts's port rule: the in-cluster server's
 * Kubernetes objects with exact values, and the tunnel's fixed local port.
 */
import * as assert from "assert/strict";
import {
  buildAdminSecret,
  buildDataClaim,
  buildService,
  buildStatefulSet,
  postgresImage,
  postgresSelector,
} from "../../lib/postgres/instance-spec";
import { describeTunnel, tunnelPortFor } from "../../lib/postgres/tunnel";

const LABELS = {
  "app.kubernetes.io/name": "postgres",
  "app.kubernetes.io/instance": "pg",
  "app.kubernetes.io/component": "database",
  "app.kubernetes.io/part-of": "plex-migrate",
  "app.kubernetes.io/managed-by": "pulumi",
};
const SELECTOR = { "app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": "pg" };
const READY = ["sh", "-c", 'exec pg_isready -h 127.0.0.1 -p 5432 -U "$POSTGRES_USER" -d postgres'];

describe("in-cluster Postgres objects (pure builders)", () => {
  it("selector, image", () => {
    assert.deepEqual(postgresSelector("pg"), SELECTOR);
    assert.equal(postgresImage("16"), "docker.io/library/postgres:16");
  });

  it("the admin Secret, the data claim and a ClusterIP Service", () => {
    assert.deepEqual(
      buildAdminSecret({ name: "pg", namespace: "media", adminUser: "root", password: "pw" }),
      {
        metadata: { name: "pg-admin", namespace: "media", labels: LABELS },
        type: "Opaque",
        stringData: { POSTGRES_USER: "root", POSTGRES_PASSWORD: "pw" },
      },
    );
    assert.deepEqual(
      buildDataClaim({ name: "pg", namespace: "media", storageSize: "5Gi", storageClass: "fast" }),
      {
        metadata: {
          name: "pg-data",
          namespace: "media",
          labels: LABELS,
          annotations: { "pulumi.com/skipAwait": "true" },
        },
        spec: {
          accessModes: ["ReadWriteOnce"],
          resources: { requests: { storage: "5Gi" } },
          storageClassName: "fast",
        },
      },
    );
    assert.deepEqual(buildService({ name: "pg", namespace: "media" }), {
      metadata: { name: "pg", namespace: "media", labels: LABELS },
      spec: {
        type: "ClusterIP",
        selector: SELECTOR,
        ports: [{ name: "postgres", port: 5432, targetPort: "postgres", protocol: "TCP" }],
      },
    });
  });

  it("the StatefulSet, every field", () => {
    assert.deepEqual(
      buildStatefulSet({
        name: "pg",
        namespace: "media",
        image: "registry.lan/postgres:17.2",
        serviceName: "pg",
        adminSecretName: "pg-admin",
        claimName: "pg-data",
        resources: { cpuRequest: "250m", memoryLimit: "2Gi" },
      }),
      {
        metadata: { name: "pg", namespace: "media", labels: LABELS },
        spec: {
          serviceName: "pg",
          replicas: 1,
          selector: { matchLabels: SELECTOR },
          template: {
            metadata: { labels: LABELS },
            spec: {
              securityContext: {
                runAsUser: 999,
                runAsGroup: 999,
                fsGroup: 999,
                runAsNonRoot: true,
                seccompProfile: { type: "RuntimeDefault" },
              },
              terminationGracePeriodSeconds: 60,
              containers: [
                {
                  name: "postgres",
                  image: "registry.lan/postgres:17.2",
                  ports: [{ name: "postgres", containerPort: 5432, protocol: "TCP" }],
                  env: [
                    {
                      name: "POSTGRES_USER",
                      valueFrom: { secretKeyRef: { name: "pg-admin", key: "POSTGRES_USER" } },
                    },
                    {
                      name: "POSTGRES_PASSWORD",
                      valueFrom: { secretKeyRef: { name: "pg-admin", key: "POSTGRES_PASSWORD" } },
                    },
                    { name: "PGDATA", value: "/var/lib/postgresql/pgdata" },
                    { name: "POSTGRES_INITDB_ARGS", value: "--encoding=UTF8 --data-checksums" },
                  ],
                  volumeMounts: [{ name: "data", mountPath: "/var/lib/postgresql" }],
                  startupProbe: {
                    exec: { command: READY },
                    periodSeconds: 5,
                    timeoutSeconds: 5,
                    failureThreshold: 120,
                  },
                  readinessProbe: {
                    exec: { command: READY },
                    periodSeconds: 10,
                    timeoutSeconds: 5,
                    failureThreshold: 3,
                  },
                  livenessProbe: {
                    exec: { command: READY },
                    periodSeconds: 20,
                    timeoutSeconds: 5,
                    failureThreshold: 6,
                  },
                  resources: {
                    requests: { cpu: "250m", memory: "256Mi" },
                    limits: { memory: "2Gi" },
                  },
                  securityContext: {
                    allowPrivilegeEscalation: false,
                    capabilities: { drop: ["ALL"] },
                  },
                },
              ],
              volumes: [{ name: "data", persistentVolumeClaim: { claimName: "pg-data" } }],
            },
          },
        },
      },
    );
  });
});

describe("the tunnel's local port", () => {
  it("is fixed per project and stack, below the ephemeral range", () => {
    assert.equal(tunnelPortFor("plex-migrate", "dev"), 28010);
    assert.equal(tunnelPortFor("plex-migrate", "prod"), 24239);
    assert.equal(tunnelPortFor("plex-migrate", "dev"), tunnelPortFor("plex-migrate", "dev"));
    for (let i = 0; i < 200; i++) {
      const port = tunnelPortFor("plex-migrate", `stack-${i}`);
      assert.ok(port >= 20000 && port < 30000, `${port}`);
    }
  });

  it("is described with the pod it leads to", () => {
    assert.equal(
      describeTunnel({ name: "pg", namespace: "media", localPort: 28010 }),
      "127.0.0.1:28010 (the program's tunnel through the Kubernetes API to the Ready pod " +
        "app.kubernetes.io/name=postgres,app.kubernetes.io/instance=pg in namespace media, port 5432)",
    );
  });
});
