/**
 * PostgresInstance, TautulliDatabase and SchemaMigrations under Pulumi mocks: the exact inputs of
 * every resource they create, and every password secret in every input and output.
 */
import * as assert from "assert/strict";
import * as pulumi from "@pulumi/pulumi";
import {
  ExternalPostgresArgs,
  InClusterPostgresArgs,
  PostgresInstance,
  PostgresInstanceArgs,
  validatePostgresInstanceArgs,
} from "../../components/postgres-instance";
import { SchemaMigrations } from "../../components/schema-migrations";
import { TautulliDatabase } from "../../components/tautulli-database";
import { listMigrationNames } from "../../lib/postgres/migrator";
import {
  isSecretInput,
  MockRun,
  plainStrings,
  Registration,
  runWithMocks,
  unwrap,
  unwrapSecrets,
} from "../support/pulumi-mocks";

const GENERATED = "mock-password-postgres-admin-password-0123456789";
const ROLE_PASSWORD = "mock-password-tautulli-db-role-password-0123456789";

const IN_CLUSTER: InClusterPostgresArgs = {
  mode: "in-cluster",
  namespace: "plex",
  version: "17",
  storageSize: "10Gi",
  adminUser: "postgres",
  protectData: true,
  tunnel: { context: "homelab", localPort: 15432 },
};

const EXTERNAL: ExternalPostgresArgs = {
  mode: "external",
  host: "db.example.com",
  port: 5433,
  adminUser: "admin",
  adminPassword: pulumi.secret("ext-secret-pw"),
  sslMode: "require",
};

interface Built {
  run: MockRun;
  postgres: PostgresInstance;
  database?: TautulliDatabase;
  schema?: SchemaMigrations;
}

async function build(
  args: PostgresInstanceArgs = IN_CLUSTER,
  options: { database?: boolean; protectData?: boolean } = {},
): Promise<Built> {
  let built: Omit<Built, "run"> | undefined;
  const run = await runWithMocks(
    () => {
      const postgres = new PostgresInstance("postgres", args);
      let database: TautulliDatabase | undefined;
      let schema: SchemaMigrations | undefined;
      if (options.database) {
        database = new TautulliDatabase(
          "tautulli-db",
          {
            admin: postgres.admin,
            clusterHost: postgres.clusterHost,
            clusterPort: postgres.clusterPort,
            namespace: "plex",
            databaseName: "tautulli",
            roleName: "tautulli",
            secretName: "tautulli-database",
            protectData: options.protectData ?? true,
            serverInVolume: args.mode === "in-cluster",
          },
          { dependsOn: [postgres] },
        );
        schema = new SchemaMigrations("tautulli-schema", {
          databaseUrl: database.databaseUrl,
          reachedAt: postgres.reachedAt,
        });
      }
      built = { postgres, database, schema };
      return {};
    },
    // The components themselves (the mocks refuse any type they are not told about).
    {
      outputs: {
        "plex-migrate:postgres:Instance": () => ({}),
        "plex-migrate:postgres:Database": () => ({}),
      },
    },
  );
  return { run, ...built! };
}

/** Loosely typed inputs: the assertions below compare them with exact literals. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Inputs = Record<string, any>;

/** A registration's inputs, markers removed. */
const inputs = (registration: Registration): Inputs => unwrapSecrets(registration.inputs) as Inputs;

/** The inputs of the one registration of `type` named `name`, markers removed. */
const inputsOf = (run: MockRun, type: string, name: string) => inputs(run.get(type, name));

/** Every registration: no password appears outside a secret marker. */
function assertNoPlainSecret(run: MockRun, secrets: string[]): void {
  for (const registration of run.registrations) {
    for (const text of plainStrings(registration.rawInputs)) {
      for (const secret of secrets) {
        assert.ok(
          !text.includes(secret),
          `${registration.type} ${registration.name} has a password in plain text`,
        );
      }
    }
  }
}

const component = (run: MockRun, type: string, name: string) => run.get(type, name);
const parentOf = (run: MockRun, registration: Registration) =>
  run.registrations.find((r) => r.urn === registration.parentUrn);

describe("PostgresInstance (mocks)", () => {
  it("in-cluster: generated password, Secret, protected claim, Service, StatefulSet with probes", async () => {
    const { run, postgres } = await build();
    const self = component(run, "plex-migrate:postgres:Instance", "postgres");
    const children = run
      .childrenOf(self)
      .map((r) => `${r.type} ${r.name}`)
      .sort();
    assert.deepEqual(children, [
      "kubernetes:apps/v1:StatefulSet postgres",
      "kubernetes:core/v1:PersistentVolumeClaim postgres-data",
      "kubernetes:core/v1:Secret postgres-admin",
      "kubernetes:core/v1:Service postgres",
      "pulumi-nodejs:dynamic/plex-migrate:PostgresAdminLogin postgres-admin-login",
      "random:index/randomPassword:RandomPassword postgres-admin-password",
    ]);

    // The login is checked (and rotated when the setting changes) through the tunnel, after the
    // StatefulSet is Ready; the password stays secret.
    const login = run.get(
      "pulumi-nodejs:dynamic/plex-migrate:PostgresAdminLogin",
      "postgres-admin-login",
    );
    const { __provider: _loginProvider, ...loginInputs } = inputs(login);
    assert.deepEqual(loginInputs, {
      host: "127.0.0.1",
      port: 15432,
      user: "postgres",
      password: GENERATED,
      reachedAt:
        "127.0.0.1:15432 (the program's tunnel through the Kubernetes API to the Ready pod " +
        "app.kubernetes.io/name=postgres,app.kubernetes.io/instance=postgres in namespace plex, port 5432)",
    });
    assert.ok(isSecretInput(login, "password"));
    assert.deepEqual(login.additionalSecretOutputs, ["password"]);
    assert.ok(
      login.dependencies.includes(run.get("kubernetes:apps/v1:StatefulSet", "postgres").urn),
    );

    assert.deepEqual(
      inputsOf(run, "random:index/randomPassword:RandomPassword", "postgres-admin-password"),
      {
        length: 32,
        special: false,
      },
    );

    const secret = run.get("kubernetes:core/v1:Secret", "postgres-admin");
    assert.equal(inputs(secret).type, "Opaque");
    assert.deepEqual(inputs(secret).stringData, {
      POSTGRES_USER: "postgres",
      POSTGRES_PASSWORD: GENERATED,
    });
    assert.ok(isSecretInput(secret, "stringData.POSTGRES_PASSWORD"));
    assert.deepEqual((inputs(secret).metadata as Record<string, unknown>).name, "postgres-admin");

    const claim = run.get("kubernetes:core/v1:PersistentVolumeClaim", "postgres-data");
    assert.equal(claim.protect, true);
    assert.equal(claim.retainOnDelete, true);
    assert.deepEqual(inputs(claim).spec, {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: "10Gi" } },
    });
    assert.deepEqual((inputs(claim).metadata as { annotations: unknown }).annotations, {
      "pulumi.com/skipAwait": "true",
    });

    const service = run.get("kubernetes:core/v1:Service", "postgres");
    assert.deepEqual(inputs(service).spec, {
      type: "ClusterIP",
      selector: { "app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": "postgres" },
      ports: [{ name: "postgres", port: 5432, targetPort: "postgres", protocol: "TCP" }],
    });

    const statefulSet = run.get("kubernetes:apps/v1:StatefulSet", "postgres");
    const spec = inputs(statefulSet).spec as {
      serviceName: string;
      replicas: number;
      template: { spec: Record<string, unknown> & { containers: Record<string, unknown>[] } };
    };
    assert.equal(spec.serviceName, "postgres");
    assert.equal(spec.replicas, 1);
    assert.deepEqual(spec.template.spec.volumes, [
      { name: "data", persistentVolumeClaim: { claimName: "postgres-data" } },
    ]);
    assert.deepEqual(spec.template.spec.securityContext, {
      runAsUser: 999,
      runAsGroup: 999,
      fsGroup: 999,
      runAsNonRoot: true,
      seccompProfile: { type: "RuntimeDefault" },
    });
    const [container] = spec.template.spec.containers;
    assert.equal(container.image, "docker.io/library/postgres:17");
    assert.deepEqual(container.env, [
      {
        name: "POSTGRES_USER",
        valueFrom: { secretKeyRef: { name: "postgres-admin", key: "POSTGRES_USER" } },
      },
      {
        name: "POSTGRES_PASSWORD",
        valueFrom: { secretKeyRef: { name: "postgres-admin", key: "POSTGRES_PASSWORD" } },
      },
      { name: "PGDATA", value: "/var/lib/postgresql/pgdata" },
      { name: "POSTGRES_INITDB_ARGS", value: "--encoding=UTF8 --data-checksums" },
    ]);
    assert.deepEqual(container.volumeMounts, [{ name: "data", mountPath: "/var/lib/postgresql" }]);
    const probe = [
      "sh",
      "-c",
      'exec pg_isready -h 127.0.0.1 -p 5432 -U "$POSTGRES_USER" -d postgres',
    ];
    assert.deepEqual(container.readinessProbe, {
      exec: { command: probe },
      periodSeconds: 10,
      timeoutSeconds: 5,
      failureThreshold: 3,
    });
    assert.deepEqual((container.livenessProbe as { exec: unknown }).exec, { command: probe });
    assert.deepEqual(
      (container.startupProbe as { failureThreshold: number }).failureThreshold,
      120,
    );
    assert.deepEqual(container.resources, {
      requests: { cpu: "100m", memory: "256Mi" },
      limits: { memory: "1Gi" },
    });

    const admin = await unwrap(postgres.admin);
    assert.equal(admin.secret, true);
    assert.deepEqual(admin.value, {
      host: "127.0.0.1",
      port: 15432,
      user: "postgres",
      password: GENERATED,
      database: "postgres",
      sslMode: "disable",
    });
    assert.deepEqual((await unwrap(postgres.clusterHost)).value, "postgres.plex.svc");
    assert.deepEqual((await unwrap(postgres.clusterPort)).value, 5432);
    assert.deepEqual(await unwrap(postgres.serviceName), {
      value: "postgres.plex.svc:5432",
      secret: false,
    });
    assertNoPlainSecret(run, [GENERATED]);
  });

  it("in-cluster: pulumi up reaches the server only through the tunnel to its pod", async () => {
    const { run, postgres } = await build();
    assert.deepEqual(run.tunnels, [
      {
        context: "homelab",
        namespace: "plex",
        target: {
          selector: {
            "app.kubernetes.io/name": "postgres",
            "app.kubernetes.io/instance": "postgres",
          },
        },
        remotePort: 5432,
        localPort: 15432,
      },
    ]);
    // The tunnel's selector is the StatefulSet's: it leads to that pod and no other.
    const statefulSet = inputsOf(run, "kubernetes:apps/v1:StatefulSet", "postgres");
    assert.deepEqual(statefulSet.spec.selector.matchLabels, run.tunnels[0].target.selector);
    assert.equal(
      (await unwrap(postgres.reachedAt)).value,
      "127.0.0.1:15432 (the program's tunnel through the Kubernetes API to the Ready pod " +
        "app.kubernetes.io/name=postgres,app.kubernetes.io/instance=postgres in namespace plex, port 5432)",
    );
    // Nothing is published: ClusterIP, no nodePort, no LoadBalancer.
    const service = inputsOf(run, "kubernetes:core/v1:Service", "postgres");
    assert.equal(service.spec.type, "ClusterIP");
    assert.ok(!JSON.stringify(service).includes("nodePort"));
  });

  it("the same args twice give the same inputs (the tunnel's port is fixed, not chosen)", async () => {
    const first = await build(IN_CLUSTER, { database: true });
    const second = await build(IN_CLUSTER, { database: true });
    const inputsByUrn = (run: MockRun) =>
      Object.fromEntries(run.registrations.map((r) => [r.urn, r.inputs]));
    assert.deepEqual(inputsByUrn(second.run), inputsByUrn(first.run));
  });

  it("a configured admin password is used, stays secret, and nothing is generated", async () => {
    const { run, postgres } = await build({
      ...IN_CLUSTER,
      adminPassword: pulumi.secret("configured-Pa55word"),
    });
    assert.equal(run.byType("random:index/randomPassword:RandomPassword").length, 0);
    const secret = run.get("kubernetes:core/v1:Secret", "postgres-admin");
    assert.equal(
      (inputs(secret).stringData as Record<string, string>).POSTGRES_PASSWORD,
      "configured-Pa55word",
    );
    assert.ok(isSecretInput(secret, "stringData.POSTGRES_PASSWORD"));
    const admin = await unwrap(postgres.admin);
    assert.equal(admin.secret, true);
    assert.equal(admin.value.password, "configured-Pa55word");
    assertNoPlainSecret(run, ["configured-Pa55word"]);
  });

  it("protectData false: the claim is neither protected nor retained", async () => {
    const { run } = await build({ ...IN_CLUSTER, protectData: false });
    const claim = run.get("kubernetes:core/v1:PersistentVolumeClaim", "postgres-data");
    assert.deepEqual([claim.protect, claim.retainOnDelete], [false, false]);
  });

  it("external: creates nothing, opens no tunnel, and hands out the configured server", async () => {
    const { run, postgres } = await build(EXTERNAL);
    assert.deepEqual(run.tunnels, []);
    assert.deepEqual(
      run.registrations.map((r) => r.type).filter((t) => t !== "pulumi:pulumi:Stack"),
      ["plex-migrate:postgres:Instance"],
    );
    const admin = await unwrap(postgres.admin);
    assert.equal(admin.secret, true);
    assert.deepEqual(admin.value, {
      host: "db.example.com",
      port: 5433,
      user: "admin",
      password: "ext-secret-pw",
      database: "postgres",
      sslMode: "require",
    });
    assert.equal((await unwrap(postgres.serviceName)).value, "db.example.com:5433");
    assert.equal((await unwrap(postgres.clusterHost)).value, "db.example.com");
    const viaEndpoint = await build({ ...EXTERNAL, endpoint: { host: "10.0.0.9", port: 6432 } });
    const reached = (await unwrap(viaEndpoint.postgres.admin)).value;
    assert.deepEqual([reached.host, reached.port], ["10.0.0.9", 6432]);
    assert.equal((await unwrap(viaEndpoint.postgres.clusterHost)).value, "db.example.com");
    assert.equal(
      (await unwrap(viaEndpoint.postgres.reachedAt)).value,
      "10.0.0.9:6432 (postgresEndpoint)",
    );
  });

  it("names each bad combination of args with the key and the fix", () => {
    assert.deepEqual(validatePostgresInstanceArgs(IN_CLUSTER), []);
    assert.deepEqual(validatePostgresInstanceArgs({ ...IN_CLUSTER, version: "12" }), [
      'postgresVersion must be a major version 13 or newer, got "12"',
    ]);
    assert.deepEqual(
      validatePostgresInstanceArgs({ ...IN_CLUSTER, tunnel: { localPort: 70000 } }),
      ["postgresTunnelPort must be a TCP port from 1 to 65535, got 70000"],
    );
    assert.deepEqual(validatePostgresInstanceArgs({ ...EXTERNAL, host: "" }), [
      'postgresHost is required when postgresMode is "external"',
    ]);
  });

  it("the constructor fails the deployment with those messages", async () => {
    await assert.rejects(build({ ...IN_CLUSTER, version: "9" }), /13 or newer, got "9"/);
  });
});

describe("TautulliDatabase and SchemaMigrations (mocks)", () => {
  it("creates the provider, role, database, revoke and Secret with exact inputs; secrets stay secret", async () => {
    const { run, database, schema } = await build(IN_CLUSTER, { database: true });
    const self = component(run, "plex-migrate:postgres:Database", "tautulli-db");

    const provider = run.get("pulumi:providers:postgresql", "tautulli-db-admin");
    assert.equal(parentOf(run, provider)?.urn, self.urn);
    assert.deepEqual(
      {
        host: inputs(provider).host,
        port: inputs(provider).port,
        username: inputs(provider).username,
        password: inputs(provider).password,
        database: inputs(provider).database,
        sslmode: inputs(provider).sslmode,
        superuser: inputs(provider).superuser,
      },
      {
        host: "127.0.0.1",
        // Provider config travels as strings.
        port: "15432",
        username: "postgres",
        password: GENERATED,
        database: "postgres",
        sslmode: "disable",
        superuser: "false",
      },
    );
    assert.ok(isSecretInput(provider, "password"));

    const providerRef = (r: Registration) => r.provider.split("::").slice(0, -1).join("::");
    const role = run.get("postgresql:index/role:Role", "tautulli-db-role");
    assert.deepEqual(inputs(role), {
      name: "tautulli",
      login: true,
      password: ROLE_PASSWORD,
      skipReassignOwned: true,
    });
    assert.ok(isSecretInput(role, "password"));
    assert.equal(role.retainOnDelete, true);
    assert.equal(providerRef(role), provider.urn);

    const db = run.get("postgresql:index/database:Database", "tautulli-db-database");
    assert.deepEqual(inputs(db), {
      name: "tautulli",
      owner: "tautulli",
      encoding: "UTF8",
      lcCollate: "C",
      lcCtype: "C",
      template: "template0",
    });
    assert.deepEqual([db.protect, db.retainOnDelete], [true, true]);
    assert.equal(providerRef(db), provider.urn);

    const grants = run.byType("postgresql:index/grant:Grant");
    assert.deepEqual(
      grants.map((g) => unwrapSecrets(g.inputs)),
      [{ database: "tautulli", role: "public", objectType: "database", privileges: [] }],
    );

    const secret = run.get("kubernetes:core/v1:Secret", "tautulli-db-connection");
    assert.ok(isSecretInput(secret, "stringData"));
    assert.deepEqual(inputs(secret).metadata, {
      name: "tautulli-database",
      namespace: "plex",
      labels: {
        "app.kubernetes.io/part-of": "plex-migrate",
        "app.kubernetes.io/component": "tautulli-database",
      },
    });
    assert.deepEqual(inputs(secret).stringData, {
      url: `postgres://tautulli:${ROLE_PASSWORD}@postgres.plex.svc:5432/tautulli`,
      host: "postgres.plex.svc",
      port: "5432",
      database: "tautulli",
      username: "tautulli",
      password: ROLE_PASSWORD,
      sslmode: "disable",
    });
    assert.ok(
      secret.dependencies.includes(grants[0].urn),
      "the Secret waits for the database and its grants",
    );

    const url = await unwrap(database!.databaseUrl);
    assert.deepEqual(url, {
      value: `postgres://tautulli:${ROLE_PASSWORD}@127.0.0.1:15432/tautulli`,
      secret: true,
    });
    assert.deepEqual(await unwrap(database!.secretName), {
      value: "tautulli-database",
      secret: false,
    });
    assert.equal((await unwrap(database!.databaseName)).value, "tautulli");
    assert.equal((await unwrap(database!.roleName)).value, "tautulli");

    const migrations = run.get(
      "pulumi-nodejs:dynamic/plex-migrate:SchemaMigrations",
      "tautulli-schema",
    );
    assert.equal(inputs(migrations).databaseUrl, url.value);
    assert.ok(isSecretInput(migrations, "databaseUrl"));
    assert.deepEqual(inputs(migrations).migrations, listMigrationNames());
    assert.equal(inputs(migrations).stamp, false);
    assert.match(inputs(migrations).reachedAt, /^127\.0\.0\.1:15432 \(the program's tunnel/);
    assert.deepEqual(migrations.additionalSecretOutputs, ["databaseUrl"]);
    assert.equal(typeof inputs(migrations).__provider, "string");
    void schema;

    assertNoPlainSecret(run, [GENERATED, ROLE_PASSWORD]);
  });

  it("in-cluster, protectData false: role, database and grant leave the state only (they live in the volume)", async () => {
    const { run } = await build(IN_CLUSTER, { database: true, protectData: false });
    const db = run.get("postgresql:index/database:Database", "tautulli-db-database");
    const role = run.get("postgresql:index/role:Role", "tautulli-db-role");
    const grant = run.get("postgresql:index/grant:Grant", "tautulli-db-revoke-public");
    assert.deepEqual(
      [db.protect, db.retainOnDelete, role.retainOnDelete, grant.retainOnDelete],
      [false, true, true, true],
    );
  });

  it("external, protectData false: the database may be deleted with its role", async () => {
    const { run } = await build(EXTERNAL, { database: true, protectData: false });
    const db = run.get("postgresql:index/database:Database", "tautulli-db-database");
    const role = run.get("postgresql:index/role:Role", "tautulli-db-role");
    const grant = run.get("postgresql:index/grant:Grant", "tautulli-db-revoke-public");
    assert.deepEqual(
      [db.protect, db.retainOnDelete, role.retainOnDelete, grant.retainOnDelete],
      [false, false, false, false],
    );
  });

  it("sslmode reaches the provider, the URL and the Secret (external server)", async () => {
    const { run, database } = await build(
      { ...EXTERNAL, port: 5432, sslMode: "verify-full" },
      { database: true },
    );
    assert.equal(
      inputsOf(run, "pulumi:providers:postgresql", "tautulli-db-admin").sslmode,
      "verify-full",
    );
    assert.match(
      (await unwrap(database!.databaseUrl)).value,
      /^postgres:\/\/tautulli:.*@db\.example\.com:5432\/tautulli\?sslmode=verify-full$/,
    );
    const secret = run.get("kubernetes:core/v1:Secret", "tautulli-db-connection");
    assert.equal((inputs(secret).stringData as Record<string, string>).sslmode, "verify-full");
    assertNoPlainSecret(run, ["ext-secret-pw", ROLE_PASSWORD]);
  });

  it("refuses role and database names that are not plain PostgreSQL identifiers, naming each", () => {
    assert.throws(
      () =>
        new TautulliDatabase("tautulli-db", {
          admin: {
            host: "db.example.com",
            port: 5432,
            user: "admin",
            password: "x",
            database: "postgres",
            sslMode: "require",
          },
          clusterHost: "db.example.com",
          clusterPort: 5432,
          namespace: "plex",
          databaseName: "Tautulli DB",
          roleName: "tautulli-app",
          secretName: "tautulli-database",
          protectData: true,
          serverInVolume: false,
        }),
      (error: Error) =>
        error instanceof pulumi.ResourceError &&
        /roleName: expected a lower-case PostgreSQL identifier \(letters, digits, "_"\), got "tautulli-app"; databaseName: expected a lower-case PostgreSQL identifier .*got "Tautulli DB"/.test(
          error.message,
        ),
    );
  });
});
