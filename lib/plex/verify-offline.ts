/**
 * The verification where no Plex runs (the dress rehearsal): the copied data directory's identity
 * against the source's (the server Plex will start as), and the same library sampling as
 * lib/plex/verify.ts, read from the copied library database (real SQLite, opened read-only) with
 * each sampled file looked at on this machine, as Plex's checkFiles=1 looks at it in the pod.
 *
 * Plex's database tables used: library_sections (id, name, section_type: 1 movie, 2 show,
 * 8 artist, 13 photo), section_locations (root_path), metadata_items (library_section_id,
 * metadata_type: the SAMPLED_ITEM_TYPE numbers), media_items and media_parts (file).
 */
import * as fs from "fs";
import * as path from "path";
import Database from "better-sqlite3";
import type { MediaVolume } from "./media-volumes";
import { EMPTY_TRASH_ADVICE, type SectionResult } from "./verify-report";
import { LibraryReader, sampleSection } from "./verify-sample";
import { parsePreferencesIdentity, PlexPart, PlexSection } from "./verify-xml";

export const LIBRARY_DB = path.join(
  "Plug-in Support",
  "Databases",
  "com.plexapp.plugins.library.db",
);

const SECTION_TYPES: Record<number, string> = { 1: "movie", 2: "show", 8: "artist", 13: "photo" };

export interface OfflineVerification {
  identity: {
    /** ProcessedMachineIdentifier of the source's Preferences.xml. */
    expectedMachineIdentifier: string | null;
    /** The same in the copy: the identity Plex starts with. */
    machineIdentifier: string | null;
    same: boolean;
  };
  sections: SectionResult[];
}

function identityOf(plexDataDir: string): string | null {
  const file = path.join(plexDataDir, "Preferences.xml");
  if (!fs.existsSync(file)) return null;
  return parsePreferencesIdentity(fs.readFileSync(file, "utf8"));
}

function fileState(file: string): PlexPart {
  if (!fs.existsSync(file)) return { file, exists: false, accessible: false };
  try {
    fs.accessSync(file, fs.constants.R_OK);
    return { file, exists: true, accessible: true };
  } catch {
    return { file, exists: true, accessible: false };
  }
}

function sqliteLibraryReader(db: Database.Database): LibraryReader {
  const sections = db.prepare("SELECT id, name, section_type FROM library_sections ORDER BY id");
  const locations = db.prepare(
    "SELECT root_path FROM section_locations WHERE library_section_id = ? ORDER BY id",
  );
  const count = db.prepare(
    "SELECT count(*) AS n FROM metadata_items WHERE library_section_id = ? AND metadata_type = ? AND deleted_at IS NULL",
  );
  const item = db.prepare(
    "SELECT id, title FROM metadata_items WHERE library_section_id = ? AND metadata_type = ? AND deleted_at IS NULL ORDER BY id LIMIT 1 OFFSET ?",
  );
  const parts = db.prepare(
    "SELECT p.file FROM media_parts p JOIN media_items m ON p.media_item_id = m.id WHERE m.metadata_item_id = ? AND p.deleted_at IS NULL ORDER BY p.id",
  );
  return {
    sections: async () =>
      (sections.all() as { id: number; name: string; section_type: number }[]).map(
        (row): PlexSection => ({
          key: String(row.id),
          title: row.name,
          type: SECTION_TYPES[row.section_type] ?? `type ${row.section_type}`,
          locations: (locations.all(row.id) as { root_path: string }[]).map((l) => l.root_path),
        }),
      ),
    countItems: async (key, type) => (count.get(Number(key), type) as { n: number }).n,
    itemAt: async (key, type, offset) => {
      const row = item.get(Number(key), type, offset) as { id: number; title: string } | undefined;
      return row ? { ratingKey: String(row.id), title: row.title } : undefined;
    },
    partsOf: async (ratingKey) =>
      (parts.all(Number(ratingKey)) as { file: string }[]).map((p) => fileState(p.file)),
  };
}

/**
 * Verifies the copy `copiedDataDir` of `sourceDataDir` (both the folder holding Preferences.xml).
 * Reads only.
 */
export async function verifyCopiedLibrary(options: {
  sourceDataDir: string;
  copiedDataDir: string;
  mediaVolumes: MediaVolume[];
  samplesPerSection?: number;
}): Promise<OfflineVerification> {
  const expectedMachineIdentifier = identityOf(options.sourceDataDir);
  const machineIdentifier = identityOf(options.copiedDataDir);
  const identity = {
    expectedMachineIdentifier,
    machineIdentifier,
    same: expectedMachineIdentifier !== null && machineIdentifier === expectedMachineIdentifier,
  };
  const dbFile = path.join(options.copiedDataDir, LIBRARY_DB);
  if (!fs.existsSync(dbFile)) return { identity, sections: [] };
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const reader = sqliteLibraryReader(db);
    const sections: SectionResult[] = [];
    for (const section of await reader.sections()) {
      sections.push(await sampleSection(reader, section, options));
    }
    return { identity, sections };
  } finally {
    db.close();
  }
}

/** What the rehearsal should warn about: another identity, libraries with nothing readable here. */
export function offlineVerificationWarnings(result: OfflineVerification): string[] {
  const warnings: string[] = [];
  if (!result.identity.same) {
    warnings.push(
      `The copy's Preferences.xml has machine identifier ${result.identity.machineIdentifier ?? "(none)"}, ` +
        `the source's ${result.identity.expectedMachineIdentifier ?? "(none)"}: Plex would start as another server.`,
    );
  }
  for (const section of result.sections) {
    if (section.status === "unreadable") {
      warnings.push(
        `Library "${section.title}": none of ${section.sampled} sampled files is readable on this machine ` +
          `(${section.locations.map((l) => l.path).join(", ")}). In the cluster, plexMediaVolumes must mount ` +
          `these paths, or pulumi up's verification fails.`,
      );
    }
  }
  return warnings;
}

/** The rehearsal report's section (Markdown lines). */
export function formatOfflineVerification(result: OfflineVerification): string[] {
  const lines = [
    "## Verification of the copy",
    "",
    `Identity Plex starts with: ${result.identity.machineIdentifier ?? "(none)"} ` +
      `(${result.identity.same ? "the source's" : `NOT the source's ${result.identity.expectedMachineIdentifier ?? "(none)"}`}).`,
    "",
    "Sampled library files, looked at on this machine (in the cluster, Plex checks them in the pod " +
      "with checkFiles=1 after `pulumi up`; there is no advertised address to ask here):",
    "",
    "| library | type | status | readable / sampled (items) | folders |",
    "|---|---|---|---|---|",
  ];
  for (const s of result.sections) {
    lines.push(
      `| ${s.title} | ${s.type} | ${s.status} | ${s.readable} / ${s.sampled} (${s.items}) | ${s.locations.map((l) => l.path).join(", ")} |`,
    );
  }
  if (result.sections.length === 0) lines.push("| (no library sections) | | | | |");
  lines.push("", EMPTY_TRASH_ADVICE);
  return lines;
}
