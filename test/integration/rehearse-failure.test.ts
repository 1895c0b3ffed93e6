/**
 * The rehearsal's folder and report. A rehearsal that fails (the real VM script refusing a
 * damaged Plex database, through the real CLI): the folder is kept, created with its missing
 * parents, and report.md/report.json say FAILED, the failing step, what the script's exit code
 * means and where the log is. With --keep a passing one keeps everything, and its timings count
 * bytes as bytes.
 */
import * as assert from "assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { RehearsalReport } from "../../lib/rehearsal/rehearse";
import { rehearseWithReport, type FailedRehearsal } from "../../lib/rehearsal/report";
import { generatePlexTree } from "../../lib/samples/plex-tree";
import { generateTautulliDb } from "../../lib/samples/tautulli-db";

const ROOT = path.resolve(__dirname, "..", "..");

describe("the rehearsal folder and report (plex-migrate rehearse, real VM script)", function () {
  this.timeout(180_000);
  let scratch: string;
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-rehearse-failure-"));
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it("keeps its folder and reports the failing step, its exit code's meaning and the log", async () => {
    fs.mkdirSync(path.join(scratch, "inputs"));
    const plex = await generatePlexTree(path.join(scratch, "inputs", "Plex Media Server"), {
      metadataFiles: 20,
      largeFiles: 0,
    });
    // A damaged page in Plex's library database: the VM script's preflight refuses it (exit 3).
    const libraryDb = path.join(
      plex.dataDir,
      "Plug-in Support",
      "Databases",
      "com.plexapp.plugins.library.db",
    );
    const fd = fs.openSync(libraryDb, "r+");
    fs.writeSync(fd, Buffer.alloc(4096, 0x55), 0, 4096, 2 * 4096);
    fs.closeSync(fd);
    const tautulli = generateTautulliDb(path.join(scratch, "inputs", "tautulli.db"), { plays: 20 });
    const workDir = path.join(scratch, "work", "not", "there", "yet");

    const result = spawnSync(
      process.execPath,
      [
        path.join(ROOT, "scripts", "plex-migrate.js"),
        "rehearse",
        "--plex-dir",
        plex.dataDir,
        "--tautulli-db",
        tautulli.path,
        "--work-dir",
        workDir,
      ],
      { cwd: ROOT, encoding: "utf8", timeout: 170_000 },
    );
    assert.equal(result.status, 1, result.stderr);

    const [folder] = fs.readdirSync(workDir);
    const dir = path.join(workDir, folder);
    assert.match(folder, /^plex-migrate-rehearsal-/);
    const report = JSON.parse(
      fs.readFileSync(path.join(dir, "report.json"), "utf8"),
    ) as FailedRehearsal;
    assert.equal(report.status, "FAILED");
    assert.equal(report.failedStep, "VM preflight");
    assert.deepEqual(report.program, {
      script: "scripts/plex-migrate-source.sh",
      exitCode: 3,
      meaning:
        "refused: a check found something that would make the migration fail (nothing was changed).",
    });
    assert.match(report.error, /integrity check failed/);
    assert.equal(report.logPath, path.join(dir, "rehearsal.log"));
    const log = fs.readFileSync(report.logPath, "utf8");
    assert.match(log, /^\S+Z VM preflight \(read-only\)\.\.\.$/m);
    assert.match(log, /^\S+Z FAILED: The VM script's preflight step failed \(exit 3\)/m);
    assert.equal(report.kept, true);
    assert.equal(report.rehearsalDir, dir);

    const markdown = fs.readFileSync(path.join(dir, "report.md"), "utf8");
    assert.match(markdown, /^# plex-migrate rehearsal: FAILED$/m);
    assert.match(markdown, /\| Failed step \| VM preflight \|/);
    assert.match(markdown, /exited 3: refused: a check found something/);
    assert.ok(markdown.includes(`| Log | ${report.logPath} |`));
    assert.ok(result.stdout.includes(markdown), "the report is what stdout shows");
    // Everything it made is kept for a look.
    for (const kept of ["vm", "config-volume", "rehearsal.log"])
      assert.ok(fs.existsSync(path.join(dir, kept)), kept);
  });

  it("--keep keeps everything in the folder; the import's timing counts bytes and rows apart", async () => {
    const workDir = path.join(scratch, "kept");
    const outcome = await rehearseWithReport({ workDir, keep: true, sample: "small" });
    assert.equal(outcome.passed, true, outcome.markdown);
    const report = outcome.report as RehearsalReport;
    assert.equal(report.kept, true);
    const kept = fs.readdirSync(outcome.dir).sort();
    for (const name of [
      "rehearsal.log",
      "report.json",
      "report.md",
      "sample",
      "vm",
      "config-volume",
    ])
      assert.ok(kept.includes(name), `${name} kept (${kept.join(", ")})`);
    assert.ok(fs.readdirSync(path.join(outcome.dir, "config-volume")).length > 0);
    const timing = report.timings.find((t) => t.step === "tautulli import")!;
    const source = report.tautulli.import.source;
    assert.equal(timing.bytes, source.bytes + source.walBytes);
    assert.equal(timing.rows, report.tautulli.import.totals.rows);
    assert.notEqual(timing.bytes, timing.rows);
    const json = JSON.parse(fs.readFileSync(path.join(outcome.dir, "report.json"), "utf8"));
    assert.equal(
      json.timings.find((t: { step: string }) => t.step === "tautulli import").bytes,
      timing.bytes,
    );
  });
});
