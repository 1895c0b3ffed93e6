/**
 * Media volumes: the VM's media roots as the Plex pod mounts them, at the paths the VM used. How
 * a `plexMediaVolumes` entry is parsed, the volume's name, and which volume covers a path.
 */
import { createHash } from "crypto";
import { isAtOrUnder, isDnsSubdomain, isHost, isSafeAbsolutePath } from "../checks";
import { reservedMountPathClash } from "./helm-values";

/** Where a media root of the VM comes from in the cluster. */
export type MediaSource =
  | { kind: "nfs"; server: string; path: string }
  | { kind: "hostPath"; path: string }
  | { kind: "pvc"; claimName: string };

/** One media root, mounted in the Plex pod at the path the VM used. */
export interface MediaVolume {
  /** Stable, DNS-safe name derived from the mount path (used for the pod volume). */
  name: string;
  /** Absolute path of the media root on the VM, and so in the pod. */
  mountPath: string;
  source: MediaSource;
  readOnly: boolean;
}

/** "/mnt/nas-plex/Movies" -> "media-mnt-nas-plex-movies" (DNS label, at most 63 chars). */
export function mediaVolumeName(mountPath: string): string {
  const slug = mountPath
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  const name = `media-${slug || "root"}`;
  if (name.length <= 63) return name;
  // Keep names unique and stable when long paths share a prefix.
  const hash = createHash("sha256").update(mountPath).digest("hex").slice(0, 8);
  return `${name.slice(0, 54).replace(/-+$/, "")}-${hash}`;
}

/**
 * Parses one `plexMediaVolumes` entry: "<path on the VM>=<source>[?rw]" where source is
 * nfs://server/export, hostpath:///dir or pvc://claim-name. Returns an error text or the volume.
 */
export function parseMediaVolume(entry: string): MediaVolume | string {
  const eq = entry.indexOf("=");
  if (eq < 0) return `"${entry}" has no "=": write "<path on the VM>=<source>"`;
  const mountPath = entry.slice(0, eq).replace(/\/+$/, "") || "/";
  let source = entry.slice(eq + 1);
  let readOnly = true;
  if (source.endsWith("?rw")) {
    readOnly = false;
    source = source.slice(0, -3);
  } else if (source.endsWith("?ro")) {
    source = source.slice(0, -3);
  }
  if (!isSafeAbsolutePath(mountPath) || mountPath === "/") {
    return `"${entry}": the mount path must be an absolute path other than /`;
  }
  const reserved = reservedMountPathClash(mountPath);
  if (reserved) {
    return `"${entry}": ${reserved} is used by the Plex chart itself; mount media elsewhere`;
  }
  let parsed: MediaSource;
  let match: RegExpExecArray | null;
  if ((match = /^nfs:\/\/([^/]+)(\/.*)$/.exec(source))) {
    if (!isHost(match[1]) || !isSafeAbsolutePath(match[2])) {
      return `"${entry}": expected nfs://<server>/<export path>`;
    }
    parsed = { kind: "nfs", server: match[1], path: match[2] };
  } else if ((match = /^hostpath:\/\/(\/.*)$/.exec(source))) {
    if (!isSafeAbsolutePath(match[1])) return `"${entry}": expected hostpath:///<absolute dir>`;
    parsed = { kind: "hostPath", path: match[1] };
  } else if ((match = /^pvc:\/\/(.+)$/.exec(source))) {
    if (!isDnsSubdomain(match[1])) {
      return `"${entry}": "${match[1]}" is not a valid PersistentVolumeClaim name`;
    }
    parsed = { kind: "pvc", claimName: match[1] };
  } else {
    return `"${entry}": unknown source "${source}"; use nfs://server/export, hostpath:///dir or pvc://claim`;
  }
  return { name: mediaVolumeName(mountPath), mountPath, source: parsed, readOnly };
}

/** The media volume whose mount path holds `path` (the longest, as the pod's mounts nest). */
export function mediaVolumeCovering(path: string, volumes: MediaVolume[]): MediaVolume | undefined {
  return volumes
    .filter((v) => isAtOrUnder(path, v.mountPath))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
}

/** The VM media roots that no media volume covers, each once, sorted. */
export function unmountedMediaRoots(vmRoots: string[], volumes: MediaVolume[]): string[] {
  return [...new Set(vmRoots)].filter((root) => !mediaVolumeCovering(root, volumes)).sort();
}

/** Pairs of media volumes where one mount path is at or under the other's. */
export function overlappingMediaVolumes(volumes: MediaVolume[]): [string, string][] {
  const pairs: [string, string][] = [];
  volumes.forEach((volume, index) => {
    for (const other of new Set(volumes.slice(0, index).map((v) => v.mountPath))) {
      if (isAtOrUnder(volume.mountPath, other) || isAtOrUnder(other, volume.mountPath))
        pairs.push([other, volume.mountPath]);
    }
  });
  return pairs;
}
