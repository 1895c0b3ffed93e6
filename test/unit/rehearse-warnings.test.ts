/**
 * The rehearsal's warnings (lib/rehearsal/rehearse.ts, rehearsalWarnings): assembled from each
 * phase's findings, in the report's order, and none when nothing was found.
 */
import * as assert from "assert/strict";
import { rehearsalWarnings } from "../../lib/rehearsal/rehearse";

const clean = {
  preflightNotes: [],
  differences: 0,
  verification: [],
  importReport: {
    warnings: [],
    schemaDrift: { targetOnlyTables: [], extraTables: [], extraColumns: [], relocated: [] },
  },
  unchanged: { plexDir: true, tautulliDb: true },
  mediaRoots: [],
};

describe("rehearsal warnings", () => {
  it("are none for a clean run", () => {
    assert.deepEqual(rehearsalWarnings(clean), []);
  });

  it("name each finding, in the order preflight, copy, verification, import, inputs, media, drift", () => {
    const warnings = rehearsalWarnings({
      preflightNotes: ["sqlite3 not installed: Plex SQLite used"],
      differences: 3,
      verification: ["library file unreadable: /media/a.mkv"],
      importReport: {
        warnings: [{ code: "WAL_IGNORED", message: "the -wal was ignored" }],
        schemaDrift: {
          targetOnlyTables: [],
          extraTables: [{ table: "old_table", rows: 2 }],
          extraColumns: [],
          relocated: [],
        },
      },
      unchanged: { plexDir: true, tautulliDb: false },
      mediaRoots: ["/srv/media", "/mnt/tv"],
    });
    assert.deepEqual(warnings, [
      "VM preflight: sqlite3 not installed: Plex SQLite used",
      "The copied tree differs from the source in 3 places (see transfer.differences).",
      "library file unreadable: /media/a.mkv",
      "Tautulli import: the -wal was ignored",
      "AN INPUT CHANGED during the rehearsal (see inputs.unchanged): report this as a bug.",
      "Plex's libraries live under /srv/media, /mnt/tv: mount these paths in the pod with plexMediaVolumes, or Plex will show the media as unavailable.",
      "Tautulli schema drift: tables or columns Tautulli no longer has were found; see the import report's schemaDrift (their rows are reported, not imported).",
    ]);
  });

  it("warn about drift for extra columns alone", () => {
    const warnings = rehearsalWarnings({
      ...clean,
      importReport: {
        warnings: [],
        schemaDrift: {
          ...clean.importReport.schemaDrift,
          extraColumns: [{ table: "users", column: "legacy", nonNullValues: 1 }],
        },
      },
    });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /^Tautulli schema drift/);
  });
});
