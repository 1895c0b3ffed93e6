/**
 * The Kubernetes objects of the in-cluster PostgreSQL server, as pure functions of their settings
 * (tested with exact values in test/unit/postgres-instance-spec.test.ts); the PostgresInstance
 * component only creates them.
 *
 * The official `postgres` image as a one-replica StatefulSet: its data on a PersistentVolumeClaim,
 * the admin login from a Secret, probes that wait for initdb and crash recovery, a ClusterIP
 * Service for the pods. Nothing is published outside the cluster: `pulumi up` reaches the server
 * through the Kubernetes API (lib/kube/tunnel.ts), with the selector below.
 */
import type * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";

/** Port the in-cluster server listens on, in the pod and on its Service. */
export const POSTGRES_PORT = 5432;

/** uid/gid of the `postgres` user in the official Debian-based image. */
export const POSTGRES_UID = 999;

/**
 * The volume is mounted at the image's parent directory and the cluster lives in a fixed
 * subdirectory: works for every major version (18+ refuses a mount at .../data without PGDATA),
 * keeps lost+found out of the data directory, and makes a major-version change fail loudly
 * ("database files are incompatible") instead of starting an empty cluster next to the old one.
 */
export const VOLUME_MOUNT = "/var/lib/postgresql";
export const PGDATA = "/var/lib/postgresql/pgdata";

export interface PostgresResources {
  /** @default 100m */
  cpuRequest?: string;
  /** @default 256Mi */
  memoryRequest?: string;
  /** @default 1Gi */
  memoryLimit?: string;
}

/** The labels that select the server's pod (Service, StatefulSet, the tunnel). */
export function postgresSelector(name: string): Record<string, string> {
  return { "app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": name };
}

/** Every label of the server's objects. */
export function postgresLabels(name: string): Record<string, string> {
  return {
    ...postgresSelector(name),
    "app.kubernetes.io/component": "database",
    "app.kubernetes.io/part-of": "plex-migrate",
    "app.kubernetes.io/managed-by": "pulumi",
  };
}

/** The image of a major version: the official Docker Hub image. */
export function postgresImage(version: string): string {
  return `docker.io/library/postgres:${version}`;
}

/** The Secret the pod reads its superuser from (POSTGRES_PASSWORD applies at initdb only). */
export function buildAdminSecret(args: {
  name: string;
  namespace: pulumi.Input<string>;
  adminUser: string;
  password: pulumi.Input<string>;
}): k8s.core.v1.SecretArgs {
  return {
    metadata: {
      name: `${args.name}-admin`,
      namespace: args.namespace,
      labels: postgresLabels(args.name),
    },
    type: "Opaque",
    stringData: { POSTGRES_USER: args.adminUser, POSTGRES_PASSWORD: args.password },
  };
}

export function buildDataClaim(args: {
  name: string;
  namespace: pulumi.Input<string>;
  storageSize: string;
  storageClass?: string;
}): k8s.core.v1.PersistentVolumeClaimArgs {
  return {
    metadata: {
      name: `${args.name}-data`,
      namespace: args.namespace,
      labels: postgresLabels(args.name),
      // The StatefulSet's readiness is the real wait; a claim on a WaitForFirstConsumer
      // StorageClass stays Pending until that pod exists.
      annotations: { "pulumi.com/skipAwait": "true" },
    },
    spec: {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: args.storageSize } },
      storageClassName: args.storageClass,
    },
  };
}

/** ClusterIP only: in the cluster, Tautulli reaches the server by the Service's DNS name. */
export function buildService(args: {
  name: string;
  namespace: pulumi.Input<string>;
}): k8s.core.v1.ServiceArgs {
  return {
    metadata: { name: args.name, namespace: args.namespace, labels: postgresLabels(args.name) },
    spec: {
      type: "ClusterIP",
      selector: postgresSelector(args.name),
      ports: [{ name: "postgres", port: POSTGRES_PORT, targetPort: "postgres", protocol: "TCP" }],
    },
  };
}

const READY_COMMAND = [
  "sh",
  "-c",
  `exec pg_isready -h 127.0.0.1 -p ${POSTGRES_PORT} -U "$POSTGRES_USER" -d postgres`,
];

export function buildStatefulSet(args: {
  name: string;
  namespace: pulumi.Input<string>;
  image: string;
  serviceName: pulumi.Input<string>;
  adminSecretName: pulumi.Input<string>;
  claimName: pulumi.Input<string>;
  resources?: PostgresResources;
}): k8s.apps.v1.StatefulSetArgs {
  const labels = postgresLabels(args.name);
  const fromSecret = (key: string) => ({
    valueFrom: { secretKeyRef: { name: args.adminSecretName, key } },
  });
  return {
    metadata: { name: args.name, namespace: args.namespace, labels },
    spec: {
      serviceName: args.serviceName,
      replicas: 1,
      selector: { matchLabels: postgresSelector(args.name) },
      template: {
        metadata: { labels },
        spec: {
          securityContext: {
            runAsUser: POSTGRES_UID,
            runAsGroup: POSTGRES_UID,
            fsGroup: POSTGRES_UID,
            runAsNonRoot: true,
            seccompProfile: { type: "RuntimeDefault" },
          },
          // Room for a clean shutdown (a checkpoint) before the kubelet kills the server.
          terminationGracePeriodSeconds: 60,
          containers: [
            {
              name: "postgres",
              image: args.image,
              ports: [{ name: "postgres", containerPort: POSTGRES_PORT, protocol: "TCP" }],
              env: [
                { name: "POSTGRES_USER", ...fromSecret("POSTGRES_USER") },
                { name: "POSTGRES_PASSWORD", ...fromSecret("POSTGRES_PASSWORD") },
                { name: "PGDATA", value: PGDATA },
                { name: "POSTGRES_INITDB_ARGS", value: "--encoding=UTF8 --data-checksums" },
              ],
              volumeMounts: [{ name: "data", mountPath: VOLUME_MOUNT }],
              // initdb or crash recovery can take minutes on slow disks: liveness waits for it.
              startupProbe: {
                exec: { command: READY_COMMAND },
                periodSeconds: 5,
                timeoutSeconds: 5,
                failureThreshold: 120,
              },
              readinessProbe: {
                exec: { command: READY_COMMAND },
                periodSeconds: 10,
                timeoutSeconds: 5,
                failureThreshold: 3,
              },
              livenessProbe: {
                exec: { command: READY_COMMAND },
                periodSeconds: 20,
                timeoutSeconds: 5,
                failureThreshold: 6,
              },
              resources: {
                requests: {
                  cpu: args.resources?.cpuRequest ?? "100m",
                  memory: args.resources?.memoryRequest ?? "256Mi",
                },
                limits: { memory: args.resources?.memoryLimit ?? "1Gi" },
              },
              securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
            },
          ],
          volumes: [{ name: "data", persistentVolumeClaim: { claimName: args.claimName } }],
        },
      },
    },
  };
}
