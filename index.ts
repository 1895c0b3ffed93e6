/**
 * plex-migrate: one `pulumi up` moves Plex and Tautulli off an Ubuntu VM into Kubernetes.
 *
 * This file only reads the stack config and wires the components in data-flow order:
 *
 *   VM preflight -> stop Plex/Tautulli -> archive -> serve -> Plex Helm release (init container
 *   pulls the archive) -> stop serving;
 *   Postgres -> Tautulli role/database -> schema migrations -> import (after Tautulli stopped).
 *
 * Every decision lives in the components and the library modules they call.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { PlexRelease } from "./components/plex-release";
import { PlexVerification } from "./components/plex-verification";
import { PostgresInstance } from "./components/postgres-instance";
import { SchemaMigrations } from "./components/schema-migrations";
import { ArchiveSourceVm } from "./components/archive-source-vm";
import { SqliteImport } from "./components/sqlite-import";
import { TautulliDatabase } from "./components/tautulli-database";
import { loadConfig } from "./lib/config";

const config = loadConfig();

// One explicit provider, so the cluster a stack deploys to is part of its configuration.
const cluster = new k8s.Provider("cluster", { context: config.kubernetes.context });
const onCluster = { providers: { kubernetes: cluster } };

const sourceVm = new ArchiveSourceVm("source-vm", {
  connection: {
    host: config.vm.host,
    port: config.vm.port,
    user: config.vm.user,
    privateKey: config.vm.privateKey,
    hostKey: config.vm.hostKey,
  },
  sudo: config.vm.sudo,
  workDir: config.vm.workDir,
  plexDataDir: config.vm.plexDataDir,
  plexService: config.vm.plexService,
  tautulliService: config.vm.tautulliService,
  tautulliDbPath: config.vm.tautulliDbPath,
  archiveExcludes: config.vm.archiveExcludes,
  archiveCompression: config.vm.archiveCompression,
  serve: {
    address: config.vm.serveAddress,
    host: config.vm.serveHost,
    port: config.vm.servePort,
    lifetimeMinutes: config.vm.serveLifetimeMinutes,
    allowedCidrs: config.vm.serveAllowedCidrs,
  },
  keepArchive: config.vm.keepArchive,
  rollbackOnDestroy: config.vm.rollbackOnDestroy,
});

const plex = new PlexRelease(
  "plex",
  {
    namespace: config.kubernetes.namespace,
    createNamespace: config.kubernetes.createNamespace,
    releaseName: config.plex.releaseName,
    chartVersion: config.plex.chartVersion,
    chartRepo: config.plex.chartRepo,
    imageTagOverride: config.plex.imageTag,
    plexVersion: sourceVm.plexVersion,
    initImage: config.plex.initImage,
    storageClass: config.plex.storageClass,
    configSize: config.plex.configSize,
    configHeadroomPercent: config.plex.configHeadroomPercent,
    libraryBytes: sourceVm.libraryBytes,
    fileCount: sourceVm.fileCount,
    mediaVolumes: config.plex.mediaVolumes,
    vmMediaRoots: sourceVm.mediaRoots,
    uid: config.plex.uid,
    gid: config.plex.gid,
    timezone: config.plex.timezone,
    vmDataOwner: sourceVm.dataOwner,
    vmTimezone: sourceVm.timezone,
    vmPreferences: sourceVm.preferences,
    supplementalGroups: config.plex.supplementalGroups,
    clusterNetworks: config.plex.clusterNetworks,
    nodeSelector: config.plex.nodeSelector,
    gpu: config.plex.gpu,
    podSecurity: config.plex.podSecurity,
    claimToken: config.plex.claimToken,
    networking: config.plex.networking,
    advertiseUrls: config.plex.advertiseUrls,
    resources: config.plex.resources,
    archive: {
      url: sourceVm.archiveUrl,
      sha256: sourceVm.archiveSha256,
      bytes: sourceVm.archiveBytes,
      format: sourceVm.archiveFormat,
    },
    protectData: config.protectData,
  },
  // No component-level dependsOn: every child (the protected namespace and claim too) would
  // depend on it through its parent, and a protected resource's refused delete skips what it
  // depends on (pulumi/pulumi pkg/resource/graph/dependency_graph.go DependenciesOf counts the
  // parent; deployment_executor.go erroredDeps), the destroy hooks included. The archive's URL and
  // checksums come from the serve step's result, which orders the release after the server.
  onCluster,
);

// Once the release is ready, prove the move through the Plex pod's tunnel: the VM's server
// identity, every library's media readable, the advertised address answering.
const verification = new PlexVerification(
  "plex-verification",
  {
    kubernetes: {
      context: config.kubernetes.context,
      namespace: plex.namespace,
      podName: plex.chartNames.pod,
      container: plex.chartNames.pmsContainer,
    },
    plexToken: sourceVm.plexToken,
    machineIdentifier: sourceVm.machineIdentifier,
    plexVersion: plex.imageTag,
    mediaVolumes: config.plex.mediaVolumes,
    advertisedUrl: plex.advertisedUrl,
    releaseRevision: plex.release.status.revision,
  },
  { dependsOn: [plex.release] },
);

// In-cluster, the instance opens the tunnel through the Kubernetes API that every Postgres
// consumer below connects through (lib/postgres/tunnel.ts); the namespace comes from the Plex side.
const postgres = new PostgresInstance(
  "postgres",
  config.postgres.mode === "in-cluster"
    ? { ...config.postgres, namespace: plex.namespace }
    : config.postgres,
  onCluster,
);

const tautulliDatabase = new TautulliDatabase(
  "tautulli-db",
  {
    admin: postgres.admin,
    clusterHost: postgres.clusterHost,
    clusterPort: postgres.clusterPort,
    namespace: plex.namespace,
    databaseName: config.tautulli.database,
    roleName: config.tautulli.role,
    secretName: config.tautulli.secretName,
    protectData: config.protectData,
    serverInVolume: config.postgres.mode === "in-cluster",
  },
  { ...onCluster, dependsOn: [postgres] },
);

const schema = new SchemaMigrations(
  "tautulli-schema",
  { databaseUrl: tautulliDatabase.databaseUrl, reachedAt: postgres.reachedAt },
  { dependsOn: [tautulliDatabase] },
);

// The snapshot is taken on the VM after Tautulli stopped, so no play is lost or torn.
const tautulliImport = new SqliteImport(
  "tautulli-import",
  {
    databaseUrl: tautulliDatabase.databaseUrl,
    reachedAt: postgres.reachedAt,
    source: { url: sourceVm.tautulliSnapshotUrl, sha256: sourceVm.tautulliSnapshotSha256 },
    overwrite: config.tautulli.importOverwrite,
    schemaVersion: schema.schemaVersion,
    integrityCheck: config.tautulli.integrityCheck,
  },
  { dependsOn: [schema, sourceVm.servicesStopped] },
);

// The archive server holds Preferences.xml (the Plex token): stop it once both consumers are done.
sourceVm.stopServingAfter([plex.release, tautulliImport]);

export const plexUrl = plex.plexUrl;
export const advertisedUrl = plex.advertisedUrl;
export const plexConfigClaim = plex.configClaimName;
export const plexConfigSize = plex.configSize;
export const plexVersion = sourceVm.plexVersion;
export const plexImageTag = plex.imageTag;
export const archiveSha256 = sourceVm.archiveSha256;
export const postgresService = postgres.serviceName;
export const tautulliConnectionSecret = pulumi.interpolate`${plex.namespace}/${tautulliDatabase.secretName}`;
export const tautulliSchemaVersion = schema.schemaVersion;
export const importSummary = tautulliImport.summary;
export const plexVerification = verification.report;
