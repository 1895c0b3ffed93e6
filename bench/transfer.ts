/**
 * `npm run bench:transfer -- [--size 2GB] [--work-dir DIR] [--keep] [--no-verify]`
 *
 * Moves one generated Plex data directory over loopback twice and prints a table:
 *
 *   plan:  tar czf to a file -> python3 -m http.server -> curl -o to a file -> tar xzf (-> rm)
 *   ours:  plex-migrate-source.sh archive (tar | zstd -T0 | tee file | sha256sum) -> serve (the
 *          Range server) -> plex-init.sh (curl | tee sha256sum | zstd -d | tar -x into staging,
 *          verify, chown, rename)
 *
 * Each is timed from the start of archiving (Plex already stopped) to the library being complete
 * on the target. The target is a fresh ext4 file system on a loop device, sampled every 50 ms, so
 * "peak extra disk" is exact: the most the target held beyond the finished library. The plan's
 * download lands on the target too (in the pod: the node's disk, /tmp of the init container). Page
 * caches are dropped before each pipeline so neither reads a warm source. Needs root.
 */
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { parseArgs } from "util";
import { compareTrees, digestTree, generatePlexTree } from "../lib/samples/plex-tree";
import { LocalSource, freePort, startPlexInit, startProcess } from "../lib/plex/local-run";

const DATA_ROOT = "Library/Application Support/Plex Media Server";
const MB = 1_000_000;

const USAGE = `usage: npm run bench:transfer -- [--size SIZE] [--work-dir DIR] [--keep] [--no-verify]

  --size SIZE     size of the generated Plex data directory, e.g. 2GB (default), 500MB, 1GiB
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
  total: number;
  archiveBytes: number;
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
    total,
    archiveBytes: fs.statSync(archive).size,
    peakExtraBytes: Math.max(0, peak - usedBytes(targetMount)),
  };
}

/** Ours: the VM script's archive + serve, then plex-init.sh streaming into the target. */
async function runOurs(
  dataDir: string,
  work: string,
  targetMount: string,
  libraryBytes: number,
): Promise<PipelineResult> {
  const config = path.join(targetMount, "ours-config");
  fs.mkdirSync(config);
  const vm = new LocalSource({
    dataDir,
    workDir: path.join(work, "ours-vm"),
    token: crypto.randomBytes(24).toString("base64url"),
    port: await freePort(),
  });
  const stages: Record<string, number> = {};
  const usage = sampleUsage(targetMount);
  const started = process.hrtime.bigint();
  let t = process.hrtime.bigint();
  const archive = await vm.archive();
  stages.archive = seconds(t);
  try {
    t = process.hrtime.bigint();
    await vm.serve();
    stages.serve = seconds(t);
    t = process.hrtime.bigint();
    const init = await startPlexInit({
      PLEX_CONFIG_DIR: config,
      PLEX_ARCHIVE_URL: vm.url(archive),
      PLEX_ARCHIVE_SHA256: archive.archive.sha256,
      PLEX_ARCHIVE_BYTES: String(archive.archive.bytes),
      PLEX_ARCHIVE_FORMAT: archive.archive.format,
      PLEX_LIBRARY_BYTES: String(libraryBytes),
      PLEX_INIT_INSTALL_TOOLS: "never",
    }).done;
    if (init.code !== 0) throw new Error(`plex-init.sh failed (${init.code}): ${init.stderr}`);
    stages["download+extract"] = seconds(t);
  } finally {
    await vm.stopServing().catch(() => undefined);
  }
  const total = seconds(started);
  const peak = usage.stop();
  return {
    name: "ours: tar + zstd → Range server → plex-init.sh (streamed)",
    stages,
    total,
    archiveBytes: archive.archive.bytes,
    peakExtraBytes: Math.max(0, peak - usedBytes(targetMount)),
  };
}

function formatBytes(bytes: number): string {
  if (bytes < 10 * MB) return `${(bytes / MB).toFixed(1)} MB`;
  return `${Math.round(bytes / MB)} MB`;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        size: { type: "string", default: "2GB" },
        "work-dir": { type: "string" },
        keep: { type: "boolean", default: false },
        "no-verify": { type: "boolean", default: false },
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
    return;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write("bench:transfer needs root (loop-mounted target, dropping caches)\n");
    process.exit(2);
  }
  const size = parseSize(values.size ?? "2GB");
  const base = values["work-dir"] ?? os.tmpdir();
  const work = fs.mkdtempSync(path.join(base, "plex-bench-transfer-"));
  const log = (line: string) => process.stderr.write(`[bench:transfer] ${line}\n`);
  const mount = path.join(work, "target");
  const image = path.join(work, "target.img");
  let mounted = false;
  let loopDevice = "";
  const cleanup = () => {
    if (mounted) spawnSync("umount", [mount]);
    if (loopDevice) spawnSync("losetup", ["-d", loopDevice]);
    mounted = false;
    loopDevice = "";
    if (!values.keep) fs.rmSync(work, { recursive: true, force: true });
  };
  process.once("SIGINT", () => {
    cleanup();
    process.exit(130);
  });
  try {
    const sourceRoot = path.join(work, "vm");
    const dataDir = path.join(sourceRoot, DATA_ROOT);
    fs.mkdirSync(dataDir, { recursive: true });
    // Plex-like mix: many small metadata files (1-40 KiB), a few large Media index files, and
    // posters/thumbnails/logs (64 KiB - 2 MiB) for the rest.
    const metadataFiles = Math.max(1000, Math.round(size / 100_000));
    log(`generating a ${formatBytes(size)} Plex data directory (${metadataFiles} small files)...`);
    const manifest = await generatePlexTree(dataDir, {
      seed: 42,
      metadataFiles,
      largeFiles: 4,
      largeFileBytes: Math.max(4 * 1024 * 1024, Math.round(size / 40)),
      totalBytes: size,
    });
    const libraryBytes = Number(sh("du", ["-s", "-B1", dataDir]).split("\t")[0]);
    log(
      `  ${manifest.files} files, ${manifest.directories} directories, ${manifest.symlinks} symlinks, ` +
        `${formatBytes(manifest.bytes)} (${formatBytes(libraryBytes)} on disk)`,
    );

    // A target file system of its own: 2.5x the library plus 1 GB, sparse.
    const imageBytes = Math.ceil((libraryBytes * 2.5 + 1e9) / 4096) * 4096;
    fs.closeSync(fs.openSync(image, "w"));
    fs.truncateSync(image, imageBytes);
    sh("mkfs.ext4", ["-q", "-F", "-m", "0", image]);
    loopDevice = sh("losetup", ["--find", "--show", image]).trim();
    fs.mkdirSync(mount);
    sh("mount", [loopDevice, mount]);
    mounted = true;
    log(`target: ext4 on ${loopDevice} (${formatBytes(imageBytes)}) at ${mount}`);

    const loadBefore = os.loadavg()[0].toFixed(1);
    dropCaches();
    log("plan: tar czf, python3 -m http.server, curl -o, tar xzf ...");
    const plan = await runPlan(sourceRoot, work, mount);
    log(`  ${plan.total.toFixed(1)} s`);

    dropCaches();
    log("ours: plex-migrate-source.sh archive + serve, plex-init.sh ...");
    const ours = await runOurs(dataDir, work, mount, libraryBytes);
    log(`  ${ours.total.toFixed(1)} s`);

    if (!values["no-verify"]) {
      log("comparing both imported trees with the source...");
      const source = await digestTree(dataDir);
      for (const [result, dir] of [
        [plan, "plan-config"],
        [ours, "ours-config"],
      ] as const) {
        const target = await digestTree(path.join(mount, dir, DATA_ROOT));
        result.identical = compareTrees(source, target).length === 0;
      }
    }

    const stageNames = ["archive", "serve", "download", "extract", "download+extract"];
    const cell = (r: PipelineResult, s: string) =>
      r.stages[s] === undefined ? "–" : r.stages[s].toFixed(1);
    const load = os.loadavg()[0].toFixed(1);
    const lines = [
      `Plex transfer over loopback: ${formatBytes(manifest.bytes)} data directory, ${manifest.files} files ` +
        `(${os.cpus().length} cores, ${os.cpus()[0]?.model ?? "unknown CPU"}; load average ${loadBefore} before, ${load} after)`,
      "",
      `| pipeline | ${stageNames.map((s) => `${s} (s)`).join(" | ")} | total (s) | archive | peak extra disk on target | identical |`,
      `|---|${stageNames.map(() => "---:").join("|")}|---:|---:|---:|---|`,
      ...[plan, ours].map(
        (r) =>
          `| ${r.name} | ${stageNames.map((s) => cell(r, s)).join(" | ")} | ${r.total.toFixed(1)} | ` +
          `${formatBytes(r.archiveBytes)} | ${formatBytes(r.peakExtraBytes)} | ` +
          `${r.identical === undefined ? "not checked" : r.identical ? "yes" : "NO"} |`,
      ),
      "",
      `ours / plan wall time: ${(ours.total / plan.total).toFixed(2)} (target: at most 0.50)`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
    if (plan.identical === false || ours.identical === false) process.exitCode = 1;
  } finally {
    cleanup();
  }
}

main().catch((error: Error) => {
  process.stderr.write(`bench:transfer failed: ${error.stack ?? error.message}\n`);
  process.exit(1);
});
