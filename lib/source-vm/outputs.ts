/**
 * Shapes of the JSON each VM step prints on stdout (scripts/plex-migrate-source.sh), and strict
 * parsers that turn a step's stdout into them. A step prints exactly one JSON object, as its last
 * line; anything else means the script and this module disagree, which is reported as such.
 */
import type { SourceStep } from "./commands";

export interface DatabaseCheck {
  /** Path relative to the data dir. */
  file: string;
  bytes: number;
  walBytes: number;
  ok: boolean;
  /** "ok" or the first lines the integrity check printed. */
  result: string;
  /** "copy" or "live database, read-only". */
  checkedOn: string;
}

export interface PreflightResult {
  step: "preflight";
  ok: boolean;
  rehearsal: boolean;
  plexVersion: string;
  /** "dpkg-query", "PLEX_MIGRATE_PLEX_VERSION" or "log: Logs/…". */
  plexVersionSource: string;
  plexService: string;
  plexServiceFound: boolean;
  plexRunning: boolean;
  dataDir: string;
  /** "uid:gid" owning Preferences.xml on the VM. */
  dataDirOwner: string;
  /** Bytes the data dir occupies on disk (what the Plex volume must hold). */
  libraryBytes: number;
  libraryApparentBytes: number;
  libraryFiles: number;
  /** Apparent bytes that go into the archive (after excludes). */
  archiveInputBytes: number;
  excludes: string[];
  compression: "zstd" | "pigz" | "gzip" | "none";
  archiveFormat: ArchiveFormat;
  workDir: string;
  freeBytes: number;
  requiredFreeBytes: number;
  databasesOk: boolean;
  /** "Plex SQLite", "sqlite3" or "python3". */
  integrityTool: string;
  integrityToolPath: string;
  databases: DatabaseCheck[];
  /** section_locations.root_path: the media paths the library points at. */
  mediaRoots: string[];
  tautulli: null | {
    path: string;
    found: boolean;
    bytes: number;
    service: string;
    serviceFound: boolean;
    running: boolean;
  };
  notes: string[];
  problems: string[];
}

export interface ServiceStop {
  name: string;
  found: boolean;
  wasActive?: boolean;
  /** `systemctl is-enabled` before the first stop. */
  wasEnabled?: string;
}

export interface StopResult {
  step: "stop";
  stoppedAt: string;
  rehearsal: boolean;
  services: ServiceStop[];
  databasesOk: boolean;
  integrityTool: string;
  databases: DatabaseCheck[];
  notes: string[];
}

export type ArchiveFormat = "tar.zst" | "tar.gz" | "tar";

export interface ArchiveResult {
  step: "archive";
  archivedAt: string;
  archive: {
    file: string;
    name: string;
    format: ArchiveFormat;
    compression: "zstd" | "pigz" | "gzip" | "none";
    sha256: string;
    bytes: number;
    excludes: string[];
    seconds: number;
  };
  tautulli: null | {
    file: string;
    name: "tautulli.db";
    source: string;
    sha256: string;
    bytes: number;
  };
  notes: string[];
}

export interface ServedFile {
  name: string;
  sha256: string;
  bytes: number;
}

export interface ServeResult {
  step: "serve";
  pid: number;
  address: string;
  port: number;
  lifetimeSeconds: number;
  expiresAt: string;
  allowedCidrs: string[];
  /** The archive first, then tautulli.db when there is one. */
  files: ServedFile[];
  /** Only when the script generated the token itself (by-hand use). */
  token?: string;
  paths?: string[];
}

export interface StopServingResult {
  step: "stop-serving";
  wasRunning: boolean;
  keptArchive: boolean;
  removed: string[];
}

export interface RollbackResult {
  step: "rollback";
  startedAt: string;
  rehearsal: boolean;
  services: { name: string; found: boolean; active?: boolean; enabled?: string }[];
  notes: string[];
}

export interface StepResults {
  preflight: PreflightResult;
  stop: StopResult;
  archive: ArchiveResult;
  serve: ServeResult;
  "stop-serving": StopServingResult;
  rollback: RollbackResult;
}

/** Parses the stdout of `step`; throws naming the step and what was wrong. */
export function parseStepOutput<S extends SourceStep>(step: S, stdout: string): StepResults[S] {
  const lines = stdout.trim().split("\n");
  const last = lines[lines.length - 1]?.trim() ?? "";
  let value: unknown;
  try {
    value = JSON.parse(last);
  } catch {
    throw new Error(
      `plex-migrate: the VM's ${step} step did not end with its JSON summary (got ${JSON.stringify(last.slice(0, 200))}); ` +
        "is the VM running the script from this version of plex-migrate?",
    );
  }
  const record = value as Record<string, unknown>;
  if (!record || typeof record !== "object" || record.step !== step) {
    throw new Error(
      `plex-migrate: the VM's ${step} step printed a summary for "${String(record?.step)}"`,
    );
  }
  const need = (field: string, type: "string" | "number" | "boolean" | "object") => {
    const actual = record[field];
    if (typeof actual !== type || actual === null) {
      throw new Error(`plex-migrate: the VM's ${step} summary lacks ${field} (${type})`);
    }
  };
  switch (step) {
    case "preflight":
      need("plexVersion", "string");
      need("libraryBytes", "number");
      need("databasesOk", "boolean");
      need("ok", "boolean");
      break;
    case "stop":
      need("databasesOk", "boolean");
      need("stoppedAt", "string");
      break;
    case "archive": {
      need("archive", "object");
      const archive = record.archive as Record<string, unknown>;
      if (!/^[0-9a-f]{64}$/.test(String(archive.sha256)) || typeof archive.bytes !== "number") {
        throw new Error(`plex-migrate: the VM's archive summary has no valid sha256/bytes`);
      }
      break;
    }
    case "serve": {
      need("port", "number");
      const files = record.files;
      if (
        !Array.isArray(files) ||
        files.length === 0 ||
        files.some((f) => typeof f?.name !== "string" || !/^[0-9a-f]{64}$/.test(String(f?.sha256)))
      ) {
        throw new Error(`plex-migrate: the VM's serve summary lists no valid files`);
      }
      break;
    }
    case "stop-serving":
      need("wasRunning", "boolean");
      break;
    case "rollback":
      need("startedAt", "string");
      break;
  }
  return record as unknown as StepResults[S];
}

/** "plex-library.tar.zst" -> "tar.zst". */
export function archiveFormatOf(name: string): ArchiveFormat {
  if (name.endsWith(".tar.zst")) return "tar.zst";
  if (name.endsWith(".tar.gz")) return "tar.gz";
  if (name.endsWith(".tar")) return "tar";
  throw new Error(`plex-migrate: unexpected archive name ${name}`);
}
