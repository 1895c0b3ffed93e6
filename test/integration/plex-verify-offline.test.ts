/**
 * The rehearsal's verification (lib/plex/verify-offline.ts) on a generated Plex data directory
 * (real SQLite library database in WAL mode) and its copy, with media files on disk.
 */
import * as assert from "assert/strict";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import Database from "better-sqlite3";
import { verifyCopiedLibrary } from "../../lib/plex/verify-offline";
import { generatePlexTree, PlexTreeManifest } from "../../lib/samples/plex-tree";

describe("Plex verification of a copied data directory (the rehearsal's)", function () {
  let dir: string;
  let source: PlexTreeManifest;
  let copy: string;
  let movies: string;
  let shows: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-verify-offline-"));
    movies = path.join(dir, "media", "Movies");
    shows = path.join(dir, "media", "TV Shows");
    source = await generatePlexTree(path.join(dir, "source"), {
      mediaRoots: [movies, shows],
      libraryItems: 40,
      metadataFiles: 20,
      largeFiles: 0,
    });
    // Every movie's file exists on this machine except those of the second half of the library.
    const db = new Database(source.libraryDb, { readonly: true });
    const files = db
      .prepare(
        "SELECT p.file, m.metadata_item_id AS id FROM media_parts p JOIN media_items m ON p.media_item_id = m.id WHERE m.library_section_id = 1 ORDER BY m.metadata_item_id",
      )
      .all() as { file: string; id: number }[];
    db.close();
    files.slice(0, Math.floor(files.length / 2)).forEach(({ file }) => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, "media");
    });
    copy = path.join(dir, "copy");
    execFileSync("cp", ["-a", source.dataDir, copy]);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("reports the identity Plex starts with and readable counts per library, from the copy", async () => {
    const result = await verifyCopiedLibrary({
      sourceDataDir: source.dataDir,
      copiedDataDir: copy,
      mediaVolumes: [
        {
          name: "movies",
          mountPath: movies,
          source: { kind: "nfs", server: "nas", path: "/movies" },
          readOnly: true,
        },
      ],
      samplesPerSection: 4,
    });
    assert.deepEqual(result.identity, {
      expectedMachineIdentifier: source.processedMachineIdentifier,
      machineIdentifier: source.processedMachineIdentifier,
      same: true,
    });
    const [movieSection] = result.sections;
    assert.equal(movieSection.title, "Movies");
    assert.equal(movieSection.type, "movie");
    // 33 movies (every other one of 40 + 25 rows, the WAL's included); samples at offsets 0, 8,
    // 16, 24: the first half of the files exist, so 2 of 4 are readable.
    assert.deepEqual(
      [movieSection.status, movieSection.items, movieSection.sampled, movieSection.readable],
      ["partly-readable", 33, 4, 2],
    );
    assert.deepEqual(movieSection.locations, [
      { path: movies, volume: `${movies}=nfs://nas/movies`, sampled: 4, readable: 2 },
    ]);
    assert.equal(movieSection.unreadableFiles[0].exists, false);
  });

  it("says when the copy would start as another server", async () => {
    const other = path.join(dir, "other");
    execFileSync("cp", ["-a", copy, other]);
    const prefs = path.join(other, "Preferences.xml");
    fs.writeFileSync(
      prefs,
      fs
        .readFileSync(prefs, "utf8")
        .replace(/ProcessedMachineIdentifier="[^"]*"/, 'ProcessedMachineIdentifier="0000"'),
    );
    const result = await verifyCopiedLibrary({
      sourceDataDir: source.dataDir,
      copiedDataDir: other,
      mediaVolumes: [],
    });
    assert.deepEqual(result.identity, {
      expectedMachineIdentifier: source.processedMachineIdentifier,
      machineIdentifier: "0000",
      same: false,
    });
  });
});
