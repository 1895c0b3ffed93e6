/**
 * A real OpenSSH server (Debian's /usr/sbin/sshd) on a loopback address, for running the exact
 * command lines and stdin that SourceVm gives `remote.Command`. Everything lives in a temp dir:
 * generated host and client keys, the config, authorized_keys per user. Optional test users (with
 * an optional passwordless-sudo drop-in) are created on the machine and removed by `stop()`.
 */
import { spawn, spawnSync, ChildProcess } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { runProcess, StepRun } from "./fake-vm";

export const SSHD = "/usr/sbin/sshd";
export const SSH_HOST = "127.0.0.2";

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

function check(command: string, args: string[], input?: string): string {
  const result = spawnSync(command, args, { encoding: "utf8", input });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed (${result.status}): ${result.stderr}`);
  }
  return result.stdout;
}

async function freeLoopbackPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(
  host: string,
  port: number,
  sshd: ChildProcess,
  log: () => string,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (sshd.exitCode !== null) throw new Error(`sshd exited (${sshd.exitCode}): ${log()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, host);
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sshd did not listen on ${host}:${port}: ${log()}`);
}

export async function startSshd(options: SshServerOptions = {}): Promise<SshServer> {
  if (!fs.existsSync(SSHD)) {
    throw new Error(
      `${SSHD} is missing: install openssh-server (scripts/ensure-test-tools.sh does)`,
    );
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-sshd-"));
  const keysDir = path.join(dir, "authorized_keys");
  fs.mkdirSync(keysDir);
  // sshd reads authorized_keys as the logging-in user: let other users through to their file.
  fs.chmodSync(dir, 0o711);
  fs.chmodSync(keysDir, 0o755);
  check("ssh-keygen", [
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    "plex-migrate-test-host",
    "-f",
    path.join(dir, "host_key"),
  ]);
  check("ssh-keygen", [
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    "plex-migrate-test-client",
    "-f",
    path.join(dir, "client_key"),
  ]);
  const clientPublic = fs.readFileSync(path.join(dir, "client_key.pub"), "utf8");
  const hostPublicKey = fs
    .readFileSync(path.join(dir, "host_key.pub"), "utf8")
    .trim()
    .split(" ")
    .slice(0, 2)
    .join(" ");
  fs.writeFileSync(path.join(keysDir, "root"), clientPublic);
  const port = await freeLoopbackPort(SSH_HOST);
  fs.writeFileSync(path.join(dir, "known_hosts"), `[${SSH_HOST}]:${port} ${hostPublicKey}\n`);

  const config = [
    `ListenAddress ${SSH_HOST}:${port}`,
    `HostKey ${path.join(dir, "host_key")}`,
    `PidFile ${path.join(dir, "sshd.pid")}`,
    `AuthorizedKeysFile ${keysDir}/%u`,
    "PubkeyAuthentication yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    "StrictModes no",
    "PermitRootLogin prohibit-password",
    // Ubuntu's default: variables sent by the client are dropped (no AcceptEnv for ours).
    "AcceptEnv LANG LC_*",
    "LogLevel VERBOSE",
    ...(options.sessionPath ? [`SetEnv PATH=${options.sessionPath}`] : []),
  ];
  fs.writeFileSync(path.join(dir, "sshd_config"), `${config.join("\n")}\n`);
  // sshd insists on its privilege-separation directory; create it only if missing, remove it after.
  const createdRunDir = !fs.existsSync("/run/sshd");
  if (createdRunDir) fs.mkdirSync("/run/sshd", { mode: 0o755 });
  check(SSHD, ["-t", "-f", path.join(dir, "sshd_config")]);

  let logText = "";
  const sshd = spawn(SSHD, ["-D", "-e", "-f", path.join(dir, "sshd_config")], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  sshd.stdout!.on("data", (d: Buffer) => (logText += d.toString()));
  sshd.stderr!.on("data", (d: Buffer) => (logText += d.toString()));
  await waitForPort(SSH_HOST, port, sshd, () => logText);

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
    `${user}@${SSH_HOST}`,
    "--",
    command,
  ];

  return {
    host: SSH_HOST,
    port,
    privateKey: fs.readFileSync(path.join(dir, "client_key"), "utf8"),
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
      fs.writeFileSync(path.join(keysDir, user), clientPublic, { mode: 0o644 });
      if (sudo) {
        const file = `/etc/sudoers.d/${user}`;
        const securePath = [
          ...(options.sudoPathPrefix ?? []),
          "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ].join(":");
        const rule = `Defaults:${user} secure_path="${securePath}"\n${user} ALL=(root) NOPASSWD: ALL\n`;
        check("visudo", ["-c", "-q", "-f", "-"], rule);
        fs.writeFileSync(file, rule, { mode: 0o440 });
        sudoers.push(file);
      }
      return user;
    },
    async stop() {
      for (const file of sudoers) fs.rmSync(file, { force: true });
      sshd.kill("SIGTERM");
      if (sshd.exitCode === null) await new Promise((r) => sshd.once("exit", r));
      for (const user of users) spawnSync("userdel", [user]);
      if (createdRunDir) fs.rmSync("/run/sshd", { recursive: true, force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
