/**
 * The rehearsal report for people: a Markdown document (also what the terminal shows) that a Plex
 * admin can act on. The JSON form is the RehearsalReport object itself, or, when the rehearsal
 * failed, a FailedRehearsal saying which step failed, what its exit code means and where the log
 * is. rehearseWithReport runs a rehearsal and writes report.md and report.json either way.
 */
import * as fs from "fs";
import * as path from "path";
import { formatSummary } from "../import/report";
import { formatOfflineVerification } from "../plex/verify-offline";
import {
  checkPlexDir,
  checkTautulliDb,
  createRehearsalDir,
  mib,
  RehearsalInputError,
  RehearsalOptions,
  RehearsalReport,
  runRehearsal,
  StepFailure,
} from "./rehearse";

function duration(seconds: number): string {
  if (seconds < 90) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds % 60);
  return rest === 0 ? `${minutes} min` : `${minutes} min ${rest} s`;
}

function rate(bytesPerSecond: number | undefined): string {
  return bytesPerSecond === undefined ? "" : `${(bytesPerSecond / 1e6).toFixed(0)} MB/s`;
}

export function formatMarkdown(report: RehearsalReport): string {
  const lines: string[] = [];
  const ok =
    report.transfer.identical &&
    report.inputs.unchanged.plexDir &&
    report.inputs.unchanged.tautulliDb;
  lines.push(`# plex-migrate rehearsal: ${ok ? "PASSED" : "PROBLEMS FOUND"}`, "");
  lines.push(
    `Ran ${report.startedAt} for ${duration(report.seconds)}. Plex data: ${report.inputs.plexDir}${report.inputs.plexDirGenerated ? " (generated sample)" : ""}; Tautulli: ${report.inputs.tautulliDb}${report.inputs.tautulliDbGenerated ? " (generated sample)" : ""}.`,
    "",
  );

  lines.push("## Plex", "");
  lines.push("| | |", "|---|---|");
  lines.push(
    `| Plex version on the VM | ${report.plex.version} (from ${report.plex.versionSource}) |`,
  );
  lines.push(
    `| Image the pod will run | plexinc/pms-docker:${report.plex.imageTag} (same version: no database upgrade) |`,
  );
  lines.push(`| Library | ${mib(report.plex.libraryBytes)} in ${report.plex.libraryFiles} files |`);
  lines.push(
    `| Plex databases | ${report.plex.databasesOk ? "ok" : "INTEGRITY PROBLEM"} (checked with ${report.plex.integrityTool}) |`,
  );
  lines.push(
    `| Recommended config volume (plexConfigSize auto) | ${report.plex.recommendedConfigSize} |`,
  );
  lines.push(
    `| Archive | ${mib(report.archive.bytes)} ${report.archive.format} (${report.archive.compression}), ${(report.archive.ratio * 100).toFixed(0)}% of the library |`,
  );
  lines.push(
    `| Imported tree vs source | ${report.transfer.identical ? `identical (${report.transfer.filesCompared} files: content, modes, mtimes, symlinks)` : `${report.transfer.differences.length} DIFFERENCES`} |`,
  );
  lines.push(
    `| Inputs after the rehearsal | ${report.inputs.unchanged.plexDir && report.inputs.unchanged.tautulliDb ? "unchanged (checksums before = after)" : "CHANGED"} |`,
  );
  lines.push("");
  if (!report.transfer.identical) {
    lines.push("Differences:", "", ...report.transfer.differences.map((d) => `- ${d}`), "");
  }

  lines.push(...formatOfflineVerification(report.verification), "");

  lines.push("## Measured here", "", "| step | time | throughput |", "|---|---|---|");
  for (const t of report.timings)
    lines.push(`| ${t.step} | ${duration(t.seconds)} | ${rate(t.bytesPerSecond)} |`);
  lines.push("");

  lines.push(
    `## Projected Plex downtime for the real run: about ${duration(report.downtime.projectedSeconds)}`,
    "",
  );
  lines.push("| part | time | basis |", "|---|---|---|");
  for (const p of report.downtime.parts)
    lines.push(`| ${p.step} | ${duration(p.seconds)} | ${p.basis} |`);
  lines.push("", "Assumptions:", "", ...report.downtime.assumptions.map((a) => `- ${a}`), "");

  lines.push("## Tautulli", "");
  lines.push(
    `Schema: ${report.tautulli.migrations.length} migrations applied, version ${report.tautulli.schemaVersion}.`,
    "",
  );
  lines.push("```", formatSummary(report.tautulli.import), "```", "");

  lines.push("## Warnings", "");
  lines.push(...(report.warnings.length ? report.warnings.map((w) => `- ${w}`) : ["- none"]), "");

  lines.push("## Next", "", "```bash", ...report.nextSteps, "```", "");
  lines.push(
    report.kept
      ? `Everything was kept in ${report.rehearsalDir}.`
      : `Work files were removed; this report is in ${report.rehearsalDir}.`,
  );
  return `${lines.join("\n")}\n`;
}

/** The report of a rehearsal that failed (report.json); everything it made is kept. */
export interface FailedRehearsal {
  reportVersion: 1;
  status: "FAILED";
  startedAt: string;
  finishedAt: string;
  seconds: number;
  rehearsalDir: string;
  /** The step that failed, as the log names it. */
  failedStep: string;
  error: string;
  /** When the step ran a program that failed: which, its exit code and what the code means. */
  program?: { script: string; exitCode: number; meaning: string };
  /** Every log line of the run, timestamped. */
  logPath: string;
  kept: true;
}

export interface RehearsalOutcome {
  passed: boolean;
  /** The rehearsal folder (report.md and report.json are in it). */
  dir: string;
  markdown: string;
  report: RehearsalReport | FailedRehearsal;
}

const PROJECT_ROOT = path.resolve(__dirname, "..", "..");

/**
 * What exit `code` of `script` means, from the script's own header (`# Exit codes:` followed by
 * `#   N meaning` lines, or `N meaning; N meaning` on the same lines).
 */
export function exitCodeMeaning(script: string, code: number): string {
  let text: string;
  try {
    text = fs.readFileSync(path.resolve(PROJECT_ROOT, script), "utf8");
  } catch {
    return `exit code ${code}`;
  }
  const lines = text.split("\n");
  const start = lines.findIndex((line) => /^#\s*Exit codes:/i.test(line));
  if (start === -1) return `exit code ${code}`;
  const block: string[] = [lines[start].replace(/^#\s*Exit codes:/i, "")];
  for (const line of lines.slice(start + 1)) {
    if (!/^#/.test(line) || /^#\s*$/.test(line)) break;
    block.push(line.replace(/^#/, ""));
  }
  const entries = new Map<number, string>();
  let current: number | undefined;
  for (const part of block.join("\n").split(/;|\n/)) {
    const match = /^\s*(\d+)\s+(.*)$/.exec(part);
    if (match) {
      current = Number(match[1]);
      entries.set(current, match[2].trim());
    } else if (current !== undefined && part.trim()) {
      entries.set(current, `${entries.get(current)} ${part.trim()}`);
    }
  }
  return entries.get(code) ?? `exit code ${code} (not documented in ${script})`;
}

/** The step a log line starts ("VM preflight (read-only)..." -> "VM preflight (read-only)"). */
function stepOf(line: string): string | undefined {
  if (/^\s/.test(line) || !line.trim()) return undefined;
  return line.trim().replace(/\.{3}$/, "");
}

export function formatFailureMarkdown(failed: FailedRehearsal): string {
  const lines = [
    "# plex-migrate rehearsal: FAILED",
    "",
    `Ran ${failed.startedAt} for ${duration(failed.seconds)}.`,
    "",
    "| | |",
    "|---|---|",
    `| Failed step | ${failed.failedStep} |`,
  ];
  if (failed.program) {
    lines.push(
      `| Program | ${failed.program.script} exited ${failed.program.exitCode}: ${failed.program.meaning} |`,
    );
  }
  lines.push(`| Log | ${failed.logPath} |`, `| Kept | everything, in ${failed.rehearsalDir} |`, "");
  lines.push("## Error", "", "```", failed.error, "```", "");
  lines.push(
    "Nothing outside the rehearsal folder was changed. Fix the cause, run the rehearsal again, and remove the folder when done.",
  );
  return `${lines.join("\n")}\n`;
}

function writeReports(dir: string, report: RehearsalReport | FailedRehearsal, markdown: string) {
  fs.writeFileSync(path.join(dir, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
  fs.writeFileSync(path.join(dir, "report.md"), markdown);
}

/**
 * Runs the rehearsal in a new folder of `options.workDir` (created if missing), logging every
 * line to rehearsal.log there, and writes report.md and report.json: the report when it ran to
 * the end, the failure (step, exit code meaning, log path) when it did not. Bad input throws
 * RehearsalInputError and leaves nothing behind.
 */
export async function rehearseWithReport(options: RehearsalOptions): Promise<RehearsalOutcome> {
  const startedAt = new Date();
  // Bad inputs are told before anything (the work directory included) is created.
  if (options.plexDir) checkPlexDir(path.resolve(options.plexDir));
  if (options.tautulliDb) checkTautulliDb(path.resolve(options.tautulliDb));
  const dir = createRehearsalDir(options.workDir);
  const logPath = path.join(dir, "rehearsal.log");
  const logFd = fs.openSync(logPath, "a", 0o644);
  let currentStep = "checking the inputs";
  const log = (line: string) => {
    fs.writeSync(logFd, `${new Date().toISOString()} ${line}\n`);
    currentStep = stepOf(line) ?? currentStep;
    options.log?.(line);
  };
  try {
    const report = await runRehearsal({ ...options, rehearsalDir: dir, log });
    if (!options.keep) fs.rmSync(logPath, { force: true });
    const markdown = formatMarkdown(report);
    writeReports(dir, report, markdown);
    const passed =
      report.transfer.identical &&
      report.inputs.unchanged.plexDir &&
      report.inputs.unchanged.tautulliDb;
    return { passed, dir, markdown, report };
  } catch (error) {
    if (error instanceof RehearsalInputError) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw error;
    }
    const message = (error as Error)?.message ?? String(error);
    log(`FAILED: ${message.split("\n")[0]}`);
    const failed: FailedRehearsal = {
      reportVersion: 1,
      status: "FAILED",
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      seconds: (Date.now() - startedAt.getTime()) / 1000,
      rehearsalDir: dir,
      failedStep: error instanceof StepFailure ? error.step : currentStep,
      error: message,
      ...(error instanceof StepFailure
        ? {
            program: {
              script: error.script,
              exitCode: error.exitCode,
              meaning: exitCodeMeaning(error.script, error.exitCode),
            },
          }
        : {}),
      logPath,
      kept: true,
    };
    const markdown = formatFailureMarkdown(failed);
    writeReports(dir, failed, markdown);
    return { passed: false, dir, markdown, report: failed };
  } finally {
    fs.closeSync(logFd);
  }
}
