/**
 * A library database that uses Plex's collations (icu_root, naturalsort), as every real one does:
 * Plex's own SQLite checks it; stock SQLite cannot, and that is "not checked" with a warning that
 * says what is needed, never "corrupt" — on the fake VM and in `npm run rehearse -- --plex-dir`.
 */
import { strict as assert } from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import Database from "better-sqlite3";
import {
  addPlexCollations,
  addPlexCollationsToFile,
  usesPlexCollations,
} from "../support/plex-library-db";
import { generatePlexTree } from "../../lib/samples/plex-tree";
import { SCRIPT_PATH } from "../../lib/source-vm/commands";
import { parseStepOutput } from "../../lib/source-vm/outputs";
import { createFakeVm, FAKE_BIN_SOURCE, FakeVm } from "../support/fake-vm";

const ROOT = path.join(__dirname, "..", "..");

describe("Plex's collations in the library database", function () {
  this.timeout(240_000);
  const vms: FakeVm[] = [];
  const dirs: string[] = [];
  after(async () => {
    while (vms.length) await vms.pop()!.cleanup();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("the generator declares icu_root and naturalsort indexes that stock SQLite cannot check and Plex SQLite can", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-collations-"));
    dirs.push(dir);
    const file = path.join(dir, "library.db");
    const db = new Database(file);
    db.exec("CREATE TABLE metadata_items (id INTEGER PRIMARY KEY, title TEXT, title_sort TEXT)");
    const insert = db.prepare("INSERT INTO metadata_items (title) VALUES (?)");
    for (const t of ["alpha", "Beta", "gamma", "Delta", "épsilon"]) insert.run(t);
    addPlexCollations(db);
    db.close();
    assert.ok(usesPlexCollations(file));
    const schema = spawnSync(
      "sqlite3",
      [file, "SELECT sql FROM sqlite_master WHERE type='index'"],
      {
        encoding: "utf8",
      },
    );
    assert.match(schema.stdout, /title_sort COLLATE icu_root/);
    assert.match(schema.stdout, /title_sort COLLATE naturalsort/);
    const stock = spawnSync("sqlite3", [file, "PRAGMA integrity_check"], { encoding: "utf8" });
    assert.notEqual(stock.status, 0);
    assert.match(stock.stderr, /no such collation sequence: (icu_root|naturalsort)/);
    // The fake Plex SQLite records its calls in ../state, so it runs from a copy here.
    fs.mkdirSync(path.join(dir, "bin"));
    fs.mkdirSync(path.join(dir, "state"));
    const tool = path.join(dir, "bin", "Plex SQLite");
    fs.copyFileSync(path.join(FAKE_BIN_SOURCE, "Plex SQLite"), tool);
    fs.chmodSync(tool, 0o755);
    const plex = spawnSync(tool, [file, "PRAGMA integrity_check"], { encoding: "utf8" });
    assert.equal(plex.status, 0, plex.stderr);
    assert.equal(plex.stdout.trim(), "ok");
  });

  it("on the VM: Plex SQLite says ok; without it the verdict is not-checked with a warning naming Plex SQLite, and stop goes on", async () => {
    const vm = await createFakeVm({ servicesRunning: false });
    vms.push(vm);
    addPlexCollationsToFile(vm.manifest.libraryDb);
    assert.ok(usesPlexCollations(vm.manifest.libraryDb));

    const withPlex = await vm.run("preflight");
    assert.equal(withPlex.code, 0, withPlex.stderr);
    const checked = parseStepOutput("preflight", withPlex.stdout);
    assert.equal(checked.integrity, "ok");
    assert.equal(checked.integrityTool, "Plex SQLite");

    const stockPath = vm.path.replace(`${vm.plexBinDir}:`, "");
    const run = await vm.run("preflight", { PATH: stockPath });
    assert.equal(run.code, 0, run.stderr);
    const json = parseStepOutput("preflight", run.stdout);
    assert.equal(json.integrityTool, "sqlite3");
    assert.equal(json.integrity, "not-checked");
    assert.equal(json.databasesOk, true, "never called corrupt");
    assert.deepEqual(json.problems, []);
    assert.equal(json.databases[0].integrity, "not-checked");
    assert.match(json.databases[0].result, /no such collation sequence: (icu_root|naturalsort)/);
    assert.match(
      json.notes.join("\n"),
      /com\.plexapp\.plugins\.library\.db: integrity not checked: sqlite3 cannot read it .*needs Plex's own SQLite .*\/usr\/lib\/plexmediaserver\/Plex SQLite.*\/snap\/plexmediaserver\/current\/Plex SQLite/,
    );
    assert.deepEqual(json.mediaRoots, vm.manifest.mediaRoots, "media roots still read");

    const stop = await vm.run("stop", { PATH: stockPath });
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(parseStepOutput("stop", stop.stdout).integrity, "not-checked");
  });

  /**
   * Runs a step with the fake VM's tools but no "Plex SQLite" on PATH, in a private mount
   * namespace whose / is an overlay of this machine's, with the fake Plex SQLite installed at
   * `installs` (the real paths a package puts it at). Nothing outside the namespace changes.
   */
  function runWithPlexSqliteAt(vm: FakeVm, installs: string[], step: string) {
    const stockPath = vm.path.replace(`${vm.plexBinDir}:`, "");
    const setup = [
      "set -e",
      "mount -t tmpfs plex-migrate-root /mnt",
      "mkdir /mnt/up /mnt/work /mnt/root",
      "mount -t overlay overlay -o lowerdir=/,upperdir=/mnt/up,workdir=/mnt/work /mnt/root",
      "for d in proc dev sys tmp; do mount --rbind /$d /mnt/root/$d; done",
      "fake=$1 script=$2 step=$3; shift 3",
      'for tool in "$@"; do',
      '  mkdir -p "/mnt/root${tool%/*}" "/mnt/root${tool%/*/*}/state"',
      '  cp "$fake" "/mnt/root$tool"',
      "done",
      'exec chroot /mnt/root bash "$script" "$step"',
    ].join("\n");
    const result = spawnSync(
      "unshare",
      [
        "--mount",
        "--propagation",
        "private",
        "bash",
        "-c",
        setup,
        "setup",
        path.join(FAKE_BIN_SOURCE, "Plex SQLite"),
        SCRIPT_PATH,
        step,
        ...installs,
      ],
      { encoding: "utf8", env: vm.env({ PATH: stockPath }) },
    );
    return { code: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  it("finds Plex SQLite where the deb and the snap install it, with nothing on PATH", async () => {
    const vm = await createFakeVm({ servicesRunning: false });
    vms.push(vm);
    addPlexCollationsToFile(vm.manifest.libraryDb);
    const deb = "/usr/lib/plexmediaserver/Plex SQLite";
    const snap = "/snap/plexmediaserver/current/Plex SQLite";
    for (const [installs, expected] of [
      [[deb], deb],
      [[snap], snap],
      [[snap, deb], deb],
    ] as const) {
      const run = runWithPlexSqliteAt(vm, [...installs], "preflight");
      assert.equal(run.code, 0, run.stderr);
      const json = parseStepOutput("preflight", run.stdout);
      assert.equal(json.integrityTool, "Plex SQLite", installs.join(", "));
      assert.equal(json.integrityToolPath, expected);
      assert.equal(json.integrity, "ok", "the collations are checked");
    }
    assert.ok(!fs.existsSync("/snap/plexmediaserver"), "the machine itself is untouched");
    assert.ok(!fs.existsSync(deb));
  });

  it("npm run rehearse -- --plex-dir with such a library passes, with the not-checked warning", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-collations-rehearse-"));
    dirs.push(dir);
    const manifest = await generatePlexTree(path.join(dir, "Plex Media Server"), {
      metadataFiles: 200,
      largeFiles: 1,
      largeFileBytes: 512 * 1024,
    });
    addPlexCollationsToFile(manifest.libraryDb);
    // Exactly the documented command line (npm run rehearse -- --plex-dir <dir>).
    const result = spawnSync(
      "npm",
      [
        "run",
        "--silent",
        "rehearse",
        "--",
        "--plex-dir",
        manifest.dataDir,
        "--sample",
        "small",
        "--work-dir",
        dir,
      ],
      { cwd: ROOT, encoding: "utf8", env: { ...process.env, PATH: process.env.PATH } },
    );
    const output = `${result.stdout}\n${result.stderr}`;
    assert.equal(result.status, 0, output);
    assert.match(result.stdout, /# plex-migrate rehearsal: PASSED/);
    // The verdict is a warning of the report, not only a log line.
    assert.match(
      result.stdout,
      /## Warnings\n\n(- .*\n)*- .*integrity not checked: .*Plex's own SQLite/,
    );
    assert.match(output, /integrity not checked: .*needs Plex's own SQLite/);
    assert.doesNotMatch(output, /INTEGRITY PROBLEM|integrity check failed/);
    // The warm copy checks the volume as the pod does: bytes and inodes from the preflight.
    assert.match(output, /init warm: .*inodes: the library needs about \d+ more, \d+ free/);
  });
});
