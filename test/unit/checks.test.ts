/**
 * The shared rules of lib/checks.ts at their edges: config and the components both rely on them,
 * so a change here changes both at once.
 */
import * as assert from "assert/strict";
import {
  isAtOrUnder,
  isDnsLabel,
  isSafeAbsolutePath,
  isSystemdUnit,
  isUnixUser,
  pgIdentifier,
  workDirInPlexData,
} from "../../lib/checks";

describe("shared rules (lib/checks.ts)", () => {
  it("a path is at or under a dir only on a segment boundary", () => {
    assert.equal(isAtOrUnder("/mnt/a", "/mnt/a"), true);
    assert.equal(isAtOrUnder("/mnt/a/b", "/mnt/a"), true);
    assert.equal(isAtOrUnder("/mnt/a/b", "/mnt/a/"), true);
    assert.equal(isAtOrUnder("/mnt/ab", "/mnt/a"), false);
    assert.equal(isAtOrUnder("/mnt", "/mnt/a"), false);
  });

  it("the work dir may not be the Plex data dir or inside it, trailing slashes or not", () => {
    const data = "/var/lib/plexmediaserver/Library/Application Support/Plex Media Server";
    assert.equal(workDirInPlexData(data, `${data}/`), true);
    assert.equal(workDirInPlexData(`${data}/tmp`, `${data}//`), true);
    assert.equal(workDirInPlexData("/var/lib/plex-migrate", data), false);
    assert.equal(workDirInPlexData(`${data} 2`, data), false);
  });

  it("paths, units, DNS labels and identifiers by the rules the VM script and Kubernetes apply", () => {
    assert.equal(isSafeAbsolutePath("/srv/media"), true);
    assert.equal(isSafeAbsolutePath("srv/media"), false);
    assert.equal(isSafeAbsolutePath("/srv/../etc"), false);
    assert.equal(isSafeAbsolutePath("/srv/a\nb"), false);
    assert.equal(isSystemdUnit("plexmediaserver"), true);
    assert.equal(isSystemdUnit("snap.plexmediaserver.plexmediaserver"), true);
    assert.equal(isSystemdUnit("plex@1.service"), true);
    assert.equal(isSystemdUnit("plex\\x2dmedia"), false);
    assert.equal(isSystemdUnit(""), false);
    assert.equal(isUnixUser("ubuntu"), true);
    assert.equal(isUnixUser("plex-migrate_1"), true);
    assert.equal(isUnixUser("-oProxyCommand=x"), false);
    assert.equal(isUnixUser("Ubuntu"), false);
    assert.equal(isDnsLabel("plex"), true);
    assert.equal(isDnsLabel("a".repeat(53), 53), true);
    assert.equal(isDnsLabel("a".repeat(54), 53), false);
    assert.equal(isDnsLabel("Plex"), false);
    assert.equal(pgIdentifier("tautulli_app"), undefined);
    assert.equal(
      pgIdentifier("tautulli-app"),
      'expected a lower-case PostgreSQL identifier (letters, digits, "_"), got "tautulli-app"',
    );
  });
});
