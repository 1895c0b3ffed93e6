/**
 * Stack configuration: the one place that reads `pulumi.Config`, applies the defaults declared in
 * Pulumi.yaml and validates every value. `index.ts` calls {@link loadConfig} and hands each
 * component its part, already in that component's argument type; nothing else reads config.
 *
 * Every problem is reported at once, each line naming the key, what was expected and how to fix it,
 * so `pulumi preview` fails before anything is touched. Secret values never appear in messages.
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as YAML from "yaml";
import type { PlexConfigVolumeArgs, PlexSyncSettings } from "../components/plex-config-volume";
import type { PlexReleaseArgs } from "../components/plex-release";
import type { ExternalPostgresArgs, InClusterPostgresArgs } from "../components/postgres-instance";
import type { SourceVmArgs } from "../components/source-vm";
import type { SqliteImportArgs } from "../components/sqlite-import";
import type { TautulliDatabaseArgs } from "../components/tautulli-database";
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
  workDirInPlexData,
  type Check,
} from "./checks";
import { ConfigReader, type Declaration } from "./config-reader";
import { isCidr, isIpAddress } from "./net";
import { plexHostUse } from "./plex/helm-values";
import { overlappingMediaVolumes, parseMediaVolume } from "./plex/media-volumes";
import {
  NETWORKING_MODES,
  advertiseUrlProblem,
  type NetworkingMode,
  type PlexNetworking,
} from "./plex/networking";
import { GPU_MODES, parseNodeSelectorEntry, podSecurityLabels } from "./plex/placement";
import { isId, isTimezoneName, type GroupsSetting, type IdSetting } from "./plex/vm-identity";
import { tunnelPortFor } from "./postgres/tunnel";
import { hostKeyProblem, normalizeHostKey } from "./source-vm/host-key";
import { MAX_GENERATION } from "./source-vm/phases";

export const PROJECT = "plex-migrate";

/** PlexConfigVolume's arguments, less what the VM measures (sizes, owner) and the migration key. */
export type ConfigVolumeSettings = Omit<
  PlexConfigVolumeArgs,
  "libraryBytes" | "fileCount" | "uid" | "gid" | "syncPrivateKey" | "warmCopyAfter"
>;

/** PlexRelease's arguments, less what the config volume and the VM's preflight provide. */
export type PlexReleaseSettings = Omit<
  PlexReleaseArgs,
  | "namespace"
  | "configClaimName"
  | "sync"
  | "plexVersion"
  | "libraryBytes"
  | "vmMediaRoots"
  | "vmDataOwner"
  | "vmTimezone"
  | "vmPreferences"
>;

/** PostgresInstance's arguments (the namespace comes from the Plex side at wiring time). */
export type PostgresSettings = Omit<InClusterPostgresArgs, "namespace"> | ExternalPostgresArgs;

/** TautulliDatabase's arguments, less the server PostgresInstance provides. */
export type TautulliDatabaseSettings = Omit<
  TautulliDatabaseArgs,
  "admin" | "clusterHost" | "clusterPort" | "namespace"
>;

/** SqliteImport's arguments, less the database, the snapshot and the schema version. */
export type TautulliImportSettings = Pick<SqliteImportArgs, "overwrite" | "integrityCheck">;

/** The stack's settings, each component's part in that component's own argument type. */
export interface StackConfig {
  /** kubeconfig context of the cluster, or undefined for the current one. */
  kubeContext?: string;
  sourceVm: SourceVmArgs;
  configVolume: ConfigVolumeSettings;
  plexRelease: PlexReleaseSettings;
  postgres: PostgresSettings;
  tautulliDatabase: TautulliDatabaseSettings;
  tautulliImport: TautulliImportSettings;
}

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

/** The `config:` declarations of Pulumi.yaml: the single source of types and defaults. */
export function projectConfigDeclarations(
  projectFile = path.join(__dirname, "..", "Pulumi.yaml"),
): Record<string, Declaration> {
  const project = YAML.parse(fs.readFileSync(projectFile, "utf8")) as {
    config?: Record<string, Declaration>;
  };
  return project.config ?? {};
}

function networkingFor(
  mode: NetworkingMode,
  address: string | undefined,
  ingressHost: string | undefined,
  ingressClass: string | undefined,
  ingressTls: string | undefined,
  r: ConfigReader,
): PlexNetworking {
  const unused = (key: string, value: string | undefined, usedBy: string) => {
    if (value !== undefined) {
      r.problem(
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
        r.problem(
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
        r.problem(
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

const cidr: Check = (v) => (isCidr(v) ? undefined : `"${v}" is not a CIDR such as "10.42.0.0/16"`);

/** "auto" or a numeric uid/gid. */
function readId(r: ConfigReader, key: string): IdSetting {
  const value = r.str(key, (v) =>
    v === "auto" || (/^\d{1,10}$/.test(v) && isId(Number(v)))
      ? undefined
      : `expected auto or a numeric id such as 999, got "${v}"`,
  );
  return value === "auto" || !/^\d+$/.test(value) ? "auto" : Number(value);
}

/** "auto", "" (none) or comma-separated gids. */
function readGroups(r: ConfigReader, key: string): GroupsSetting {
  const value = r.str(key, (v) =>
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

/** The stack moves Tautulli's history too, so its unit must be named (the VM script alone allows ""). */
const tautulliUnit = (v: string): string | undefined =>
  v === ""
    ? "is empty, but pulumi up imports Tautulli's history and needs its unit to stop it first; " +
      "a VM without Tautulli is not supported: set the unit Tautulli runs as (e.g. tautulli)"
    : systemdUnit(v);

/** The VM, how to reach it, and what the migration does there. */
function readSourceVm(r: ConfigReader): SourceVmArgs {
  const vmHost = r.str("vmHost", host);
  const sourceVm: SourceVmArgs = {
    connection: {
      host: vmHost,
      port: r.int("vmPort", 1, 65535),
      user: r.str("vmUser", unixUser),
      privateKey: r.requiredSecret("sshPrivateKey"),
      hostKey: normalizeHostKey(r.str("vmHostKey", (v) => hostKeyProblem(v, vmHost || "<vmHost>"))),
    },
    sudo: r.bool("vmSudo"),
    workDir: r.str("vmWorkDir", absolutePath),
    plexDataDir: r.str("plexDataDir", absolutePath),
    plexService: r.str("plexService", systemdUnit),
    tautulliService: r.str("tautulliService", tautulliUnit),
    tautulliDbPath: r.str("tautulliDbPath", absolutePath),
    syncAllowedCidrs: r.list("syncAllowedCidrs", cidr),
    rollbackOnDestroy: r.bool("rollbackOnDestroy"),
    generations: {
      transfer: r.int("transferGeneration", 1, MAX_GENERATION),
      tautulliImport: r.int("tautulliImportGeneration", 1, MAX_GENERATION),
    },
    retired: r.bool("vmRetired"),
  };
  if (workDirInPlexData(sourceVm.workDir, sourceVm.plexDataDir)) {
    r.problem("vmWorkDir", "must not be inside plexDataDir (the Plex source is never written to)");
  }
  return sourceVm;
}

function readNetworking(r: ConfigReader): PlexNetworking {
  const networking = networkingFor(
    r.oneOf("plexNetworking", NETWORKING_MODES),
    r.optionalStr("plexAddress", (v) =>
      isIpAddress(v)
        ? undefined
        : `expected the IP address clients reach Plex on, such as 192.168.1.20, got "${v}"`,
    ),
    r.optionalStr("plexIngressHost", hostName),
    r.optionalStr("plexIngressClass", dnsLabel),
    r.optionalStr("plexIngressTlsSecret", objectName("Secret")),
    r,
  );
  if (r.isSet("plexServiceType")) {
    r.problem(
      "plexServiceType",
      "is replaced by plexNetworking (host, loadBalancer, ingress or internal), which also sets the address Plex advertises",
      "pulumi config rm plexServiceType; pulumi config set plexNetworking loadBalancer; pulumi config set plexAddress <fixed IP>",
    );
  }
  return networking;
}

/** The Plex release: chart, image, media, identity, placement, networking. */
function readPlexRelease(r: ConfigReader): PlexReleaseSettings {
  const mediaVolumes = r.parsedList("plexMediaVolumes", parseMediaVolume);
  for (const [other, mountPath] of overlappingMediaVolumes(mediaVolumes)) {
    r.problem(
      "plexMediaVolumes",
      `mount paths "${other}" and "${mountPath}" overlap; give each media root once`,
    );
  }
  const networking = readNetworking(r);
  return {
    releaseName: r.str("plexReleaseName", helmReleaseName),
    chartVersion: r.str("plexChartVersion", exactVersion),
    chartRepo: r.str("plexChartRepo", chartRepo),
    imageTagOverride: r.optionalStr("plexImageTag", imageTag),
    mediaVolumes,
    uid: readId(r, "plexUid"),
    gid: readId(r, "plexGid"),
    timezone: r.str("plexTimezone", (v) =>
      v === "auto" || v === "" || isTimezoneName(v)
        ? undefined
        : `expected auto, "" or an IANA time zone such as Europe/Berlin, got "${v}"`,
    ),
    supplementalGroups: readGroups(r, "plexSupplementalGroups"),
    clusterNetworks: r.list("plexClusterNetworks", cidr),
    nodeSelector: Object.fromEntries(r.parsedList("plexNodeSelector", parseNodeSelectorEntry)),
    gpu: r.oneOf("plexHardwareTranscoding", GPU_MODES),
    podSecurity: r.oneOf("plexPodSecurity", [
      "",
      "auto",
      "privileged",
      "baseline",
      "restricted",
    ] as const),
    claimToken: r.optionalSecret("plexClaimToken", false),
    networking,
    advertiseUrls: r.list("plexAdvertiseUrls", (v) => advertiseUrlProblem(v)),
    resources: {
      cpuRequest: r.optionalStr("plexCpuRequest", quantity),
      memoryRequest: r.optionalStr("plexMemoryRequest", quantity),
      memoryLimit: r.optionalStr("plexMemoryLimit", quantity),
    },
  };
}

/** How the cluster pulls the library from the VM: over the VM's SSH unless told otherwise. */
function readSync(r: ConfigReader, sourceVm: SourceVmArgs): PlexSyncSettings {
  const vm = sourceVm.connection;
  const syncPort = r.int("syncPort", 0, 65535);
  return {
    image: r.str("plexInitImage", imageRef),
    connection: {
      host: r.optionalStr("syncHost", host) ?? vm.host,
      port: syncPort === 0 ? vm.port : syncPort,
      user: vm.user,
    },
    hostKey: vm.hostKey,
    excludes: [],
    warmCopyTimeoutMinutes: r.int("warmCopyTimeoutMinutes", 10, 10080),
    // The pod's copy records the same generation in the volume's marker.
    transferGeneration: sourceVm.generations.transfer,
  };
}

/** The namespace and the config volume the warm copy fills (its labels come once all is valid). */
function readConfigVolume(
  r: ConfigReader,
  plex: PlexReleaseSettings,
  sync: PlexSyncSettings,
  protectData: boolean,
): Omit<ConfigVolumeSettings, "namespaceLabels"> {
  return {
    namespace: r.str("namespace", dnsLabel),
    createNamespace: r.bool("createNamespace"),
    releaseName: plex.releaseName,
    storageClass: r.optionalStr("plexConfigStorageClass", objectName("StorageClass")),
    configSize: r.str("plexConfigSize", (v) => (v === "auto" ? undefined : quantity(v))),
    configHeadroomPercent: r.int("plexConfigHeadroomPercent", 0, 1000),
    sync,
    nodeSelector: plex.nodeSelector,
    protectData,
  };
}

/** The PostgreSQL server: in the cluster (reached through a tunnel) or an external one. */
function readPostgres(
  r: ConfigReader,
  kubeContext: string | undefined,
  protectData: boolean,
): PostgresSettings {
  const mode = r.oneOf("postgresMode", ["in-cluster", "external"] as const);
  const endpointText = r.optionalStr("postgresEndpoint", (v) =>
    /^[^:\s]+:\d{1,5}$/.test(v) && isHost(v.split(":")[0]) && Number(v.split(":")[1]) <= 65535
      ? undefined
      : `expected host:port such as "db.lan:5432", got "${v}"`,
  );
  const postgresHost = r.optionalStr("postgresHost", host);
  const sslModeSetting = r.oneOf("postgresSslMode", [
    "auto",
    "disable",
    "require",
    "verify-full",
  ] as const);
  const version = r.str("postgresVersion", (v) =>
    /^\d+$/.test(v) && Number(v) >= 13 && Number(v) <= 18
      ? undefined
      : `expected a PostgreSQL major version from 13 to 18, got "${v}"`,
  );
  const storageSize = r.str("postgresStorageSize", quantity);
  const storageClass = r.optionalStr("postgresStorageClass", objectName("StorageClass"));
  const tunnelPortSetting = r.int("postgresTunnelPort", 0, 65535);
  const postgresPort = r.int("postgresPort", 1, 65535);
  const adminUser = r.str("postgresAdminUser", pgRoleName);
  const adminPassword = r.optionalSecret("postgresAdminPassword", mode === "external");
  refuseRemovedKeys(r);
  checkPostgresMode(r, { mode, postgresHost, endpointText, sslModeSetting, tunnelPortSetting });
  if (mode === "external") {
    return {
      mode,
      host: postgresHost ?? "",
      port: postgresPort,
      endpoint: endpointText
        ? { host: endpointText.split(":")[0], port: Number(endpointText.split(":")[1]) }
        : undefined,
      adminUser,
      adminPassword: adminPassword ?? pulumi.secret(""),
      sslMode: sslModeSetting === "auto" ? "require" : sslModeSetting,
    };
  }
  return {
    mode,
    version,
    storageSize,
    storageClass,
    adminUser,
    adminPassword,
    protectData,
    tunnel: {
      context: kubeContext,
      localPort: tunnelPortSetting || tunnelPortFor(PROJECT, pulumi.getStack()),
    },
  };
}

/** The settings a PostgreSQL mode does not use, or cannot work with, are problems. */
function checkPostgresMode(
  r: ConfigReader,
  settings: {
    mode: "in-cluster" | "external";
    postgresHost?: string;
    endpointText?: string;
    sslModeSetting: string;
    tunnelPortSetting: number;
  },
): void {
  const { mode, postgresHost, endpointText, sslModeSetting, tunnelPortSetting } = settings;
  if (mode === "external" && !postgresHost) {
    r.problem(
      "postgresHost",
      'is required when postgresMode is "external"',
      "pulumi config set postgresHost <host>",
    );
  }
  if (mode === "in-cluster" && (sslModeSetting === "require" || sslModeSetting === "verify-full")) {
    r.problem(
      "postgresSslMode",
      `"${sslModeSetting}" needs a server with TLS; the in-cluster server (official postgres image) serves none`,
      "set postgresSslMode auto (or disable), or use postgresMode external with a TLS server",
    );
  }
  if (mode === "in-cluster" && postgresHost) {
    r.problem(
      "postgresHost",
      'is only used when postgresMode is "external"',
      "unset it or set postgresMode external",
    );
  }
  if (mode === "in-cluster" && endpointText) {
    r.problem(
      "postgresEndpoint",
      'is only used when postgresMode is "external": pulumi up reaches the in-cluster server through the Kubernetes API, by a tunnel the program opens',
      "pulumi config rm postgresEndpoint",
    );
  }
  if (tunnelPortSetting !== 0 && tunnelPortSetting < 1024) {
    r.problem(
      "postgresTunnelPort",
      `${tunnelPortSetting} is a privileged port`,
      "choose a port from 1024 to 65535, or 0 for the stack's derived port",
    );
  }
}

function refuseRemovedKeys(r: ConfigReader): void {
  for (const [key, text] of Object.entries({
    ...REMOVED_TRANSFER_KEYS,
    ...REMOVED_POSTGRES_KEYS,
  })) {
    if (r.isSet(key)) r.problem(key, text, `pulumi config rm ${key}`);
  }
}

/** Tautulli's role, database and Secret, and how its data is imported. */
function readTautulli(
  r: ConfigReader,
  postgres: PostgresSettings,
  protectData: boolean,
): { database: TautulliDatabaseSettings; import: TautulliImportSettings } {
  const database: TautulliDatabaseSettings = {
    databaseName: r.str("tautulliDatabase", pgIdentifier),
    roleName: r.str("tautulliRole", pgIdentifier),
    secretName: r.str("tautulliSecretName", objectName("Kubernetes Secret")),
    protectData,
    serverInVolume: postgres.mode === "in-cluster",
  };
  if (database.roleName === postgres.adminUser) {
    r.problem(
      "tautulliRole",
      `must differ from postgresAdminUser ("${postgres.adminUser}"): the app gets its own least-privilege role`,
    );
  }
  return {
    database,
    import: {
      overwrite: r.bool("importOverwrite"),
      integrityCheck: r.oneOf("importIntegrityCheck", ["full", "quick"] as const),
    },
  };
}

/**
 * Reads and validates the whole stack configuration.
 * @throws ConfigError listing every invalid or missing key.
 */
export function loadConfig(config: pulumi.Config = new pulumi.Config(PROJECT)): StackConfig {
  const r = new ConfigReader(PROJECT, config, projectConfigDeclarations());
  const sourceVm = readSourceVm(r);
  const kubeContext = r.optionalStr("kubeContext");
  const protectData = r.bool("protectData");
  const plexRelease = readPlexRelease(r);
  const configVolume = readConfigVolume(r, plexRelease, readSync(r, sourceVm), protectData);
  const postgres = readPostgres(r, kubeContext, protectData);
  const tautulli = readTautulli(r, postgres, protectData);
  r.assertEveryKeyRead();
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return {
    kubeContext,
    sourceVm,
    configVolume: {
      ...configVolume,
      // The Pod Security level the Plex pod needs, from the settings that decide it.
      namespaceLabels: podSecurityLabels(
        plexRelease.podSecurity,
        plexHostUse(plexRelease.networking, plexRelease.mediaVolumes, plexRelease.gpu),
      ),
    },
    plexRelease,
    postgres,
    tautulliDatabase: tautulli.database,
    tautulliImport: tautulli.import,
  };
}
