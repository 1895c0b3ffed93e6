/**
 * scripts/plex-init.sh for real: busybox sh (the init image's shell and tools), real rsync and
 * ssh, a real sshd on loopback with the migration key behind the VM script's forced read-only
 * rrsync. A data directory with Plex's shapes (WAL databases, hard links, symlinks in and out of
 * the tree, odd names, sparse files, 0600 files), changes between the warm and the final phase,
 * and every fault: a cut connection, a killed pod, a VM reboot, a changed host key, a full
 * volume, a revoked key, a source that still changes. Faults happen at known points (a wrapper
 * ssh that cuts or holds the stream after a fixed number of bytes), never by timing.
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import Database from "better-sqlite3";
import {
  databaseLines,
  INIT_EXIT_CODES,
  INIT_LOG,
  INIT_MARKER,
  INIT_PLEX_DATA,
  INIT_STAGING,
  INIT_WARM_DONE,
} from "../../lib/plex/init-script";
import { imageLikePath, killGroup, measureDatabases } from "../../lib/plex/local-run";
import { requiredConfigBytes, requiredConfigInodes } from "../../lib/plex/sizing";
import { addPlexCollationsToFile, usesPlexCollations } from "../support/plex-library-db";
import { compareTrees, digestTree, LIBRARY_DB_RELATIVE } from "../../lib/samples/plex-tree";
import { createSyncFixture, transferredBytes, type SyncFixture } from "../support/sync-fixture";

const OWNER = { uid: 4321, gid: 4322 };
const asOwner = { PLEX_UID: String(OWNER.uid), PLEX_GID: String(OWNER.gid) };
/** Where the data directory sits inside the volume's Library folder. */
const DATA_ROOT_IN_LIBRARY = "Application Support/Plex Media Server";

function assertOk(result: { code: number | null; stderr: string }, what: string): void {
  assert.strictEqual(result.code, 0, `${what} failed:\n${result.stderr}`);
}

function assertExit(
  result: { code: number | null; stderr: string },
  code: number,
  message: RegExp,
): void {
  assert.strictEqual(result.code, code, `expected exit ${code}:\n${result.stderr}`);
  assert.match(result.stderr, message);
}

/** Plex never starts on a partial library: neither the library nor the marker exists. */
function assertNoLibrary(fixture: SyncFixture): void {
  assert.ok(
    !fs.existsSync(path.join(fixture.target.configDir, "Library")),
    "Library must not exist",
  );
  assert.ok(!fs.existsSync(path.join(fixture.target.configDir, INIT_MARKER)), "no marker");
}

async function assertCopyEqualsSource(fixture: SyncFixture): Promise<void> {
  const differences = compareTrees(
    await digestTree(fixture.dataDir),
    await digestTree(fixture.libraryDataDir),
    { nanoseconds: true, sparse: true, owner: OWNER },
  );
  assert.deepStrictEqual(differences, []);
}

/** What a running Plex does between the two phases: adds, modifies, deletes, rewrites the DB. */
function changeSource(dataDir: string): void {
  fs.writeFileSync(
    path.join(dataDir, "Metadata/Movies/added-after-warm.jpg"),
    Buffer.alloc(5000, 7),
  );
  const logFile = path.join(dataDir, "Logs/Plex Media Server.log");
  const log = fs.readFileSync(logFile);
  log[200] ^= 0xff; // same size, new content
  fs.writeFileSync(logFile, log);
  fs.rmSync(path.join(dataDir, "Logs/Plex Media Server.3.log"));
  fs.rmSync(path.join(dataDir, "Codecs/EasyAudioEncoder-1785-linux-x86_64"), { recursive: true });
  fs.chmodSync(path.join(dataDir, "Setup Plex.html"), 0o600);
  fs.rmSync(path.join(dataDir, "Logs/latest.log"));
  fs.symlinkSync("Plex Media Server.1.log", path.join(dataDir, "Logs/latest.log"));
  const db = new Database(path.join(dataDir, LIBRARY_DB_RELATIVE));
  db.exec("CREATE TABLE IF NOT EXISTS plex_migrate_probe (n INTEGER)");
  const insert = db.prepare("INSERT INTO plex_migrate_probe VALUES (?)");
  for (let i = 0; i < 500; i++) insert.run(i);
  db.pragma("wal_checkpoint(TRUNCATE)");
  db.close();
}

describe("plex-init.sh (rsync over SSH, busybox sh)", function () {
  this.timeout(300_000);
  let fixture: SyncFixture | undefined;
  afterEach(async () => {
    await fixture?.cleanup();
    fixture = undefined;
  });

  it("warm copy while Plex runs, then a final pass: every change arrives, every shape survives", async () => {
    fixture = await createSyncFixture({
      metadataFiles: 400,
      awkwardShapes: true,
      outsideSymlinks: true,
      sparseFiles: 2,
    });
    // The library database declares Plex's own collations (icu_root, naturalsort), as a real one.
    addPlexCollationsToFile(fixture.tree.libraryDb);
    const warm = await fixture.run("warm", {
      ...asOwner,
      PLEX_REQUIRED_BYTES: String(requiredConfigBytes(fixture.tree.bytes)),
    });
    assertOk(warm, "warm");
    assertNoLibrary(fixture);
    assert.ok(fs.existsSync(path.join(fixture.target.configDir, INIT_WARM_DONE)));
    assert.ok(transferredBytes(warm.stderr) >= fixture.tree.bytes * 0.9);

    changeSource(fixture.dataDir);
    const final = await fixture.run("final", asOwner);
    assertOk(final, "final");
    await assertCopyEqualsSource(fixture);
    // Only what changed crossed the wire in the final phase.
    assert.ok(transferredBytes(final.stderr) < fixture.tree.bytes / 4, final.stderr);
    assert.match(final.stderr, /a second pass finds nothing to change/);
    const databases = measureDatabases(fixture.dataDir).length;
    assert.ok(databases >= 3);
    assert.match(final.stderr, new RegExp(`sha256 of ${databases} Plex databases match`));
    const probe = new Database(path.join(fixture.libraryDataDir, LIBRARY_DB_RELATIVE), {
      readonly: true,
    });
    assert.strictEqual(
      (probe.prepare("SELECT count(*) AS n FROM plex_migrate_probe").get() as { n: number }).n,
      500,
    );
    probe.close();
    assert.ok(usesPlexCollations(path.join(fixture.libraryDataDir, LIBRARY_DB_RELATIVE)));
    assert.ok(fs.existsSync(path.join(fixture.target.configDir, INIT_MARKER)));
    assert.ok(!fs.existsSync(path.join(fixture.target.configDir, INIT_STAGING)));
    assert.strictEqual(fs.statSync(path.join(fixture.target.configDir, "Library")).uid, OWNER.uid);
    assert.match(fs.readFileSync(path.join(fixture.target.configDir, INIT_LOG), "utf8"), /done: /);
    // The token in Preferences.xml never shows in the logs.
    assert.ok(!final.stderr.includes(fixture.tree.plexOnlineToken));

    // Every later start is a no-op, even with the VM gone.
    await fixture.sshd.halt();
    const again = await fixture.run("final", asOwner);
    assertOk(again, "restart after the import");
    assert.match(again.stderr, /already imported/);
  });

  it("at scale: 200,000 tiny files and a 4.1 GiB sparse file, holes kept, then a short final pass", async function () {
    this.timeout(1_200_000);
    const huge = Math.floor(4.1 * 1024 ** 3);
    fixture = await createSyncFixture({
      metadataFiles: 200,
      tinyFiles: 200_000,
      hugeSparseFileBytes: huge,
    });
    assertOk(await fixture.run("warm", asOwner), "warm");
    fs.appendFileSync(path.join(fixture.dataDir, "Logs/Plex Media Server.log"), "one more line\n");
    const final = await fixture.run("final", asOwner);
    assertOk(final, "final");
    assert.ok(transferredBytes(final.stderr) < 1024 * 1024, final.stderr);
    const copied = fs.statSync(
      path.join(fixture.libraryDataDir, "Media/localhost/huge/index-4k.bif"),
    );
    assert.strictEqual(copied.size, huge);
    assert.ok(
      copied.blocks * 512 < 1024 * 1024,
      `the copy keeps the holes (${copied.blocks} blocks)`,
    );
    await assertCopyEqualsSource(fixture);
  });

  it("the final phase alone copies everything (no warm copy) and says so", async () => {
    fixture = await createSyncFixture({ metadataFiles: 100 });
    const final = await fixture.run("final", asOwner);
    assertOk(final, "final");
    assert.match(final.stderr, /no warm copy on the volume/);
    await assertCopyEqualsSource(fixture);
  });

  it("a cut connection is retried and the transfer resumes where it broke", async () => {
    fixture = await createSyncFixture({ metadataFiles: 300, largeFiles: 3 });
    const gate = fixture.gatedPath({
      call: 1,
      bytes: Math.floor(fixture.tree.bytes / 2),
      mode: "cut",
    });
    const warm = await fixture.run("warm", asOwner, { path: gate.path });
    assertOk(warm, "warm with a cut connection");
    assert.match(warm.stderr, /attempt 1 broke off \(rsync exit \d+/);
    assert.match(warm.stderr, /transfer: attempt 2/);
    assert.strictEqual(gate.calls(), 2);
    // The second attempt moved only what the first had not.
    assert.ok(transferredBytes(warm.stderr) < fixture.tree.bytes * 0.75, warm.stderr);
    assertOk(await fixture.run("final", asOwner), "final");
    await assertCopyEqualsSource(fixture);
  });

  it("gives up after the retries with exit 5 and no library", async () => {
    fixture = await createSyncFixture({ metadataFiles: 50 });
    await fixture.sshd.halt();
    const final = await fixture.run("final", { ...asOwner, PLEX_SYNC_RETRIES: "1" });
    assertExit(final, INIT_EXIT_CODES.transfer, /the transfer failed 2 times/);
    assertNoLibrary(fixture);
  });

  it("a pod killed mid-transfer leaves no library; the restarted pod resumes from the volume", async () => {
    fixture = await createSyncFixture({ metadataFiles: 300, largeFiles: 3 });
    const gate = fixture.gatedPath({
      call: 1,
      bytes: Math.floor(fixture.tree.bytes / 2),
      mode: "hold",
    });
    const held = fixture.start("final", asOwner, { path: gate.path });
    await gate.reached();
    killGroup(held.child, "SIGKILL");
    await held.done;
    assertNoLibrary(fixture);
    const staged = spawnSync("find", [fixture.stagingDataDir, "-type", "f"], {
      encoding: "utf8",
    }).stdout;
    assert.ok(
      staged.split("\n").filter(Boolean).length > 10,
      "the first pod left files to resume from",
    );

    const restarted = await fixture.run("final", asOwner);
    assertOk(restarted, "the restarted pod");
    assert.ok(transferredBytes(restarted.stderr) < fixture.tree.bytes * 0.75, restarted.stderr);
    await assertCopyEqualsSource(fixture);
  });

  it("SIGTERM (pod deleted) ends the transfer at once with exit 10, the staging copy kept", async () => {
    fixture = await createSyncFixture({ metadataFiles: 200, largeFiles: 2 });
    const gate = fixture.gatedPath({
      call: 1,
      bytes: Math.floor(fixture.tree.bytes / 3),
      mode: "hold",
    });
    const held = fixture.start("warm", asOwner, { path: gate.path });
    await gate.reached();
    held.child.kill("SIGTERM");
    const result = await held.done;
    assertExit(result, INIT_EXIT_CODES.interrupted, /interrupted; the staging copy is kept/);
    assertNoLibrary(fixture);
    assert.ok(fs.existsSync(fixture.stagingDataDir));
  });

  it("a VM reboot between the phases: the final phase connects again and completes", async () => {
    fixture = await createSyncFixture({ metadataFiles: 100 });
    assertOk(await fixture.run("warm", asOwner), "warm");
    await fixture.sshd.restart();
    changeSource(fixture.dataDir);
    assertOk(await fixture.run("final", asOwner), "final after the reboot");
    await assertCopyEqualsSource(fixture);
  });

  it("refuses a changed VM host key (exit 7) and names the setting to fix", async () => {
    fixture = await createSyncFixture({ metadataFiles: 50 });
    assertOk(await fixture.run("warm", asOwner), "warm");
    await fixture.sshd.restart({ newHostKey: true });
    const final = await fixture.run("final", asOwner);
    assertExit(final, INIT_EXIT_CODES.hostKey, /not the pinned one \(vmHostKey\)/);
    assertNoLibrary(fixture);
    assert.doesNotMatch(final.stderr, /attempt 2/, "a host key mismatch is not retried");
  });

  it("refuses when no host key is pinned", async () => {
    fixture = await createSyncFixture({ metadataFiles: 20 });
    fs.writeFileSync(fixture.target.knownHostsFile, "");
    assertExit(await fixture.run("warm", asOwner), INIT_EXIT_CODES.hostKey, /no pinned host key/);
  });

  it("a revoked key ends in exit 11 telling to run pulumi up again", async () => {
    fixture = await createSyncFixture({ metadataFiles: 20 });
    await fixture.vm.revoke();
    const final = await fixture.run("final", asOwner);
    assertExit(final, INIT_EXIT_CODES.access, /refused the migration key/);
    assertNoLibrary(fixture);
  });

  it("a source still changing during the final phase fails verification (exit 6)", async () => {
    fixture = await createSyncFixture({ metadataFiles: 50 });
    // An rsync that changes the source right before the verification pass (its dry run).
    const realRsync = spawnSync("sh", ["-c", "command -v rsync"], {
      encoding: "utf8",
    }).stdout.trim();
    const wrapper = path.join(fixture.root, "changing-rsync");
    fs.writeFileSync(
      wrapper,
      `#!/bin/sh\ncase " $* " in *" --dry-run "*) echo more >>'${path.join(fixture.dataDir, "Logs/Plex Media Server.log")}' ;; esac\nexec ${realRsync} "$@"\n`,
      { mode: 0o755 },
    );
    const bin = path.join(fixture.root, "bin-changing");
    imageLikePath(bin, { rsync: wrapper });
    const final = await fixture.run("final", asOwner, { path: bin });
    assertExit(
      final,
      INIT_EXIT_CODES.verify,
      /still differs from the VM in 1 entries.*is Plex really stopped/,
    );
    assertNoLibrary(fixture);
  });

  it("a database that differs from the stop step's checksum fails verification (exit 6)", async () => {
    fixture = await createSyncFixture({ metadataFiles: 20 });
    const databases = measureDatabases(fixture.dataDir).map((db, i) =>
      i === 0 ? { ...db, sha256: "0".repeat(64) } : db,
    );
    const final = await fixture.run("final", {
      ...asOwner,
      PLEX_SYNC_DATABASES: databaseLines(databases),
    });
    assertExit(
      final,
      INIT_EXIT_CODES.verify,
      /sha256 of ".*" in the copy is [0-9a-f]{64}, on the VM after the stop 0{64}/,
    );
    assertNoLibrary(fixture);
  });

  describe("on a small volume (tmpfs)", () => {
    let mount: string | undefined;
    afterEach(() => {
      if (mount) spawnSync("umount", [mount]);
      mount = undefined;
    });

    it("a full volume: a clear error (exit 4); after growing it the copy resumes and completes", async () => {
      fixture = await createSyncFixture({ metadataFiles: 200, largeFiles: 4 });
      mount = path.join(fixture.root, "small-volume");
      fs.mkdirSync(mount);
      const size = Math.floor(fixture.tree.bytes / 3);
      assert.strictEqual(
        spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", mount]).status,
        0,
      );
      const small = { ...asOwner, PLEX_CONFIG_DIR: mount };
      // Without a size to check first, rsync runs into the full volume.
      const full = await fixture.run("warm", small);
      assertExit(full, INIT_EXIT_CODES.space, /the config volume is full .* plexConfigSize/);
      // With the preflight's size, the check refuses before copying.
      const checked = await fixture.run("warm", {
        ...small,
        PLEX_REQUIRED_BYTES: String(requiredConfigBytes(fixture.tree.bytes)),
      });
      assertExit(checked, INIT_EXIT_CODES.space, /not enough free space/);
      assert.strictEqual(
        spawnSync("mount", ["-o", `remount,size=${fixture.tree.bytes * 3}`, mount]).status,
        0,
      );
      const grown = await fixture.run("final", small);
      assertOk(grown, "final on the grown volume");
      assert.ok(transferredBytes(grown.stderr) < fixture.tree.bytes, "resumed, not restarted");
      const differences = compareTrees(
        await digestTree(fixture.dataDir),
        await digestTree(path.join(mount, INIT_PLEX_DATA)),
        { nanoseconds: true, owner: OWNER },
      );
      assert.deepStrictEqual(differences, []);
    });
  });

  describe("on a small ext4 volume (loop device, few inodes)", () => {
    const mounts: string[] = [];
    afterEach(() => {
      for (const mount of mounts.splice(0)) spawnSync("umount", [mount]);
    });

    /** A real ext4 with `inodes` inodes on a loop device, mounted in the fixture's tree. */
    function ext4Volume(name: string, mib: number, inodes: number): string {
      const image = path.join(fixture!.root, `${name}.img`);
      fs.writeFileSync(image, "");
      fs.truncateSync(image, mib * 1024 * 1024);
      const mkfs = spawnSync("mkfs.ext4", ["-q", "-F", "-N", String(inodes), image], {
        encoding: "utf8",
      });
      assert.strictEqual(mkfs.status, 0, mkfs.stderr);
      const mount = path.join(fixture!.root, name);
      fs.mkdirSync(mount);
      const mounted = spawnSync("mount", ["-o", "loop", image, mount], { encoding: "utf8" });
      assert.strictEqual(mounted.status, 0, mounted.stderr);
      mounts.push(mount);
      return mount;
    }

    it("refuses before copying when the library has more files than the volume has inodes", async () => {
      fixture = await createSyncFixture({ metadataFiles: 3000, largeFiles: 1 });
      const entries = fixture.tree.files + fixture.tree.directories + fixture.tree.symlinks;
      assert.ok(entries > 3000, `${entries} entries`);
      const small = { ...asOwner, PLEX_CONFIG_DIR: ext4Volume("few-inodes", 256, 2000) };
      const total = Number(
        spawnSync("busybox", ["df", "-Pi", small.PLEX_CONFIG_DIR], { encoding: "utf8" })
          .stdout.split("\n")[1]
          .split(/\s+/)[1],
      );
      assert.ok(total >= 2000 && total < 2100, `${total} inodes`);
      const bytesFree = Number(
        spawnSync("df", ["-Pk", small.PLEX_CONFIG_DIR], { encoding: "utf8" })
          .stdout.split("\n")[1]
          .split(/\s+/)[3],
      );
      assert.ok(bytesFree * 1024 > fixture.tree.bytes * 2, "room for the bytes, not the files");

      // Without the inode need, rsync runs out of inodes at the end and says so, not "full".
      const unchecked = await fixture.run("warm", {
        ...small,
        PLEX_REQUIRED_BYTES: String(requiredConfigBytes(fixture.tree.bytes)),
      });
      assertExit(
        unchecked,
        INIT_EXIT_CODES.space,
        /the config volume ran out of inodes \(only \d+ of \d+ free, while \d+ MiB are still free\).*plexConfigSize/,
      );
      assert.doesNotMatch(unchecked.stderr, /the config volume is full/);
      fs.rmSync(path.join(small.PLEX_CONFIG_DIR, ".plex-migrate"), { recursive: true });

      // With the preflight's file count, both phases refuse before copying anything.
      for (const phase of ["warm", "final"] as const) {
        const checked = await fixture.run(phase, {
          ...small,
          PLEX_REQUIRED_BYTES: String(requiredConfigBytes(fixture.tree.bytes)),
          PLEX_REQUIRED_INODES: String(requiredConfigInodes(entries)),
        });
        assertExit(
          checked,
          INIT_EXIT_CODES.space,
          /not enough free inodes on .*: the library needs \d+ more files, the filesystem has room for \d+ \(of \d+\)\. Give the config volume more room \(config plexConfigSize/,
        );
        assert.doesNotMatch(checked.stderr, /transfer: attempt/);
        assertNoLibrary(fixture);
      }
    });

    it("passes on a volume with the inodes the sizing asks for, and the copy completes", async () => {
      fixture = await createSyncFixture({ metadataFiles: 3000, largeFiles: 1 });
      const entries = fixture.tree.files + fixture.tree.directories + fixture.tree.symlinks;
      const required = requiredConfigInodes(entries);
      // ext4 keeps its first 11 inodes and lost+found: a little over the need leaves it free.
      const volume = {
        ...asOwner,
        PLEX_CONFIG_DIR: ext4Volume("enough-inodes", 256, required + 64),
      };
      const need = {
        PLEX_REQUIRED_BYTES: String(requiredConfigBytes(fixture.tree.bytes)),
        PLEX_REQUIRED_INODES: String(required),
      };
      const warm = await fixture.run("warm", { ...volume, ...need });
      assertOk(warm, "warm");
      assert.match(warm.stderr, /inodes: the library needs about \d+ more, \d+ free/);
      // After a complete warm copy the final phase moves only changes: it does not walk the
      // staged tree again (that would lengthen the downtime).
      const final = await fixture.run("final", { ...volume, ...need });
      assertOk(final, "final");
      assert.doesNotMatch(final.stderr, /inodes: |space: /);
      assert.ok(fs.existsSync(path.join(volume.PLEX_CONFIG_DIR, INIT_MARKER)));
    });

    it("does not check inodes where the filesystem reports none (tmpfs without nr_inodes)", async () => {
      fixture = await createSyncFixture({ metadataFiles: 50 });
      const mount = path.join(fixture.root, "no-inode-limit");
      fs.mkdirSync(mount);
      const mounted = spawnSync("mount", [
        "-t",
        "tmpfs",
        "-o",
        "size=256m,nr_inodes=0",
        "tmpfs",
        mount,
      ]);
      assert.strictEqual(mounted.status, 0);
      mounts.push(mount);
      const result = await fixture.run("warm", {
        ...asOwner,
        PLEX_CONFIG_DIR: mount,
        PLEX_REQUIRED_INODES: "999999999",
      });
      assertOk(result, "warm");
      assert.match(result.stderr, /reports no inode limit .*; not checked/);
    });
  });

  it("names the tools missing from the image (exit 3) and installs nothing", async () => {
    fixture = await createSyncFixture({ metadataFiles: 10 });
    const bin = path.join(fixture.root, "bin-no-rsync");
    fs.cpSync(fixture.binDir, bin, { recursive: true, verbatimSymlinks: true });
    fs.rmSync(path.join(bin, "rsync"));
    fs.rmSync(path.join(bin, "ssh"));
    const result = await fixture.run("warm", asOwner, { path: bin });
    assertExit(
      result,
      INIT_EXIT_CODES.tools,
      /missing tools in the init image: rsync ssh\(openssh-client\)\. Use an image/,
    );
  });

  it("leaves a Library it did not create alone (exit 8)", async () => {
    fixture = await createSyncFixture({ metadataFiles: 10 });
    fs.mkdirSync(path.join(fixture.target.configDir, "Library/Application Support"), {
      recursive: true,
    });
    const result = await fixture.run("final", asOwner);
    assertExit(
      result,
      INIT_EXIT_CODES.foreignLibrary,
      /was not put there by plex-init .* left untouched/,
    );
    assert.ok(fs.existsSync(path.join(fixture.target.configDir, "Library/Application Support")));
  });

  it("completes a run that stopped between moving the library into place and the marker", async () => {
    fixture = await createSyncFixture({ metadataFiles: 10 });
    assertOk(await fixture.run("final", asOwner), "final");
    const marker = path.join(fixture.target.configDir, INIT_MARKER);
    fs.rmSync(marker);
    fs.writeFileSync(
      path.join(fixture.target.configDir, ".plex-migrate/verified"),
      "owner=4321:4322\n",
    );
    await fixture.sshd.halt();
    const result = await fixture.run("final", asOwner);
    assertOk(result, "completion");
    assert.match(result.stderr, /stopped before the marker; completing it/);
    assert.match(fs.readFileSync(marker, "utf8"), /owner=4321:4322/);
  });

  it("a new transfer generation copies the VM again; the older library is kept, never merged", async () => {
    fixture = await createSyncFixture({ metadataFiles: 30 });
    const config = fixture.target.configDir;
    const marker = path.join(config, INIT_MARKER);
    assertOk(await fixture.run("final", asOwner), "first generation");
    assert.match(fs.readFileSync(marker, "utf8"), /^generation=1$/m);
    // What the cluster's Plex writes after the move (watch state in its database, new posters).
    const clusterOnly = path.join(fixture.libraryDataDir, "Metadata/written-in-the-cluster.jpg");
    fs.writeFileSync(clusterOnly, "cluster");
    // The same generation again is a no-op: it does not even connect.
    await fixture.sshd.halt();
    const again = await fixture.run("final", asOwner);
    assertOk(again, "same generation");
    assert.match(again.stderr, /already imported .*generation=1.*nothing to do/);
    await fixture.sshd.restart();

    // Back on the VM (a rollback), Plex changed its library; then transferGeneration 2.
    changeSource(fixture.dataDir);
    const next = { ...asOwner, PLEX_SYNC_GENERATION: "2" };
    const warm = await fixture.run("warm", next);
    assertOk(warm, "warm, generation 2");
    assert.match(warm.stderr, /from transfer generation 1; generation 2 copies the VM again/);
    // The warm copy stages beside the library in use, which stays as it was.
    assert.ok(fs.existsSync(clusterOnly), "the library in use is untouched by the warm copy");
    assert.match(fs.readFileSync(marker, "utf8"), /^generation=1$/m);

    const final = await fixture.run("final", next);
    assertOk(final, "final, generation 2");
    await assertCopyEqualsSource(fixture);
    assert.ok(!fs.existsSync(clusterOnly), "the new library is the VM's, not a merge");
    const replaced = path.join(config, ".plex-migrate/replaced-generation-1");
    assert.match(
      final.stderr,
      /library of transfer generation 1 is kept in .*replaced-generation-1/,
    );
    assert.strictEqual(
      fs.readFileSync(
        path.join(replaced, DATA_ROOT_IN_LIBRARY, "Metadata/written-in-the-cluster.jpg"),
        "utf8",
      ),
      "cluster",
    );
    assert.match(fs.readFileSync(marker, "utf8"), /^generation=2$/m);

    // Stopped between the rename and the marker: completed as generation 2, nothing moved aside.
    fs.writeFileSync(marker, "method=rsync\nowner=4321:4322\ngeneration=1\n");
    fs.writeFileSync(
      path.join(config, ".plex-migrate/verified"),
      "owner=4321:4322\ngeneration=2\n",
    );
    await fixture.sshd.halt();
    const resumed = await fixture.run("final", next);
    assertOk(resumed, "completion, generation 2");
    assert.match(resumed.stderr, /stopped before the marker; completing it/);
    assert.match(fs.readFileSync(marker, "utf8"), /^generation=2$/m);
    await assertCopyEqualsSource(fixture);
    assert.deepStrictEqual(
      fs.readdirSync(path.join(config, ".plex-migrate")).filter((n) => n.startsWith("replaced")),
      ["replaced-generation-1"],
    );
    // A lower generation than the marker's is done too; a generation that is no number is refused.
    assertOk(await fixture.run("final", asOwner), "older generation setting");
    assertExit(
      await fixture.run("final", { ...asOwner, PLEX_SYNC_GENERATION: "0" }),
      INIT_EXIT_CODES.settings,
      /PLEX_SYNC_GENERATION "0" must be a whole number from 1 \(the stack's transferGeneration\)/,
    );
  });

  it("rejects bad settings with the variable's name (exit 2)", async () => {
    fixture = await createSyncFixture({ metadataFiles: 10 });
    const cases: [Record<string, string>, RegExp][] = [
      [{ PLEX_SYNC_PHASE: "both" }, /PLEX_SYNC_PHASE must be warm or final/],
      [{ PLEX_SYNC_HOST: "" }, /PLEX_SYNC_HOST is not set/],
      [{ PLEX_SYNC_HOST: "vm;reboot" }, /PLEX_SYNC_HOST "vm;reboot" is not a host name/],
      [{ PLEX_SYNC_PORT: "70000" }, /PLEX_SYNC_PORT "70000" is not a TCP port/],
      [{ PLEX_SYNC_USER: "-oProxyCommand=x" }, /PLEX_SYNC_USER .* is not a user name/],
      [{ PLEX_UID: "plex" }, /PLEX_UID must be a numeric uid/],
      [{ PLEX_REQUIRED_INODES: "lots" }, /PLEX_REQUIRED_INODES must be a whole number/],
      [{ PLEX_SYNC_DATABASES: "" }, /PLEX_SYNC_DATABASES is empty/],
      [{ PLEX_SYNC_DATABASES: "abc 1 x.db" }, /PLEX_SYNC_DATABASES must hold lines/],
      [
        { PLEX_SYNC_EXCLUDES: "Cache/Old" },
        /PLEX_SYNC_EXCLUDES entry "Cache\/Old" must be a top-level folder/,
      ],
      [{ PLEX_SYNC_KEY_FILE: "/nonexistent" }, /the migration key \/nonexistent is missing/],
    ];
    for (const [extra, message] of cases) {
      const result = await fixture.run("final", { ...asOwner, ...extra });
      assertExit(result, INIT_EXIT_CODES.settings, message);
    }
    assertNoLibrary(fixture);
  });

  it("excluded top-level folders are not copied", async () => {
    fixture = await createSyncFixture({ metadataFiles: 20 });
    assertOk(
      await fixture.run("final", { ...asOwner, PLEX_SYNC_EXCLUDES: "Cache\nLogs" }),
      "final",
    );
    assert.ok(!fs.existsSync(path.join(fixture.libraryDataDir, "Cache")));
    assert.ok(!fs.existsSync(path.join(fixture.libraryDataDir, "Logs")));
    assert.ok(fs.existsSync(path.join(fixture.libraryDataDir, "Preferences.xml")));
  });
});
