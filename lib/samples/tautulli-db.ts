/**
 * Generates realistic `tautulli.db` files in the real Tautulli schemas (the vendored
 * `reference/tautulli/schema-current.sql` = v2.17.2, or `schema-v2.1.sql`): every table populated
 * the way Tautulli writes it (reference/tautulli/NOTES.md §1-§6): one play = one row in each of the three
 * `session_history*` tables with the same id (a few plays miss one of them, as three separate
 * commits can), `''` in the integer columns Plex leaves empty, epoch seconds, millisecond
 * durations, JSON configs holding secrets, `;`-joined cast lists. Optionally adds the hostile
 * rows of `tautulli-hostile.ts` and leaves rows uncheckpointed in a `-wal` file.
 *
 * Used by the import tests, `npm run bench:import` (millions of rows) and `npm run rehearse`.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import Database from "better-sqlite3";
import { REFERENCE_FILES } from "../postgres/tautulli-reference";
import { SampleRandom } from "./random";
import { addHostileRows, HostileCell } from "./tautulli-hostile";

export type TautulliSchemaName = "current" | "v2.1";

export type SqliteValue = string | number | bigint | Buffer | null;

export interface TautulliSampleOptions {
  /** Which real schema to create. @default "current" */
  schema?: TautulliSchemaName;
  /** Plays: rows of session_history (and, for ~99% of them, of _metadata and _media_info). @default 200 */
  plays?: number;
  /** Rows of notify_log. @default half of `plays` */
  notifications?: number;
  /** Plex users besides the seeded 'Local' one. @default 12 */
  users?: number;
  /** Seed of the pseudo-random content. @default 1 */
  seed?: number;
  /** Add the hostile rows (tautulli-hostile.ts). @default false */
  hostile?: boolean;
  /** Size of the one huge text value of the hostile rows. @default 2 MiB */
  hugeTextBytes?: number;
  /**
   * Plays written last and left only in the `-wal` file beside the database (as a killed or
   * still-running Tautulli leaves them). 0 = a cleanly closed database without `-wal`. @default 0
   */
  uncheckpointedPlays?: number;
  /**
   * Add the rows an old Tautulli left behind that today's dbcheck() deletes at start
   * (lib/import/dbcheck.ts), where the schema can hold them: duplicate lookup rows (the same
   * lookup stored twice by concurrent requests before the unique indexes existed, NULL keys
   * included), an http image, libraries with an empty server_id, and PlexPy's 2017
   * mobile_devices table (device_token as its key, no device_id). The rating_key indexes of
   * tvmaze/themoviedb/musicbrainz_lookup exist since those tables do, so the file is given the
   * shape of one that lost them; the column-level UNIQUE of the current schema's
   * image_hash_lookup.img_hash keeps its duplicates out. @default false
   */
  upgradeLeftovers?: boolean;
  /** Called every 50,000 rows while generating big databases. */
  onProgress?: (rowsWritten: number) => void;
}

export interface TautulliSample {
  path: string;
  schema: TautulliSchemaName;
  /** Rows per table as SQLite counts them (the `-wal` content included). */
  rowCounts: Record<string, number>;
  /** Bytes of the `-wal` file left beside the database (0 when none). */
  walBytes: number;
  /** The hostile values written and what PostgreSQL must hold for each (empty unless hostile). */
  hostileCells: HostileCell[];
  /** `sqlite_sequence.seq` of session_history: larger than max(id) (the last play was deleted). */
  sessionHistorySeq: number;
}

/**
 * Tables this generator leaves empty on purpose (a real install that never used Cloudinary),
 * unless `upgradeLeftovers` adds its duplicates.
 */
export const ALWAYS_EMPTY_TABLES = ["cloudinary_lookup"] as const;

// Word pools.

const FIRST = [
  "Anna",
  "Ben",
  "Chloé",
  "Dmitri",
  "Eva",
  "Farid",
  "Grace",
  "Hiro",
  "Ines",
  "Jonas",
  "Kemal",
  "Lena",
  "Mateo",
  "Nora",
  "Oskar",
  "Priya",
  "Quinn",
  "Rosa",
  "Sven",
  "Tomás",
];
const LAST = [
  "Meyer",
  "Okafor",
  "Dubois",
  "Ivanova",
  "Tanaka",
  "Rossi",
  "Novak",
  "García",
  "Larsen",
  "Kowalski",
  "Silva",
  "Haddad",
  "O'Brien",
  "Nguyen",
];
const WORDS = [
  "the",
  "night",
  "river",
  "last",
  "empire",
  "garden",
  "silent",
  "city",
  "winter",
  "ghost",
  "house",
  "signal",
  "blue",
  "broken",
  "light",
  "storm",
  "road",
  "north",
  "island",
  "secret",
  "return",
  "machine",
  "heart",
  "fire",
  "glass",
  "echo",
  "shadow",
  "kingdom",
  "wolf",
  "dream",
];
const GENRES = [
  "Drama",
  "Comedy",
  "Thriller",
  "Science Fiction",
  "Animation",
  "Documentary",
  "Crime",
  "Romance",
  "Horror",
  "Adventure",
  "Family",
  "Mystery",
];
const STUDIOS = ["A24", "Studio Ghibli", "Warner Bros.", "BBC", "HBO", "Netflix", "Pathé", "Toho"];
const PLAYERS = [
  {
    player: "Living Room",
    product: "Plex for Android (TV)",
    platform: "Android",
    platformVersion: "12",
    version: "10.12.0.1234",
  },
  {
    player: "iPhone",
    product: "Plex for iOS",
    platform: "iOS",
    platformVersion: "17.4",
    version: "8.38",
  },
  {
    player: "Chrome",
    product: "Plex Web",
    platform: "Chrome",
    platformVersion: "124.0",
    version: "4.128.1",
  },
  {
    player: "SHIELD",
    product: "Plex for Android (TV)",
    platform: "Android",
    platformVersion: "11",
    version: "10.10.1.612",
  },
  {
    player: "LG OLED",
    product: "Plex for LG",
    platform: "webOS",
    platformVersion: "6.3",
    version: "1.42.0",
  },
  {
    player: "Roku Ultra",
    product: "Plex for Roku",
    platform: "Roku",
    platformVersion: "12.5",
    version: "8.2.1",
  },
];
const QUALITY = ["Original", "20 Mbps 1080p", "8 Mbps 1080p", "4 Mbps 720p", "2 Mbps 720p"];
const DECISIONS = ["direct play", "direct play", "direct play", "copy", "transcode"];
const RESOLUTIONS = [
  { res: "1080", w: 1920, h: 1080 },
  { res: "4k", w: 3840, h: 2160 },
  { res: "720", w: 1280, h: 720 },
  { res: "sd", w: 720, h: 480 },
];
const LANGS = [
  ["English", "eng"],
  ["Deutsch", "deu"],
  ["Français", "fra"],
  ["日本語", "jpn"],
  ["Español", "spa"],
];

interface Library {
  sectionId: number;
  name: string;
  sectionType: string;
  mediaType: string;
}

const LIBRARIES: Library[] = [
  { sectionId: 1, name: "Movies", sectionType: "movie", mediaType: "movie" },
  { sectionId: 2, name: "TV Shows", sectionType: "show", mediaType: "episode" },
  { sectionId: 3, name: "Music", sectionType: "artist", mediaType: "track" },
  { sectionId: 4, name: "Photos", sectionType: "photo", mediaType: "photo" },
  { sectionId: 999999, name: "Live TV", sectionType: "live", mediaType: "episode" },
];

interface User {
  userId: number;
  username: string;
  friendlyName: string;
}

interface Play {
  id: number;
  referenceId: number;
  user: User;
  library: Library;
  mediaType: string;
  ratingKey: number;
  parentRatingKey: number | "";
  grandparentRatingKey: number | "";
  title: string;
  parentTitle: string;
  grandparentTitle: string;
  started: number;
  stopped: number;
  durationMs: number;
  viewOffsetMs: number;
  pausedCounter: number;
  device: (typeof PLAYERS)[number];
  machineId: string;
  ip: string;
  wan: boolean;
  decision: string;
  resolution: (typeof RESOLUTIONS)[number];
  year: number;
  live: boolean;
  mediaIndex: number | "";
  parentMediaIndex: number | "";
}

/** Context a column generator sees. */
interface RowContext {
  rng: SampleRandom;
  /** 0-based row number within the table. */
  index: number;
  play: Play;
  users: User[];
}

type ColumnGenerator = (ctx: RowContext) => SqliteValue;
type TableGenerators = Record<string, ColumnGenerator>;

const EPOCH_2019 = 1546300800;

function json(value: unknown): string {
  return JSON.stringify(value);
}

// Column generators per table.

const blankOr =
  (p: number, value: () => SqliteValue): ColumnGenerator =>
  (ctx) =>
    ctx.rng.chance(p) ? "" : value();

const sessionHistory: TableGenerators = {
  id: ({ play }) => play.id,
  reference_id: ({ play }) => play.referenceId,
  started: ({ play }) => play.started,
  stopped: ({ play }) => play.stopped,
  rating_key: ({ play }) => play.ratingKey,
  user_id: ({ play }) => play.user.userId,
  user: ({ play }) => play.user.username,
  ip_address: ({ play }) => play.ip,
  paused_counter: ({ play }) => play.pausedCounter,
  player: ({ play }) => play.device.player,
  product: ({ play }) => play.device.product,
  product_version: ({ play }) => play.device.version,
  platform: ({ play }) => play.device.platform,
  platform_version: ({ play }) => play.device.platformVersion,
  profile: ({ play }) => (play.device.platform === "Chrome" ? "Web" : play.device.platform),
  machine_id: ({ play }) => play.machineId,
  bandwidth: (ctx) => (ctx.rng.chance(0.05) ? "" : ctx.rng.int(2000, 40000)),
  location: ({ play }) => (play.wan ? "wan" : "lan"),
  quality_profile: (ctx) => ctx.rng.pick(QUALITY),
  secure: (ctx) => (ctx.rng.chance(0.03) ? null : ctx.rng.chance(0.9) ? 1 : 0),
  relayed: (ctx) => (ctx.rng.chance(0.05) ? 1 : 0),
  parent_rating_key: ({ play }) => play.parentRatingKey,
  grandparent_rating_key: ({ play }) => play.grandparentRatingKey,
  media_type: ({ play }) => play.mediaType,
  section_id: ({ play }) => play.library.sectionId,
  view_offset: ({ play }) => play.viewOffsetMs,
};

const CAST = Array.from(
  { length: 80 },
  (_, i) => `${FIRST[i % FIRST.length]} ${LAST[(i * 7) % LAST.length]}`,
);

const sessionHistoryMetadata: TableGenerators = {
  id: ({ play }) => play.id,
  rating_key: ({ play }) => play.ratingKey,
  parent_rating_key: ({ play }) => play.parentRatingKey,
  grandparent_rating_key: ({ play }) => play.grandparentRatingKey,
  title: ({ play }) => play.title,
  parent_title: ({ play }) => play.parentTitle,
  grandparent_title: ({ play }) => play.grandparentTitle,
  original_title: (ctx) => (ctx.rng.chance(0.1) ? ctx.rng.words(WORDS, 2) : ""),
  full_title: ({ play }) =>
    play.grandparentTitle ? `${play.grandparentTitle} - ${play.title}` : play.title,
  media_index: ({ play }) => play.mediaIndex,
  parent_media_index: ({ play }) => play.parentMediaIndex,
  thumb: ({ play }) =>
    `/library/metadata/${play.ratingKey}/thumb/${1600000000 + (play.ratingKey % 9999)}`,
  parent_thumb: ({ play }) =>
    play.parentRatingKey === "" ? "" : `/library/metadata/${play.parentRatingKey}/thumb/1650000000`,
  grandparent_thumb: ({ play }) =>
    play.grandparentRatingKey === ""
      ? ""
      : `/library/metadata/${play.grandparentRatingKey}/thumb/1650000000`,
  art: ({ play }) => `/library/metadata/${play.ratingKey}/art/1650000001`,
  media_type: ({ play }) => play.mediaType,
  year: ({ play }) => (play.mediaType === "track" && play.ratingKey % 3 === 0 ? "" : play.year),
  originally_available_at: ({ play }) =>
    play.ratingKey % 11 === 0
      ? ""
      : `${play.year}-${String((play.ratingKey % 12) + 1).padStart(2, "0")}-${String((play.ratingKey % 28) + 1).padStart(2, "0")}`,
  added_at: blankOr(0.02, () => EPOCH_2019 - 86400 * 30),
  updated_at: (ctx) =>
    ctx.rng.chance(0.02) ? "" : ctx.play.started - ctx.rng.int(3600, 86400 * 200),
  last_viewed_at: (ctx) => (ctx.rng.chance(0.1) ? "" : ctx.play.stopped),
  content_rating: (ctx) => ctx.rng.pick(["PG-13", "R", "TV-MA", "TV-14", "FSK 12", ""]),
  summary: (ctx) => capitalise(ctx.rng.words(WORDS, ctx.rng.int(40, 90))) + ".",
  tagline: (ctx) => (ctx.rng.chance(0.5) ? capitalise(ctx.rng.words(WORDS, 5)) + "." : ""),
  rating: (ctx) => (ctx.rng.int(30, 95) / 10).toFixed(1),
  duration: ({ play }) => play.durationMs,
  guid: ({ play }) =>
    `plex://${play.mediaType}/5d77${(play.ratingKey * 2654435761).toString(16).padStart(20, "0").slice(-20)}`,
  directors: (ctx) => ctx.rng.words(CAST, ctx.rng.int(1, 2), ";"),
  writers: (ctx) => ctx.rng.words(CAST, ctx.rng.int(1, 3), ";"),
  actors: (ctx) => ctx.rng.words(CAST, ctx.rng.int(5, 15), ";"),
  genres: (ctx) => ctx.rng.words(GENRES, ctx.rng.int(1, 3), ";"),
  studio: (ctx) => ctx.rng.pick(STUDIOS),
  labels: (ctx) => (ctx.rng.chance(0.1) ? "Kids" : ""),
  live: ({ play }) => (play.live ? 1 : 0),
  channel_call_sign: ({ play }) => (play.live ? "BBC1" : ""),
  channel_id: ({ play }) => (play.live ? "1001" : ""),
  channel_identifier: ({ play }) => (play.live ? "1.1" : ""),
  channel_title: ({ play }) => (play.live ? "BBC One HD" : ""),
  channel_thumb: ({ play }) =>
    play.live ? "https://provider-static.plex.tv/epg/channels/bbc1.png" : "",
  channel_vcn: ({ play }) => (play.live ? "101" : ""),
  marker_credits_first: ({ play }) =>
    play.mediaType === "movie" ? play.durationMs - 300000 : null,
  marker_credits_final: ({ play }) => (play.mediaType === "movie" ? play.durationMs - 60000 : null),
  // v2.1 only: the library id lived here before v2.7 (reference/tautulli/NOTES.md §7).
  section_id: ({ play }) => play.library.sectionId,
};

const sessionHistoryMediaInfo: TableGenerators = {
  id: ({ play }) => play.id,
  rating_key: ({ play }) => play.ratingKey,
  video_decision: ({ play }) => (play.mediaType === "track" ? "" : play.decision),
  audio_decision: ({ play }) => (play.decision === "transcode" ? "transcode" : "direct play"),
  transcode_decision: ({ play }) => play.decision,
  duration: ({ play }) => play.durationMs,
  container: ({ play }) => (play.mediaType === "track" ? "flac" : "mkv"),
  bitrate: (ctx) => (ctx.rng.chance(0.02) ? "" : ctx.rng.int(800, 60000)),
  width: ({ play, rng }) =>
    play.mediaType === "track" || rng.chance(0.02) ? "" : play.resolution.w,
  height: ({ play, rng }) =>
    play.mediaType === "track" || rng.chance(0.02) ? "" : play.resolution.h,
  video_bitrate: (ctx) => (ctx.play.mediaType === "track" ? "" : ctx.rng.int(700, 55000)),
  video_bit_depth: ({ play }) =>
    play.mediaType === "track" ? "" : play.resolution.res === "4k" ? 10 : 8,
  video_codec: ({ play }) =>
    play.mediaType === "track" ? "" : play.resolution.res === "4k" ? "hevc" : "h264",
  video_codec_level: ({ play }) => (play.mediaType === "track" ? "" : "41"),
  video_width: ({ play }) => (play.mediaType === "track" ? "" : play.resolution.w),
  video_height: ({ play }) => (play.mediaType === "track" ? "" : play.resolution.h),
  video_resolution: ({ play }) => (play.mediaType === "track" ? "" : play.resolution.res),
  video_framerate: ({ play }) => (play.mediaType === "track" ? "" : "24p"),
  video_scan_type: ({ play }) => (play.mediaType === "track" ? "" : "progressive"),
  video_full_resolution: ({ play }) =>
    play.mediaType === "track" ? "" : `${play.resolution.res}p`,
  video_dynamic_range: ({ play }) =>
    play.mediaType === "track" ? "" : play.resolution.res === "4k" ? "HDR10" : "SDR",
  aspect_ratio: ({ play }) => (play.mediaType === "track" ? "" : "1.78"),
  audio_bitrate: (ctx) => ctx.rng.pick([192, 384, 640, 1509, 4608]),
  audio_codec: (ctx) => ctx.rng.pick(["aac", "ac3", "eac3", "dts", "truehd", "flac"]),
  audio_channels: (ctx) => (ctx.rng.chance(0.02) ? "" : ctx.rng.pick([2, 6, 8])),
  audio_language: (ctx) => ctx.rng.pick(LANGS)[0],
  audio_language_code: (ctx) => ctx.rng.pick(LANGS)[1],
  subtitles: (ctx) => (ctx.rng.chance(0.3) ? 1 : 0),
  subtitle_codec: (ctx) => (ctx.rng.chance(0.3) ? "srt" : ""),
  // Untyped column (BLOB affinity): Tautulli writes 0/1 integers, or '' when Plex omitted it.
  subtitle_forced: (ctx) => (ctx.rng.chance(0.05) ? "" : ctx.rng.chance(0.1) ? 1 : 0),
  subtitle_language: (ctx) => (ctx.rng.chance(0.3) ? ctx.rng.pick(LANGS)[0] : ""),
  transcode_protocol: ({ play }) => (play.decision === "transcode" ? "dash" : ""),
  transcode_container: ({ play }) => (play.decision === "transcode" ? "mp4" : ""),
  transcode_video_codec: ({ play }) => (play.decision === "transcode" ? "h264" : ""),
  transcode_audio_codec: ({ play }) => (play.decision === "transcode" ? "aac" : ""),
  transcode_audio_channels: ({ play }) => (play.decision === "transcode" ? 2 : ""),
  transcode_width: ({ play }) => (play.decision === "transcode" ? 1280 : ""),
  transcode_height: ({ play }) => (play.decision === "transcode" ? 720 : ""),
  transcode_hw_requested: ({ play }) => (play.decision === "transcode" ? 1 : 0),
  transcode_hw_full_pipeline: () => 0,
  transcode_hw_decode: ({ play }) => (play.decision === "transcode" ? "vaapi" : ""),
  transcode_hw_decode_title: ({ play }) => (play.decision === "transcode" ? "Intel (VAAPI)" : ""),
  transcode_hw_decoding: ({ play }) => (play.decision === "transcode" ? 1 : 0),
  transcode_hw_encode: ({ play }) => (play.decision === "transcode" ? "vaapi" : ""),
  transcode_hw_encode_title: ({ play }) => (play.decision === "transcode" ? "Intel (VAAPI)" : ""),
  transcode_hw_encoding: ({ play }) => (play.decision === "transcode" ? 1 : 0),
  stream_container: ({ play }) => (play.decision === "transcode" ? "mp4" : "mkv"),
  stream_container_decision: ({ play }) =>
    play.decision === "transcode" ? "transcode" : "direct play",
  stream_bitrate: (ctx) => (ctx.rng.chance(0.02) ? "" : ctx.rng.int(700, 60000)),
  stream_video_decision: ({ play }) => (play.mediaType === "track" ? "" : play.decision),
  stream_video_bitrate: (ctx) => (ctx.play.mediaType === "track" ? "" : ctx.rng.int(700, 55000)),
  stream_video_codec: ({ play }) => (play.mediaType === "track" ? "" : "h264"),
  stream_video_codec_level: ({ play }) => (play.mediaType === "track" ? "" : "41"),
  stream_video_bit_depth: ({ play }) => (play.mediaType === "track" ? "" : 8),
  stream_video_height: ({ play }) => (play.mediaType === "track" ? "" : play.resolution.h),
  stream_video_width: ({ play }) => (play.mediaType === "track" ? "" : play.resolution.w),
  stream_video_resolution: ({ play }) => (play.mediaType === "track" ? "" : play.resolution.res),
  stream_video_framerate: ({ play }) => (play.mediaType === "track" ? "" : "24p"),
  stream_video_scan_type: ({ play }) => (play.mediaType === "track" ? "" : "progressive"),
  stream_video_full_resolution: ({ play }) =>
    play.mediaType === "track" ? "" : `${play.resolution.res}p`,
  stream_video_dynamic_range: ({ play }) => (play.mediaType === "track" ? "" : "SDR"),
  stream_audio_decision: ({ play }) =>
    play.decision === "transcode" ? "transcode" : "direct play",
  stream_audio_codec: (ctx) => ctx.rng.pick(["aac", "ac3", "eac3", "flac"]),
  stream_audio_bitrate: (ctx) => ctx.rng.pick([192, 384, 640]),
  stream_audio_channels: (ctx) => (ctx.rng.chance(0.02) ? "" : ctx.rng.pick([2, 6])),
  stream_audio_language: (ctx) => ctx.rng.pick(LANGS)[0],
  stream_audio_language_code: (ctx) => ctx.rng.pick(LANGS)[1],
  stream_subtitle_decision: (ctx) => (ctx.rng.chance(0.2) ? "burn" : ""),
  stream_subtitle_codec: (ctx) => (ctx.rng.chance(0.2) ? "srt" : ""),
  stream_subtitle_container: () => "",
  stream_subtitle_forced: (ctx) => (ctx.rng.chance(0.05) ? "" : 0),
  stream_subtitle_language: (ctx) => (ctx.rng.chance(0.2) ? ctx.rng.pick(LANGS)[0] : ""),
  synced_version: (ctx) => (ctx.rng.chance(0.1) ? "" : 0),
  synced_version_profile: () => "",
  optimized_version: (ctx) => (ctx.rng.chance(0.02) ? 1 : 0),
  optimized_version_profile: () => "",
  optimized_version_title: () => "",
};

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// The generator.

interface TableInfoRow {
  name: string;
  type: string;
}

function columnsOf(db: Database.Database, table: string): TableInfoRow[] {
  return db.prepare(`PRAGMA table_info("${table}")`).all() as TableInfoRow[];
}

function tableNames(db: Database.Database): string[] {
  return (
    db
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
      )
      .all() as { name: string }[]
  ).map((r) => r.name);
}

/** Fallback for a column no table generator names: a plausible value of its declared type. */
function fallbackGenerator(column: TableInfoRow): ColumnGenerator {
  const type = column.type.toUpperCase();
  if (type.includes("INT")) return (ctx) => ctx.rng.int(0, 1);
  if (type === "") return (ctx) => ctx.rng.int(0, 1);
  return (ctx) => ctx.rng.words(WORDS, 2);
}

/** Inserts rows into `table`, filling each existing column from `generators` (or a fallback). */
class TableWriter {
  private readonly statement: Database.Statement;
  private readonly generators: ColumnGenerator[];
  readonly columns: string[];

  constructor(
    db: Database.Database,
    readonly table: string,
    generators: TableGenerators,
  ) {
    const columns = columnsOf(db, table);
    this.columns = columns.map((c) => c.name);
    this.generators = columns.map((c) => {
      const generator = generators[c.name] ?? fallbackGenerator(c);
      if (c.type !== "") return generator;
      // better-sqlite3 binds JS numbers as REAL; Python's sqlite3 (Tautulli) binds ints as
      // INTEGER. Only an untyped column (no affinity) keeps the difference, so bind BigInt there.
      return (ctx: RowContext) => {
        const value = generator(ctx);
        return typeof value === "number" && Number.isInteger(value) ? BigInt(value) : value;
      };
    });
    const names = this.columns.map((c) => `"${c}"`).join(", ");
    const params = this.columns.map(() => "?").join(", ");
    this.statement = db.prepare(`INSERT INTO "${table}" (${names}) VALUES (${params})`);
  }

  write(ctx: RowContext): void {
    const values = new Array<SqliteValue>(this.generators.length);
    for (let i = 0; i < values.length; i++) values[i] = this.generators[i](ctx);
    this.statement.run(values);
  }
}

function makeUsers(rng: SampleRandom, count: number): User[] {
  const users: User[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    let username = `${rng.pick(FIRST).toLowerCase()}${rng
      .pick(LAST)
      .replace(/[^A-Za-z]/g, "")
      .toLowerCase()}${i}`;
    while (seen.has(username)) username += "x";
    seen.add(username);
    users.push({
      // Plex account ids: the owner has a small one, friends 8-9 digits.
      userId: i === 0 ? 1234567 : 10000000 + rng.int(0, 899999999),
      username,
      friendlyName: `${rng.pick(FIRST)} ${rng.pick(LAST)}`,
    });
  }
  return users;
}

class PlayFactory {
  private lastStarted = EPOCH_2019;
  private readonly machineIds: string[];

  constructor(
    private readonly rng: SampleRandom,
    private readonly users: User[],
    private readonly totalPlays: number,
  ) {
    this.machineIds = Array.from({ length: 24 }, () => rng.token(rng.int(16, 24)).toLowerCase());
  }

  make(id: number, previous: Play | undefined): Play {
    const rng = this.rng;
    const library = rng.chance(0.02) ? LIBRARIES[4] : rng.pick(LIBRARIES.slice(0, 3));
    const mediaType = library.mediaType;
    const live = library.sectionId === 999999;
    // Plays spread over ~7 years whatever the count.
    const span = (86400 * 365 * 7) / Math.max(this.totalPlays, 1);
    this.lastStarted += Math.max(1, Math.round(span * (0.5 + rng.next())));
    const durationMs =
      mediaType === "track"
        ? rng.int(120, 420) * 1000
        : mediaType === "movie"
          ? rng.int(80, 170) * 60000
          : rng.int(20, 60) * 60000;
    const watchedMs = Math.min(durationMs, Math.round(durationMs * (0.1 + rng.next())));
    const pausedCounter = rng.chance(0.6) ? 0 : rng.int(1, 900);
    const started = this.lastStarted;
    const resumed = previous !== undefined && rng.chance(0.08);
    const ratingKey = resumed ? previous.ratingKey : rng.int(1000, 400000);
    const isMovie = mediaType === "movie";
    const title = capitalise(rng.words(WORDS, rng.int(1, 4)));
    return {
      id,
      referenceId: resumed ? previous.referenceId : id,
      user: resumed ? previous.user : rng.pick(this.users),
      library,
      mediaType,
      ratingKey,
      parentRatingKey: isMovie ? "" : ratingKey - rng.int(1, 30),
      grandparentRatingKey: isMovie ? "" : ratingKey - rng.int(31, 400),
      title,
      parentTitle: isMovie
        ? ""
        : mediaType === "track"
          ? capitalise(rng.words(WORDS, 2))
          : `Season ${rng.int(1, 9)}`,
      grandparentTitle: isMovie ? "" : capitalise(rng.words(WORDS, rng.int(1, 3))),
      started,
      stopped: started + Math.round(watchedMs / 1000) + pausedCounter,
      durationMs,
      viewOffsetMs: watchedMs,
      pausedCounter,
      device: rng.pick(PLAYERS),
      machineId: rng.pick(this.machineIds),
      ip: rng.chance(0.7)
        ? `192.168.1.${rng.int(2, 250)}`
        : `${rng.int(11, 220)}.${rng.int(0, 255)}.${rng.int(0, 255)}.${rng.int(1, 254)}`,
      wan: rng.chance(0.3),
      decision: rng.pick(DECISIONS),
      resolution: rng.pick(RESOLUTIONS),
      year: rng.int(1950, 2026),
      live,
      mediaIndex: isMovie ? "" : rng.int(1, 24),
      parentMediaIndex: isMovie ? "" : rng.int(1, 9),
    };
  }
}

/** Writes every table except the three session_history* ones. */
function writeOtherTables(
  db: Database.Database,
  rng: SampleRandom,
  users: User[],
  plays: number,
  notifications: number,
  dummyPlay: Play,
): void {
  const tables = new Set(tableNames(db));
  const ctx = (index: number): RowContext => ({ rng, index, play: dummyPlay, users });
  const writeRows = (table: string, count: number, generators: TableGenerators) => {
    if (!tables.has(table)) return;
    const writer = new TableWriter(db, table, generators);
    for (let i = 0; i < count; i++) writer.write(ctx(i));
  };
  const serverId = rng.hex(40);
  const ownerToken = rng.token(20);

  writeRows("users", users.length, {
    id: ({ index }) => index + 2, // 1 is the seeded 'Local' user
    user_id: ({ index }) => users[index].userId,
    username: ({ index }) => users[index].username,
    friendly_name: ({ index }) => users[index].friendlyName,
    thumb: ({ index }) =>
      `https://plex.tv/users/${users[index].userId.toString(16)}/avatar?c=${1700000000 + index}`,
    custom_avatar_url: () => "",
    title: ({ index }) => users[index].friendlyName,
    email: ({ index }) => `${users[index].username}@example.org`,
    is_active: ({ index }) => (index === users.length - 1 ? 0 : 1),
    is_admin: ({ index }) => (index === 0 ? 1 : 0),
    // raw plex.tv XML attributes: '' when absent (reference/tautulli/NOTES.md §3)
    is_home_user: ({ index, rng: r }) => (index === 0 ? 1 : r.pick([0, 1, ""])),
    is_allow_sync: ({ rng: r }) => r.pick([0, 1, ""]),
    is_restricted: ({ rng: r }) => r.pick([0, 0, 1, ""]),
    do_notify: () => 1,
    keep_history: () => 1,
    deleted_user: ({ index }) => (index === users.length - 1 ? 1 : 0),
    allow_guest: () => 0,
    user_token: ({ index, rng: r }) => (index === 0 ? ownerToken : r.token(20)),
    server_token: ({ rng: r }) => r.token(20),
    shared_libraries: () => "1;2;3",
    filter_all: () => "",
    filter_movies: () => "",
    filter_tv: () => "",
    filter_music: () => "",
    filter_photos: () => "",
  });

  writeRows("library_sections", LIBRARIES.length, {
    id: ({ index }) => index + 1,
    server_id: () => serverId,
    section_id: ({ index }) => LIBRARIES[index].sectionId,
    section_name: ({ index }) => LIBRARIES[index].name,
    section_type: ({ index }) => LIBRARIES[index].sectionType,
    agent: ({ index }) => `tv.plex.agents.${LIBRARIES[index].sectionType}`,
    thumb: ({ index }) => `/:/resources/${LIBRARIES[index].sectionType}.png`,
    custom_thumb_url: () => "",
    art: ({ index }) => `/:/resources/${LIBRARIES[index].sectionType}-fanart.jpg`,
    custom_art_url: () => "",
    count: ({ rng: r }) => r.int(10, 5000),
    parent_count: ({ index, rng: r }) => (index === 1 ? r.int(10, 300) : null),
    child_count: ({ index, rng: r }) => (index === 1 ? r.int(100, 9000) : null),
    is_active: () => 1,
    do_notify: () => 1,
    do_notify_created: () => 1,
    keep_history: () => 1,
    deleted_section: ({ index }) => (index === 3 ? 1 : 0),
  });

  const sessionCount = 2;
  writeRows("sessions", sessionCount, {
    id: ({ index }) => index + 1,
    session_key: ({ index }) => 100 + index,
    session_id: ({ rng: r }) => r.token(24).toLowerCase(),
    transcode_key: () => "",
    rating_key: ({ rng: r }) => r.int(1000, 400000),
    section_id: () => 1,
    media_type: () => "movie",
    started: () => EPOCH_2019 + 86400 * 365 * 7,
    stopped: () => null,
    paused_counter: () => 0,
    state: ({ index }) => (index === 0 ? "playing" : "paused"),
    user_id: ({ index }) => users[index % users.length].userId,
    user: ({ index }) => users[index % users.length].username,
    friendly_name: ({ index }) => users[index % users.length].friendlyName,
    ip_address: () => "192.168.1.20",
    machine_id: ({ rng: r }) => r.token(20).toLowerCase(),
    bandwidth: () => "",
    raw_stream_info: ({ rng: r }) =>
      json({
        bitrate: r.int(1000, 30000),
        video_decision: "direct play",
        stream_video_codec: "h264",
        optimized_version: 0,
      }),
    rating_key_websocket: ({ rng: r }) => String(r.int(1000, 400000)),
    buffer_last_triggered: () => null,
    initial_stream: () => 1,
    write_attempts: () => 0,
  });

  writeRows("sessions_continued", Math.min(users.length, 6), {
    id: ({ index }) => index + 1,
    user_id: ({ index }) => users[index].userId,
    machine_id: ({ rng: r }) => r.token(18).toLowerCase(),
    media_type: ({ index }) => (index % 2 === 0 ? "episode" : "movie"),
    stopped: ({ index }) => EPOCH_2019 + 86400 * (2000 + index),
  });

  const logins = Math.max(4, Math.round(plays / 50));
  writeRows("user_login", logins, {
    id: ({ index }) => index + 1,
    timestamp: ({ index }) => EPOCH_2019 + index * 3600 * 7,
    user_id: ({ index }) => users[index % users.length].userId,
    user: ({ index }) => users[index % users.length].username,
    user_group: ({ index }) => (index % users.length === 0 ? "admin" : "guest"),
    ip_address: ({ rng: r }) => `192.168.1.${r.int(2, 250)}`,
    host: () => "tautulli.home.example:8181",
    user_agent: () => "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    success: ({ rng: r }) => (r.chance(0.1) ? 0 : 1),
    expiry: ({ index }) =>
      new Date((EPOCH_2019 + index * 3600 * 7 + 86400 * 30) * 1000)
        .toISOString()
        .replace("Z", "+00:00")
        .replace(/\.(\d{3})/, ".$1456"),
    jwt_token: ({ rng: r }) => `eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.${r.token(80)}.${r.token(43)}`,
  });

  const notifierAgents = [
    {
      agentId: 25,
      name: "webhook",
      label: "Webhook",
      config: () => ({
        webhook_hook: `https://hooks.example.org/${rng.token(32)}`,
        webhook_method: "POST",
      }),
    },
    {
      agentId: 10,
      name: "email",
      label: "Email",
      config: () => ({
        email_smtp_server: "smtp.example.org",
        email_smtp_user: "tautulli",
        email_smtp_password: rng.token(16),
        email_smtp_port: 587,
      }),
    },
    {
      agentId: 13,
      name: "telegram",
      label: "Telegram",
      config: () => ({
        telegram_bot_token: `${rng.int(100000000, 999999999)}:${rng.token(35)}`,
        telegram_chat_id: String(rng.int(1, 99999999)),
      }),
    },
  ];
  const onFlag = (ctx: RowContext) => (ctx.rng.chance(0.3) ? 1 : 0);
  const notifierGenerators: TableGenerators = {
    id: ({ index }) => index + 1,
    agent_id: ({ index }) => notifierAgents[index].agentId,
    agent_name: ({ index }) => notifierAgents[index].name,
    agent_label: ({ index }) => notifierAgents[index].label,
    friendly_name: ({ index }) => `${notifierAgents[index].label} for the family`,
    notifier_config: ({ index }) => json(notifierAgents[index].config()),
    custom_conditions: () => json([{ parameter: "", operator: "", value: [], type: null }]),
    custom_conditions_logic: () => "",
  };
  for (const column of columnsOf(db, "notifiers").map((c) => c.name)) {
    if (/^on_[a-z]+$/.test(column)) notifierGenerators[column] = onFlag;
    else if (column.endsWith("_subject"))
      notifierGenerators[column] = ({ index }) => (index === 0 ? "" : "Tautulli ({server_name})");
    else if (column.endsWith("_body"))
      notifierGenerators[column] = ({ index }) =>
        index === 0
          ? json({
              content: "{user} started playing {title}",
              embeds: [{ title: "{title}", url: "{plex_url}" }],
            })
          : "{user} ({player}) started playing {title}.";
  }
  writeRows("notifiers", notifierAgents.length, notifierGenerators);

  writeRows("notify_log", notifications, {
    id: ({ index }) => index + 1,
    timestamp: ({ index }) =>
      EPOCH_2019 + Math.round((index * 86400 * 365 * 7) / Math.max(notifications, 1)),
    session_key: ({ rng: r }) => r.int(1, 500),
    rating_key: ({ rng: r }) => r.int(1000, 400000),
    parent_rating_key: ({ rng: r }) => (r.chance(0.4) ? "" : r.int(1000, 400000)),
    grandparent_rating_key: ({ rng: r }) => (r.chance(0.4) ? "" : r.int(1000, 400000)),
    user_id: ({ index }) => users[index % users.length].userId,
    user: ({ index }) => users[index % users.length].username,
    notifier_id: ({ index }) => (index % notifierAgents.length) + 1,
    agent_id: ({ index }) => notifierAgents[index % notifierAgents.length].agentId,
    agent_name: ({ index }) => notifierAgents[index % notifierAgents.length].name,
    notify_action: ({ rng: r }) =>
      r.pick(["on_play", "on_stop", "on_pause", "on_resume", "on_watched", "on_created"]),
    subject_text: ({ index, rng: r }) =>
      index % 3 === 0 ? "" : `Tautulli (${capitalise(r.words(WORDS, 2))})`,
    body_text: ({ index, rng: r }) =>
      index % 3 === 0
        ? json({
            content: `${users[index % users.length].username} started playing ${capitalise(r.words(WORDS, 3))}`,
            embeds: [{ title: capitalise(r.words(WORDS, 3)) }],
          })
        : `${users[index % users.length].friendlyName} (${r.pick(PLAYERS).player}) started playing ${capitalise(r.words(WORDS, 3))}. ${capitalise(r.words(WORDS, 28))}.`,
    script_args: ({ index }) =>
      index % 3 === 2 ? json(["--user", users[index % users.length].username]) : null,
    success: ({ rng: r }) => (r.chance(0.02) ? 0 : 1),
    tag: () => null,
    poster_url: () => "",
  });

  writeRows("newsletters", 1, {
    id: () => 1,
    agent_id: () => 0,
    agent_name: () => "recently_added",
    agent_label: () => "Recently Added",
    id_name: () => "recently-added",
    friendly_name: () => "Weekly digest",
    newsletter_config: () =>
      json({ custom_cron: 0, time_frame: 7, time_frame_units: "days", incl_libraries: ["1", "2"] }),
    email_config: ({ rng: r }) =>
      json({
        from_name: "Tautulli",
        smtp_server: "smtp.example.org",
        smtp_password: r.token(16),
        to: ["family@example.org"],
      }),
    subject: () => "Recently Added to {server_name}! ({end_date})",
    body: () => "View the newsletter here: {newsletter_url}",
    message: () => "",
    cron: () => "0 0 * * 0",
    active: () => 1,
  });

  writeRows("newsletter_log", 12, {
    id: ({ index }) => index + 1,
    timestamp: ({ index }) => EPOCH_2019 + index * 86400 * 7,
    newsletter_id: () => 1,
    agent_id: () => 0,
    agent_name: () => "recently_added",
    notify_action: () => "on_cron",
    subject_text: ({ index }) => `Recently Added to Plex! (week ${index + 1})`,
    body_text: () => "View the newsletter here: https://tautulli.example/newsletter/abc",
    message_text: () => "",
    start_date: ({ index }) =>
      new Date((EPOCH_2019 + index * 86400 * 7 - 86400 * 7) * 1000).toISOString().slice(0, 10),
    end_date: ({ index }) =>
      new Date((EPOCH_2019 + index * 86400 * 7) * 1000).toISOString().slice(0, 10),
    // arrow .timestamp() floats in an INTEGER column (reference/tautulli/NOTES.md §3)
    start_time: ({ index }) => EPOCH_2019 + index * 86400 * 7 - 86400 * 7 + 0.123456,
    end_time: ({ index }) => EPOCH_2019 + index * 86400 * 7 + 0.654321,
    uuid: ({ rng: r }) => r.hex(8),
    filename: ({ index }) => `newsletter_${index + 1}.html`,
    email_msg_id: ({ rng: r }) => `<${r.hex(24)}@example.org>`,
    success: () => 1,
  });

  const recently = Math.max(3, Math.round(plays / 100));
  writeRows("recently_added", recently, {
    id: ({ index }) => index + 1,
    added_at: ({ index }) => EPOCH_2019 + index * 86400,
    pms_identifier: () => serverId,
    section_id: ({ index }) => LIBRARIES[index % 2].sectionId,
    rating_key: ({ index }) => 500000 + index,
    parent_rating_key: ({ index }) => (index % 2 === 0 ? "" : 600000 + index),
    grandparent_rating_key: ({ index }) => (index % 2 === 0 ? "" : 700000 + index),
    media_type: ({ index }) => (index % 2 === 0 ? "movie" : "episode"),
    media_info: ({ rng: r }) =>
      json([
        {
          id: r.int(1, 9999),
          container: "mkv",
          bitrate: r.int(1000, 40000),
          parts: [{ file: "/media/movies/x.mkv" }],
        },
      ]),
  });

  writeRows("mobile_devices", 2, {
    id: ({ index }) => index + 1,
    device_id: ({ rng: r }) => r.hex(16),
    device_token: ({ rng: r }) => r.token(64),
    device_name: ({ index }) => (index === 0 ? "Pixel 8" : "iPad"),
    platform: ({ index }) => (index === 0 ? "android" : "ios"),
    version: () => "3.9.0",
    friendly_name: ({ index }) => (index === 0 ? "Anna's phone" : "Living room iPad"),
    onesignal_id: ({ rng: r }) => r.hex(32),
    last_seen: ({ index }) => EPOCH_2019 + 86400 * (2500 + index),
    official: () => 1,
  });

  const lookups = Math.max(3, Math.round(plays / 40));
  writeRows("tvmaze_lookup", lookups, {
    id: ({ index }) => index + 1,
    rating_key: ({ index }) => 100000 + index,
    thetvdb_id: ({ rng: r }) => r.int(70000, 450000),
    imdb_id: ({ rng: r }) => `tt${r.int(100000, 9999999)}`,
    tvmaze_id: ({ rng: r }) => r.int(1, 70000),
    tvmaze_url: ({ index }) => `https://www.tvmaze.com/shows/${index + 1}`,
    tvmaze_json: ({ index, rng: r }) =>
      json({
        id: index + 1,
        name: capitalise(r.words(WORDS, 2)),
        genres: [r.pick(GENRES)],
        rating: { average: r.int(10, 99) / 10 },
        summary: `<p>${capitalise(r.words(WORDS, 30))}</p>`,
      }),
  });
  writeRows("themoviedb_lookup", lookups, {
    id: ({ index }) => index + 1,
    rating_key: ({ index }) => 200000 + index,
    thetvdb_id: () => null,
    imdb_id: ({ rng: r }) => `tt${r.int(100000, 9999999)}`,
    themoviedb_id: ({ rng: r }) => r.int(1, 900000),
    themoviedb_url: ({ index }) => `https://www.themoviedb.org/movie/${index + 1}`,
    themoviedb_json: ({ index, rng: r }) =>
      json({
        id: index + 1,
        title: capitalise(r.words(WORDS, 2)),
        overview: capitalise(r.words(WORDS, 40)),
        vote_average: r.int(10, 99) / 10,
      }),
  });
  writeRows("musicbrainz_lookup", Math.max(2, Math.round(lookups / 4)), {
    id: ({ index }) => index + 1,
    rating_key: ({ index }) => 300000 + index,
    musicbrainz_id: () => null,
    musicbrainz_url: ({ rng: r }) =>
      `https://musicbrainz.org/release/${r.hex(8)}-${r.hex(4)}-${r.hex(4)}-${r.hex(4)}-${r.hex(12)}`,
    musicbrainz_type: () => "release",
    musicbrainz_json: ({ rng: r }) =>
      json({
        title: capitalise(r.words(WORDS, 2)),
        "artist-credit": [{ name: `${r.pick(FIRST)} ${r.pick(LAST)}` }],
      }),
  });
  const images = Math.max(3, Math.round(plays / 30));
  const imageHashes = Array.from({ length: images }, (_, i) => `${rng.hex(32)}${i.toString(16)}`);
  writeRows("image_hash_lookup", images, {
    id: ({ index }) => index + 1,
    img_hash: ({ index }) => imageHashes[index],
    img: ({ index }) => `/library/metadata/${1000 + index}/thumb/1650000000`,
    rating_key: ({ index }) => 1000 + index,
    width: () => 1000,
    height: () => 1500,
    opacity: () => 100,
    background: () => "000000",
    blur: () => 0,
    fallback: () => "poster",
  });
  writeRows("imgur_lookup", Math.max(1, Math.round(images / 5)), {
    id: ({ index }) => index + 1,
    img_hash: ({ index }) => imageHashes[index],
    imgur_title: ({ rng: r }) => capitalise(r.words(WORDS, 3)),
    imgur_url: ({ rng: r }) => `https://i.imgur.com/${r.token(7)}.jpg`,
    delete_hash: ({ rng: r }) => r.token(15),
  });
  // cloudinary_lookup stays empty (ALWAYS_EMPTY_TABLES).
  writeRows("exports", 3, {
    id: ({ index }) => index + 1,
    timestamp: ({ index }) => EPOCH_2019 + 86400 * (1000 + index),
    section_id: () => 1,
    user_id: () => null,
    rating_key: () => null,
    media_type: () => "movie",
    title: () => "Movies",
    file_format: ({ index }) => ["csv", "json", "xml"][index],
    metadata_level: () => 1,
    media_info_level: () => 1,
    thumb_level: () => 0,
    art_level: () => 0,
    logo_level: () => 0,
    squareArt_level: () => 0,
    theme_level: () => 0,
    custom_fields: () => "title,year,summary",
    individual_files: () => 0,
    file_size: ({ rng: r }) => r.int(1000, 90000000),
    complete: () => 1,
    exported_items: () => 42,
    total_items: () => 42,
  });
}

/** Whether `column` of `table` has a UNIQUE constraint of its own (an index SQLite cannot drop). */
function hasUniqueConstraint(db: Database.Database, table: string, column: string): boolean {
  const indexes = db.prepare(`PRAGMA index_list("${table}")`).all() as {
    name: string;
    origin: string;
  }[];
  return indexes.some(
    (index) =>
      index.origin === "u" &&
      (db.prepare(`PRAGMA index_info("${index.name}")`).all() as { name: string }[]).some(
        (c) => c.name === column,
      ),
  );
}

/** Writes the leftovers `upgradeLeftovers` describes into the generated database. */
function addUpgradeLeftovers(db: Database.Database): void {
  const copyRows = (table: string, where: string, set: Record<string, string> = {}) => {
    const columns = columnsOf(db, table)
      .map((c) => c.name)
      .filter((c) => c !== "id");
    const values = columns.map((c) => set[c] ?? `"${c}"`);
    db.exec(
      `INSERT INTO "${table}" (${columns.map((c) => `"${c}"`).join(", ")}) SELECT ${values.join(", ")} FROM "${table}" WHERE ${where} ORDER BY id`,
    );
  };
  db.exec(
    "INSERT INTO cloudinary_lookup (img_hash, cloudinary_title, cloudinary_url) " +
      "SELECT img_hash, 'poster', 'https://res.cloudinary.com/demo/image/upload/' || img_hash || '.jpg' FROM image_hash_lookup ORDER BY id LIMIT 2",
  );
  const lookups: [string, string][] = [
    ["tvmaze_lookup", "rating_key"],
    ["themoviedb_lookup", "rating_key"],
    ["musicbrainz_lookup", "rating_key"],
    ["image_hash_lookup", "img_hash"],
    ["imgur_lookup", "img_hash"],
    ["cloudinary_lookup", "img_hash"],
  ];
  for (const [table, key] of lookups) {
    if (hasUniqueConstraint(db, table, key)) continue;
    db.exec(`DROP INDEX IF EXISTS "idx_${table}"`);
    // The first key stored three times, the second twice; two rows without a key.
    copyRows(table, `id = (SELECT min(id) FROM "${table}")`);
    copyRows(table, `id IN (SELECT id FROM "${table}" ORDER BY id LIMIT 2)`);
    copyRows(table, `id = (SELECT min(id) FROM "${table}")`, { [key]: "NULL" });
    copyRows(table, `id = (SELECT min(id) FROM "${table}")`, { [key]: "NULL" });
  }
  // An http image that is the first row of its hash: dbcheck removes it before it removes
  // duplicates, so the hash's next row is the one kept.
  db.exec(
    "UPDATE image_hash_lookup SET img = 'HTTPS://image.tmdb.org/t/p/original/poster.jpg' WHERE id = (SELECT min(id) FROM image_hash_lookup)",
  );
  db.exec(
    "UPDATE image_hash_lookup SET img = 'http://metadata-static.plex.tv/poster.jpg' WHERE id = (SELECT id FROM image_hash_lookup ORDER BY id LIMIT 1 OFFSET 2)",
  );
  copyRows("library_sections", "id IN (SELECT id FROM library_sections ORDER BY id LIMIT 2)", {
    server_id: "''",
  });
  db.exec(
    "DROP TABLE mobile_devices; CREATE TABLE mobile_devices (id INTEGER PRIMARY KEY AUTOINCREMENT, " +
      "device_token TEXT NOT NULL UNIQUE, device_name TEXT, friendly_name TEXT)",
  );
  db.exec(
    "INSERT INTO mobile_devices (device_token, device_name, friendly_name) VALUES " +
      "('APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx', 'Nexus 5X', 'Phone'), ('APA91bE9kq0aM3xLw7pD2sVb-Tz8Yc4RfQn1', 'Nexus 9', 'Tablet')",
  );
}

/**
 * Creates `filePath` (must not exist) as a Tautulli database of `options.schema` with the
 * requested content. The schema is the vendored script itself, executed by SQLite.
 */
export function generateTautulliDb(
  filePath: string,
  options: TautulliSampleOptions = {},
): TautulliSample {
  const schema = options.schema ?? "current";
  const playCount = options.plays ?? 200;
  const notifications = options.notifications ?? Math.round(playCount / 2);
  const uncheckpointed = Math.min(options.uncheckpointedPlays ?? 0, playCount);
  const rng = new SampleRandom(options.seed ?? 1);
  if (fs.existsSync(filePath)) throw new Error(`generateTautulliDb: ${filePath} already exists`);

  // Build in a private directory, then copy into place (with the -wal when asked for one).
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-sample-"));
  const workPath = path.join(workDir, "tautulli.db");
  const db = new Database(workPath);
  let hostileCells: HostileCell[] = [];
  let counts: { rows: Record<string, number>; sessionHistorySeq: number };
  try {
    db.pragma("journal_mode = OFF");
    db.pragma("synchronous = OFF");
    db.exec(fs.readFileSync(REFERENCE_FILES[schema], "utf8"));
    const users = makeUsers(rng, options.users ?? 12);
    const factory = new PlayFactory(rng, users, playCount);
    const writers = [
      new TableWriter(db, "session_history", sessionHistory),
      new TableWriter(db, "session_history_metadata", sessionHistoryMetadata),
      new TableWriter(db, "session_history_media_info", sessionHistoryMediaInfo),
    ];
    let previous: Play | undefined;
    let nextPlayId = 1;
    let written = 0;
    let nextReport = 50_000;
    const writePlays = (count: number) => {
      const batch = db.transaction((n: number) => {
        for (let k = 0; k < n; k++) {
          const play = factory.make(nextPlayId++, previous);
          previous = play;
          const ctx: RowContext = { rng, index: play.id - 1, play, users };
          writers[0].write(ctx);
          // Three separate commits in Tautulli: about 1 play in 200 lacks one of its other rows.
          const missing = rng.chance(0.005) ? rng.int(1, 2) : 0;
          if (missing !== 1) writers[1].write(ctx);
          if (missing !== 2) writers[2].write(ctx);
          written += 3;
          if (options.onProgress && written >= nextReport) {
            options.onProgress(written);
            nextReport += 50_000;
          }
        }
      });
      for (let left = count; left > 0; left -= 20_000) batch(Math.min(left, 20_000));
    };

    writePlays(playCount - uncheckpointed);
    db.transaction(() =>
      writeOtherTables(
        db,
        rng,
        users,
        playCount,
        notifications,
        previous ?? factory.make(0, undefined),
      ),
    )();
    if (options.upgradeLeftovers) db.transaction(() => addUpgradeLeftovers(db))();
    if (options.hostile) {
      const startId = nextPlayId;
      nextPlayId += 2;
      hostileCells = db.transaction(() =>
        addHostileRows(db, { startId, hugeTextBytes: options.hugeTextBytes ?? 2 * 1024 * 1024 }),
      )();
    }

    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    if (uncheckpointed > 0) db.pragma("wal_autocheckpoint = 0");
    writePlays(uncheckpointed);
    // One more play, deleted again: AUTOINCREMENT keeps its id in sqlite_sequence, so
    // sqlite_sequence.seq > max(id) as in any real install that deleted history (reference/tautulli/NOTES.md §1).
    writePlays(1);
    db.transaction(() => {
      for (const table of [
        "session_history",
        "session_history_metadata",
        "session_history_media_info",
      ]) {
        db.prepare(`DELETE FROM ${table} WHERE id = ?`).run(nextPlayId - 1);
      }
    })();
    counts = countRowsOf(db);
    if (uncheckpointed > 0) {
      // Copy the database and its -wal while the writer still holds them open, as a killed
      // Tautulli leaves them: the last plays exist only in the -wal.
      fs.copyFileSync(workPath, filePath);
      fs.copyFileSync(`${workPath}-wal`, `${filePath}-wal`);
      db.close();
    } else {
      db.close(); // checkpoints and removes the -wal
      fs.copyFileSync(workPath, filePath);
    }
  } finally {
    if (db.open) db.close();
    fs.rmSync(workDir, { recursive: true, force: true });
  }

  const walPath = `${filePath}-wal`;
  return {
    path: filePath,
    schema,
    rowCounts: counts.rows,
    walBytes: fs.existsSync(walPath) ? fs.statSync(walPath).size : 0,
    hostileCells,
    sessionHistorySeq: counts.sessionHistorySeq,
  };
}

function countRowsOf(db: Database.Database): {
  rows: Record<string, number>;
  sessionHistorySeq: number;
} {
  const rows: Record<string, number> = {};
  for (const table of tableNames(db)) {
    rows[table] = (db.prepare(`SELECT count(*) AS n FROM "${table}"`).get() as { n: number }).n;
  }
  const seq = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'session_history'").get() as
    { seq: number } | undefined;
  return { rows, sessionHistorySeq: seq?.seq ?? 0 };
}
