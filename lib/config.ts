/**
 * Stack configuration: the one place that reads `pulumi.Config`, applies the defaults declared in
 * Pulumi.yaml and validates every value. `index.ts` calls {@link loadConfig} and hands the typed
 * result to the components; nothing else reads config.
 *
 * Every problem is reported at once, each line naming the key, what was expected and how to fix it,
 * so `pulumi preview` fails before anything is touched. Secret values never appear in messages.
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as YAML from "yaml";
import type { PlexSyncSettings } from "../components/plex-config-volume";
import { hostKeyProblem, normalizeHostKey } from "./source-vm/host-key";
import type { MigrationGenerations } from "./source-vm/phases";
import type { ExternalPostgresArgs, InClusterPostgresArgs } from "../components/postgres-instance";
import { tunnelPortFor } from "./postgres/tunnel";
import {
  absolutePath,
  chartRepo,
  dnsLabel,
  exactVersion,
  helmReleaseName,
  host,
  hostName,
  imageRef,
  imageTag,
  isHost,
  objectName,
  pgIdentifier,
  pgRoleName,
  quantity,
  systemdUnit,
  unixUser,
} from "./checks";
import { isCidr, isIpAddress } from "./net";
import { overlappingMediaVolumes, parseMediaVolume, type MediaVolume } from "./plex/media-volumes";
import {
  GPU_MODES,
  parseNodeSelectorEntry,
  type GpuMode,
  type PodSecuritySetting,
} from "./plex/placement";
import {
  isTimezoneName,
  type GroupsSetting,
  type IdSetting,
  type TimezoneSetting,
} from "./plex/vm-identity";
import {
  NETWORKING_MODES,
  advertiseUrlProblem,
  type NetworkingMode,
  type PlexNetworking,
} from "./plex/networking";

export const PROJECT = "plex-migrate";

export type ArchiveCompression = "auto" | "zstd" | "pigz" | "gzip" | "none";
export type ServiceType = "ClusterIP" | "NodePort" | "LoadBalancer";
export type SslMode = "disable" | "require" | "verify-full";

export interface SourceVmConfig {
  host: string;
  port: number;
  user: string;
  sudo: boolean;
  /** The VM's pinned ed25519 or ECDSA host key (lib/source-vm/host-key.ts). */
  hostKey: string;
  privateKey: pulumi.Output<string>;
  workDir: string;
  plexDataDir: string;
  plexService: string;
  tautulliService: string;
  tautulliDbPath: string;
  rollbackOnDestroy: boolean;
  /** Which run of the transfer and of the Tautulli import this is (lib/source-vm/phases.ts). */
  generations: MigrationGenerations;
  /** The VM is gone: nothing contacts it again. */
  retired: boolean;
}

export interface KubernetesConfig {
  /** kubeconfig context, or undefined for the current one. */
  context?: string;
  namespace: string;
  createNamespace: boolean;
}

export interface PlexConfig {
  releaseName: string;
  chartVersion: string;
  chartRepo: string;
  /** Explicit image tag override, or undefined to use the VM's Plex version. */
  imageTag?: string;
  storageClass?: string;
  /** "auto" or a Kubernetes quantity. */
  configSize: string;
  configHeadroomPercent: number;
  mediaVolumes: MediaVolume[];
  uid: IdSetting;
  gid: IdSetting;
  timezone: TimezoneSetting;
  supplementalGroups: GroupsSetting;
  clusterNetworks: string[];
  nodeSelector: Record<string, string>;
  gpu: GpuMode;
  podSecurity: PodSecuritySetting;
  claimToken?: pulumi.Output<string>;
  networking: PlexNetworking;
  advertiseUrls: string[];
  resources: { cpuRequest?: string; memoryRequest?: string; memoryLimit?: string };
}

/**
 * PostgresInstance's arguments as the stack configures them (the namespace comes from the Plex
 * side at wiring time).
 */
export type PostgresSettings = Omit<InClusterPostgresArgs, "namespace"> | ExternalPostgresArgs;

/** Keys that no longer exist, with what replaced them. */
/** The archive flow's keys: the library moves over rsync/SSH now, from a read-only forced command. */
const REMOVED_TRANSFER_KEYS: Record<string, string> = {
  archiveExcludes:
    "was removed: nothing is archived any more (the cluster pulls the library over rsync/SSH); the whole data directory is copied",
  archiveCompression:
    "was removed: nothing is archived any more (the cluster pulls the library over rsync/SSH)",
  serveAddress:
    "was removed: no archive server runs on the VM any more; the cluster connects to its SSH server (syncHost, syncPort)",
  serveHost:
    "was removed: set syncHost, the address at which the cluster reaches the VM's SSH server",
  servePort: "was removed: set syncPort, the VM's SSH port as the cluster reaches it",
  serveLifetimeMinutes:
    "was removed: no archive server runs any more; the migration key is revoked once the move is done",
  serveAllowedCidrs:
    "was removed: set syncAllowedCidrs, the networks the migration key may connect from",
  keepArchive:
    "was removed: no archive is made any more (the library moves over rsync/SSH; the Tautulli snapshot stays in vmWorkDir/snapshot on the VM)",
};

const REMOVED_POSTGRES_KEYS: Record<string, string> = {
  postgresServiceType:
    "was removed: the in-cluster Service is ClusterIP and pulumi up reaches the server through the Kubernetes API (nothing is exposed)",
};

export interface TautulliConfig {
  database: string;
  role: string;
  secretName: string;
  importOverwrite: boolean;
  integrityCheck: "full" | "quick";
}

export interface MigrationConfig {
  vm: SourceVmConfig;
  kubernetes: KubernetesConfig;
  plex: PlexConfig;
  /** How the cluster pulls the Plex library from the VM (PlexConfigVolume's `sync`). */
  sync: PlexSyncSettings;
  /** Networks the migration key may connect from (SourceVm's `syncAllowedCidrs`). */
  syncAllowedCidrs: string[];
  postgres: PostgresSettings;
  tautulli: TautulliConfig;
  protectData: boolean;
}

/** Thrown when the stack config is invalid; its message lists every problem, one per line. */
export class ConfigError extends pulumi.RunError {
  constructor(public readonly problems: string[]) {
    super(
      `Invalid stack configuration (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` +
        problems.map((p) => `  - ${p}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

/**
 * Whether the stack stored `fullKey` encrypted: the CLI hands the language host the list of secret
 * keys (PULUMI_CONFIG_SECRET_KEYS), which @pulumi/pulumi's runtime/config.js reads in
 * isConfigSecret (exported by the module, not by its typings).
 */
function isConfigSecret(fullKey: string): boolean {
  const runtimeConfig = require("@pulumi/pulumi/runtime/config") as {
    isConfigSecret(key: string): boolean;
  };
  return runtimeConfig.isConfigSecret(fullKey);
}

interface Declaration {
  type: "string" | "integer" | "boolean" | "array";
  default?: unknown;
  secret?: boolean;
  description?: string;
}

/** The `config:` declarations of Pulumi.yaml: the single source of types and defaults. */
export function projectConfigDeclarations(
  projectFile = path.join(__dirname, "..", "Pulumi.yaml"),
): Record<string, Declaration> {
  const project = YAML.parse(fs.readFileSync(projectFile, "utf8")) as {
    config?: Record<string, Declaration>;
  };
  return project.config ?? {};
}

export const ALLOWED_ARCHIVE_EXCLUDES = [
  "Cache",
  "Logs",
  "Crash Reports",
  "Updates",
  "Diagnostics",
];
/**
 * The networking mode with the fields it needs; a field the mode does not use is a problem too,
 * so a stack never silently ignores what it states.
 */
function plexNetworking(
  mode: NetworkingMode,
  address: string | undefined,
  ingressHost: string | undefined,
  ingressClass: string | undefined,
  ingressTls: string | undefined,
  problem: (key: string, complaint: string, fix?: string) => void,
): PlexNetworking {
  const unused = (key: string, value: string | undefined, usedBy: string) => {
    if (value !== undefined) {
      problem(
        key,
        `is only used when plexNetworking is ${usedBy}, but it is "${mode}"`,
        `pulumi config rm ${key}, or set plexNetworking ${usedBy}`,
      );
    }
  };
  if (mode !== "ingress") {
    unused("plexIngressHost", ingressHost, "ingress");
    unused("plexIngressClass", ingressClass, "ingress");
    unused("plexIngressTlsSecret", ingressTls, "ingress");
  }
  if (mode !== "host" && mode !== "loadBalancer")
    unused("plexAddress", address, "host or loadBalancer");
  switch (mode) {
    case "host":
    case "loadBalancer":
      if (!address) {
        problem(
          "plexAddress",
          `is required when plexNetworking is ${mode}: it is the address clients and the router's port-forward use` +
            (mode === "host"
              ? " (the LAN address of the node Plex runs on)"
              : " (the LoadBalancer's fixed IP)"),
          "pulumi config set plexAddress <IP>",
        );
      }
      return { mode, address: address ?? "" };
    case "ingress":
      if (!ingressHost) {
        problem(
          "plexIngressHost",
          "is required when plexNetworking is ingress",
          "pulumi config set plexIngressHost plex.example.com",
        );
      }
      return { mode, host: ingressHost ?? "", className: ingressClass, tlsSecret: ingressTls };
    case "internal":
      return { mode };
  }
}

/**
 * Reads and validates the whole stack configuration.
 * @throws ConfigError listing every invalid or missing key.
 */
export function loadConfig(config: pulumi.Config = new pulumi.Config(PROJECT)): MigrationConfig {
  const declarations = projectConfigDeclarations();
  const problems: string[] = [];
  const used = new Set<string>();

  const problem = (key: string, text: string, fix?: string) =>
    problems.push(`${PROJECT}:${key}: ${text}${fix ? `. Fix: ${fix}` : ""}`);

  function declaration(key: string): Declaration {
    const decl = declarations[key];
    if (!decl)
      throw new Error(`config key ${key} is read by lib/config.ts but not declared in Pulumi.yaml`);
    used.add(key);
    return decl;
  }

  function str(key: string, check?: (v: string) => string | undefined): string {
    const decl = declaration(key);
    const value = config.get(key) ?? (decl.default as string | undefined);
    if (value === undefined) {
      problem(key, "is required but not set", `pulumi config set ${key} <value>`);
      return "";
    }
    const complaint = check?.(value);
    if (complaint) problem(key, complaint);
    return value;
  }

  function optionalStr(key: string, check?: (v: string) => string | undefined): string | undefined {
    const value = str(key, (v) => (v === "" ? undefined : check?.(v)));
    return value === "" ? undefined : value;
  }

  function oneOf<T extends string>(key: string, allowed: readonly T[]): T {
    return str(key, (v) =>
      allowed.includes(v as T)
        ? undefined
        : `expected one of ${allowed.map((a) => `"${a}"`).join(", ")}, got "${v}"`,
    ) as T;
  }

  function int(key: string, min: number, max: number): number {
    const decl = declaration(key);
    const text = config.get(key);
    const value = text === undefined ? (decl.default as number) : Number(text);
    if (!Number.isInteger(value) || value < min || value > max) {
      problem(key, `expected an integer from ${min} to ${max}, got "${text}"`);
      return Number(decl.default ?? min);
    }
    return value;
  }

  /** "auto" or a numeric uid/gid. */
  function idSetting(key: string): IdSetting {
    const value = str(key, (v) =>
      v === "auto" || (/^\d{1,10}$/.test(v) && Number(v) <= 2147483647)
        ? undefined
        : `expected auto or a numeric id such as 999, got "${v}"`,
    );
    return value === "auto" || !/^\d+$/.test(value) ? "auto" : Number(value);
  }

  /** "auto", "" (none) or comma-separated gids. */
  function groupsSetting(key: string): GroupsSetting {
    const value = str(key, (v) =>
      v === "auto" || v === "" || /^\d{1,10}(,\d{1,10})*$/.test(v.replace(/\s+/g, ""))
        ? undefined
        : `expected auto, "" or gids such as "44,1001", got "${v}"`,
    );
    if (value === "auto") return "auto";
    return value
      .split(",")
      .map((g) => g.trim())
      .filter(Boolean)
      .map(Number)
      .filter(Number.isInteger);
  }

  function bool(key: string): boolean {
    const decl = declaration(key);
    const text = config.get(key);
    if (text === undefined) return Boolean(decl.default);
    if (text === "true" || text === "false") return text === "true";
    problem(key, `expected true or false, got "${text}"`);
    return Boolean(decl.default);
  }

  function list(key: string, check: (item: string) => string | undefined): string[] {
    const decl = declaration(key);
    const text = config.get(key);
    let value: unknown = decl.default ?? [];
    if (text !== undefined) {
      try {
        value = JSON.parse(text);
      } catch {
        value = undefined;
      }
    }
    if (!Array.isArray(value) || value.some((item) => typeof item !== "string")) {
      problem(key, "expected a list of strings", `pulumi config set --path '${key}[0]' <value>`);
      return [];
    }
    for (const item of value as string[]) {
      const complaint = check(item);
      if (complaint) problem(key, complaint);
    }
    return value as string[];
  }

  /**
   * A required secret: declared `secret: true` without a default in Pulumi.yaml, so the CLI itself
   * refuses a stack without it or with it in plain text (pkg/workspace/config.go, mergeConfig).
   */
  function requiredSecret(key: string): pulumi.Output<string> {
    const decl = declaration(key);
    if (!decl.secret || decl.default !== undefined) {
      throw new Error(`Pulumi.yaml: ${key} must be declared secret: true without a default`);
    }
    const value = config.getSecret(key);
    if (value === undefined) {
      problem(key, "is required but not set", `pulumi config set --secret ${key} <value>`);
      return pulumi.secret("");
    }
    return value;
  }

  /**
   * An optional secret: declared with default "" and without `secret: true`, since the CLI
   * rejects a secret key with a default (pulumi/pulumi#21865). So the program checks that a set
   * value was stored encrypted, and reads it with getSecret so it stays a secret.
   */
  function optionalSecret(key: string, required: boolean): pulumi.Output<string> | undefined {
    const decl = declaration(key);
    if (decl.secret || decl.default !== "") {
      throw new Error(`Pulumi.yaml: ${key} must be declared with default "" and no secret flag`);
    }
    const value = config.get(key);
    if (!value) {
      if (required) {
        problem(key, "is required but not set", `pulumi config set --secret ${key} <value>`);
      }
      return undefined;
    }
    if (!isConfigSecret(`${PROJECT}:${key}`)) {
      problem(
        key,
        "is stored in plain text in the stack file",
        `pulumi config set --secret ${key} <value> (and rotate it: it was readable)`,
      );
    }
    return config.getSecret(key);
  }

  // --- Source VM ---
  const vmHost = str("vmHost", host);
  const vm: SourceVmConfig = {
    host: vmHost,
    port: int("vmPort", 1, 65535),
    user: str("vmUser", unixUser),
    sudo: bool("vmSudo"),
    hostKey: normalizeHostKey(str("vmHostKey", (v) => hostKeyProblem(v, vmHost || "<vmHost>"))),
    privateKey: requiredSecret("sshPrivateKey"),
    workDir: str("vmWorkDir", absolutePath),
    plexDataDir: str("plexDataDir", absolutePath),
    plexService: str("plexService", systemdUnit),
    tautulliService: str("tautulliService", systemdUnit),
    tautulliDbPath: str("tautulliDbPath", absolutePath),
    rollbackOnDestroy: bool("rollbackOnDestroy"),
    generations: {
      transfer: int("transferGeneration", 1, 1_000_000),
      tautulliImport: int("tautulliImportGeneration", 1, 1_000_000),
    },
    retired: bool("vmRetired"),
  };
  if (vm.workDir === vm.plexDataDir || vm.workDir.startsWith(`${vm.plexDataDir}/`)) {
    problem("vmWorkDir", "must not be inside plexDataDir (the Plex source is never written to)");
  }

  // --- Kubernetes ---
  const kubernetes: KubernetesConfig = {
    context: optionalStr("kubeContext"),
    namespace: str("namespace", dnsLabel),
    createNamespace: bool("createNamespace"),
  };

  // --- Plex ---
  const mediaEntries = list("plexMediaVolumes", (v) => {
    const parsed = parseMediaVolume(v);
    return typeof parsed === "string" ? parsed : undefined;
  });
  const mediaVolumes = mediaEntries
    .map(parseMediaVolume)
    .filter((v): v is MediaVolume => typeof v !== "string");
  for (const [other, mountPath] of overlappingMediaVolumes(mediaVolumes)) {
    problem(
      "plexMediaVolumes",
      `mount paths "${other}" and "${mountPath}" overlap; give each media root once`,
    );
  }
  const networking = plexNetworking(
    oneOf("plexNetworking", NETWORKING_MODES),
    optionalStr("plexAddress", (v) =>
      isIpAddress(v)
        ? undefined
        : `expected the IP address clients reach Plex on, such as 192.168.1.20, got "${v}"`,
    ),
    optionalStr("plexIngressHost", hostName),
    optionalStr("plexIngressClass", dnsLabel),
    optionalStr("plexIngressTlsSecret", objectName("Secret")),
    problem,
  );
  if (config.get("plexServiceType") !== undefined) {
    problem(
      "plexServiceType",
      "is replaced by plexNetworking (host, loadBalancer, ingress or internal), which also sets the address Plex advertises",
      "pulumi config rm plexServiceType; pulumi config set plexNetworking loadBalancer; pulumi config set plexAddress <fixed IP>",
    );
  }
  const plex: PlexConfig = {
    releaseName: str("plexReleaseName", helmReleaseName),
    chartVersion: str("plexChartVersion", exactVersion),
    chartRepo: str("plexChartRepo", chartRepo),
    imageTag: optionalStr("plexImageTag", imageTag),
    storageClass: optionalStr("plexConfigStorageClass", objectName("StorageClass")),
    configSize: str("plexConfigSize", (v) => (v === "auto" ? undefined : quantity(v))),
    configHeadroomPercent: int("plexConfigHeadroomPercent", 0, 1000),
    mediaVolumes,
    uid: idSetting("plexUid"),
    gid: idSetting("plexGid"),
    timezone: str("plexTimezone", (v) =>
      v === "auto" || v === "" || isTimezoneName(v)
        ? undefined
        : `expected auto, "" or an IANA time zone such as Europe/Berlin, got "${v}"`,
    ),
    supplementalGroups: groupsSetting("plexSupplementalGroups"),
    clusterNetworks: list("plexClusterNetworks", (v) =>
      isCidr(v) ? undefined : `"${v}" is not a CIDR such as "10.42.0.0/16"`,
    ),
    nodeSelector: Object.fromEntries(
      list("plexNodeSelector", (v) => {
        const parsed = parseNodeSelectorEntry(v);
        return typeof parsed === "string" ? parsed : undefined;
      })
        .map(parseNodeSelectorEntry)
        .filter((e): e is [string, string] => typeof e !== "string"),
    ),
    gpu: oneOf("plexHardwareTranscoding", GPU_MODES),
    podSecurity: oneOf("plexPodSecurity", [
      "",
      "auto",
      "privileged",
      "baseline",
      "restricted",
    ] as const),
    claimToken: optionalSecret("plexClaimToken", false),
    networking,
    advertiseUrls: list("plexAdvertiseUrls", (v) => advertiseUrlProblem(v)),
    resources: {
      cpuRequest: optionalStr("plexCpuRequest", quantity),
      memoryRequest: optionalStr("plexMemoryRequest", quantity),
      memoryLimit: optionalStr("plexMemoryLimit", quantity),
    },
  };

  // --- PostgreSQL ---
  const protectData = bool("protectData");
  const mode = oneOf("postgresMode", ["in-cluster", "external"] as const);
  const endpointText = optionalStr("postgresEndpoint", (v) =>
    /^[^:\s]+:\d{1,5}$/.test(v) && isHost(v.split(":")[0]) && Number(v.split(":")[1]) <= 65535
      ? undefined
      : `expected host:port such as "db.lan:5432", got "${v}"`,
  );
  const postgresHost = optionalStr("postgresHost", host);
  const sslModeSetting = oneOf("postgresSslMode", [
    "auto",
    "disable",
    "require",
    "verify-full",
  ] as const);
  const version = str("postgresVersion", (v) =>
    /^\d+$/.test(v) && Number(v) >= 13 && Number(v) <= 18
      ? undefined
      : `expected a PostgreSQL major version from 13 to 18, got "${v}"`,
  );
  const storageSize = str("postgresStorageSize", quantity);
  const storageClass = optionalStr("postgresStorageClass", objectName("StorageClass"));
  const tunnelPortSetting = int("postgresTunnelPort", 0, 65535);
  const postgresPort = int("postgresPort", 1, 65535);
  const adminUser = str("postgresAdminUser", pgRoleName);
  const adminPassword = optionalSecret("postgresAdminPassword", mode === "external");
  for (const [key, text] of Object.entries({
    ...REMOVED_TRANSFER_KEYS,
    ...REMOVED_POSTGRES_KEYS,
  })) {
    if (config.get(key) !== undefined) problem(key, text, `pulumi config rm ${key}`);
  }
  const postgres: PostgresSettings =
    mode === "external"
      ? {
          mode,
          host: postgresHost ?? "",
          port: postgresPort,
          endpoint: endpointText
            ? { host: endpointText.split(":")[0], port: Number(endpointText.split(":")[1]) }
            : undefined,
          adminUser,
          adminPassword: adminPassword ?? pulumi.secret(""),
          sslMode: sslModeSetting === "auto" ? "require" : sslModeSetting,
        }
      : {
          mode,
          version,
          storageSize,
          storageClass,
          adminUser,
          adminPassword,
          protectData,
          tunnel: {
            context: kubernetes.context,
            localPort: tunnelPortSetting || tunnelPortFor(PROJECT, pulumi.getStack()),
          },
        };
  if (mode === "external" && !postgresHost) {
    problem(
      "postgresHost",
      'is required when postgresMode is "external"',
      "pulumi config set postgresHost <host>",
    );
  }
  if (mode === "in-cluster" && (sslModeSetting === "require" || sslModeSetting === "verify-full")) {
    problem(
      "postgresSslMode",
      `"${sslModeSetting}" needs a server with TLS; the in-cluster server (official postgres image) serves none`,
      "set postgresSslMode auto (or disable), or use postgresMode external with a TLS server",
    );
  }
  if (mode === "in-cluster" && postgresHost) {
    problem(
      "postgresHost",
      'is only used when postgresMode is "external"',
      "unset it or set postgresMode external",
    );
  }
  if (mode === "in-cluster" && endpointText) {
    problem(
      "postgresEndpoint",
      'is only used when postgresMode is "external": pulumi up reaches the in-cluster server through the Kubernetes API, by a tunnel the program opens',
      "pulumi config rm postgresEndpoint",
    );
  }
  if (tunnelPortSetting !== 0 && tunnelPortSetting < 1024) {
    problem(
      "postgresTunnelPort",
      `${tunnelPortSetting} is a privileged port`,
      "choose a port from 1024 to 65535, or 0 for the stack's derived port",
    );
  }

  // --- Tautulli ---
  const tautulli: TautulliConfig = {
    database: str("tautulliDatabase", pgIdentifier),
    role: str("tautulliRole", pgIdentifier),
    secretName: str("tautulliSecretName", objectName("Kubernetes Secret")),
    importOverwrite: bool("importOverwrite"),
    integrityCheck: oneOf("importIntegrityCheck", ["full", "quick"] as const),
  };
  if (tautulli.role === postgres.adminUser) {
    problem(
      "tautulliRole",
      `must differ from postgresAdminUser ("${postgres.adminUser}"): the app gets its own least-privilege role`,
    );
  }

  // --- Sync (the Plex library over rsync/SSH) ---
  const syncPort = int("syncPort", 0, 65535);
  const sync: PlexSyncSettings = {
    image: str("plexInitImage", imageRef),
    connection: {
      host: optionalStr("syncHost", host) ?? vm.host,
      port: syncPort === 0 ? vm.port : syncPort,
      user: vm.user,
    },
    hostKey: vm.hostKey,
    excludes: [],
    warmCopyTimeoutMinutes: int("warmCopyTimeoutMinutes", 10, 10080),
    transferGeneration: vm.generations.transfer,
  };
  const syncAllowedCidrs = list("syncAllowedCidrs", (v) =>
    isCidr(v) ? undefined : `"${v}" is not a CIDR such as "10.42.0.0/16"`,
  );

  for (const key of Object.keys(declarations)) {
    if (!used.has(key))
      throw new Error(`config key ${key} is declared in Pulumi.yaml but never read`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { vm, kubernetes, plex, sync, syncAllowedCidrs, postgres, tautulli, protectData };
}
