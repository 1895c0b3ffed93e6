/**
 * The rehearsal's failure report (lib/rehearsal/report.ts): exit codes explained from the
 * scripts' own headers.
 */
import * as assert from "assert/strict";
import { exitCodeMeaning } from "../../lib/rehearsal/report";

describe("rehearsal failure report", () => {
  it("explains an exit code from the failing script's own header", () => {
    assert.equal(
      exitCodeMeaning("scripts/plex-migrate-source.sh", 3),
      "refused: a check found something that would make the migration fail (nothing was changed).",
    );
    assert.equal(
      exitCodeMeaning("scripts/plex-migrate-source.sh", 2),
      "bad configuration or usage",
    );
    assert.match(exitCodeMeaning("scripts/plex-init.sh", 2), /^bad settings/);
    assert.equal(
      exitCodeMeaning("scripts/plex-migrate-source.sh", 42),
      "exit code 42 (not documented in scripts/plex-migrate-source.sh)",
    );
    assert.equal(exitCodeMeaning("scripts/no-such-script.sh", 1), "exit code 1");
  });
});
