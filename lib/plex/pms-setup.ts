/**
 * scripts/plex-pms-setup.sh in the Plex container: the VM user's groups and the LAN networks,
 * applied as root before Plex starts. The pms-docker image runs every script in
 * /etc/cont-init.d in order at container start (s6-overlay v2, pms-docker Dockerfile
 * `S6_OVERLAY_VERSION=v2.1.0.0`); ours is mounted there from a ConfigMap, after the image's
 * 40-plex-first-run. Settings reach it as container environment (the chart's `extraEnv`).
 */
import * as fs from "fs";
import * as path from "path";

export const PMS_SETUP_SCRIPT_PATH = path.join(
  __dirname,
  "..",
  "..",
  "scripts",
  "plex-pms-setup.sh",
);

/** Key of the script in its ConfigMap, and its name under /etc/cont-init.d. */
export const PMS_SETUP_KEY = "41-plex-migrate";
/** Where the image's init finds it. */
export const PMS_SETUP_MOUNT_PATH = `/etc/cont-init.d/${PMS_SETUP_KEY}`;
/** Pod volume name of the ConfigMap. */
export const PMS_SETUP_VOLUME = "plex-migrate-pms-setup";

/** The settings the script reads, as Plex container environment (empty ones are left out). */
export interface PmsSetupSettings {
  /** gids to add the plex user to. */
  groups: number[];
  /** LanNetworksBandwidth to set, or undefined to keep Preferences.xml's. */
  lanNetworks?: string;
}

export function pmsSetupEnv(settings: PmsSetupSettings): Record<string, string> {
  const env: Record<string, string> = {};
  if (settings.groups.length > 0) env.PLEX_MIGRATE_GROUPS = settings.groups.join(",");
  if (settings.lanNetworks) env.PLEX_MIGRATE_LAN_NETWORKS = settings.lanNetworks;
  return env;
}

export function pmsSetupScript(): string {
  return fs.readFileSync(PMS_SETUP_SCRIPT_PATH, "utf8");
}

/** The pod volume (the ConfigMap, executable) and the mount of its one file. */
export function pmsSetupVolume(configMapName: string): {
  volume: Record<string, unknown>;
  mount: Record<string, unknown>;
} {
  return {
    volume: { name: PMS_SETUP_VOLUME, configMap: { name: configMapName, defaultMode: 0o755 } },
    mount: {
      name: PMS_SETUP_VOLUME,
      mountPath: PMS_SETUP_MOUNT_PATH,
      subPath: PMS_SETUP_KEY,
      readOnly: true,
    },
  };
}
