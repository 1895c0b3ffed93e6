/**
 * The VM end of the library sync on this machine, with the real parts: a real OpenSSH server on
 * a loopback address standing in for the VM's, and the VM script's `authorize-sync` /
 * `revoke-sync` steps (scripts/plex-migrate-source.sh) putting a migration key behind the same
 * forced read-only rsync server (rrsync -ro) a VM runs. Used by the transfer tests, the
 * rehearsal and `npm run bench:transfer`.
 */
import { spawn, spawnSync, type ChildProcess } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { SCRIPT_PATH as SOURCE_SCRIPT } from "../source-vm/commands";
import { SYNC_HOST_ALIAS } from "./init-script";

/** Runs a command to its end and returns its stdout; throws with its stderr when it fails. */
export function check(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8" });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed (${result.status}): ${result.stderr}`);
  }
  return result.stdout;
}

/** An ED25519 key pair in OpenSSH format, made by ssh-keygen in `dir`. */
export function generateSshKey(
  dir: string,
  name: string,
): { privateKey: string; publicKey: string } {
  const file = path.join(dir, name);
  check("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", file]);
  return {
    privateKey: fs.readFileSync(file, "utf8"),
    publicKey: fs.readFileSync(`${file}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" "),
  };
}

export const SSHD = "/usr/sbin/sshd";
/** Loopback address of the stand-in VM (not 127.0.0.1, so nothing else listening there clashes). */
export const LOOPBACK_VM_HOST = "127.0.0.2";

export interface LoopbackSshd {
  host: string;
  port: number;
  /** The server's temp dir (config, host key, `authorized_keys/<user>`); removed by stop(). */
  dir: string;
  /** The server's public host key line ("ssh-ed25519 AAAA..."). */
  hostPublicKey: string;
  /** `AuthorizedKeysFile` of the given user (sshd's `%u` file in a temp dir). */
  authorizedKeysFile(user: string): string;
  /** Stops and starts sshd again on the same port (a VM reboot); `newHostKey` replaces its key. */
  restart(options?: { newHostKey?: boolean }): Promise<void>;
  /** Stops sshd (a VM that is down); {@link restart} brings it back. */
  halt(): Promise<void>;
  stop(): Promise<void>;
}

async function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
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

/**
 * A real sshd on {@link LOOPBACK_VM_HOST}, with authorized_keys files in its own temp dir (one
 * per user, `%u`), so the VM script's authorize-sync writes there instead of a real home.
 */
export async function startLoopbackSshd(
  options: { sessionPath?: string } = {},
): Promise<LoopbackSshd> {
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
  const hostKey = path.join(dir, "host_key");
  const makeHostKey = () => {
    fs.rmSync(hostKey, { force: true });
    fs.rmSync(`${hostKey}.pub`, { force: true });
    check("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "plex-migrate-vm", "-f", hostKey]);
    return fs.readFileSync(`${hostKey}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
  };
  let hostPublicKey = makeHostKey();
  const port = await freeLoopbackPort(LOOPBACK_VM_HOST);
  const config = [
    `ListenAddress ${LOOPBACK_VM_HOST}:${port}`,
    `HostKey ${hostKey}`,
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
  const configFile = path.join(dir, "sshd_config");
  fs.writeFileSync(configFile, `${config.join("\n")}\n`);
  // sshd insists on its privilege-separation directory; create it only if missing, remove it after.
  const createdRunDir = !fs.existsSync("/run/sshd");
  if (createdRunDir) fs.mkdirSync("/run/sshd", { mode: 0o755 });
  check(SSHD, ["-t", "-f", configFile]);

  let sshd: ChildProcess | undefined;
  let logText = "";
  const start = async () => {
    const child = spawn(SSHD, ["-D", "-e", "-f", configFile], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (d: Buffer) => (logText += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (logText += d.toString()));
    sshd = child;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`sshd exited (${child.exitCode}): ${logText}`);
      if (await portOpen(LOOPBACK_VM_HOST, port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`sshd did not listen on ${LOOPBACK_VM_HOST}:${port}: ${logText}`);
  };
  const halt = async () => {
    const child = sshd;
    sshd = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    // SIGTERM ends the listener; sessions already running are their own processes (as on a VM
    // going down they would be killed too, which the callers do explicitly when they need it).
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  };
  await start();
  return {
    host: LOOPBACK_VM_HOST,
    port,
    dir,
    get hostPublicKey() {
      return hostPublicKey;
    },
    authorizedKeysFile: (user) => path.join(keysDir, user),
    async restart(restartOptions = {}) {
      await halt();
      if (restartOptions.newHostKey) hostPublicKey = makeHostKey();
      await start();
    },
    halt,
    async stop() {
      await halt();
      if (createdRunDir) fs.rmSync("/run/sshd", { recursive: true, force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The known_hosts line plex-init.sh pins (it connects with `HostKeyAlias` {@link SYNC_HOST_ALIAS}). */
export function knownHostsLine(hostPublicKey: string): string {
  return `${SYNC_HOST_ALIAS} ${hostPublicKey}\n`;
}

export interface ScriptRun {
  code: number;
  stdout: string;
  stderr: string;
  /** The step's JSON line (the last line of stdout), parsed. */
  json: Record<string, unknown>;
}

/** The VM side on this machine: `plex-migrate-source.sh authorize-sync|revoke-sync` for real. */
export class LocalVmSync {
  constructor(
    readonly options: {
      dataDir: string;
      workDir: string;
      /** The account the key is authorized for (the sshd user plex-init.sh logs in as). */
      user: string;
      /** That user's authorized_keys file. */
      authorizedKeysFile: string;
      publicKey: string;
      allowedCidrs?: string[];
      /** Where the step looks for rrsync (colon-separated). @default the script's search list */
      rrsyncSearch?: string;
    },
  ) {}

  private async step(step: "authorize-sync" | "revoke-sync"): Promise<ScriptRun> {
    const o = this.options;
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      LANG: "C.UTF-8",
      PLEX_MIGRATE_WORK_DIR: o.workDir,
      PLEX_MIGRATE_DATA_DIR: o.dataDir,
      PLEX_MIGRATE_REHEARSAL: "1",
      PLEX_MIGRATE_SYNC_PUBLIC_KEY: o.publicKey,
      PLEX_MIGRATE_SYNC_ALLOWED_CIDRS: (o.allowedCidrs ?? []).join(","),
      PLEX_MIGRATE_SYNC_USER: o.user,
      PLEX_MIGRATE_SYNC_AUTHORIZED_KEYS: o.authorizedKeysFile,
      ...(o.rrsyncSearch ? { PLEX_MIGRATE_SYNC_RRSYNC_SEARCH: o.rrsyncSearch } : {}),
    };
    const result = spawnSync("bash", [SOURCE_SCRIPT, step], { env, encoding: "utf8" });
    if (result.status !== 0) {
      throw new Error(
        `plex-migrate-source.sh ${step} failed (exit ${result.status}): ${result.stderr.trim().split("\n").slice(-3).join(" | ")}`,
      );
    }
    const last = result.stdout.trim().split("\n").pop() ?? "{}";
    return { code: 0, stdout: result.stdout, stderr: result.stderr, json: JSON.parse(last) };
  }

  authorize(): Promise<ScriptRun> {
    return this.step("authorize-sync");
  }

  revoke(): Promise<ScriptRun> {
    return this.step("revoke-sync");
  }
}
