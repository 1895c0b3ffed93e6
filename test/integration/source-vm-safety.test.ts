/**
 * The VM script runs as root next to a live Plex: these tests reproduce what went wrong on real
 * VMs and show it no longer does, on the fake VM with real processes — a work dir another user
 * pre-created, a process holding the database from its own mount namespace (`unshare`), a package
 * upgrade re-enabling Plex while it is stopped, rollback of units that were not running, Plex's
 * data dir set from an EnvironmentFile, a subfolder symlinked to another disk, an SSH session that
 * drops in the middle of a step.
 */
import { strict as assert } from "assert";
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { LIBRARY_DB_RELATIVE } from "../../lib/samples/plex-tree";
import { SCRIPT_PATH } from "../../lib/source-vm/commands";
import { parseStepOutput } from "../../lib/source-vm/outputs";
import { createFakeVm, FakeVm, processesHolding, runProcess } from "../support/fake-vm";
import { startSshd, type SshServer } from "../support/sshd";

const NOBODY = 65534;

/** Runs `cmd` as the user nobody (a local user other than root). */
function asNobody(args: string[]): void {
  const result = spawnSync(args[0], args.slice(1), { uid: NOBODY, gid: NOBODY, encoding: "utf8" });
  assert.equal(result.status, 0, `${args.join(" ")}: ${result.stderr}`);
}

/** Polls a condition (a file appearing, a line printed), never a fixed delay. */
async function until(check: () => boolean, what: string, seconds = 30): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("plex-migrate-source.sh is safe as root on a real VM", function () {
  this.timeout(180_000);
  const vms: FakeVm[] = [];
  const fresh = async (options?: Parameters<typeof createFakeVm>[0]) => {
    const vm = await createFakeVm({ servicesRunning: false, ...options });
    vms.push(vm);
    return vm;
  };
  afterEach(async () => {
    while (vms.length) await vms.pop()!.cleanup();
  });

  describe("the work dir", () => {
    it("refuses a work dir another user pre-created in a world-writable dir, touching nothing (the symlink attack)", async () => {
      const vm = await fresh();
      // The fake VM's /var/tmp: world-writable and sticky, like the real one.
      fs.chmodSync(vm.root, 0o755);
      const varTmp = path.join(vm.root, "vartmp");
      fs.mkdirSync(varTmp);
      fs.chmodSync(varTmp, 0o1777);
      const victim = path.join(vm.root, "etc-shadow-standin");
      fs.writeFileSync(victim, "root's file\n");
      fs.chmodSync(victim, 0o600);
      const workDir = path.join(varTmp, "plex-migrate");
      asNobody(["mkdir", "-m", "0777", workDir]);
      asNobody(["ln", "-s", victim, path.join(workDir, "migration.log")]);
      // The defect: root appending to "its" log there writes the file the link names.
      const decoy = path.join(vm.root, "decoy");
      fs.writeFileSync(decoy, "");
      const trap = path.join(workDir, "decoy.log");
      asNobody(["ln", "-s", decoy, trap]);
      spawnSync("bash", ["-c", 'set -o noclobber; printf "written by root\\n" >>"$1"', "_", trap]);
      assert.equal(
        fs.readFileSync(decoy, "utf8"),
        "written by root\n",
        "noclobber does not stop >>",
      );
      fs.rmSync(trap);

      const run = await vm.run("preflight", { PLEX_MIGRATE_WORK_DIR: workDir });
      assert.equal(run.code, 3, run.stderr);
      assert.match(
        run.stderr,
        new RegExp(`${workDir} is owned by uid ${NOBODY}, not root: another user could swap`),
      );
      assert.equal(fs.readFileSync(victim, "utf8"), "root's file\n", "the victim is untouched");
      assert.equal(fs.statSync(workDir).mode & 0o7777, 0o777, "never chmod-ed");
      assert.equal(run.stdout, "", "no step ran");
    });

    it("refuses a symlink anywhere in the path and a dir others can write, without chmod-ing it", async () => {
      const vm = await fresh();
      const real = path.join(vm.root, "real-work");
      fs.mkdirSync(real, { mode: 0o700 });
      const link = path.join(vm.root, "linked-work");
      fs.symlinkSync(real, link);
      const viaLink = await vm.run("preflight", { PLEX_MIGRATE_WORK_DIR: path.join(link, "sub") });
      assert.equal(viaLink.code, 3);
      assert.ok(
        viaLink.stderr.includes(
          `${link} is a symlink (to ${real}); choose a path whose every directory is owned by root`,
        ),
        viaLink.stderr,
      );
      assert.ok(viaLink.stderr.includes(`or use the real path ${real}/sub`));
      assert.ok(!fs.existsSync(path.join(real, "sub")), "nothing created behind the link");

      const open = path.join(vm.root, "open-work");
      fs.mkdirSync(open);
      fs.chmodSync(open, 0o777);
      const writable = await vm.run("preflight", { PLEX_MIGRATE_WORK_DIR: open });
      assert.equal(writable.code, 3);
      assert.match(writable.stderr, /open-work is writable by group or others \(mode 777\)/);
      assert.equal(fs.statSync(open).mode & 0o7777, 0o777, "never chmod-ed");

      const parentOpen = path.join(vm.root, "shared");
      fs.mkdirSync(parentOpen);
      fs.chmodSync(parentOpen, 0o777);
      const underOpen = await vm.run("preflight", {
        PLEX_MIGRATE_WORK_DIR: path.join(parentOpen, "plex-migrate"),
      });
      assert.equal(underOpen.code, 3);
      assert.match(
        underOpen.stderr,
        /shared is writable by group or others without the sticky bit/,
      );
    });

    it("creates a missing work dir 0700, and leaves an existing root-owned one's mode alone", async () => {
      const vm = await fresh();
      const run = await vm.run("preflight");
      assert.equal(run.code, 0, run.stderr);
      assert.equal(fs.statSync(vm.workDir).mode & 0o7777, 0o700);
      assert.equal(fs.statSync(path.join(vm.workDir, "migration.log")).mode & 0o777, 0o600);

      const existing = path.join(vm.root, "srv-plex-migrate");
      fs.mkdirSync(existing);
      fs.chmodSync(existing, 0o755);
      const again = await vm.run("preflight", { PLEX_MIGRATE_WORK_DIR: existing });
      assert.equal(again.code, 0, again.stderr);
      assert.equal(fs.statSync(existing).mode & 0o7777, 0o755, "an existing dir is never chmod-ed");
    });

    it("the default work dir is under /var/lib, not a world-writable tree", () => {
      const script = fs.readFileSync(SCRIPT_PATH, "utf8");
      assert.match(script, /\nWORK_DIR=\$\{PLEX_MIGRATE_WORK_DIR:-\/var\/lib\/plex-migrate\}\n/);
    });
  });

  it("sees a process holding the library database from its own mount namespace (a container), and waits for it", async () => {
    const vm = await fresh({ tautulliService: false });
    // The "container": its own mount namespace, the data dir bind-mounted at another path, the
    // database open there. Its /proc/PID/fd shows the container's path, not the VM's.
    const mountPoint = path.join(vm.root, "container-config");
    fs.mkdirSync(mountPoint);
    const ready = path.join(vm.root, "container-ready");
    const release = path.join(vm.root, "container-release");
    spawnSync("mkfifo", [release]);
    const container = spawn(
      "unshare",
      [
        "--mount",
        "--propagation",
        "private",
        "bash",
        "-c",
        'mount --bind "$1" "$2" && exec 3<"$2/$3" && touch "$4" && read -r _ <"$5"',
        "container",
        vm.dataDir,
        mountPoint,
        LIBRARY_DB_RELATIVE,
        ready,
        release,
      ],
      { stdio: "ignore" },
    );
    try {
      await until(() => fs.existsSync(ready), "the container to open the database");
      const seen = fs
        .readdirSync(`/proc/${container.pid}/fd`)
        .map((fd) => fs.readlinkSync(`/proc/${container.pid}/fd/${fd}`));
      assert.ok(
        seen.includes(path.join(mountPoint, LIBRARY_DB_RELATIVE)),
        "the holder shows its own path",
      );
      assert.deepEqual(processesHolding(vm.dataDir), [], "a path comparison misses it");

      const stop = await vm.run("stop", {
        PLEX_MIGRATE_STOP_TIMEOUT_SECONDS: "1",
        PLEX_MIGRATE_PROGRESS_SECONDS: "0",
        PLEX_MIGRATE_TAUTULLI_DB: "",
      });
      assert.equal(stop.code, 1, stop.stderr);
      // While it waits, it says for whom.
      assert.match(
        stop.stderr,
        new RegExp(
          `waiting for the Plex data dir to be let go \\(\\d+s of 1s\\), held by \\(pid name\\): ${container.pid} `,
        ),
      );
      assert.match(
        stop.stderr,
        new RegExp(
          `the Plex data dir is still in use after 1s \\(pid name file\\): ${container.pid} `,
        ),
      );
      fs.writeFileSync(release, "go\n");
      await new Promise((r) => container.once("exit", r));
      const again = await vm.run("stop", { PLEX_MIGRATE_TAUTULLI_DB: "" });
      assert.equal(again.code, 0, again.stderr);
    } finally {
      container.kill("SIGKILL");
    }
  });

  describe("stop and rollback", () => {
    it("a package upgrade while Plex is stopped (postinst: enable + start) cannot bring it back: the unit is masked", async () => {
      const vm = await fresh({ servicesRunning: true });
      const systemctl = path.join(vm.binDir, "systemctl");
      // The defect: stopped and disabled only, the upgrade's enable + start bring a second
      // server with the same identity back.
      for (const verb of ["disable", "stop", "enable", "start"]) {
        assert.equal(spawnSync(systemctl, [verb, "plexmediaserver"]).status, 0, verb);
      }
      assert.equal(vm.serviceActive("plexmediaserver"), true, "disable alone is undone");

      const stop = await vm.run("stop");
      assert.equal(stop.code, 0, stop.stderr);
      // What the package's maintainer script does on upgrade.
      const enable = spawnSync(systemctl, ["enable", "plexmediaserver"], { encoding: "utf8" });
      const start = spawnSync(systemctl, ["start", "plexmediaserver"], { encoding: "utf8" });
      assert.notEqual(enable.status, 0);
      assert.notEqual(start.status, 0);
      assert.match(start.stderr, /Unit plexmediaserver\.service is masked/);
      assert.equal(vm.serviceActive("plexmediaserver"), false);
      assert.ok(vm.systemctlCalls().includes("--no-ask-password mask -- plexmediaserver"));
    });

    it("rollback restores exactly the previous state: what was stopped and disabled stays so", async () => {
      const vm = await fresh({ servicesRunning: false });
      const systemctl = path.join(vm.binDir, "systemctl");
      spawnSync(systemctl, ["disable", "tautulli"]);
      vm.startService("plexmediaserver");
      const stop = await vm.run("stop");
      assert.equal(stop.code, 0, stop.stderr);
      assert.deepEqual(parseStepOutput("stop", stop.stdout).previousState, {
        plex: { unit: "plexmediaserver", active: true, enabled: true, unitFileState: "enabled" },
        tautulli: { unit: "tautulli", active: false, enabled: false, unitFileState: "disabled" },
      });
      // A second stop (a retried `pulumi up`) keeps the state from before the first one.
      const again = await vm.run("stop");
      assert.equal(again.code, 0, again.stderr);
      assert.equal(parseStepOutput("stop", again.stdout).previousState.plex?.active, true);

      const rollback = await vm.run("rollback", { PLEX_MIGRATE_ROLLBACK_FORCE: "1" });
      assert.equal(rollback.code, 0, rollback.stderr);
      assert.deepEqual(parseStepOutput("rollback", rollback.stdout).started, ["plexmediaserver"]);
      assert.equal(vm.serviceActive("plexmediaserver"), true);
      assert.equal(vm.serviceEnabled("plexmediaserver"), "enabled");
      assert.equal(vm.serviceActive("tautulli"), false, "was not running: not started");
      assert.equal(vm.serviceEnabled("tautulli"), "disabled", "was disabled: stays disabled");
      assert.match(rollback.stderr, /tautulli was not running before the migration: left stopped/);
    });

    it("a unit whose file is in /etc/systemd/system gets a runtime mask and is disabled; rollback undoes both", async () => {
      const vm = await fresh({ servicesRunning: true });
      fs.writeFileSync(path.join(vm.stateDir, "systemd", "tautulli", "in-etc"), "");
      const stop = await vm.run("stop");
      assert.equal(stop.code, 0, stop.stderr);
      assert.equal(vm.serviceEnabled("tautulli"), "masked-runtime");
      assert.ok(vm.systemctlCalls().includes("--no-ask-password disable -- tautulli"));
      const rollback = await vm.run("rollback", { PLEX_MIGRATE_ROLLBACK_FORCE: "1" });
      assert.equal(rollback.code, 0, rollback.stderr);
      assert.equal(vm.serviceEnabled("tautulli"), "enabled");
      assert.equal(vm.serviceActive("tautulli"), true);
    });
  });

  describe("rollback by hand (README, Rolling back)", () => {
    let sshd: SshServer | undefined;
    afterEach(async () => {
      await sshd?.stop();
      sshd = undefined;
    });

    it("refused after a stop, naming --force; `ssh vm 'bash -s -- rollback --force' < script` restores the state", async () => {
      const vm = await fresh({ servicesRunning: true });
      const stop = await vm.run("stop");
      assert.equal(stop.code, 0, stop.stderr);
      sshd = await startSshd({ sessionPath: vm.path });
      const script = fs.readFileSync(SCRIPT_PATH, "utf8");
      // The recipe's remote command, with the fake VM's work dir where a stack sets vmWorkDir.
      const remote = (args: string) => `env PLEX_MIGRATE_WORK_DIR=${vm.workDir} bash -s -- ${args}`;

      const refused = await sshd.run("root", remote("rollback"), script);
      assert.equal(refused.code, 3, refused.stderr);
      assert.match(refused.stderr, /stop it first .*, then run rollback --force/);
      assert.equal(vm.serviceEnabled("plexmediaserver"), "masked");

      const typo = await sshd.run("root", remote("rollback --froce"), script);
      assert.equal(typo.code, 2, typo.stderr);
      assert.match(
        typo.stderr,
        /unknown argument '--froce' for rollback: only rollback takes one \(--force\)/,
      );
      const misplaced = await sshd.run("root", remote("stop --force"), script);
      assert.equal(misplaced.code, 2, misplaced.stderr);

      const forced = await sshd.run("root", remote("rollback --force"), script);
      assert.equal(forced.code, 0, forced.stderr);
      const json = parseStepOutput("rollback", forced.stdout);
      assert.equal(json.forced, true);
      assert.deepEqual(json.started, ["plexmediaserver", "tautulli"]);
      assert.equal(vm.serviceActive("plexmediaserver"), true);
      assert.equal(vm.serviceEnabled("plexmediaserver"), "enabled");
    });
  });

  describe("where Plex and Tautulli keep their data", () => {
    it("reads Plex's data dir from an EnvironmentFile of its unit, not only Environment=", async () => {
      const vm = await fresh();
      const elsewhere = path.join(vm.root, "srv/plex data");
      fs.mkdirSync(path.join(elsewhere, "Plex Media Server"), { recursive: true });
      fs.writeFileSync(
        path.join(elsewhere, "Plex Media Server", "Preferences.xml"),
        "<Preferences/>\n",
      );
      const envFile = path.join(vm.root, "etc-default-plexmediaserver");
      fs.writeFileSync(
        envFile,
        `# /etc/default/plexmediaserver\nPLEX_MEDIA_SERVER_USER=plex\nPLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR="${elsewhere}"\n`,
      );
      const unit = path.join(vm.stateDir, "systemd", "plexmediaserver");
      fs.writeFileSync(
        path.join(unit, "env"),
        `"PLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR=${path.dirname(path.dirname(vm.dataDir))}"\n`,
      );
      fs.writeFileSync(path.join(unit, "envfiles"), `${envFile} (ignore_errors=yes)\n`);
      const run = await vm.run("preflight");
      assert.equal(run.code, 3, run.stderr);
      assert.ok(
        run.stderr.includes(`keeps its data in ${elsewhere}/Plex Media Server`),
        "the EnvironmentFile wins over Environment=, as in systemd",
      );
    });

    it("refuses a data dir subfolder symlinked to another disk, saying how to fix it", async () => {
      const vm = await fresh();
      const disk = path.join(vm.root, "mnt-ssd");
      fs.mkdirSync(disk);
      fs.renameSync(path.join(vm.dataDir, "Metadata"), path.join(disk, "Metadata"));
      fs.symlinkSync(path.join(disk, "Metadata"), path.join(vm.dataDir, "Metadata"));
      const run = await vm.run("preflight");
      assert.equal(run.code, 3);
      const json = parseStepOutput("preflight", run.stdout);
      assert.ok(
        json.problems.some((p) =>
          p.startsWith(
            `Metadata is a symlink to ${disk}/Metadata, outside the data dir: the copy would hold only the link. Stop Plex, replace the link by the folder itself`,
          ),
        ),
        json.problems.join("\n"),
      );
      assert.equal(json.plexToken, "", "no token in a refused summary");
    });

    /** Puts an executable fake tool (a bash script body) on the fake VM's PATH. */
    const fakeTool = (vm: FakeVm, name: string, body: string) => {
      const file = path.join(vm.binDir, name);
      fs.writeFileSync(file, `#!/usr/bin/env bash\n${body}\n`);
      fs.chmodSync(file, 0o755);
    };

    it("recognises a snap install: its version from snap list, and the unit and data dir it needs named", async () => {
      const vm = await fresh({ plexVersion: null });
      fakeTool(
        vm,
        "snap",
        `[ "$1 $2" = "list plexmediaserver" ] || exit 1
printf 'Name             Version                Rev  Tracking       Publisher  Notes\\n'
printf 'plexmediaserver  1.41.3.9314-a0bfb8370  417  latest/stable  plexinc*   -\\n'`,
      );
      const units = path.join(vm.stateDir, "systemd");
      fs.renameSync(
        path.join(units, "plexmediaserver"),
        path.join(units, "snap.plexmediaserver.plexmediaserver"),
      );
      const wrongUnit = await vm.run("preflight");
      assert.equal(wrongUnit.code, 3);
      assert.ok(
        wrongUnit.stderr.includes(
          "Plex is installed as a snap: set plexService to snap.plexmediaserver.plexmediaserver (and plexDataDir to /var/snap/plexmediaserver/common/Library/Application Support/Plex Media Server)",
        ),
        wrongUnit.stderr,
      );
      const wrongDir = await vm.run("preflight", {
        PLEX_MIGRATE_DATA_DIR: path.join(vm.root, "nowhere"),
      });
      assert.equal(wrongDir.code, 3);
      assert.match(
        wrongDir.stderr,
        /does not exist \(Plex is installed as a snap here: its data is in \/var\/snap\/plexmediaserver\/common/,
      );
      const run = await vm.run("preflight", {
        PLEX_MIGRATE_PLEX_SERVICE: "snap.plexmediaserver.plexmediaserver",
      });
      assert.equal(run.code, 0, run.stderr);
      const json = parseStepOutput("preflight", run.stdout);
      assert.equal(json.install, "snap");
      assert.equal(json.plexVersion, "1.41.3.9314-a0bfb8370");
      assert.equal(json.plexVersionSource, "snap list");
    });

    it("recognises Plex in a Docker container: refused with what to do unless a systemd unit runs it", async () => {
      const vm = await fresh({ plexVersion: null });
      fakeTool(
        vm,
        "docker",
        `[ "$1" = ps ] || exit 1
printf 'tautulli ghcr.io/tautulli/tautulli:latest\\nplex plexinc/pms-docker:1.41.3.9314-a0bfb8370\\n'`,
      );
      const units = path.join(vm.stateDir, "systemd");
      fs.renameSync(path.join(units, "plexmediaserver"), path.join(units, "elsewhere"));
      const refused = await vm.run("preflight");
      assert.equal(refused.code, 3);
      assert.ok(
        refused.stderr.includes(
          "Plex runs in the container plex (image plexinc/pms-docker:1.41.3.9314-a0bfb8370), and plex-migrate stops and restarts Plex through systemd: run the container from a systemd unit (ExecStart=docker start -a plex, ExecStop=docker stop plex) and set plexService to it; set plexDataDir to the host folder mounted at /config plus /Library/Application Support/Plex Media Server",
        ),
        refused.stderr,
      );
      fs.renameSync(path.join(units, "elsewhere"), path.join(units, "plexmediaserver"));
      const run = await vm.run("preflight");
      assert.equal(run.code, 0, run.stderr);
      const json = parseStepOutput("preflight", run.stdout);
      assert.equal(json.install, "docker");
      assert.equal(json.plexVersion, vm.manifest.plexVersion);
      assert.equal(json.plexVersionSource, "log: Logs/Plex Media Server.log");
    });

    it("points a Tautulli snap or container to the settings that reach it, not a bare 'not found'", async () => {
      const vm = await fresh({ tautulliService: false });
      const units = path.join(vm.stateDir, "systemd");
      if (fs.existsSync(path.join(units, "tautulli"))) {
        fs.renameSync(path.join(units, "tautulli"), path.join(units, "snap.tautulli.tautulli"));
      }
      const missing = { PLEX_MIGRATE_TAUTULLI_DB: "/opt/Tautulli/tautulli.db" };
      fakeTool(
        vm,
        "snap",
        `[ "$1 $2" = "list tautulli" ] || exit 1
printf 'Name      Version  Rev   Tracking       Publisher   Notes\\n'
printf 'tautulli  v2.15.0  2127  latest/stable  tautulli*   -\\n'`,
      );
      const snap = await vm.run("preflight", missing);
      assert.equal(snap.code, 3, snap.stderr);
      const snapJson = parseStepOutput("preflight", snap.stdout);
      assert.ok(
        snapJson.problems.includes(
          "tautulli.db not found at /opt/Tautulli/tautulli.db: set tautulliDbPath (Tautulli is installed as a snap here: set tautulliService to snap.tautulli.tautulli and tautulliDbPath to /root/snap/tautulli/common/Tautulli/tautulli.db)",
        ),
        snapJson.problems.join("\n"),
      );
      assert.match(
        snapJson.notes.join("\n"),
        /unit tautulli not found: .*installed as a snap here/,
      );

      fs.rmSync(path.join(vm.binDir, "snap"));
      const appdata = path.join(vm.root, "srv", "appdata", "tautulli");
      fakeTool(
        vm,
        "docker",
        `case "$1" in
  ps) printf 'portainer portainer/portainer-ce:2.21.0\\ntautulli ghcr.io/tautulli/tautulli:v2.15.0\\n' ;;
  inspect) [ "\${@: -1}" = tautulli ] && printf '%s\\n' '${appdata}' ;;
  *) exit 1 ;;
esac`,
      );
      const docker = await vm.run("preflight", missing);
      assert.equal(docker.code, 3, docker.stderr);
      assert.ok(
        parseStepOutput("preflight", docker.stdout).problems.includes(
          `tautulli.db not found at /opt/Tautulli/tautulli.db: set tautulliDbPath (Tautulli runs in the container tautulli (image ghcr.io/tautulli/tautulli:v2.15.0): set tautulliDbPath to ${appdata}/tautulli.db, its /config on this host, and tautulliService to "" (its database is then snapshotted live, read-only) or to a systemd unit that runs the container)`,
        ),
        docker.stdout,
      );
    });

    it("reads TZ from Plex's unit and the Preferences.xml settings, XML-unescaped", async () => {
      const vm = await fresh();
      fs.writeFileSync(
        path.join(vm.stateDir, "systemd", "plexmediaserver", "env"),
        "TZ=Europe/Berlin LANG=C\n",
      );
      const prefs = path.join(vm.dataDir, "Preferences.xml");
      fs.writeFileSync(
        prefs,
        fs
          .readFileSync(prefs, "utf8")
          .replace(
            "/>",
            ' allowedNetworks="192.168.1.0/255.255.255.0,10.0.0.0/8" LanNetworksBandwidth="192.168.1.0/24" customConnections="https://plex.example.net:443/?a=1&amp;b=&quot;2&quot;"/>',
          ),
      );
      const run = await vm.run("preflight");
      assert.equal(run.code, 0, run.stderr);
      const json = parseStepOutput("preflight", run.stdout);
      assert.equal(json.timezone, "Europe/Berlin");
      assert.deepEqual(json.preferences, {
        machineIdentifier: vm.manifest.processedMachineIdentifier,
        allowedNetworks: "192.168.1.0/255.255.255.0,10.0.0.0/8",
        lanNetworks: "192.168.1.0/24",
        customConnections: 'https://plex.example.net:443/?a=1&b="2"',
      });
      assert.ok(
        !fs.readFileSync(path.join(vm.workDir, "migration.log"), "utf8").includes(json.plexToken),
      );
    });
  });

  describe("errors inside command substitutions", () => {
    it("bash drops -e inside $(…) without inherit_errexit (the defect), and keeps it with it", () => {
      const snippet = (shopt: string) =>
        spawnSync(
          "bash",
          ["-c", `set -euo pipefail; ${shopt} f() { false; echo after; }; x=$(f); echo "x=$x"`],
          { encoding: "utf8" },
        );
      const lost = snippet("");
      assert.equal(lost.status, 0);
      assert.equal(lost.stdout, "x=after\n", "false inside $(f) did not stop f");
      const kept = snippet("shopt -s inherit_errexit;");
      assert.equal(kept.status, 1);
      assert.equal(kept.stdout, "");
      assert.match(fs.readFileSync(SCRIPT_PATH, "utf8"), /\nshopt -s inherit_errexit\n/);
    });

    it("a database that cannot be read for its sha256 stops the step; without inherit_errexit the stop step hands on an empty checksum", async () => {
      const vm = await fresh({ servicesRunning: false });
      // A disk error reading the library database: sha256sum fails on it (stdin is the file).
      const realSha = spawnSync("sh", ["-c", "command -v sha256sum"], {
        encoding: "utf8",
      }).stdout.trim();
      const tool = path.join(vm.binDir, "sha256sum");
      fs.writeFileSync(
        tool,
        [
          "#!/usr/bin/env bash",
          'case "$(readlink /proc/$$/fd/0)" in',
          '  *com.plexapp.plugins.library.db) echo "sha256sum: -: Input/output error" >&2; exit 1 ;;',
          "esac",
          `exec ${realSha} "$@"`,
          "",
        ].join("\n"),
        { mode: 0o755 },
      );

      // The script as it was: the same text without inherit_errexit.
      const unfixed = path.join(vm.root, "plex-migrate-source-without-inherit-errexit.sh");
      const text = fs.readFileSync(SCRIPT_PATH, "utf8");
      fs.writeFileSync(unfixed, text.replace("\nshopt -s inherit_errexit\n", "\n"));
      assert.notEqual(fs.readFileSync(unfixed, "utf8"), text);
      const before = await runProcess("bash", [unfixed, "stop"], { env: vm.env() });
      assert.equal(before.code, 0, before.stderr);
      const handedOn = JSON.parse(before.stdout) as {
        plexDatabases: { path: string; sha256: string }[];
      };
      const library = handedOn.plexDatabases.find((db) => db.path === LIBRARY_DB_RELATIVE);
      assert.equal(library?.sha256, "", "the defect: an empty checksum for the cluster to match");

      const after = await vm.run("stop");
      assert.equal(after.code, 1, after.stderr);
      assert.equal(after.stdout, "", "no summary");
      assert.ok(
        after.stderr.includes(
          `cannot read ${path.join(vm.dataDir, LIBRARY_DB_RELATIVE)} to take its sha256`,
        ),
        after.stderr,
      );
    });
  });

  describe("interrupted steps and progress", () => {
    /** Starts a step in its own process group with stderr collected as it comes. */
    function startStep(vm: FakeVm, step: string, extra: Record<string, string>) {
      const child = spawn("bash", [SCRIPT_PATH, step], {
        env: vm.env(extra),
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
      });
      const out = { stdout: "", stderr: "", code: undefined as number | null | undefined };
      child.stdout.on("data", (d: Buffer) => (out.stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (out.stderr += d.toString()));
      const done = new Promise<void>((resolve) =>
        child.once("close", (code, signal) => {
          out.code = code ?? (signal ? 128 : null);
          resolve();
        }),
      );
      return { child, out, done };
    }

    it("an SSH session that drops (SIGHUP) in the middle of stop leaves no database copy or partial snapshot", async () => {
      const vm = await fresh({ servicesRunning: true });
      const hold = path.join(vm.root, "hold-plex-sqlite");
      spawnSync("mkfifo", [hold]);
      const step = startStep(vm, "stop", { FAKE_PLEX_SQLITE_HOLD: hold });
      await until(() => fs.existsSync(`${hold}.held`), "Plex SQLite to be running");
      const copy = path.join(vm.workDir, "check", "com.plexapp.plugins.library.db");
      assert.ok(fs.existsSync(copy), "the check's copy of the database exists while it runs");
      process.kill(-step.child.pid!, "SIGHUP");
      await step.done;
      assert.equal(step.out.code, 129, step.out.stderr);
      assert.ok(!fs.existsSync(path.join(vm.workDir, "check")), "the copy is gone");
      const snapshot = path.join(vm.workDir, "snapshot");
      assert.deepEqual(fs.existsSync(snapshot) ? fs.readdirSync(snapshot) : [], []);
      assert.match(
        fs.readFileSync(path.join(vm.workDir, "migration.log"), "utf8"),
        /\[stop\] interrupted \(signal 1\); partial files removed/,
      );
      // Run again, it finishes: the units stay masked, the state is the one from before.
      const again = await vm.run("stop");
      assert.equal(again.code, 0, again.stderr);
      assert.equal(parseStepOutput("stop", again.stdout).previousState.plex?.active, true);
    });

    it("a step that fails (an unreadable tautulli.db) leaves no copy or partial snapshot behind", async () => {
      const vm = await fresh({ servicesRunning: false });
      fs.rmSync(`${vm.tautulliDb}-wal`, { force: true });
      fs.writeFileSync(vm.tautulliDb, Buffer.alloc(8192, 0x5a));
      const run = await vm.run("stop");
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr, /the Tautulli snapshot failed/);
      assert.ok(!fs.existsSync(path.join(vm.workDir, "check")), "no database copy left");
      assert.deepEqual(
        fs.readdirSync(path.join(vm.workDir, "snapshot")),
        [],
        "no partial snapshot",
      );
    });

    it("long operations print progress lines while they run and a total with the rate at the end", async () => {
      const vm = await fresh({ servicesRunning: false });
      const hold = path.join(vm.root, "hold-plex-sqlite");
      spawnSync("mkfifo", [hold]);
      const step = startStep(vm, "stop", {
        FAKE_PLEX_SQLITE_HOLD: hold,
        PLEX_MIGRATE_PROGRESS_SECONDS: "0",
      });
      await until(
        () =>
          /integrity check of com\.plexapp\.plugins\.library\.db: running, /.test(step.out.stderr),
        "a progress line during the integrity check",
      );
      fs.writeFileSync(hold, "go");
      await step.done;
      assert.equal(step.out.code, 0, step.out.stderr);
      const lines = step.out.stderr;
      assert.match(
        lines,
        /sha256 com\.plexapp\.plugins\.library\.db: done, [\d.]+ (MiB|KiB|bytes|GiB) in \d+s \([\d.]+ \w+\/s\)/,
      );
      assert.match(lines, /copying com\.plexapp\.plugins\.library\.db: done, /);
      assert.match(lines, /Tautulli snapshot: done, /);
      assert.match(lines, /sha256 tautulli\.db: done, /);
    });
  });
});
