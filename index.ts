/**
 * plex-migrate: one `pulumi up` moves Plex and Tautulli off an Ubuntu VM into Kubernetes.
 *
 * This file only reads the stack config and wires the components in data-flow order:
 *
 *   VM preflight -> authorize-sync -> warm copy (a Job, Plex still serving) -> stop Plex/Tautulli
 *   -> Plex Helm release (its init container syncs the rest and verifies) -> verification;
 *   Postgres -> Tautulli role/database -> schema migrations -> import (the stop step's snapshot,
 *   over SSH) -> revoke-sync.
 *
 * Every decision lives in the components and the library modules they call.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { PlexConfigVolume } from "./components/plex-config-volume";
import { PlexRelease } from "./components/plex-release";
import { PlexVerification } from "./components/plex-verification";
import { PostgresInstance } from "./components/postgres-instance";
import { SchemaMigrations } from "./components/schema-migrations";
import { SourceVm } from "./components/source-vm";
import { SqliteImport } from "./components/sqlite-import";
import { TautulliDatabase } from "./components/tautulli-database";
import { loadConfig } from "./lib/config";
import { chartResourceNames } from "./lib/plex/chart";
import { resolvePlexIds } from "./lib/plex/vm-identity";

const config = loadConfig();

// One explicit provider, so the cluster a stack deploys to is part of its configuration.
const cluster = new k8s.Provider("cluster", { context: config.kubeContext });
const onCluster = { providers: { kubernetes: cluster } };

const sourceVm = new SourceVm("source-vm", config.sourceVm);

// Who owns the copied files: the ids Plex runs as, "auto" resolved from the VM's data owner.
const plexIds = sourceVm.dataOwner.apply((owner) =>
  resolvePlexIds(config.plexRelease.uid, config.plexRelease.gid, owner),
);

// The config volume and the warm copy: the library is copied while Plex still serves.
const configVolume = new PlexConfigVolume(
  "plex",
  {
    ...config.configVolume,
    libraryBytes: sourceVm.libraryBytes,
    fileCount: sourceVm.fileCount,
    uid: plexIds.uid,
    gid: plexIds.gid,
    syncPrivateKey: sourceVm.syncPrivateKey,
    warmCopyAfter: [sourceVm.syncAuthorized],
  },
  onCluster,
);

// Plex and Tautulli stop only once the warm copy is on the volume.
const stopped = sourceVm.stopAfter([configVolume.warmCopy]);

const plex = new PlexRelease(
  "plex",
  {
    ...config.plexRelease,
    namespace: configVolume.namespace,
    configClaimName: configVolume.configClaimName,
    sync: configVolume.finalSyncValues(
      stopped.plexDatabases,
      chartResourceNames(config.plexRelease.releaseName).initContainer,
    ),
    plexVersion: sourceVm.plexVersion,
    libraryBytes: sourceVm.libraryBytes,
    vmMediaRoots: sourceVm.mediaRoots,
    vmDataOwner: sourceVm.dataOwner,
    vmTimezone: sourceVm.timezone,
    vmPreferences: sourceVm.preferences,
  },
  // The final sync starts only after the stop. The protected namespace and claim are
  // PlexConfigVolume's, so depending on the destroy hooks protects nothing from them: on destroy
  // the hooks run after the release is gone (pulumi/pulumi pkg/resource/graph/dependency_graph.go
  // DependenciesOf counts the parent; deployment_executor.go erroredDeps).
  { ...onCluster, dependsOn: [stopped.stopped, ...sourceVm.destroyHooks] },
);

// Once the release is ready, prove the move through the Plex pod's tunnel: the VM's server
// identity, every library's media readable, the advertised address answering.
const verification = new PlexVerification(
  "plex-verification",
  {
    kubernetes: {
      context: config.kubeContext,
      namespace: plex.namespace,
      podName: plex.chartNames.pod,
      container: plex.chartNames.pmsContainer,
    },
    plexToken: sourceVm.plexToken,
    machineIdentifier: sourceVm.machineIdentifier,
    plexVersion: plex.imageTag,
    mediaVolumes: config.plexRelease.mediaVolumes,
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
    ...config.tautulliDatabase,
    namespace: plex.namespace,
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
    source: { ssh: sourceVm.sshConnection, snapshot: stopped.tautulliSnapshot },
    ...config.tautulliImport,
    schemaVersion: schema.schemaVersion,
  },
  { dependsOn: [schema, stopped.stopped] },
);

// The migration key may read the library (and the Plex token in it): revoke it once both
// consumers are done.
sourceVm.revokeSyncAfter([plex.release, tautulliImport]);

export const plexUrl = plex.plexUrl;
export const advertisedUrl = plex.advertisedUrl;
export const plexConfigClaim = plex.configClaimName;
export const plexConfigSize = configVolume.configSize;
export const plexVersion = sourceVm.plexVersion;
export const plexImageTag = plex.imageTag;
export const postgresService = postgres.serviceName;
export const tautulliConnectionSecret = pulumi.interpolate`${plex.namespace}/${tautulliDatabase.secretName}`;
export const tautulliSchemaVersion = schema.schemaVersion;
export const importSummary = tautulliImport.summary;
export const plexVerification = verification.report;
