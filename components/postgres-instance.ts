/**
 * PostgresInstance: the PostgreSQL server Tautulli's data moves to, and the admin connection to it.
 *
 * * `in-cluster` (default): the official `postgres` image as a one-replica StatefulSet in the
 *   namespace (objects built by lib/postgres/instance-spec.ts), its data on a PersistentVolumeClaim
 *   that Pulumi protects and retains (protectData), and a ClusterIP Service. The admin password is
 *   generated (RandomPassword) unless configured, kept in a Kubernetes Secret the pod reads, and
 *   never printed. `pulumi up` reaches the server through a tunnel over the Kubernetes API that
 *   the program opens (lib/postgres/tunnel.ts): nothing is exposed outside the cluster.
 * * `external`: an existing server (host, port, admin role and password from config), reached
 *   directly (or at `endpoint`); nothing is created.
 *
 * `admin` is the address the machine running `pulumi up` uses (the postgresql provider, the
 * migrations and the import run there). Pods use `clusterHost:clusterPort`.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import type { SslMode } from "../lib/postgres/connection";
import type { PostgresConnection } from "../lib/postgres/connection";
import {
  buildAdminSecret,
  buildDataClaim,
  buildService,
  buildStatefulSet,
  POSTGRES_PORT,
  postgresImage,
  PostgresResources,
} from "../lib/postgres/instance-spec";
import { describeTunnel, openServerTunnel } from "../lib/postgres/tunnel";
import { PostgresAdminLogin } from "./postgres-admin-login";

export { POSTGRES_PORT };

export interface InClusterPostgresArgs {
  mode: "in-cluster";
  /** Namespace of the server. */
  namespace: pulumi.Input<string>;
  /** PostgreSQL major version (13 or newer). */
  version: string;
  /** Size of the data volume, e.g. "10Gi". */
  storageSize: string;
  /** StorageClass of the data volume. @default the cluster's default StorageClass */
  storageClass?: string;
  /** The superuser the image creates at initdb. */
  adminUser: string;
  /** Its password (secret). @default generated */
  adminPassword?: pulumi.Input<string>;
  /** Protect and retain the data volume on `pulumi destroy`. */
  protectData: boolean;
  /** Image of the server. @default docker.io/library/postgres:<version> */
  image?: string;
  /** Container resources. @default 100m CPU and 256Mi requested, 1Gi memory limit */
  resources?: PostgresResources;
  /** The tunnel `pulumi up` reaches the server through (a fixed local port, the kube context). */
  tunnel: { context?: string; localPort: number };
}

export interface ExternalPostgresArgs {
  mode: "external";
  /** Host of the server, as pods see it. */
  host: string;
  port: number;
  /** host:port at which the machine running `pulumi up` reaches it. @default host:port */
  endpoint?: { host: string; port: number };
  /** A role with CREATEROLE and CREATEDB (or a superuser). */
  adminUser: string;
  /** Its password (secret). */
  adminPassword: pulumi.Input<string>;
  sslMode: SslMode;
}

export type PostgresInstanceArgs = InClusterPostgresArgs | ExternalPostgresArgs;

/** Problems with `args`, one sentence each naming the config key and the fix. */
export function validatePostgresInstanceArgs(args: PostgresInstanceArgs): string[] {
  if (args.mode === "external") {
    return args.host ? [] : ['postgresHost is required when postgresMode is "external"'];
  }
  const problems: string[] = [];
  if (!/^\d+$/.test(args.version) || Number(args.version) < 13) {
    problems.push(`postgresVersion must be a major version 13 or newer, got "${args.version}"`);
  }
  const port = args.tunnel.localPort;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    problems.push(`postgresTunnelPort must be a TCP port from 1 to 65535, got ${port}`);
  }
  return problems;
}

export class PostgresInstance extends pulumi.ComponentResource {
  /** Secret: the admin connection reachable from the machine running `pulumi up`. */
  readonly admin: pulumi.Output<PostgresConnection>;
  /** How `pulumi up` reaches the server, for messages (no secret). */
  readonly reachedAt: pulumi.Output<string>;
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
      const reach = args.endpoint ?? { host: args.host, port: args.port };
      this.reachedAt = pulumi.output(
        `${reach.host}:${reach.port} (${args.endpoint ? "postgresEndpoint" : "postgresHost:postgresPort"})`,
      );
      this.clusterHost = pulumi.output(args.host);
      this.clusterPort = pulumi.output(args.port);
      this.serviceName = pulumi.output(`${args.host}:${args.port}`);
      this.admin = pulumi.secret(
        pulumi.output(args.adminPassword).apply((password) => ({
          ...reach,
          user: args.adminUser,
          password,
          database: "postgres",
          sslMode: args.sslMode,
        })),
      );
    } else {
      const server = this.createServer(name, args);
      this.statefulSet = server.statefulSet;
      this.dataClaim = server.dataClaim;
      this.reachedAt = server.reachedAt;
      this.clusterHost = server.clusterHost;
      this.clusterPort = pulumi.output(POSTGRES_PORT);
      this.serviceName = pulumi.interpolate`${server.clusterHost}:${POSTGRES_PORT}`;
      this.admin = server.admin;
    }
    this.registerOutputs({
      admin: this.admin,
      clusterHost: this.clusterHost,
      clusterPort: this.clusterPort,
      serviceName: this.serviceName,
    });
  }

  private createServer(name: string, args: InClusterPostgresArgs) {
    const child = { parent: this };
    const password: pulumi.Output<string> =
      args.adminPassword !== undefined
        ? pulumi.secret(args.adminPassword)
        : new random.RandomPassword(
            `${name}-admin-password`,
            // Letters and digits only: the password travels in URLs and env vars unquoted.
            { length: 32, special: false },
            child,
          ).result;
    const namespace = args.namespace;
    const adminSecret = new k8s.core.v1.Secret(
      `${name}-admin`,
      buildAdminSecret({ name, namespace, adminUser: args.adminUser, password }),
      child,
    );
    const dataClaim = new k8s.core.v1.PersistentVolumeClaim(
      `${name}-data`,
      buildDataClaim({
        name,
        namespace,
        storageSize: args.storageSize,
        storageClass: args.storageClass,
      }),
      { ...child, protect: args.protectData, retainOnDelete: args.protectData },
    );
    const service = new k8s.core.v1.Service(name, buildService({ name, namespace }), child);
    const statefulSet = new k8s.apps.v1.StatefulSet(
      name,
      buildStatefulSet({
        name,
        namespace,
        image: args.image ?? postgresImage(args.version),
        serviceName: service.metadata.name,
        adminSecretName: adminSecret.metadata.name,
        claimName: dataClaim.metadata.name,
        resources: args.resources,
      }),
      child,
    );

    // The tunnel opens once the namespace is known (on a fresh stack's preview it is not, and
    // nothing needs the server then). Its address is fixed, so no input changes between runs.
    const tunnel = pulumi.output(namespace).apply(async (ns) => {
      const options = { name, namespace: ns, context: args.tunnel.context };
      const opened = await openServerTunnel({
        ...options,
        localPort: args.tunnel.localPort,
        log: (line, level) =>
          level === "error" ? pulumi.log.warn(line, this) : pulumi.log.info(line, this),
      });
      return { host: opened.host, port: opened.port };
    });
    const reachedAt = pulumi
      .output(namespace)
      .apply((ns) => describeTunnel({ name, namespace: ns, localPort: args.tunnel.localPort }));
    // After the StatefulSet is Ready, the login proves the volume accepts the configured password
    // (rotating it when postgresAdminPassword changed): whoever uses `admin` can log in.
    const login = new PostgresAdminLogin(
      `${name}-admin-login`,
      {
        host: tunnel.host,
        port: tunnel.port,
        user: args.adminUser,
        password,
        reachedAt,
      },
      { ...child, dependsOn: [statefulSet] },
    );
    const admin = pulumi.secret(
      pulumi
        .all([login.host, login.port, login.user, password])
        .apply(([host, port, user, adminPassword]) => ({
          host,
          port,
          user,
          password: adminPassword,
          database: "postgres",
          sslMode: "disable" as const,
        })),
    );
    const clusterHost = pulumi.interpolate`${service.metadata.name}.${service.metadata.namespace}.svc`;
    return { statefulSet, dataClaim, admin, reachedAt, clusterHost };
  }
}
