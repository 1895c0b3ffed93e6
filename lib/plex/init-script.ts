/**
 * Renders scripts/plex-init.sh for the chart's `initContainer.script`. The chart passes no
 * environment to the init container, so the non-secret settings are written into the script's
 * settings block; the archive URL (it holds the serving token) is not: the script reads it from
 * the Secret mounted at {@link ARCHIVE_URL_MOUNT_PATH}.
 */
import * as fs from "fs";
import * as path from "path";

export const INIT_SCRIPT_PATH = path.join(__dirname, "..", "..", "scripts", "plex-init.sh");

/** Where the Secret with the archive URL is mounted (read-only) in the pod. */
export const ARCHIVE_URL_MOUNT_PATH = "/plex-migrate";
/** Key of the archive URL in that Secret (becomes the file name). */
export const ARCHIVE_URL_KEY = "archive-url";
/** Pod volume name of that Secret. */
export const ARCHIVE_URL_VOLUME = "plex-migrate-archive";

/** Files plex-init.sh keeps on the config volume (relative to /config). */
export const INIT_STATE_DIR = ".plex-migrate";
export const INIT_MARKER = `${INIT_STATE_DIR}/import-complete`;
export const INIT_LOG = `${INIT_STATE_DIR}/import.log`;

export const ARCHIVE_FORMATS = ["tar.zst", "tar.gz", "tar"] as const;
export type ArchiveFormat = (typeof ARCHIVE_FORMATS)[number];

/** plex-init.sh exit codes (see the script's header). */
export const INIT_EXIT_CODES = {
  ok: 0,
  settings: 2,
  tools: 3,
  space: 4,
  download: 5,
  checksum: 6,
  extract: 7,
  foreignLibrary: 8,
  layout: 9,
  interrupted: 10,
} as const;

export interface InitScriptSettings {
  /** sha256 (hex) of the archive bytes served. */
  archiveSha256: string;
  /** Length of the archive in bytes. */
  archiveBytes: number;
  archiveFormat: string;
  /** Bytes the extracted library needs (the preflight's measure), for the free-space check. */
  libraryBytes: number;
  /** Owner of the imported files (the image's plex user). */
  uid: number;
  gid: number;
}

const BEGIN = "# @plex-init-settings-begin";
const END = "# @plex-init-settings-end";

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

function checkSettings(s: InitScriptSettings): void {
  const problems: string[] = [];
  if (!/^[0-9a-fA-F]{64}$/.test(s.archiveSha256)) {
    problems.push(`archive sha256 "${s.archiveSha256}" is not 64 hex digits`);
  }
  if (!Number.isSafeInteger(s.archiveBytes) || s.archiveBytes <= 0) {
    problems.push(`archive length ${String(s.archiveBytes)} is not a positive byte count`);
  }
  if (!(ARCHIVE_FORMATS as readonly string[]).includes(s.archiveFormat)) {
    problems.push(
      `archive format "${s.archiveFormat}" is not one of ${ARCHIVE_FORMATS.join(", ")}`,
    );
  }
  if (!Number.isSafeInteger(s.libraryBytes) || s.libraryBytes < 0) {
    problems.push(`library size ${String(s.libraryBytes)} is not a byte count`);
  }
  for (const [key, id] of [
    ["uid", s.uid],
    ["gid", s.gid],
  ] as const) {
    if (!Number.isSafeInteger(id) || id < 0) problems.push(`${key} ${String(id)} is not a number`);
  }
  if (problems.length > 0) {
    throw new Error(`cannot render plex-init.sh: ${problems.join("; ")}`);
  }
}

/** The script text with its settings block filled in (throws on a malformed setting). */
export function renderInitScript(
  settings: InitScriptSettings,
  template: string = fs.readFileSync(INIT_SCRIPT_PATH, "utf8"),
): string {
  checkSettings(settings);
  const begin = template.indexOf(BEGIN);
  const end = template.indexOf(END);
  if (begin < 0 || end < begin) {
    throw new Error(`${INIT_SCRIPT_PATH} has no settings block (${BEGIN} ... ${END})`);
  }
  const lines = [
    `${BEGIN} (rendered by plex-migrate)`,
    `PLEX_ARCHIVE_URL_FILE=${shellQuote(`${ARCHIVE_URL_MOUNT_PATH}/${ARCHIVE_URL_KEY}`)}`,
    `PLEX_ARCHIVE_SHA256=${shellQuote(settings.archiveSha256.toLowerCase())}`,
    `PLEX_ARCHIVE_BYTES=${shellQuote(String(settings.archiveBytes))}`,
    `PLEX_ARCHIVE_FORMAT=${shellQuote(settings.archiveFormat)}`,
    `PLEX_LIBRARY_BYTES=${shellQuote(String(settings.libraryBytes))}`,
    `PLEX_UID=${shellQuote(String(settings.uid))}`,
    `PLEX_GID=${shellQuote(String(settings.gid))}`,
  ];
  return template.slice(0, begin) + lines.join("\n") + "\n" + template.slice(end);
}
