/**
 * Writes what the numbers mean into the catalog (`COMMENT ON`), so `\d+ session_history` in psql
 * tells whoever ports queries to PostgreSQL the units and the relations Tautulli never declared
 * (reference/tautulli/NOTES.md §1, §4, §6). No data or type changes.
 */
import type { Migration } from "../lib/postgres/migrator";

const EPOCH = "epoch seconds (UTC); to_timestamp(x) gives a time";
const PLEX_EPOCH = "epoch seconds from Plex (NULL when Plex gave none)";
const MILLISECONDS = "milliseconds (Plex units)";
const USER_ID = "users.user_id (the Plex account id), not users.id";
const SECTION_ID = "library_sections.section_id; 999999 is the Live TV pseudo-library";
const JSON_TEXT = "JSON text as Tautulli wrote it (json.dumps); cast to jsonb to query inside";

/** [table, column or null for the table itself, comment] */
const COMMENTS: [string, string | null, string][] = [
  [
    "session_history",
    null,
    "one row per logged play; id is shared with session_history_metadata and session_history_media_info (either may lack the row)",
  ],
  [
    "session_history",
    "reference_id",
    "session_history.id of the first play of a resumed-play group (its own id if ungrouped)",
  ],
  ["session_history", "started", EPOCH],
  ["session_history", "stopped", EPOCH],
  ["session_history", "paused_counter", "seconds paused"],
  ["session_history", "view_offset", MILLISECONDS],
  ["session_history", "user_id", USER_ID],
  ["session_history", "section_id", SECTION_ID],
  ["session_history_metadata", null, "Plex metadata of the played item; id = session_history.id"],
  ["session_history_metadata", "added_at", PLEX_EPOCH],
  ["session_history_metadata", "updated_at", PLEX_EPOCH],
  ["session_history_metadata", "last_viewed_at", PLEX_EPOCH],
  ["session_history_metadata", "duration", MILLISECONDS],
  ["session_history_metadata", "marker_credits_first", MILLISECONDS],
  ["session_history_metadata", "marker_credits_final", MILLISECONDS],
  ["session_history_metadata", "directors", "names joined with ';'"],
  ["session_history_metadata", "writers", "names joined with ';'"],
  ["session_history_metadata", "actors", "names joined with ';'"],
  ["session_history_metadata", "genres", "names joined with ';'"],
  ["session_history_metadata", "labels", "names joined with ';'"],
  [
    "session_history_media_info",
    null,
    "stream and media details of a play; id = session_history.id",
  ],
  ["session_history_media_info", "duration", MILLISECONDS],
  ["sessions", null, "streams playing now; a row is deleted once written to session_history"],
  ["sessions", "started", EPOCH],
  ["sessions", "stopped", EPOCH],
  ["sessions", "last_paused", EPOCH],
  ["sessions", "buffer_last_triggered", EPOCH],
  ["sessions", "view_offset", MILLISECONDS],
  ["sessions", "duration", MILLISECONDS],
  ["sessions", "user_id", USER_ID],
  ["sessions", "section_id", SECTION_ID],
  ["sessions", "raw_stream_info", JSON_TEXT],
  ["sessions_continued", "stopped", EPOCH],
  ["sessions_continued", "user_id", USER_ID],
  ["users", "user_id", "the Plex account id; 0 is Tautulli's 'Local' user"],
  ["users", "shared_libraries", "library section ids joined with ';'"],
  ["library_sections", "server_id", "machine identifier of the Plex server"],
  ["user_login", "timestamp", EPOCH],
  ["user_login", "user_id", USER_ID],
  ["user_login", "expiry", "ISO-8601 time with offset"],
  ["notifiers", "notifier_config", JSON_TEXT],
  ["notifiers", "custom_conditions", JSON_TEXT],
  ["notify_log", "timestamp", EPOCH],
  ["notify_log", "user_id", USER_ID],
  ["notify_log", "notifier_id", "notifiers.id"],
  ["notify_log", "script_args", JSON_TEXT],
  ["newsletters", "newsletter_config", JSON_TEXT],
  ["newsletters", "email_config", JSON_TEXT],
  ["newsletter_log", "timestamp", EPOCH],
  ["newsletter_log", "newsletter_id", "newsletters.id"],
  ["newsletter_log", "start_time", "epoch seconds with a fraction (arrow timestamp)"],
  ["newsletter_log", "end_time", "epoch seconds with a fraction (arrow timestamp)"],
  ["newsletter_log", "start_date", "YYYY-MM-DD"],
  ["newsletter_log", "end_date", "YYYY-MM-DD"],
  ["recently_added", "added_at", PLEX_EPOCH],
  ["recently_added", "section_id", SECTION_ID],
  ["recently_added", "media_info", JSON_TEXT],
  ["mobile_devices", "last_seen", EPOCH],
  ["tvmaze_lookup", "tvmaze_json", JSON_TEXT],
  ["themoviedb_lookup", "themoviedb_json", JSON_TEXT],
  ["musicbrainz_lookup", "musicbrainz_json", JSON_TEXT],
  ["imgur_lookup", "img_hash", "image_hash_lookup.img_hash"],
  ["cloudinary_lookup", "img_hash", "image_hash_lookup.img_hash"],
  ["exports", "timestamp", EPOCH],
  ["exports", "user_id", USER_ID],
  ["exports", "section_id", SECTION_ID],
  ["exports", "custom_fields", "comma-separated field names"],
  [
    "version_info",
    null,
    "key 'version' holds the Tautulli release the data came from, e.g. v2.17.2",
  ],
];

function commentStatements(
  quote: (name: string) => string,
  text: (comment: string) => string,
): string[] {
  return COMMENTS.map(([table, column, comment]) =>
    column === null
      ? `COMMENT ON TABLE ${quote(table)} IS ${text(comment)}`
      : `COMMENT ON COLUMN ${quote(table)}.${quote(column)} IS ${text(comment)}`,
  );
}

export const up: Migration = async ({ context: { queryInterface, sequelize, transaction } }) => {
  const quote = (name: string) => queryInterface.quoteIdentifier(name);
  for (const statement of commentStatements(quote, (comment) => sequelize.escape(comment))) {
    await sequelize.query(statement, { transaction });
  }
};

export const down: Migration = async ({ context: { queryInterface, sequelize, transaction } }) => {
  const quote = (name: string) => queryInterface.quoteIdentifier(name);
  for (const statement of commentStatements(quote, () => "NULL")) {
    await sequelize.query(statement, { transaction });
  }
};
