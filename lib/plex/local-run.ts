/**
 * Runs both ends of the Plex library transfer on this machine, with the real parts: a real
 * OpenSSH server on a loopback address standing in for the VM's, the VM script's
 * `authorize-sync` / `revoke-sync` steps (scripts/plex-migrate-source.sh) putting the migration
 * key behind the same forced read-only rsync server, and scripts/plex-init.sh (warm and final
 * phases) pulling into a local stand-in for /config. Used by the transfer tests, the rehearsal
 * and `npm run bench:transfer`.
 */
import { spawn, type ChildProcess } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { freePort } from "../net";
import { check } from "./local-sync";
import {
  INIT_SCRIPT_PATH,
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
  PLEX_REQUIRED_BYTES?: string;
  PLEX_REQUIRED_INODES?: string;
  PLEX_UID?: string;
  PLEX_GID?: string;
  PLEX_SYNC_RETRIES?: string;
  PLEX_SYNC_RETRY_DELAY?: string;
  PLEX_SYNC_IO_TIMEOUT?: string;
  PLEX_SYNC_CONNECT_TIMEOUT?: string;
  PLEX_SYNC_MAX_RATE?: string;
  PLEX_SYNC_GENERATION?: string;
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
