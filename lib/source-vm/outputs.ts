/**
 * Shapes of the JSON each VM step prints on stdout (scripts/plex-migrate-source.sh), and strict
 * parsers that turn a step's stdout into them. A step prints exactly one JSON object, as its last
 * line; anything else means the script and this module disagree, which is reported as such.
 */
import { STEP_PROTOCOL, type KeyType, type SourceStep } from "./protocol";

/**
 * "ok": Plex's own SQLite (or a stock one, on a database without Plex's collations) found nothing
 * wrong. "not-checked": no SQLite on the VM could read the database (stock SQLite lacks Plex's
 * collations icu_root and naturalsort); a note says what is needed. A failed check is a refusal.
 */
export type Integrity = "ok" | "not-checked";

export interface DatabaseCheck {
  /** Path relative to the data dir. */
  file: string;
  bytes: number;
  walBytes: number;
  ok: boolean;
  /** "ok" or the first lines the integrity check printed. */
  result: string;
  /** This database's verdict; "failed" makes the step refuse. */
  integrity: Integrity | "failed";
  /** "copy" or "live database, read-only". */
  checkedOn: string;
}

export interface PreflightResult {
  step: "preflight";
  ok: boolean;
  rehearsal: boolean;
  /** How Plex is installed: the deb, the snap, a container run by a systemd unit (docker). */
  install: "deb" | "snap" | "docker" | "rehearsal" | "given";
  plexVersion: string;
  /** "dpkg-query", "snap list", "PLEX_MIGRATE_PLEX_VERSION" or "log: Logs/…". */
  plexVersionSource: string;
  plexService: string;
  plexServiceFound: boolean;
  plexRunning: boolean;
  dataDir: string;
  /** "uid:gid" owning Preferences.xml on the VM. */
  dataDirOwner: string;
  dataOwner: DataOwner;
  /** Bytes the data dir occupies on disk (what the Plex volume must hold). */
  libraryBytes: number;
  libraryApparentBytes: number;
  libraryFiles: number;
  /** Every entry of the data dir (files, directories, links): the inodes the volume needs. */
  fileCount: number;
  workDir: string;
  freeBytes: number;
  requiredFreeBytes: number;
  /** False when a check found a damaged database (the step then refuses). */
  databasesOk: boolean;
  integrity: Integrity;
  /** "Plex SQLite", "sqlite3", "python3", or "" when the VM has no SQLite. */
  integrityTool: string;
  integrityToolPath: string;
  databases: DatabaseCheck[];
  /** section_locations.root_path: the media paths the library points at. */
  mediaRoots: string[];
  /** IANA zone Plex runs in (TZ of its unit, else the VM's); "" when unknown. */
  timezone: string;
  preferences: PlexPreferences;
  /** Preferences.xml PlexOnlineToken (secret; "" when preflight refuses). */
  plexToken: string;
  tautulli: null | {
    path: string;
    found: boolean;
    bytes: number;
    /** The config.ini that goes into the snapshot with tautulli.db. */
    config: string;
    service: string;
    serviceFound: boolean;
    running: boolean;
  };
  notes: string[];
  problems: string[];
}

export interface DataOwner {
  uid: number;
  gid: number;
  /** "" when the uid has no passwd entry. */
  user: string;
  group: string;
  /** The user's other groups (not the primary one). */
  groups: { name: string; gid: number }[];
}

/** Preferences.xml attributes the cluster's Plex must keep ("" when unset). */
export interface PlexPreferences {
  /** ProcessedMachineIdentifier: the server's identity. */
  machineIdentifier: string;
  allowedNetworks: string;
  /** LanNetworksBandwidth. */
  lanNetworks: string;
  customConnections: string;
}

export interface FileDigest {
  path: string;
  sha256: string;
  bytes: number;
}

/** A unit as it was before the first stop. */
export interface UnitState {
  unit: string;
  active: boolean;
  enabled: boolean;
  /** `systemctl is-enabled` then ("enabled", "disabled", "static", …). */
  unitFileState: string;
}

export interface PreviousState {
  plex: UnitState | null;
  tautulli: UnitState | null;
}

export interface StopResult {
  step: "stop";
  stoppedAt: string;
  rehearsal: boolean;
  databasesOk: boolean;
  integrity: Integrity;
  integrityTool: string;
  databases: DatabaseCheck[];
  /** The Plex databases (and -wal files) after the stop; path relative to the data dir. */
  plexDatabases: FileDigest[];
  /** tautulli.db taken with SQLite's backup API, in the work dir (absolute path on the VM). */
  tautulliSnapshot: FileDigest | null;
  /** Tautulli's config.ini, copied next to the snapshot. */
  tautulliConfig: FileDigest | null;
  previousState: PreviousState;
  notes: string[];
}

export interface RollbackResult {
  step: "rollback";
  startedAt: string;
  rehearsal: boolean;
  forced: boolean;
  /** Units it started (only those that were running before the migration). */
  started: string[];
  /** The state it restored (both null when there was nothing to restore). */
  previousState: PreviousState;
  notes: string[];
}

export interface AuthorizeSyncResult {
  step: "authorize-sync";
  /** The VM account whose authorized_keys holds the key. */
  user: string;
  authorizedKeysFile: string;
  /** What the key may run: rrsync -ro <plexDataDir> (through sudo for a user other than root). */
  forcedCommand: string;
  /** "SHA256:…" of the migration key. */
  keyFingerprint: string;
  /** False when the line was there already (nothing written). */
  changed: boolean;
  notes: string[];
}

export interface RevokeSyncResult {
  step: "revoke-sync";
  revoked: boolean;
  removed: string[];
  notes: string[];
}

export interface StepResults {
  preflight: PreflightResult;
  stop: StopResult;
  "authorize-sync": AuthorizeSyncResult;
  "revoke-sync": RevokeSyncResult;
  rollback: RollbackResult;
}

function hasType(value: unknown, type: KeyType): boolean {
  switch (type) {
    case "array":
      return Array.isArray(value);
    case "object":
      return typeof value === "object" && value !== null && !Array.isArray(value);
    case "object?":
      return value === null || hasType(value, "object");
    case "string?":
      return value === null || typeof value === "string";
    default:
      return typeof value === type;
  }
}

const SHA256 = /^[0-9a-f]{64}$/;
const isDigest = (d: unknown) => {
  const f = d as Record<string, unknown> | null;
  return (
    !!f &&
    typeof f.path === "string" &&
    SHA256.test(String(f.sha256)) &&
    typeof f.bytes === "number"
  );
};

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
  const invalid = (what: string) => {
    throw new Error(`plex-migrate: the VM's ${step} summary has ${what}`);
  };
  if (step === "stop") {
    if (Array.isArray(record.plexDatabases) && !record.plexDatabases.every(isDigest)) {
      invalid("no valid plexDatabases");
    }
    if (record.tautulliSnapshot && !isDigest(record.tautulliSnapshot)) {
      invalid("no valid tautulliSnapshot");
    }
  }
  const keys: Readonly<Record<string, KeyType>> = STEP_PROTOCOL[step].keys;
  for (const [key, type] of Object.entries(keys)) {
    if (!hasType(record[key], type)) {
      throw new Error(`plex-migrate: the VM's ${step} summary lacks ${key} (${type})`);
    }
  }
  const unknown = Object.keys(record).filter((k) => !(k in keys));
  if (unknown.length) {
    throw new Error(
      `plex-migrate: the VM's ${step} summary has keys this version does not know (${unknown.join(", ")}); ` +
        "is the VM running the script from this version of plex-migrate?",
    );
  }
  return record as unknown as StepResults[S];
}
