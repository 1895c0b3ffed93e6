/**
 * A real OpenSSH server (Debian's /usr/sbin/sshd) on a loopback address, for running the exact
 * command lines and stdin that SourceVm gives `remote.Command`: the loopback sshd of
 * lib/plex/local-sync.ts plus a client key every user logs in with and its known_hosts, in the
 * server's temp dir. Optional test users (with an optional passwordless-sudo drop-in) are created
 * on the machine and removed by `stop()`.
 */
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { check, generateSshKey, startLoopbackSshd } from "../../lib/plex/local-sync";
import { runProcess, StepRun } from "./fake-vm";

export { SSHD, LOOPBACK_VM_HOST as SSH_HOST } from "../../lib/plex/local-sync";

export interface SshServer {
  host: string;
  port: number;
  /** The client private key (OpenSSH format) every user logs in with. */
  privateKey: string;
  /** The server's public host key line ("ssh-ed25519 AAAA..."). */
  hostPublicKey: string;
  dir: string;
  /** ssh `user@host -- command` with `stdin`, host key checked against the generated key. */
  run(user: string, command: string, stdin?: string): Promise<StepRun>;
  runSync(
    user: string,
    command: string,
    stdin?: string,
  ): { code: number; stdout: string; stderr: string };
  /** Creates a Unix user that may log in with the client key; `sudo` adds a NOPASSWD drop-in. */
  addUser(options: { sudo: boolean }): string;
  stop(): Promise<void>;
}

export interface SshServerOptions {
  /** PATH of the sessions (sshd `SetEnv`), e.g. with a fake VM's tools first. */
  sessionPath?: string;
  /** Directories put first in sudo's secure_path for the test users. */
  sudoPathPrefix?: string[];
}

function checkWithInput(command: string, args: string[], input: string): void {
  const result = spawnSync(command, args, { encoding: "utf8", input });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed (${result.status}): ${result.stderr}`);
  }
}

export async function startSshd(options: SshServerOptions = {}): Promise<SshServer> {
  const server = await startLoopbackSshd({ sessionPath: options.sessionPath });
  const { dir, host, port, hostPublicKey } = server;
  const client = generateSshKey(dir, "client_key");
  const clientPublic = `${client.publicKey}\n`;
  fs.writeFileSync(server.authorizedKeysFile("root"), clientPublic);
  fs.writeFileSync(path.join(dir, "known_hosts"), `[${host}]:${port} ${hostPublicKey}\n`);

  const users: string[] = [];
  const sudoers: string[] = [];
  const sshArgs = (user: string, command: string) => [
    "-i",
    path.join(dir, "client_key"),
    "-p",
    String(port),
    "-o",
    `UserKnownHostsFile=${path.join(dir, "known_hosts")}`,
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "LogLevel=ERROR",
    "-F",
    "/dev/null",
    `${user}@${host}`,
    "--",
    command,
  ];

  return {
    host,
    port,
    privateKey: client.privateKey,
    hostPublicKey,
    dir,
    run: (user, command, stdin) => runProcess("ssh", sshArgs(user, command), { stdin }),
    runSync(user, command, stdin) {
      const result = spawnSync("ssh", sshArgs(user, command), {
        input: stdin ?? "",
        encoding: "utf8",
      });
      return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
    },
    addUser({ sudo }) {
      const user = `pmtest${crypto.randomBytes(3).toString("hex")}`;
      check("useradd", [
        "--system",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/bin/bash",
        user,
      ]);
      users.push(user);
      // "*" rather than useradd's "!": sshd without PAM treats "!" as a locked account.
      check("usermod", ["-p", "*", user]);
      fs.writeFileSync(server.authorizedKeysFile(user), clientPublic, { mode: 0o644 });
      if (sudo) {
        const file = `/etc/sudoers.d/${user}`;
        const securePath = [
          ...(options.sudoPathPrefix ?? []),
          "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ].join(":");
        const rule = `Defaults:${user} secure_path="${securePath}"\n${user} ALL=(root) NOPASSWD: ALL\n`;
        checkWithInput("visudo", ["-c", "-q", "-f", "-"], rule);
        fs.writeFileSync(file, rule, { mode: 0o440 });
        sudoers.push(file);
      }
      return user;
    },
    async stop() {
      for (const file of sudoers) fs.rmSync(file, { force: true });
      await server.stop();
      for (const user of users) spawnSync("userdel", [user]);
    },
  };
}
