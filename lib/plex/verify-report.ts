/**
 * The verification report of the migrated Plex: its shape, the judgement of each part (pure), and
 * its text for the stack output and the migration log. It never holds the token or any secret:
 * machine identifiers, versions, section names, paths and counts only.
 */
import { isAtOrUnder } from "../checks";
import type { MediaVolume } from "./media-volumes";
import { INIT_LOG } from "./init-script";

/**
 * The migration log in the Plex pod the report is appended to: the init container's log in the
 * config volume (scripts/plex-init.sh's LOG_FILE; a test keeps them equal), so the new side's
 * history is one file, and it stays with the server when the VM is retired.
 */
export const MIGRATION_LOG_IN_POD = `/config/${INIT_LOG}`;

/** Items sampled per library section. */
export const DEFAULT_SAMPLES_PER_SECTION = 5;

/** Unreadable files named in the report per section (the counts are always complete). */
export const MAX_FILES_SHOWN = 3;

export const EMPTY_TRASH_ADVICE =
  'Keep Plex\'s "Empty trash automatically after every scan" (Settings > Library) off until this ' +
  "report passes: a scan of a library whose media is not mounted would otherwise remove its items.";

export const OUTSIDE_CHECK_ADVICE =
  "From outside the cluster: open https://app.plex.tv, Settings > Remote Access of this server " +
  '(it should say "Fully accessible outside your network"), and play one item of each library ' +
  "from a client on your LAN.";

export interface IdentityResult {
  expectedMachineIdentifier: string;
  machineIdentifier: string;
  expectedVersion: string;
  version: string;
  claimed: boolean | null;
}

export type SectionStatus = "readable" | "partly-readable" | "unreadable" | "empty" | "not-checked";

export interface LocationResult {
  /** The folder as Plex knows it (the VM's path, mounted at the same path in the pod). */
  path: string;
  /** The plexMediaVolumes entry that mounts it ("<path>=<source>"), or null when none does. */
  volume: string | null;
  sampled: number;
  readable: number;
}

export interface SectionResult {
  key: string;
  title: string;
  type: string;
  status: SectionStatus;
  /** Items in the section (of the type sampled: movies, episodes, tracks, photos). */
  items: number;
  sampled: number;
  readable: number;
  locations: LocationResult[];
  /** A few of the files Plex could not read, with what it said. */
  unreadableFiles: { file: string; exists: boolean | null; accessible: boolean | null }[];
  /** Why the section was not checked (an unknown section type). */
  note?: string;
}

export type AdvertisedResult =
  | { url: string; answered: true; machineIdentifier: string }
  | { url: string; answered: false; detail: string }
  | { url: null; detail: string };

export interface VerificationReport {
  verifiedAt: string;
  passed: boolean;
  identity: IdentityResult;
  sections: SectionResult[];
  advertised: AdvertisedResult;
  /** Plex's autoEmptyTrash preference as the migrated server has it (null: not readable). */
  autoEmptyTrash: boolean | null;
  failures: string[];
  warnings: string[];
  advice: string[];
}

/** How a volume appears in `plexMediaVolumes`, so the user recognises the entry. */
export function describeMediaVolume(volume: MediaVolume): string {
  const source =
    volume.source.kind === "nfs"
      ? `nfs://${volume.source.server}${volume.source.path}`
      : volume.source.kind === "hostPath"
        ? `hostpath://${volume.source.path}`
        : `pvc://${volume.source.claimName}`;
  return `${volume.mountPath}=${source}${volume.readOnly ? "" : "?rw"}`;
}

/** The section location a file lies under (the longest match), if any. */
export function locationOf(file: string, locations: string[]): string | undefined {
  return locations.filter((loc) => isAtOrUnder(file, loc)).sort((a, b) => b.length - a.length)[0];
}

export function sectionStatus(sampled: number, readable: number): SectionStatus {
  if (sampled === 0) return "empty";
  if (readable === 0) return "unreadable";
  return readable === sampled ? "readable" : "partly-readable";
}

function where(location: LocationResult): string {
  return location.volume
    ? `${location.path} (mounted by plexMediaVolumes entry "${location.volume}")`
    : `${location.path} (no plexMediaVolumes entry mounts it: add one, e.g. "${location.path}=nfs://<server>/<export>")`;
}

function identityFailures(identity: IdentityResult): string[] {
  const failures: string[] = [];
  if (identity.machineIdentifier !== identity.expectedMachineIdentifier) {
    failures.push(
      `Plex in the cluster answers as server ${identity.machineIdentifier}, but the VM's server is ` +
        `${identity.expectedMachineIdentifier}: a new, unclaimed server was created instead of the ` +
        `migrated one (its Preferences.xml did not reach the config volume, or Plex could not read ` +
        `it), so clients will not find your server and its libraries look empty. Nothing was ` +
        `changed on the VM. Fix: check the import log in the config volume ` +
        `(/config/.plex-migrate/) and that /config/Library/Application Support/Plex Media ` +
        `Server/Preferences.xml is the VM's, then run pulumi up again; or roll back to the VM.`,
    );
  }
  if (identity.version !== identity.expectedVersion) {
    failures.push(
      `Plex in the cluster runs version ${identity.version}, expected ${identity.expectedVersion} ` +
        `(the VM's version or plexImageTag): a different version may upgrade the database in place. ` +
        `Fix: unset plexImageTag, or set it to ${identity.expectedVersion}, and run pulumi up again.`,
    );
  }
  return failures;
}

function sectionFindings(section: SectionResult): { failures: string[]; warnings: string[] } {
  const label = `library "${section.title}" (section ${section.key})`;
  if (section.status === "unreadable") {
    return {
      failures: [
        `${label}: none of the ${section.sampled} sampled items can be read by Plex in the ` +
          `cluster. Its folders: ${section.locations.map(where).join("; ")}. Fix: make that volume ` +
          `mount the media at the same path the VM used, readable by the Plex user, and run ` +
          `pulumi up again. Do not let Plex scan this library before then.`,
      ],
      warnings: [],
    };
  }
  const warnings: string[] = [];
  if (section.status === "partly-readable") {
    warnings.push(
      `${label}: ${section.readable} of ${section.sampled} sampled items are readable` +
        `${section.unreadableFiles.length > 0 ? ` (unreadable e.g. ${section.unreadableFiles.map((f) => f.file).join(", ")})` : ""}.`,
    );
  }
  for (const location of section.locations) {
    if (location.sampled > 0 && location.readable === 0 && section.readable > 0) {
      warnings.push(
        `${label}: none of the ${location.sampled} items sampled in ${where(location)} is readable.`,
      );
    }
  }
  if (section.status === "not-checked" && section.note) warnings.push(`${label}: ${section.note}`);
  return { failures: [], warnings };
}

function advertisedFindings(advertised: AdvertisedResult, expected: string): string[] {
  // No address to check (the internal networking mode warns at preview already): the report
  // line says so, without a warning.
  if (advertised.url === null) return [];
  if (!advertised.answered) {
    return [
      `the advertised address ${advertised.url} did not answer /identity from inside the cluster ` +
        `(${advertised.detail}): clients using it will not reach Plex. Check the Service, ` +
        `LoadBalancer or Ingress behind it.`,
    ];
  }
  if (advertised.machineIdentifier !== expected) {
    return [
      `the advertised address ${advertised.url} answers as server ${advertised.machineIdentifier}, ` +
        `not the migrated ${expected}: it reaches another Plex.`,
    ];
  }
  return [];
}

/** Assembles the report: what fails `up`, what only warns, and what the user should do next. */
export function assembleReport(parts: {
  verifiedAt: string;
  identity: IdentityResult;
  sections: SectionResult[];
  advertised: AdvertisedResult;
  autoEmptyTrash: boolean | null;
}): VerificationReport {
  const failures = identityFailures(parts.identity);
  const warnings: string[] = [];
  for (const section of parts.sections) {
    const found = sectionFindings(section);
    failures.push(...found.failures);
    warnings.push(...found.warnings);
  }
  warnings.push(...advertisedFindings(parts.advertised, parts.identity.expectedMachineIdentifier));
  if (parts.sections.length === 0 && failures.length === 0) {
    warnings.push("Plex lists no library sections: nothing to sample.");
  }
  // Repeated whatever the setting is now: someone may turn it on before the report is green.
  const advice = [EMPTY_TRASH_ADVICE, OUTSIDE_CHECK_ADVICE];
  if (parts.autoEmptyTrash === true && (failures.length > 0 || warnings.length > 0)) {
    warnings.push(
      'Plex\'s "Empty trash automatically after every scan" is on: turn it off before the next ' +
        "scan, or the unreadable items above may be removed from the library.",
    );
  }
  return { ...parts, passed: failures.length === 0, failures, warnings, advice };
}

/** Samples and readable counts per section, one line each. */
function sectionLine(section: SectionResult): string {
  const counts =
    section.status === "empty"
      ? "no items"
      : section.status === "not-checked"
        ? "not checked"
        : `${section.readable}/${section.sampled} sampled items readable (of ${section.items})`;
  return `  ${section.title} [${section.type}]: ${section.status}, ${counts}`;
}

function advertisedLine(advertised: AdvertisedResult): string {
  if (advertised.url === null) return `advertised address: not checked (${advertised.detail})`;
  return advertised.answered
    ? `advertised address ${advertised.url}: answers /identity as ${advertised.machineIdentifier}`
    : `advertised address ${advertised.url}: no answer (${advertised.detail})`;
}

/** The report as text: the stack output's summary and the migration log's lines. */
export function formatReport(report: VerificationReport): string {
  const { identity } = report;
  const lines = [
    `Plex verification ${report.passed ? "PASSED" : "FAILED"} at ${report.verifiedAt}`,
    `identity: server ${identity.machineIdentifier} (expected ${identity.expectedMachineIdentifier}), ` +
      `version ${identity.version} (expected ${identity.expectedVersion}), ` +
      `claimed ${identity.claimed === null ? "unknown" : identity.claimed ? "yes" : "no"}`,
    `libraries (${report.sections.length}):`,
    ...report.sections.map(sectionLine),
    advertisedLine(report.advertised),
    `empty trash automatically: ${report.autoEmptyTrash === null ? "unknown" : report.autoEmptyTrash ? "on" : "off"}`,
    ...report.failures.map((f) => `FAILED: ${f}`),
    ...report.warnings.map((w) => `WARNING: ${w}`),
    ...report.advice,
  ];
  return lines.join("\n");
}
