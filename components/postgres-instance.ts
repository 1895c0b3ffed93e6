/**
 * PostgresInstance: the PostgreSQL server Tautulli's data moves to, and the admin connection to it.
 *
 * * `in-cluster` (default): the official `postgres` image as a one-replica StatefulSet in the
 *   namespace, its data on a PersistentVolumeClaim that Pulumi protects and retains (protectData),
 *   probes, resources, and a Service. The admin password is generated (RandomPassword) unless
 *   configured, kept in a Kubernetes Secret the pod reads, and never printed.
 * * `external`: an existing server (host, port, admin role and password from config); nothing is
 *   created.
 *
 * `admin` is the address the machine running `pulumi up` uses (the postgresql provider, the
 * migrations and the import run there): `endpoint` when configured (a NodePort, a port-forward),
 * else the LoadBalancer's address, else the external host. Pods use `clusterHost:clusterPort`.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import type { ServiceType, SslMode } from "../lib/config";
import type { PostgresConnection } from "../lib/postgres/connection";

/** Port the in-cluster server listens on, in the pod and on its Service. */
export const POSTGRES_PORT = 5432;

/** uid/gid of the `postgres` user in the official Debian-based image. */
const POSTGRES_UID = 999;

/**
 * The volume is mounted at the image's parent directory and the cluster lives in a fixed
 * subdirectory: works for every major version (18+ refuses a mount at .../data without PGDATA),
 * keeps lost+found out of the data directory, and makes a major-version change fail loudly
 * ("database files are incompatible") instead of starting an empty cluster next to the old one.
 */
const VOLUME_MOUNT = "/var/lib/postgresql";
const PGDATA = "/var/lib/postgresql/pgdata";

export interface PostgresInstanceArgs {
  /** Namespace of the in-cluster server (ignored for external). */
  namespace: pulumi.Input<string>;
  /** Run the official image in the cluster, or use an existing server. @default in-cluster */
  mode: "in-cluster" | "external";
  /** PostgreSQL major version of the in-cluster server (13 or newer). @default 17 */
  version: string;
  /** Size of the in-cluster data volume. @default 10Gi */
  storageSize: string;
  /** StorageClass of the data volume. @default the cluster's default StorageClass */
  storageClass?: string;
  /** Service type of the in-cluster server. @default ClusterIP */
  serviceType: ServiceType;
  /**
   * host:port at which the machine running `pulumi up` reaches the server. Required in-cluster
   * unless serviceType is LoadBalancer; with NodePort its port becomes the Service's nodePort.
   * @default the LoadBalancer address (in-cluster) or host:port (external)
   */
  endpoint?: { host: string; port: number };
  /** Host of the external server (mode external). */
  host?: string;
  /** Port of the external server. @default 5432 */
  port: number;
  /** Admin role: the in-cluster superuser, or an external role with CREATEROLE and CREATEDB. @default postgres */
  adminUser: string;
  /** Admin password (secret). Required for external. @default generated (in-cluster) */
  adminPassword?: pulumi.Input<string>;
  /** TLS to the server. In-cluster the official image serves no TLS, so only "disable" works. */
  sslMode: SslMode;
  /** Protect and retain the data volume on `pulumi destroy`. @default true */
  protectData: boolean;
  /** Image of the in-cluster server. @default docker.io/library/postgres:<version> */
  image?: string;
  /** Container resources of the in-cluster server. @default 100m CPU and 256Mi requested, 1Gi memory limit */
  resources?: { cpuRequest?: string; memoryRequest?: string; memoryLimit?: string };
}

/** Problems with `args`, one sentence each naming the config key and the fix. */
export function validatePostgresInstanceArgs(args: PostgresInstanceArgs): string[] {
  const problems: string[] = [];
  if (args.mode === "external") {
    if (!args.host) problems.push('postgresHost is required when postgresMode is "external"');
    if (args.adminPassword === undefined) {
      problems.push(
        'postgresAdminPassword is required when postgresMode is "external" (pulumi config set --secret postgresAdminPassword ...)',
      );
    }
    return problems;
  }
  if (!/^\d+$/.test(args.version) || Number(args.version) < 13) {
    problems.push(`postgresVersion must be a major version 13 or newer, got "${args.version}"`);
  }
  if (args.sslMode !== "disable") {
    problems.push(
      `postgresSslMode "${args.sslMode}" needs a server with TLS; the in-cluster server (official image) serves none. ` +
        'Set postgresSslMode disable (or auto), or use postgresMode "external" with a TLS server',
    );
  }
  if (args.serviceType !== "LoadBalancer" && !args.endpoint) {
    problems.push(
      `postgresEndpoint is required with postgresServiceType ${args.serviceType}: pulumi up must reach the server ` +
        "(a NodePort such as 192.168.1.50:30432, or 127.0.0.1:15432 with kubectl port-forward)",
    );
  }
  if (
    args.serviceType === "NodePort" &&
    args.endpoint &&
    (args.endpoint.port < 30000 || args.endpoint.port > 32767)
  ) {
    problems.push(
      `postgresEndpoint port ${args.endpoint.port} becomes the nodePort and must be from 30000 to 32767`,
    );
  }
  return problems;
}

export class PostgresInstance extends pulumi.ComponentResource {
  /** Secret: the admin connection reachable from the machine running `pulumi up`. */
  readonly admin: pulumi.Output<PostgresConnection>;
  /** Server host as pods see it. */
  readonly clusterHost: pulumi.Output<string>;
  /** Server port as pods see it. */
  readonly clusterPort: pulumi.Output<number>;
  /** Human-readable address, e.g. "postgres.plex.svc:5432" or "db.example.com:5432". */
  readonly serviceName: pulumi.Output<string>;
  /** The in-cluster StatefulSet (undefined for external). */
  readonly statefulSet?: k8s.apps.v1.StatefulSet;
  /** The in-cluster data volume claim (undefined for external). */
  readonly dataClaim?: k8s.core.v1.PersistentVolumeClaim;

  constructor(name: string, args: PostgresInstanceArgs, opts?: pulumi.ComponentResourceOptions) {
    super("plex-migrate:postgres:Instance", name, {}, opts);
    const problems = validatePostgresInstanceArgs(args);
    if (problems.length > 0) throw new pulumi.ResourceError(problems.join("; "), this);

    if (args.mode === "external") {
      const host = args.host!;
      this.clusterHost = pulumi.output(host);
      this.clusterPort = pulumi.output(args.port);
      this.serviceName = pulumi.output(`${host}:${args.port}`);
      this.admin = pulumi.secret(
        pulumi.all([args.adminPassword!]).apply(([password]) => ({
          host: args.endpoint?.host ?? host,
          port: args.endpoint?.port ?? args.port,
          user: args.adminUser,
          password,
          database: "postgres",
          sslMode: args.sslMode,
        })),
      );
      this.registerOutputs({
        admin: this.admin,
        clusterHost: this.clusterHost,
        serviceName: this.serviceName,
      });
      return;
    }

    const child = { parent: this };
    const labels = {
      "app.kubernetes.io/name": "postgres",
      "app.kubernetes.io/instance": name,
      "app.kubernetes.io/component": "database",
      "app.kubernetes.io/part-of": "plex-migrate",
      "app.kubernetes.io/managed-by": "pulumi",
    };
    const selector = { "app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": name };

    const password: pulumi.Output<string> =
      args.adminPassword !== undefined
        ? pulumi.secret(args.adminPassword)
        : new random.RandomPassword(
            `${name}-admin-password`,
            // Letters and digits only: the password travels in URLs and env vars unquoted.
            { length: 32, special: false },
            child,
          ).result;

    const adminSecret = new k8s.core.v1.Secret(
      `${name}-admin`,
      {
        metadata: { name: `${name}-admin`, namespace: args.namespace, labels },
        type: "Opaque",
        stringData: { POSTGRES_USER: args.adminUser, POSTGRES_PASSWORD: password },
      },
      child,
    );

    this.dataClaim = new k8s.core.v1.PersistentVolumeClaim(
      `${name}-data`,
      {
        metadata: {
          name: `${name}-data`,
          namespace: args.namespace,
          labels,
          // The StatefulSet's readiness is the real wait; a claim on a WaitForFirstConsumer
          // StorageClass stays Pending until that pod exists.
          annotations: { "pulumi.com/skipAwait": "true" },
        },
        spec: {
          accessModes: ["ReadWriteOnce"],
          resources: { requests: { storage: args.storageSize } },
          storageClassName: args.storageClass,
        },
      },
      { ...child, protect: args.protectData, retainOnDelete: args.protectData },
    );

    const service = new k8s.core.v1.Service(
      name,
      {
        metadata: { name, namespace: args.namespace, labels },
        spec: {
          type: args.serviceType,
          selector,
          ports: [
            {
              name: "postgres",
              port: POSTGRES_PORT,
              targetPort: "postgres",
              protocol: "TCP",
              ...(args.serviceType === "NodePort" ? { nodePort: args.endpoint!.port } : {}),
            },
          ],
        },
      },
      child,
    );

    const ready = [
      "sh",
      "-c",
      `exec pg_isready -h 127.0.0.1 -p ${POSTGRES_PORT} -U "$POSTGRES_USER" -d postgres`,
    ];
    const fromSecret = (key: string) => ({
      valueFrom: { secretKeyRef: { name: adminSecret.metadata.name, key } },
    });
    this.statefulSet = new k8s.apps.v1.StatefulSet(
      name,
      {
        metadata: { name, namespace: args.namespace, labels },
        spec: {
          serviceName: service.metadata.name,
          replicas: 1,
          selector: { matchLabels: selector },
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
                  image: args.image ?? `docker.io/library/postgres:${args.version}`,
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
                    exec: { command: ready },
                    periodSeconds: 5,
                    timeoutSeconds: 5,
                    failureThreshold: 120,
                  },
                  readinessProbe: {
                    exec: { command: ready },
                    periodSeconds: 10,
                    timeoutSeconds: 5,
                    failureThreshold: 3,
                  },
                  livenessProbe: {
                    exec: { command: ready },
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
                  securityContext: {
                    allowPrivilegeEscalation: false,
                    capabilities: { drop: ["ALL"] },
                  },
                },
              ],
              volumes: [
                {
                  name: "data",
                  persistentVolumeClaim: { claimName: this.dataClaim.metadata.name },
                },
              ],
            },
          },
        },
      },
      child,
    );

    this.clusterHost = pulumi.interpolate`${service.metadata.name}.${service.metadata.namespace}.svc`;
    this.clusterPort = pulumi.output(POSTGRES_PORT);
    this.serviceName = pulumi.interpolate`${this.clusterHost}:${POSTGRES_PORT}`;

    // Depending on the StatefulSet's readiness means whoever uses `admin` finds a server up.
    const reachable = pulumi.all([service.status, this.statefulSet.status]).apply(([status]) => {
      if (args.endpoint) return args.endpoint;
      const ingress = status?.loadBalancer?.ingress?.[0];
      const host = ingress?.ip || ingress?.hostname;
      if (!host) {
        throw new pulumi.ResourceError(
          "the LoadBalancer Service of Postgres has no address; set postgresEndpoint to host:port that reaches it",
          this,
        );
      }
      return { host, port: POSTGRES_PORT };
    });
    this.admin = pulumi.secret(
      pulumi.all([reachable, password]).apply(([address, adminPassword]) => ({
        host: address.host,
        port: address.port,
        user: args.adminUser,
        password: adminPassword,
        database: "postgres",
        sslMode: args.sslMode,
      })),
    );
    this.registerOutputs({
      admin: this.admin,
      clusterHost: this.clusterHost,
      clusterPort: this.clusterPort,
      serviceName: this.serviceName,
    });
  }
}
