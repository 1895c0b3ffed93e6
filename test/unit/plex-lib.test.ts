/**
 * lib/plex helpers on their own: config volume sizing, image references, the rendered init
 * script (valid sh, settings quoted, no URL inside).
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parseImageRef, plexUrl, releaseTimeoutSeconds } from "../../lib/plex/helm-values";
import { INIT_SCRIPT_PATH, renderInitScript } from "../../lib/plex/init-script";
import {
  autoConfigSize,
  parseQuantity,
  requiredConfigBytes,
  resolveConfigSize,
} from "../../lib/plex/sizing";

const GiB = 1024 ** 3;
const SETTINGS = {
  archiveSha256: "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
  archiveBytes: 123_456_789,
  archiveFormat: "tar.gz",
  libraryBytes: 987_654_321,
  uid: 1001,
  gid: 100,
};

describe("lib/plex sizing", () => {
  it("parses Kubernetes quantities", () => {
    assert.strictEqual(parseQuantity("10Gi"), 10 * GiB);
    assert.strictEqual(parseQuantity("1.5Ti"), 1.5 * 1024 ** 4);
    assert.strictEqual(parseQuantity("500G"), 500e9);
    assert.strictEqual(parseQuantity("2048"), 2048);
    assert.throws(() => parseQuantity("10GB"), /"10GB" is not a Kubernetes quantity/);
  });

  it("auto: library + headroom, whole GiB up, at least 10Gi", () => {
    assert.strictEqual(autoConfigSize(0, 50), "10Gi");
    assert.strictEqual(autoConfigSize(6 * GiB, 50), "10Gi");
    assert.strictEqual(autoConfigSize(8 * GiB, 50), "12Gi");
    assert.strictEqual(autoConfigSize(8 * GiB + 1, 50), "13Gi");
    assert.strictEqual(autoConfigSize(100 * GiB, 0), "100Gi");
    assert.strictEqual(autoConfigSize(100 * GiB, 100), "200Gi");
  });

  it("an explicit size must hold the library (same margin as plex-init.sh)", () => {
    assert.strictEqual(requiredConfigBytes(0), 16 * 1024 * 1024);
    assert.deepStrictEqual(resolveConfigSize("50Gi", 40 * GiB, 50), {
      quantity: "50Gi",
      auto: false,
    });
    assert.deepStrictEqual(resolveConfigSize("auto", 40 * GiB, 50), {
      quantity: "60Gi",
      auto: true,
    });
    assert.throws(
      () => resolveConfigSize("40Gi", 40 * GiB, 50),
      /plexConfigSize 40Gi cannot hold the Plex library \(40\.00 GiB measured on the VM\)\. Fix: pulumi config set plexConfigSize 43Gi/,
    );
    assert.throws(() => resolveConfigSize("auto", Number.NaN, 50), /library size of NaN bytes/);
    assert.throws(() => resolveConfigSize("auto", -1, 50), /not a byte count/);
  });
});

describe("lib/plex helm values helpers", () => {
  it("splits image references into the chart's registry/repository/tag/sha", () => {
    assert.deepStrictEqual(parseImageRef("alpine:3.22"), {
      registry: "index.docker.io",
      repository: "alpine",
      tag: "3.22",
      sha: "",
    });
    assert.deepStrictEqual(parseImageRef("library/alpine"), {
      registry: "index.docker.io",
      repository: "library/alpine",
      tag: "latest",
      sha: "",
    });
    assert.deepStrictEqual(parseImageRef("localhost/tools/init:1"), {
      registry: "localhost",
      repository: "tools/init",
      tag: "1",
      sha: "",
    });
    const digest = `sha256:${"0f".repeat(32)}`;
    assert.deepStrictEqual(parseImageRef(`ghcr.io/org/init@${digest}`), {
      registry: "ghcr.io",
      repository: "org/init",
      tag: "latest",
      sha: digest,
    });
    assert.throws(() => parseImageRef("alpine@md5:00"), /not an image reference/);
  });

  it("gives the mode's URL or the in-cluster one, and a timeout that grows with the archive", () => {
    assert.strictEqual(
      plexUrl("plex-media-server", "media", { mode: "internal" }),
      "http://plex-media-server.media.svc.cluster.local:32400",
    );
    assert.strictEqual(
      plexUrl("plex", "plex", { mode: "ingress", host: "p.example.com", tlsSecret: "p-tls" }),
      "https://p.example.com:443",
    );
    assert.strictEqual(
      plexUrl("plex", "plex", { mode: "host", address: "192.168.1.20" }),
      "http://192.168.1.20:32400",
    );
    assert.strictEqual(releaseTimeoutSeconds(0), 600);
    assert.strictEqual(releaseTimeoutSeconds(50 * GiB), 600 + 5120);
  });
});

describe("lib/plex/init-script.ts (rendering plex-init.sh for the chart)", () => {
  it("fills the settings block, quoted, keeping the shebang first", () => {
    const script = renderInitScript(SETTINGS);
    assert.ok(script.startsWith("#!/bin/sh\n"));
    const block = script.slice(
      script.indexOf("# @plex-init-settings-begin"),
      script.indexOf("# @plex-init-settings-end"),
    );
    assert.deepStrictEqual(block.split("\n").slice(1, -1), [
      "PLEX_ARCHIVE_URL_FILE='/plex-migrate/archive-url'",
      `PLEX_ARCHIVE_SHA256='${SETTINGS.archiveSha256.toLowerCase()}'`,
      "PLEX_ARCHIVE_BYTES='123456789'",
      "PLEX_ARCHIVE_FORMAT='tar.gz'",
      "PLEX_LIBRARY_BYTES='987654321'",
      "PLEX_UID='1001'",
      "PLEX_GID='100'",
    ]);
    assert.ok(
      !block.includes("://"),
      "the archive URL is not in the script: it comes from a Secret",
    );
    // Everything else is the script as committed.
    const original = fs.readFileSync(INIT_SCRIPT_PATH, "utf8");
    assert.strictEqual(
      script.slice(script.indexOf("# @plex-init-settings-end")),
      original.slice(original.indexOf("# @plex-init-settings-end")),
    );
  });

  it("renders a script sh parses and that reads the rendered settings", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-init-render-"));
    try {
      const file = path.join(dir, "init.sh");
      fs.writeFileSync(file, renderInitScript(SETTINGS), { mode: 0o700 });
      const parse = spawnSync("sh", ["-n", file], { encoding: "utf8" });
      assert.strictEqual(parse.status, 0, parse.stderr);
      // With an empty config dir and no URL Secret it stops at the settings, naming the mount.
      const config = path.join(dir, "config");
      fs.mkdirSync(config);
      const run = spawnSync(file, [], {
        encoding: "utf8",
        env: { PATH: process.env.PATH, PLEX_CONFIG_DIR: config },
      });
      assert.strictEqual(run.status, 2, run.stderr);
      assert.match(run.stderr, /mount the URL Secret at \/plex-migrate\/archive-url/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses settings that would break the script", () => {
    assert.throws(
      () => renderInitScript({ ...SETTINGS, archiveSha256: "abc'; rm -rf /" }),
      /archive sha256 .* is not 64 hex digits/,
    );
    assert.throws(() => renderInitScript({ ...SETTINGS, archiveBytes: 0 }), /archive length 0/);
    assert.throws(
      () => renderInitScript({ ...SETTINGS, archiveFormat: "zip" }),
      /"zip" is not one of/,
    );
    assert.throws(() => renderInitScript({ ...SETTINGS, libraryBytes: 1.5 }), /library size 1.5/);
    assert.throws(() => renderInitScript({ ...SETTINGS, uid: -3 }), /uid -3/);
    assert.throws(
      () => renderInitScript(SETTINGS, "#!/bin/sh\necho no block\n"),
      /no settings block/,
    );
  });
});
