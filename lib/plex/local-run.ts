/**
 * Runs both ends of the Plex library transfer on this machine, with the real parts: a real
 * OpenSSH server on a loopback address standing in for the VM's, the VM script's
 * `authorize-sync` / `revoke-sync` steps (scripts/plex-migrate-source.sh) putting the migration
 * key behind the same forced read-only rsync server, and scripts/plex-init.sh (warm and final
 * phases) pulling into a local stand-in for /config. Used by the transfer tests, the rehearsal
 * and `npm run bench:transfer`.
 */
import { spawn, spawnSync, type ChildProcess } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { freePort } from "../net";
import { SCRIPT_PATH as SOURCE_SCRIPT } from "../source-vm/commands";
import {
  INIT_SCRIPT_PATH,
  SYNC_HOST_ALIAS,
  databaseLines,
  type DatabaseChecksum,
  type SyncPhase,
} from "./init-script";

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunningProcess {
  child: ChildProcess;
  done: Promise<ProcessResult>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Own process group, so the whole tree can be signalled with {@link killGroup}. */
  detached?: boolean;
  onStderrLine?: (line: string) => void;
  /** Written to the process's stdin, which is then closed. @default stdin is /dev/null */
  input?: string;
}

/** Starts a process, collecting its output; `done` resolves when it exits (never rejects). */
export function startProcess(
  command: string,
  args: string[],
  options: StartOptions = {},
): RunningProcess {
  const child = spawn(command, args, {
    env: options.env ?? process.env,
    cwd: options.cwd,
    detached: options.detached ?? false,
    stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  if (options.input !== undefined) {
    // A child that exits before reading all of stdin must not crash us with EPIPE.
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(options.input);
  }
  let stdout = "";
  let stderr = "";
  let partial = "";
  child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => {
    const text = chunk.toString();
    stderr += text;
    if (options.onStderrLine) {
      const lines = (partial + text).split("\n");
      partial = lines.pop() ?? "";
      lines.forEach(options.onStderrLine);
    }
  });
  const done = new Promise<ProcessResult>((resolve) => {
    child.on("error", (error) =>
      resolve({ code: null, signal: null, stdout, stderr: `${stderr}${error.message}` }),
    );
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

/** Sends `signal` to the process group of a child started with `detached: true`. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

export { freePort };

function check(command: string, args: string[]): string {
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
    "AcceptEnv LANG LC_*",
    "LogLevel VERBOSE",
    ...(options.sessionPath ? [`SetEnv PATH=${options.sessionPath}`] : []),
  ];
  const configFile = path.join(dir, "sshd_config");
  fs.writeFileSync(configFile, `${config.join("\n")}\n`);
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
    const result = await startProcess("bash", [SOURCE_SCRIPT, step], { env }).done;
    if (result.code !== 0) {
      throw new Error(
        `plex-migrate-source.sh ${step} failed (exit ${result.code}): ${result.stderr.trim().split("\n").slice(-3).join(" | ")}`,
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

/**
 * The Plex databases of a stopped data directory with their sha256, as the VM's stop step
 * measures them: every file of "Plug-in Support/Databases" whose name starts with
 * com.plexapp.plugins (the main files and any -wal/-shm left beside them).
 */
export function measureDatabases(dataDir: string): DatabaseChecksum[] {
  const relativeDir = "Plug-in Support/Databases";
  const dir = path.join(dataDir, relativeDir);
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter(
      (name) =>
        name.startsWith("com.plexapp.plugins.") && fs.statSync(path.join(dir, name)).isFile(),
    )
    .sort()
    .map((name) => {
      const content = fs.readFileSync(path.join(dir, name));
      return {
        path: `${relativeDir}/${name}`,
        sha256: crypto.createHash("sha256").update(content).digest("hex"),
        bytes: content.length,
      };
    });
}

/** Settings of plex-init.sh (its environment variables), see the script's header. */
export interface PlexSyncEnv {
  PLEX_SYNC_PHASE: SyncPhase | string;
  PLEX_CONFIG_DIR: string;
  PLEX_SYNC_HOST?: string;
  PLEX_SYNC_PORT?: string;
  PLEX_SYNC_USER?: string;
  PLEX_SYNC_KEY_FILE?: string;
  PLEX_SYNC_KNOWN_HOSTS?: string;
  PLEX_SYNC_DATABASES?: string;
  PLEX_SYNC_EXCLUDES?: string;
  PLEX_LIBRARY_BYTES?: string;
  PLEX_UID?: string;
  PLEX_GID?: string;
  PLEX_SYNC_RETRIES?: string;
  PLEX_SYNC_RETRY_DELAY?: string;
  PLEX_SYNC_IO_TIMEOUT?: string;
  PLEX_SYNC_CONNECT_TIMEOUT?: string;
  PLEX_SYNC_MAX_RATE?: string;
  PLEX_INIT_TMPDIR?: string;
}

export interface PlexInitOptions extends Omit<StartOptions, "env"> {
  /** The shell that runs the script. @default ["busybox", "sh"] (the image's shell) */
  shell?: string[];
  /** PATH for the script. @default this process's PATH */
  path?: string;
  /** The script to run. @default scripts/plex-init.sh */
  script?: string;
}

/** Starts plex-init.sh with exactly `env` (plus PATH). */
export function startPlexInit(env: PlexSyncEnv, options: PlexInitOptions = {}): RunningProcess {
  const [shell, ...shellArgs] = options.shell ?? ["busybox", "sh"];
  const clean: NodeJS.ProcessEnv = { PATH: options.path ?? process.env.PATH ?? "/usr/bin:/bin" };
  for (const [key, value] of Object.entries(env)) if (value !== undefined) clean[key] = value;
  return startProcess(shell, [...shellArgs, options.script ?? INIT_SCRIPT_PATH], {
    ...options,
    env: clean,
  });
}

/**
 * A PATH directory like the init image's: busybox applets for everything, plus the real rsync
 * and ssh (which the image has as packages). `extra` adds or replaces tools (e.g. a wrapper).
 */
export function imageLikePath(dir: string, extra: Record<string, string> = {}): string {
  fs.mkdirSync(dir, { recursive: true });
  const busybox = check("sh", ["-c", "command -v busybox"]).trim();
  const applets = ["busybox", ...check(busybox, ["--list"]).split("\n").filter(Boolean)];
  for (const applet of applets) {
    const link = path.join(dir, applet);
    if (!fs.existsSync(link)) fs.symlinkSync(busybox, link);
  }
  for (const tool of ["rsync", "ssh"]) {
    const real = check("sh", ["-c", `command -v ${tool}`]).trim();
    fs.rmSync(path.join(dir, tool), { force: true });
    fs.symlinkSync(real, path.join(dir, tool));
  }
  for (const [name, target] of Object.entries(extra)) {
    fs.rmSync(path.join(dir, name), { force: true });
    fs.symlinkSync(target, path.join(dir, name));
  }
  return dir;
}

/** Everything the pod side needs to reach the stand-in VM: a key, the pinned host key. */
export interface LocalSyncTarget {
  /** The Plex config volume stand-in (/config). */
  configDir: string;
  host: string;
  port: number;
  user: string;
  keyFile: string;
  knownHostsFile: string;
}

/** plex-init.sh's environment for one phase against a {@link LocalSyncTarget}. */
export function plexSyncEnv(
  phase: SyncPhase,
  target: LocalSyncTarget,
  extra: Partial<PlexSyncEnv> & { databases?: DatabaseChecksum[] } = {},
): PlexSyncEnv {
  const { databases, ...rest } = extra;
  return {
    PLEX_SYNC_PHASE: phase,
    PLEX_CONFIG_DIR: target.configDir,
    PLEX_SYNC_HOST: target.host,
    PLEX_SYNC_PORT: String(target.port),
    PLEX_SYNC_USER: target.user,
    PLEX_SYNC_KEY_FILE: target.keyFile,
    PLEX_SYNC_KNOWN_HOSTS: target.knownHostsFile,
    PLEX_UID: String(process.getuid?.() ?? 1000),
    PLEX_GID: String(process.getgid?.() ?? 1000),
    PLEX_SYNC_RETRY_DELAY: "0",
    ...(databases ? { PLEX_SYNC_DATABASES: databaseLines(databases) } : {}),
    ...rest,
  };
}
