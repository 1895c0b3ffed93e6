/**
 * Size of the Plex config volume, for the filesystem it really gets. "auto" is the library and
 * file count measured by the preflight plus headroom, grown to what an ext4 filesystem on the
 * claim leaves Plex, rounded up to whole GiB and at least 10Gi; an explicit quantity must hold
 * the library. The same rules give the numbers the pod checks before copying.
 *
 * ext4 as `mke2fs` makes it by default (mke2fs.conf: `inode_ratio = 16384`, `-m 5`) keeps 5% of the
 * blocks for root, which Plex (not root) cannot use, and spends about 2% on inode tables, bitmaps
 * and group descriptors plus a journal of up to 1 GiB; it has one inode per 16 KiB. Kubelet and
 * CSI drivers that format through k8s.io/mount-utils pass `-m0` (mount_linux.go,
 * formatAndMountSensitive), so their volumes keep no reserve: the rule sizes for the default,
 * which holds on both. Checked against real mke2fs in test/unit/plex-lib.test.ts.
 */

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Share of the blocks ext4 keeps for root by default (mke2fs `-m 5`). */
export const EXT4_RESERVED_FRACTION = 0.05;
/** Share spent on inode tables (256 B per 16 KiB = 1.6%), bitmaps and group descriptors. */
export const EXT4_METADATA_FRACTION = 0.02;
/** mke2fs's largest default journal (ext2fs_default_journal_size: 1 GiB from 128 GiB up). */
export const EXT4_MAX_JOURNAL_BYTES = GiB;
/** mke2fs.conf's default `inode_ratio`: one inode per 16 KiB of volume. */
export const EXT4_BYTES_PER_INODE = 16384;

/** Smallest volume "auto" picks: Plex grows its databases and metadata after the move. */
export const MIN_AUTO_CONFIG_GIB = 10;

const SUFFIX_FACTORS: Record<string, number> = {
  "": 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
  Pi: 1024 ** 5,
  Ei: 1024 ** 6,
};

/** Bytes of a Kubernetes quantity ("200Gi", "1.5Ti", "500G"); throws on anything else. */
export function parseQuantity(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$/.exec(quantity.trim());
  if (!match) throw new Error(`"${quantity}" is not a Kubernetes quantity such as "200Gi"`);
  return Number(match[1]) * SUFFIX_FACTORS[match[2] ?? ""];
}

/**
 * Bytes the copy occupies on the volume: the library (as measured on the VM's disk) plus 5% for
 * block rounding of many small files, plus 16 MiB. The pod checks its free space against this.
 */
export function requiredConfigBytes(libraryBytes: number): number {
  return Math.ceil(libraryBytes + libraryBytes / 20 + 16 * MiB);
}

/**
 * Inodes the copy needs: every file, directory and link of the data directory (the preflight's
 * fileCount) plus 10% and 1,000 for what Plex creates as it starts. The pod checks its free inodes
 * against this before copying.
 */
export function requiredConfigInodes(fileCount: number): number {
  return Math.ceil((fileCount * 11) / 10) + 1000;
}

/**
 * The smallest claim on which an ext4 filesystem with mke2fs's defaults leaves a non-root user
 * `bytes` free and has `inodes` inodes.
 */
export function claimBytesFor(bytes: number, inodes: number): number {
  const forBytes =
    (bytes + EXT4_MAX_JOURNAL_BYTES) / (1 - EXT4_RESERVED_FRACTION - EXT4_METADATA_FRACTION);
  return Math.ceil(Math.max(forBytes, inodes * EXT4_BYTES_PER_INODE));
}

/** The smallest whole-GiB claim that holds the measured library as it is. */
export function minimumConfigGiB(libraryBytes: number, fileCount = 0): number {
  return Math.ceil(
    claimBytesFor(requiredConfigBytes(libraryBytes), requiredConfigInodes(fileCount)) / GiB,
  );
}

/**
 * The "auto" size: library and file count grown by headroom percent, as a claim whose ext4
 * filesystem holds them, rounded up to whole GiB, at least 10Gi.
 */
export function autoConfigSize(
  libraryBytes: number,
  headroomPercent: number,
  fileCount = 0,
): string {
  const growth = 1 + headroomPercent / 100;
  const gib = Math.max(
    MIN_AUTO_CONFIG_GIB,
    minimumConfigGiB(libraryBytes * growth, Math.ceil(fileCount * growth)),
  );
  return `${gib}Gi`;
}

export interface ConfigSizeDecision {
  /** The quantity the claim requests. */
  quantity: string;
  /** Whether it was computed ("auto") rather than configured. */
  auto: boolean;
}

/**
 * Decides the claim's size. Throws (naming `plexConfigSize` and the fix) when the measures are not
 * counts or the library does not fit an explicit size once formatted.
 */
export function resolveConfigSize(
  configSize: string,
  libraryBytes: number,
  headroomPercent: number,
  fileCount = 0,
): ConfigSizeDecision {
  if (!Number.isFinite(libraryBytes) || libraryBytes < 0) {
    throw new Error(
      `the preflight reported a library size of ${String(libraryBytes)} bytes, which is not a byte count`,
    );
  }
  if (!Number.isSafeInteger(fileCount) || fileCount < 0) {
    throw new Error(
      `the preflight reported ${String(fileCount)} files in the library, which is not a count`,
    );
  }
  if (configSize === "auto") {
    return { quantity: autoConfigSize(libraryBytes, headroomPercent, fileCount), auto: true };
  }
  const fits = minimumConfigGiB(libraryBytes, fileCount);
  if (parseQuantity(configSize) < fits * GiB) {
    const inodeBound = requiredConfigInodes(fileCount) * EXT4_BYTES_PER_INODE > fits * GiB - GiB;
    throw new Error(
      `plexConfigSize ${configSize} cannot hold the Plex library (${(libraryBytes / GiB).toFixed(2)} GiB ` +
        `and ${fileCount} files measured on the VM) once formatted: ext4 keeps 5% for root and about 2% ` +
        `for its own metadata, and has one inode per 16 KiB${inodeBound ? " (here the file count decides)" : ""}. ` +
        `Fix: pulumi config set plexConfigSize ${fits}Gi (or more for growth), or auto`,
    );
  }
  return { quantity: configSize, auto: false };
}
