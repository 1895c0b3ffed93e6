/**
 * Facts about the plex-media-server chart (1.5.0, copied in reference/pms-chart/) that the
 * release depends on: how the chart names what it creates, mirrored from `_helpers.tpl`, so the
 * README, the outputs and the kubectl hints name the real objects.
 */
import * as path from "path";

/** Chart name in Plex's repository (`helm repo add plex …; plex/plex-media-server`). */
export const CHART_NAME = "plex-media-server";

/** The chart's files as copied into the repository (values.yaml, templates/). */
export const CHART_REFERENCE_DIR = path.join(__dirname, "..", "..", "reference", "pms-chart");

/** Port the PMS container listens on and the Service/Ingress target (fixed in the chart). */
export const PMS_PORT = 32400;

/** Mount paths the chart itself uses in the pod (config volume, transcode, init script). */
export const CHART_MOUNT_PATHS = ["/config", "/transcode", "/init"] as const;

export interface ChartNameOverrides {
  nameOverride?: string;
  fullnameOverride?: string;
}

function trimName(name: string): string {
  return name.slice(0, 63).replace(/-+$/, "");
}

/**
 * The chart's `pms-chart.fullname`: `fullnameOverride`, else the release name when it contains the
 * chart name (or `nameOverride`), else `<release>-plex-media-server`; at most 63 characters.
 */
export function chartFullname(releaseName: string, overrides: ChartNameOverrides = {}): string {
  if (overrides.fullnameOverride) return trimName(overrides.fullnameOverride);
  const name = overrides.nameOverride || CHART_NAME;
  return releaseName.includes(name) ? trimName(releaseName) : trimName(`${releaseName}-${name}`);
}

/** Names of what the chart creates for a release (all in the release's namespace). */
export interface ChartResourceNames {
  /** `pms-chart.fullname`; also the Service, ServiceAccount and HTTPRoute name. */
  fullname: string;
  statefulSet: string;
  /** The single replica of the StatefulSet. */
  pod: string;
  /** The Plex Media Server container. */
  pmsContainer: string;
  /** The init container that runs `initContainer.script` (our plex-init.sh). */
  initContainer: string;
  /** ConfigMap holding the init script under key `init.sh`. */
  initScriptConfigMap: string;
  service: string;
  ingress: string;
  serviceAccount: string;
}

export function chartResourceNames(releaseName: string): ChartResourceNames {
  const fullname = chartFullname(releaseName);
  return {
    fullname,
    statefulSet: fullname,
    pod: `${fullname}-0`,
    pmsContainer: `${fullname}-pms`,
    initContainer: `${fullname}-pms-init`,
    initScriptConfigMap: `${fullname}-init-script`,
    service: fullname,
    ingress: `${fullname}-ingress`,
    serviceAccount: fullname,
  };
}

/** Names of the objects plex-migrate creates next to the release (derived from the fullname). */
export interface PlexMigrateObjectNames {
  /** The config volume claim handed to the chart as `pms.configExistingClaim`. */
  configClaim: string;
  /** Secret with the migration's SSH key and the pinned VM host key (sync container only). */
  syncSecret: string;
  /** ConfigMap with scripts/plex-init.sh. */
  syncScript: string;
  /** The Job that copies the library while Plex still runs on the VM. */
  warmCopyJob: string;
  /** Secret with the plex.tv claim token (key `token`), when one is given. */
  claimSecret: string;
  /** ConfigMap with scripts/plex-pms-setup.sh, run in the Plex container before Plex. */
  pmsSetupConfigMap: string;
}

export function plexMigrateObjectNames(releaseName: string): PlexMigrateObjectNames {
  const fullname = chartFullname(releaseName);
  return {
    configClaim: `${fullname}-config`,
    syncSecret: `${fullname}-sync`,
    syncScript: `${fullname}-sync-script`,
    warmCopyJob: `${fullname}-warm-copy`,
    claimSecret: `${fullname}-claim`,
    pmsSetupConfigMap: `${fullname}-pms-setup`,
  };
}
