/**
 * `npm run bench:transfer -- [--size 2GB] [--changed 2] [--work-dir DIR] [--keep] [--no-verify]`
 *
 * Moves one generated Plex data directory over loopback twice and prints a table:
 *
 *   plan:  (Plex stopped) tar czf to a file -> python3 -m http.server -> curl -o -> tar xzf
 *   ours:  (Plex running) plex-init.sh warm: rsync over a real sshd to the VM script's forced
 *          rrsync -ro; Plex changes --changed percent of the library (new posters, a rewritten
 *          library database, logs, deletions); (Plex stopped) the stop step's database
 *          checksums, plex-init.sh final: the delta, a second pass, the checksums, the rename
 *
 * Plex's downtime is the time from the stop to the library being complete on the target: all of
 * the plan, only the checksums and the final pass of ours. Page caches are dropped before the
 * warm copy and before the plan (both read the whole library); the final pass runs with the
 * caches the warm copy left, as it does on a VM and node minutes later (--cold-final: dropped).
 * The target is a fresh ext4 file system on a loop device, sampled every 50 ms, so "peak extra
 * disk" is exact: the most the target held beyond the finished library. The plan's download lands
 * on the target too (in the pod: the node's disk, /tmp of the init container). Needs root.
 */
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { parseArgs } from "util";
import Database from "better-sqlite3";
import {
  compareTrees,
  digestTree,
  generatePlexTree,
  LIBRARY_DB_RELATIVE,
} from "../lib/samples/plex-tree";
import {
  freePort,
  measureDatabases,
  plexSyncEnv,
  startPlexInit,
  startProcess,
  type LocalSyncTarget,
} from "../lib/plex/local-run";
import {
  LocalVmSync,
  generateSshKey,
  knownHostsLine,
  startLoopbackSshd,
} from "../lib/plex/local-sync";
import { INIT_PLEX_DATA } from "../lib/plex/init-script";
import { requiredConfigBytes } from "../lib/plex/sizing";

const MB = 1_000_000;

const USAGE = `usage: npm run bench:transfer -- [--size SIZE] [--changed PERCENT] [--work-dir DIR] [--keep] [--no-verify]

  --size SIZE     size of the generated Plex data directory, e.g. 2GB (default), 500MB, 1GiB
  --changed PCT   share of the library Plex changes between the warm copy and the stop (default 2)
  --cold-final    drop the page caches before the final phase too (the worst case)
  --work-dir DIR  where the source tree, archives and the target image go (default: OS temp dir)
  --keep          keep the work directory
  --no-verify     skip comparing both imported trees with the source`;

function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?$/i.exec(text.trim());
  if (!match) throw new Error(`--size "${text}" is not a size such as 2GB or 500MB`);
  const factors: Record<string, number> = {
    b: 1,
    kb: 1e3,
    mb: 1e6,
    gb: 1e9,
    kib: 1024,
    mib: 1024 ** 2,
    gib: 1024 ** 3,
  };
  return Math.round(Number(match[1]) * factors[(match[2] ?? "B").toLowerCase()]);
}

function sh(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8" });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed: ${result.stderr || result.error}`);
  }
  return result.stdout;
}

function usedBytes(mount: string): number {
  const s = fs.statfsSync(mount);
  return (s.blocks - s.bfree) * s.bsize;
}

/** Samples the target file system's used bytes until stopped; returns the peak. */
function sampleUsage(mount: string): { stop: () => number } {
  let peak = usedBytes(mount);
  const timer = setInterval(() => {
    peak = Math.max(peak, usedBytes(mount));
  }, 50);
  return {
    stop: () => {
      clearInterval(timer);
      return Math.max(peak, usedBytes(mount));
    },
  };
}

function dropCaches(): void {
  spawnSync("sync");
  fs.writeFileSync("/proc/sys/vm/drop_caches", "1");
}

async function waitForPort(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => (socket.destroy(), resolve(true)));
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`nothing listens on ${port}`);
}

interface PipelineResult {
  name: string;
  stages: Record<string, number>;
  /** Plex down: from the stop to the library complete and verified on the target. */
  downtime: number;
  total: number;
  /** Extra disk the VM needed (the plan's archive). */
  vmExtraBytes: number;
  peakExtraBytes: number;
  identical?: boolean;
}

const seconds = (started: bigint) => Number(process.hrtime.bigint() - started) / 1e9;

/** The plan: tar czf, python3 -m http.server, curl -o, tar xzf, rm. */
async function runPlan(
  sourceRoot: string,
  work: string,
  targetMount: string,
): Promise<PipelineResult> {
  const archiveDir = path.join(work, "plan-vm");
  fs.mkdirSync(archiveDir, { recursive: true });
  const config = path.join(targetMount, "plan-config");
  const download = path.join(targetMount, "plan-tmp");
  fs.mkdirSync(config);
  fs.mkdirSync(download);
  const stages: Record<string, number> = {};
  const usage = sampleUsage(targetMount);
  const started = process.hrtime.bigint();

  let t = process.hrtime.bigint();
  const archive = path.join(archiveDir, "plex-library.tar.gz");
  const tar = await startProcess("tar", ["czf", archive, "Library/"], { cwd: sourceRoot }).done;
  if (tar.code !== 0) throw new Error(`tar czf: ${tar.stderr}`);
  stages.archive = seconds(t);

  t = process.hrtime.bigint();
  const port = await freePort();
  const server = startProcess("python3", [
    "-m",
    "http.server",
    String(port),
    "--bind",
    "127.0.0.1",
    "--directory",
    archiveDir,
  ]);
  try {
    await waitForPort(port);
    stages.serve = seconds(t);

    t = process.hrtime.bigint();
    const file = path.join(download, "plex-library.tar.gz");
    const curl = await startProcess("curl", [
      "-sS",
      "-f",
      "-o",
      file,
      `http://127.0.0.1:${port}/plex-library.tar.gz`,
    ]).done;
    if (curl.code !== 0) throw new Error(`curl: ${curl.stderr}`);
    stages.download = seconds(t);

    t = process.hrtime.bigint();
    const extract = await startProcess("tar", ["xzf", file, "-C", config]).done;
    if (extract.code !== 0) throw new Error(`tar xzf: ${extract.stderr}`);
    fs.rmSync(file);
    stages.extract = seconds(t);
  } finally {
    server.child.kill("SIGTERM");
    await server.done;
  }
  const total = seconds(started);
  const peak = usage.stop();
  return {
    name: "plan: tar czf → http.server → curl -o → tar xzf",
    stages,
    downtime: total,
    total,
    vmExtraBytes: fs.statSync(archive).size,
    peakExtraBytes: Math.max(0, peak - usedBytes(targetMount)),
  };
}

/** The VM end of ours on this machine: a real sshd, the migration key behind rrsync -ro. */
async function startVmSync(dataDir: string, work: string, config: string) {
  const dir = path.join(work, "ours-sync");
  fs.mkdirSync(dir, { mode: 0o700 });
  const sshd = await startLoopbackSshd();
  const key = generateSshKey(dir, "migration-key");
  const user = os.userInfo().username;
  const vm = new LocalVmSync({
    dataDir,
    workDir: path.join(work, "ours-vm"),
    user,
    authorizedKeysFile: sshd.authorizedKeysFile(user),
    publicKey: key.publicKey,
  });
  await vm.authorize();
  fs.writeFileSync(path.join(dir, "id"), key.privateKey, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, "known_hosts"), knownHostsLine(sshd.hostPublicKey));
  const target: LocalSyncTarget = {
    configDir: config,
    host: sshd.host,
    port: sshd.port,
    user,
    keyFile: path.join(dir, "id"),
    knownHostsFile: path.join(dir, "known_hosts"),
  };
  return { sshd, vm, target, vmWorkDir: path.join(work, "ours-vm") };
}

async function syncPhase(
  phase: "warm" | "final",
  target: LocalSyncTarget,
  extra: Parameters<typeof plexSyncEnv>[2],
): Promise<{ seconds: number; bytes: number }> {
  const t = process.hrtime.bigint();
  const result = await startPlexInit(plexSyncEnv(phase, target, extra), {
    onStderrLine: (line) =>
      process.stderr.write(`[bench:transfer]   +${seconds(t).toFixed(1)}s ${line}\n`),
  }).done;
  if (result.code !== 0)
    throw new Error(`plex-init.sh ${phase} failed (${result.code}): ${result.stderr}`);
  const match = /Total transferred file size: ([\d,]+)/.exec(result.stderr);
  return { seconds: seconds(t), bytes: match ? Number(match[1].replace(/,/g, "")) : 0 };
}

/**
 * What Plex does to its data directory in the hours a warm copy takes: new posters and
 * metadata, a rewritten library database, grown logs, a few deletions.
 */
function changeLibrary(dataDir: string, share: number, totalBytes: number): number {
  let changed = 0;
  const added = path.join(dataDir, "Metadata/Movies/f/bench-new.bundle/Contents");
  fs.mkdirSync(added, { recursive: true });
  const target = Math.max(1, Math.round(totalBytes * share));
  for (let i = 0; changed < target * 0.6; i++) {
    const bytes = crypto.randomBytes(64 * 1024);
    fs.writeFileSync(path.join(added, `poster-${i}.jpg`), bytes);
    changed += bytes.length;
  }
  const db = new Database(path.join(dataDir, LIBRARY_DB_RELATIVE));
  db.exec("CREATE TABLE IF NOT EXISTS bench_plays (n INTEGER, note TEXT)");
  const insert = db.prepare("INSERT INTO bench_plays VALUES (?, ?)");
  db.transaction(() => {
    for (let i = 0; i < Math.max(100, (target * 0.3) / 200); i++) insert.run(i, "x".repeat(180));
  })();
  db.pragma("wal_checkpoint(TRUNCATE)");
  db.close();
  changed += fs.statSync(path.join(dataDir, LIBRARY_DB_RELATIVE)).size;
  const log = path.join(dataDir, "Logs/Plex Media Server.log");
  const more = "Dec 01, 2026 21:00:00.000 [1] DEBUG - Request: GET /library/sections\n".repeat(
    Math.max(10, Math.round((target * 0.1) / 70)),
  );
  fs.appendFileSync(log, more);
  changed += more.length;
  for (const old of ["Logs/Plex Media Server.3.log", "Logs/Plex Media Server.2.log"]) {
    fs.rmSync(path.join(dataDir, old), { force: true });
  }
  return changed;
}

function formatBytes(bytes: number): string {
  if (bytes < 10 * MB) return `${(bytes / MB).toFixed(1)} MB`;
  return `${Math.round(bytes / MB)} MB`;
}

interface BenchOptions {
  size: number;
  changedPercent: number;
  workDir: string;
  keep: boolean;
  verify: boolean;
  coldFinal: boolean;
}

/** The command line, or exits with the usage (2) when it is wrong; undefined after --help. */
function parseOptions(): BenchOptions | undefined {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        size: { type: "string", default: "2GB" },
        changed: { type: "string", default: "2" },
        "work-dir": { type: "string" },
        keep: { type: "boolean", default: false },
        "no-verify": { type: "boolean", default: false },
        "cold-final": { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return undefined;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write("bench:transfer needs root (loop-mounted target, dropping caches)\n");
    process.exit(2);
  }
  const changedPercent = Number(values.changed);
  if (!(changedPercent > 0 && changedPercent < 100)) {
    process.stderr.write(`--changed "${values.changed}" must be a percentage between 0 and 100\n`);
    process.exit(2);
  }
  return {
    size: parseSize(values.size ?? "2GB"),
    changedPercent,
    workDir: values["work-dir"] ?? os.tmpdir(),
    keep: values.keep ?? false,
    verify: !values["no-verify"],
    coldFinal: values["cold-final"] ?? false,
  };
}

const log = (line: string) => process.stderr.write(`[bench:transfer] ${line}\n`);

/** Stops the stand-in VM's sshd while ours runs (also on Ctrl-C). */
let stopVmSshd: (() => Promise<void>) | undefined;

/**
 * A Plex-like mix: many small metadata files (1-40 KiB), a few large Media index files, and
 * posters/thumbnails/logs (64 KiB - 2 MiB) for the rest.
 */
async function generateLibrary(dataDir: string, size: number) {
  fs.mkdirSync(dataDir, { recursive: true });
  const metadataFiles = Math.max(1000, Math.round(size / 100_000));
  log(`generating a ${formatBytes(size)} Plex data directory (${metadataFiles} small files)...`);
  const manifest = await generatePlexTree(dataDir, {
    seed: 42,
    metadataFiles,
    largeFiles: 4,
    largeFileBytes: Math.max(4 * 1024 * 1024, Math.round(size / 40)),
    totalBytes: size,
    awkwardShapes: true,
  });
  const libraryBytes = Number(sh("du", ["-s", "-B1", dataDir]).split("\t")[0]);
  log(
    `  ${manifest.files} files, ${manifest.directories} directories, ${manifest.symlinks} symlinks, ` +
      `${formatBytes(manifest.bytes)} (${formatBytes(libraryBytes)} on disk)`,
  );
  return { manifest, libraryBytes };
}

/**
 * A target file system of its own, sparse: room for our copy, the plan's download and its
 * extracted copy side by side, and ext4's metadata for tens of thousands of small files.
 */
function mountTarget(work: string, libraryBytes: number) {
  const mount = path.join(work, "target");
  const image = path.join(work, "target.img");
  const imageBytes = Math.ceil((libraryBytes * 4 + 2e9) / 4096) * 4096;
  fs.closeSync(fs.openSync(image, "w"));
  fs.truncateSync(image, imageBytes);
  sh("mkfs.ext4", ["-q", "-F", "-m", "0", image]);
  const loopDevice = sh("losetup", ["--find", "--show", image]).trim();
  fs.mkdirSync(mount);
  try {
    sh("mount", [loopDevice, mount]);
  } catch (error) {
    spawnSync("losetup", ["-d", loopDevice]);
    throw error;
  }
  log(`target: ext4 on ${loopDevice} (${formatBytes(imageBytes)}) at ${mount}`);
  return {
    mount,
    unmount: () => {
      spawnSync("umount", [mount]);
      spawnSync("losetup", ["-d", loopDevice]);
    },
  };
}

/**
 * Ours: the warm copy while "Plex runs", Plex's changes, then after the stop the stop step's
 * database checksums and the final pass. The final runs minutes after the warm copy walked both
 * trees, on the same VM and the same node (the claim binds where the Job ran), so their inode
 * caches are warm; `coldFinal` drops them first to show the worst case.
 */
async function runOurs(
  options: BenchOptions,
  library: { dataDir: string; bytes: number; libraryBytes: number },
  work: string,
  mount: string,
): Promise<PipelineResult & { changed: number }> {
  const oursConfig = path.join(mount, "ours-config");
  fs.mkdirSync(oursConfig);
  const vmSync = await startVmSync(library.dataDir, work, oursConfig);
  stopVmSshd = () => vmSync.sshd.stop();
  try {
    dropCaches();
    log(
      "ours: warm copy (plex-init.sh warm, rsync over SSH to rrsync -ro) while Plex would run...",
    );
    const usage = sampleUsage(mount);
    const warm = await syncPhase("warm", vmSync.target, {
      PLEX_REQUIRED_BYTES: String(requiredConfigBytes(library.libraryBytes)),
    });
    log(`  ${warm.seconds.toFixed(1)} s, ${formatBytes(warm.bytes)}`);

    const changed = changeLibrary(library.dataDir, options.changedPercent / 100, library.bytes);
    log(
      `Plex changed ${formatBytes(changed)} meanwhile (${options.changedPercent}% of the library); stop.`,
    );
    if (options.coldFinal) dropCaches();
    const t = process.hrtime.bigint();
    const databases = measureDatabases(library.dataDir);
    const checksums = seconds(t);
    const final = await syncPhase("final", vmSync.target, { databases });
    const oursPeak = usage.stop();
    await vmSync.vm.revoke();
    const vmWork = Number(sh("du", ["-s", "-B1", vmSync.vmWorkDir]).split("\t")[0]);
    log(`  final: ${final.seconds.toFixed(1)} s, ${formatBytes(final.bytes)}`);
    return {
      name: "ours: warm rsync (Plex up) → stop → final rsync + verify (init container)",
      stages: { "warm copy": warm.seconds, "db checksums": checksums, "final sync": final.seconds },
      downtime: checksums + final.seconds,
      total: warm.seconds + checksums + final.seconds,
      // The VM keeps only its log and state in the work dir (no archive, no copy).
      vmExtraBytes: Math.max(0, vmWork - 64 * 1024),
      peakExtraBytes: Math.max(0, oursPeak - usedBytes(mount)),
      changed,
    };
  } finally {
    stopVmSshd = undefined;
    await vmSync.sshd.stop();
  }
}

/** The markdown table README shows, with what the numbers were measured on. */
function formatReport(
  options: BenchOptions,
  facts: { bytes: number; files: number; changed: number; loadBefore: string },
  plan: PipelineResult,
  ours: PipelineResult,
): string {
  const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], {
    encoding: "utf8",
  }).stdout.trim();
  const rsyncVersion = sh("rsync", ["--version"])
    .split("\n")[0]
    .replace(/\s+protocol.*/, "");
  const sshVersion = spawnSync("ssh", ["-V"], { encoding: "utf8" }).stderr.trim();
  const load = os.loadavg()[0].toFixed(1);
  const lines = [
    `Plex library over loopback, ${new Date().toISOString().slice(0, 10)}: ${formatBytes(facts.bytes)} data directory, ` +
      `${facts.files} files, ${formatBytes(facts.changed)} changed between the phases ` +
      `(${os.cpus().length} cores, ${os.cpus()[0]?.model ?? "unknown CPU"}; ${rsyncVersion}; ${sshVersion}; ` +
      `load average ${facts.loadBefore} before, ${load} after; commit ${commit || "unknown"}; ` +
      `${options.coldFinal ? "caches dropped before every phase" : "caches dropped before the warm copy and the plan"})`,
    "",
    "| pipeline | Plex downtime (s) | total (s) | stages (s) | extra disk on the VM | peak extra disk on target | identical |",
    "|---|---:|---:|---|---:|---:|---|",
    ...[plan, ours].map(
      (r) =>
        `| ${r.name} | ${r.downtime.toFixed(1)} | ${r.total.toFixed(1)} | ` +
        `${Object.entries(r.stages)
          .map(([k, v]) => `${k} ${v.toFixed(1)}`)
          .join(", ")} | ${formatBytes(r.vmExtraBytes)} | ${formatBytes(r.peakExtraBytes)} | ` +
        `${r.identical === undefined ? "not checked" : r.identical ? "yes" : "NO"} |`,
    ),
    "",
    `ours / plan downtime: ${(ours.downtime / plan.downtime).toFixed(3)} (target: at most 0.1)`,
  ];
  return `${lines.join("\n")}\n`;
}

async function main(): Promise<void> {
  const options = parseOptions();
  if (!options) return;
  const work = fs.mkdtempSync(path.join(options.workDir, "plex-bench-transfer-"));
  let target: ReturnType<typeof mountTarget> | undefined;
  const cleanup = () => {
    target?.unmount();
    target = undefined;
    if (!options.keep) fs.rmSync(work, { recursive: true, force: true });
  };
  process.once("SIGINT", () => {
    void (stopVmSshd?.() ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => {
        cleanup();
        process.exit(130);
      });
  });
  try {
    const sourceRoot = path.join(work, "vm");
    const dataDir = path.join(sourceRoot, INIT_PLEX_DATA);
    const { manifest, libraryBytes } = await generateLibrary(dataDir, options.size);
    target = mountTarget(work, libraryBytes);
    const loadBefore = os.loadavg()[0].toFixed(1);
    const library = { dataDir, bytes: manifest.bytes, libraryBytes };
    const ours = await runOurs(options, library, work, target.mount);

    dropCaches();
    log("plan: tar czf, python3 -m http.server, curl -o, tar xzf (all while Plex is down)...");
    const plan = await runPlan(sourceRoot, work, target.mount);
    log(`  ${plan.total.toFixed(1)} s`);

    if (options.verify) {
      log("comparing both copies with the stopped source...");
      const source = await digestTree(dataDir);
      plan.identical =
        compareTrees(
          source,
          await digestTree(path.join(target.mount, "plan-config", INIT_PLEX_DATA)),
        ).length === 0;
      ours.identical =
        compareTrees(
          source,
          await digestTree(path.join(target.mount, "ours-config", INIT_PLEX_DATA)),
          {
            nanoseconds: true,
            sparse: true,
          },
        ).length === 0;
    }
    const facts = {
      bytes: manifest.bytes,
      files: manifest.files,
      changed: ours.changed,
      loadBefore,
    };
    process.stdout.write(formatReport(options, facts, plan, ours));
    if (plan.identical === false || ours.identical === false) process.exitCode = 1;
  } finally {
    cleanup();
  }
}

main().catch((error: Error) => {
  process.stderr.write(`bench:transfer failed: ${error.stack ?? error.message}\n`);
  process.exit(1);
});
