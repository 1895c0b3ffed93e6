/**
 * PostgresInstance (STUB — engineer A replaces the internals): PostgreSQL in the cluster or an
 * existing external server, exposing the admin connection as a secret.
 * Contract: /work/notes/contracts.md.
 */
import * as pulumi from "@pulumi/pulumi";
import type { ServiceType, SslMode } from "../lib/config";
import type { PostgresConnection } from "../lib/postgres/connection";

export interface PostgresInstanceArgs {
  /** Namespace of the in-cluster server. */
  namespace: pulumi.Input<string>;
  /** in-cluster or external. @default in-cluster */
  mode: "in-cluster" | "external";
  /** Major version of the in-cluster server. @default 17 */
  version: string;
  /** Data volume size. @default 10Gi */
  storageSize: string;
  /** Data volume StorageClass; undefined = cluster default. */
  storageClass?: string;
  /** Service type of the in-cluster server. @default ClusterIP */
  serviceType: ServiceType;
  /** Address reachable from the machine running `pulumi up`. */
  endpoint?: { host: string; port: number };
  /** External server host (mode external). */
  host?: string;
  /** External server port. @default 5432 */
  port: number;
  /** Admin role. @default postgres */
  adminUser: string;
  /** Admin password (secret); generated in-cluster when undefined. */
  adminPassword?: pulumi.Input<string>;
  /** TLS mode. */
  sslMode: SslMode;
  /** Protect the data volume from `pulumi destroy`. @default true */
  protectData: boolean;
}

export class PostgresInstance extends pulumi.ComponentResource {
  /** Secret: the admin connection reachable from the machine running `pulumi up`. */
  readonly admin: pulumi.Output<PostgresConnection>;
  readonly clusterHost: pulumi.Output<string>;
  readonly clusterPort: pulumi.Output<number>;
  readonly serviceName: pulumi.Output<string>;

  constructor(name: string, args: PostgresInstanceArgs, opts?: pulumi.ComponentResourceOptions) {
    super("plex-migrate:postgres:Instance", name, {}, opts);
    this.admin = pulumi.secret({
      host: args.endpoint?.host ?? args.host ?? "",
      port: args.endpoint?.port ?? args.port,
      user: args.adminUser,
      password: "",
      database: "postgres",
      sslMode: args.sslMode,
    });
    this.clusterHost = pulumi.output(args.host ?? "");
    this.clusterPort = pulumi.output(args.port);
    this.serviceName = pulumi.output("");
    this.registerOutputs({});
  }
}
