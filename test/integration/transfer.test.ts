/**
 * The VM side of the transfer for real: plex-migrate-source.sh's authorize-sync / revoke-sync
 * against a real sshd on loopback. The migration key may run a read-only rsync server confined to
 * the data directory and nothing else: no shell, no writes, no path outside, no forwarding, no
 * connection from outside the allowed networks. Root reads directly; another user goes through
 * sudo, which keeps SSH_ORIGINAL_COMMAND for rrsync. What the pod asks the server for passes the
 * option filters of the older Perl rrsync too.
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { imageLikePath, startProcess } from "../../lib/plex/local-run";
import { createSyncFixture } from "../support/sync-fixture";
import {
  LocalVmSync,
  generateSshKey,
  knownHostsLine,
  startLoopbackSshd,
  type LoopbackSshd,
} from "../../lib/plex/local-sync";
import { INIT_PLEX_DATA } from "../../lib/plex/init-script";
import { SCRIPT_PATH } from "../../lib/source-vm/commands";
import { generatePlexTree } from "../../lib/samples/plex-tree";

interface Setup {
  root: string;
  sshd: LoopbackSshd;
  dataDir: string;
  key: { privateKey: string; publicKey: string };
  keyFile: string;
  knownHosts: string;
  vm(options?: { user?: string; allowedCidrs?: string[]; rrsyncSearch?: string }): LocalVmSync;
  /** ssh with the migration key, as the pod does. */
  ssh(user: string, args: string[]): { code: number; stdout: string; stderr: string };
  /** rsync with the migration key, as the pod does. */
  rsync(user: string, args: string[]): { code: number; stdout: string; stderr: string };
}

async function setup(): Promise<Setup> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-access-"));
  fs.chmodSync(root, 0o755);
  const dataDir = path.join(root, "vm", INIT_PLEX_DATA);
  fs.mkdirSync(path.dirname(dataDir), { recursive: true });
  await generatePlexTree(dataDir, { metadataFiles: 30 });
  const sshd = await startLoopbackSshd();
  const key = generateSshKey(root, "migration");
  const keyFile = path.join(root, "migration");
  const knownHosts = path.join(root, "known_hosts");
  fs.writeFileSync(knownHosts, knownHostsLine(sshd.hostPublicKey));
  const sshOptions = (user: string) => [
    "-F",
    "/dev/null",
    "-i",
    keyFile,
    "-p",
    String(sshd.port),
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "HostKeyAlias=plex-migrate-vm",
    "-o",
    `UserKnownHostsFile=${knownHosts}`,
    "-o",
    "StrictHostKeyChecking=yes",
    "-l",
    user,
  ];
  const run = (command: string, args: string[]) => {
    const result = spawnSync(command, args, { encoding: "utf8", timeout: 60_000 });
    return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
  };
  return {
    root,
    sshd,
    dataDir,
    key,
    keyFile,
    knownHosts,
    vm: (options = {}) => {
      const user = options.user ?? "root";
      return new LocalVmSync({
        dataDir,
        workDir: path.join(root, "work"),
        user,
        authorizedKeysFile: sshd.authorizedKeysFile(user),
        publicKey: key.publicKey,
        allowedCidrs: options.allowedCidrs,
        rrsyncSearch: options.rrsyncSearch,
      });
    },
    ssh: (user, args) => run("ssh", [...sshOptions(user), sshd.host, ...args]),
    rsync: (user, args) => run("rsync", ["-e", `ssh ${sshOptions(user).join(" ")}`, ...args]),
  };
}

async function runStep(step: string, env: Record<string, string>) {
  return startProcess("bash", [SCRIPT_PATH, step], {
    env: { PATH: process.env.PATH, LANG: "C.UTF-8", PLEX_MIGRATE_REHEARSAL: "1", ...env },
  }).done;
}

describe("sync access on the VM (authorize-sync / revoke-sync, real sshd)", function () {
  this.timeout(120_000);
  let s: Setup;
  const users: string[] = [];
  beforeEach(async () => {
    s = await setup();
  });
  afterEach(async () => {
    await s.sshd.stop();
    for (const user of users.splice(0)) {
      spawnSync("userdel", [user]);
      fs.rmSync(`/etc/sudoers.d/${user}`, { force: true });
    }
    fs.rmSync(s.root, { recursive: true, force: true });
  });

  it("authorizes one restricted line, idempotently, next to the lines already there; revoke removes exactly it", async () => {
    const file = s.sshd.authorizedKeysFile("root");
    const other =
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOfTheAdminxxxxxxxxxxxxxxxxxxxxxxxx admin@laptop\n";
    fs.writeFileSync(file, other, { mode: 0o600 });
    const vm = s.vm({ allowedCidrs: ["127.0.0.0/8", "10.42.0.0/16"] });
    const first = await vm.authorize();
    assert.strictEqual(first.json.changed, true);
    const blob = s.key.publicKey.split(" ")[1];
    const expectedLine =
      `restrict,from="127.0.0.0/8,10.42.0.0/16",command="'/usr/bin/rrsync' -ro '${s.dataDir}'" ` +
      `ssh-ed25519 ${blob} plex-migrate-sync`;
    assert.strictEqual(fs.readFileSync(file, "utf8"), `${other}${expectedLine}\n`);
    assert.strictEqual(first.json.forcedCommand, `'/usr/bin/rrsync' -ro '${s.dataDir}'`);
    assert.strictEqual(first.json.authorizedKeysFile, file);
    const fingerprint = spawnSync("ssh-keygen", ["-l", "-E", "sha256", "-f", `${s.keyFile}.pub`], {
      encoding: "utf8",
    }).stdout.split(" ")[1];
    assert.strictEqual(first.json.keyFingerprint, fingerprint);
    assert.strictEqual(fs.statSync(file).mode & 0o777, 0o600);

    const second = await vm.authorize();
    assert.strictEqual(second.json.changed, false);
    assert.strictEqual(fs.readFileSync(file, "utf8"), `${other}${expectedLine}\n`);

    const revoked = await vm.revoke();
    assert.strictEqual(revoked.json.revoked, true);
    assert.strictEqual(fs.readFileSync(file, "utf8"), other);
    assert.strictEqual((await vm.revoke()).json.revoked, false);
  });

  it("the key reads the data directory and can do nothing else", async () => {
    await s.vm().authorize();
    const copy = path.join(s.root, "copy");
    const pulled = s.rsync("root", ["-a", `${s.sshd.host}:./`, `${copy}/`]);
    assert.strictEqual(pulled.code, 0, pulled.stderr);
    assert.ok(fs.existsSync(path.join(copy, "Preferences.xml")));

    const shell = s.ssh("root", ["cat", "/etc/passwd"]);
    assert.notStrictEqual(shell.code, 0);
    assert.doesNotMatch(shell.stdout, /root:/);

    const victim = path.join(s.root, "pushed.txt");
    fs.writeFileSync(victim, "written by the cluster\n");
    const push = s.rsync("root", [victim, `${s.sshd.host}:./`]);
    assert.notStrictEqual(push.code, 0);
    assert.ok(!fs.existsSync(path.join(s.dataDir, "pushed.txt")), "the data dir stays read-only");

    const outside = s.rsync("root", ["-a", `${s.sshd.host}:../`, path.join(s.root, "outside")]);
    assert.notStrictEqual(outside.code, 0);
    assert.match(outside.stderr, /\.\./);

    const forward = s.ssh("root", [
      "-N",
      "-o",
      "ExitOnForwardFailure=yes",
      "-R",
      "127.0.0.1:0:127.0.0.1:9",
    ]);
    assert.strictEqual(forward.code, 255, "port forwarding is refused (restrict)");
    assert.match(forward.stderr, /forwarding failed/);
  });

  it("from= refuses a key used from outside the allowed networks", async () => {
    await s.vm({ allowedCidrs: ["10.0.0.0/8"] }).authorize();
    const result = s.rsync("root", ["-a", `${s.sshd.host}:./`, path.join(s.root, "copy")]);
    assert.notStrictEqual(result.code, 0);
    assert.match(result.stderr, /Permission denied \(publickey/);
  });

  it("another VM user reads through sudo, which keeps SSH_ORIGINAL_COMMAND for rrsync", async () => {
    const user = `pmsync${crypto.randomBytes(3).toString("hex")}`;
    assert.strictEqual(
      spawnSync("useradd", ["--system", "--no-create-home", "--shell", "/bin/sh", user]).status,
      0,
    );
    users.push(user);
    spawnSync("usermod", ["-p", "*", user]);
    // A root-only file: only root (through sudo) can read it.
    fs.writeFileSync(path.join(s.dataDir, "root-only.dat"), "secret\n", { mode: 0o600 });
    const refused = await runStep("authorize-sync", {
      PLEX_MIGRATE_WORK_DIR: path.join(s.root, "work"),
      PLEX_MIGRATE_DATA_DIR: s.dataDir,
      PLEX_MIGRATE_SYNC_PUBLIC_KEY: s.key.publicKey,
      PLEX_MIGRATE_SYNC_USER: user,
      PLEX_MIGRATE_SYNC_AUTHORIZED_KEYS: s.sshd.authorizedKeysFile(user),
    });
    assert.strictEqual(refused.code, 3, refused.stderr);
    assert.match(
      refused.stderr,
      new RegExp(`the VM user ${user} needs passwordless sudo that keeps SSH_ORIGINAL_COMMAND`),
    );

    fs.writeFileSync(`/etc/sudoers.d/${user}`, `${user} ALL=(root) NOPASSWD: ALL\n`, {
      mode: 0o440,
    });
    const authorized = await s.vm({ user }).authorize();
    assert.match(
      String(authorized.json.forcedCommand),
      /^sudo -n --preserve-env=SSH_ORIGINAL_COMMAND -- '\/usr\/bin\/rrsync' -ro /,
    );
    const copy = path.join(s.root, "copy");
    const pulled = s.rsync(user, ["-a", `${s.sshd.host}:./`, `${copy}/`]);
    assert.strictEqual(pulled.code, 0, pulled.stderr);
    assert.strictEqual(fs.readFileSync(path.join(copy, "root-only.dat"), "utf8"), "secret\n");
  });

  it("finds a gzipped rrsync (Ubuntu 20.04 ships it under /usr/share/doc) and makes it runnable", async () => {
    const doc = path.join(s.root, "usr/share/doc/rsync/scripts");
    fs.mkdirSync(doc, { recursive: true });
    const gz = spawnSync("gzip", ["-c", "/usr/bin/rrsync"]);
    fs.writeFileSync(path.join(doc, "rrsync.gz"), gz.stdout);
    const vm = s.vm({
      rrsyncSearch: `${path.join(s.root, "nothing")}:${path.join(doc, "rrsync.gz")}`,
    });
    const result = await vm.authorize();
    const unpacked = path.join(s.root, "work/sync/rrsync");
    assert.strictEqual(result.json.forcedCommand, `'${unpacked}' -ro '${s.dataDir}'`);
    assert.strictEqual(fs.statSync(unpacked).mode & 0o777, 0o755);
    const pulled = s.rsync("root", ["-a", `${s.sshd.host}:./`, path.join(s.root, "copy")]);
    assert.strictEqual(pulled.code, 0, pulled.stderr);
    const revoked = await vm.revoke();
    assert.ok((revoked.json.removed as string[]).includes(path.join(s.root, "work/sync")));
    assert.ok(!fs.existsSync(unpacked));
  });

  it("refuses clearly: no rrsync, a malformed key, a bad CIDR, a data dir with a quote", async () => {
    const base = {
      PLEX_MIGRATE_WORK_DIR: path.join(s.root, "work"),
      PLEX_MIGRATE_DATA_DIR: s.dataDir,
      PLEX_MIGRATE_SYNC_PUBLIC_KEY: s.key.publicKey,
      PLEX_MIGRATE_SYNC_USER: "root",
      PLEX_MIGRATE_SYNC_AUTHORIZED_KEYS: s.sshd.authorizedKeysFile("root"),
    };
    const cases: [Record<string, string>, number, RegExp][] = [
      [
        { PLEX_MIGRATE_SYNC_RRSYNC_SEARCH: "/nonexistent/rrsync" },
        3,
        /rrsync \(rsync's restricted server\) is not on the VM .*apt-get install rsync/,
      ],
      [
        { PLEX_MIGRATE_SYNC_PUBLIC_KEY: "not a key" },
        2,
        /PLEX_MIGRATE_SYNC_PUBLIC_KEY is not an OpenSSH public key line/,
      ],
      [{ PLEX_MIGRATE_SYNC_PUBLIC_KEY: "" }, 2, /PLEX_MIGRATE_SYNC_PUBLIC_KEY .* is not set/],
      [
        { PLEX_MIGRATE_SYNC_ALLOWED_CIDRS: "10.0.0.0/8,my-cluster" },
        2,
        /entry 'my-cluster' is not an address or CIDR/,
      ],
    ];
    for (const [extra, code, message] of cases) {
      const result = await runStep("authorize-sync", { ...base, ...extra });
      assert.strictEqual(result.code, code, result.stderr);
      assert.match(result.stderr, message);
    }
    assert.ok(!fs.existsSync(s.sshd.authorizedKeysFile("root")), "nothing was authorized");

    const quoted = path.join(s.root, "vm2", "Plex 'Media' Server");
    fs.mkdirSync(path.dirname(quoted), { recursive: true });
    fs.cpSync(s.dataDir, quoted, { recursive: true, verbatimSymlinks: true });
    const result = await runStep("authorize-sync", { ...base, PLEX_MIGRATE_DATA_DIR: quoted });
    assert.strictEqual(result.code, 3, result.stderr);
    assert.match(result.stderr, /holds a quote or backslash/);
  });
});

/**
 * The option filter of the Perl rrsync that Ubuntu 20.04 (rsync 3.1.3) and 22.04 at release
 * (rsync 3.2.3) ship under /usr/share/doc/rsync/scripts, ported from RsyncProject/rsync
 * support/rrsync at tags v3.1.3 and v3.2.3: every word before "." must be a bundle of allowed
 * short letters (plus the "-e.<capabilities>" word) or a listed long option; anything else ends
 * in "invalid rsync-command syntax or options" or "has been disabled on this server".
 */
const PERL_RRSYNC = {
  "3.1.3": { shortNoArg: "ACDEHIJKLORSWXbcdgklmnoprtuvxyz", shortWithNum: "B" },
  "3.2.3": { shortNoArg: "ACDEHIJKLORSUWXbcdgklmnopqrtuvxyz", shortWithNum: "B" },
};
/** Long options both versions list (0: no argument, 1: one), those a pull with our options may send. */
const PERL_RRSYNC_LONG: Record<string, number> = {
  "numeric-ids": 0,
  timeout: 1,
  "modify-window": 1,
  "delete-during": 0,
  delete: 0,
  "hard-links": 0,
};

function perlRrsyncRefusal(words: string[], version: keyof typeof PERL_RRSYNC): string | null {
  const { shortNoArg, shortWithNum } = PERL_RRSYNC[version];
  const bundle = new RegExp(`^-[${shortNoArg}]*(e\\d*\\.\\w*)?$`);
  const numbered = new RegExp(`^-[${shortWithNum}]\\d+$`);
  const [rsync, server, sender, ...rest] = words;
  if (rsync !== "rsync" || server !== "--server" || sender !== "--sender") {
    return `not a read-only request: ${words.slice(0, 3).join(" ")}`;
  }
  for (let i = 0; i < rest.length; i++) {
    const word = rest[i];
    if (word === ".") return null;
    if (bundle.test(word) || numbered.test(word)) continue;
    const long = /^--([^=]+)(?:=(.*))?$/.exec(word);
    if (!long || !(long[1] in PERL_RRSYNC_LONG)) return `refuses ${word}`;
    if (PERL_RRSYNC_LONG[long[1]] === 1 && long[2] === undefined) i++;
  }
  return "no '.' ends the options";
}

describe("the pod's requests pass Ubuntu 20.04's and 22.04's Perl rrsync", function () {
  this.timeout(180_000);

  it("every rsync the warm and the final phase start asks only for options those filters allow", async () => {
    const fixture = await createSyncFixture({ metadataFiles: 40 });
    try {
      // The ssh the init script runs records the remote command, then does its job.
      const log = path.join(fixture.root, "remote-commands");
      const realSsh = spawnSync("sh", ["-c", "command -v ssh"], { encoding: "utf8" }).stdout.trim();
      const wrapper = path.join(fixture.root, "recording-ssh");
      fs.writeFileSync(
        wrapper,
        [
          "#!/bin/sh",
          // rsync runs `ssh <options> <host> rsync --server ...`: the words from "rsync" on.
          `for word in "$@"; do [ "$word" = rsync ] && seen=1; [ -n "$seen" ] && printf '%s ' "$word"; done >>"${log}"`,
          `echo >>"${log}"`,
          `exec ${realSsh} "$@"`,
          "",
        ].join("\n"),
        { mode: 0o755 },
      );
      const bin = imageLikePath(path.join(fixture.root, "recording-bin"), { ssh: wrapper });
      for (const phase of ["warm", "final"] as const) {
        const result = await fixture.run(phase, {}, { path: bin });
        assert.strictEqual(result.code, 0, `${phase}: ${result.stderr}`);
      }
      const requests = fs.readFileSync(log, "utf8").split("\n").filter(Boolean);
      // The warm copy, the final transfer, and its verifying dry run.
      assert.strictEqual(requests.length, 3, requests.join("\n"));
      assert.ok(
        requests.some((r) => / -n[A-Za-z]*e\./.test(r)),
        "the dry run is among them",
      );
      for (const request of requests) {
        const words = request.trim().split(" ");
        for (const version of Object.keys(PERL_RRSYNC) as (keyof typeof PERL_RRSYNC)[]) {
          assert.strictEqual(perlRrsyncRefusal(words, version), null, `${version}: ${request}`);
        }
      }
      // The filter is not a formality: what a push or a shell would send is refused.
      assert.match(
        perlRrsyncRefusal(["rsync", "--server", "-logDtpre.iLsfxCIvu", ".", "./"], "3.1.3")!,
        /not a read-only/,
      );
      assert.match(
        perlRrsyncRefusal(
          ["rsync", "--server", "--sender", "-s", "--protect-args", ".", "./"],
          "3.1.3",
        )!,
        /refuses -s/,
      );
      assert.match(
        perlRrsyncRefusal(["rsync", "--server", "--sender", "-lr", "--fsync", ".", "./"], "3.2.3")!,
        /refuses --fsync/,
      );
    } finally {
      await fixture.cleanup();
    }
  });
});
