/**
 * Proves the moved Plex is the VM's server with its media readable: identity → libraries (sampled
 * items' files checked by Plex itself with checkFiles=1) → the advertised address → the report.
 * Read-only throughout (lib/plex/verify-http.ts refuses anything but the GETs it needs), so no
 * scan or trash emptying can start from here.
 */
import type { MediaVolume } from "../config";
import { PlexClient, PlexRequestError } from "./verify-http";
import {
  AdvertisedResult,
  assembleReport,
  DEFAULT_SAMPLES_PER_SECTION,
  describeMediaVolume,
  formatReport,
  IdentityResult,
  locationOf,
  MAX_FILES_SHOWN,
  mediaVolumeCovering,
  SectionResult,
  sectionStatus,
  VerificationReport,
} from "./verify-report";
import {
  parseIdentity,
  parseItemsPage,
  parseMetadataParts,
  parsePreference,
  parseSections,
  PlexPart,
  PlexSection,
} from "./verify-xml";

/** The item type sampled per section type (python-plexapi utils.SEARCHTYPES): files live there. */
export const SAMPLED_ITEM_TYPE: Record<string, { type: number; name: string }> = {
  movie: { type: 1, name: "movies" },
  show: { type: 4, name: "episodes" },
  artist: { type: 10, name: "tracks" },
  photo: { type: 13, name: "photos" },
};

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
  log?: (line: string) => void;
  now?: () => Date;
}

/** Offsets of `n` items spread evenly over a listing of `total` (all of them when fewer). */
export function sampleOffsets(total: number, n: number): number[] {
  if (total <= n) return Array.from({ length: total }, (_, i) => i);
  return Array.from({ length: n }, (_, i) => Math.floor((i * total) / n));
}

function partReadable(part: PlexPart): boolean {
  return part.exists === true && part.accessible === true;
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
  try {
    return await options.client.get(path, query);
  } catch (error) {
    if (error instanceof PlexRequestError && error.failure === "token-rejected") {
      throw new PlexVerificationError(
        `Plex in the cluster (${options.target}) rejected the server's own token (HTTP ` +
          `${error.status} on ${path}): the PlexOnlineToken read from the VM's Preferences.xml is ` +
          `not accepted by the migrated server, so it is signed out or runs on another ` +
          `Preferences.xml. Fix: compare /config/Library/Application Support/Plex Media ` +
          `Server/Preferences.xml in the pod with the VM's, or sign the server in again ` +
          `(Plex Web > Settings > General), then run pulumi up again.`,
      );
    }
    if (error instanceof PlexRequestError && error.failure === "not-answering") {
      throw new PlexVerificationError(
        `Plex in the cluster (${options.target}) stopped answering during the verification: ` +
          `${error.message}. Fix: check the Plex container's log and run pulumi up again.`,
      );
    }
    throw error;
  }
}

async function readSections(options: VerifyPlexOptions): Promise<PlexSection[]> {
  return parseSections(await authenticatedGet(options, "/library/sections"));
}

async function sampleSection(
  options: VerifyPlexOptions,
  section: PlexSection,
): Promise<SectionResult> {
  const locations = section.locations.map((path) => {
    const volume = mediaVolumeCovering(path, options.mediaVolumes);
    return { path, volume: volume ? describeMediaVolume(volume) : null, sampled: 0, readable: 0 };
  });
  const base = { key: section.key, title: section.title, type: section.type, locations };
  const itemType = SAMPLED_ITEM_TYPE[section.type];
  if (!itemType) {
    return {
      ...base,
      status: "not-checked",
      items: 0,
      sampled: 0,
      readable: 0,
      unreadableFiles: [],
      note: `sections of type "${section.type}" are not sampled`,
    };
  }
  const listing = `/library/sections/${section.key}/all`;
  const count = parseItemsPage(
    await authenticatedGet(options, listing, {
      type: itemType.type,
      "X-Plex-Container-Start": 0,
      "X-Plex-Container-Size": 0,
    }),
    listing,
  );
  const offsets = sampleOffsets(
    count.totalSize,
    options.samplesPerSection ?? DEFAULT_SAMPLES_PER_SECTION,
  );
  let readable = 0;
  const unreadableFiles: SectionResult["unreadableFiles"] = [];
  for (const offset of offsets) {
    const page = parseItemsPage(
      await authenticatedGet(options, listing, {
        type: itemType.type,
        "X-Plex-Container-Start": offset,
        "X-Plex-Container-Size": 1,
      }),
      listing,
    );
    const item = page.items[0];
    if (!item) continue;
    const metadata = `/library/metadata/${item.ratingKey}`;
    const parts = parseMetadataParts(
      await authenticatedGet(options, metadata, { checkFiles: 1 }),
      metadata,
    );
    const ok = parts.length > 0 && parts.every(partReadable);
    const location = locations.find(
      (l) => l.path === locationOf(parts[0]?.file ?? "", section.locations),
    );
    if (location) {
      location.sampled += 1;
      if (ok) location.readable += 1;
    }
    if (ok) readable += 1;
    else {
      const bad = parts.find((p) => !partReadable(p)) ?? {
        file: `(${item.title}: no file)`,
        exists: null,
        accessible: null,
      };
      if (unreadableFiles.length < MAX_FILES_SHOWN) unreadableFiles.push(bad);
    }
  }
  const sampled = offsets.length;
  options.log?.(
    `library "${section.title}": ${readable}/${sampled} sampled ${itemType.name} readable (of ${count.totalSize})`,
  );
  return {
    ...base,
    status: sectionStatus(sampled, readable),
    items: count.totalSize,
    sampled,
    readable,
    unreadableFiles,
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
    for (const section of await readSections(options)) {
      sections.push(await sampleSection(options, section));
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
