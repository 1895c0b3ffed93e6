#!/usr/bin/env node
/*
 * plex-migrate <command> [options]: the project's command lines without npm's banner on stdout
 * (package.json "bin"; run it as `npx plex-migrate ...` or `./scripts/plex-migrate.js ...` in a
 * checkout). Each command's own file is the program (scripts/<command>.ts, conventions in
 * lib/cli.ts); this only picks it and runs it through ts-node, as `npm run <command>` does.
 */
"use strict";
const path = require("path");

const ROOT = path.resolve(__dirname, "..");
const COMMANDS = {
  import: "copy tautulli.db into PostgreSQL, verified (docs/import.md)",
  migrate: "apply, revert or list the PostgreSQL schema migrations",
  rehearse: "the whole migration on this machine, on copies",
};
const USAGE = `usage: plex-migrate <command> [options]

commands:
${Object.entries(COMMANDS)
  .map(([name, what]) => `  ${name.padEnd(9)} ${what}`)
  .join("\n")}

\`plex-migrate <command> --help\` shows a command's options.`;

function main(argv) {
  const [command, ...rest] = argv;
  if (command === "-h" || command === "--help") {
    process.stdout.write(`${USAGE}\n`);
    return Promise.resolve(0);
  }
  if (command === "--version") {
    process.stdout.write(`plex-migrate ${require(path.join(ROOT, "package.json")).version}\n`);
    return Promise.resolve(0);
  }
  if (!Object.hasOwn(COMMANDS, command ?? "")) {
    process.stderr.write(
      `error: ${command ? `unknown command "${command}"` : "a command is required"}; expected ${Object.keys(COMMANDS).join(", ")}\nsee 'plex-migrate --help'\n`,
    );
    return Promise.resolve(2);
  }
  require("ts-node").register({ transpileOnly: true, project: path.join(ROOT, "tsconfig.json") });
  return require(path.join(ROOT, "scripts", `${command}.ts`)).main(rest);
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (error) => {
    process.stderr.write(`error: ${String(error)}\n`);
    process.exitCode = 1;
  },
);
