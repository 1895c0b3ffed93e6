/**
 * The dress rehearsal: the whole migration on this machine, with the real pieces, on copies.
 *
 * It runs what `pulumi up` runs, minus the cluster, as named phases: the VM script's preflight
 * (through the same stdin bundle SourceVm sends over SSH, in rehearsal mode: no systemctl, no
 * dpkg), authorize-sync for a migration key generated here, the warm copy and, after the stop
 * step, the final sync: scripts/plex-init.sh pulling over a real sshd on loopback from the same
 * forced read-only rsync server a VM runs, into a temp directory standing in for the config
 * volume; a byte-for-byte comparison with the source, an embedded PostgreSQL, the migrations and
 * the Tautulli import of the stop step's snapshot. The given Plex directory and Tautulli database
 * are only read; checksums taken before and after prove it. The downtime projection counts only
 * what runs while Plex is stopped: the stop, the final sync and the pod's start.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { plexSyncEnv, startPlexInit, startProcess, type LocalSyncTarget } from "../plex/local-run";
import {
  LocalVmSync,
  generateSshKey,
  knownHostsLine,
  startLoopbackSshd,
  type LoopbackSshd,
} from "../plex/local-sync";
import { INIT_PLEX_DATA, type SyncPhase } from "../plex/init-script";
import { autoConfigSize, requiredConfigBytes, requiredConfigInodes } from "../plex/sizing";
import { startEmbeddedPostgres } from "../postgres/embedded";
import {
  offlineVerificationWarnings,
  OfflineVerification,
  verifyCopiedLibrary,
} from "../plex/verify-offline";
import { listMigrationNames, migrateUp } from "../postgres/migrator";
import type { ImportReport } from "../import/report";
import { runImport } from "../import/run-import";
import { REQUIRED_TAUTULLI_TABLES } from "../import/plan";
import { inspectSourceFile, SqliteSource } from "../import/sqlite-source";
import {
  loadScriptSources,
  scriptBundle,
  SourceScriptSettings,
  SourceStep,
  stepEnvironment,
} from "../source-vm/commands";
import { parseStepOutput, StepResults } from "../source-vm/outputs";
import { compareTrees, digestTree, generatePlexTree, sha256File } from "../samples/plex-tree";
import { generateTautulliDb } from "../samples/tautulli-db";

/** A step that ran a program which failed: which program, and its exit code. */
export class StepFailure extends Error {
  constructor(
    message: string,
    /** The step as the report names it. */
    readonly step: string,
    /** The program's path relative to the project (its header documents its exit codes). */
    readonly script: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = "StepFailure";
  }
}

/** A problem with what the user gave us: exit code 2, nothing was changed. */
export class RehearsalInputError extends Error {
  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(`${message}\nFix: ${fix}`);
    this.name = "RehearsalInputError";
  }
}

export interface RehearsalOptions {
  /** A Plex data directory (the folder holding Preferences.xml); read only. @default a generated sample */
  plexDir?: string;
  /** A tautulli.db (a `-wal` beside it is included); read only. @default a generated sample */
  tautulliDb?: string;
  /** Where the rehearsal folder is created (created if missing). @default the OS temp dir */
  workDir?: string;
  /** The rehearsal folder itself, already created by the caller. @default a new folder in workDir */
  rehearsalDir?: string;
  /** Keep the config-volume copy, the VM work dir and the PostgreSQL data dir. @default false */
  keep?: boolean;
  /** Network speed assumed between the VM and the cluster, for the downtime projection. @default 1000 */
  linkMbps?: number;
  /** Seconds assumed for the Plex pod to pull its image and start, for the projection. @default 120 */
  podStartSeconds?: number;
  /** Size of the generated sample when no inputs are given. @default "standard" */
  sample?: "standard" | "small";
  /** Progress lines (one per step and long-step update). */
  log?: (line: string) => void;
}

export interface StepTiming {
  step: string;
  seconds: number;
  /** Bytes the step moved or read. */
  bytes?: number;
  /** Rows, for the steps that count them. */
  rows?: number;
  bytesPerSecond?: number;
}

export interface RehearsalReport {
  reportVersion: 1;
  startedAt: string;
  finishedAt: string;
  seconds: number;
  rehearsalDir: string;
  kept: boolean;
  inputs: {
    plexDir: string;
    plexDirGenerated: boolean;
    tautulliDb: string;
    tautulliDbGenerated: boolean;
    /** Checksums of the inputs before and after: equal means nothing was written. */
    unchanged: { plexDir: boolean; tautulliDb: boolean };
  };
  plex: {
    version: string;
    versionSource: string;
    imageTag: string;
    libraryBytes: number;
    libraryFiles: number;
    databasesOk: boolean;
    integrityTool: string;
    recommendedConfigSize: string;
    mediaRoots: string[];
  };
  /** The library's two passes over rsync/SSH (read-only forced command on the "VM"). */
  sync: {
    /** While Plex runs: the whole library. */
    warm: SyncPass;
    /** After the stop: what changed since, and the proof the copy equals the source. */
    final: SyncPass;
    /** The forced command the migration key was authorized for. */
    forcedCommand: string;
  };
  transfer: {
    /** The tree in the stand-in config volume equals the source, byte for byte. */
    identical: boolean;
    differences: string[];
    filesCompared: number;
  };
  timings: StepTiming[];
  downtime: {
    projectedSeconds: number;
    parts: { step: string; seconds: number; basis: string }[];
    assumptions: string[];
  };
  /** The copy verified as the pod's Plex will see it (files looked at on this machine). */
  verification: OfflineVerification;
  tautulli: {
    migrations: string[];
    schemaVersion: string;
    import: ImportReport;
  };
  warnings: string[];
  nextSteps: string[];
}

export interface SyncPass {
  seconds: number;
  /** Bytes rsync sent ("Total transferred file size"). */
  bytes: number;
}

function now(): number {
  return performance.now() / 1000;
}

async function freeBytes(dir: string): Promise<number> {
  const stats = await fs.promises.statfs(dir);
  return stats.bavail * stats.bsize;
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await fs.promises.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile())
      total += (await fs.promises.lstat(path.join(entry.parentPath, entry.name))).size;
  }
  return total;
}

/** Checksums of a SQLite database and its -wal/-shm companions, as they are on disk. */
async function databaseFingerprint(file: string): Promise<string> {
  const parts: string[] = [];
  for (const suffix of ["", "-wal", "-shm", "-journal"]) {
    const candidate = `${file}${suffix}`;
    if (fs.existsSync(candidate)) parts.push(`${suffix || "db"}:${await sha256File(candidate)}`);
  }
  return parts.join(" ");
}

/** A directory listing fingerprint that also notices files added next to the inputs. */
async function treeFingerprint(dir: string): Promise<string> {
  const digest = await digestTree(dir);
  return JSON.stringify(digest.entries);
}

/** Checks the inputs and explains what is wrong with them before anything runs. */
export function checkPlexDir(plexDir: string): void {
  const fix =
    'give --plex-dir the folder that holds Preferences.xml, e.g. "/var/lib/plexmediaserver/Library/Application Support/Plex Media Server" (or a copy of it)';
  let stat: fs.Stats;
  try {
    stat = fs.statSync(plexDir);
  } catch {
    throw new RehearsalInputError(`The Plex directory ${plexDir} does not exist.`, fix);
  }
  if (!stat.isDirectory()) {
    throw new RehearsalInputError(`${plexDir} is not a directory.`, fix);
  }
  const missing = [
    "Preferences.xml",
    "Plug-in Support/Databases/com.plexapp.plugins.library.db",
  ].filter((relative) => !fs.existsSync(path.join(plexDir, relative)));
  if (missing.length > 0) {
    throw new RehearsalInputError(
      `${plexDir} is not a Plex data directory: it has no ${missing.join(" and no ")}.`,
      fix,
    );
  }
}

export function checkTautulliDb(file: string): void {
  try {
    const source = SqliteSource.open(inspectSourceFile(file));
    try {
      const tables = new Set(source.tables().map((t) => t.name.toLowerCase()));
      const missing = REQUIRED_TAUTULLI_TABLES.filter((t) => !tables.has(t));
      if (missing.length > 0) {
        throw new Error(`it is not a Tautulli database (it has no ${missing.join(", ")} table)`);
      }
    } finally {
      source.close();
    }
  } catch (err) {
    throw new RehearsalInputError(
      `The Tautulli database ${file} cannot be used: ${(err as Error).message}`,
      "give --tautulli-db Tautulli's own database file (tautulli.db in Tautulli's data directory, /config/tautulli.db in Docker), or leave it out to rehearse with a sample",
    );
  }
}

interface RehearsalDirs {
  sample: string;
  vm: string;
  volume: string;
  sync: string;
  postgres: string;
}

interface Inputs {
  plexDir: string;
  tautulliDb: string;
}

type Log = (line: string) => void;

/** Runs one VM step exactly as SourceVm sends it (stdin bundle, `bash -s`), parsed. */
async function runVmStep<S extends SourceStep>(
  name: S,
  settings: SourceScriptSettings,
  log: Log,
): Promise<StepResults[S]> {
  const bundle = scriptBundle(name, stepEnvironment(name, settings), loadScriptSources());
  const result = await startProcess("bash", ["-s", "--", name], {
    input: bundle,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LANG: "C.UTF-8" },
    onStderrLine: (line) => line.trim() && log(`  vm ${name}: ${line}`),
  }).done;
  if (result.code !== 0) {
    const summary = result.stdout.trim().split("\n").pop() ?? "";
    let problems = "";
    try {
      const parsed = JSON.parse(summary) as { problems?: string[] };
      if (parsed.problems?.length) problems = ` Problems: ${parsed.problems.join("; ")}`;
    } catch {
      /* no JSON summary: stderr says why */
    }
    const detail = result.stderr.trim().split("\n").slice(-5).join("\n");
    throw new StepFailure(
      `The VM script's ${name} step failed (exit ${result.code}).${problems}\n${detail}`,
      `VM ${name}`,
      "scripts/plex-migrate-source.sh",
      result.code ?? 1,
    );
  }
  return parseStepOutput(name, result.stdout);
}

/** Space for the samples, the copy in the stand-in volume and the database copies. */
async function checkFreeSpace(options: RehearsalOptions, rehearsalDir: string): Promise<void> {
  const small = options.sample === "small";
  const libraryBytes = options.plexDir
    ? await dirBytes(path.resolve(options.plexDir))
    : sampleLibraryBytes(small);
  const tautulliDb = options.tautulliDb ? path.resolve(options.tautulliDb) : "";
  const tautulliBytes = tautulliDb
    ? fs.statSync(tautulliDb).size +
      (fs.existsSync(`${tautulliDb}-wal`) ? fs.statSync(`${tautulliDb}-wal`).size : 0)
    : (small ? 2 : 40) * 1024 * 1024;
  const needed = Math.ceil(
    libraryBytes * (options.plexDir ? 1.1 : 2.1) +
      tautulliBytes * (tautulliDb ? 4 : 5) +
      256 * 1024 * 1024,
  );
  const available = await freeBytes(rehearsalDir);
  if (available < needed) {
    throw new RehearsalInputError(
      `The work directory ${path.dirname(rehearsalDir)} has ${mib(available)} free; the rehearsal needs about ${mib(needed)} (a copy of the ${mib(libraryBytes)} library, plus the database).`,
      "give --work-dir a directory on a disk with more free space",
    );
  }
}

function sampleLibraryBytes(small: boolean): number {
  return (small ? 16 : 160) * 1024 * 1024;
}

/** The user's inputs, or generated samples (the same generators the tests use). */
async function prepareInputs(
  options: RehearsalOptions,
  dirs: RehearsalDirs,
  log: Log,
): Promise<Inputs> {
  const small = options.sample === "small";
  let plexDir = options.plexDir ? path.resolve(options.plexDir) : "";
  let tautulliDb = options.tautulliDb ? path.resolve(options.tautulliDb) : "";
  if (!plexDir) {
    log("Generating a sample Plex data directory (no --plex-dir given)...");
    const manifest = await generatePlexTree(path.join(dirs.sample, "Plex Media Server"), {
      metadataFiles: small ? 300 : 3000,
      largeFiles: 2,
      largeFileBytes: (small ? 2 : 16) * 1024 * 1024,
      totalBytes: sampleLibraryBytes(small),
      awkwardShapes: true,
      sparseFiles: 2,
    });
    plexDir = manifest.dataDir;
  }
  if (!tautulliDb) {
    log("Generating a sample tautulli.db (no --tautulli-db given)...");
    tautulliDb = path.join(dirs.sample, "tautulli.db");
    generateTautulliDb(tautulliDb, { plays: small ? 500 : 20000, uncheckpointedPlays: 20 });
  }
  return { plexDir, tautulliDb };
}

/** The "VM" end of the sync on this machine: a real sshd and the authorized migration key. */
interface SyncSetup {
  sshd: LoopbackSshd;
  vm: LocalVmSync;
  target: LocalSyncTarget;
  forcedCommand: string;
}

async function authorizeSync(inputs: Inputs, dirs: RehearsalDirs, log: Log): Promise<SyncSetup> {
  log("Starting sshd on loopback (the VM's SSH server) and authorizing a migration key...");
  const sshd = await startLoopbackSshd();
  try {
    const key = generateSshKey(dirs.sync, "migration-key");
    const user = os.userInfo().username;
    const vm = new LocalVmSync({
      dataDir: inputs.plexDir,
      workDir: dirs.vm,
      user,
      authorizedKeysFile: sshd.authorizedKeysFile(user),
      publicKey: key.publicKey,
      allowedCidrs: ["127.0.0.0/8"],
    });
    const authorized = await vm.authorize();
    const keyFile = path.join(dirs.sync, "id_ed25519");
    fs.writeFileSync(keyFile, key.privateKey, { mode: 0o600 });
    const knownHostsFile = path.join(dirs.sync, "known_hosts");
    fs.writeFileSync(knownHostsFile, knownHostsLine(sshd.hostPublicKey));
    log(`  forced command: ${String(authorized.json.forcedCommand)}`);
    return {
      sshd,
      vm,
      target: {
        configDir: dirs.volume,
        host: sshd.host,
        port: sshd.port,
        user,
        keyFile,
        knownHostsFile,
      },
      forcedCommand: String(authorized.json.forcedCommand),
    };
  } catch (error) {
    await sshd.stop();
    throw error;
  }
}

/** One phase of plex-init.sh into the stand-in volume; its time and the bytes rsync sent. */
async function runSyncPhase(
  phase: SyncPhase,
  setup: SyncSetup,
  extra: Parameters<typeof plexSyncEnv>[2],
  log: Log,
): Promise<SyncPass> {
  const t = now();
  const result = await startPlexInit(plexSyncEnv(phase, setup.target, extra), {
    onStderrLine: (line) => line.trim() && log(`  init ${phase}: ${line}`),
  }).done;
  if (result.code !== 0) {
    throw new StepFailure(
      `plex-init.sh (${phase} phase) failed (exit ${result.code}):\n${result.stderr.trim().split("\n").slice(-5).join("\n")}`,
      `plex-init.sh ${phase}`,
      "scripts/plex-init.sh",
      result.code ?? 1,
    );
  }
  const match = /Total transferred file size: ([\d,]+)/.exec(result.stderr);
  return { seconds: now() - t, bytes: match ? Number(match[1].replace(/,/g, "")) : 0 };
}

/** Copies the stop step's Tautulli snapshot as the importer would, checking its sha256. */
async function fetchSnapshot(
  snapshot: { path: string; sha256: string; bytes: number } | null,
  dir: string,
): Promise<string> {
  if (!snapshot) throw new Error("The VM's stop step made no Tautulli snapshot.");
  const file = path.join(dir, "tautulli.db");
  fs.copyFileSync(snapshot.path, file);
  const sha256 = await sha256File(file);
  if (sha256 !== snapshot.sha256) {
    throw new Error(
      `The Tautulli snapshot's sha256 is ${sha256}, the stop step measured ${snapshot.sha256}.`,
    );
  }
  return file;
}

/** What Plex's downtime will be: only what runs between the stop and Plex answering. */
export function projectDowntime(input: {
  stopSeconds: number;
  final: SyncPass;
  linkMbps: number;
  podStartSeconds: number;
}): RehearsalReport["downtime"] {
  const linkBytesPerSecond = (input.linkMbps * 1e6) / 8;
  // The final pass walks both trees (measured) and sends what changed (at the link's speed).
  const finalSeconds = Math.max(input.final.seconds, input.final.bytes / linkBytesPerSecond);
  const parts = [
    {
      step: "stop Plex and Tautulli, re-check databases, Tautulli snapshot",
      seconds: input.stopSeconds + 15,
      basis: "measured here + 15 s for systemctl stop",
    },
    {
      step: "final sync in the init container (changes since the warm copy, second pass, database checksums)",
      seconds: finalSeconds,
      basis:
        finalSeconds === input.final.seconds
          ? "measured here"
          : `its ${input.final.bytes} bytes at the ${input.linkMbps} Mbit/s link`,
    },
    {
      step: "Plex pod start",
      seconds: input.podStartSeconds,
      basis: "assumed: image pull and Plex start-up",
    },
  ];
  return {
    projectedSeconds: parts.reduce((sum, p) => sum + p.seconds, 0),
    parts,
    assumptions: [
      "the warm copy ran while Plex was serving, so only the final sync adds to the downtime",
      `as few changes between the warm copy and the stop as in this rehearsal (here: ${input.final.bytes} bytes)`,
      `${input.linkMbps} Mbit/s between the VM and the cluster (--link-mbps)`,
      `${input.podStartSeconds} s for the Plex pod to pull its image and start (--pod-start-seconds)`,
      "Tautulli's import runs while Plex starts and does not add to Plex's downtime",
    ],
  };
}

function nextStepsFor(mediaRoots: string[]): string[] {
  const hints = mediaRoots.map((root) => `${root}=nfs://<nas>/<export>`);
  return [
    "pulumi stack init dev            # or use Pulumi.dev.yaml as a starting point",
    "pulumi config set vmHost <VM address> && pulumi config set vmUser <user with passwordless sudo>",
    "pulumi config set vmHostKey \"$(ssh-keyscan -t ed25519 <VM address> | cut -d' ' -f2-)\"",
    "pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519",
    ...(hints.length > 0
      ? [
          `pulumi config set --path 'plexMediaVolumes[0]' '${hints[0]}'   # one entry per media root`,
        ]
      : []),
    "pulumi preview",
    "pulumi up",
  ];
}

type PostgresServer = Awaited<ReturnType<typeof startEmbeddedPostgres>>;

/** Runs `body` and records how long it took under `step`. */
async function timed<T>(timings: StepTiming[], step: string, body: () => Promise<T>): Promise<T> {
  const t = now();
  const result = await body();
  timings.push({ step, seconds: now() - t });
  return result;
}

/** The rehearsal folder's parts, created, with the modes the embedded server and ssh need. */
function prepareDirs(rehearsalDir: string): RehearsalDirs {
  const dirs: RehearsalDirs = {
    sample: path.join(rehearsalDir, "sample"),
    vm: path.join(rehearsalDir, "vm"),
    volume: path.join(rehearsalDir, "config-volume"),
    sync: path.join(rehearsalDir, "sync"),
    postgres: path.join(rehearsalDir, "postgres"),
  };
  for (const dir of Object.values(dirs)) fs.mkdirSync(dir, { recursive: true });
  // The embedded server runs as the postgres user when we are root; it must reach its dir.
  fs.chmodSync(rehearsalDir, 0o755);
  fs.chmodSync(dirs.postgres, 0o777);
  fs.chmodSync(dirs.sync, 0o700);
  return dirs;
}

interface InputFingerprints {
  plex: string;
  tautulli: string;
}

async function fingerprintInputs(inputs: Inputs): Promise<InputFingerprints> {
  return {
    plex: await treeFingerprint(inputs.plexDir),
    tautulli: await databaseFingerprint(inputs.tautulliDb),
  };
}

/** The VM script's settings for a rehearsal: the inputs as the VM's data, no services. */
function rehearsalScriptSettings(inputs: Inputs, dirs: RehearsalDirs): SourceScriptSettings {
  return {
    workDir: dirs.vm,
    plexDataDir: inputs.plexDir,
    plexService: "plexmediaserver",
    tautulliService: "",
    tautulliDbPath: inputs.tautulliDb,
    rehearsal: true,
  };
}

type Preflight = StepResults["preflight"];
type Stopped = StepResults["stop"];

async function runPreflight(settings: SourceScriptSettings, log: Log): Promise<Preflight> {
  log("VM preflight (read-only)...");
  const preflight = await runVmStep("preflight", settings, log);
  if (!preflight.ok) throw new Error(`Preflight refused: ${preflight.problems.join("; ")}`);
  log(
    `  Plex ${preflight.plexVersion}, library ${mib(preflight.libraryBytes)} in ${preflight.libraryFiles} files, databases ${preflight.databasesOk ? "ok" : "NOT ok"} (${preflight.integrityTool})`,
  );
  return preflight;
}

interface LibraryCopy {
  warm: SyncPass;
  final: SyncPass;
  stopped: Stopped;
  stopSeconds: number;
  forcedCommand: string;
}

/**
 * The library's move as `pulumi up` makes it: authorize the key, the warm copy, the stop step,
 * the final sync, revoke. The key is revoked and sshd stopped whatever happens.
 */
async function copyLibrary(
  inputs: Inputs,
  dirs: RehearsalDirs,
  settings: SourceScriptSettings,
  preflight: Preflight,
  timings: StepTiming[],
  log: Log,
): Promise<LibraryCopy> {
  let sync: SyncSetup | undefined = await timed(timings, "authorize-sync", () =>
    authorizeSync(inputs, dirs, log),
  );
  try {
    log("Warm copy (Plex would still be serving): rsync over SSH into the stand-in volume...");
    const warm = await runSyncPhase(
      "warm",
      sync,
      {
        PLEX_REQUIRED_BYTES: String(requiredConfigBytes(preflight.libraryBytes)),
        PLEX_REQUIRED_INODES: String(requiredConfigInodes(preflight.fileCount)),
      },
      log,
    );
    timings.push({ step: "warm copy", ...warm, bytesPerSecond: warm.bytes / warm.seconds });

    const t = now();
    log("VM stop (rehearsal: no services; databases re-checked and hashed, Tautulli snapshot)...");
    const stopped = await runVmStep("stop", settings, log);
    const stopSeconds = now() - t;
    timings.push({ step: "stop", seconds: stopSeconds });

    log("Final sync (Plex stopped): the changes, a second pass, the database checksums...");
    const final = await runSyncPhase("final", sync, { databases: stopped.plexDatabases }, log);
    timings.push({ step: "final sync", ...final });

    const done = sync;
    await timed(timings, "revoke-sync", async () => {
      await done.vm.revoke();
      await done.sshd.stop();
    });
    sync = undefined;
    return { warm, final, stopped, stopSeconds, forcedCommand: done.forcedCommand };
  } finally {
    if (sync) {
      await sync.vm.revoke().catch(() => undefined);
      await sync.sshd.stop().catch(() => undefined);
    }
  }
}

interface CopyComparison {
  differences: string[];
  filesCompared: number;
}

async function compareCopy(sourceDir: string, copiedDir: string): Promise<CopyComparison> {
  const sourceDigest = await digestTree(sourceDir);
  const targetDigest = await digestTree(copiedDir);
  const differences = compareTrees(sourceDigest, targetDigest, { nanoseconds: true, sparse: true });
  return { differences, filesCompared: sourceDigest.files };
}

interface TautulliImport {
  migrated: Awaited<ReturnType<typeof migrateUp>>;
  importReport: ImportReport;
}

/** Embedded PostgreSQL, the migrations, the import of the snapshot; the server stops after. */
async function importTautulli(
  snapshotFile: string,
  dirs: RehearsalDirs,
  options: RehearsalOptions,
  timings: StepTiming[],
  log: Log,
): Promise<TautulliImport> {
  let server: PostgresServer | undefined;
  try {
    const { databaseUrl, migrated } = await timed(timings, "postgres + migrations", async () => {
      log("Starting an embedded PostgreSQL and applying the migrations...");
      server = await startEmbeddedPostgres({
        parentDir: postgresParentDir(dirs.postgres),
        keep: options.keep,
      });
      const url = await server.createDatabase("tautulli");
      return { databaseUrl: url, migrated: await migrateUp(url) };
    });

    const t = now();
    log("Importing tautulli.db (one transaction, verified by counts and checksums)...");
    let lastProgress = 0;
    const importReport = await runImport({
      sqlitePath: snapshotFile,
      databaseUrl,
      integrityCheck: "full",
      onProgress: (p) => {
        if (p.phase === "copy" && now() - lastProgress > 2) {
          lastProgress = now();
          log(
            `  ${p.table ?? ""}: ${p.rows}/${p.totalRows} rows, ${Math.round(p.rowsPerSecond)} rows/s`,
          );
        }
      },
    });
    timings.push({
      step: "tautulli import",
      seconds: now() - t,
      bytes: importReport.source.bytes + importReport.source.walBytes,
      rows: importReport.totals.rows,
    });
    return { migrated, importReport };
  } finally {
    await server?.stop().catch(() => undefined);
  }
}

/** What the rehearsal found, in the order the report lists it. */
export function rehearsalWarnings(found: {
  preflightNotes: string[];
  differences: number;
  verification: string[];
  importReport: Pick<ImportReport, "warnings" | "schemaDrift">;
  unchanged: RehearsalReport["inputs"]["unchanged"];
  mediaRoots: string[];
}): string[] {
  const warnings = found.preflightNotes.map((n) => `VM preflight: ${n}`);
  if (found.differences > 0) {
    warnings.push(
      `The copied tree differs from the source in ${found.differences} places (see transfer.differences).`,
    );
  }
  warnings.push(...found.verification);
  for (const w of found.importReport.warnings) warnings.push(`Tautulli import: ${w.message}`);
  if (!found.unchanged.plexDir || !found.unchanged.tautulliDb) {
    warnings.push(
      "AN INPUT CHANGED during the rehearsal (see inputs.unchanged): report this as a bug.",
    );
  }
  if (found.mediaRoots.length > 0) {
    warnings.push(
      `Plex's libraries live under ${found.mediaRoots.join(", ")}: mount these paths in the pod with plexMediaVolumes, or Plex will show the media as unavailable.`,
    );
  }
  const drift = found.importReport.schemaDrift;
  if (drift.extraTables.length > 0 || drift.extraColumns.length > 0) {
    warnings.push(
      "Tautulli schema drift: tables or columns Tautulli no longer has were found; see the import report's schemaDrift (their rows are reported, not imported).",
    );
  }
  return warnings;
}

/** The report from each phase's result (pure). */
function assembleReport(parts: {
  options: RehearsalOptions;
  startedAt: Date;
  seconds: number;
  rehearsalDir: string;
  inputs: Inputs;
  unchanged: RehearsalReport["inputs"]["unchanged"];
  preflight: Preflight;
  copy: LibraryCopy;
  comparison: CopyComparison;
  verification: OfflineVerification;
  tautulli: TautulliImport;
  timings: StepTiming[];
}): RehearsalReport {
  const { options, inputs, preflight, copy, comparison, tautulli } = parts;
  return {
    reportVersion: 1,
    startedAt: parts.startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    seconds: parts.seconds,
    rehearsalDir: parts.rehearsalDir,
    kept: Boolean(options.keep),
    inputs: {
      plexDir: inputs.plexDir,
      plexDirGenerated: !options.plexDir,
      tautulliDb: inputs.tautulliDb,
      tautulliDbGenerated: !options.tautulliDb,
      unchanged: parts.unchanged,
    },
    plex: {
      version: preflight.plexVersion,
      versionSource: preflight.plexVersionSource,
      imageTag: preflight.plexVersion,
      libraryBytes: preflight.libraryBytes,
      libraryFiles: preflight.libraryFiles,
      databasesOk: preflight.databasesOk,
      integrityTool: preflight.integrityTool,
      recommendedConfigSize: autoConfigSize(preflight.libraryBytes, 50),
      mediaRoots: preflight.mediaRoots,
    },
    sync: { warm: copy.warm, final: copy.final, forcedCommand: copy.forcedCommand },
    transfer: {
      identical: comparison.differences.length === 0,
      differences: comparison.differences.slice(0, 50),
      filesCompared: comparison.filesCompared,
    },
    timings: parts.timings,
    downtime: projectDowntime({
      stopSeconds: copy.stopSeconds,
      final: copy.final,
      linkMbps: options.linkMbps ?? 1000,
      podStartSeconds: options.podStartSeconds ?? 120,
    }),
    verification: parts.verification,
    tautulli: {
      migrations: tautulli.migrated.applied.length
        ? tautulli.migrated.applied
        : listMigrationNames(),
      schemaVersion: tautulli.migrated.schemaVersion,
      import: tautulli.importReport,
    },
    warnings: rehearsalWarnings({
      preflightNotes: preflight.notes,
      differences: comparison.differences.length,
      verification: offlineVerificationWarnings(parts.verification),
      importReport: tautulli.importReport,
      unchanged: parts.unchanged,
      mediaRoots: preflight.mediaRoots,
    }),
    nextSteps: nextStepsFor(preflight.mediaRoots),
  };
}

/** Runs the whole rehearsal; throws RehearsalInputError for bad inputs, Error for failures. */
export async function runRehearsal(options: RehearsalOptions = {}): Promise<RehearsalReport> {
  const log = options.log ?? (() => undefined);
  const startedAt = new Date();
  const started = now();
  const timings: StepTiming[] = [];

  if (options.plexDir) checkPlexDir(path.resolve(options.plexDir));
  if (options.tautulliDb) checkTautulliDb(path.resolve(options.tautulliDb));
  const rehearsalDir = options.rehearsalDir ?? createRehearsalDir(options.workDir);
  const dirs = prepareDirs(rehearsalDir);
  let finished = false;
  try {
    await checkFreeSpace(options, rehearsalDir);
    const inputs = await prepareInputs(options, dirs, log);
    const before = await fingerprintInputs(inputs);
    const settings = rehearsalScriptSettings(inputs, dirs);
    const preflight = await timed(timings, "preflight", () => runPreflight(settings, log));
    const copy = await copyLibrary(inputs, dirs, settings, preflight, timings, log);

    log("Comparing the copied tree with the source, byte for byte...");
    const copiedDataDir = path.join(dirs.volume, INIT_PLEX_DATA);
    const comparison = await timed(timings, "compare", () =>
      compareCopy(inputs.plexDir, copiedDataDir),
    );
    log("Verifying the copy as the pod's Plex will see it (identity, sampled library files)...");
    const verification = await verifyCopiedLibrary({
      sourceDataDir: inputs.plexDir,
      copiedDataDir,
      mediaVolumes: [],
    });
    const snapshotFile = await fetchSnapshot(copy.stopped.tautulliSnapshot, dirs.sync);
    const tautulli = await importTautulli(snapshotFile, dirs, options, timings, log);

    const after = await fingerprintInputs(inputs);
    const unchanged = {
      plexDir: before.plex === after.plex,
      tautulliDb: before.tautulli === after.tautulli,
    };
    const report = assembleReport({
      options,
      startedAt,
      seconds: now() - started,
      rehearsalDir,
      inputs,
      unchanged,
      preflight,
      copy,
      comparison,
      verification,
      tautulli,
      timings,
    });
    finished = true;
    return report;
  } catch (error) {
    // Bad input leaves nothing behind; any other failure keeps everything for its report.
    if (error instanceof RehearsalInputError)
      fs.rmSync(rehearsalDir, { recursive: true, force: true });
    throw error;
  } finally {
    // After a report only the report files stay.
    if (finished && !options.keep) {
      for (const dir of Object.values(dirs)) fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** A new rehearsal folder in `workDir` (created, with its parents, if missing). */
export function createRehearsalDir(workDir: string | undefined): string {
  const parent = path.resolve(workDir ?? os.tmpdir());
  try {
    fs.mkdirSync(parent, { recursive: true });
    return fs.mkdtempSync(path.join(parent, "plex-migrate-rehearsal-"));
  } catch (error) {
    throw new RehearsalInputError(
      `The work directory ${parent} cannot be used: ${(error as Error).message}.`,
      "give --work-dir a directory you can write to, on a disk with free space",
    );
  }
}

/**
 * As root, PostgreSQL runs as the `postgres` user, which must be able to reach its data dir: keep
 * it in the rehearsal folder when every folder above lets others through, else in the temp dir.
 */
function postgresParentDir(preferred: string): string {
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (!isRoot) return preferred;
  for (let dir = path.dirname(preferred); ; dir = path.dirname(dir)) {
    if ((fs.statSync(dir).mode & 0o001) === 0) return os.tmpdir();
    if (dir === path.dirname(dir)) return preferred;
  }
}

export function mib(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}
