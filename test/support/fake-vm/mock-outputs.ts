/**
 * Pulumi-mock outputs for SourceVm's `command:remote:Command` resources: the stdout each VM step
 * prints (the shapes of lib/source-vm/outputs.ts, values of a small real library). Plug into
 * runWithMocks: `outputs: { "command:remote:Command": sourceVmCommandOutputs() }`.
 */
import type { Registration } from "../pulumi-mocks";

export const SAMPLE_PLEX_VERSION = "1.41.3.9314-a0bfb8370";
export const SAMPLE_ARCHIVE_SHA256 = "a".repeat(64);
export const SAMPLE_TAUTULLI_SHA256 = "b".repeat(64);
export const SAMPLE_LIBRARY_BYTES = 12_884_901_888;

const database = (file: string) => ({
  file,
  bytes: 212992,
  walBytes: 0,
  ok: true,
  result: "ok",
  checkedOn: "copy",
});

export const SAMPLE_STEP_OUTPUT: Record<string, unknown> = {
  preflight: {
    step: "preflight",
    ok: true,
    rehearsal: false,
    plexVersion: SAMPLE_PLEX_VERSION,
    plexVersionSource: "dpkg-query",
    plexService: "plexmediaserver",
    plexServiceFound: true,
    plexRunning: true,
    dataDir: "/var/lib/plexmediaserver/Library/Application Support/Plex Media Server",
    dataDirOwner: "998:998",
    libraryBytes: SAMPLE_LIBRARY_BYTES,
    libraryApparentBytes: SAMPLE_LIBRARY_BYTES - 1_000_000,
    libraryFiles: 183_211,
    archiveInputBytes: SAMPLE_LIBRARY_BYTES - 1_000_000,
    excludes: [],
    compression: "zstd",
    archiveFormat: "tar.zst",
    workDir: "/var/tmp/plex-migrate",
    freeBytes: 80_000_000_000,
    requiredFreeBytes: SAMPLE_LIBRARY_BYTES,
    databasesOk: true,
    integrityTool: "Plex SQLite",
    integrityToolPath: "/usr/lib/plexmediaserver/Plex SQLite",
    databases: [
      database("Plug-in Support/Databases/com.plexapp.plugins.library.db"),
      database("Plug-in Support/Databases/com.plexapp.plugins.library.blobs.db"),
    ],
    mediaRoots: ["/mnt/nas-plex/Movies", "/mnt/nas-plex/TV Shows"],
    tautulli: {
      path: "/opt/Tautulli/tautulli.db",
      found: true,
      bytes: 52_428_800,
      service: "tautulli",
      serviceFound: true,
      running: true,
    },
    notes: [],
    problems: [],
  },
  stop: {
    step: "stop",
    stoppedAt: "2026-03-01T10:00:00Z",
    rehearsal: false,
    services: [
      { name: "tautulli", found: true, wasActive: true, wasEnabled: "enabled" },
      { name: "plexmediaserver", found: true, wasActive: true, wasEnabled: "enabled" },
    ],
    databasesOk: true,
    integrityTool: "Plex SQLite",
    databases: [database("Plug-in Support/Databases/com.plexapp.plugins.library.db")],
    notes: [],
  },
  archive: {
    step: "archive",
    archivedAt: "2026-03-01T10:05:00Z",
    archive: {
      file: "/var/tmp/plex-migrate/archive/plex-library.tar.zst",
      name: "plex-library.tar.zst",
      format: "tar.zst",
      compression: "zstd",
      sha256: SAMPLE_ARCHIVE_SHA256,
      bytes: 9_000_000_000,
      excludes: [],
      seconds: 240,
    },
    tautulli: {
      file: "/var/tmp/plex-migrate/archive/tautulli.db",
      name: "tautulli.db",
      source: "/opt/Tautulli/tautulli.db",
      sha256: SAMPLE_TAUTULLI_SHA256,
      bytes: 52_428_800,
    },
    notes: [],
  },
  serve: {
    step: "serve",
    pid: 4242,
    address: "0.0.0.0",
    port: 32499,
    lifetimeSeconds: 14400,
    expiresAt: "2026-03-01T14:05:00Z",
    allowedCidrs: [],
    files: [
      { name: "plex-library.tar.zst", sha256: SAMPLE_ARCHIVE_SHA256, bytes: 9_000_000_000 },
      { name: "tautulli.db", sha256: SAMPLE_TAUTULLI_SHA256, bytes: 52_428_800 },
    ],
  },
  "stop-serving": { step: "stop-serving", wasRunning: true, keptArchive: false, removed: [] },
};

/** Outputs for a SourceVm command registration, chosen by the step its name ends with. */
export function sourceVmCommandOutputs(): (registration: Registration) => Record<string, unknown> {
  return (registration) => {
    const step = Object.keys(SAMPLE_STEP_OUTPUT)
      .sort((a, b) => b.length - a.length)
      .find((s) => registration.name.endsWith(`-${s}`));
    const hasCommand = typeof registration.inputs.create === "string";
    return {
      stdout: step && hasCommand ? JSON.stringify(SAMPLE_STEP_OUTPUT[step]) : "",
      stderr: "",
    };
  };
}
