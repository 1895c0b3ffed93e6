/**
 * The rehearsal report for people: a Markdown document (also what the terminal shows) that a Plex
 * admin can act on. The JSON form is the RehearsalReport object itself.
 */
import { formatSummary } from "../import/report";
import { formatOfflineVerification } from "../plex/verify-offline";
import { mib, RehearsalReport } from "./rehearse";

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
