/**
 * Runs both ends of the Plex transfer on this machine, with the real scripts: the VM script's
 * `archive` and `serve` steps (scripts/plex-migrate-source.sh, in rehearsal mode, on a local data
 * directory) and the init container's scripts/plex-init.sh into a local stand-in for /config.
 * Used by the transfer tests and `npm run bench:transfer`.
 */
import { spawn, type ChildProcess } from "child_process";
import * as fs from "fs";
import { freePort } from "../net";
import * as path from "path";
import { SCRIPT_PATH as SOURCE_SCRIPT, servedUrl } from "../source-vm/commands";
import { parseStepOutput, type ArchiveResult, type ServeResult } from "../source-vm/outputs";
import { INIT_SCRIPT_PATH } from "./init-script";

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

/** Settings of plex-init.sh (its environment variables), see the script's header. */
export interface PlexInitEnv {
  PLEX_CONFIG_DIR: string;
  PLEX_ARCHIVE_URL?: string;
  PLEX_ARCHIVE_URL_FILE?: string;
  PLEX_ARCHIVE_SHA256?: string;
  PLEX_ARCHIVE_BYTES?: string;
  PLEX_ARCHIVE_FORMAT?: string;
  PLEX_LIBRARY_BYTES?: string;
  PLEX_UID?: string;
  PLEX_GID?: string;
  PLEX_INIT_RETRIES?: string;
  PLEX_INIT_RETRY_DELAY?: string;
  PLEX_INIT_STALL_SECONDS?: string;
  PLEX_INIT_CONNECT_TIMEOUT?: string;
  PLEX_INIT_MAX_RATE?: string;
  PLEX_INIT_INSTALL_TOOLS?: string;
  PLEX_INIT_TMPDIR?: string;
}

export interface PlexInitOptions extends Omit<StartOptions, "env"> {
  /** The shell that runs the script. @default "sh" (dash here, busybox ash in alpine) */
  shell?: string[];
  /** PATH for the script. @default this process's PATH */
  path?: string;
  /** The script to run. @default scripts/plex-init.sh */
  script?: string;
}

/** Starts plex-init.sh with exactly `env` (plus PATH). */
export function startPlexInit(env: PlexInitEnv, options: PlexInitOptions = {}): RunningProcess {
  const [shell, ...shellArgs] = options.shell ?? ["sh"];
  const clean: NodeJS.ProcessEnv = { PATH: options.path ?? process.env.PATH ?? "/usr/bin:/bin" };
  for (const [key, value] of Object.entries(env)) if (value !== undefined) clean[key] = value;
  return startProcess(shell, [...shellArgs, options.script ?? INIT_SCRIPT_PATH], {
    ...options,
    env: clean,
  });
}

export interface LocalSourceOptions {
  /** The Plex data directory (the folder holding Preferences.xml); only read. */
  dataDir: string;
  /** Work directory of the VM script (archive, serve state, migration log). */
  workDir: string;
  /** auto | zstd | pigz | gzip | none. @default auto */
  compression?: string;
  /** Serving token (>= 22 of [A-Za-z0-9_-]). */
  token: string;
  port: number;
  /** The server exits by itself after this long. @default 600 */
  lifetimeSeconds?: number;
}

/** The VM side on this machine: `plex-migrate-source.sh archive|serve|stop-serving`. */
export class LocalSource {
  constructor(readonly options: LocalSourceOptions) {}

  private env(): NodeJS.ProcessEnv {
    const o = this.options;
    return {
      PATH: process.env.PATH,
      LANG: "C.UTF-8",
      PLEX_MIGRATE_WORK_DIR: o.workDir,
      PLEX_MIGRATE_DATA_DIR: o.dataDir,
      PLEX_MIGRATE_REHEARSAL: "1",
      PLEX_MIGRATE_TAUTULLI_SERVICE: "",
      PLEX_MIGRATE_TAUTULLI_DB: "",
      PLEX_MIGRATE_COMPRESSION: o.compression ?? "auto",
      PLEX_MIGRATE_SERVE_ADDRESS: "127.0.0.1",
      PLEX_MIGRATE_SERVE_PORT: String(o.port),
      PLEX_MIGRATE_SERVE_LIFETIME_SECONDS: String(o.lifetimeSeconds ?? 600),
      PLEX_MIGRATE_SERVE_TOKEN: o.token,
    };
  }

  private async step(step: string): Promise<string> {
    const result = await startProcess("bash", [SOURCE_SCRIPT, step], { env: this.env() }).done;
    if (result.code !== 0) {
      throw new Error(
        `plex-migrate-source.sh ${step} failed (exit ${result.code}): ${result.stderr.trim().split("\n").slice(-3).join(" | ")}`,
      );
    }
    return result.stdout;
  }

  /** Archives the data directory (tar | compressor | tee file | sha256sum). */
  async archive(): Promise<ArchiveResult> {
    return parseStepOutput("archive", await this.step("archive"));
  }

  /** Starts (or restarts) the archive server; resolves once it answers. */
  async serve(): Promise<ServeResult> {
    return parseStepOutput("serve", await this.step("serve"));
  }

  /** Stops the server and removes the archive. */
  async stopServing(): Promise<void> {
    await this.step("stop-serving");
  }

  /** pid of the running archive server, if any. */
  serverPid(): number | undefined {
    try {
      const pid = Number(
        fs.readFileSync(path.join(this.options.workDir, "serve", "server.pid"), "utf8"),
      );
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Path of the archive file on the "VM". */
  archiveFile(archive: ArchiveResult): string {
    return archive.archive.file;
  }

  url(archive: ArchiveResult): string {
    return servedUrl("127.0.0.1", this.options.port, this.options.token, archive.archive.name);
  }
}
