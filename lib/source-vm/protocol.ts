/**
 * The VM step protocol in one table: for each step of scripts/plex-migrate-source.sh, the settings
 * it reads (each with its PLEX_MIGRATE_* variable) and the keys of the one JSON object it prints.
 * `stepEnvironment` (commands.ts) builds a step's environment from it, `parseStepOutput`
 * (outputs.ts) checks a summary against it, and test/integration/source-vm-protocol.test.ts runs
 * the script on the fake VM and checks that both sides agree.
 */
import type { SourceScriptSettings } from "./commands";

export type SourceStep =
  | "preflight"
  | "stop"
  | "archive"
  | "serve"
  | "stop-serving"
  | "authorize-sync"
  | "revoke-sync"
  | "rollback";

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
  archiveExcludes: { env: "PLEX_MIGRATE_EXCLUDES", value: (s) => s.archiveExcludes?.join(",") },
  archiveCompression: { env: "PLEX_MIGRATE_COMPRESSION", value: (s) => s.archiveCompression },
  serveAddress: { env: "PLEX_MIGRATE_SERVE_ADDRESS", value: (s) => s.serve?.address },
  servePort: { env: "PLEX_MIGRATE_SERVE_PORT", value: (s) => s.serve && String(s.serve.port) },
  serveLifetimeMinutes: {
    env: "PLEX_MIGRATE_SERVE_LIFETIME_MINUTES",
    value: (s) => s.serve && String(s.serve.lifetimeMinutes),
  },
  serveAllowedCidrs: {
    env: "PLEX_MIGRATE_SERVE_ALLOWED_CIDRS",
    value: (s) => s.serve?.allowedCidrs.join(","),
  },
  keepArchive: { env: "PLEX_MIGRATE_KEEP_ARCHIVE", value: (s) => (s.keepArchive ? "1" : "0") },
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

/**
 * Variables the script reads that SourceVm never sets: for a person running it by hand (see the
 * script's header), or passed outside the settings (the serving token).
 */
export const BY_HAND_SETTINGS = [
  "PLEX_MIGRATE_LOG",
  "PLEX_MIGRATE_PLEX_PACKAGE",
  "PLEX_MIGRATE_PLEX_SQLITE",
  "PLEX_MIGRATE_STOP_TIMEOUT_SECONDS",
  "PLEX_MIGRATE_PROGRESS_SECONDS",
  "PLEX_MIGRATE_SERVE_LIFETIME_SECONDS",
  "PLEX_MIGRATE_SERVE_TOKEN",
  "PLEX_MIGRATE_SERVER_PY",
  "PLEX_MIGRATE_SERVER_PY_SOURCE",
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

export const STEP_PROTOCOL = {
  preflight: {
    settings: [
      "workDir",
      "plexDataDir",
      "plexService",
      "tautulliService",
      "tautulliDbPath",
      "archiveExcludes",
      "archiveCompression",
      "rehearsal",
      "plexVersion",
    ],
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
      archiveInputBytes: "number",
      excludes: "array",
      compression: "string",
      archiveFormat: "string",
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
    settings: [
      "workDir",
      "plexDataDir",
      "plexService",
      "tautulliService",
      "tautulliDbPath",
      "rehearsal",
      "plexVersion",
    ],
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
  archive: {
    settings: [
      "workDir",
      "plexDataDir",
      "tautulliDbPath",
      "archiveExcludes",
      "archiveCompression",
      "rehearsal",
    ],
    keys: {
      step: "string",
      archivedAt: "string",
      archive: "object",
      tautulli: "object?",
      notes: "array",
    },
  },
  serve: {
    settings: [
      "workDir",
      "serveAddress",
      "servePort",
      "serveLifetimeMinutes",
      "serveAllowedCidrs",
      "rehearsal",
    ],
    keys: {
      step: "string",
      pid: "number",
      address: "string",
      port: "number",
      lifetimeSeconds: "number",
      expiresAt: "string",
      allowedCidrs: "array",
      files: "array",
    },
  },
  "stop-serving": {
    settings: ["workDir", "keepArchive", "rehearsal"],
    keys: { step: "string", wasRunning: "boolean", keptArchive: "boolean", removed: "array" },
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

/**
 * Keys a summary may carry beyond the table: serve prints the token and its paths only when it
 * generated the token itself (by-hand use).
 */
export const OPTIONAL_KEYS: Partial<Record<SourceStep, readonly string[]>> = {
  serve: ["token", "paths"],
};
