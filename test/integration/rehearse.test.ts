/**
 * `npm run rehearse` for real: the VM script (bash), plex-init.sh (sh), an embedded PostgreSQL,
 * the migrations and the import, on generated samples and on hostile inputs. The report must say
 * what the test knows it generated; hostile inputs must be refused with a clear message and left
 * exactly as they were (checksums).
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { autoConfigSize } from "../../lib/plex/sizing";
import { runRehearsal } from "../../lib/rehearsal/rehearse";
import {
  digestTree,
  generatePlexTree,
  PlexTreeManifest,
  sha256File,
} from "../../lib/samples/plex-tree";
import { generateTautulliDb, TautulliSample } from "../../lib/samples/tautulli-db";
import { writeForeignSqliteDb, writeNonSqliteFile } from "../../lib/samples/tautulli-hostile";

const ROOT = path.resolve(__dirname, "..", "..");

function cli(args: string[]) {
  return spawnSync(
    process.execPath,
    ["-r", "ts-node/register/transpile-only", path.join(ROOT, "scripts", "rehearse.ts"), ...args],
    { cwd: ROOT, encoding: "utf8", timeout: 240_000 },
  );
}

async function fingerprint(dir: string): Promise<string> {
  return JSON.stringify((await digestTree(dir)).entries);
}

async function fileFingerprint(file: string): Promise<string> {
  const parts = [];
  for (const suffix of ["", "-wal", "-shm"]) {
    if (fs.existsSync(file + suffix)) parts.push(`${suffix}:${await sha256File(file + suffix)}`);
  }
  return parts.join(" ");
}

describe("npm run rehearse (bash, sh, embedded PostgreSQL, SQLite)", function () {
  this.timeout(300_000);
  let scratch: string;
  let manifest: PlexTreeManifest;
  let tautulli: TautulliSample;

  before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-rehearse-test-"));
    fs.mkdirSync(path.join(scratch, "inputs"));
    manifest = await generatePlexTree(path.join(scratch, "inputs", "Plex Media Server"), {
      seed: 7,
      plexVersion: "1.40.1.8227-c0dd5a73e",
      metadataFiles: 250,
      largeFiles: 1,
      largeFileBytes: 1024 * 1024,
      mediaRoots: ["/mnt/nas-plex/Movies", "/srv/media/Kids TV"],
    });
    // A WAL with uncheckpointed plays: the rehearsal must read it without folding it into the file.
    tautulli = generateTautulliDb(path.join(scratch, "inputs", "tautulli.db"), {
      plays: 300,
      uncheckpointedPlays: 15,
      seed: 3,
    });
    assert.ok(tautulli.walBytes > 0, "the sample database has a -wal file");
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it("rehearses given inputs end to end, reports what they hold, and leaves them untouched", async () => {
    const plexBefore = await fingerprint(manifest.dataDir);
    const dbBefore = await fileFingerprint(tautulli.path);
    const workDir = fs.mkdtempSync(path.join(scratch, "work-"));
    const lines: string[] = [];

    const report = await runRehearsal({
      plexDir: manifest.dataDir,
      tautulliDb: tautulli.path,
      workDir,
      log: (line) => lines.push(line),
    });

    assert.strictEqual(report.plex.version, "1.40.1.8227-c0dd5a73e");
    assert.strictEqual(report.plex.imageTag, "1.40.1.8227-c0dd5a73e");
    assert.deepStrictEqual([...report.plex.mediaRoots].sort(), [...manifest.mediaRoots].sort());
    assert.strictEqual(report.plex.databasesOk, true);
    assert.strictEqual(
      report.plex.recommendedConfigSize,
      autoConfigSize(report.plex.libraryBytes, 50),
    );
    assert.ok(report.plex.libraryBytes >= manifest.bytes, "library bytes cover every file");
    assert.strictEqual(report.transfer.identical, true, report.transfer.differences.join("\n"));
    assert.strictEqual(report.transfer.filesCompared, manifest.files);
    assert.ok(report.archive.bytes > 0 && report.archive.ratio > 0 && report.archive.ratio < 1.05);
    assert.match(report.archive.sha256, /^[0-9a-f]{64}$/);

    // Every table imported with exactly the rows SQLite holds (WAL included), verified.
    const imported = Object.fromEntries(
      report.tautulli.import.tables.map((t) => [t.table, t.importedRows]),
    );
    for (const [table, rows] of Object.entries(tautulli.rowCounts)) {
      assert.strictEqual(imported[table], rows, `${table} rows`);
    }
    assert.strictEqual(report.tautulli.import.status, "imported");
    assert.strictEqual(report.tautulli.import.verification.checksums, "ok");
    assert.ok(report.tautulli.migrations.length > 0);

    // The projection adds up and names its assumptions.
    const sum = report.downtime.parts.reduce((s, p) => s + p.seconds, 0);
    assert.ok(Math.abs(sum - report.downtime.projectedSeconds) < 1e-6);
    assert.ok(report.downtime.assumptions.some((a) => a.includes("1000 Mbit/s")));
    assert.ok(
      report.warnings.some(
        (w) => w.includes("/srv/media/Kids TV") && w.includes("plexMediaVolumes"),
      ),
    );
    // The copy starts as the same server; its media is not on this machine, so it reads as unreadable.
    assert.deepStrictEqual(report.verification.identity, {
      expectedMachineIdentifier: manifest.processedMachineIdentifier,
      machineIdentifier: manifest.processedMachineIdentifier,
      same: true,
    });
    const movies = report.verification.sections.find((s) => s.title === "Movies");
    assert.ok(movies && movies.sampled > 0 && movies.readable === 0, JSON.stringify(movies));
    assert.strictEqual(movies.status, "unreadable");
    assert.ok(
      report.warnings.some((w) =>
        w.startsWith(
          `Library "Movies": none of ${movies.sampled} sampled files is readable on this machine`,
        ),
      ),
    );
    assert.ok(report.nextSteps.some((s) => s.startsWith("pulumi up")));
    assert.ok(
      lines.some((l) => l.includes("plex-init")),
      "progress lines were logged",
    );

    // Nothing written into the inputs, and nothing but the report dir left behind.
    assert.strictEqual(await fingerprint(manifest.dataDir), plexBefore);
    assert.strictEqual(await fileFingerprint(tautulli.path), dbBefore);
    assert.deepStrictEqual(report.inputs.unchanged, { plexDir: true, tautulliDb: true });
    assert.deepStrictEqual(fs.readdirSync(report.rehearsalDir), []);
  });

  it("runs with no inputs from the CLI: generates samples, prints and writes the report, cleans up", () => {
    const workDir = fs.mkdtempSync(path.join(scratch, "cli-"));
    const result = cli(["--sample", "small", "--work-dir", workDir]);
    assert.strictEqual(result.status, 0, result.stderr.slice(-3000));
    assert.match(result.stdout, /# plex-migrate rehearsal: PASSED/);
    assert.match(
      result.stdout,
      /Image the pod will run \| plexinc\/pms-docker:1\.41\.3\.9314-a0bfb8370/,
    );
    assert.match(result.stdout, /Projected Plex downtime for the real run: about/);
    assert.match(result.stdout, /Imported [\d,]+ rows from 22 tables/);
    assert.match(
      result.stdout,
      /## Verification of the copy\n\nIdentity Plex starts with: [0-9a-f]{40} \(the source's\)/,
    );
    assert.match(
      result.stdout,
      /\| Movies \| movie \| unreadable \| 0 \/ 5 \(\d+\) \| \/mnt\/nas-plex\/Movies \|/,
    );
    assert.match(result.stderr, /\[rehearse +[\d.]+s\] VM archive/);
    const [dir] = fs.readdirSync(workDir);
    const kept = fs.readdirSync(path.join(workDir, dir)).sort();
    assert.deepStrictEqual(kept, ["report.json", "report.md"]);
    const json = JSON.parse(fs.readFileSync(path.join(workDir, dir, "report.json"), "utf8"));
    assert.strictEqual(json.inputs.plexDirGenerated, true);
    assert.strictEqual(json.transfer.identical, true);
    assert.strictEqual(
      fs.readFileSync(path.join(workDir, dir, "report.md"), "utf8").trim(),
      result.stdout.split("\nReport: ")[0].trim(),
    );
  });

  it("refuses a directory that is not a Plex data directory and writes nothing", async () => {
    const notPlex = path.join(scratch, "not-plex");
    fs.mkdirSync(path.join(notPlex, "Movies"), { recursive: true });
    fs.writeFileSync(path.join(notPlex, "Movies", "film.mkv"), "not really a film");
    fs.writeFileSync(path.join(notPlex, "Preferences.xml"), "<Preferences/>");
    const before = await fingerprint(notPlex);
    const workDir = fs.mkdtempSync(path.join(scratch, "w-"));
    const result = cli([
      "--plex-dir",
      notPlex,
      "--tautulli-db",
      tautulli.path,
      "--work-dir",
      workDir,
    ]);
    assert.strictEqual(result.status, 2, result.stderr);
    assert.match(
      result.stderr,
      /is not a Plex data directory: it has no Plug-in Support\/Databases\/com\.plexapp\.plugins\.library\.db/,
    );
    assert.match(result.stderr, /Fix: give --plex-dir the folder that holds Preferences\.xml/);
    assert.strictEqual(await fingerprint(notPlex), before);
    assert.deepStrictEqual(fs.readdirSync(workDir), [], "no rehearsal folder left behind");

    const missing = cli(["--plex-dir", path.join(scratch, "nope")]);
    assert.strictEqual(missing.status, 2);
    assert.match(missing.stderr, /The Plex directory .*nope does not exist/);
  });

  it("refuses a database that is not Tautulli's and leaves it as it was", async () => {
    const foreign = path.join(scratch, "foreign.db");
    writeForeignSqliteDb(foreign);
    const notSqlite = path.join(scratch, "notes.txt");
    writeNonSqliteFile(notSqlite);
    for (const [file, message] of [
      [foreign, /is not a Tautulli database \(it has no session_history/],
      [notSqlite, /cannot be used: .*not an SQLite database/i],
    ] as const) {
      const before = await fileFingerprint(file);
      const result = cli([
        "--plex-dir",
        manifest.dataDir,
        "--tautulli-db",
        file,
        "--work-dir",
        scratch,
      ]);
      assert.strictEqual(result.status, 2, result.stderr);
      assert.match(result.stderr, message);
      assert.match(result.stderr, /Fix: give --tautulli-db Tautulli's own database file/);
      assert.strictEqual(await fileFingerprint(file), before, `${file} unchanged`);
    }
  });

  it("refuses a work directory without enough space, before writing anything", async () => {
    const small = fs.mkdtempSync(path.join(scratch, "tmpfs-"));
    const mount = spawnSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", small]);
    assert.strictEqual(mount.status, 0, `mounting a small tmpfs needs root: ${mount.stderr}`);
    try {
      const plexBefore = await fingerprint(manifest.dataDir);
      const result = cli([
        "--plex-dir",
        manifest.dataDir,
        "--tautulli-db",
        tautulli.path,
        "--work-dir",
        small,
      ]);
      assert.strictEqual(result.status, 2, result.stderr);
      assert.match(result.stderr, /has [\d.]+ MiB free; the rehearsal needs about [\d.]+ MiB/);
      assert.match(
        result.stderr,
        /Fix: give --work-dir a directory on a disk with more free space/,
      );
      assert.deepStrictEqual(fs.readdirSync(small), []);
      assert.strictEqual(await fingerprint(manifest.dataDir), plexBefore);
    } finally {
      spawnSync("umount", [small]);
    }
  });

  it("rejects unknown flags and bad numbers with the help hint", () => {
    const unknown = cli(["--plexdir", "/x"]);
    assert.strictEqual(unknown.status, 2);
    assert.match(
      unknown.stderr,
      /^error: Unknown option '--plexdir'.*\nsee 'plex-migrate rehearse --help'\n$/,
    );
    const bad = cli(["--link-mbps", "fast"]);
    assert.strictEqual(bad.status, 2);
    assert.match(bad.stderr, /--link-mbps must be a positive number, not "fast"/);
  });
});
