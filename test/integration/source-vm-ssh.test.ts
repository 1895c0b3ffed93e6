/**
 * SourceVm end to end over a real OpenSSH server (test/support/sshd.ts, Debian's sshd on
 * 127.0.0.2): the program runs under Pulumi mocks, and each remote.Command it registers is executed
 * exactly as @pulumi/command would, its `create` command line and `stdin` sent through ssh to the
 * fake VM (test/support/fake-vm). The step outputs SourceVm parses are the real ones. Proves the
 * quoting, the settings travelling on stdin (sshd drops client environment without AcceptEnv),
 * sudo for a non-root user, and the destroy hooks.
 */
import { strict as assert } from "assert";
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import type {
  ArchiveSourceVm as SourceVm,
  ArchiveSourceVmArgs as SourceVmArgs,
} from "../../components/archive-source-vm";
import { Registration, runWithMocks, unwrap, unwrapSecrets } from "../support/pulumi-mocks";
import { createFakeVm, FakeVm, processesHolding } from "../support/fake-vm";
import { SshServer, startSshd } from "../support/sshd";

const CMD = "command:remote:Command";

interface Deployment {
  vm: SourceVm;
  registrations: Registration[];
  /** Names of the commands run over ssh, in order. */
  ran: string[];
}

describe("SourceVm over a real sshd (OpenSSH on 127.0.0.2, fake VM behind it)", function () {
  this.timeout(240_000);
  let fakeVm: FakeVm;
  let sshd: SshServer;
  let rootDeployment: Deployment;

  before(async () => {
    fakeVm = await createFakeVm({ linger: 1 });
    sshd = await startSshd({
      sessionPath: fakeVm.path,
      sudoPathPrefix: [fakeVm.plexBinDir, fakeVm.binDir],
    });
  });
  after(async () => {
    await sshd?.stop();
    await fakeVm?.cleanup();
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
      archiveExcludes: [],
      archiveCompression: "auto",
      serve: { ...s.serve, host: "127.0.0.1" },
      keepArchive: false,
      rollbackOnDestroy: true,
    };
  }

  /** `pulumi up` of a SourceVm: each command with a create runs over ssh as the engine would. */
  async function deploy(user: string): Promise<Deployment> {
    const ran: string[] = [];
    let vm: SourceVm | undefined;
    const { registrations } = await runWithMocks(
      () => {
        const { ArchiveSourceVm: SourceVm } = require("../../components/archive-source-vm");
        vm = new SourceVm("vm", args(user));
        vm!.stopServingAfter([]);
        return {};
      },
      {
        outputs: {
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
            // The stop-serving step waits for the Plex release and the import: the test runs it later.
            if (!inputs.create || registration.name === "vm-stop-serving")
              return { stdout: "", stderr: "" };
            const result = sshd.runSync(user, inputs.create, inputs.stdin);
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
    return { vm: vm!, registrations, ran };
  }

  const command = (deployment: Deployment, name: string) => {
    const found = deployment.registrations.find((r) => r.type === CMD && r.name === name);
    assert.ok(found, name);
    return unwrapSecrets(found.inputs) as { create?: string; delete?: string; stdin?: string };
  };

  async function download(url: string): Promise<string> {
    const response = await fetch(url);
    assert.equal(
      response.status,
      200,
      `GET ${new URL(url).pathname.replace(/^\/[^/]+/, "/<token>")}`,
    );
    return crypto
      .createHash("sha256")
      .update(Buffer.from(await response.arrayBuffer()))
      .digest("hex");
  }

  it("as root: preflight, stop, archive and serve run through sshd in order; the outputs are the VM's", async () => {
    rootDeployment = await deploy("root");
    assert.deepEqual(rootDeployment.ran, ["vm-preflight", "vm-stop", "vm-archive", "vm-serve"]);
    const vm = rootDeployment.vm;
    assert.equal((await unwrap(vm.plexVersion)).value, fakeVm.manifest.plexVersion);
    assert.ok((await unwrap(vm.libraryBytes)).value >= fakeVm.manifest.bytes);
    assert.equal((await unwrap(vm.databasesOk)).value, true);
    assert.deepEqual((await unwrap(vm.mediaRoots)).value, fakeVm.manifest.mediaRoots);
    assert.equal(fakeVm.serviceActive("plexmediaserver"), false);
    assert.deepEqual(processesHolding(fakeVm.dataDir), []);

    const archiveUrl = await unwrap(vm.archiveUrl);
    assert.equal(archiveUrl.secret, true);
    const snapshotUrl = await unwrap(vm.tautulliSnapshotUrl);
    assert.equal(snapshotUrl.secret, true);
    assert.equal(await download(archiveUrl.value), (await unwrap(vm.archiveSha256)).value);
    assert.equal(
      await download(snapshotUrl.value),
      (await unwrap(vm.tautulliSnapshotSha256)).value,
    );
    assert.equal((await unwrap(vm.archiveFormat)).value, "tar.zst");
    const token = new URL(archiveUrl.value).pathname.split("/")[1];
    const log = fs.readFileSync(path.join(fakeVm.workDir, "migration.log"), "utf8");
    assert.ok(!log.includes(token), "token not in the VM's log");
  });

  it("the captured stop-serving command stops the server and removes the archive", async () => {
    const stopServing = command(rootDeployment, "vm-stop-serving");
    const result = await sshd.run("root", stopServing.create!, stopServing.stdin);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(!fs.existsSync(path.join(fakeVm.workDir, "archive")));
    const archiveUrl = (await unwrap(rootDeployment.vm.archiveUrl)).value;
    await assert.rejects(fetch(archiveUrl), "server gone");
  });

  it("pulumi destroy's hooks run stop-serving and (rollbackOnDestroy) rollback through sshd", async () => {
    for (const name of ["vm-on-destroy-stop-serving", "vm-on-destroy-rollback"]) {
      const hook = command(rootDeployment, name);
      assert.equal(hook.create, undefined);
      const result = await sshd.run("root", hook.delete!, hook.stdin);
      assert.equal(result.code, 0, `${name}: ${result.stderr}`);
    }
    assert.equal(fakeVm.serviceActive("plexmediaserver"), true);
    assert.equal(fakeVm.serviceActive("tautulli"), true);
    assert.equal(fakeVm.serviceEnabled("plexmediaserver"), "enabled");
  });

  it("as a non-root user, every step goes through sudo -n and gives the same archive, byte for byte", async function () {
    if (!fs.existsSync("/usr/bin/sudo")) {
      throw new Error(
        "sudo is not installed: install it (apt-get install sudo; scripts/ensure-test-tools.sh)",
      );
    }
    const user = sshd.addUser({ sudo: true });
    const deployment = await deploy(user);
    assert.deepEqual(deployment.ran, ["vm-preflight", "vm-stop", "vm-archive", "vm-serve"]);
    assert.match(command(deployment, "vm-stop").create!, /exec sudo -n -- bash -s -- stop/);
    assert.equal(
      (await unwrap(deployment.vm.archiveSha256)).value,
      (await unwrap(rootDeployment.vm.archiveSha256)).value,
    );
    assert.equal(
      await download((await unwrap(deployment.vm.archiveUrl)).value),
      (await unwrap(deployment.vm.archiveSha256)).value,
    );
    // The steps ran as root: the archive dir is root's, not the SSH user's.
    assert.equal(fs.statSync(path.join(fakeVm.workDir, "archive")).uid, 0);
    const stopServing = command(deployment, "vm-stop-serving");
    assert.equal((await sshd.run(user, stopServing.create!, stopServing.stdin)).code, 0);
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
