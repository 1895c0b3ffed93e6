/**
 * The Plex move end to end, for real: a generated Plex data directory (lib/samples/plex-tree: real
 * SQLite databases with WAL, Preferences.xml, thousands of small files, large files, unicode and
 * space names, symlinks, empty directories) is archived and served by the VM script
 * (scripts/plex-migrate-source.sh: bash, GNU tar, zstd/gzip, the python3 Range server) and pulled
 * into a stand-in /config by the init container's scripts/plex-init.sh (sh, curl, tar).
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import {
  compareTrees,
  digestTree,
  generatePlexTree,
  type PlexTreeManifest,
  type TreeDigest,
} from "../../lib/samples/plex-tree";
import {
  INIT_EXIT_CODES,
  INIT_MARKER,
  INIT_LOG,
  INIT_SCRIPT_PATH,
} from "../../lib/plex/init-script";
import {
  LocalSource,
  freePort,
  startPlexInit,
  startProcess,
  type PlexInitEnv,
  type ProcessResult,
} from "../../lib/plex/local-run";
import type { ArchiveResult } from "../../lib/source-vm/outputs";

const DATA_ROOT = "Library/Application Support/Plex Media Server";
const LOG_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ plex-init: /;
const PLEX_UID = 1000;
const PLEX_GID = 1000;

async function waitFor(check: () => boolean, what: string, seconds = 30): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function entriesOf(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
}

describe("Plex transfer end to end (VM script archive+serve -> plex-init.sh)", function () {
  this.timeout(300_000);
  let root: string;
  let dataDir: string;
  let manifest: PlexTreeManifest;
  let source: TreeDigest;
  let libraryBytes: number;

  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "plex-transfer-"));
    dataDir = path.join(root, "vm", "Plex Media Server");
    fs.mkdirSync(dataDir, { recursive: true });
    manifest = await generatePlexTree(dataDir, {
      seed: 7,
      metadataFiles: 3000,
      largeFiles: 2,
      largeFileBytes: 5 * 1024 * 1024,
      totalBytes: 32 * 1024 * 1024,
    });
    source = await digestTree(dataDir);
    // What the preflight measures (du -B1): disk usage, the figure the free-space check uses.
    libraryBytes = Number(
      spawnSync("du", ["-s", "-B1", dataDir], { encoding: "utf8" }).stdout.split("\t")[0],
    );
  });

  after(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  /** A fresh "VM work dir" and "/config" for one case; the archive is made and served. */
  async function servedArchive(
    name: string,
    compression = "auto",
  ): Promise<{ vm: LocalSource; archive: ArchiveResult; config: string; env: PlexInitEnv }> {
    const caseDir = path.join(root, name);
    const config = path.join(caseDir, "config");
    fs.mkdirSync(config, { recursive: true });
    const vm = new LocalSource({
      dataDir,
      workDir: path.join(caseDir, "vm-work"),
      compression,
      token: crypto.randomBytes(24).toString("base64url"),
      port: await freePort(),
    });
    const archive = await vm.archive();
    await vm.serve();
    const env: PlexInitEnv = {
      PLEX_CONFIG_DIR: config,
      PLEX_ARCHIVE_URL: vm.url(archive),
      PLEX_ARCHIVE_SHA256: archive.archive.sha256,
      PLEX_ARCHIVE_BYTES: String(archive.archive.bytes),
      PLEX_ARCHIVE_FORMAT: archive.archive.format,
      PLEX_LIBRARY_BYTES: String(libraryBytes),
      PLEX_UID: String(PLEX_UID),
      PLEX_GID: String(PLEX_GID),
      PLEX_INIT_INSTALL_TOOLS: "never",
      PLEX_INIT_RETRY_DELAY: "1",
      PLEX_INIT_TMPDIR: caseDir,
    };
    return { vm, archive, config, env };
  }

  async function assertImported(config: string, result: ProcessResult): Promise<TreeDigest> {
    assert.strictEqual(result.code, 0, result.stderr);
    const target = await digestTree(path.join(config, DATA_ROOT));
    assert.deepStrictEqual(compareTrees(source, target), [], "the imported tree differs");
    assert.strictEqual(target.files, manifest.files);
    for (const entry of target.entries) {
      assert.deepStrictEqual(
        [entry.uid, entry.gid],
        [PLEX_UID, PLEX_GID],
        `owner of ${entry.path}`,
      );
    }
    // The two parents the archive adds carry the data directory's mode and mtime.
    const dataStat = fs.statSync(dataDir);
    for (const parent of ["Library", "Library/Application Support"]) {
      const stat = fs.statSync(path.join(config, parent));
      assert.strictEqual(stat.mode & 0o7777, dataStat.mode & 0o7777, `mode of ${parent}`);
      assert.strictEqual(Math.floor(stat.mtimeMs / 1000), Math.floor(dataStat.mtimeMs / 1000));
      assert.deepStrictEqual([stat.uid, stat.gid], [PLEX_UID, PLEX_GID]);
    }
    // Nothing but the library and plex-init's own state on the volume: no archive copy.
    assert.deepStrictEqual(entriesOf(config), [".plex-migrate", "Library"]);
    assert.deepStrictEqual(entriesOf(path.join(config, ".plex-migrate")), [
      "import-complete",
      "import.log",
    ]);
    return target;
  }

  function assertNothingImported(config: string): void {
    assert.ok(!fs.existsSync(path.join(config, "Library")), "no Library after a failure");
    assert.deepStrictEqual(entriesOf(path.join(config, ".plex-migrate")), ["import.log"]);
  }

  function assertNoSecretsIn(text: string, url: string): void {
    const token = new URL(url).pathname.split("/")[1];
    assert.ok(!text.includes(token), "the serving token appears in the output");
    assert.ok(!text.includes(manifest.plexOnlineToken), "the Plex token appears in the output");
  }

  it("imports the tree byte for byte (content, modes, symlinks, mtimes), owned by plex; a second run is a no-op", async () => {
    const { vm, archive, config, env } = await servedArchive("identical");
    assert.strictEqual(archive.archive.format, "tar.zst", "zstd is installed: the VM picks it");
    const first = await startPlexInit(env).done;
    await assertImported(config, first);

    const log = fs.readFileSync(path.join(config, INIT_LOG), "utf8");
    for (const line of [...first.stderr.trim().split("\n"), ...log.trim().split("\n")]) {
      assert.match(line, LOG_LINE);
    }
    assert.match(
      first.stderr,
      /plex-init: download: http:\/\/127\.0\.0\.1:\d+\/<hidden>\/plex-library\.tar\.zst/,
    );
    assert.match(
      first.stderr,
      new RegExp(`verified: ${archive.archive.bytes} bytes, sha256 ${archive.archive.sha256}`),
    );
    assertNoSecretsIn(first.stderr + log, env.PLEX_ARCHIVE_URL ?? "");
    const marker = fs.readFileSync(path.join(config, INIT_MARKER), "utf8");
    assert.match(marker, new RegExp(`^archive_sha256=${archive.archive.sha256}$`, "m"));
    assert.match(marker, new RegExp(`^archive_bytes=${archive.archive.bytes}$`, "m"));

    // The server is gone and the archive removed: the next pod start must not need them.
    await vm.stopServing();
    const libraryMtime = fs.statSync(path.join(config, "Library")).mtimeMs;
    const second = await startPlexInit(env).done;
    assert.strictEqual(second.code, 0, second.stderr);
    assert.match(
      second.stderr,
      /already imported \(imported_at=.* archive_sha256=[0-9a-f]{64} .*\); nothing to do/,
    );
    assert.ok(!second.stderr.includes("download:"), "no download on the second run");
    await assertImported(config, second);
    assert.strictEqual(fs.statSync(path.join(config, "Library")).mtimeMs, libraryMtime);
  });

  it("imports tar.gz and uncompressed tar archives the same way", async () => {
    for (const compression of ["gzip", "none"]) {
      const { vm, archive, config, env } = await servedArchive(
        `format-${compression}`,
        compression,
      );
      assert.strictEqual(archive.archive.format, compression === "gzip" ? "tar.gz" : "tar");
      await assertImported(config, await startPlexInit(env).done);
      await vm.stopServing();
    }
  });

  it("runs under busybox ash with busybox's tools (as in alpine), plus curl, GNU tar and zstd", async () => {
    const { vm, config, env } = await servedArchive("busybox");
    const bin = path.join(root, "busybox-bin");
    fs.mkdirSync(bin, { recursive: true });
    const busybox = spawnSync("sh", ["-c", "command -v busybox"], {
      encoding: "utf8",
    }).stdout.trim();
    assert.ok(busybox, "busybox is needed for this test (Debian package busybox)");
    for (const applet of spawnSync(busybox, ["--list"], { encoding: "utf8" }).stdout.split("\n")) {
      if (applet) fs.symlinkSync(busybox, path.join(bin, applet));
    }
    for (const tool of ["curl", "tar", "zstd"]) {
      const real = spawnSync("sh", ["-c", `command -v ${tool}`], {
        encoding: "utf8",
      }).stdout.trim();
      fs.rmSync(path.join(bin, tool), { force: true });
      fs.symlinkSync(real, path.join(bin, tool));
    }
    const result = await startPlexInit(env, { shell: [busybox, "sh"], path: bin }).done;
    await assertImported(config, result);
    await vm.stopServing();
  });

  it("refuses a corrupted archive: checksum mismatch, nothing in Library, staging removed", async () => {
    const { vm, archive, config, env } = await servedArchive("corrupted");
    // Damage the served file after its sha256 was taken (disk or transfer corruption).
    const fd = fs.openSync(vm.archiveFile(archive), "r+");
    try {
      const offset = Math.floor(archive.archive.bytes / 2);
      const original = Buffer.alloc(16);
      fs.readSync(fd, original, 0, 16, offset);
      fs.writeSync(fd, Buffer.from(original.map((b) => b ^ 0xff)), 0, 16, offset);
    } finally {
      fs.closeSync(fd);
    }
    const result = await startPlexInit(env).done;
    assert.strictEqual(result.code, INIT_EXIT_CODES.checksum, result.stderr);
    assert.match(
      result.stderr,
      new RegExp(
        `sha256 of the received archive is [0-9a-f]{64}, expected ${archive.archive.sha256}`,
      ),
    );
    assert.match(result.stderr, /removing the staging directory after the failure/);
    assertNothingImported(config);
    assertNoSecretsIn(result.stderr, env.PLEX_ARCHIVE_URL ?? "");

    // Once the VM serves a good archive again, the same volume imports it.
    await vm.archive();
    await vm.serve();
    await assertImported(config, await startPlexInit(env).done);
    await vm.stopServing();
  });

  it("resumes where it stopped when the archive server is killed mid-download", async () => {
    const { vm, archive, config, env } = await servedArchive("resume");
    // Slow the transfer down (a real option) so the kill lands mid-download.
    const rate = Math.ceil(archive.archive.bytes / 6);
    const init = startPlexInit({
      ...env,
      PLEX_INIT_MAX_RATE: String(rate),
      PLEX_INIT_RETRIES: "30",
    });
    const staging = path.join(config, ".plex-migrate", "staging", "Library");
    await waitFor(() => fs.existsSync(staging), "extraction to start");
    await new Promise((r) => setTimeout(r, 1500));
    const pid = vm.serverPid();
    assert.ok(pid, "the archive server runs");
    process.kill(pid, "SIGKILL");
    await waitFor(
      () =>
        /attempt 1 broke after \d+ bytes/.test(
          fs.readFileSync(path.join(config, INIT_LOG), "utf8"),
        ),
      "the broken attempt",
      20,
    );
    assert.ok(!fs.existsSync(path.join(config, "Library")), "no Library while incomplete");
    await new Promise((r) => setTimeout(r, 1500));
    await vm.serve(); // the same token, as after a VM-side restart of the step
    const result = await init.done;
    await assertImported(config, result);
    const resumed = /download: resuming at byte (\d+) of (\d+)/.exec(result.stderr);
    assert.ok(resumed, result.stderr);
    assert.ok(Number(resumed[1]) > 0 && Number(resumed[1]) < archive.archive.bytes);
    assert.match(result.stderr, /download: complete/);
    await vm.stopServing();
  });

  /**
   * Runs plex-init.sh with /config on a tmpfs of `sizeMiB` in a private mount namespace (so the
   * mount disappears with the process) and lists what is left on it afterwards.
   */
  async function onSmallVolume(
    env: PlexInitEnv,
    sizeMiB: number,
  ): Promise<{ result: ProcessResult; code: number; left: string[] }> {
    const program =
      'mount -t tmpfs -o size="$2"m plex-migrate-test "$PLEX_CONFIG_DIR" || exit 99; ' +
      'sh "$1"; code=$?; echo "exit=$code"; cd "$PLEX_CONFIG_DIR" && find . -mindepth 1 | sort';
    const result = await startProcess(
      "unshare",
      ["-m", "--", "sh", "-c", program, "sh", INIT_SCRIPT_PATH, String(sizeMiB)],
      { env: { PATH: process.env.PATH, ...env } },
    ).done;
    const lines = result.stdout.trim().split("\n");
    const exit = /^exit=(\d+)$/.exec(lines[0] ?? "");
    assert.ok(exit, `no exit line: ${result.stdout} ${result.stderr}`);
    return { result, code: Number(exit[1]), left: lines.slice(1) };
  }

  it("fails cleanly on a full volume: refuses up front, and cleans up when it fills mid-extraction", async () => {
    const { vm, config, env } = await servedArchive("full-disk");
    // The volume is smaller than the library: refused before any byte is downloaded.
    const refused = await onSmallVolume(env, 24);
    assert.strictEqual(refused.code, INIT_EXIT_CODES.space, refused.result.stderr);
    assert.match(
      refused.result.stderr,
      /not enough free space on .*: need \d+ MiB, have 2[34] MiB\. Give the config volume more room \(config plexConfigSize\)/,
    );
    assert.ok(!refused.result.stderr.includes("download:"), "nothing downloaded");
    assert.deepStrictEqual(refused.left, ["./.plex-migrate", "./.plex-migrate/import.log"]);

    // An underestimated library passes the check, then the volume fills up while extracting.
    const filled = await onSmallVolume({ ...env, PLEX_LIBRARY_BYTES: "1" }, 24);
    assert.strictEqual(filled.code, INIT_EXIT_CODES.space, filled.result.stderr);
    assert.match(filled.result.stderr, /the config volume filled up while extracting/);
    assert.match(filled.result.stderr, /removing the staging directory after the failure/);
    assert.deepStrictEqual(filled.left, ["./.plex-migrate", "./.plex-migrate/import.log"]);
    assert.deepStrictEqual(entriesOf(config), [], "the mount was private to the test process");
    await vm.stopServing();
  });
});
