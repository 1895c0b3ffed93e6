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
  advertiseUrlProblem,
  podLanNetworks,
  staleAddressWarning,
} from "../../lib/plex/networking";
import {
  autoConfigSize,
  minimumConfigGiB,
  parseQuantity,
  requiredConfigBytes,
  requiredConfigInodes,
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

  it("auto: library and files + headroom, as an ext4 claim that holds them, whole GiB up, at least 10Gi", () => {
    assert.strictEqual(autoConfigSize(0, 50), "10Gi");
    assert.strictEqual(autoConfigSize(5 * GiB, 50), "10Gi");
    // 12 GiB with headroom -> 12.6 GiB + 16 MiB + 1 GiB journal, / 0.93 = 14.7 -> 15Gi.
    assert.strictEqual(autoConfigSize(8 * GiB, 50), "15Gi");
    assert.strictEqual(autoConfigSize(30 * GiB, 0), "35Gi");
    assert.strictEqual(autoConfigSize(100 * GiB, 0), "114Gi");
    assert.strictEqual(autoConfigSize(100 * GiB, 100), "227Gi");
    // Three million small files need 3.3M inodes: 51 GiB at one inode per 16 KiB.
    assert.strictEqual(autoConfigSize(2 * GiB, 0, 3_000_000), "51Gi");
  });

  it("an explicit size must hold the library once formatted, naming the size that does", () => {
    assert.strictEqual(requiredConfigBytes(0), 16 * 1024 * 1024);
    assert.strictEqual(requiredConfigInodes(3000), 4300);
    assert.deepStrictEqual(resolveConfigSize("50Gi", 40 * GiB, 50), {
      quantity: "50Gi",
      auto: false,
    });
    assert.deepStrictEqual(resolveConfigSize("auto", 40 * GiB, 50), {
      quantity: "69Gi",
      auto: true,
    });
    // The library x 1.05 + 16 MiB alone would call 32Gi enough for 30 GiB; formatted, it is not.
    assert.throws(
      () => resolveConfigSize("32Gi", 30 * GiB, 50, 250_000),
      /plexConfigSize 32Gi cannot hold the Plex library \(30\.00 GiB and 250000 files measured on the VM\) once formatted: ext4 keeps 5% for root and about 2% for its own metadata, and has one inode per 16 KiB\. Fix: pulumi config set plexConfigSize 35Gi/,
    );
    assert.throws(
      () => resolveConfigSize("20Gi", 1 * GiB, 50, 2_000_000),
      /\(here the file count decides\)\. Fix: pulumi config set plexConfigSize 34Gi/,
    );
    assert.throws(() => resolveConfigSize("auto", Number.NaN, 50), /library size of NaN bytes/);
    assert.throws(() => resolveConfigSize("auto", -1, 50), /not a byte count/);
    assert.throws(() => resolveConfigSize("auto", 1, 50, 1.5), /1\.5 files in the library/);
  });

  describe("against real ext4 filesystems (mke2fs on sparse images, read back with dumpe2fs)", () => {
    let dir: string;
    before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "plexk8s-ext4-"))));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** e2fsprogs live in /usr/sbin, which a non-root PATH may lack. */
    const sbin = (tool: string) =>
      fs.existsSync(`/usr/sbin/${tool}`) ? `/usr/sbin/${tool}` : tool;

    /** What a non-root user can use on a fresh ext4 of `bytes` made with `mkfsArgs`. */
    function ext4(bytes: number, mkfsArgs: string[] = []): { freeBytes: number; inodes: number } {
      const image = path.join(dir, `fs-${bytes}-${mkfsArgs.join("")}.img`);
      fs.writeFileSync(image, "");
      fs.truncateSync(image, bytes);
      const mkfs = spawnSync(
        sbin("mke2fs"),
        [
          "-F",
          "-q",
          "-t",
          "ext4",
          "-E",
          "lazy_itable_init=1,lazy_journal_init=1",
          ...mkfsArgs,
          image,
        ],
        { encoding: "utf8" },
      );
      assert.strictEqual(mkfs.status, 0, mkfs.stderr);
      const dump = spawnSync(sbin("dumpe2fs"), ["-h", image], { encoding: "utf8" });
      fs.rmSync(image);
      const field = (name: string) => {
        const match = new RegExp(`^${name}:\\s+(\\d+)$`, "m").exec(dump.stdout);
        assert.ok(match, `dumpe2fs printed no ${name}`);
        return Number(match[1]);
      };
      const blockSize = field("Block size");
      return {
        // statfs's f_bavail: free blocks minus the ones kept for root.
        freeBytes: (field("Free blocks") - field("Reserved block count")) * blockSize,
        inodes: field("Free inodes"),
      };
    }

    const libraries: [string, number, number][] = [
      ["a small library", 3 * GiB, 40_000],
      ["30 GiB", 30 * GiB, 250_000],
      ["many small files", 4 * GiB, 1_500_000],
      ["150 GiB", 150 * GiB, 900_000],
    ];
    for (const [label, libraryBytes, fileCount] of libraries) {
      it(`${label}: the smallest claim the rule accepts holds it with and without -m0`, () => {
        const gib = minimumConfigGiB(libraryBytes, fileCount);
        for (const mkfsArgs of [[], ["-m0"]]) {
          const fsys = ext4(gib * GiB, mkfsArgs);
          assert.ok(
            fsys.freeBytes >= requiredConfigBytes(libraryBytes),
            `${gib}Gi ${mkfsArgs}: bytes`,
          );
          assert.ok(fsys.inodes >= requiredConfigInodes(fileCount), `${gib}Gi ${mkfsArgs}: inodes`);
        }
      });
    }

    it("the old rule's size for 30 GiB (32Gi) really is too small, so the check can fail", () => {
      const fsys = ext4(32 * GiB);
      assert.ok(fsys.freeBytes < requiredConfigBytes(30 * GiB));
      assert.ok(ext4(4 * GiB).inodes < requiredConfigInodes(300_000), "4Gi has 262144 inodes");
    });
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

describe("lib/plex/networking.ts", () => {
  it("merges the cluster's ranges into the VM's LAN networks, keeping the VM's when none", () => {
    assert.strictEqual(podLanNetworks("192.168.13.0/24", []), undefined);
    assert.strictEqual(
      podLanNetworks(" 192.168.13.0/24,10.42.0.0/16 ", ["10.42.0.0/16", "10.43.0.0/16"]),
      "192.168.13.0/24,10.42.0.0/16,10.43.0.0/16",
    );
    assert.strictEqual(podLanNetworks("", ["10.42.0.0/16"]), "10.42.0.0/16");
  });

  it("names the VM's stale address only when nothing new is advertised", () => {
    const vm = "http://192.168.13.21:32400";
    assert.match(staleAddressWarning({ mode: "internal" }, [], vm) ?? "", /192\.168\.13\.21/);
    assert.strictEqual(staleAddressWarning({ mode: "internal" }, [], ""), undefined);
    assert.strictEqual(
      staleAddressWarning({ mode: "internal" }, ["http://plex.example.net:32400"], vm),
      undefined,
    );
    assert.strictEqual(
      staleAddressWarning({ mode: "host", address: "192.168.13.30" }, [], vm),
      undefined,
    );
  });

  it("accepts scheme://host:port URLs only", () => {
    assert.strictEqual(advertiseUrlProblem("https://plex.example.net:443"), undefined);
    assert.strictEqual(advertiseUrlProblem("http://[fd00::1]:32400/"), undefined);
    assert.match(advertiseUrlProblem("ftp://plex.lan:21") ?? "", /must start with http/);
    assert.match(advertiseUrlProblem("http://plex.lan:32400/web") ?? "", /no path/);
    assert.match(advertiseUrlProblem("http://plex.lan") ?? "", /port spelled out/);
  });
});
