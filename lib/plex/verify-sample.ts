/**
 * Sampling a library: a few items spread over each section, each item's files judged readable or
 * not, counted per section and per folder. The same rule serves the running Plex (its HTTP API,
 * lib/plex/verify.ts) and a copied library database (lib/plex/verify-offline.ts, the rehearsal),
 * through the small LibraryReader interface.
 */
import { mediaVolumeCovering, type MediaVolume } from "./media-volumes";
import {
  DEFAULT_SAMPLES_PER_SECTION,
  describeMediaVolume,
  locationOf,
  MAX_FILES_SHOWN,
  SectionResult,
  sectionStatus,
} from "./verify-report";
import type { PlexPart, PlexSection } from "./verify-xml";

/**
 * The item type sampled per section type: where the files are (python-plexapi
 * utils.SEARCHTYPES; the same numbers are metadata_items.metadata_type in Plex's database).
 */
export const SAMPLED_ITEM_TYPE: Record<string, { type: number; name: string }> = {
  movie: { type: 1, name: "movies" },
  show: { type: 4, name: "episodes" },
  artist: { type: 10, name: "tracks" },
  photo: { type: 13, name: "photos" },
};

/** Where the libraries are read from. */
export interface LibraryReader {
  sections(): Promise<PlexSection[]>;
  /** Items of `type` in the section. */
  countItems(sectionKey: string, type: number): Promise<number>;
  /** The item at `offset` of the section's listing of `type`. */
  itemAt(
    sectionKey: string,
    type: number,
    offset: number,
  ): Promise<{ ratingKey: string; title: string } | undefined>;
  /** The item's files with whether each exists and is readable. */
  partsOf(ratingKey: string): Promise<PlexPart[]>;
}

export interface SampleOptions {
  mediaVolumes: MediaVolume[];
  /** @default 5 */
  samplesPerSection?: number;
  log?: (line: string) => void;
}

/** Offsets of `n` items spread evenly over a listing of `total` (all of them when fewer). */
export function sampleOffsets(total: number, n: number): number[] {
  if (total <= n) return Array.from({ length: total }, (_, i) => i);
  return Array.from({ length: n }, (_, i) => Math.floor((i * total) / n));
}

export function partReadable(part: PlexPart): boolean {
  return part.exists === true && part.accessible === true;
}

export async function sampleSection(
  reader: LibraryReader,
  section: PlexSection,
  options: SampleOptions,
): Promise<SectionResult> {
  const locations = section.locations.map((path) => {
    const volume = mediaVolumeCovering(path, options.mediaVolumes);
    return { path, volume: volume ? describeMediaVolume(volume) : null, sampled: 0, readable: 0 };
  });
  const base = { key: section.key, title: section.title, type: section.type, locations };
  const itemType = SAMPLED_ITEM_TYPE[section.type];
  if (!itemType) {
    return {
      ...base,
      status: "not-checked",
      items: 0,
      sampled: 0,
      readable: 0,
      unreadableFiles: [],
      note: `sections of type "${section.type}" are not sampled`,
    };
  }
  const items = await reader.countItems(section.key, itemType.type);
  let sampled = 0;
  let readable = 0;
  const unreadableFiles: SectionResult["unreadableFiles"] = [];
  const samples = options.samplesPerSection ?? DEFAULT_SAMPLES_PER_SECTION;
  for (const offset of sampleOffsets(items, samples)) {
    const item = await reader.itemAt(section.key, itemType.type, offset);
    if (!item) continue;
    const parts = await reader.partsOf(item.ratingKey);
    const ok = parts.length > 0 && parts.every(partReadable);
    sampled += 1;
    if (ok) readable += 1;
    const location = locations.find(
      (l) => l.path === locationOf(parts[0]?.file ?? "", section.locations),
    );
    if (location) {
      location.sampled += 1;
      if (ok) location.readable += 1;
    }
    if (!ok && unreadableFiles.length < MAX_FILES_SHOWN) {
      unreadableFiles.push(
        parts.find((p) => !partReadable(p)) ?? {
          file: `(${item.title}: no file)`,
          exists: null,
          accessible: null,
        },
      );
    }
  }
  options.log?.(
    `library "${section.title}": ${readable}/${sampled} sampled ${itemType.name} readable (of ${items})`,
  );
  return {
    ...base,
    status: sectionStatus(sampled, readable),
    items,
    sampled,
    readable,
    unreadableFiles,
  };
}
