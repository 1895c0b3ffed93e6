/**
 * What the SqliteImport dynamic provider (components/sqlite-import.ts) does, as plain functions
 * tested on their own; the provider object only loads this module and delegates.
 *
 * * create: fetch the source (a local path, or the VM's snapshot over SSH: sha256-verified),
 *   then runImport under the overwrite rule, checking the target is at `schemaVersion`.
 * * diff: the source fingerprint decides. The same fingerprint is no change (whatever URL serves
 *   it); a changed source is an update (re-imported under the same overwrite rule); another
 *   target database (its server's system_identifier and its name, lib/import/target.ts: never
 *   the host and port it is reached at) is a replacement, i.e. an import into the new one. The
 *   diff asks the database; one it cannot reach fails the preview, naming the route.
 * * delete: nothing, ever. The imported history stays in PostgreSQL.
 *
 * The outputs echo the inputs (the engine keeps the database URL and snapshot URL secret: the
 * component marks them); the report and summary never hold a secret.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type * as pulumi from "@pulumi/pulumi";
import { downloadOverSsh, type SshSnapshotSource } from "./ssh-download";
import { isImportError } from "./errors";
import { redactMessage } from "../redact";
import { formatSummary, ImportReport } from "./report";
import { runImport } from "./run-import";
import { sourceFingerprint } from "./sqlite-source";
import { probeTarget } from "./target";

/** The value the engine passes for an input that is not known yet (preview). */
export const UNKNOWN_VALUE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/**
 * A local tautulli.db, or the VM's snapshot over SSH (the stop step's tautulliSnapshot plus the
 * admin connection; lib/import/ssh-download.ts).
 */
export type ImportSource = { path: string } | SshSnapshotSource;

const isSsh = (source: ImportSource): source is SshSnapshotSource => "ssh" in source;

export interface SqliteImportInputs {
  /** App-role URL of the Tautulli database (secret). */
  databaseUrl: string;
  /** A local tautulli.db, or the VM's snapshot over SSH (secret connection) and its sha256. */
  source: ImportSource;
  /** Confirms that a non-empty target may be replaced. */
  overwrite: boolean;
  /** The migration the target must be at (SchemaMigrations' schemaVersion). */
  schemaVersion: string;
  integrityCheck: "full" | "quick";
  /** How `pulumi up` reaches the server, for messages (PostgresInstance's reachedAt). */
  reachedAt?: string;
}

export interface SqliteImportOutputs extends SqliteImportInputs {
  report: ImportReport;
  sourceFingerprint: string;
  summary: string;
  /** The database imported into (lib/import/target.ts); absent in states written before it. */
  targetIdentity?: string;
}

const isUnknown = (value: unknown): boolean => value === UNKNOWN_VALUE;

/** Problems with the inputs, as the engine's check failures (empty when fine). */
export function checkInputs(inputs: Partial<SqliteImportInputs>): pulumi.dynamic.CheckFailure[] {
  const failures: pulumi.dynamic.CheckFailure[] = [];
  if (
    !isUnknown(inputs.databaseUrl) &&
    (typeof inputs.databaseUrl !== "string" || !/^postgres(ql)?:\/\//.test(inputs.databaseUrl))
  ) {
    failures.push({
      property: "databaseUrl",
      reason: "must be a postgres:// URL of the Tautulli database",
    });
  }
  const source = inputs.source as
    | Partial<{ path: unknown; url: unknown; sha256: unknown; ssh: unknown; bytes: unknown }>
    | undefined;
  if (!source || typeof source !== "object") {
    failures.push({
      property: "source",
      reason:
        "is required: { path } of a local tautulli.db, or { ssh, path, sha256, bytes } of the VM's snapshot",
    });
  } else if ("ssh" in source) {
    failures.push(...checkSshSource(source));
  } else if ("path" in source) {
    if (typeof source.path !== "string" || !path.isAbsolute(source.path)) {
      failures.push({
        property: "source",
        reason: "source.path must be an absolute path of a tautulli.db on this machine",
      });
    }
  } else {
    failures.push({
      property: "source",
      reason:
        "must be { path } of a local tautulli.db or { ssh, path, sha256, bytes } of the VM's snapshot",
    });
  }
  if (inputs.integrityCheck !== "full" && inputs.integrityCheck !== "quick") {
    failures.push({ property: "integrityCheck", reason: 'must be "full" or "quick"' });
  }
  if (typeof inputs.overwrite !== "boolean")
    failures.push({ property: "overwrite", reason: "must be true or false" });
  return failures;
}

/** The VM snapshot's fields; values not known yet (preview) pass. */
function checkSshSource(
  source: Partial<{ path: unknown; sha256: unknown; ssh: unknown; bytes: unknown }>,
): pulumi.dynamic.CheckFailure[] {
  const failures: pulumi.dynamic.CheckFailure[] = [];
  const fail = (reason: string) => failures.push({ property: "source", reason });
  if (source.path === "" || source.path === null) {
    fail(
      "the stop step took no Tautulli snapshot (no tautulli.db at tautulliDbPath on the VM): there is nothing to import; set tautulliDbPath to the VM's tautulli.db",
    );
    return failures;
  }
  if (!isUnknown(source.path) && (typeof source.path !== "string" || !source.path.startsWith("/")))
    fail(
      "source.path must be the snapshot's absolute path on the VM (the stop step's tautulliSnapshot.path)",
    );
  if (
    !isUnknown(source.sha256) &&
    (typeof source.sha256 !== "string" || !/^[0-9a-fA-F]{64}$/.test(source.sha256))
  )
    fail("source.sha256 must be the 64 hex digits the stop step printed");
  if (!isUnknown(source.bytes) && !(Number.isInteger(source.bytes) && Number(source.bytes) > 0))
    fail("source.bytes must be the snapshot's size the stop step printed");
  const ssh = source.ssh as Partial<Record<string, unknown>> | undefined;
  if (!isUnknown(ssh)) {
    const missing = ["host", "port", "user", "privateKey", "hostKey", "sudo"].filter(
      (key) => ssh?.[key] === undefined,
    );
    if (missing.length > 0)
      fail(`source.ssh needs ${missing.join(", ")} (SourceVm's admin connection)`);
  }
  return failures;
}

/** The fingerprint the source has now, or undefined when it cannot be known (yet). */
async function currentFingerprint(source: ImportSource): Promise<string | undefined> {
  if (isSsh(source)) {
    return isUnknown(source.sha256) ? undefined : `sha256:${source.sha256.toLowerCase()}`;
  }
  return fs.existsSync(source.path) ? sourceFingerprint(source.path) : undefined;
}

async function importFrom(
  inputs: SqliteImportInputs,
  log: (line: string) => void,
): Promise<ImportReport> {
  const common = {
    databaseUrl: inputs.databaseUrl,
    overwrite: inputs.overwrite,
    integrityCheck: inputs.integrityCheck,
    expectedSchemaVersion: inputs.schemaVersion || undefined,
    log,
  };
  const source = inputs.source;
  if (!isSsh(source)) return runImport({ ...common, sqlitePath: source.path });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-snapshot-"));
  try {
    const file = path.join(dir, "tautulli.db");
    const { sha256 } = await downloadOverSsh(source, file, { log });
    // The download's verified digest is the file's fingerprint (it has no -wal).
    return await runImport({ ...common, sqlitePath: file, sourceFingerprint: `sha256:${sha256}` });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs `work`, rethrowing failures with the database URL redacted where a message quotes it. */
async function scrubbed<T>(
  inputs: Partial<SqliteImportInputs>,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const databaseUrl = typeof inputs.databaseUrl === "string" ? inputs.databaseUrl : undefined;
    const message = redactMessage((error as Error).message ?? String(error), [databaseUrl]);
    const clean = new Error(message);
    if (isImportError(error)) Object.assign(clean, { code: error.code });
    throw clean;
  }
}

function outputs(
  inputs: SqliteImportInputs,
  report: ImportReport,
  targetIdentity: string,
): SqliteImportOutputs {
  return {
    ...inputs,
    report,
    sourceFingerprint: report.source.fingerprint,
    summary: formatSummary(report),
    targetIdentity,
  };
}

const noLog = () => undefined;

export async function createImport(
  inputs: SqliteImportInputs,
  log: (line: string) => void = noLog,
): Promise<{ id: string; outs: SqliteImportOutputs }> {
  return scrubbed(inputs, async () => {
    const { identity } = await probeTarget(inputs.databaseUrl, inputs.reachedAt);
    return {
      id: `tautulli-import:${identity}`,
      outs: outputs(inputs, await importFrom(inputs, log), identity),
    };
  });
}

export interface ImportDiff {
  changes: boolean;
  replaces: string[];
  deleteBeforeReplace: boolean;
}

export async function diffImport(
  olds: SqliteImportOutputs,
  news: SqliteImportInputs,
): Promise<ImportDiff> {
  return scrubbed(news, async () => {
    const fingerprint = await currentFingerprint(news.source);
    // Not known yet (a database created in this same update): it will be imported.
    if (isUnknown(news.databaseUrl)) {
      return { changes: true, replaces: [], deleteBeforeReplace: false };
    }
    const target = await probeTarget(news.databaseUrl, news.reachedAt);
    // A state from before identities were recorded: the database that holds this resource's
    // import is the same one, whatever route leads there now.
    const sameDatabase = olds.targetIdentity
      ? olds.targetIdentity === target.identity
      : target.lastImported === olds.sourceFingerprint;
    const replaces = sameDatabase ? [] : ["databaseUrl"];
    // Only what was imported, and where, matters: a new route or snapshot URL for the same bytes,
    // a rotated password or a newer schema version is no reason to touch the data.
    const changes =
      replaces.length > 0 ||
      fingerprint === undefined ||
      fingerprint !== olds.sourceFingerprint ||
      olds.targetIdentity === undefined;
    // A replacement imports into the new database first; the old one keeps its data.
    return { changes, replaces, deleteBeforeReplace: false };
  });
}

/**
 * A changed source is imported again (under the overwrite rule). Other input changes (a new
 * snapshot URL for the same bytes, a rotated password, overwrite or the schema version moving on)
 * are recorded without touching the data.
 */
export async function updateImport(
  olds: SqliteImportOutputs,
  news: SqliteImportInputs,
  log: (line: string) => void = noLog,
): Promise<{ outs: SqliteImportOutputs }> {
  return scrubbed(news, async () => {
    const fingerprint = await currentFingerprint(news.source);
    const { identity } = await probeTarget(news.databaseUrl, news.reachedAt);
    if (fingerprint !== undefined && fingerprint === olds.sourceFingerprint) {
      log("the source fingerprint is unchanged: nothing to import");
      return {
        outs: {
          ...news,
          report: olds.report,
          sourceFingerprint: olds.sourceFingerprint,
          summary: olds.summary,
          targetIdentity: identity,
        },
      };
    }
    return { outs: outputs(news, await importFrom(news, log), identity) };
  });
}
