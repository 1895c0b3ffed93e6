/**
 * scripts/plex-migrate-source.sh for real: bash, SQLite and python3 (the Tautulli snapshot), on a
 * fake VM (test/support/fake-vm: generated Plex tree, tautulli.db with WAL-only rows, fake
 * systemctl / dpkg-query / "Plex SQLite" on PATH, services that are real processes). The sync
 * access steps (authorize-sync, revoke-sync) are tested in transfer.test.ts.
 */
import { strict as assert } from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import Database from "better-sqlite3";
import {
  BLOBS_DB_RELATIVE,
  compareTrees,
  digestTree,
  LIBRARY_DB_RELATIVE,
  sha256File,
  TreeDigest,
} from "../../lib/samples/plex-tree";
import { SCRIPT_PATH } from "../../lib/source-vm/commands";
import { parseStepOutput } from "../../lib/source-vm/outputs";
import { createFakeVm, FakeVm, processesHolding, runProcess } from "../support/fake-vm";

const LOG_LINE = /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[(preflight|stop|rollback)\] /;

/** The VM's zone as the script reads it: /etc/localtime's target under zoneinfo/. */
function machineTimezone(): string {
  try {
    return fs.realpathSync("/etc/localtime").split("/zoneinfo/")[1] ?? "";
  } catch {
    return fs.existsSync("/etc/timezone") ? fs.readFileSync("/etc/timezone", "utf8").trim() : "";
  }
}

describe("plex-migrate-source.sh on a fake VM (bash, SQLite, fake systemd)", function () {
  this.timeout(120_000);

  describe("the whole sequence: preflight, stop, rollback", () => {
    let vm: FakeVm;
    let beforeAll: TreeDigest;
    let afterStop: TreeDigest;
    let tautulliBefore: TreeDigest;

    before(async () => {
      vm = await createFakeVm({ linger: 2 });
      beforeAll = await digestTree(vm.dataDir);
      tautulliBefore = await digestTree(path.dirname(vm.tautulliDb));
    });
    after(async () => {
      await vm?.cleanup();
    });

    it("preflight prints the facts as JSON, checks both databases with Plex SQLite, and changes nothing", async () => {
      const run = await vm.run("preflight");
      assert.equal(run.code, 0, run.stderr);
      const json = parseStepOutput("preflight", run.stdout);
      assert.equal(json.step, "preflight");
      assert.equal(json.ok, true);
      assert.equal(json.plexVersion, vm.manifest.plexVersion);
      assert.equal(json.plexVersionSource, "dpkg-query");
      assert.equal(json.plexRunning, true);
      assert.equal(json.dataDir, vm.dataDir);
      assert.equal(json.dataDirOwner, `${process.getuid!()}:${process.getgid!()}`);
      assert.equal(json.dataOwner.uid, process.getuid!());
      assert.equal(json.dataOwner.gid, process.getgid!());
      assert.equal(json.dataOwner.user, os.userInfo().username);
      assert.equal(
        json.fileCount,
        vm.manifest.files + vm.manifest.directories + vm.manifest.symlinks,
      );
      assert.equal(json.integrity, "ok");
      assert.equal(json.plexToken, vm.manifest.plexOnlineToken);
      assert.deepEqual(json.preferences, {
        machineIdentifier: vm.manifest.processedMachineIdentifier,
        allowedNetworks: "",
        lanNetworks: "",
        customConnections: "",
      });
      assert.equal(json.timezone, machineTimezone());
      assert.equal(json.tautulli?.config, vm.tautulliConfig);
      assert.ok(json.libraryBytes >= vm.manifest.bytes, "libraryBytes covers every file");
      assert.equal(json.libraryFiles, vm.manifest.files);
      assert.equal(json.databasesOk, true);
      assert.equal(json.integrityTool, "Plex SQLite");
      assert.deepEqual(
        json.databases.map((d) => [d.file, d.ok, d.result, d.walBytes > 0]),
        [
          [LIBRARY_DB_RELATIVE, true, "ok", true],
          [LIBRARY_DB_RELATIVE.replace(".db", ".blobs.db"), true, "ok", true],
        ],
      );
      assert.deepEqual(json.mediaRoots, vm.manifest.mediaRoots);
      assert.equal(json.tautulli?.found, true);
      assert.equal(json.tautulli?.serviceFound, true);
      assert.equal(json.tautulli?.running, true);
      assert.deepEqual(json.problems, []);
      assert.ok(vm.plexSqliteCalls().some((c) => c.includes("PRAGMA integrity_check(1)")));
      assert.ok(vm.serviceActive("plexmediaserver"), "preflight stops nothing");
      assert.deepEqual(compareTrees(beforeAll, await digestTree(vm.dataDir), { owners: true }), []);
    });

    it("stop masks and stops Plex and Tautulli, waits until their processes let go, re-checks the databases, takes the snapshot set", async () => {
      const run = await vm.run("stop");
      assert.equal(run.code, 0, run.stderr);
      // The fake services keep their database open 2 s after SIGTERM (the fake systemctl returns
      // at once): no holder left means the script waited for them.
      assert.deepEqual(processesHolding(vm.dataDir), []);
      assert.deepEqual(processesHolding(path.dirname(vm.tautulliDb)), []);
      const json = parseStepOutput("stop", run.stdout);
      assert.equal(json.step, "stop");
      assert.equal(json.databasesOk, true);
      assert.equal(json.integrity, "ok");
      assert.deepEqual(json.previousState, {
        plex: { unit: "plexmediaserver", active: true, enabled: true, unitFileState: "enabled" },
        tautulli: { unit: "tautulli", active: true, enabled: true, unitFileState: "enabled" },
      });
      assert.equal(vm.serviceActive("plexmediaserver"), false);
      assert.equal(vm.serviceActive("tautulli"), false);
      assert.equal(vm.serviceEnabled("plexmediaserver"), "masked");
      assert.equal(vm.serviceEnabled("tautulli"), "masked");
      assert.match(run.stderr, /waiting until no process has files open/);
      afterStop = await digestTree(vm.dataDir);
      assert.deepEqual(compareTrees(beforeAll, afterStop, { owners: true }), []);
      // The databases as the stop left them, for the copy in the cluster to match.
      const expected = [];
      for (const rel of [
        LIBRARY_DB_RELATIVE,
        `${LIBRARY_DB_RELATIVE}-wal`,
        BLOBS_DB_RELATIVE,
        `${BLOBS_DB_RELATIVE}-wal`,
      ]) {
        const file = path.join(vm.dataDir, rel);
        if (fs.existsSync(file)) {
          expected.push({
            path: rel,
            sha256: await sha256File(file),
            bytes: fs.statSync(file).size,
          });
        }
      }
      assert.ok(expected.length >= 2);
      assert.deepEqual(json.plexDatabases, expected);
      // The Tautulli snapshot (backup API, WAL rows included) and config.ini in the work dir.
      assert.ok(json.tautulliSnapshot);
      assert.equal(json.tautulliSnapshot.path, path.join(vm.workDir, "snapshot", "tautulli.db"));
      assert.equal(json.tautulliSnapshot.sha256, await sha256File(json.tautulliSnapshot.path));
      assert.equal(json.tautulliSnapshot.bytes, fs.statSync(json.tautulliSnapshot.path).size);
      const snapshot = new Database(json.tautulliSnapshot.path, { readonly: true });
      try {
        const rows = snapshot.prepare("SELECT count(*) AS n FROM session_history").get() as {
          n: number;
        };
        assert.equal(rows.n, vm.tautulliRows, "rows only in tautulli.db-wal are in the snapshot");
        assert.equal(snapshot.pragma("journal_mode", { simple: true }), "delete");
      } finally {
        snapshot.close();
      }
      assert.deepEqual(json.tautulliConfig, {
        path: path.join(vm.workDir, "snapshot", "config.ini"),
        sha256: await sha256File(vm.tautulliConfig),
        bytes: fs.statSync(vm.tautulliConfig).size,
      });
      assert.deepEqual(fs.readdirSync(path.join(vm.workDir, "snapshot")).sort(), [
        "config.ini",
        "tautulli.db",
      ]);
      assert.ok(!fs.existsSync(path.join(vm.workDir, "check")), "no database copy left behind");
    });

    it("the source stays untouched: data dir and tautulli.db identical after the stop", async () => {
      assert.deepEqual(compareTrees(afterStop, await digestTree(vm.dataDir), { owners: true }), []);
      assert.deepEqual(
        compareTrees(tautulliBefore, await digestTree(path.dirname(vm.tautulliDb)), {
          owners: true,
        }),
        [],
      );
    });

    it("rollback refuses while the migrated Plex may be running, and with force restores exactly the previous state", async () => {
      const refused = await vm.run("rollback");
      assert.equal(refused.code, 3);
      assert.match(
        refused.stderr,
        /the migrated Plex may be running in the cluster .*then run rollback --force/,
      );
      assert.equal(vm.serviceActive("plexmediaserver"), false);
      assert.equal(vm.serviceEnabled("plexmediaserver"), "masked");
      const run = await vm.run("rollback", { PLEX_MIGRATE_ROLLBACK_FORCE: "1" });
      assert.equal(run.code, 0, run.stderr);
      assert.ok(vm.serviceActive("plexmediaserver"));
      assert.ok(vm.serviceActive("tautulli"));
      assert.equal(vm.serviceEnabled("plexmediaserver"), "enabled");
      assert.equal(vm.serviceEnabled("tautulli"), "enabled");
      const json = parseStepOutput("rollback", run.stdout);
      assert.equal(json.forced, true);
      assert.deepEqual(json.started, ["plexmediaserver", "tautulli"]);
      assert.equal(json.previousState.plex?.active, true);
      const again = await vm.run("rollback");
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(parseStepOutput("rollback", again.stdout).started, []);
    });

    it("every step wrote timestamped lines to the migration log, and no secret reached it", () => {
      const lines = fs
        .readFileSync(path.join(vm.workDir, "migration.log"), "utf8")
        .split("\n")
        .filter(Boolean);
      for (const line of lines) assert.match(line, LOG_LINE);
      for (const step of ["preflight", "stop", "rollback"]) {
        assert.ok(
          lines.some((l) => l.includes(`] [${step}] `)),
          `log has ${step} lines`,
        );
      }
      const text = lines.join("\n");
      assert.ok(!text.includes(vm.manifest.plexOnlineToken), "Plex token not in the log");
    });
  });

  describe("refusals and options", () => {
    const vms: FakeVm[] = [];
    const fresh = async (options?: Parameters<typeof createFakeVm>[0]) => {
      const vm = await createFakeVm(options);
      vms.push(vm);
      return vm;
    };
    afterEach(async () => {
      while (vms.length) await vms.pop()!.cleanup();
    });

    it("preflight refuses when Plex is not installed (exit 3), naming the package", async () => {
      const vm = await fresh({ plexVersion: null });
      const run = await vm.run("preflight");
      assert.equal(run.code, 3);
      assert.match(
        run.stderr,
        /Plex Media Server is not installed: dpkg package 'plexmediaserver' not found/,
      );
    });

    it("preflight refuses a corrupt library database with the integrity check's words, and stop keeps Plex down", async () => {
      const vm = await fresh({ tree: { libraryItems: 600 } });
      const db = vm.manifest.libraryDb;
      const fd = fs.openSync(db, "r+");
      const pageSize = 4096;
      for (let page = 2; page < 40; page += 3)
        fs.writeSync(fd, Buffer.alloc(600, 0xa5), 0, 600, page * pageSize + 200);
      fs.closeSync(fd);
      const run = await vm.run("preflight");
      assert.equal(run.code, 3, run.stderr);
      const json = parseStepOutput("preflight", run.stdout);
      assert.equal(json.ok, false);
      assert.equal(json.databasesOk, false);
      assert.equal(json.databases[0].ok, false);
      assert.notEqual(json.databases[0].result, "ok");
      assert.match(
        json.problems.join("\n"),
        /com\.plexapp\.plugins\.library\.db: integrity check failed/,
      );
      assert.match(run.stderr, /refused: preflight found 1 problem/);
      const stop = await vm.run("stop");
      assert.equal(stop.code, 1);
      assert.match(
        stop.stderr,
        /failed the integrity check after the stop.*run rollback to start Plex again/,
      );
    });

    it("preflight refuses when the work dir's disk is too small for the snapshot (a 1 MiB tmpfs)", async () => {
      const vm = await fresh();
      fs.mkdirSync(vm.workDir, { recursive: true });
      const env = vm.env();
      const run = await runProcess(
        "unshare",
        [
          "-m",
          "bash",
          "-c",
          'mount -t tmpfs -o size=1m,mode=0700 tmpfs "$PLEX_MIGRATE_WORK_DIR" && exec bash "$0" preflight',
          SCRIPT_PATH,
        ],
        { env },
      );
      assert.equal(run.code, 3, run.stderr);
      const json = parseStepOutput("preflight", run.stdout);
      assert.ok(json.freeBytes < json.requiredFreeBytes);
      assert.match(
        json.problems.join("\n"),
        /not enough free disk in the work dir .* for the Tautulli snapshot and the database check: need \d+ bytes, have \d+/,
      );
    });

    it("preflight refuses a data dir without Preferences.xml and a missing tautulli.db, naming the settings", async () => {
      const vm = await fresh();
      const wrongDir = await vm.run("preflight", {
        PLEX_MIGRATE_DATA_DIR: path.dirname(vm.dataDir),
      });
      assert.equal(wrongDir.code, 3);
      assert.match(
        wrongDir.stderr,
        /has no Preferences\.xml, so it is not a Plex data dir; set plexDataDir/,
      );
      // Tautulli's unit says where its database is (--datadir): a different path is refused.
      const otherDb = await vm.run("preflight", {
        PLEX_MIGRATE_TAUTULLI_DB: "/nonexistent/tautulli.db",
      });
      assert.equal(otherDb.code, 3);
      assert.ok(
        otherDb.stderr.includes(
          `tautulli keeps its database in ${vm.tautulliDb} (--datadir ${path.dirname(vm.tautulliDb)} in its unit), not /nonexistent/tautulli.db; set tautulliDbPath to ${vm.tautulliDb}`,
        ),
        otherDb.stderr,
      );
      const noUnit = await fresh({ tautulliService: false, servicesRunning: false });
      const noTautulli = await noUnit.run("preflight", {
        PLEX_MIGRATE_TAUTULLI_DB: "/nonexistent/tautulli.db",
      });
      assert.equal(noTautulli.code, 3);
      assert.match(
        parseStepOutput("preflight", noTautulli.stdout).problems.join(),
        /tautulli\.db not found at \/nonexistent\/tautulli\.db: set tautulliDbPath/,
      );
    });

    it("bad settings exit 2 with the variable and the allowed values", async () => {
      const vm = await fresh({ servicesRunning: false });
      const rehearsal = await vm.run("preflight", { PLEX_MIGRATE_REHEARSAL: "yes" });
      assert.equal(rehearsal.code, 2);
      assert.match(rehearsal.stderr, /PLEX_MIGRATE_REHEARSAL must be 0 or 1, got 'yes'/);
      const timeout = await vm.run("stop", { PLEX_MIGRATE_STOP_TIMEOUT_SECONDS: "3m" });
      assert.equal(timeout.code, 2);
      assert.match(timeout.stderr, /PLEX_MIGRATE_STOP_TIMEOUT_SECONDS must be a number, got '3m'/);
      const inside = await vm.run("preflight", {
        PLEX_MIGRATE_WORK_DIR: path.join(vm.dataDir, "work"),
      });
      assert.equal(inside.code, 2);
      assert.match(inside.stderr, /inside the Plex data dir/);
      const usage = await vm.run("explode");
      assert.equal(usage.code, 2);
      assert.match(
        usage.stderr,
        /usage: plex-migrate-source\.sh preflight\|authorize-sync\|stop\|revoke-sync\|rollback/,
      );
    });

    it("preflight refuses when the Plex unit keeps its data elsewhere (PLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR)", async () => {
      const vm = await fresh({ servicesRunning: false });
      const elsewhere = path.join(vm.root, "data/Application Support");
      fs.mkdirSync(path.join(elsewhere, "Plex Media Server"), { recursive: true });
      fs.writeFileSync(
        path.join(elsewhere, "Plex Media Server", "Preferences.xml"),
        "<Preferences/>\n",
      );
      // systemctl show prints an assignment with spaces quoted whole, or with \x20 escapes.
      for (const assignment of [
        `"PLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR=${elsewhere}"`,
        `PLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR=${elsewhere.replace(/ /g, "\\x20")}`,
      ]) {
        fs.writeFileSync(
          path.join(vm.stateDir, "systemd/plexmediaserver/env"),
          `PLEX_MEDIA_SERVER_HOME=/usr/lib/plexmediaserver ${assignment} PLEX_MEDIA_SERVER_MAX_PLUGIN_PROCS=6\n`,
        );
        const run = await vm.run("preflight");
        assert.equal(run.code, 3, assignment);
        assert.ok(
          run.stderr.includes(
            `keeps its data in ${elsewhere}/Plex Media Server (PLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR in its unit's environment)`,
          ),
          run.stderr,
        );
        assert.ok(run.stderr.includes(`set plexDataDir to ${elsewhere}/Plex Media Server`));
      }
    });

    it("a live tautulli.db (Tautulli without a unit, e.g. Docker) is snapshotted read-only, WAL rows included", async () => {
      const vm = await fresh({ servicesRunning: false, tautulliService: false });
      const tautulli = new Database(vm.tautulliDb);
      try {
        tautulli.pragma("journal_mode = WAL");
        tautulli
          .prepare(
            "INSERT INTO session_history (started, user, title) VALUES (1, 'live', 'Committed while running')",
          )
          .run();
        const preflight = await vm.run("preflight");
        assert.equal(preflight.code, 0, preflight.stderr);
        assert.match(
          parseStepOutput("preflight", preflight.stdout).notes.join(),
          /systemd unit tautulli not found: Tautulli is not stopped/,
        );
        const run = await vm.run("stop");
        assert.equal(run.code, 0, run.stderr);
        const taken = parseStepOutput("stop", run.stdout).tautulliSnapshot;
        assert.equal(taken?.path, path.join(vm.workDir, "snapshot", "tautulli.db"));
        const snapshot = new Database(taken.path, { readonly: true });
        try {
          const rows = snapshot.prepare("SELECT count(*) AS n FROM session_history").get() as {
            n: number;
          };
          assert.equal(rows.n, vm.tautulliRows + 1);
        } finally {
          snapshot.close();
        }
      } finally {
        tautulli.close();
      }
    });

    it("without Plex SQLite the databases are checked with sqlite3, and the JSON says so", async () => {
      const vm = await fresh({ servicesRunning: false });
      const run = await vm.run("preflight", { PATH: vm.path.replace(`${vm.plexBinDir}:`, "") });
      assert.equal(run.code, 0, run.stderr);
      const json = parseStepOutput("preflight", run.stdout);
      assert.equal(json.integrityTool, "sqlite3");
      assert.match(
        json.notes.join(),
        /Plex SQLite not found; checking the databases with stock sqlite3/,
      );
      assert.deepEqual(vm.plexSqliteCalls(), []);
    });

    it("a live database (Plex running, -shm present) is checked read-only in place", async () => {
      const vm = await fresh({ servicesRunning: false });
      const plex = new Database(vm.manifest.libraryDb);
      try {
        plex.pragma("journal_mode = WAL");
        plex.prepare("SELECT count(*) FROM metadata_items").get();
        const run = await vm.run("preflight");
        assert.equal(run.code, 0, run.stderr);
        const db = parseStepOutput("preflight", run.stdout).databases[0];
        assert.equal(db.checkedOn, "live database, read-only");
        assert.ok(vm.plexSqliteCalls().some((c) => c.startsWith("-readonly ")));
      } finally {
        plex.close();
      }
    });

    it("rehearsal mode works on a machine without systemctl, dpkg-query and Plex", async () => {
      const vm = await fresh({ servicesRunning: false, plexVersion: null });
      // The fakes stay on PATH to prove they are never asked (dpkg-query would say "not installed").
      const bare = { PLEX_MIGRATE_REHEARSAL: "1" };
      const preflight = await vm.run("preflight", bare);
      assert.equal(preflight.code, 0, preflight.stderr);
      const json = parseStepOutput("preflight", preflight.stdout);
      assert.equal(json.rehearsal, true);
      assert.equal(json.plexVersion, vm.manifest.plexVersion);
      assert.equal(json.plexVersionSource, "log: Logs/Plex Media Server.log");
      assert.match(json.notes.join(), /rehearsal: systemctl and dpkg-query not used/);
      const pinned = await vm.run("preflight", {
        ...bare,
        PLEX_MIGRATE_PLEX_VERSION: "1.40.2.8395-c67dce28e",
      });
      assert.equal(
        parseStepOutput("preflight", pinned.stdout).plexVersion,
        "1.40.2.8395-c67dce28e",
      );
      for (const step of ["stop", "rollback"]) {
        const run = await vm.run(step, bare);
        assert.equal(run.code, 0, `${step}: ${run.stderr}`);
      }
      assert.deepEqual(vm.systemctlCalls(), [], "systemctl never called");
    });
  });
});
