/**
 * plex-migrate rehearse [--plex-dir DIR] [--tautulli-db FILE] [--work-dir DIR] [--keep]
 *
 * The whole migration on this machine with the real pieces, on copies (lib/rehearsal). Without
 * arguments it generates a sample Plex library and Tautulli database. Prints the report and
 * writes it as report.json and report.md in the rehearsal folder; a failed rehearsal keeps its
 * folder and writes the same two files, saying which step failed. Conventions: lib/cli.ts.
 *
 * Exit codes: 0 passed; 1 failed or problems found (see the report); 2 bad usage or input
 * (nothing was touched).
 */
import * as path from "path";
import {
  cliMain,
  CliRun,
  exitWith,
  positiveNumberOption,
  UsageError,
  type CliMain,
} from "../lib/cli";
import type * as ReportModule from "../lib/rehearsal/report";

const USAGE = `usage: plex-migrate rehearse [--plex-dir DIR] [--tautulli-db FILE] [--work-dir DIR] [--keep]
                             [--link-mbps N] [--pod-start-seconds N] [--sample standard|small]
       npm run -s rehearse -- [options]

The whole migration on this machine, on copies: the VM script's steps, the init container's
transfer, the comparison with the source, an embedded PostgreSQL, the migrations and the
Tautulli import. The inputs are only read.

options:
  --plex-dir DIR        Plex data directory (the folder holding Preferences.xml); read only.
                        Default: a generated sample library.
  --tautulli-db FILE    tautulli.db to import (a -wal beside it is included); read only.
                        Default: a generated sample database.
  --work-dir DIR        where the rehearsal folder is created (created if missing; default: the
                        OS temp dir).
  --keep                keep everything in the rehearsal folder (the copies, the PostgreSQL data
                        dir), not only the report.
  --link-mbps N         VM-to-cluster network speed for the downtime projection (default 1000).
  --pod-start-seconds N assumed Plex pod start time for the projection (default 120).
  --sample SIZE         size of the generated sample: standard (default) or small.
  -h, --help            show this help
  --version             show the version

exit codes: 0 passed; 1 failed or problems found (report.md says what); 2 bad usage or input
(nothing was touched).`;

const OPTIONS = {
  "plex-dir": { type: "string" },
  "tautulli-db": { type: "string" },
  "work-dir": { type: "string" },
  keep: { type: "boolean" },
  "link-mbps": { type: "string" },
  "pod-start-seconds": { type: "string" },
  sample: { type: "string" },
} as const;

async function rehearseCommand({ values, io }: CliRun<typeof OPTIONS>): Promise<number> {
  const linkMbps = positiveNumberOption("link-mbps", values["link-mbps"]);
  const podStartSeconds = positiveNumberOption("pod-start-seconds", values["pod-start-seconds"]);
  const sample = values.sample;
  if (sample !== undefined && sample !== "standard" && sample !== "small") {
    throw new UsageError(`--sample must be standard or small, not "${sample}"`);
  }
  // Loaded after the arguments are checked: a typo gets its answer at once.
  const { rehearseWithReport } = require("../lib/rehearsal/report") as typeof ReportModule;
  const started = Date.now();
  const log = (line: string) => {
    const t = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
    io.stderr(`[rehearse ${t}s] ${line}\n`);
  };
  const outcome = await rehearseWithReport({
    plexDir: values["plex-dir"],
    tautulliDb: values["tautulli-db"],
    workDir: values["work-dir"],
    keep: values.keep ?? false,
    linkMbps,
    podStartSeconds,
    sample,
    log,
  });
  io.stdout(
    `\n${outcome.markdown}\nReport: ${path.join(outcome.dir, "report.md")} and report.json\n`,
  );
  return outcome.passed ? 0 : 1;
}

export const main: CliMain = cliMain({
  command: "rehearse",
  usage: USAGE,
  options: OPTIONS,
  run: rehearseCommand,
  // Bad input: exit 2, told as the input error says it (with its fix).
  exitCode: (error) => ((error as Error)?.name === "RehearsalInputError" ? 2 : 1),
});

if (require.main === module) exitWith(main(process.argv.slice(2)));
