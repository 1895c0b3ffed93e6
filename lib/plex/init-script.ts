/**
 * The container that runs scripts/plex-init.sh: the same script, image and settings for the
 * warm-copy Job (phase "warm", while Plex still runs on the VM) and for the Plex pod's init
 * container (phase "final", after the stop). The script reaches the pod through a ConfigMap, the
 * migration key and the pinned host key through a Secret mounted only in this container; every
 * other setting is an environment variable (none of them secret).
 */
import type * as k8s from "@pulumi/kubernetes";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { isHost, isUnixUser } from "../checks";
import { generationProblem } from "../source-vm/phases";
import { requiredConfigBytes } from "./sizing";

export const INIT_SCRIPT_PATH = path.join(__dirname, "..", "..", "scripts", "plex-init.sh");

export type SyncPhase = "warm" | "final";

/** The host name plex-init.sh gives ssh (`HostKeyAlias`): the known_hosts lines use it. */
export const SYNC_HOST_ALIAS = "plex-migrate-vm";

/** Where the sync Secret (private key, known_hosts) is mounted, read-only, root-only. */
export const SYNC_SECRET_MOUNT_PATH = "/plex-migrate-sync";
export const SYNC_PRIVATE_KEY_KEY = "id_ed25519";
export const SYNC_KNOWN_HOSTS_KEY = "known_hosts";
/** Where the ConfigMap holding plex-init.sh is mounted. */
export const SYNC_SCRIPT_MOUNT_PATH = "/plex-migrate-script";
export const SYNC_SCRIPT_KEY = "plex-init.sh";
/** Pod volume names (the config volume's is the chart's own, `pms-config`). */
export const SYNC_VOLUMES = {
  config: "pms-config",
  secret: "plex-migrate-sync",
  script: "plex-migrate-script",
} as const;

/** Files plex-init.sh keeps on the config volume (relative to /config). */
export const INIT_STATE_DIR = ".plex-migrate";
export const INIT_MARKER = `${INIT_STATE_DIR}/import-complete`;
export const INIT_LOG = `${INIT_STATE_DIR}/sync.log`;
export const INIT_STAGING = `${INIT_STATE_DIR}/staging`;
export const INIT_WARM_DONE = `${INIT_STATE_DIR}/warm-complete`;
/** Where plex-init.sh puts the Plex data dir in the volume (its PLEX_DATA_RELATIVE; the deb's layout). */
export const INIT_PLEX_DATA = "Library/Application Support/Plex Media Server";

/** plex-init.sh exit codes (see the script's header). */
export const INIT_EXIT_CODES = {
  ok: 0,
  settings: 2,
  tools: 3,
  space: 4,
  transfer: 5,
  verify: 6,
  hostKey: 7,
  foreignLibrary: 8,
  layout: 9,
  interrupted: 10,
  access: 11,
} as const;

export function loadInitScript(): string {
  return fs.readFileSync(INIT_SCRIPT_PATH, "utf8");
}

/** sha256 of the script text, put on pod templates so a changed script is a visible change. */
export function scriptDigest(script: string): string {
  return crypto.createHash("sha256").update(script).digest("hex");
}

/** One database as the VM's stop step measured it. */
export interface DatabaseChecksum {
  /** Relative to the Plex data directory. */
  path: string;
  sha256: string;
  bytes: number;
}

/** PLEX_SYNC_DATABASES: "<sha256> <bytes> <path>" per line (throws on a value it cannot carry). */
export function databaseLines(databases: DatabaseChecksum[]): string {
  return databases
    .map((db) => {
      if (!/^[0-9a-f]{64}$/.test(db.sha256)) {
        throw new Error(
          `database ${db.path}: sha256 "${db.sha256}" is not 64 lowercase hex digits`,
        );
      }
      if (!Number.isSafeInteger(db.bytes) || db.bytes < 0) {
        throw new Error(`database ${db.path}: ${String(db.bytes)} is not a byte count`);
      }
      if (
        !db.path ||
        /[\n\r\0]/.test(db.path) ||
        db.path.startsWith("/") ||
        db.path.split("/").includes("..")
      ) {
        throw new Error(
          `database path "${db.path}" must be relative to the data directory, on one line`,
        );
      }
      return `${db.sha256} ${db.bytes} ${db.path}`;
    })
    .join("\n");
}

/** The known_hosts file content for the pinned VM host key(s) (one "<type> <base64>" per line). */
export function knownHostsFor(hostKeys: string): string {
  const lines = hostKeys
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  if (lines.length === 0) {
    throw new Error(
      "no VM host key is pinned, so the sync could not tell the VM from an impostor. Fix: pulumi config set vmHostKey \"$(ssh-keyscan -t ed25519 <vmHost> | cut -d' ' -f2-)\"",
    );
  }
  return lines
    .map((line) => {
      const match =
        /^(?:\S+\s+)?((?:ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-rsa)\s+[A-Za-z0-9+/]+=*)(?:\s.*)?$/.exec(
          line,
        );
      if (!match)
        throw new Error(`"${line}" is not an SSH host key line such as "ssh-ed25519 AAAA..."`);
      return `${SYNC_HOST_ALIAS} ${match[1].replace(/\s+/, " ")}\n`;
    })
    .join("");
}

export interface SyncConnection {
  /** Address of the VM as the cluster reaches it. */
  host: string;
  port: number;
  /** VM account the migration key is authorized for. */
  user: string;
}

interface SyncContainerCommon {
  /** Container name. */
  name: string;
  image: string;
  connection: SyncConnection;
  /** Owner of the copied files (the Plex container's PLEX_UID/PLEX_GID). */
  uid: number;
  gid: number;
  /** Top-level folders of the data directory not copied. */
  excludes: string[];
  /** What the copy needs on the volume, checked before copying (a 0 is not checked). */
  need: VolumeNeed;
  /** The stack's transferGeneration: a marker of an older one makes the pod copy again. @default 1 */
  generation?: number;
}

/** The preflight's measures as the pod checks them. */
export interface VolumeNeed {
  /** Bytes the library occupies on the VM (the container gets sizing.ts requiredConfigBytes of it). */
  libraryBytes: number;
  /** Inodes the copy needs: sizing.ts requiredConfigInodes of the preflight's file count. */
  inodes: number;
}

/** What a sync container copies with: the same for the warm-copy Job and the final phase. */
export type SyncCopySettings = Omit<SyncContainerCommon, "name">;

/** The copy settings out of a larger input (each field named, so nothing else slips in). */
export function syncCopySettings(input: SyncCopySettings): SyncCopySettings {
  return {
    image: input.image,
    connection: input.connection,
    uid: input.uid,
    gid: input.gid,
    excludes: input.excludes,
    need: input.need,
    generation: input.generation,
  };
}

/** The final phase also proves the copy against the stop step's checksums. */
export type SyncContainerInput =
  | (SyncContainerCommon & { phase: "warm" })
  | (SyncContainerCommon & { phase: "final"; databases: DatabaseChecksum[] });

const EXCLUDE = /^[^/\n\0]+$/;

/** Problems with a sync connection, one line each (empty: fine). */
export function syncConnectionProblems(connection: SyncConnection): string[] {
  const problems: string[] = [];
  if (!isHost(connection.host))
    problems.push(`"${connection.host}" is not a host name or IP address`);
  if (!Number.isInteger(connection.port) || connection.port < 1 || connection.port > 65535) {
    problems.push(`${connection.port} is not a TCP port`);
  }
  if (!isUnixUser(connection.user)) problems.push(`"${connection.user}" is not a user name`);
  return problems;
}

/** The container spec (Kubernetes core/v1 Container) for one phase. */
export function syncContainer(input: SyncContainerInput): k8s.types.input.core.v1.Container {
  const problems = syncConnectionProblems(input.connection);
  for (const name of input.excludes) {
    if (!EXCLUDE.test(name) || name === "." || name === "..") {
      problems.push(`exclude "${name}" must be a top-level folder name`);
    }
  }
  const generation = input.generation ?? 1;
  const generationComplaint = generationProblem(generation);
  if (generationComplaint) problems.push(`generation: ${generationComplaint}`);
  for (const [name, value] of Object.entries(input.need)) {
    if (!Number.isSafeInteger(value) || value < 0) {
      problems.push(`${name} ${String(value)} is not a count`);
    }
  }
  if (problems.length > 0) throw new Error(`sync container: ${problems.join("; ")}`);
  const env: Record<string, string> = {
    PLEX_SYNC_PHASE: input.phase,
    PLEX_CONFIG_DIR: "/config",
    PLEX_SYNC_HOST: input.connection.host,
    PLEX_SYNC_PORT: String(input.connection.port),
    PLEX_SYNC_USER: input.connection.user,
    PLEX_SYNC_KEY_FILE: `${SYNC_SECRET_MOUNT_PATH}/${SYNC_PRIVATE_KEY_KEY}`,
    PLEX_SYNC_KNOWN_HOSTS: `${SYNC_SECRET_MOUNT_PATH}/${SYNC_KNOWN_HOSTS_KEY}`,
    PLEX_UID: String(input.uid),
    PLEX_GID: String(input.gid),
  };
  // Absent means 1 to the script, so the first generation's specs carry no variable for it.
  if (generation !== 1) env.PLEX_SYNC_GENERATION = String(generation);
  if (input.excludes.length > 0) env.PLEX_SYNC_EXCLUDES = input.excludes.join("\n");
  env.PLEX_REQUIRED_BYTES = String(requiredConfigBytes(input.need.libraryBytes));
  env.PLEX_REQUIRED_INODES = String(input.need.inodes);
  if (input.phase === "final") env.PLEX_SYNC_DATABASES = databaseLines(input.databases);
  return {
    name: input.name,
    image: input.image,
    imagePullPolicy: "IfNotPresent",
    command: ["sh", `${SYNC_SCRIPT_MOUNT_PATH}/${SYNC_SCRIPT_KEY}`],
    env: Object.entries(env).map(([name, value]) => ({ name, value })),
    // Root: rsync sets the Plex owner (--chown) and reads nothing but its own mounts.
    securityContext: { runAsUser: 0, runAsGroup: 0, allowPrivilegeEscalation: false },
    volumeMounts: [
      { name: SYNC_VOLUMES.config, mountPath: "/config" },
      { name: SYNC_VOLUMES.secret, mountPath: SYNC_SECRET_MOUNT_PATH, readOnly: true },
      { name: SYNC_VOLUMES.script, mountPath: SYNC_SCRIPT_MOUNT_PATH, readOnly: true },
    ],
  };
}

/** The pod volumes of the sync Secret and the script ConfigMap (the config claim is the caller's). */
export function syncPodVolumes(names: {
  secretName: string;
  scriptConfigMapName: string;
}): k8s.types.input.core.v1.Volume[] {
  return [
    { name: SYNC_VOLUMES.secret, secret: { secretName: names.secretName, defaultMode: 0o400 } },
    {
      name: SYNC_VOLUMES.script,
      configMap: { name: names.scriptConfigMapName, defaultMode: 0o555 },
    },
  ];
}

/**
 * What the Plex chart's values need for the final phase: our init container (the chart's
 * `extraInitContainers`, so its environment and mounts are ours and the key is mounted in no
 * other container) and the two pod volumes (`extraVolumes`).
 */
export function plexSyncValues(
  input: SyncCopySettings & {
    containerName: string;
    databases: DatabaseChecksum[];
    secretName: string;
    scriptConfigMapName: string;
  },
): { extraInitContainers: Record<string, unknown>[]; extraVolumes: Record<string, unknown>[] } {
  // Chart values are plain data: the typed specs go in as records.
  const asValues = <T>(items: T[]) => items as unknown as Record<string, unknown>[];
  return {
    extraInitContainers: asValues([
      syncContainer({
        phase: "final",
        name: input.containerName,
        ...syncCopySettings(input),
        databases: input.databases,
      }),
    ]),
    extraVolumes: asValues(syncPodVolumes(input)),
  };
}
