/**
 * TautulliDatabase: on the server PostgresInstance provides, Tautulli's own login role (generated
 * password), the database it owns, nothing granted to anyone else, and a Kubernetes Secret with the
 * connection for whatever runs Tautulli in the cluster.
 *
 * Least privilege: the role is not a superuser and cannot create roles or databases; it owns its
 * database (so the migrations, as that role, create the schema), and PUBLIC's default CONNECT and
 * TEMPORARY on the database are revoked, so other roles of a shared server cannot even connect.
 * The database uses UTF8 with C collation: byte-order sorting and ASCII-only case mapping, as
 * SQLite's BINARY collation and lower() behave for Tautulli today.
 */
import * as k8s from "@pulumi/kubernetes";
import * as postgresql from "@pulumi/postgresql";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { pgIdentifier } from "../lib/checks";
import { connectionUrl, PostgresConnection } from "../lib/postgres/connection";

export interface TautulliDatabaseArgs {
  /** Admin connection (secret) reachable from the machine running `pulumi up`. */
  admin: pulumi.Input<PostgresConnection>;
  /** Server host as pods see it (written into the Kubernetes Secret). */
  clusterHost: pulumi.Input<string>;
  /** Server port as pods see it. */
  clusterPort: pulumi.Input<number>;
  /** Namespace of the connection Secret. */
  namespace: pulumi.Input<string>;
  /** Database name. */
  databaseName: string;
  /** Login role that owns the database. */
  roleName: string;
  /** Name of the Kubernetes Secret with the connection. */
  secretName: string;
  /** Protect the database (and keep its role) on `pulumi destroy`. */
  protectData: boolean;
  /**
   * The server is PostgresInstance's in-cluster one: role, database and grant live in its volume,
   * and `pulumi destroy` (which does not run the program, so has no tunnel) only drops them from
   * the state; the volume decides about the data.
   */
  serverInVolume: boolean;
}

/** The connection Secret's keys, for whatever runs Tautulli in the cluster. */
export function connectionSecretData(connection: PostgresConnection): Record<string, string> {
  return {
    url: connectionUrl(connection),
    host: connection.host,
    port: String(connection.port),
    database: connection.database,
    username: connection.user,
    password: connection.password,
    sslmode: connection.sslMode,
  };
}

/** The admin connection as a PostgreSQL provider (the role, database and grant are made on it). */
function adminProvider(
  name: string,
  admin: pulumi.Output<PostgresConnection>,
  opts: pulumi.CustomResourceOptions,
): postgresql.Provider {
  return new postgresql.Provider(
    `${name}-admin`,
    {
      host: admin.host,
      port: admin.port,
      username: admin.user,
      password: pulumi.secret(admin.password),
      database: admin.database,
      sslmode: admin.sslMode,
      // Works for a superuser and for a CREATEROLE + CREATEDB admin of a managed server alike.
      superuser: false,
      connectTimeout: 30,
    },
    opts,
  );
}

interface OwnedDatabase {
  role: postgresql.Role;
  rolePassword: random.RandomPassword;
  database: postgresql.Database;
  publicRevoked: postgresql.Grant;
}

/** The login role, the database it owns, and PUBLIC's default privileges on it revoked. */
function ownedDatabase(
  name: string,
  args: TautulliDatabaseArgs,
  parent: pulumi.Resource,
  server: postgresql.Provider,
): OwnedDatabase {
  const onServer = { parent, provider: server };
  const rolePassword = new random.RandomPassword(
    `${name}-role-password`,
    // Letters and digits only: it travels in URLs and env vars.
    { length: 32, special: false },
    { parent },
  );

  const role = new postgresql.Role(
    `${name}-role`,
    {
      name: args.roleName,
      login: true,
      password: rolePassword.result,
      // Nothing else is owned by the role; the Database resource decides about the data.
      skipReassignOwned: true,
    },
    // Kept with the database: a retained database still needs its owner.
    { ...onServer, retainOnDelete: args.protectData || args.serverInVolume },
  );

  const database = new postgresql.Database(
    `${name}-database`,
    {
      name: args.databaseName,
      owner: role.name,
      encoding: "UTF8",
      lcCollate: "C",
      lcCtype: "C",
      template: "template0",
    },
    {
      ...onServer,
      protect: args.protectData,
      retainOnDelete: args.protectData || args.serverInVolume,
    },
  );

  // REVOKE ALL ON DATABASE ... FROM PUBLIC: only the owner (and superusers) may connect.
  const publicRevoked = new postgresql.Grant(
    `${name}-revoke-public`,
    { database: database.name, role: "public", objectType: "database", privileges: [] },
    { ...onServer, retainOnDelete: args.serverInVolume },
  );
  return { role, rolePassword, database, publicRevoked };
}

/** The owner's connection at `host:port`, with the admin connection's TLS mode. */
function ownerConnection(
  owned: OwnedDatabase,
  at: { host: pulumi.Input<string>; port: pulumi.Input<number> },
  sslMode: pulumi.Input<PostgresConnection["sslMode"]>,
): pulumi.Output<PostgresConnection> {
  return pulumi
    .all([
      at.host,
      at.port,
      sslMode,
      owned.role.name,
      owned.rolePassword.result,
      owned.database.name,
    ])
    .apply(([host, port, mode, user, password, database]) => ({
      host,
      port,
      user,
      password,
      database,
      sslMode: mode,
    }));
}

export class TautulliDatabase extends pulumi.ComponentResource {
  /** Secret: URL as the owner role at the address `pulumi up` reaches (migrations, import). */
  readonly databaseUrl: pulumi.Output<string>;
  /** The Kubernetes Secret holding the in-cluster connection (keys: url, host, port, ...). */
  readonly secretName: pulumi.Output<string>;
  readonly databaseName: pulumi.Output<string>;
  readonly roleName: pulumi.Output<string>;

  constructor(name: string, args: TautulliDatabaseArgs, opts?: pulumi.ComponentResourceOptions) {
    super("plex-migrate:postgres:Database", name, {}, opts);
    const problems = [
      ["roleName", args.roleName],
      ["databaseName", args.databaseName],
    ].flatMap(([field, value]) => {
      const complaint = pgIdentifier(value);
      return complaint ? [`${field}: ${complaint}`] : [];
    });
    if (problems.length > 0) throw new pulumi.ResourceError(problems.join("; "), this);
    const admin = pulumi.output(args.admin);
    const owned = ownedDatabase(name, args, this, adminProvider(name, admin, { parent: this }));

    const inCluster = ownerConnection(
      owned,
      { host: args.clusterHost, port: args.clusterPort },
      admin.sslMode,
    );
    const secret = new k8s.core.v1.Secret(
      `${name}-connection`,
      {
        metadata: {
          name: args.secretName,
          namespace: args.namespace,
          labels: {
            "app.kubernetes.io/part-of": "plex-migrate",
            "app.kubernetes.io/component": "tautulli-database",
          },
        },
        type: "Opaque",
        stringData: pulumi.secret(inCluster.apply(connectionSecretData)),
      },
      { parent: this, dependsOn: [owned.publicRevoked] },
    );

    // Through the grant's id: the URL is handed out only once PUBLIC is locked out.
    const reached = ownerConnection(owned, { host: admin.host, port: admin.port }, admin.sslMode);
    this.databaseUrl = pulumi.secret(
      pulumi.all([reached, owned.publicRevoked.id]).apply(([c]) => connectionUrl(c)),
    );
    this.secretName = secret.metadata.name;
    this.databaseName = owned.database.name;
    this.roleName = owned.role.name;
    this.registerOutputs({
      databaseUrl: this.databaseUrl,
      secretName: this.secretName,
      databaseName: this.databaseName,
      roleName: this.roleName,
    });
  }
}
