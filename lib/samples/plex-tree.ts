/**
 * A realistic fake Plex Media Server data directory, for tests, benchmarks and `npm run rehearse`.
 *
 * The tree has what the move must preserve: a Preferences.xml carrying the server identity and
 * token, the library and blobs databases as real SQLite files in WAL mode whose `-wal` still holds
 * committed rows that are not in the main file (as after an unclean stop), absolute media paths in
 * `section_locations` / `media_parts`, thousands of small metadata files, a few large files,
 * relative symlinks (Plex's `_combined` bundles use them), empty directories, names with spaces and
 * non-ASCII characters, and a Logs/"Plex Media Server.log" whose first line names the version.
 *
 * Everything is derived from `seed`, so two runs with the same options give identical trees
 * (contents, modes and mtimes). {@link digestTree} / {@link compareTrees} compare trees byte for
 * byte, for "the copy equals the source" and "the source is unchanged" checks.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import Database from "better-sqlite3";
import { SampleRandom } from "./random";

export interface PlexTreeOptions {
  /** Everything random is derived from it. @default 1 */
  seed?: number;
  /** Plex version written in the log's first line. @default "1.41.3.9314-a0bfb8370" */
  plexVersion?: string;
  /** Number of small metadata files (posters, Info.xml, thumbnails), 1-40 KiB each. @default 1000 */
  metadataFiles?: number;
  /** Large files (Media/ index and preview files), each `largeFileBytes` long. @default 2 */
  largeFiles?: number;
  /** Size of each large file in bytes. @default 4 MiB */
  largeFileBytes?: number;
  /**
   * Total size to reach, in bytes: after the fixed parts, Cache/PhotoTranscoder and Media/ are
   * filled with more files until the tree holds at least this much. Omit for no filling.
   */
  totalBytes?: number;
  /** Fraction (0-1) of the filler that is compressible text rather than JPEG-like noise. @default 0.15 */
  compressibleFraction?: number;
  /** Library roots on the VM, written into the database. @default ["/mnt/nas-plex/Movies", "/mnt/nas-plex/TV Shows"] */
  mediaRoots?: string[];
  /** Library items (metadata_items / media_items / media_parts rows) in the main file. @default 200 */
  libraryItems?: number;
  /** Extra committed rows that live only in the `-wal` files. @default 25 */
  walOnlyRows?: number;
  /** Add names with spaces and non-ASCII characters. @default true */
  unicodeNames?: boolean;
  /** Add relative symlinks (and one dangling symlink). @default true */
  symlinks?: boolean;
  /** Add empty directories. @default true */
  emptyDirectories?: boolean;
  /**
   * Shapes that break naive copies, all off by default: hard links, names with a newline and
   * with bytes that are not UTF-8, more 0600 files.
   */
  awkwardShapes?: boolean;
  /**
   * Symlinks pointing outside the tree (absolute, and "../.." up and out). The VM's preflight
   * refuses these (the copy would hold only the link), so only the transfer tests use them.
   * @default false
   */
  outsideSymlinks?: boolean;
  /** Sparse files (8 MiB apparent, three 4 KiB data blocks, the rest holes). @default 0 */
  sparseFiles?: number;
  /** One sparse file of this apparent size (e.g. 4.1 GiB: over 4 GiB, little disk). @default none */
  hugeSparseFileBytes?: number;
  /** Tiny files (10-200 bytes), 1000 per directory, like Media/localhost index bundles. @default 0 */
  tinyFiles?: number;
}

export interface PlexTreeManifest {
  /** The data directory (the folder holding Preferences.xml). */
  dataDir: string;
  plexVersion: string;
  machineIdentifier: string;
  processedMachineIdentifier: string;
  /** The fake plex.tv token written into Preferences.xml (a test secret to look for in logs). */
  plexOnlineToken: string;
  /** Absolute media paths the databases refer to. */
  mediaRoots: string[];
  libraryDb: string;
  blobsDb: string;
  /** Rows of `metadata_items` counting the ones only in the WAL. */
  libraryItems: number;
  walOnlyRows: number;
  files: number;
  directories: number;
  symlinks: number;
  /** Sum of regular file sizes. */
  bytes: number;
}

export const DEFAULT_PLEX_VERSION = "1.41.3.9314-a0bfb8370";
export const DEFAULT_MEDIA_ROOTS = ["/mnt/nas-plex/Movies", "/mnt/nas-plex/TV Shows"];
export const LIBRARY_DB_RELATIVE = "Plug-in Support/Databases/com.plexapp.plugins.library.db";
export const BLOBS_DB_RELATIVE = "Plug-in Support/Databases/com.plexapp.plugins.library.blobs.db";

const MiB = 1024 * 1024;
/** 2024-01-01T00:00:00Z: generated mtimes are whole seconds after it (tar keeps whole seconds). */
const EPOCH_BASE = 1_704_067_200;

/** Incompressible bytes for `label`, fast (AES-CTR keystream) and reproducible from the seed. */
function noise(seed: number, label: string, length: number): Buffer {
  const key = crypto.createHash("sha256").update(`${seed}:${label}`).digest();
  const cipher = crypto.createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  return cipher.update(Buffer.alloc(length));
}

/** JPEG-looking bytes: SOI + JFIF header, noise, EOI (compressors gain nothing, like real art). */
function jpegBytes(seed: number, label: string, length: number): Buffer {
  const header = Buffer.from("ffd8ffe000104a46494600010101004800480000", "hex");
  const body = noise(seed, label, Math.max(0, length - header.length - 2));
  return Buffer.concat([header, body, Buffer.from("ffd9", "hex")]).subarray(0, Math.max(length, 0));
}

const WORDS = [
  "library",
  "section",
  "agent",
  "metadata",
  "scanner",
  "transcode",
  "session",
  "stream",
  "poster",
  "episode",
  "season",
  "album",
  "refresh",
  "request",
  "client",
  "thumbnail",
  "bundle",
  "database",
];

/** Compressible, log-like text of about `length` bytes. */
function textBytes(rng: SampleRandom, length: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  while (size < length) {
    const line = `${new Date((EPOCH_BASE + rng.int(0, 9_000_000)) * 1000).toISOString()} [${rng.int(1000, 9999)}] DEBUG - ${rng.pick(WORDS)} ${rng.pick(WORDS)} ${rng.pick(WORDS)} id=${rng.int(1, 99999)}\n`;
    lines.push(line);
    size += Buffer.byteLength(line);
  }
  return Buffer.from(lines.join("")).subarray(0, length);
}

function uuidFrom(rng: SampleRandom): string {
  const h = rng.hex(32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Plex's ProcessedMachineIdentifier: first 40 hex of sha1("<MachineIdentifier>- Plex Media Server"). */
export function processedMachineIdentifier(machineIdentifier: string): string {
  return crypto
    .createHash("sha1")
    .update(`${machineIdentifier}- Plex Media Server`)
    .digest("hex")
    .slice(0, 40);
}

/**
 * Writes a fake Plex data directory at `dir` (created; must be absent or empty) and returns what
 * it holds. Databases are real SQLite files in WAL mode with WAL-only rows.
 */
export async function generatePlexTree(
  dir: string,
  options: PlexTreeOptions = {},
): Promise<PlexTreeManifest> {
  const seed = options.seed ?? 1;
  const plexVersion = options.plexVersion ?? DEFAULT_PLEX_VERSION;
  const metadataFiles = options.metadataFiles ?? 1000;
  const largeFiles = options.largeFiles ?? 2;
  const largeFileBytes = options.largeFileBytes ?? 4 * MiB;
  const compressibleFraction = options.compressibleFraction ?? 0.15;
  const mediaRoots = options.mediaRoots ?? DEFAULT_MEDIA_ROOTS;
  const libraryItems = options.libraryItems ?? 200;
  const walOnlyRows = options.walOnlyRows ?? 25;
  const unicodeNames = options.unicodeNames ?? true;
  const symlinks = options.symlinks ?? true;
  const emptyDirectories = options.emptyDirectories ?? true;
  if (mediaRoots.length === 0 || mediaRoots.some((r) => !r.startsWith("/"))) {
    throw new Error("generatePlexTree: mediaRoots must be absolute paths (at least one)");
  }
  if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
    throw new Error(`generatePlexTree: ${dir} exists and is not empty; give a new directory`);
  }

  const rng = new SampleRandom(seed);
  const stats = { files: 0, directories: 0, symlinks: 0, bytes: 0 };
  const mtimes = new Map<string, number>();
  const nextMtime = () => EPOCH_BASE + rng.int(0, 60 * 86400);

  const mkdir = (relative: string) => {
    const full = path.join(dir, relative);
    const parts = path.relative(dir, full).split(path.sep).filter(Boolean);
    let current = dir;
    for (const part of ["", ...parts]) {
      current = part ? path.join(current, part) : current;
      if (!fs.existsSync(current)) {
        fs.mkdirSync(current, { mode: 0o755 });
        fs.chmodSync(current, 0o755);
        stats.directories++;
      }
    }
    return full;
  };
  const writeFile = (relative: string, content: Buffer | string, mode = 0o644) => {
    mkdir(path.dirname(relative));
    const full = path.join(dir, relative);
    fs.writeFileSync(full, content, { mode });
    fs.chmodSync(full, mode);
    mtimes.set(full, nextMtime());
    stats.files++;
    stats.bytes += Buffer.byteLength(content);
  };
  /** Writes `length` bytes in 1 MiB chunks so a multi-GB tree never sits in memory. */
  const writeLargeFile = (relative: string, length: number, kind: "jpeg" | "noise" | "text") => {
    mkdir(path.dirname(relative));
    const full = path.join(dir, relative);
    const fd = fs.openSync(full, "w", 0o644);
    try {
      for (let offset = 0, chunk = 0; offset < length; offset += MiB, chunk++) {
        const size = Math.min(MiB, length - offset);
        const bytes =
          kind === "text"
            ? textBytes(rng, size)
            : chunk === 0 && kind === "jpeg"
              ? jpegBytes(seed, `${relative}#${chunk}`, size)
              : noise(seed, `${relative}#${chunk}`, size);
        fs.writeSync(fd, bytes);
      }
    } finally {
      fs.closeSync(fd);
    }
    fs.chmodSync(full, 0o644);
    mtimes.set(full, nextMtime());
    stats.files++;
    stats.bytes += length;
  };
  const symlink = (target: string, relative: string) => {
    mkdir(path.dirname(relative));
    fs.symlinkSync(target, path.join(dir, relative));
    mtimes.set(path.join(dir, relative), nextMtime());
    stats.symlinks++;
  };
  /** A sparse file: `length` apparent bytes, data only in the 4 KiB blocks at `dataAt`. */
  const writeSparseFile = (relative: string, length: number, dataAt: number[]) => {
    mkdir(path.dirname(relative));
    const full = path.join(dir, relative);
    const fd = fs.openSync(full, "w", 0o644);
    try {
      fs.ftruncateSync(fd, length);
      for (const at of dataAt) {
        const offset = Math.min(Math.max(0, at), length - 4096);
        fs.writeSync(fd, noise(seed, `${relative}@${offset}`, 4096), 0, 4096, offset);
      }
    } finally {
      fs.closeSync(fd);
    }
    mtimes.set(full, nextMtime());
    stats.files++;
    stats.bytes += length;
  };

  /** Hard links, a newline and non-UTF-8 bytes in names, 0600 files (and links out, if asked). */
  function writeAwkwardShapes(): void {
    writeFile(
      "Plug-in Support/Data/com.plexapp.system/HardLinked/original.dat",
      noise(seed, "hl", 6000),
    );
    mkdir("Plug-in Support/Data/com.plexapp.system/HardLinked/again");
    for (const name of ["link-1.dat", "again/link-2.dat"]) {
      fs.linkSync(
        path.join(dir, "Plug-in Support/Data/com.plexapp.system/HardLinked/original.dat"),
        path.join(dir, "Plug-in Support/Data/com.plexapp.system/HardLinked", name),
      );
    }
    if (options.outsideSymlinks) {
      symlink(DEFAULT_MEDIA_ROOTS[0], "Plug-in Support/Data/com.plexapp.system/media-root");
      symlink("../../../../../etc/hostname", "Plug-in Support/Data/com.plexapp.system/up-and-out");
    }
    writeFile("Plug-in Support/Data/com.plexapp.system/line\nbreak.txt", "a newline in the name\n");
    writeFile("Cache/private-0600.dat", noise(seed, "private", 3000), 0o600);
    writeFile("Plug-in Support/Preferences/private.xml", "<Prefs secret='1'/>\n", 0o600);
    const odd = Buffer.concat([
      Buffer.from(path.join(dir, "Metadata", "Movies") + "/latin1-"),
      Buffer.from([0xe9, 0xff, 0xfe]),
      Buffer.from(".jpg"),
    ]);
    mkdir("Metadata/Movies");
    fs.writeFileSync(odd, jpegBytes(seed, "latin1", 2048), { mode: 0o644 });
    oddMtimes.push([odd, nextMtime()]);
    stats.files++;
    stats.bytes += 2048;
  }
  const oddMtimes: [Buffer, number][] = [];

  // Identity.
  const machineIdentifier = uuidFrom(rng);
  const processed = processedMachineIdentifier(machineIdentifier);
  const plexOnlineToken = `fake-plex-token-${rng.hex(20)}`;
  const anonymousId = uuidFrom(rng);
  writeFile(
    "Preferences.xml",
    `<?xml version="1.0" encoding="utf-8"?>\n<Preferences OldestPreviousVersion="1.32.5.7349-8f4248874" MachineIdentifier="${machineIdentifier}" ProcessedMachineIdentifier="${processed}" AnonymousMachineIdentifier="${anonymousId}" MetricsEpoch="1" AcceptedEULA="1" FriendlyName="plex-vm" PublishServerOnPlexOnlineKey="1" PlexOnlineHome="1" PlexOnlineToken="${plexOnlineToken}" PlexOnlineUsername="someone" PlexOnlineMail="someone@example.com" CertificateVersion="3" LastAutomaticMappedPort="0" ManualPortMappingMode="1" TranscoderTempDirectory="/var/tmp/plex-transcode" GdmEnabled="1" DlnaEnabled="0" secureConnections="1"/>\n`,
    0o644,
  );

  // Databases (real SQLite, WAL mode, WAL-only rows).
  const libraryDb = path.join(dir, LIBRARY_DB_RELATIVE);
  const blobsDb = path.join(dir, BLOBS_DB_RELATIVE);
  mkdir(path.dirname(LIBRARY_DB_RELATIVE));
  buildDatabases({ seed, rng, libraryDb, blobsDb, mediaRoots, libraryItems, walOnlyRows });
  for (const file of fs.readdirSync(path.dirname(libraryDb))) {
    const full = path.join(path.dirname(libraryDb), file);
    fs.chmodSync(full, 0o644);
    mtimes.set(full, nextMtime());
    stats.files++;
    stats.bytes += fs.statSync(full).size;
  }
  // PMS's own dated backup next to the database (a plain copy of the main file).
  writeFile(`${LIBRARY_DB_RELATIVE}-2024-02-25`, fs.readFileSync(libraryDb), 0o644);

  // Logs, crash reports, codecs.
  writeFile(
    "Logs/Plex Media Server.log",
    `Mar 02, 2024 10:00:00.123 [140234] INFO - Plex Media Server v${plexVersion} - Ubuntu PC x86_64 - build: linux-x86_64 debian - GMT 00:00\n` +
      textBytes(rng, 48 * 1024).toString(),
  );
  for (let i = 1; i <= 3; i++) {
    writeFile(
      `Logs/Plex Media Server.${i}.log`,
      `Mar 01, 2024 0${i}:00:00.000 [140100] INFO - Plex Media Server v1.40.0.7998-c29d4c0c8 - Ubuntu PC x86_64 - build: linux-x86_64 debian - GMT 00:00\n` +
        textBytes(rng, 16 * 1024).toString(),
    );
  }
  writeFile("Logs/PMS Plugin Logs/com.plexapp.system.log", textBytes(rng, 8 * 1024));
  writeFile(
    `Crash Reports/${plexVersion}/PLEX MEDIA SERVER/${uuidFrom(rng)}.dmp`,
    noise(seed, "dmp", 20 * 1024),
  );
  const codecDir = "Codecs/EasyAudioEncoder-1785-linux-x86_64/EasyAudioEncoder";
  writeFile(`${codecDir}/EasyAudioEncoder`, noise(seed, "eae", 96 * 1024), 0o755);
  writeFile("Codecs/.device-id", `${uuidFrom(rng)}\n`);
  writeFile(
    "Codecs/libhevc_decoder-4e1c6c9-linux-x86_64/libhevc_decoder.so",
    noise(seed, "hevc", 64 * 1024),
    0o755,
  );
  writeFile(
    "Plug-in Support/Preferences/com.plexapp.system.xml",
    `<?xml version='1.0' encoding='utf-8'?>\n<PluginPreferences/>\n`,
  );
  writeFile("Plug-in Support/Data/com.plexapp.system/DictStore", noise(seed, "dictstore", 2048));
  writeFile("Setup Plex.html", "<html><body>Plex Media Server setup</body></html>\n");
  writeFile(".LocalAdminToken", `${rng.hex(24)}\n`, 0o600);

  // Metadata bundles: many small files.
  const bundleKinds = ["Movies", "TV Shows", "Artists", "Albums"];
  const agents = [
    "com.plexapp.agents.imdb",
    "com.plexapp.agents.themoviedb",
    "tv.plex.agents.movie",
  ];
  let written = 0;
  const bundles: string[] = [];
  while (written < metadataFiles) {
    const hash = rng.hex(40);
    const bundle = `Metadata/${rng.pick(bundleKinds)}/${hash[0]}/${hash.slice(1)}.bundle/Contents`;
    bundles.push(bundle);
    const agent = rng.pick(agents);
    writeFile(
      `${bundle}/${agent}/Info.xml`,
      `<?xml version="1.0" encoding="utf-8"?>\n<Movie id="${rng.hex(12)}" title="${rng.pick(WORDS)} ${rng.int(1, 999)}" year="${rng.int(1950, 2024)}">\n  <summary>${textBytes(rng, rng.int(200, 1200)).toString().replace(/[<>&]/g, " ")}</summary>\n</Movie>\n`,
    );
    written++;
    const posterName = `${agent}_${rng.hex(40)}`;
    if (written < metadataFiles) {
      writeFile(
        `${bundle}/${agent}/posters/${posterName}`,
        jpegBytes(seed, `${bundle}/p`, rng.int(1024, 40 * 1024)),
      );
      written++;
      if (symlinks)
        symlink(
          `../../${agent}/posters/${posterName}`,
          `${bundle}/_combined/posters/${posterName}`,
        );
    }
    if (written < metadataFiles) {
      writeFile(
        `${bundle}/${agent}/art/${rng.hex(40)}`,
        jpegBytes(seed, `${bundle}/a`, rng.int(1024, 40 * 1024)),
      );
      written++;
    }
  }
  if (symlinks) {
    // A link whose target is missing (PMS leaves these when it removes an agent's file).
    symlink(
      `../../com.plexapp.agents.none/posters/${rng.hex(40)}`,
      `${bundles[0]}/_combined/posters/dangling`,
    );
    symlink("Plex Media Server.log", "Logs/latest.log");
  }

  // Names with spaces and non-ASCII characters.
  if (unicodeNames) {
    writeFile(
      "Plug-in Support/Data/com.plexapp.agents.localmedia/Amélie (2001) – Extras/poster ファイル.jpg",
      jpegBytes(seed, "amelie", 12 * 1024),
    );
    writeFile(
      "Plug-in Support/Data/com.plexapp.agents.localmedia/Ünïcødé 🎬 name/notes 'quoted' \"double\".txt",
      "spaces, quotes and unicode\n",
    );
    writeFile("Metadata/Artists/Sigur Rós/Ágætis byrjun.xml", '<Album title="Ágætis byrjun"/>\n');
  }

  if (options.awkwardShapes) writeAwkwardShapes();

  // Sparse files, tiny files.
  for (let i = 0; i < (options.sparseFiles ?? 0); i++) {
    writeSparseFile(`Media/localhost/sparse/${rng.hex(20)}.bif`, 8 * MiB, [0, 3 * MiB, 8 * MiB]);
  }
  if (options.hugeSparseFileBytes) {
    const length = options.hugeSparseFileBytes;
    writeSparseFile("Media/localhost/huge/index-4k.bif", length, [
      0,
      Math.floor(length / 2),
      length,
    ]);
  }
  for (let i = 0; i < (options.tinyFiles ?? 0); i++) {
    const relative = `Media/localhost/tiny/${String(Math.floor(i / 1000)).padStart(4, "0")}/${rng.hex(12)}.xml`;
    if (i % 1000 === 0) mkdir(path.dirname(relative));
    const full = path.join(dir, relative);
    const content = `<i n="${i}">${rng.hex(rng.int(2, 90))}</i>\n`;
    fs.writeFileSync(full, content);
    mtimes.set(full, nextMtime());
    stats.files++;
    stats.bytes += content.length;
  }

  // Large files.
  for (let i = 0; i < largeFiles; i++) {
    writeLargeFile(
      `Media/localhost/${rng.hex(1)}/${rng.hex(39)}.bundle/Contents/Indexes/index-sd.bif`,
      largeFileBytes,
      "noise",
    );
  }

  // Empty directories.
  if (emptyDirectories) {
    for (const empty of [
      "Cache/Transcode/Sessions",
      "Plug-in Support/Caches",
      "Diagnostics",
      "Updates",
      "Metadata/Photos",
    ]) {
      mkdir(empty);
    }
  }
  writeFile("Cache/CloudAccess.dat", noise(seed, "cloudaccess", 512));

  // Filler up to totalBytes.
  if (options.totalBytes !== undefined) {
    let filler = 0;
    while (stats.bytes < options.totalBytes) {
      const remaining = options.totalBytes - stats.bytes;
      const compressible = rng.next() < compressibleFraction;
      const size = Math.max(
        1,
        Math.min(
          remaining,
          compressible ? rng.int(64 * 1024, 512 * 1024) : rng.int(256 * 1024, 2 * MiB),
        ),
      );
      const h = rng.hex(40);
      const relative = compressible
        ? `Plug-in Support/Data/com.plexapp.system/StoredValues/${h[0]}/${h.slice(1, 12)}.log`
        : filler % 3 === 0
          ? `Cache/PhotoTranscoder/${h.slice(0, 2)}/${h}.jpg`
          : `Media/localhost/${h[0]}/${h.slice(1)}.bundle/Contents/Thumbnails/thumb${filler % 7}.jpg`;
      writeLargeFile(relative, size, compressible ? "text" : "jpeg");
      filler++;
    }
  }

  // Mtimes last, deepest first, so writing children does not disturb a parent's mtime.
  const directories: string[] = [];
  const walk = (current: string) => {
    directories.push(current);
    for (const entry of fs.readdirSync(current, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(path.join(current, entry.name));
    }
  };
  walk(dir);
  for (const [file, mtime] of mtimes) {
    if (fs.lstatSync(file).isSymbolicLink()) fs.lutimesSync(file, mtime, mtime);
    else fs.utimesSync(file, mtime, mtime);
  }
  for (const [file, mtime] of oddMtimes) fs.utimesSync(file, mtime, mtime);
  for (const directory of directories.reverse()) {
    const mtime = nextMtime();
    fs.utimesSync(directory, mtime, mtime);
  }

  return {
    dataDir: dir,
    plexVersion,
    machineIdentifier,
    processedMachineIdentifier: processed,
    plexOnlineToken,
    mediaRoots: [...mediaRoots],
    libraryDb,
    blobsDb,
    libraryItems: libraryItems + walOnlyRows,
    walOnlyRows,
    files: stats.files,
    directories: stats.directories,
    symlinks: stats.symlinks,
    bytes: stats.bytes,
  };
}

interface DatabaseBuild {
  seed: number;
  rng: SampleRandom;
  libraryDb: string;
  blobsDb: string;
  mediaRoots: string[];
  libraryItems: number;
  walOnlyRows: number;
}

/**
 * Builds both databases in a scratch directory, checkpoints the base rows into the main file,
 * commits `walOnlyRows` more, and copies the main file and its -wal while the connection is still
 * open (closing would checkpoint them away): the state an unclean stop leaves behind.
 */
function buildDatabases(build: DatabaseBuild): void {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "plex-tree-db-"));
  try {
    const library = new Database(path.join(scratch, "library.db"));
    const blobs = new Database(path.join(scratch, "blobs.db"));
    try {
      for (const db of [library, blobs]) {
        db.pragma("journal_mode = WAL");
        db.pragma("wal_autocheckpoint = 0");
      }
      library.exec(LIBRARY_SCHEMA);
      blobs.exec(BLOBS_SCHEMA);
      const insertItems = fillLibrary(build, library, blobs);
      insertItems(0, build.libraryItems);
      for (const db of [library, blobs]) db.pragma("wal_checkpoint(TRUNCATE)");
      insertItems(build.libraryItems, build.walOnlyRows);

      for (const [db, target] of [
        [library, build.libraryDb],
        [blobs, build.blobsDb],
      ] as const) {
        const source = db.name;
        fs.copyFileSync(source, target);
        if (fs.existsSync(`${source}-wal`) && fs.statSync(`${source}-wal`).size > 0) {
          fs.copyFileSync(`${source}-wal`, `${target}-wal`);
          resaltWal(`${target}-wal`, build.rng);
        }
      }
    } finally {
      library.close();
      blobs.close();
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * SQLite picks random WAL salts; replace them with seeded ones and recompute the cumulative
 * checksums (https://sqlite.org/fileformat2.html#walformat) so the tree is reproducible byte for byte.
 */
function resaltWal(file: string, rng: SampleRandom): void {
  const wal = fs.readFileSync(file);
  const magic = wal.readUInt32BE(0);
  if (magic !== 0x377f0682 && magic !== 0x377f0683) throw new Error(`${file}: not a WAL file`);
  const bigEndian = magic === 0x377f0683;
  const pageSize = wal.readUInt32BE(8);
  const salt1 = Math.floor(rng.next() * 0x100000000);
  const salt2 = Math.floor(rng.next() * 0x100000000);
  const checksum = (start: number, end: number, s: [number, number]): [number, number] => {
    let [s0, s1] = s;
    for (let i = start; i < end; i += 8) {
      const x0 = bigEndian ? wal.readUInt32BE(i) : wal.readUInt32LE(i);
      const x1 = bigEndian ? wal.readUInt32BE(i + 4) : wal.readUInt32LE(i + 4);
      s0 = (s0 + x0 + s1) >>> 0;
      s1 = (s1 + x1 + s0) >>> 0;
    }
    return [s0, s1];
  };
  wal.writeUInt32BE(salt1, 16);
  wal.writeUInt32BE(salt2, 20);
  let sum = checksum(0, 24, [0, 0]);
  wal.writeUInt32BE(sum[0], 24);
  wal.writeUInt32BE(sum[1], 28);
  for (let frame = 32; frame + 24 + pageSize <= wal.length; frame += 24 + pageSize) {
    wal.writeUInt32BE(salt1, frame + 8);
    wal.writeUInt32BE(salt2, frame + 12);
    sum = checksum(frame, frame + 8, sum);
    sum = checksum(frame + 24, frame + 24 + pageSize, sum);
    wal.writeUInt32BE(sum[0], frame + 16);
    wal.writeUInt32BE(sum[1], frame + 20);
  }
  fs.writeFileSync(file, wal);
}

function fillLibrary(build: DatabaseBuild, library: Database.Database, blobs: Database.Database) {
  const { rng, mediaRoots } = build;
  library
    .prepare("INSERT INTO accounts (id, name, created_at) VALUES (1, 'someone', 1704067200)")
    .run();
  const sectionIds: number[] = [];
  mediaRoots.forEach((root, index) => {
    const id = index + 1;
    const name = path.basename(root);
    library
      .prepare(
        "INSERT INTO library_sections (id, name, section_type, language, agent, scanner, uuid, created_at, updated_at) VALUES (?, ?, ?, 'en-US', 'tv.plex.agents.movie', 'Plex Movie', ?, 1704067200, 1704067200)",
      )
      .run(id, name, /tv|show/i.test(name) ? 2 : 1, uuidFrom(rng));
    library
      .prepare(
        "INSERT INTO section_locations (id, library_section_id, root_path, created_at, updated_at) VALUES (?, ?, ?, 1704067200, 1704067200)",
      )
      .run(id, id, root);
    sectionIds.push(id);
  });
  const insertMetadata = library.prepare(
    "INSERT INTO metadata_items (id, library_section_id, metadata_type, guid, title, year, added_at, updated_at) VALUES (?, ?, 1, ?, ?, ?, ?, ?)",
  );
  const insertMedia = library.prepare(
    "INSERT INTO media_items (id, library_section_id, section_location_id, metadata_item_id, size, duration, container, video_codec, audio_codec) VALUES (?, ?, ?, ?, ?, ?, 'mkv', 'h264', 'aac')",
  );
  const insertPart = library.prepare(
    "INSERT INTO media_parts (id, media_item_id, file, size, duration, hash) VALUES (?, ?, ?, ?, ?, ?)",
  );
  const insertSetting = library.prepare(
    "INSERT INTO metadata_item_settings (id, account_id, guid, view_count, last_viewed_at, rating) VALUES (?, 1, ?, ?, ?, ?)",
  );
  const insertBlob = blobs.prepare(
    "INSERT INTO blobs (id, blob_type, linked_type, linked_id, linked_guid, blob, created_at) VALUES (?, 1, 'metadata_item', ?, ?, ?, ?)",
  );
  return (first: number, count: number) => {
    library.transaction(() => {
      for (let i = first; i < first + count; i++) {
        const id = i + 1;
        const section = sectionIds[i % sectionIds.length];
        const title = `${rng.pick(WORDS)} ${rng.pick(WORDS)} ${id}`;
        const year = rng.int(1950, 2024);
        const guid = `plex://movie/${rng.hex(24)}`;
        const added = EPOCH_BASE + rng.int(0, 30_000_000);
        insertMetadata.run(id, section, guid, title, year, added, added);
        const size = rng.int(500_000_000, 9_000_000_000);
        insertMedia.run(id, section, section, id, size, rng.int(3_000_000, 9_000_000));
        const file = `${mediaRoots[(section - 1) % mediaRoots.length]}/${title} (${year})/${title} (${year}).mkv`;
        insertPart.run(id, id, file, size, rng.int(3_000_000, 9_000_000), rng.hex(40));
        insertSetting.run(id, guid, rng.int(0, 5), added + rng.int(0, 1_000_000), rng.int(0, 10));
      }
    })();
    blobs.transaction(() => {
      for (let i = first; i < first + count; i++) {
        insertBlob.run(
          i + 1,
          i + 1,
          `plex://movie/${i + 1}`,
          noise(build.seed, `blob${i}`, rng.int(64, 1024)),
          EPOCH_BASE + i,
        );
      }
    })();
  };
}

/** A subset of PMS's schema with the columns that carry library paths (section_locations, media_parts). */
const LIBRARY_SCHEMA = `
CREATE TABLE accounts (id INTEGER PRIMARY KEY, name varchar(255), hashed_password varchar(255), salt varchar(255), created_at datetime, updated_at datetime, default_audio_language varchar(255), default_subtitle_language varchar(255), auto_select_subtitle boolean, auto_select_audio boolean);
CREATE TABLE library_sections (id INTEGER PRIMARY KEY, library_id integer, name varchar(255), name_sort varchar(255), section_type integer, language varchar(255), agent varchar(255), scanner varchar(255), user_thumb_url varchar(255), user_art_url varchar(255), user_theme_music_url varchar(255), public boolean, created_at datetime, updated_at datetime, scanned_at datetime, display_secondary_level boolean, user_fields varchar(255), query_xml text, query_type integer, uuid varchar(255), changed_at integer8 default '0', content_changed_at integer8 default '0');
CREATE TABLE section_locations (id INTEGER PRIMARY KEY, library_section_id integer, root_path varchar(255), available boolean default 't', scanned_at datetime, created_at datetime, updated_at datetime);
CREATE TABLE metadata_items (id INTEGER PRIMARY KEY, library_section_id integer, parent_id integer, metadata_type integer, guid varchar(255), media_item_count integer, title varchar(255), title_sort varchar(255), original_title varchar(255), studio varchar(255), rating float, rating_count integer, tagline varchar(255), summary text, trivia text, quotes text, content_rating varchar(255), content_rating_age integer, "index" integer, absolute_index integer, duration integer, user_thumb_url varchar(255), user_art_url varchar(255), user_banner_url varchar(255), user_music_url varchar(255), user_fields varchar(255), tags_genre varchar(255), tags_collection varchar(255), tags_director varchar(255), tags_writer varchar(255), tags_star varchar(255), originally_available_at datetime, available_at datetime, expires_at datetime, refreshed_at datetime, year integer, added_at datetime, created_at datetime, updated_at datetime, deleted_at datetime, tags_country varchar(255), extra_data varchar(255), hash varchar(255), audience_rating float, changed_at integer8 default '0', resources_changed_at integer8 default '0', remote integer);
CREATE INDEX index_metadata_items_on_library_section_id ON metadata_items (library_section_id);
CREATE INDEX index_metadata_items_on_guid ON metadata_items (guid);
CREATE TABLE media_items (id INTEGER PRIMARY KEY, library_section_id integer, section_location_id integer, metadata_item_id integer, type_id integer, width integer, height integer, size integer(8), duration integer, bitrate integer, container varchar(255), video_codec varchar(255), audio_codec varchar(255), display_aspect_ratio float, frames_per_second float, audio_channels integer, interlaced boolean, source varchar(255), hints varchar(255), display_offset integer, settings varchar(255), created_at datetime, updated_at datetime, optimized_for_streaming boolean, deleted_at datetime, media_analysis_version integer default '0', sample_aspect_ratio float, extra_data varchar(255), proxy_type integer, channel_id integer, begins_at datetime, ends_at datetime, color_trc varchar(255));
CREATE INDEX index_media_items_on_metadata_item_id ON media_items (metadata_item_id);
CREATE TABLE media_parts (id INTEGER PRIMARY KEY, media_item_id integer, directory_id integer, hash varchar(255), open_subtitle_hash varchar(255), file varchar(255), "index" integer, size integer(8), duration integer, created_at datetime, updated_at datetime, deleted_at datetime, extra_data varchar(255));
CREATE INDEX index_media_parts_on_media_item_id ON media_parts (media_item_id);
CREATE INDEX index_media_parts_on_file ON media_parts (file);
CREATE TABLE media_streams (id INTEGER PRIMARY KEY, stream_type_id integer, media_item_id integer, url varchar(255), codec varchar(255), language varchar(255), created_at datetime, updated_at datetime, "index" integer, media_part_id integer, channels integer, bitrate integer, url_index integer, "default" boolean default 'f', forced boolean default 'f', extra_data varchar(255));
CREATE TABLE metadata_item_settings (id INTEGER PRIMARY KEY, account_id integer NOT NULL, guid varchar(255) NOT NULL, rating float, view_offset integer, view_count integer, last_viewed_at datetime, created_at datetime, updated_at datetime, skip_count integer default 0, last_skipped_at datetime default NULL, changed_at integer8 default '0', extra_data varchar(255), last_rated_at datetime);
CREATE INDEX index_metadata_item_settings_on_guid ON metadata_item_settings (guid);
CREATE TABLE preferences (id INTEGER PRIMARY KEY, name varchar(255), value varchar(255));
CREATE TABLE schema_migrations (version varchar(255) NOT NULL);
CREATE UNIQUE INDEX unique_schema_migrations ON schema_migrations (version);
INSERT INTO schema_migrations (version) VALUES ('20240101000000');
`;

const BLOBS_SCHEMA = `
CREATE TABLE blobs (id INTEGER PRIMARY KEY, blob_type integer, linked_type varchar(255), linked_id integer, linked_guid varchar(255), linked_column varchar(255), blob blob, created_at datetime, updated_at datetime);
CREATE INDEX index_blobs_on_linked_type_and_linked_id ON blobs (linked_type, linked_id);
CREATE TABLE schema_migrations (version varchar(255) NOT NULL);
INSERT INTO schema_migrations (version) VALUES ('20240101000000');
`;

// Tree digest.

export type TreeEntryType = "file" | "directory" | "symlink" | "other";

/** One entry of a tree, relative to its root ("." is the root itself). */
export interface TreeEntry {
  /** Relative path, see {@link displayName}. */
  path: string;
  type: TreeEntryType;
  /** Permission bits (mode & 0o7777); 0 for symlinks (Linux ignores them). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of a regular file; 0 otherwise. */
  size: number;
  /** Whole seconds since the epoch (tar keeps whole seconds); 0 for symlinks. */
  mtime: number;
  /** The nanoseconds of the mtime; 0 for symlinks. */
  mtimeNs: number;
  /** sha256 of a regular file's content; "" otherwise. */
  sha256: string;
  /** Target of a symlink; "" otherwise. */
  linkTarget: string;
  /** For a file with more than one link: the first path of its link group, else "". */
  hardLinkOf: string;
  /** A regular file with fewer blocks allocated than its length needs (holes). */
  sparse: boolean;
}

export interface TreeDigest {
  root: string;
  entries: TreeEntry[];
  files: number;
  bytes: number;
  /** sha256 over every entry line: equal digests mean equal trees. */
  sha256: string;
}

export interface TreeDigestOptions {
  /** Relative paths (or path prefixes ending in "/") to leave out, e.g. ["Cache/"]. */
  exclude?: string[];
}

/** A file name as text: UTF-8 where it is valid, other bytes as \xNN; "\" and newlines escaped. */
export function displayName(name: Buffer): string {
  const decoded = name.toString("utf8");
  let text = "";
  if (Buffer.from(decoded, "utf8").equals(name)) {
    text = decoded.replace(/\\/g, "\\\\");
  } else {
    for (const byte of name) {
      if (byte === 0x5c) text += "\\\\";
      else if (byte < 0x80) text += String.fromCharCode(byte);
      else text += `\\x${byte.toString(16).padStart(2, "0")}`;
    }
  }
  return text.replace(/\n/g, "\\n");
}

/** Walks `root` (without following symlinks) and records every entry with a content hash. */
export async function digestTree(
  root: string,
  options: TreeDigestOptions = {},
): Promise<TreeDigest> {
  const entries: TreeEntry[] = [];
  const excluded = (relative: string) =>
    (options.exclude ?? []).some((ex) =>
      ex.endsWith("/") ? relative === ex.slice(0, -1) || relative.startsWith(ex) : relative === ex,
    );
  const linkGroups = new Map<string, { first: string; sha256: string }>();
  const visit = async (full: Buffer, relative: string) => {
    if (relative !== "." && excluded(relative)) return;
    const st = await fs.promises.lstat(full, { bigint: true });
    const mtime = Number(st.mtimeMs / 1000n);
    const mtimeNs = Number(st.mtimeNs % 1_000_000_000n);
    const base = {
      path: relative,
      uid: Number(st.uid),
      gid: Number(st.gid),
      mode: Number(st.mode & 0o7777n),
      size: 0,
      mtime,
      mtimeNs,
      sha256: "",
      linkTarget: "",
      hardLinkOf: "",
      sparse: false,
    };
    if (st.isSymbolicLink()) {
      const target = (await fs.promises.readlink(full, { encoding: "buffer" })) as Buffer;
      entries.push({
        ...base,
        type: "symlink",
        mode: 0,
        mtime: 0,
        mtimeNs: 0,
        linkTarget: displayName(target),
      });
    } else if (st.isDirectory()) {
      entries.push({ ...base, type: "directory" });
      const names = ((await fs.promises.readdir(full, { encoding: "buffer" })) as Buffer[]).sort(
        Buffer.compare,
      );
      for (const name of names) {
        const child = Buffer.concat([full, Buffer.from("/"), name]);
        await visit(
          child,
          relative === "." ? displayName(name) : `${relative}/${displayName(name)}`,
        );
      }
    } else if (st.isFile()) {
      const size = Number(st.size);
      const sparse = size > 0 && Number(st.blocks) * 512 < size;
      let hardLinkOf = "";
      let sha256: string;
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        const group = linkGroups.get(key);
        if (group) {
          hardLinkOf = group.first;
          sha256 = group.sha256;
        } else {
          sha256 = await sha256File(full);
          linkGroups.set(key, { first: relative, sha256 });
        }
      } else {
        sha256 = await sha256File(full);
      }
      entries.push({ ...base, type: "file", size, sha256, hardLinkOf, sparse });
    } else {
      entries.push({ ...base, type: "other" });
    }
  };
  await visit(Buffer.from(root), ".");
  const total = crypto.createHash("sha256");
  for (const entry of entries) total.update(`${entryLine(entry)}\n`);
  const files = entries.filter((e) => e.type === "file");
  return {
    root,
    entries,
    files: files.length,
    bytes: files.reduce((sum, e) => sum + e.size, 0),
    sha256: total.digest("hex"),
  };
}

export interface CompareOptions {
  /** Compare owners too (true when both trees were written as root with numeric owners). @default false */
  owners?: boolean;
  /** Compare directory mtimes (the root's own mtime is never compared). @default true */
  directoryMtimes?: boolean;
  /** Compare the nanoseconds of mtimes (a copy that keeps them, like rsync -t). @default false */
  nanoseconds?: boolean;
  /** Compare which files are sparse (a copy that keeps holes, like rsync -S). @default false */
  sparse?: boolean;
  /** Expected owner of every entry of `actual` instead of `expected`'s (a copy made with --chown). */
  owner?: { uid: number; gid: number };
}

/** Differences between two digests, one readable line each; empty means identical trees. */
export function compareTrees(
  expected: TreeDigest,
  actual: TreeDigest,
  options: CompareOptions = {},
): string[] {
  const owners = options.owners ?? false;
  const directoryMtimes = options.directoryMtimes ?? true;
  const differences: string[] = [];
  const byPath = new Map(actual.entries.map((e) => [e.path, e]));
  for (const want of expected.entries) {
    const got = byPath.get(want.path);
    byPath.delete(want.path);
    if (!got) {
      differences.push(`missing: ${want.path} (${want.type})`);
      continue;
    }
    const fields: (keyof TreeEntry)[] = [
      "type",
      "mode",
      "size",
      "sha256",
      "linkTarget",
      "hardLinkOf",
    ];
    const timed = want.type !== "directory" || (directoryMtimes && want.path !== ".");
    if (timed) fields.push("mtime");
    if (timed && options.nanoseconds) fields.push("mtimeNs");
    if (options.sparse) fields.push("sparse");
    if (owners) fields.push("uid", "gid");
    for (const field of fields) {
      if (want.path === "." && field === "mode") continue;
      if (want[field] !== got[field]) {
        differences.push(`${want.path}: ${field} ${String(want[field])} != ${String(got[field])}`);
      }
    }
    if (
      options.owner &&
      want.path !== "." &&
      (got.uid !== options.owner.uid || got.gid !== options.owner.gid)
    ) {
      differences.push(
        `${want.path}: owner ${got.uid}:${got.gid} != ${options.owner.uid}:${options.owner.gid}`,
      );
    }
  }
  for (const extra of byPath.keys()) differences.push(`unexpected: ${extra}`);
  return differences;
}

function entryLine(e: TreeEntry): string {
  return [
    e.path,
    e.type,
    e.mode.toString(8),
    e.uid,
    e.gid,
    e.size,
    e.mtime,
    e.mtimeNs,
    e.sha256,
    e.linkTarget,
    e.hardLinkOf,
    e.sparse,
  ].join("\t");
}

/** sha256 (hex) of a file's content, streamed. */
export async function sha256File(file: string | Buffer): Promise<string> {
  const hash = crypto.createHash("sha256");
  // Small files in one read: streams cost more than hashing for thousands of posters.
  if ((await fs.promises.stat(file)).size <= 8 * MiB) {
    return hash.update(await fs.promises.readFile(file)).digest("hex");
  }
  for await (const chunk of fs.createReadStream(file, { highWaterMark: MiB }))
    hash.update(chunk as Buffer);
  return hash.digest("hex");
}
