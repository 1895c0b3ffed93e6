/**
 * Pulumi-mock outputs for SourceVm's `command:remote:Command` resources: the stdout each VM step
 * prints (the shapes of lib/source-vm/outputs.ts, values of a small real library). Plug into
 * runWithMocks: `outputs: { "command:remote:Command": sourceVmCommandOutputs() }`.
 */
import type { Registration } from "../pulumi-mocks";

export const SAMPLE_PLEX_VERSION = "1.41.3.9314-a0bfb8370";
export const SAMPLE_TAUTULLI_SHA256 = "b".repeat(64);
export const SAMPLE_LIBRARY_BYTES = 12_884_901_888;
export const SAMPLE_PLEX_TOKEN = "sample-plex-online-token-xyz";
export const SAMPLE_MACHINE_IDENTIFIER = "5d2c8a0b3e4f4a1c9b7e6d5c4b3a2f1e0d9c8b7a";

const database = (file: string) => ({
  file,
  bytes: 212992,
  walBytes: 0,
  ok: true,
  integrity: "ok",
  result: "ok",
  checkedOn: "copy",
});

const unitState = (unit: string) => ({
  unit,
  active: true,
  enabled: true,
  unitFileState: "enabled",
});

export const SAMPLE_STEP_OUTPUT: Record<string, unknown> = {
  preflight: {
    step: "preflight",
    ok: true,
    rehearsal: false,
    install: "deb",
    plexVersion: SAMPLE_PLEX_VERSION,
    plexVersionSource: "dpkg-query",
    plexService: "plexmediaserver",
    plexServiceFound: true,
    plexRunning: true,
    dataDir: "/var/lib/plexmediaserver/Library/Application Support/Plex Media Server",
    dataDirOwner: "998:998",
    dataOwner: {
      uid: 998,
      gid: 998,
      user: "plex",
      group: "plex",
      groups: [
        { name: "video", gid: 44 },
        { name: "render", gid: 109 },
      ],
    },
    libraryBytes: SAMPLE_LIBRARY_BYTES,
    libraryApparentBytes: SAMPLE_LIBRARY_BYTES - 1_000_000,
    libraryFiles: 183_211,
    fileCount: 201_544,
    workDir: "/var/lib/plex-migrate",
    freeBytes: 80_000_000_000,
    requiredFreeBytes: SAMPLE_LIBRARY_BYTES,
    databasesOk: true,
    integrity: "ok",
    integrityTool: "Plex SQLite",
    integrityToolPath: "/usr/lib/plexmediaserver/Plex SQLite",
    databases: [
      database("Plug-in Support/Databases/com.plexapp.plugins.library.db"),
      database("Plug-in Support/Databases/com.plexapp.plugins.library.blobs.db"),
    ],
    mediaRoots: ["/mnt/nas-plex/Movies", "/mnt/nas-plex/TV Shows"],
    timezone: "Europe/Berlin",
    preferences: {
      machineIdentifier: SAMPLE_MACHINE_IDENTIFIER,
      allowedNetworks: "192.168.1.0/255.255.255.0",
      lanNetworks: "192.168.1.0/24",
      customConnections: "https://plex.example.net:443",
    },
    plexToken: SAMPLE_PLEX_TOKEN,
    tautulli: {
      path: "/opt/Tautulli/tautulli.db",
      found: true,
      bytes: 52_428_800,
      config: "/opt/Tautulli/config.ini",
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
    databasesOk: true,
    integrity: "ok",
    integrityTool: "Plex SQLite",
    databases: [database("Plug-in Support/Databases/com.plexapp.plugins.library.db")],
    plexDatabases: [
      {
        path: "Plug-in Support/Databases/com.plexapp.plugins.library.db",
        sha256: "c".repeat(64),
        bytes: 212992,
      },
      {
        path: "Plug-in Support/Databases/com.plexapp.plugins.library.blobs.db",
        sha256: "d".repeat(64),
        bytes: 65536,
      },
    ],
    tautulliSnapshot: {
      path: "/var/lib/plex-migrate/snapshot/tautulli.db",
      sha256: SAMPLE_TAUTULLI_SHA256,
      bytes: 52_428_800,
    },
    tautulliConfig: {
      path: "/var/lib/plex-migrate/snapshot/config.ini",
      sha256: "e".repeat(64),
      bytes: 4096,
    },
    previousState: { plex: unitState("plexmediaserver"), tautulli: unitState("tautulli") },
    notes: [],
  },
  "authorize-sync": {
    step: "authorize-sync",
    user: "root",
    authorizedKeysFile: "/root/.ssh/authorized_keys",
    forcedCommand:
      "/usr/bin/rrsync -ro '/var/lib/plexmediaserver/Library/Application Support/Plex Media Server'",
    keyFingerprint: "SHA256:mockmockmockmockmockmockmockmockmockmockmoc",
    changed: true,
    notes: [],
  },
  "revoke-sync": {
    step: "revoke-sync",
    revoked: true,
    removed: ["/root/.ssh/authorized_keys"],
    notes: [],
  },
  rollback: {
    step: "rollback",
    startedAt: "2026-03-02T10:00:00Z",
    rehearsal: false,
    forced: true,
    started: ["plexmediaserver", "tautulli"],
    previousState: { plex: unitState("plexmediaserver"), tautulli: unitState("tautulli") },
    notes: [],
  },
};

/** Outputs for a SourceVm command registration, chosen by the step its name ends with. */
export function sourceVmCommandOutputs(): (registration: Registration) => Record<string, unknown> {
  return (registration) => {
    // A step's name is `<component>-<step>`, plus `-gen-<n>[-<m>]` in a later generation.
    const base = registration.name.replace(/-gen(-\d+)+$/, "");
    const step = Object.keys(SAMPLE_STEP_OUTPUT)
      .sort((a, b) => b.length - a.length)
      .find((s) => base.endsWith(`-${s}`));
    const hasCommand = typeof registration.inputs.create === "string";
    return {
      stdout: step && hasCommand ? JSON.stringify(SAMPLE_STEP_OUTPUT[step]) : "",
      stderr: "",
    };
  };
}
