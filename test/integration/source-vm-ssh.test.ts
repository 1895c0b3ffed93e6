/**
 * SourceVm end to end over a real OpenSSH server (test/support/sshd.ts, Debian's sshd on
 * 127.0.0.2): the program runs under Pulumi mocks, and each remote.Command it registers is executed
 * exactly as @pulumi/command would, its `create` command line and `stdin` sent through ssh to the
 * fake VM (test/support/fake-vm). The step outputs SourceVm parses are the real ones. Proves the
 * quoting, the settings travelling on stdin (sshd drops client environment without AcceptEnv),
 * sudo for a non-root user, the migration key that authorize-sync puts behind the read-only rsync
 * server, and the destroy hooks.
 */
import { strict as assert } from "assert";
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import type { SourceVm, SourceVmArgs, StoppedSource } from "../../components/source-vm";
import { downloadOverSsh } from "../../lib/import/ssh-download";
import { generateSshKey } from "../../lib/plex/local-sync";
import { shellQuote } from "../../lib/source-vm/commands";
import {
  Registration,
  runWithMocks,
  secretValue,
  unwrap,
  unwrapSecrets,
} from "../support/pulumi-mocks";
import { createFakeVm, FakeVm, processesHolding } from "../support/fake-vm";
import { SshServer, startSshd } from "../support/sshd";

const CMD = "command:remote:Command";
/** Steps that wait for the cluster side (the Plex release, the import): the test runs them itself. */
const RUN_LATER = ["vm-revoke-sync"];

interface Deployment {
  vm: SourceVm;
  stopped: StoppedSource;
  registrations: Registration[];
  /** Names of the commands run over ssh, in order. */
  ran: string[];
}

const sha256 = (file: string) =>
  crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");

describe("SourceVm over a real sshd (OpenSSH on 127.0.0.2, fake VM behind it)", function () {
  this.timeout(240_000);
  let fakeVm: FakeVm;
  let sshd: SshServer;
  let keyDir: string;
  let syncKey: { privateKey: string; publicKey: string };
  let rootDeployment: Deployment;

  before(async () => {
    fakeVm = await createFakeVm({ linger: 1 });
    sshd = await startSshd({
      sessionPath: fakeVm.path,
      sudoPathPrefix: [fakeVm.plexBinDir, fakeVm.binDir],
    });
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-sync-key-"));
    syncKey = generateSshKey(keyDir, "migration");
  });
  after(async () => {
    await sshd?.stop();
    await fakeVm?.cleanup();
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
  });

  function args(user: string): SourceVmArgs {
    const s = fakeVm.settings;
    return {
      connection: {
        host: sshd.host,
        port: sshd.port,
        user,
        privateKey: pulumi.secret(sshd.privateKey),
        hostKey: sshd.hostPublicKey,
      },
      sudo: true,
      workDir: s.workDir,
      plexDataDir: s.plexDataDir,
      plexService: s.plexService,
      tautulliService: s.tautulliService,
      tautulliDbPath: s.tautulliDbPath,
      syncAllowedCidrs: ["127.0.0.0/8"],
      rollbackOnDestroy: true,
      generations: { transfer: 1, tautulliImport: 1 },
      retired: false,
    };
  }

  /**
   * This sshd reads each user's keys from its own directory (`AuthorizedKeysFile <dir>/%u`), not
   * ~/.ssh/authorized_keys as a VM's does: the one setting the test adds, so authorize-sync writes
   * where this server looks (and never into this machine's /root/.ssh).
   */
  const authorizedKeysFile = (user: string) => path.join(sshd.dir, "authorized_keys", user);
  const withKeysFile = (user: string, stdin: string | undefined) =>
    `export PLEX_MIGRATE_SYNC_AUTHORIZED_KEYS=${shellQuote(authorizedKeysFile(user))}\n${stdin ?? ""}`;

  /** `pulumi up` of a SourceVm: each command with a create runs over ssh as the engine would. */
  async function deploy(user: string): Promise<Deployment> {
    const ran: string[] = [];
    let vm: SourceVm | undefined;
    let stopped: StoppedSource | undefined;
    const { registrations } = await runWithMocks(
      () => {
        const { SourceVm: Component } = require("../../components/source-vm");
        vm = new Component("vm", args(user)) as SourceVm;
        // The warm copy runs between authorize-sync and stop; the cluster side between stop and revoke.
        stopped = vm.stopAfter([]);
        vm.revokeSyncAfter([]);
        return {};
      },
      {
        outputs: {
          // A real key pair in place of @pulumi/tls's, so the authorized key can log in.
          "tls:index/privateKey:PrivateKey": () => ({
            publicKeyOpenssh: `${syncKey.publicKey}\n`,
            privateKeyOpenssh: secretValue(syncKey.privateKey),
          }),
          [CMD]: (registration) => {
            const inputs = unwrapSecrets(registration.inputs) as {
              create?: string;
              stdin?: string;
              connection: {
                host: string;
                port: number;
                user: string;
                privateKey: string;
                hostKey: string;
              };
            };
            // The connection is exactly the server's: address, user, key, pinned host key.
            const { host, port, user: login, privateKey, hostKey } = inputs.connection;
            assert.deepEqual(
              { host, port, user: login, privateKey, hostKey },
              {
                host: sshd.host,
                port: sshd.port,
                user,
                privateKey: sshd.privateKey,
                hostKey: sshd.hostPublicKey,
              },
            );
            if (!inputs.create || RUN_LATER.includes(registration.name)) {
              return { stdout: "", stderr: "" };
            }
            const result = sshd.runSync(user, inputs.create, withKeysFile(user, inputs.stdin));
            if (result.code !== 0) {
              throw new Error(
                `${registration.name} failed over ssh (${result.code}): ${result.stderr}`,
              );
            }
            ran.push(registration.name);
            // @pulumi/command trims one trailing newline from stdout.
            return {
              stdout: result.stdout.replace(/\n$/, ""),
              stderr: result.stderr.replace(/\n$/, ""),
            };
          },
        },
      },
    );
    return { vm: vm!, stopped: stopped!, registrations, ran };
  }

  const command = (deployment: Deployment, name: string) => {
    const found = deployment.registrations.find((r) => r.type === CMD && r.name === name);
    assert.ok(found, name);
    return unwrapSecrets(found.inputs) as { create?: string; delete?: string; stdin?: string };
  };

  const runCaptured = (
    deployment: Deployment,
    user: string,
    name: string,
    which: "create" | "delete",
  ) => {
    const captured = command(deployment, name);
    assert.ok(captured[which], `${name} has a ${which} command`);
    return sshd.run(user, captured[which]!, withKeysFile(user, captured.stdin));
  };

  /** rsync with the migration key through the sshd, as the pod's warm copy does. */
  function pullWithSyncKey(user: string, destination: string) {
    const keyFile = path.join(keyDir, "migration");
    const knownHosts = path.join(keyDir, "known_hosts");
    fs.writeFileSync(knownHosts, `[${sshd.host}]:${sshd.port} ${sshd.hostPublicKey}\n`);
    const ssh = [
      "ssh -F /dev/null",
      `-i ${keyFile}`,
      `-p ${sshd.port}`,
      "-o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes",
      `-o UserKnownHostsFile=${knownHosts}`,
      `-l ${user}`,
    ].join(" ");
    const result = spawnSync(
      "rsync",
      ["-aHS", "--numeric-ids", "-e", ssh, `${sshd.host}:./`, `${destination}/`],
      { encoding: "utf8", timeout: 120_000 },
    );
    return { code: result.status ?? -1, stderr: result.stderr };
  }

  it("as root: preflight, authorize-sync and stop run through sshd in order; the outputs are the VM's", async () => {
    rootDeployment = await deploy("root");
    assert.deepEqual(rootDeployment.ran, ["vm-preflight", "vm-authorize-sync", "vm-stop"]);
    const { vm, stopped } = rootDeployment;
    assert.equal((await unwrap(vm.plexVersion)).value, fakeVm.manifest.plexVersion);
    assert.ok((await unwrap(vm.libraryBytes)).value >= fakeVm.manifest.bytes);
    assert.ok((await unwrap(vm.fileCount)).value >= fakeVm.manifest.files);
    assert.deepEqual((await unwrap(vm.mediaRoots)).value, fakeVm.manifest.mediaRoots);
    assert.equal(fakeVm.serviceActive("plexmediaserver"), false);
    assert.equal(fakeVm.serviceActive("tautulli"), false);
    assert.deepEqual(processesHolding(fakeVm.dataDir), []);

    // The preflight summary carries the Plex token: its stdout is a secret output, so is the token.
    const preflight = rootDeployment.registrations.find((r) => r.name === "vm-preflight")!;
    assert.ok(preflight.additionalSecretOutputs.includes("stdout"));
    const token = await unwrap(vm.plexToken);
    assert.equal(token.secret, true);
    const preferences = fs.readFileSync(path.join(fakeVm.dataDir, "Preferences.xml"), "utf8");
    assert.ok(token.value.length > 0 && preferences.includes(`PlexOnlineToken="${token.value}"`));
    const log = fs.readFileSync(path.join(fakeVm.workDir, "migration.log"), "utf8");
    assert.ok(!log.includes(token.value), "the Plex token is not in the VM's log");

    // The databases' checksums are those of the stopped files, which the final sync must match.
    const databases = (await unwrap(stopped.plexDatabases)).value;
    assert.ok(databases.length >= 2);
    for (const db of databases) {
      assert.equal(db.sha256, sha256(path.join(fakeVm.dataDir, db.path)), db.path);
    }
  });

  it("the migration key authorize-sync installed pulls the data dir read-only through rrsync; the snapshot comes over SSH, verified", async () => {
    const line = fs.readFileSync(authorizedKeysFile("root"), "utf8");
    assert.match(line, /^restrict,from="127\.0\.0\.0\/8",command="'[^']*rrsync' -ro '/m);
    assert.ok(
      line.includes(syncKey.publicKey.split(" ")[1]),
      "the migration key is the authorized one",
    );

    const copy = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-ssh-copy-"));
    try {
      const pulled = pullWithSyncKey("root", copy);
      assert.equal(pulled.code, 0, pulled.stderr);
      const databases = (await unwrap(rootDeployment.stopped.plexDatabases)).value;
      for (const db of databases) {
        assert.equal(sha256(path.join(copy, db.path)), db.sha256, db.path);
      }
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }

    const snapshot = (await unwrap(rootDeployment.stopped.tautulliSnapshot)).value;
    assert.ok(snapshot, "the stop step took a Tautulli snapshot");
    const target = path.join(keyDir, "tautulli.db");
    const connection = await unwrap(rootDeployment.vm.sshConnection);
    assert.equal(connection.secret, true);
    const result = await downloadOverSsh(
      {
        ssh: connection.value,
        path: snapshot.path,
        sha256: snapshot.sha256,
        bytes: snapshot.bytes,
      },
      target,
    );
    assert.equal(result.sha256, snapshot.sha256);
    assert.equal(sha256(target), snapshot.sha256);
  });

  it("the captured revoke-sync removes the key: the next pull is refused", async () => {
    const result = await runCaptured(rootDeployment, "root", "vm-revoke-sync", "create");
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.json?.revoked, true);
    assert.ok(!fs.readFileSync(authorizedKeysFile("root"), "utf8").includes("plex-migrate-sync"));
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-ssh-copy-"));
    try {
      const refused = pullWithSyncKey("root", copy);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /Permission denied \(publickey/);
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });

  it("pulumi destroy's hooks run revoke-sync and (rollbackOnDestroy) a forced rollback through sshd", async () => {
    for (const name of ["vm-on-destroy-revoke-sync", "vm-on-destroy-rollback"]) {
      assert.equal(command(rootDeployment, name).create, undefined, `${name} has no create`);
      const result = await runCaptured(rootDeployment, "root", name, "delete");
      assert.equal(result.code, 0, `${name}: ${result.stderr}`);
    }
    assert.equal(fakeVm.serviceActive("plexmediaserver"), true);
    assert.equal(fakeVm.serviceActive("tautulli"), true);
    assert.equal(fakeVm.serviceEnabled("plexmediaserver"), "enabled");
  });

  it("as a non-root user, every step goes through sudo -n; the key reads through sudo; the same databases", async function () {
    if (!fs.existsSync("/usr/bin/sudo")) {
      throw new Error(
        "sudo is not installed: install it (apt-get install sudo; scripts/ensure-test-tools.sh)",
      );
    }
    const rootSums = (await unwrap(rootDeployment.stopped.plexDatabases)).value;
    const user = sshd.addUser({ sudo: true });
    const deployment = await deploy(user);
    assert.deepEqual(deployment.ran, ["vm-preflight", "vm-authorize-sync", "vm-stop"]);
    assert.match(command(deployment, "vm-stop").create!, /exec sudo -n -- bash -s -- stop/);
    assert.deepEqual((await unwrap(deployment.stopped.plexDatabases)).value, rootSums);
    // The steps ran as root: the state they keep is root's, not the SSH user's.
    assert.equal(fs.statSync(path.join(fakeVm.workDir, "migration.log")).uid, 0);
    // authorize-sync wrote the user's own file, with rrsync behind sudo.
    const line = fs.readFileSync(authorizedKeysFile(user), "utf8");
    assert.match(
      line,
      /command="sudo -n --preserve-env=SSH_ORIGINAL_COMMAND -- '[^']*rrsync' -ro /,
    );

    const copy = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-ssh-copy-"));
    try {
      const pulled = pullWithSyncKey(user, copy);
      assert.equal(pulled.code, 0, pulled.stderr);
      for (const db of rootSums) assert.equal(sha256(path.join(copy, db.path)), db.sha256);
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
    for (const [name, which] of [
      ["vm-revoke-sync", "create"],
      ["vm-on-destroy-rollback", "delete"],
    ] as const) {
      const result = await runCaptured(deployment, user, name, which);
      assert.equal(result.code, 0, `${name}: ${result.stderr}`);
    }
    assert.ok(!fs.readFileSync(authorizedKeysFile(user), "utf8").includes("plex-migrate-sync"));
    assert.equal(fakeVm.serviceActive("plexmediaserver"), true);
  });

  it("a user without a sudo rule gets a message that names the fix (exit 126), and nothing runs", async () => {
    const user = sshd.addUser({ sudo: false });
    const preflight = command(rootDeployment, "vm-preflight");
    const { remoteCommandLine } = require("../../lib/source-vm/commands");
    const result = await sshd.run(
      user,
      remoteCommandLine("preflight", { user, sudo: true }),
      preflight.stdin,
    );
    assert.equal(result.code, 126);
    assert.match(
      result.stderr,
      new RegExp(
        `the VM user ${user} needs passwordless sudo .*"${user} ALL=\\(root\\) NOPASSWD: ALL"`,
      ),
    );
  });

  it("why settings travel on stdin: sshd drops environment variables the client sends", () => {
    const result = spawnSync(
      "ssh",
      [
        "-i",
        path.join(sshd.dir, "client_key"),
        "-p",
        String(sshd.port),
        "-F",
        "/dev/null",
        "-o",
        `UserKnownHostsFile=${path.join(sshd.dir, "known_hosts")}`,
        "-o",
        "BatchMode=yes",
        "-o",
        "SetEnv=PLEX_MIGRATE_WORK_DIR=/elsewhere",
        `root@${sshd.host}`,
        'printf "%s" "${PLEX_MIGRATE_WORK_DIR:-unset}"',
      ],
      { encoding: "utf8" },
    );
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, "unset");
  });
});
