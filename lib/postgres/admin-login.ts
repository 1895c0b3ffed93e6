/**
 * What the PostgresAdminLogin dynamic provider (components/postgres-admin-login.ts) does: keep the
 * in-cluster server's superuser password equal to the one the stack configures.
 *
 * The official image applies POSTGRES_PASSWORD only at initdb; afterwards the password lives in
 * the data volume. So a changed postgresAdminPassword is rotated for real (ALTER ROLE, logged in
 * with the previous one) instead of leaving every later connection to fail, and a volume that was
 * initialized with another password (kept by protectData from an earlier stack) is named with the
 * fix instead of failing authentication somewhere later.
 *
 * * create: log in with the password (proves the volume and the config agree);
 * * diff: a changed password is an update; another admin user is refused (it too applies at
 *   initdb only); the route (host, port) is not the login's identity;
 * * update: log in with the new password (already rotated by hand: done) or with the old one and
 *   ALTER ROLE ... PASSWORD; then log in with the new one;
 * * delete: nothing (the role lives in the volume).
 */
import type * as pulumi from "@pulumi/pulumi";
import { Client } from "pg";
import { cannotReach } from "./reach";

/** The value the engine passes for an input that is not known yet (preview). */
export const UNKNOWN_VALUE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export interface AdminLoginInputs {
  host: string;
  port: number;
  user: string;
  /** Secret. */
  password: string;
  /** How `pulumi up` reaches the server, for messages. */
  reachedAt?: string;
}

export type AdminLoginOutputs = AdminLoginInputs;

const isUnknown = (value: unknown) => value === UNKNOWN_VALUE;

/** libpq's "password authentication failed" and "role does not exist". */
const REFUSED_LOGIN = new Set(["28P01", "28000"]);

function url(inputs: AdminLoginInputs, password = inputs.password): string {
  const u = new URL("postgres://placeholder");
  u.hostname = inputs.host;
  u.port = String(inputs.port);
  u.username = encodeURIComponent(inputs.user);
  u.password = encodeURIComponent(password);
  u.pathname = "/postgres";
  return u.toString();
}

/** Logs in with `password`: true, false when the server refuses it, throws when unreachable. */
async function accepts(inputs: AdminLoginInputs, password: string): Promise<boolean> {
  const client = new Client({
    host: inputs.host,
    port: inputs.port,
    user: inputs.user,
    password,
    database: "postgres",
    connectionTimeoutMillis: 15_000,
    application_name: "plex-migrate",
  });
  try {
    await client.connect();
    return true;
  } catch (error) {
    if (REFUSED_LOGIN.has((error as { code?: string }).code ?? "")) return false;
    throw cannotReach(
      "the in-cluster PostgreSQL server",
      url(inputs, password),
      inputs.reachedAt,
      error,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

function refusedPassword(inputs: AdminLoginInputs): Error {
  return new Error(
    `the PostgreSQL server at ${inputs.reachedAt ?? `${inputs.host}:${inputs.port}`} does not accept the configured password of ${inputs.user}: ` +
      "its data volume was initialized with another one (the image sets it at initdb only; a volume kept by protectData keeps it). " +
      "Fix: set postgresAdminPassword to the password the volume was created with (pulumi config set --secret postgresAdminPassword ...), " +
      'or, if that is lost, set it inside the pod (kubectl exec ... -- psql -c "ALTER ROLE ...") to the configured one',
  );
}

export function checkInputs(inputs: Partial<AdminLoginInputs>): pulumi.dynamic.CheckFailure[] {
  const failures: pulumi.dynamic.CheckFailure[] = [];
  for (const key of ["host", "user", "password"] as const) {
    if (!isUnknown(inputs[key]) && (typeof inputs[key] !== "string" || inputs[key] === "")) {
      failures.push({ property: key, reason: "is required" });
    }
  }
  if (!isUnknown(inputs.port) && !Number.isInteger(inputs.port)) {
    failures.push({ property: "port", reason: "must be a TCP port" });
  }
  return failures;
}

export async function createLogin(
  inputs: AdminLoginInputs,
): Promise<{ id: string; outs: AdminLoginOutputs }> {
  if (!(await accepts(inputs, inputs.password))) throw refusedPassword(inputs);
  return { id: `postgres-admin:${inputs.user}`, outs: inputs };
}

export async function diffLogin(
  olds: AdminLoginOutputs,
  news: AdminLoginInputs,
): Promise<pulumi.dynamic.DiffResult> {
  if (!isUnknown(news.user) && news.user !== olds.user) {
    throw new Error(
      `postgresAdminUser changed from "${olds.user}" to "${news.user}", but the in-cluster server creates its superuser at initdb only. ` +
        `Fix: set it back (pulumi config set postgresAdminUser ${olds.user})`,
    );
  }
  const changes = isUnknown(news.password) || news.password !== olds.password;
  return { changes, replaces: [], deleteBeforeReplace: false };
}

export async function updateLogin(
  olds: AdminLoginOutputs,
  news: AdminLoginInputs,
): Promise<{ outs: AdminLoginOutputs }> {
  if (await accepts(news, news.password)) return { outs: news };
  if (!(await accepts(news, olds.password))) throw refusedPassword(news);
  const client = new Client({
    host: news.host,
    port: news.port,
    user: news.user,
    password: olds.password,
    database: "postgres",
    connectionTimeoutMillis: 15_000,
  });
  await client.connect();
  try {
    // Utility statements take no parameters: the new password goes in as an escaped literal.
    await client.query(
      `ALTER ROLE ${client.escapeIdentifier(news.user)} PASSWORD ${client.escapeLiteral(news.password)}`,
    );
  } finally {
    await client.end();
  }
  if (!(await accepts(news, news.password))) throw refusedPassword(news);
  return { outs: news };
}
