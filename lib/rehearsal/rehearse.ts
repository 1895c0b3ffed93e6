/**
 * The dress rehearsal: the whole migration on this machine, with the real pieces, on copies.
 *
 * It runs exactly what `pulumi up` runs, minus the cluster: the VM script's preflight, stop,
 * archive and serve (through the same stdin bundle SourceVm sends over SSH, in rehearsal mode:
 * no systemctl, no dpkg), the init container's `plex-init.sh` into a temp directory standing in
 * for the config volume, a byte-for-byte comparison of the result with the source, an embedded
 * PostgreSQL, the Umzug migrations, and the Tautulli import (downloaded from the archive server
 * and verified like the SqliteImport provider does). The given Plex directory and Tautulli
 * database are only read; checksums taken before and after prove it.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { startPlexInit, startProcess } from "../plex/local-run";
import { autoConfigSize } from "../plex/sizing";
import { freePort } from "../net";
import { startEmbeddedPostgres } from "../postgres/embedded";
import {
  offlineVerificationWarnings,
  OfflineVerification,
  verifyCopiedLibrary,
} from "../plex/verify-offline";
import { listMigrationNames, migrateUp } from "../postgres/migrator";
import { downloadVerified } from "../import/download";
import type { ImportReport } from "../import/report";
import { runImport } from "../import/run-import";
import { REQUIRED_TAUTULLI_TABLES } from "../import/plan";
import { inspectSourceFile, SqliteSource } from "../import/sqlite-source";
import {
  loadScriptSources,
  scriptBundle,
  servedUrl,
  SourceScriptSettings,
  SourceStep,
  stepEnvironment,
} from "../source-vm/commands";
import { parseStepOutput, StepResults } from "../source-vm/outputs";
import { compareTrees, digestTree, generatePlexTree, sha256File } from "../samples/plex-tree";
import { generateTautulliDb } from "../samples/tautulli-db";

const ARCHIVE_ROOT = path.join("Library", "Application Support", "Plex Media Server");

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
  /** Keep the archive, the config-volume copy and the PostgreSQL data dir. @default false */
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
  archive: {
    format: string;
    compression: string;
    bytes: number;
    sha256: string;
    /** archive bytes / library bytes */
    ratio: number;
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

/** Runs the whole rehearsal; throws RehearsalInputError for bad inputs, Error for failures. */
export async function runRehearsal(options: RehearsalOptions = {}): Promise<RehearsalReport> {
  const log = options.log ?? (() => undefined);
  const startedAt = new Date();
  const started = now();
  const timings: StepTiming[] = [];
  const warnings: string[] = [];
  const linkMbps = options.linkMbps ?? 1000;
  const podStartSeconds = options.podStartSeconds ?? 120;

  if (options.plexDir) checkPlexDir(path.resolve(options.plexDir));
  if (options.tautulliDb) checkTautulliDb(path.resolve(options.tautulliDb));
  const rehearsalDir = options.rehearsalDir ?? createRehearsalDir(options.workDir);
  const parent = path.dirname(rehearsalDir);
  const dirs = {
    sample: path.join(rehearsalDir, "sample"),
    vm: path.join(rehearsalDir, "vm"),
    volume: path.join(rehearsalDir, "config-volume"),
    download: path.join(rehearsalDir, "download"),
    postgres: path.join(rehearsalDir, "postgres"),
  };
  for (const dir of Object.values(dirs)) fs.mkdirSync(dir, { recursive: true });
  // The embedded server runs as the postgres user when we are root; it must reach its dir.
  fs.chmodSync(rehearsalDir, 0o755);
  fs.chmodSync(dirs.postgres, 0o777);

  let serving = false;
  let settings: SourceScriptSettings | undefined;
  const sources = loadScriptSources();
  const step = async <S extends SourceStep>(
    name: S,
    serveToken?: string,
  ): Promise<StepResults[S]> => {
    const env = stepEnvironment(name, settings!);
    const bundle = scriptBundle(name, env, sources, serveToken ? { serveToken } : {});
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
  };

  let postgresServer: Awaited<ReturnType<typeof startEmbeddedPostgres>> | undefined;
  let finished = false;
  try {
    // --- Space first: the samples, an archive and an extracted copy, the database copies. ---
    let plexDir = options.plexDir ? path.resolve(options.plexDir) : "";
    let tautulliDb = options.tautulliDb ? path.resolve(options.tautulliDb) : "";
    const small = options.sample === "small";
    const sampleLibraryBytes = (small ? 16 : 160) * 1024 * 1024;
    const libraryBytesEstimate = plexDir ? await dirBytes(plexDir) : sampleLibraryBytes;
    const tautulliBytes = tautulliDb
      ? fs.statSync(tautulliDb).size +
        (fs.existsSync(`${tautulliDb}-wal`) ? fs.statSync(`${tautulliDb}-wal`).size : 0)
      : (small ? 2 : 40) * 1024 * 1024;
    const needed = Math.ceil(
      libraryBytesEstimate * (plexDir ? 2.1 : 3.1) +
        tautulliBytes * (tautulliDb ? 4 : 5) +
        256 * 1024 * 1024,
    );
    const available = await freeBytes(rehearsalDir);
    if (available < needed) {
      throw new RehearsalInputError(
        `The work directory ${parent} has ${mib(available)} free; the rehearsal needs about ${mib(needed)} (an archive and an extracted copy of the ${mib(libraryBytesEstimate)} library, plus the database).`,
        "give --work-dir a directory on a disk with more free space",
      );
    }

    // --- Inputs: the user's, or generated samples (the same generators the tests use). ---
    if (!plexDir) {
      log("Generating a sample Plex data directory (no --plex-dir given)...");
      const manifest = await generatePlexTree(path.join(dirs.sample, "Plex Media Server"), {
        metadataFiles: small ? 300 : 3000,
        largeFiles: 2,
        largeFileBytes: (small ? 2 : 16) * 1024 * 1024,
        totalBytes: sampleLibraryBytes,
      });
      plexDir = manifest.dataDir;
    }
    if (!tautulliDb) {
      log("Generating a sample tautulli.db (no --tautulli-db given)...");
      tautulliDb = path.join(dirs.sample, "tautulli.db");
      generateTautulliDb(tautulliDb, { plays: small ? 500 : 20000, uncheckpointedPlays: 20 });
    }

    const before = {
      plex: await treeFingerprint(plexDir),
      tautulli: await databaseFingerprint(tautulliDb),
    };

    settings = {
      workDir: dirs.vm,
      plexDataDir: plexDir,
      plexService: "plexmediaserver",
      tautulliService: "",
      tautulliDbPath: tautulliDb,
      archiveExcludes: [],
      archiveCompression: "auto",
      serve: {
        address: "127.0.0.1",
        port: await freePort(),
        lifetimeMinutes: 30,
        allowedCidrs: ["127.0.0.0/8"],
      },
      keepArchive: Boolean(options.keep),
      rehearsal: true,
    };

    // --- The VM steps, exactly as SourceVm sends them (in rehearsal mode). ---
    let t = now();
    log("VM preflight (read-only)...");
    const preflight = await step("preflight");
    timings.push({ step: "preflight", seconds: now() - t });
    if (!preflight.ok) throw new Error(`Preflight refused: ${preflight.problems.join("; ")}`);
    log(
      `  Plex ${preflight.plexVersion}, library ${mib(preflight.libraryBytes)} in ${preflight.libraryFiles} files, databases ${preflight.databasesOk ? "ok" : "NOT ok"} (${preflight.integrityTool})`,
    );
    warnings.push(...preflight.notes.map((n) => `VM preflight: ${n}`));

    t = now();
    log("VM stop (rehearsal: no services; databases re-checked)...");
    await step("stop");
    timings.push({ step: "stop", seconds: now() - t });

    t = now();
    log("VM archive (streaming, with sha256) and Tautulli snapshot (SQLite backup API)...");
    const archive = await step("archive");
    const archiveSeconds = now() - t;
    timings.push({
      step: "archive",
      seconds: archiveSeconds,
      bytes: preflight.libraryBytes,
      bytesPerSecond: preflight.libraryBytes / archiveSeconds,
    });
    log(
      `  ${archive.archive.name}: ${mib(archive.archive.bytes)} (${archive.archive.compression}) in ${archiveSeconds.toFixed(1)} s`,
    );

    const serveToken = require("crypto").randomBytes(24).toString("base64url") as string;
    t = now();
    const served = await step("serve", serveToken);
    serving = true;
    timings.push({ step: "serve", seconds: now() - t });
    const archiveUrl = servedUrl("127.0.0.1", served.port, serveToken, archive.archive.name);
    const snapshotUrl = servedUrl("127.0.0.1", served.port, serveToken, "tautulli.db");
    log(
      `  serving on 127.0.0.1:${served.port} at a token URL for ${Math.round(served.lifetimeSeconds / 60)} min`,
    );

    // --- The init container's script into the stand-in config volume. ---
    t = now();
    log(
      "plex-init.sh: download (streamed, resumable), verify sha256, extract, rename into place...",
    );
    const uid = typeof process.getuid === "function" ? process.getuid() : 1000;
    const gid = typeof process.getgid === "function" ? process.getgid() : 1000;
    const init = await startPlexInit(
      {
        PLEX_CONFIG_DIR: dirs.volume,
        PLEX_ARCHIVE_URL: archiveUrl,
        PLEX_ARCHIVE_SHA256: archive.archive.sha256,
        PLEX_ARCHIVE_BYTES: String(archive.archive.bytes),
        PLEX_ARCHIVE_FORMAT: archive.archive.format,
        PLEX_LIBRARY_BYTES: String(preflight.libraryBytes),
        PLEX_UID: String(uid),
        PLEX_GID: String(gid),
        PLEX_INIT_INSTALL_TOOLS: "never",
      },
      { onStderrLine: (line) => line.trim() && log(`  init: ${line}`) },
    ).done;
    if (init.code !== 0) {
      throw new StepFailure(
        `plex-init.sh failed (exit ${init.code}):\n${init.stderr.trim().split("\n").slice(-5).join("\n")}`,
        "plex-init.sh",
        "scripts/plex-init.sh",
        init.code ?? 1,
      );
    }
    const transferSeconds = now() - t;
    timings.push({
      step: "transfer+extract",
      seconds: transferSeconds,
      bytes: archive.archive.bytes,
      bytesPerSecond: archive.archive.bytes / transferSeconds,
    });

    t = now();
    log("Comparing the imported tree with the source, byte for byte...");
    const sourceDigest = await digestTree(plexDir, { exclude: preflight.excludes });
    const targetDigest = await digestTree(path.join(dirs.volume, ARCHIVE_ROOT));
    const differences = compareTrees(sourceDigest, targetDigest, { owners: false });
    timings.push({ step: "compare", seconds: now() - t });
    if (differences.length > 0) {
      warnings.push(
        `The imported tree differs from the source in ${differences.length} places (see transfer.differences).`,
      );
    }

    log("Verifying the copy as the pod's Plex will see it (identity, sampled library files)...");
    const verification = await verifyCopiedLibrary({
      sourceDataDir: plexDir,
      copiedDataDir: path.join(dirs.volume, ARCHIVE_ROOT),
      mediaVolumes: [],
    });
    warnings.push(...offlineVerificationWarnings(verification));

    // --- Tautulli: embedded PostgreSQL, migrations, import of the served snapshot. ---
    t = now();
    log(
      "Downloading the Tautulli snapshot as SqliteImport does (streamed, resumable, sha256-checked)...",
    );
    if (!archive.tautulli) throw new Error("The VM's archive step made no Tautulli snapshot.");
    const snapshotFile = path.join(dirs.download, "tautulli.db");
    await downloadVerified(snapshotUrl, archive.tautulli.sha256, snapshotFile, { log });
    timings.push({
      step: "tautulli snapshot download",
      seconds: now() - t,
      bytes: archive.tautulli.bytes,
    });

    await step("stop-serving");
    serving = false;

    t = now();
    log("Starting an embedded PostgreSQL and applying the migrations...");
    postgresServer = await startEmbeddedPostgres({
      parentDir: postgresParentDir(dirs.postgres),
      keep: options.keep,
    });
    const databaseUrl = await postgresServer.createDatabase("tautulli");
    const migrated = await migrateUp(databaseUrl);
    timings.push({ step: "postgres + migrations", seconds: now() - t });

    t = now();
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
    for (const w of importReport.warnings) warnings.push(`Tautulli import: ${w.message}`);

    // --- The inputs must be exactly as they were. ---
    const after = {
      plex: await treeFingerprint(plexDir),
      tautulli: await databaseFingerprint(tautulliDb),
    };
    const unchanged = {
      plexDir: before.plex === after.plex,
      tautulliDb: before.tautulli === after.tautulli,
    };
    if (!unchanged.plexDir || !unchanged.tautulliDb) {
      warnings.push(
        "AN INPUT CHANGED during the rehearsal (see inputs.unchanged): report this as a bug.",
      );
    }

    // --- What the real run will look like. ---
    const linkBytesPerSecond = (linkMbps * 1e6) / 8;
    const localTransferRate = archive.archive.bytes / transferSeconds;
    const transferRate = Math.min(linkBytesPerSecond, localTransferRate);
    const stopTiming = timings.find((x) => x.step === "stop")!.seconds;
    const parts = [
      {
        step: "stop Plex and Tautulli, re-check databases",
        seconds: stopTiming + 15,
        basis: "measured database re-check + 15 s for systemctl stop",
      },
      {
        step: "archive + sha256",
        seconds: archiveSeconds,
        basis: "measured here on the same data",
      },
      {
        step: "download + verify + extract in the init container",
        seconds: archive.archive.bytes / transferRate,
        basis:
          transferRate === linkBytesPerSecond
            ? `archive bytes at the ${linkMbps} Mbit/s link`
            : "measured here (slower than the link)",
      },
      {
        step: "Plex pod start",
        seconds: podStartSeconds,
        basis: "assumed: image pull and Plex start-up",
      },
    ];
    const projectedSeconds = parts.reduce((sum, p) => sum + p.seconds, 0);

    const imageTag = preflight.plexVersion;
    if (preflight.mediaRoots.length > 0) {
      warnings.push(
        `Plex's libraries live under ${preflight.mediaRoots.join(", ")}: mount these paths in the pod with plexMediaVolumes, or Plex will show the media as unavailable.`,
      );
    }
    if (
      importReport.schemaDrift.extraTables.length > 0 ||
      importReport.schemaDrift.extraColumns.length > 0
    ) {
      warnings.push(
        "Tautulli schema drift: tables or columns Tautulli no longer has were found; see the import report's schemaDrift (their rows are reported, not imported).",
      );
    }

    const mediaVolumeHints = preflight.mediaRoots.map((root) => `${root}=nfs://<nas>/<export>`);
    const nextSteps = [
      "pulumi stack init dev            # or use Pulumi.dev.yaml as a starting point",
      "pulumi config set vmHost <VM address> && pulumi config set vmUser <user with passwordless sudo>",
      "pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519",
      ...(mediaVolumeHints.length > 0
        ? [
            `pulumi config set --path 'plexMediaVolumes[0]' '${mediaVolumeHints[0]}'   # one entry per media root`,
          ]
        : []),
      "pulumi preview",
      "pulumi up",
    ];

    const report: RehearsalReport = {
      reportVersion: 1,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      seconds: now() - started,
      rehearsalDir,
      kept: Boolean(options.keep),
      inputs: {
        plexDir,
        plexDirGenerated: !options.plexDir,
        tautulliDb,
        tautulliDbGenerated: !options.tautulliDb,
        unchanged,
      },
      plex: {
        version: preflight.plexVersion,
        versionSource: preflight.plexVersionSource,
        imageTag,
        libraryBytes: preflight.libraryBytes,
        libraryFiles: preflight.libraryFiles,
        databasesOk: preflight.databasesOk,
        integrityTool: preflight.integrityTool,
        recommendedConfigSize: autoConfigSize(preflight.libraryBytes, 50),
        mediaRoots: preflight.mediaRoots,
      },
      archive: {
        format: archive.archive.format,
        compression: archive.archive.compression,
        bytes: archive.archive.bytes,
        sha256: archive.archive.sha256,
        ratio: archive.archive.bytes / Math.max(1, preflight.libraryBytes),
      },
      transfer: {
        identical: differences.length === 0,
        differences: differences.slice(0, 50),
        filesCompared: sourceDigest.files,
      },
      timings,
      downtime: {
        projectedSeconds,
        parts,
        assumptions: [
          `VM disk and CPU like this machine's (archive time measured here)`,
          `${linkMbps} Mbit/s between the VM and the cluster (--link-mbps)`,
          `${podStartSeconds} s for the Plex pod to pull its image and start (--pod-start-seconds)`,
          "Tautulli's import runs while Plex starts and does not add to Plex's downtime",
        ],
      },
      verification,
      tautulli: {
        migrations: migrated.applied.length ? migrated.applied : listMigrationNames(),
        schemaVersion: migrated.schemaVersion,
        import: importReport,
      },
      warnings,
      nextSteps,
    };
    finished = true;
    return report;
  } catch (error) {
    // Bad input leaves nothing behind; any other failure keeps everything for its report.
    if (error instanceof RehearsalInputError)
      fs.rmSync(rehearsalDir, { recursive: true, force: true });
    throw error;
  } finally {
    if (serving && settings) await step("stop-serving").catch(() => undefined);
    await postgresServer?.stop().catch(() => undefined);
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
