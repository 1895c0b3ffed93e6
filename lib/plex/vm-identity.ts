/**
 * What makes the pod's Plex the same server it was on the VM besides its data: the user it runs
 * as, that user's groups, and the time zone. Each defaults to what the preflight measured on the
 * VM ("auto") and can be set explicitly.
 *
 * The pms-docker image starts as root, renames its `plex` user to PLEX_UID/PLEX_GID
 * (root/etc/cont-init.d/40-plex-first-run: `usermod -o -u "${PLEX_UID}" plex`), and starts Plex
 * with `s6-setuidgid plex` (root/etc/services.d/plex/run), which takes the supplementary groups
 * from the image's /etc/group (skarnet/s6 src/daemontools-extras/s6-envuidgid.c:
 * `prot_readgroups`). A pod-level `supplementalGroups` is therefore replaced when Plex starts; the
 * VM user's groups must be added to `plex` inside the image.
 */

/** The owner of the VM's Plex data directory, as the preflight reports it. */
export interface VmDataOwner {
  uid: number;
  gid: number;
  user: string;
  group: string;
  /** The user's other groups (not the primary one). */
  groups: { name: string; gid: number }[];
}

/** A uid or gid: "auto" takes the VM data directory's owner. */
export type IdSetting = number | "auto";

/** Supplementary groups of Plex in the pod: "auto" = the VM user's groups; else these gids. */
export type GroupsSetting = "auto" | number[];

/** A time zone: "auto" = the VM's; "" = none (the image's UTC); else an IANA name. */
export type TimezoneSetting = string;

export interface PlexIds {
  uid: number;
  gid: number;
}

const MAX_ID = 2147483647;

export function isId(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_ID;
}

/** "Europe/Berlin", "America/Argentina/Buenos_Aires", "UTC", "Etc/GMT+5". */
export function isTimezoneName(value: string): boolean {
  return (
    /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(value) && !value.split("/").includes("..")
  );
}

/**
 * The ids Plex runs as and the copied files are owned by. Throws, naming the setting, when an id
 * is "auto" but the preflight reported no usable owner.
 */
export function resolvePlexIds(uid: IdSetting, gid: IdSetting, owner?: VmDataOwner): PlexIds {
  const pick = (setting: IdSetting, measured: number | undefined, key: "plexUid" | "plexGid") => {
    if (setting !== "auto") return setting;
    if (!isId(measured)) {
      throw new Error(
        `${key} is auto, but the preflight reported no owner of the VM's Plex data directory ` +
          `(got ${JSON.stringify(measured)}). Fix: pulumi config set ${key} <id of the VM's plex ${key === "plexUid" ? "user" : "group"}>`,
      );
    }
    return measured;
  };
  return {
    uid: pick(uid, owner?.uid, "plexUid"),
    gid: pick(gid, owner?.gid, "plexGid"),
  };
}

/**
 * The gids to add to Plex in the pod, sorted, without the primary gid. "auto" takes the VM user's
 * groups (its media may be readable only through one, e.g. a shared `media` group).
 */
export function resolveSupplementalGroups(
  setting: GroupsSetting,
  primaryGid: number,
  owner?: VmDataOwner,
): number[] {
  const gids = setting === "auto" ? (owner?.groups ?? []).map((g) => g.gid) : setting;
  for (const gid of gids) {
    if (!isId(gid)) throw new Error(`supplemental group ${JSON.stringify(gid)} is not a gid`);
  }
  return [...new Set(gids)].filter((gid) => gid !== primaryGid).sort((a, b) => a - b);
}

/** The TZ Plex runs with, or undefined for none. Throws on a name that is not a zone name. */
export function resolveTimezone(setting: TimezoneSetting, vmTimezone?: string): string | undefined {
  const zone = setting === "auto" ? (vmTimezone ?? "") : setting;
  if (zone === "") return undefined;
  if (!isTimezoneName(zone)) {
    throw new Error(
      setting === "auto"
        ? `the VM reported the time zone "${zone}", which is not an IANA zone name. Fix: pulumi config set plexTimezone Europe/Berlin (your zone), or "" for UTC`
        : `plexTimezone "${zone}" is not an IANA zone name such as Europe/Berlin`,
    );
  }
  return zone;
}
