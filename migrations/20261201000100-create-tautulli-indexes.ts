/**
 * Creates the 22 explicit indexes of Tautulli v2.17.2 (15 plain, 7 unique) with Tautulli's names.
 * The implicit ones (primary keys, column UNIQUE constraints) came with the tables.
 */
import type { Migration } from "../lib/postgres/migrator";

interface IndexSpec {
  name: string;
  table: string;
  fields: (string | { name: string; order: "ASC" | "DESC" })[];
  unique?: boolean;
}

const INDEXES: IndexSpec[] = [
  { name: "idx_session_history_media_type", table: "session_history", fields: ["media_type"] },
  {
    name: "idx_session_history_media_type_stopped",
    table: "session_history",
    fields: ["media_type", { name: "stopped", order: "ASC" }],
  },
  { name: "idx_session_history_rating_key", table: "session_history", fields: ["rating_key"] },
  {
    name: "idx_session_history_parent_rating_key",
    table: "session_history",
    fields: ["parent_rating_key"],
  },
  {
    name: "idx_session_history_grandparent_rating_key",
    table: "session_history",
    fields: ["grandparent_rating_key"],
  },
  { name: "idx_session_history_user", table: "session_history", fields: ["user"] },
  { name: "idx_session_history_user_id", table: "session_history", fields: ["user_id"] },
  {
    name: "idx_session_history_user_id_stopped",
    table: "session_history",
    fields: ["user_id", { name: "stopped", order: "ASC" }],
  },
  { name: "idx_session_history_section_id", table: "session_history", fields: ["section_id"] },
  {
    name: "idx_session_history_section_id_stopped",
    table: "session_history",
    fields: ["section_id", { name: "stopped", order: "ASC" }],
  },
  {
    name: "idx_session_history_reference_id",
    table: "session_history",
    fields: [{ name: "reference_id", order: "ASC" }],
  },
  {
    name: "idx_session_history_metadata_rating_key",
    table: "session_history_metadata",
    fields: ["rating_key"],
  },
  {
    name: "idx_session_history_metadata_guid",
    table: "session_history_metadata",
    fields: ["guid"],
  },
  {
    name: "idx_session_history_metadata_live",
    table: "session_history_metadata",
    fields: ["live"],
  },
  {
    name: "idx_session_history_media_info_transcode_decision",
    table: "session_history_media_info",
    fields: ["transcode_decision"],
  },
  { name: "idx_tvmaze_lookup", table: "tvmaze_lookup", fields: ["rating_key"], unique: true },
  {
    name: "idx_themoviedb_lookup",
    table: "themoviedb_lookup",
    fields: ["rating_key"],
    unique: true,
  },
  {
    name: "idx_musicbrainz_lookup",
    table: "musicbrainz_lookup",
    fields: ["rating_key"],
    unique: true,
  },
  { name: "idx_image_hash_lookup", table: "image_hash_lookup", fields: ["img_hash"], unique: true },
  { name: "idx_cloudinary_lookup", table: "cloudinary_lookup", fields: ["img_hash"], unique: true },
  { name: "idx_imgur_lookup", table: "imgur_lookup", fields: ["img_hash"], unique: true },
  {
    name: "idx_sessions_continued",
    table: "sessions_continued",
    fields: ["user_id", "machine_id", "media_type"],
    unique: true,
  },
];

export const up: Migration = async ({ context: { queryInterface, transaction } }) => {
  for (const { name, table, fields, unique } of INDEXES) {
    await queryInterface.addIndex(table, { fields, name, unique: unique ?? false, transaction });
  }
};

export const down: Migration = async ({ context: { queryInterface, transaction } }) => {
  for (const { name, table } of [...INDEXES].reverse()) {
    await queryInterface.removeIndex(table, name, { transaction });
  }
};
