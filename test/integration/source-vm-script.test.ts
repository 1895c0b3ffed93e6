/**
 * scripts/plex-migrate-source.sh for real: bash, GNU tar, zstd/pigz/gzip, SQLite and the python3
 * archive server, on a fake VM (test/support/fake-vm: generated Plex tree, tautulli.db with WAL-only
 * rows, fake systemctl / dpkg-query / "Plex SQLite" on PATH, services that are real processes).
 */
import { strict as assert } from "assert";
import { spawnSync } from "child_process";
import * as crypto from "crypto";
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
import {
  SCRIPT_PATH,
  loadScriptSources,
  scriptBundle,
  stepEnvironment,
} from "../../lib/source-vm/commands";
import { parseStepOutput } from "../../lib/source-vm/outputs";
import { createFakeVm, FakeVm, processesHolding, runProcess } from "../support/fake-vm";

const ARCHIVE_ROOT = "Library/Application Support/Plex Media Server";
const LOG_LINE =
  /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[(preflight|stop|archive|serve|stop-serving|rollback)\] /;

function extract(archive: string, format: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-extract-"));
  const flag = format === "tar.zst" ? ["--zstd"] : format === "tar.gz" ? ["-z"] : [];
  const result = spawnSync(
    "tar",
    ["-x", ...flag, "-p", "--numeric-owner", "-f", archive, "-C", dir],
    { encoding: "utf8" },
  );
  assert.equal(result.status, 0, result.stderr);
  return dir;
}

/** The VM's zone as the script reads it: /etc/localtime's target under zoneinfo/. */
function machineTimezone(): string {
  try {
    return fs.realpathSync("/etc/localtime").split("/zoneinfo/")[1] ?? "";
  } catch {
    return fs.existsSync("/etc/timezone") ? fs.readFileSync("/etc/timezone", "utf8").trim() : "";
  }
}

async function get(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; body: Buffer; headers: Headers }> {
  const response = await fetch(url, init);
  return {
    status: response.status,
    body: Buffer.from(await response.arrayBuffer()),
    headers: response.headers,
  };
}

function sha256(bytes: Buffer): string {
  return crypto.createHash("sha256").update(bytes).digest("hex");
}

async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  seconds = 15,
): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Running and not a zombie waiting for init to reap it. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

async function portClosed(port: number): Promise<boolean> {
  try {
    await fetch(`http://127.0.0.1:${port}/`);
    return false;
  } catch {
    return true;
  }
}

describe("plex-migrate-source.sh on a fake VM (bash, tar, SQLite, python3 server)", function () {
  this.timeout(120_000);

  describe("the whole sequence: preflight, stop, archive, serve, stop-serving, rollback", () => {
    let vm: FakeVm;
    let beforeAll: TreeDigest;
    let afterStop: TreeDigest;
    let tautulliBefore: TreeDigest;
    let archive: { file: string; name: string; format: string; sha256: string; bytes: number };
    let tautulliSnapshot: { file: string; sha256: string; bytes: number };
    let token: string;
    const extracted: string[] = [];

    before(async () => {
      vm = await createFakeVm({ linger: 2 });
      beforeAll = await digestTree(vm.dataDir);
      tautulliBefore = await digestTree(path.dirname(vm.tautulliDb));
    });
    after(async () => {
      await vm?.cleanup();
      for (const dir of extracted) fs.rmSync(dir, { recursive: true, force: true });
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
      assert.equal(json.archiveFormat, "tar.zst");
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

    it("archive streams one compressed tar whose sha256/bytes are exact, plus a WAL-complete tautulli.db snapshot", async () => {
      const run = await vm.run("archive");
      assert.equal(run.code, 0, run.stderr);
      const json = parseStepOutput("archive", run.stdout);
      archive = json.archive;
      assert.ok(json.tautulli, "a Tautulli snapshot was taken");
      tautulliSnapshot = json.tautulli;
      assert.equal(archive.name, "plex-library.tar.zst");
      assert.equal(archive.format, "tar.zst");
      assert.equal(archive.sha256, await sha256File(archive.file));
      assert.equal(archive.bytes, fs.statSync(archive.file).size);
      assert.equal(
        fs.readFileSync(`${archive.file}.sha256`, "utf8"),
        `${archive.sha256}  plex-library.tar.zst\n`,
      );
      assert.equal(tautulliSnapshot.sha256, await sha256File(tautulliSnapshot.file));
      const snapshot = new Database(tautulliSnapshot.file, { readonly: true });
      try {
        const rows = snapshot.prepare("SELECT count(*) AS n FROM session_history").get() as {
          n: number;
        };
        assert.equal(
          rows.n,
          vm.tautulliRows,
          "rows that were only in tautulli.db-wal are in the snapshot",
        );
        assert.equal(snapshot.pragma("journal_mode", { simple: true }), "delete");
      } finally {
        snapshot.close();
      }
      assert.ok(!fs.existsSync(`${tautulliSnapshot.file}-wal`));
    });

    it("the archive extracts in /config to a byte-identical tree under Library/Application Support/Plex Media Server", async () => {
      const dir = extract(archive.file, archive.format);
      extracted.push(dir);
      const got = await digestTree(path.join(dir, ARCHIVE_ROOT));
      assert.deepEqual(compareTrees(afterStop, got, { owners: true }), []);
      assert.equal(got.files, vm.manifest.files);
      // The WAL with the uncheckpointed rows travels with the database.
      assert.ok(fs.existsSync(path.join(dir, ARCHIVE_ROOT, `${LIBRARY_DB_RELATIVE}-wal`)));
      const dataStat = fs.statSync(vm.dataDir);
      for (const parent of ["Library", "Library/Application Support"]) {
        const stat = fs.statSync(path.join(dir, parent));
        assert.equal(stat.mode & 0o7777, dataStat.mode & 0o7777, `${parent} mode`);
        assert.equal(stat.uid, dataStat.uid, `${parent} owner`);
      }
      const listing = spawnSync("tar", ["--zstd", "-tvf", archive.file], { encoding: "utf8" });
      const names = listing.stdout.split("\n").filter(Boolean);
      assert.ok(
        names.every((line) => / Library(\/|$)/.test(line)),
        "every entry is under Library/",
      );
    });

    it("the source stays untouched: data dir and tautulli.db identical after archiving", async () => {
      assert.deepEqual(compareTrees(afterStop, await digestTree(vm.dataDir), { owners: true }), []);
      assert.deepEqual(
        compareTrees(tautulliBefore, await digestTree(path.dirname(vm.tautulliDb)), {
          owners: true,
        }),
        [],
      );
    });

    it("archiving an unchanged tree again gives a byte-identical archive (same sha256)", async () => {
      const run = await vm.run("archive");
      assert.equal(run.code, 0, run.stderr);
      assert.equal(parseStepOutput("archive", run.stdout).archive.sha256, archive.sha256);
    });

    it("serve (from the stdin bundle, as SourceVm sends it) answers only at the token path, with Range", async () => {
      token = crypto.randomBytes(32).toString("base64url");
      const bundle = scriptBundle(
        "serve",
        stepEnvironment("serve", vm.settings),
        loadScriptSources(),
        {
          serveToken: token,
        },
      );
      const run = await vm.runBundle("serve", bundle);
      assert.equal(run.code, 0, run.stderr);
      const json = parseStepOutput("serve", run.stdout);
      assert.deepEqual(
        json.files.map((f) => [f.name, f.sha256, f.bytes]),
        [
          ["plex-library.tar.zst", archive.sha256, archive.bytes],
          ["tautulli.db", tautulliSnapshot.sha256, tautulliSnapshot.bytes],
        ],
      );
      assert.equal(json.token, undefined, "a given token is never printed");
      assert.ok(!run.stdout.includes(token) && !run.stderr.includes(token));

      const base = `http://127.0.0.1:${vm.settings.serve.port}`;
      const full = await get(`${base}/${token}/plex-library.tar.zst`);
      assert.equal(full.status, 200);
      assert.equal(sha256(full.body), archive.sha256);
      assert.equal(full.headers.get("accept-ranges"), "bytes");
      const db = await get(`${base}/${token}/tautulli.db`);
      assert.equal(db.status, 200);
      assert.equal(sha256(db.body), tautulliSnapshot.sha256);

      const range = await get(`${base}/${token}/plex-library.tar.zst`, {
        headers: { Range: "bytes=100-199" },
      });
      assert.equal(range.status, 206);
      assert.equal(range.headers.get("content-range"), `bytes 100-199/${archive.bytes}`);
      assert.deepEqual(range.body, full.body.subarray(100, 200));
      const suffix = await get(`${base}/${token}/plex-library.tar.zst`, {
        headers: { Range: "bytes=-10" },
      });
      assert.equal(suffix.status, 206);
      assert.deepEqual(suffix.body, full.body.subarray(full.body.length - 10));
      const beyond = await get(`${base}/${token}/plex-library.tar.zst`, {
        headers: { Range: `bytes=${archive.bytes}-` },
      });
      assert.equal(beyond.status, 416);
      // A download broken in the middle resumes with Range and ends byte-identical.
      const half = Math.floor(archive.bytes / 2);
      const first = await get(`${base}/${token}/plex-library.tar.zst`, {
        headers: { Range: `bytes=0-${half - 1}` },
      });
      const rest = await get(`${base}/${token}/plex-library.tar.zst`, {
        headers: { Range: `bytes=${half}-` },
      });
      assert.equal(sha256(Buffer.concat([first.body, rest.body])), archive.sha256);
      const head = await get(`${base}/${token}/plex-library.tar.zst`, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("content-length"), String(archive.bytes));
      assert.equal(head.body.length, 0);

      const wrongToken = crypto.randomBytes(32).toString("base64url");
      for (const url of [
        `${base}/`,
        `${base}/${token}`,
        `${base}/${token}/`,
        `${base}/${token}/Preferences.xml`,
        `${base}/${token}/../tautulli.db`,
        `${base}/${token}/plex-library.tar.zst/x`,
        `${base}/${wrongToken}/plex-library.tar.zst`,
        `${base}/plex-library.tar.zst`,
        `${base}/${token.slice(0, -1)}/tautulli.db`,
      ]) {
        assert.equal((await get(url)).status, 404, url.replace(token, "<token>"));
      }
      assert.equal(
        (await get(`${base}/${token}/tautulli.db`, { method: "POST", body: "x" })).status,
        404,
      );
    });

    it("stop-serving stops the server and removes the archive and snapshot, keeping the log", async () => {
      const pid = Number(fs.readFileSync(path.join(vm.workDir, "serve", "server.pid"), "utf8"));
      const run = await vm.run("stop-serving");
      assert.equal(run.code, 0, run.stderr);
      const json = parseStepOutput("stop-serving", run.stdout);
      assert.equal(json.wasRunning, true);
      assert.equal(json.keptArchive, false);
      assert.ok(json.removed.includes(archive.file));
      assert.ok(!alive(pid), "server process gone");
      assert.ok(await portClosed(vm.settings.serve.port), "port closed");
      assert.deepEqual(fs.readdirSync(vm.workDir).sort(), ["migration.log", "snapshot", "state"]);
      const again = await vm.run("stop-serving");
      assert.equal(again.code, 0, again.stderr);
      assert.equal(parseStepOutput("stop-serving", again.stdout).wasRunning, false);
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
      for (const step of ["preflight", "stop", "archive", "serve", "stop-serving", "rollback"]) {
        assert.ok(
          lines.some((l) => l.includes(`] [${step}] `)),
          `log has ${step} lines`,
        );
      }
      assert.ok(
        lines.some((l) =>
          /\[serve\] 127\.0\.0\.1 GET \/\*\*\*\/plex-library\.tar\.zst 206/.test(l),
        ),
      );
      const text = lines.join("\n");
      assert.ok(!text.includes(token), "serving token not in the log");
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
      const exclude = await vm.run("archive", { PLEX_MIGRATE_EXCLUDES: "Cache,Metadata" });
      assert.equal(exclude.code, 2);
      assert.match(
        exclude.stderr,
        /'Metadata' may not be excluded from the archive; allowed: Cache Logs Crash Reports Updates Diagnostics/,
      );
      const compression = await vm.run("archive", { PLEX_MIGRATE_COMPRESSION: "xz" });
      assert.equal(compression.code, 2);
      assert.match(
        compression.stderr,
        /PLEX_MIGRATE_COMPRESSION must be auto, zstd, pigz, gzip or none, got 'xz'/,
      );
      const inside = await vm.run("preflight", {
        PLEX_MIGRATE_WORK_DIR: path.join(vm.dataDir, "work"),
      });
      assert.equal(inside.code, 2);
      assert.match(inside.stderr, /inside the Plex data dir/);
      const usage = await vm.run("explode");
      assert.equal(usage.code, 2);
      assert.match(
        usage.stderr,
        /usage: plex-migrate-source\.sh preflight\|stop\|archive\|serve\|stop-serving\|authorize-sync\|revoke-sync\|rollback/,
      );
    });

    it("archive refuses while Plex still has its files open, and writes nothing", async () => {
      const vm = await fresh();
      const run = await vm.run("archive");
      assert.equal(run.code, 3);
      assert.match(run.stderr, /Plex is still running .*run the stop step first/);
      assert.ok(!fs.existsSync(path.join(vm.workDir, "archive", "plex-library.tar.zst")));
    });

    it("archive leaves out only the configured top-level folders; pigz, gzip and none work too", async () => {
      const vm = await fresh({ servicesRunning: false });
      const whole = await digestTree(vm.dataDir, {
        exclude: ["Cache/", "Cache", "Crash Reports", "Crash Reports/"],
      });
      assert.ok(
        fs.existsSync(path.join(vm.dataDir, "Cache")) &&
          fs.existsSync(path.join(vm.dataDir, "Crash Reports")),
      );
      for (const [compression, format] of [
        ["pigz", "tar.gz"],
        ["gzip", "tar.gz"],
        ["none", "tar"],
        ["zstd", "tar.zst"],
      ]) {
        const run = await vm.run("archive", {
          PLEX_MIGRATE_EXCLUDES: "Cache,Crash Reports",
          PLEX_MIGRATE_COMPRESSION: compression,
        });
        assert.equal(run.code, 0, run.stderr);
        const json = parseStepOutput("archive", run.stdout).archive;
        assert.equal(json.format, format);
        assert.equal(json.compression, compression);
        assert.deepEqual(json.excludes, ["Cache", "Crash Reports"]);
        const dir = extract(json.file, format);
        try {
          const got = await digestTree(path.join(dir, ARCHIVE_ROOT));
          // The root dir's mtime is not compared (an excluded folder is still gone from it).
          assert.deepEqual(compareTrees(whole, got, { owners: true }), [], compression);
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
        const others = fs
          .readdirSync(path.join(vm.workDir, "archive"))
          .filter((n) => n.startsWith("plex-library."));
        assert.deepEqual(
          others.sort(),
          [`plex-library.${format}`, `plex-library.${format}.sha256`],
          "older archives removed",
        );
      }
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
      for (const step of ["stop", "archive", "rollback"]) {
        const run = await vm.run(step, bare);
        assert.equal(run.code, 0, `${step}: ${run.stderr}`);
      }
      assert.deepEqual(vm.systemctlCalls(), [], "systemctl never called");
    });

    it("serve refuses clients outside the allowed networks (403) and lets allowed ones in", async () => {
      const vm = await fresh({ servicesRunning: false });
      assert.equal((await vm.run("archive")).code, 0);
      const token = crypto.randomBytes(24).toString("base64url");
      const url = `http://127.0.0.1:${vm.settings.serve.port}/${token}/plex-library.tar.zst`;
      const denied = await vm.run("serve", {
        PLEX_MIGRATE_SERVE_TOKEN: token,
        PLEX_MIGRATE_SERVE_ALLOWED_CIDRS: "10.0.0.0/8,192.168.1.0/24",
      });
      assert.equal(denied.code, 0, denied.stderr);
      assert.deepEqual(parseStepOutput("serve", denied.stdout).allowedCidrs, [
        "10.0.0.0/8",
        "192.168.1.0/24",
      ]);
      assert.equal((await get(url)).status, 403);
      const allowed = await vm.run("serve", {
        PLEX_MIGRATE_SERVE_TOKEN: token,
        PLEX_MIGRATE_SERVE_ALLOWED_CIDRS: "10.0.0.0/8,127.0.0.0/8",
      });
      assert.equal(allowed.code, 0, allowed.stderr);
      assert.equal((await get(url)).status, 200);
      assert.equal((await vm.run("stop-serving")).code, 0);
    });

    it("serve stops by itself after its lifetime", async () => {
      const vm = await fresh({ servicesRunning: false });
      assert.equal((await vm.run("archive")).code, 0);
      const run = await vm.run("serve", { PLEX_MIGRATE_SERVE_LIFETIME_SECONDS: "2" });
      assert.equal(run.code, 0, run.stderr);
      const json = parseStepOutput("serve", run.stdout);
      assert.equal(json.lifetimeSeconds, 2);
      assert.match(
        json.token ?? "",
        /^[A-Za-z0-9_-]{43}$/,
        "a generated token is printed for by-hand use",
      );
      assert.equal(
        (await get(`http://127.0.0.1:${vm.settings.serve.port}/${json.token}/tautulli.db`)).status,
        200,
      );
      await waitFor(() => !alive(json.pid), "the server to exit after its lifetime");
      assert.ok(await portClosed(vm.settings.serve.port));
      assert.match(
        fs.readFileSync(path.join(vm.workDir, "migration.log"), "utf8"),
        /\[serve\] stopping: lifetime of 2s reached/,
      );
    });

    it("serve refuses without an archive, and fails clearly when the port is taken", async () => {
      const vm = await fresh({ servicesRunning: false });
      const none = await vm.run("serve");
      assert.equal(none.code, 3);
      assert.match(none.stderr, /no archive in .*run the archive step first/);
      assert.equal((await vm.run("archive")).code, 0);
      const blocker = require("net").createServer();
      await new Promise<void>((r) => blocker.listen(vm.settings.serve.port, "127.0.0.1", r));
      try {
        const taken = await vm.run("serve");
        assert.equal(taken.code, 1);
        assert.match(
          taken.stderr,
          /the archive server did not start: .*cannot listen on 127\.0\.0\.1:\d+/,
        );
      } finally {
        blocker.close();
      }
    });
  });
});
