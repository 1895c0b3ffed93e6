/**
 * What the PlexVerification dynamic provider (components/plex-verification.ts) does, as plain
 * functions; the provider object only loads this module and delegates.
 *
 * * create/update: open a tunnel to the Plex pod through the Kubernetes API (lib/kube/tunnel.ts),
 *   run lib/plex/verify.ts there with the server's own token, ask the advertised address for
 *   /identity from inside the cluster (curl, which pms-docker ships for its health check, run in
 *   the Plex container through pods/exec), and append the report to the migration log in the
 *   config volume (the init container's log). A failed verification fails `up`; nothing is
 *   recorded, so the next `up` verifies again.
 * * diff: any input change verifies again (a new release revision, another expected identity);
 *   the same inputs are no change.
 * * delete: nothing; the report stays in the migration log.
 *
 * Outputs echo the inputs (the component keeps the token secret) plus the report and its text,
 * which never hold the token; every error is scrubbed of it.
 */
import type { MediaVolume } from "./media-volumes";
import { execInPod } from "../kube/pod-exec";
import { openPodTunnel } from "../kube/tunnel";
import { PMS_PORT } from "./chart";
import { plexClient } from "./verify-http";
import { formatReport, VerificationReport } from "./verify-report";
import { PlexVerificationError, verifyPlex } from "./verify";

/** The engine's value for an input not known yet (preview). */
const UNKNOWN_VALUE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export interface PlexVerificationInputs {
  /** Where Plex runs: kubeconfig context, namespace, the pod and its Plex container. */
  kubernetes: { context?: string; namespace: string; podName: string; container: string };
  /** The server's own token (PlexOnlineToken from the VM's Preferences.xml; secret). */
  plexToken: string;
  /** The VM's server: preflight's machineIdentifier and the version the pod must run. */
  expected: { machineIdentifier: string; version: string };
  mediaVolumes: MediaVolume[];
  /** The address clients are told to use ("" when the networking mode advertises none). */
  advertisedUrl: string;
  samplesPerSection: number;
  /** The Helm release revision verified: a new one verifies again. */
  releaseRevision: number;
  /** The log the report is appended to, in the Plex container. */
  migrationLog: string;
}

export interface PlexVerificationOutputs extends PlexVerificationInputs {
  report: VerificationReport;
  summary: string;
}

function scrub(text: string, inputs: Partial<PlexVerificationInputs>): string {
  const token = inputs.plexToken;
  return typeof token === "string" && token.length > 0
    ? text.split(token).join("<redacted>")
    : text;
}

async function scrubbed<T>(
  inputs: Partial<PlexVerificationInputs>,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw new Error(scrub((error as Error).message ?? String(error), inputs));
  }
}

/** Problems with the inputs, as the engine's check failures. */
export function checkInputs(
  inputs: Partial<PlexVerificationInputs>,
): { property: string; reason: string }[] {
  const failures: { property: string; reason: string }[] = [];
  const known = (v: unknown) => v !== UNKNOWN_VALUE;
  const k = inputs.kubernetes;
  if (!k || typeof k !== "object" || !k.namespace || !k.podName || !k.container) {
    failures.push({
      property: "kubernetes",
      reason: "needs the namespace, pod and container of Plex",
    });
  }
  if (
    known(inputs.plexToken) &&
    (typeof inputs.plexToken !== "string" || inputs.plexToken === "")
  ) {
    failures.push({
      property: "plexToken",
      reason:
        "is empty: the VM's Preferences.xml has no PlexOnlineToken (sign the server in on the VM first)",
    });
  }
  const expected = inputs.expected;
  if (!expected || (known(expected.machineIdentifier) && !expected.machineIdentifier)) {
    failures.push({
      property: "expected",
      reason:
        "has no machineIdentifier: the VM's Preferences.xml has no ProcessedMachineIdentifier",
    });
  }
  if (!Number.isInteger(inputs.samplesPerSection) || (inputs.samplesPerSection ?? 0) < 1) {
    failures.push({ property: "samplesPerSection", reason: "must be a whole number >= 1" });
  }
  if (
    known(inputs.advertisedUrl) &&
    inputs.advertisedUrl &&
    !/^https?:\/\/[^/]+/.test(inputs.advertisedUrl)
  ) {
    failures.push({ property: "advertisedUrl", reason: "must be an http(s):// URL or empty" });
  }
  return failures;
}

/** GET <url>/identity from inside the Plex container (no token: /identity needs none). */
async function identityFromInsideCluster(
  inputs: PlexVerificationInputs,
  url: string,
): Promise<string> {
  const result = await execInPod({
    ...inputs.kubernetes,
    command: [
      "curl",
      "--silent",
      "--show-error",
      "--fail",
      "--connect-timeout",
      "10",
      "--max-time",
      "20",
      `${url.replace(/\/+$/, "")}/identity`,
    ],
  });
  if (result.exitCode !== 0) {
    throw new Error(result.stderr.trim() || `curl exited with ${result.exitCode}`);
  }
  return result.stdout;
}

/** Appends the report to the migration log in the pod; a failure only warns (the output has it). */
async function appendToMigrationLog(
  inputs: PlexVerificationInputs,
  text: string,
  log: (line: string) => void,
): Promise<string | undefined> {
  const stamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const lines = text
    .split("\n")
    .map((line) => `${stamp} plex-verify: ${line}\n`)
    .join("");
  try {
    const result = await execInPod({
      ...inputs.kubernetes,
      command: [
        "sh",
        "-c",
        'mkdir -p "$(dirname "$1")" && printf "%s" "$2" >>"$1"',
        "sh",
        inputs.migrationLog,
        lines,
      ],
    });
    if (result.exitCode !== 0) throw new Error(result.stderr.trim() || `exit ${result.exitCode}`);
    return undefined;
  } catch (error) {
    const warning = `the report could not be appended to ${inputs.migrationLog} in the Plex pod: ${(error as Error).message}`;
    log(warning);
    return warning;
  }
}

async function verify(
  inputs: PlexVerificationInputs,
  log: (line: string) => void,
): Promise<PlexVerificationOutputs> {
  const { context, namespace, podName } = inputs.kubernetes;
  const tunnel = await openPodTunnel({
    context,
    namespace,
    target: { podName },
    remotePort: PMS_PORT,
    log,
  });
  let report: VerificationReport;
  try {
    report = await verifyPlex({
      client: plexClient({
        baseUrl: `http://${tunnel.host}:${tunnel.port}`,
        token: inputs.plexToken,
      }),
      target: `pod ${namespace}/${podName}`,
      expected: inputs.expected,
      mediaVolumes: inputs.mediaVolumes,
      samplesPerSection: inputs.samplesPerSection,
      advertised: inputs.advertisedUrl
        ? {
            url: inputs.advertisedUrl,
            fetchIdentity: (url) => identityFromInsideCluster(inputs, url),
          }
        : null,
      log,
    });
  } catch (error) {
    const withReport = error instanceof PlexVerificationError && error.report !== undefined;
    const detail = tunnel.lastError();
    const failure =
      detail && !withReport ? new Error(`${(error as Error).message} (tunnel: ${detail})`) : error;
    if (error instanceof PlexVerificationError) {
      // A failure without a report (Plex silent, the token refused) is recorded too.
      const text = withReport
        ? error.message
        : `Plex verification FAILED at ${new Date().toISOString()}: ${(failure as Error).message}`;
      await appendToMigrationLog(inputs, scrub(text, inputs), log);
    }
    throw failure;
  } finally {
    await tunnel.close();
  }
  const logWarning = await appendToMigrationLog(inputs, formatReport(report), log);
  if (logWarning) report = { ...report, warnings: [...report.warnings, logWarning] };
  return { ...inputs, report, summary: formatReport(report) };
}

const noLog = () => undefined;

export async function createVerification(
  inputs: PlexVerificationInputs,
  log: (line: string) => void = noLog,
): Promise<{ id: string; outs: PlexVerificationOutputs }> {
  return scrubbed(inputs, async () => ({
    id: `plex-verification:${inputs.kubernetes.namespace}/${inputs.kubernetes.podName}`,
    outs: await verify(inputs, log),
  }));
}

const COMPARED: (keyof PlexVerificationInputs)[] = [
  "kubernetes",
  "plexToken",
  "expected",
  "mediaVolumes",
  "advertisedUrl",
  "samplesPerSection",
  "releaseRevision",
  "migrationLog",
];

/** JSON with object keys sorted, so key order never reads as a change. */
function canonical(value: unknown): string {
  return JSON.stringify(value ?? null, (_key, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}

export function diffVerification(
  olds: Partial<PlexVerificationOutputs>,
  news: PlexVerificationInputs,
): { changes: boolean; replaces: string[]; deleteBeforeReplace: boolean } {
  const changed = COMPARED.filter((key) => canonical(olds[key]) !== canonical(news[key]));
  return { changes: changed.length > 0, replaces: [], deleteBeforeReplace: false };
}

export async function updateVerification(
  _olds: PlexVerificationOutputs,
  news: PlexVerificationInputs,
  log: (line: string) => void = noLog,
): Promise<{ outs: PlexVerificationOutputs }> {
  return scrubbed(news, async () => ({ outs: await verify(news, log) }));
}
