/**
 * A fake Plex VM in a temp dir, for running scripts/plex-migrate-source.sh for real: a generated
 * Plex data dir at the Debian package's path (real SQLite databases, WAL file, Preferences.xml), a
 * tautulli.db in WAL mode with rows only in its -wal, and fake `systemctl`, `dpkg-query` and
 * `Plex SQLite` on PATH that behave like the real ones (see bin/). The "services" are real
 * processes that hold their database open, so "wait until Plex let go of its files" is real too.
 */
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import Database from "better-sqlite3";
import { SCRIPT_PATH, SourceScriptSettings, SourceStep } from "../../../lib/source-vm/commands";
import {
  DEFAULT_PLEX_VERSION,
  generatePlexTree,
  PlexTreeManifest,
  PlexTreeOptions,
} from "../../../lib/samples/plex-tree";

export const FAKE_BIN_SOURCE = path.join(__dirname, "bin");
export const PLEX_DATA_SUBDIR =
  "var/lib/plexmediaserver/Library/Application Support/Plex Media Server";

export interface FakeVmOptions {
  /** Version dpkg-query reports; undefined = Plex not installed. @default DEFAULT_PLEX_VERSION */
  plexVersion?: string | null;
  /** Start the fake plexmediaserver / tautulli services. @default true */
  servicesRunning?: boolean;
  /** Create the tautulli unit. @default true */
  tautulliService?: boolean;
  /** Seconds a service keeps its files open after SIGTERM. @default 1 */
  linger?: number;
  /** Options of the generated Plex tree (small by default). */
  tree?: PlexTreeOptions;
  /** Tautulli rows in the main file / only in the -wal. @default 40 / 7 */
  tautulliRows?: number;
  tautulliWalRows?: number;
}

export interface StepRun {
  code: number;
  stdout: string;
  stderr: string;
  /** The JSON summary (last stdout line), when there is one. */
  json?: Record<string, unknown>;
}

export interface FakeVm {
  root: string;
  /** Directory with the fake systemctl and dpkg-query. */
  binDir: string;
  /** Directory with the fake "Plex SQLite". */
  plexBinDir: string;
  stateDir: string;
  dataDir: string;
  workDir: string;
  tautulliDb: string;
  /** Tautulli's config.ini (next to tautulli.db, named by --config in the unit's ExecStart). */
  tautulliConfig: string;
  tautulliRows: number;
  manifest: PlexTreeManifest;
  /** Settings for lib/source-vm/commands.ts. */
  settings: SourceScriptSettings;
  /** PATH with the fakes first. */
  path: string;
  /** Environment for a local run of the script: PATH plus PLEX_MIGRATE_* settings. */
  env(extra?: Record<string, string | undefined>): NodeJS.ProcessEnv;
  /** Runs `bash scripts/plex-migrate-source.sh <step>` with env(extra). */
  run(step: SourceStep | string, extra?: Record<string, string | undefined>): Promise<StepRun>;
  /** Runs `bash -s -- <step>` with `stdin` (a bundle), with only PATH set. */
  runBundle(step: SourceStep, stdin: string): Promise<StepRun>;
  serviceActive(unit: string): boolean;
  serviceEnabled(unit: string): string;
  startService(unit: string): void;
  systemctlCalls(): string[];
  plexSqliteCalls(): string[];
  cleanup(): Promise<void>;
}

/** Spawns a process and collects its output (never throws on a non-zero exit). */
export function runProcess(
  file: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; stdin?: string; cwd?: string } = {},
): Promise<StepRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: options.env,
      cwd: options.cwd,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.on("error", reject);
    child.on("close", (code) => {
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      resolve({ code: code ?? -1, stdout, stderr, json: lastJson(stdout) });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.stdin ?? "");
  });
}

function lastJson(stdout: string): Record<string, unknown> | undefined {
  const last = stdout.trim().split("\n").pop() ?? "";
  try {
    const value = JSON.parse(last);
    return value && typeof value === "object" ? value : undefined;
  } catch {
    return undefined;
  }
}

/** A tautulli.db in WAL mode whose last `walRows` rows exist only in its -wal (Tautulli running). */
export function writeTautulliDb(file: string, rows: number, walRows: number): void {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "fake-tautulli-"));
  try {
    const db = new Database(path.join(scratch, "tautulli.db"));
    try {
      db.pragma("journal_mode = WAL");
      db.pragma("wal_autocheckpoint = 0");
      db.exec(
        "CREATE TABLE session_history (id INTEGER PRIMARY KEY AUTOINCREMENT, started INTEGER, stopped INTEGER, user_id INTEGER, user TEXT, rating_key INTEGER, title TEXT)",
      );
      const insert = db.prepare(
        "INSERT INTO session_history (started, stopped, user_id, user, rating_key, title) VALUES (?, ?, ?, ?, ?, ?)",
      );
      const add = (from: number, count: number) =>
        db.transaction(() => {
          for (let i = from; i < from + count; i++) {
            insert.run(
              1_700_000_000 + i * 3600,
              1_700_000_000 + i * 3600 + 1800,
              1 + (i % 3),
              `user${i % 3}`,
              1000 + i,
              `Title ${i}`,
            );
          }
        })();
      add(0, rows);
      db.pragma("wal_checkpoint(TRUNCATE)");
      add(rows, walRows);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.copyFileSync(path.join(scratch, "tautulli.db"), file);
      fs.copyFileSync(path.join(scratch, "tautulli.db-wal"), `${file}-wal`);
    } finally {
      db.close();
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

export async function createFakeVm(options: FakeVmOptions = {}): Promise<FakeVm> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-fake-vm-"));
  const binDir = path.join(root, "bin");
  const plexBinDir = path.join(root, "plex-bin");
  const stateDir = path.join(root, "state");
  const dataDir = path.join(root, PLEX_DATA_SUBDIR);
  const workDir = path.join(root, "var/lib/plex-migrate");
  const tautulliDb = path.join(root, "opt/Tautulli/tautulli.db");
  fs.mkdirSync(binDir);
  fs.mkdirSync(plexBinDir);
  for (const tool of ["systemctl", "dpkg-query"]) {
    fs.copyFileSync(path.join(FAKE_BIN_SOURCE, tool), path.join(binDir, tool));
    fs.chmodSync(path.join(binDir, tool), 0o755);
  }
  fs.copyFileSync(path.join(FAKE_BIN_SOURCE, "Plex SQLite"), path.join(plexBinDir, "Plex SQLite"));
  fs.chmodSync(path.join(plexBinDir, "Plex SQLite"), 0o755);
  fs.mkdirSync(path.join(stateDir, "dpkg"), { recursive: true });
  fs.mkdirSync(path.join(stateDir, "systemd"), { recursive: true });

  const plexVersion =
    options.plexVersion === undefined ? DEFAULT_PLEX_VERSION : options.plexVersion;
  if (plexVersion !== null) {
    fs.writeFileSync(path.join(stateDir, "dpkg", "plexmediaserver"), `installed ${plexVersion}\n`);
  }
  fs.mkdirSync(path.dirname(dataDir), { recursive: true });
  const manifest = await generatePlexTree(dataDir, {
    metadataFiles: 300,
    largeFiles: 1,
    largeFileBytes: 1024 * 1024,
    plexVersion: plexVersion ?? DEFAULT_PLEX_VERSION,
    ...options.tree,
  });
  const tautulliRows = options.tautulliRows ?? 40;
  const tautulliWalRows = options.tautulliWalRows ?? 7;
  writeTautulliDb(tautulliDb, tautulliRows, tautulliWalRows);
  const tautulliConfig = path.join(path.dirname(tautulliDb), "config.ini");
  fs.writeFileSync(
    tautulliConfig,
    "[General]\nhttp_port = 8181\nhttp_host = 0.0.0.0\napi_key = 0123456789abcdef0123456789abcdef\n" +
      "[PMS]\npms_ip = 127.0.0.1\npms_port = 32400\npms_token = fake-tautulli-pms-token\n",
  );

  const addUnit = (unit: string, holds: string) => {
    const dir = path.join(stateDir, "systemd", unit);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "enabled"), "enabled\n");
    fs.writeFileSync(path.join(dir, "holds"), holds);
    fs.writeFileSync(path.join(dir, "linger"), String(options.linger ?? 1));
  };
  addUnit("plexmediaserver", manifest.libraryDb);
  if (options.tautulliService ?? true) {
    addUnit("tautulli", tautulliDb);
    const tautulliDir = path.dirname(tautulliDb);
    fs.writeFileSync(
      path.join(stateDir, "systemd", "tautulli", "exec"),
      `/usr/bin/python3 ${tautulliDir}/Tautulli.py --config ${tautulliConfig} --datadir ${tautulliDir} --quiet --daemon --nolaunch\n`,
    );
  }

  const searchPath = [plexBinDir, binDir, process.env.PATH ?? "/usr/bin:/bin"].join(":");
  const settings: SourceScriptSettings = {
    workDir,
    plexDataDir: dataDir,
    plexService: "plexmediaserver",
    tautulliService: "tautulli",
    tautulliDbPath: tautulliDb,
  };
  const systemctl = (...args: string[]) =>
    spawnSync(path.join(binDir, "systemctl"), args, { encoding: "utf8" });

  const vm: FakeVm = {
    root,
    binDir,
    plexBinDir,
    stateDir,
    dataDir,
    workDir,
    tautulliDb,
    tautulliConfig,
    tautulliRows: tautulliRows + tautulliWalRows,
    manifest,
    settings,
    path: searchPath,
    env(extra = {}) {
      const env: NodeJS.ProcessEnv = {
        PATH: searchPath,
        HOME: root,
        PLEX_MIGRATE_WORK_DIR: workDir,
        PLEX_MIGRATE_DATA_DIR: dataDir,
        PLEX_MIGRATE_TAUTULLI_DB: tautulliDb,
      };
      for (const [key, value] of Object.entries(extra)) {
        if (value === undefined) delete env[key];
        else env[key] = value;
      }
      return env;
    },
    run(step, extra) {
      return runProcess("bash", [SCRIPT_PATH, step], { env: vm.env(extra) });
    },
    runBundle(step, stdin) {
      return runProcess("bash", ["-s", "--", step], {
        env: { PATH: searchPath, HOME: root },
        stdin,
      });
    },
    serviceActive: (unit) => systemctl("is-active", "--quiet", unit).status === 0,
    serviceEnabled: (unit) => systemctl("is-enabled", unit).stdout.trim(),
    startService(unit) {
      const result = systemctl("start", unit);
      if (result.status !== 0) throw new Error(`fake systemctl start ${unit}: ${result.stderr}`);
    },
    systemctlCalls: () => readLines(path.join(stateDir, "systemctl.calls")),
    plexSqliteCalls: () => readLines(path.join(stateDir, "plex-sqlite.calls")),
    async cleanup() {
      for (const unit of fs.readdirSync(path.join(stateDir, "systemd"))) {
        const pidFile = path.join(stateDir, "systemd", unit, "pid");
        if (fs.existsSync(pidFile))
          killQuietly(Number(fs.readFileSync(pidFile, "utf8")), "SIGKILL");
      }
      // Lingering service processes (their trap's sleep) belong to the fake's process groups.
      for (const pid of processesHolding(root)) killQuietly(pid, "SIGKILL");
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  if (options.servicesRunning ?? true) {
    vm.startService("plexmediaserver");
    if (options.tautulliService ?? true) vm.startService("tautulli");
  }
  return vm;
}

function readLines(file: string): string[] {
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean) : [];
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  if (!Number.isInteger(pid) || pid <= 1) return;
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Pids (other than ours) with a file open under `dir`. */
export function processesHolding(dir: string): number[] {
  const pids = new Set<number>();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (fs.readlinkSync(`/proc/${entry}/fd/${fd}`).startsWith(`${dir}/`))
          pids.add(Number(entry));
      } catch {
        // closed meanwhile
      }
    }
  }
  return [...pids];
}
