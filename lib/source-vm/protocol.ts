/**
 * The VM step protocol in one table: for each step of scripts/plex-migrate-source.sh, the settings
 * it reads (each with its PLEX_MIGRATE_* variable) and the keys of the one JSON object it prints.
 * `stepEnvironment` (commands.ts) builds a step's environment from it, `parseStepOutput`
 * (outputs.ts) checks a summary against it, and test/integration/source-vm-protocol.test.ts runs
 * the script on the fake VM and checks that both sides agree.
 */
import type { SourceScriptSettings } from "./commands";

export type SourceStep = "preflight" | "authorize-sync" | "stop" | "revoke-sync" | "rollback";

interface Setting {
  /** The variable the script reads. */
  env: string;
  /** Its value for these settings; undefined leaves it out (the script's default applies). */
  value: (settings: SourceScriptSettings) => string | undefined;
}

/** Every setting SourceVm passes to the script. */
export const SETTINGS = {
  workDir: { env: "PLEX_MIGRATE_WORK_DIR", value: (s) => s.workDir },
  plexDataDir: { env: "PLEX_MIGRATE_DATA_DIR", value: (s) => s.plexDataDir },
  plexService: { env: "PLEX_MIGRATE_PLEX_SERVICE", value: (s) => s.plexService },
  tautulliService: { env: "PLEX_MIGRATE_TAUTULLI_SERVICE", value: (s) => s.tautulliService },
  tautulliDbPath: { env: "PLEX_MIGRATE_TAUTULLI_DB", value: (s) => s.tautulliDbPath },
  syncPublicKey: { env: "PLEX_MIGRATE_SYNC_PUBLIC_KEY", value: (s) => s.syncPublicKey },
  syncAllowedCidrs: {
    env: "PLEX_MIGRATE_SYNC_ALLOWED_CIDRS",
    value: (s) => s.syncAllowedCidrs?.join(","),
  },
  rehearsal: { env: "PLEX_MIGRATE_REHEARSAL", value: (s) => (s.rehearsal ? "1" : undefined) },
  plexVersion: { env: "PLEX_MIGRATE_PLEX_VERSION", value: (s) => s.plexVersion || undefined },
  rollbackForce: {
    env: "PLEX_MIGRATE_ROLLBACK_FORCE",
    value: (s) => (s.rollbackForce ? "1" : undefined),
  },
} satisfies Record<string, Setting>;

export type SettingName = keyof typeof SETTINGS;

/** Variables the script reads that SourceVm never sets: for a person running it by hand (see the script's header). */
export const BY_HAND_SETTINGS = [
  "PLEX_MIGRATE_LOG",
  "PLEX_MIGRATE_PLEX_PACKAGE",
  "PLEX_MIGRATE_PLEX_SQLITE",
  "PLEX_MIGRATE_STOP_TIMEOUT_SECONDS",
  "PLEX_MIGRATE_PROGRESS_SECONDS",
  "PLEX_MIGRATE_SYNC_USER",
  "PLEX_MIGRATE_SYNC_AUTHORIZED_KEYS",
  "PLEX_MIGRATE_SYNC_RRSYNC_SEARCH",
] as const;

/** JSON types of summary keys; "object?" and "string?" also allow null. */
export type KeyType = "string" | "number" | "boolean" | "object" | "array" | "object?" | "string?";

interface StepSpec {
  settings: readonly SettingName[];
  keys: Readonly<Record<string, KeyType>>;
}

const DATABASES = "array";

/** What the steps that look at Plex and Tautulli themselves (preflight, stop) read. */
const SERVICE_STEP_SETTINGS = [
  "workDir",
  "plexDataDir",
  "plexService",
  "tautulliService",
  "tautulliDbPath",
  "rehearsal",
  "plexVersion",
] as const satisfies readonly SettingName[];

export const STEP_PROTOCOL = {
  preflight: {
    settings: SERVICE_STEP_SETTINGS,
    keys: {
      step: "string",
      ok: "boolean",
      rehearsal: "boolean",
      install: "string",
      plexVersion: "string",
      plexVersionSource: "string",
      plexService: "string",
      plexServiceFound: "boolean",
      plexRunning: "boolean",
      dataDir: "string",
      dataDirOwner: "string",
      dataOwner: "object",
      libraryBytes: "number",
      libraryApparentBytes: "number",
      libraryFiles: "number",
      fileCount: "number",
      workDir: "string",
      freeBytes: "number",
      requiredFreeBytes: "number",
      databasesOk: "boolean",
      integrity: "string",
      integrityTool: "string",
      integrityToolPath: "string",
      databases: DATABASES,
      mediaRoots: "array",
      timezone: "string",
      preferences: "object",
      plexToken: "string",
      tautulli: "object?",
      notes: "array",
      problems: "array",
    },
  },
  stop: {
    settings: SERVICE_STEP_SETTINGS,
    keys: {
      step: "string",
      stoppedAt: "string",
      rehearsal: "boolean",
      databasesOk: "boolean",
      integrity: "string",
      integrityTool: "string",
      databases: DATABASES,
      plexDatabases: "array",
      tautulliSnapshot: "object?",
      tautulliConfig: "object?",
      previousState: "object",
      notes: "array",
    },
  },
  "authorize-sync": {
    settings: ["workDir", "plexDataDir", "syncPublicKey", "syncAllowedCidrs", "rehearsal"],
    keys: {
      step: "string",
      user: "string",
      authorizedKeysFile: "string",
      forcedCommand: "string",
      keyFingerprint: "string",
      changed: "boolean",
      notes: "array",
    },
  },
  "revoke-sync": {
    settings: ["workDir", "syncPublicKey", "rehearsal"],
    keys: { step: "string", revoked: "boolean", removed: "array", notes: "array" },
  },
  rollback: {
    settings: ["workDir", "plexService", "tautulliService", "rehearsal", "rollbackForce"],
    keys: {
      step: "string",
      startedAt: "string",
      rehearsal: "boolean",
      forced: "boolean",
      started: "array",
      previousState: "object",
      notes: "array",
    },
  },
} as const satisfies Record<SourceStep, StepSpec>;

export const SOURCE_STEPS = Object.keys(STEP_PROTOCOL) as SourceStep[];
