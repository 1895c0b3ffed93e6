/**
 * Size of the Plex config volume. "auto" is the library measured by the preflight plus headroom,
 * rounded up to whole GiB and at least 10Gi; an explicit quantity must hold the library.
 */

const GiB = 1024 ** 3;

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
 * Bytes the volume needs for the import itself: the library plus 5% for block rounding of many
 * small files, plus 16 MiB (the same rule plex-init.sh applies before it downloads).
 */
export function requiredConfigBytes(libraryBytes: number): number {
  return Math.ceil(libraryBytes + libraryBytes / 20 + 16 * 1024 * 1024);
}

/** The "auto" size: library + headroom percent, rounded up to whole GiB, at least 10Gi. */
export function autoConfigSize(libraryBytes: number, headroomPercent: number): string {
  const withHeadroom = libraryBytes * (1 + headroomPercent / 100);
  const gib = Math.max(MIN_AUTO_CONFIG_GIB, Math.ceil(withHeadroom / GiB));
  return `${gib}Gi`;
}

export interface ConfigSizeDecision {
  /** The quantity the claim requests. */
  quantity: string;
  /** Whether it was computed ("auto") rather than configured. */
  auto: boolean;
}

/**
 * Decides the claim's size. Throws (naming `plexConfigSize` and the fix) when the measured library
 * is not a byte count or does not fit an explicit size.
 */
export function resolveConfigSize(
  configSize: string,
  libraryBytes: number,
  headroomPercent: number,
): ConfigSizeDecision {
  if (!Number.isFinite(libraryBytes) || libraryBytes < 0) {
    throw new Error(
      `the preflight reported a library size of ${String(libraryBytes)} bytes, which is not a byte count`,
    );
  }
  if (configSize === "auto") {
    return { quantity: autoConfigSize(libraryBytes, headroomPercent), auto: true };
  }
  const needed = requiredConfigBytes(libraryBytes);
  if (parseQuantity(configSize) < needed) {
    const fits = Math.ceil(needed / GiB);
    throw new Error(
      `plexConfigSize ${configSize} cannot hold the Plex library (${(libraryBytes / GiB).toFixed(2)} GiB measured on the VM). ` +
        `Fix: pulumi config set plexConfigSize ${Math.max(fits, 1)}Gi (or more for growth), or auto`,
    );
  }
  return { quantity: configSize, auto: false };
}
