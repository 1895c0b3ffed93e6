/**
 * TautulliDatabase (STUB — engineer A replaces the internals): role, database, grants and the
 * Kubernetes Secret with Tautulli's connection string. Contract: /work/notes/contracts.md.
 */
import * as pulumi from "@pulumi/pulumi";
import type { PostgresConnection } from "../lib/postgres/connection";

export interface TautulliDatabaseArgs {
  /** Admin connection (secret) reachable from the machine running `pulumi up`. */
  admin: pulumi.Input<PostgresConnection>;
  /** Server host as pods see it. */
  clusterHost: pulumi.Input<string>;
  /** Server port as pods see it. */
  clusterPort: pulumi.Input<number>;
  /** Namespace of the connection Secret. */
  namespace: pulumi.Input<string>;
  /** Database name. @default tautulli */
  databaseName: string;
  /** Login role that owns it. @default tautulli */
  roleName: string;
  /** Name of the Kubernetes Secret with the connection string. @default tautulli-database */
  secretName: string;
  /** Protect the database from `pulumi destroy`. @default true */
  protectData: boolean;
}

export class TautulliDatabase extends pulumi.ComponentResource {
  /** Secret: app-role URL reachable from the machine running `pulumi up`. */
  readonly databaseUrl: pulumi.Output<string>;
  readonly secretName: pulumi.Output<string>;
  readonly databaseName: pulumi.Output<string>;
  readonly roleName: pulumi.Output<string>;

  constructor(name: string, args: TautulliDatabaseArgs, opts?: pulumi.ComponentResourceOptions) {
    super("plex-migrate:postgres:Database", name, {}, opts);
    this.databaseUrl = pulumi.secret("");
    this.secretName = pulumi.output(args.secretName);
    this.databaseName = pulumi.output(args.databaseName);
    this.roleName = pulumi.output(args.roleName);
    this.registerOutputs({});
  }
}
