/**
 * Proves the moved Plex is the VM's server with its media readable: identity → libraries (sampled
 * items' files checked by Plex itself with checkFiles=1) → the advertised address → the report.
 * Read-only throughout (lib/plex/verify-http.ts refuses anything but the GETs it needs), so no
 * scan or trash emptying can start from here.
 */
import type { MediaVolume } from "./media-volumes";
import { PlexClient, PlexRequestError } from "./verify-http";
import {
  AdvertisedResult,
  assembleReport,
  formatReport,
  IdentityResult,
  SectionResult,
  VerificationReport,
} from "./verify-report";
import { LibraryReader, sampleSection } from "./verify-sample";
import {
  parseIdentity,
  parseItemsPage,
  parseMetadataParts,
  parsePreference,
  parseSections,
} from "./verify-xml";

/** Fails `up`: the report (when there is one) says what is wrong and the fix. */
export class PlexVerificationError extends Error {
  constructor(
    message: string,
    readonly report?: VerificationReport,
  ) {
    super(message);
    this.name = "PlexVerificationError";
  }
}

export interface VerifyPlexOptions {
  /** The client for the migrated server (through the tunnel), holding the server's token. */
  client: PlexClient;
  /** What the migrated server is, for messages (e.g. "pod plex/plex-plex-media-server-0"). */
  target: string;
  /** The VM's server: preflight's machineIdentifier and the version the pod must run. */
  expected: { machineIdentifier: string; version: string };
  /** plexMediaVolumes, to name the volume that should provide an unreadable folder. */
  mediaVolumes: MediaVolume[];
  /** @default 5 */
  samplesPerSection?: number;
  /** The advertised address and how to reach it from inside the cluster (null: none to check). */
  advertised: { url: string; fetchIdentity: (url: string) => Promise<string> } | null;
  /**
   * Tries of a request Plex answers with 503 (busy starting or upgrading its database: /identity,
   * the readiness probe, answers before the library does), and the pause between them.
   * @default { tries: 6, delayMs: 5000 }
   */
  busyRetry?: { tries: number; delayMs: number };
  log?: (line: string) => void;
  now?: () => Date;
}

async function readIdentity(options: VerifyPlexOptions): Promise<IdentityResult> {
  let xml: string;
  try {
    xml = await options.client.get("/identity", {}, false);
  } catch (error) {
    throw new PlexVerificationError(
      `Plex in the cluster (${options.target}) did not answer /identity through the Kubernetes ` +
        `port-forward: ${(error as Error).message}. The pod is Ready, so Plex started but does not ` +
        `answer now. Fix: check the Plex container's log (kubectl logs) and run pulumi up again.`,
    );
  }
  const found = parseIdentity(xml);
  return {
    expectedMachineIdentifier: options.expected.machineIdentifier,
    machineIdentifier: found.machineIdentifier,
    expectedVersion: options.expected.version,
    version: found.version,
    claimed: found.claimed,
  };
}

/** A request the token must pass; a rejection fails with what it means and the fix. */
async function authenticatedGet(
  options: VerifyPlexOptions,
  path: string,
  query: Record<string, string | number> = {},
): Promise<string> {
  const { tries, delayMs } = options.busyRetry ?? { tries: 6, delayMs: 5000 };
  for (let attempt = 1; ; attempt++) {
    try {
      return await options.client.get(path, query);
    } catch (error) {
      const busy = error instanceof PlexRequestError && error.status === 503;
      if (!busy || attempt >= tries) throw explainedFailure(options, path, error, attempt);
      options.log?.(`${path}: Plex is busy (HTTP 503), trying again in ${delayMs / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

/** A failed authenticated read as what it means for the user, with the fix. */
function explainedFailure(
  options: VerifyPlexOptions,
  path: string,
  error: unknown,
  attempts: number,
): unknown {
  if (error instanceof PlexRequestError && error.status === 503) {
    return new PlexVerificationError(
      `Plex in the cluster (${options.target}) answered HTTP 503 (busy) to ${path} ${attempts} ` +
        `times: it is still starting or upgrading its database. Fix: wait until Plex Web shows ` +
        `the libraries, then run pulumi up again.`,
    );
  }
  if (error instanceof PlexRequestError && error.failure === "token-rejected") {
    return new PlexVerificationError(
      `Plex in the cluster (${options.target}) rejected the server's own token (HTTP ` +
        `${error.status} on ${path}): the PlexOnlineToken read from the VM's Preferences.xml is ` +
        `not accepted by the migrated server, so it is signed out or runs on another ` +
        `Preferences.xml. Fix: compare /config/Library/Application Support/Plex Media ` +
        `Server/Preferences.xml in the pod with the VM's, or sign the server in again ` +
        `(Plex Web > Settings > General), then run pulumi up again.`,
    );
  }
  if (error instanceof PlexRequestError && error.failure === "not-answering") {
    return new PlexVerificationError(
      `Plex in the cluster (${options.target}) stopped answering during the verification: ` +
        `${error.message}. Fix: check the Plex container's log and run pulumi up again.`,
    );
  }
  return error;
}

/** The libraries as the running Plex reports them (checkFiles=1: Plex looks at each file). */
function plexLibraryReader(options: VerifyPlexOptions): LibraryReader {
  const page = async (key: string, type: number, start: number, size: number) => {
    const listing = `/library/sections/${key}/all`;
    return parseItemsPage(
      await authenticatedGet(options, listing, {
        type,
        "X-Plex-Container-Start": start,
        "X-Plex-Container-Size": size,
      }),
      listing,
    );
  };
  return {
    sections: async () => parseSections(await authenticatedGet(options, "/library/sections")),
    countItems: async (key, type) => (await page(key, type, 0, 0)).totalSize,
    itemAt: async (key, type, offset) => (await page(key, type, offset, 1)).items[0],
    partsOf: async (ratingKey) => {
      const metadata = `/library/metadata/${ratingKey}`;
      return parseMetadataParts(
        await authenticatedGet(options, metadata, { checkFiles: 1 }),
        metadata,
      );
    },
  };
}

/** Plex's autoEmptyTrash as the server has it; null when it cannot be read (never fails). */
async function readAutoEmptyTrash(options: VerifyPlexOptions): Promise<boolean | null> {
  try {
    const value = parsePreference(await options.client.get("/:/prefs"), "autoEmptyTrash");
    if (value === undefined) return null;
    return value === "1" || value === "true";
  } catch {
    return null;
  }
}

async function probeAdvertised(options: VerifyPlexOptions): Promise<AdvertisedResult> {
  if (!options.advertised) {
    return { url: null, detail: "the Plex networking mode advertises no address" };
  }
  const { url, fetchIdentity } = options.advertised;
  try {
    const found = parseIdentity(await fetchIdentity(url));
    return { url, answered: true, machineIdentifier: found.machineIdentifier };
  } catch (error) {
    return { url, answered: false, detail: (error as Error).message };
  }
}

/**
 * Runs the verification. Resolves with the report when it passes (warnings included); rejects
 * with a PlexVerificationError holding the report when it fails.
 */
export async function verifyPlex(options: VerifyPlexOptions): Promise<VerificationReport> {
  const now = options.now ?? (() => new Date());
  const identity = await readIdentity(options);
  options.log?.(`identity: server ${identity.machineIdentifier}, version ${identity.version}`);
  const sameServer = identity.machineIdentifier === identity.expectedMachineIdentifier;
  // Another server's libraries say nothing about the migrated one: report the identity alone.
  const sections: SectionResult[] = [];
  if (sameServer) {
    const reader = plexLibraryReader(options);
    for (const section of await reader.sections()) {
      sections.push(await sampleSection(reader, section, options));
    }
  }
  const report = assembleReport({
    verifiedAt: now().toISOString(),
    identity,
    sections,
    advertised: sameServer
      ? await probeAdvertised(options)
      : { url: null, detail: "not checked: the server is not the migrated one" },
    autoEmptyTrash: sameServer ? await readAutoEmptyTrash(options) : null,
  });
  if (!report.passed) throw new PlexVerificationError(formatReport(report), report);
  return report;
}
