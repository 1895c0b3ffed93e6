/**
 * `npm run rehearse -- [--plex-dir DIR] [--tautulli-db FILE] [--work-dir DIR] [--keep]`
 *
 * The whole migration on this machine with the real pieces, on copies (lib/rehearsal). Without
 * arguments it generates a sample Plex library and Tautulli database. Prints the report and
 * writes it as report.json and report.md. Exit codes: 0 passed, 1 failed or problems found,
 * 2 bad input (nothing was touched).
 */
import * as fs from "fs";
import * as path from "path";
import { parseArgs } from "util";
import type * as RehearsalModule from "../lib/rehearsal/rehearse";
import type * as ReportModule from "../lib/rehearsal/report";

const USAGE = `usage: npm run rehearse -- [--plex-dir DIR] [--tautulli-db FILE] [--work-dir DIR] [--keep]
                              [--link-mbps N] [--pod-start-seconds N] [--sample standard|small]

  --plex-dir DIR        Plex data directory (the folder holding Preferences.xml); read only.
                        Default: a generated sample library.
  --tautulli-db FILE    tautulli.db to import (a -wal beside it is included); read only.
                        Default: a generated sample database.
  --work-dir DIR        where the rehearsal folder is created (default: the OS temp dir).
  --keep                keep the archive, the imported tree and the PostgreSQL data dir.
  --link-mbps N         VM-to-cluster network speed for the downtime projection (default 1000).
  --pod-start-seconds N assumed Plex pod start time for the projection (default 120).
  --sample SIZE         size of the generated sample: standard (default) or small.`;

function fail(message: string, code: number): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        "plex-dir": { type: "string" },
        "tautulli-db": { type: "string" },
        "work-dir": { type: "string" },
        keep: { type: "boolean", default: false },
        "link-mbps": { type: "string" },
        "pod-start-seconds": { type: "string" },
        sample: { type: "string" },
        help: { type: "boolean", default: false },
      },
      strict: true,
    }));
  } catch (err) {
    fail(`${(err as Error).message}\n\n${USAGE}`, 2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const positive = (name: string, text: string | undefined) => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0)
      fail(`--${name} must be a positive number, got "${text}"\n\n${USAGE}`, 2);
    return n;
  };
  if (values.sample && !["standard", "small"].includes(values.sample)) {
    fail(`--sample must be standard or small, got "${values.sample}"`, 2);
  }
  // Loaded after the arguments are checked: a typo gets its answer at once.
  const { RehearsalInputError, runRehearsal } =
    require("../lib/rehearsal/rehearse") as typeof RehearsalModule;
  const { formatMarkdown } = require("../lib/rehearsal/report") as typeof ReportModule;
  const started = Date.now();
  const log = (line: string) => {
    const t = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
    process.stderr.write(`[rehearse ${t}s] ${line}\n`);
  };
  try {
    const report = await runRehearsal({
      plexDir: values["plex-dir"],
      tautulliDb: values["tautulli-db"],
      workDir: values["work-dir"],
      keep: values.keep,
      linkMbps: positive("link-mbps", values["link-mbps"]),
      podStartSeconds: positive("pod-start-seconds", values["pod-start-seconds"]),
      sample: values.sample as "standard" | "small" | undefined,
      log,
    });
    const markdown = formatMarkdown(report);
    fs.writeFileSync(
      path.join(report.rehearsalDir, "report.json"),
      `${JSON.stringify(report, null, 2)}\n`,
    );
    fs.writeFileSync(path.join(report.rehearsalDir, "report.md"), markdown);
    process.stdout.write(
      `\n${markdown}\nReport: ${path.join(report.rehearsalDir, "report.md")} and report.json\n`,
    );
    const passed =
      report.transfer.identical &&
      report.inputs.unchanged.plexDir &&
      report.inputs.unchanged.tautulliDb;
    process.exitCode = passed ? 0 : 1;
  } catch (err) {
    if (err instanceof RehearsalInputError) fail(`plex-migrate rehearse: ${err.message}`, 2);
    fail(`plex-migrate rehearse failed: ${(err as Error).message}`, 1);
  }
}

void main();
