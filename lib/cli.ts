/**
 * The conventions every command line of this project follows (`plex-migrate import|migrate|
 * rehearse`, also run as `npm run <name> --`):
 *
 * * `-h`/`--help` prints the usage on stdout and exits 0; `--version` prints the version.
 * * Bad usage is found before any work starts and exits 2 with one line `error: ...` and the
 *   hint `see 'plex-migrate <command> --help'` on stderr.
 * * Any other failure is one `error: ...` line (plus what the message adds) on stderr, with the
 *   command's exit code for it; URLs it quotes are redacted (lib/redact.ts).
 * * stdout carries results only (with `--json`: exactly one JSON document); progress, logs and
 *   notices go to stderr.
 *
 * Options are parsed by node's util.parseArgs (strict: unknown options and missing values are
 * usage errors).
 */
import * as fs from "fs";
import * as path from "path";
import { parseArgs, type ParseArgsConfig } from "util";
import { pgClientConfig } from "./postgres/client-config";
import { redactMessage } from "./redact";

/** The database URL may come from this variable instead of the command line (keeps it out of `ps`). */
export const DATABASE_URL_ENV = "PLEX_MIGRATE_DATABASE_URL";

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether stderr is a terminal (then a progress line may be redrawn in place). */
  isTty: boolean;
}

export const processIo: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  isTty: Boolean(process.stderr.isTTY),
};

/** Bad usage: exit 2 before any work. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig["options"]>;

export interface CliSpec<O extends Options> {
  /** `import`, `migrate`, `rehearse`: the command as `plex-migrate <command>` names it. */
  command: string;
  /** The help text (`--help`), starting with its `usage:` line(s). */
  usage: string;
  /** util.parseArgs options; `help` and `version` are added. */
  options: O;
  /** Whether positional arguments are accepted (the command checks them). @default false */
  positionals?: boolean;
}

const COMMON = {
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
} as const;

type Parsed<O extends Options> = ReturnType<
  typeof parseArgs<{ options: O & typeof COMMON; allowPositionals: true; strict: true }>
>;

export interface CliRun<O extends Options> {
  values: Parsed<O>["values"];
  positionals: string[];
  env: NodeJS.ProcessEnv;
  io: CliIo;
}

export interface CliDefinition<O extends Options> extends CliSpec<O> {
  /** URLs the command was given (redacted wherever an error message quotes them). */
  urls?: (run: Omit<CliRun<O>, "io">) => (string | undefined)[];
  /** Does the work; returns the exit code. May throw UsageError while it validates. */
  run: (run: CliRun<O>) => Promise<number>;
  /** The exit code of a failure that is not a usage error. @default 1 */
  exitCode?: (error: unknown) => number;
}

/** A command's entry point: its exit code for `argv` (tests pass their own env and io). */
export type CliMain = (argv: string[], env?: NodeJS.ProcessEnv, io?: CliIo) => Promise<number>;

/** The entry point of the command `definition` describes. */
export function cliMain<O extends Options>(definition: CliDefinition<O>): CliMain {
  return (argv, env = process.env, io = processIo) => runCli(definition, argv, env, io);
}

/** `plex-migrate` and this checkout's version (package.json). */
export function programVersion(): string {
  const manifest = JSON.parse(
    fs.readFileSync(path.resolve(__dirname, "..", "package.json"), "utf8"),
  ) as { version: string };
  return manifest.version;
}

function usageFailure(io: CliIo, command: string, message: string): number {
  io.stderr(`error: ${message}\nsee 'plex-migrate ${command} --help'\n`);
  return 2;
}

/** Runs one command by the conventions above; resolves to its exit code (never rejects). */
export async function runCli<O extends Options>(
  definition: CliDefinition<O>,
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  io: CliIo = processIo,
): Promise<number> {
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...definition.options, ...COMMON },
      allowPositionals: true,
      strict: true,
    }) as Parsed<O>;
  } catch (error) {
    return usageFailure(io, definition.command, (error as Error).message);
  }
  const values = parsed.values as Parsed<O>["values"] & { help?: boolean; version?: boolean };
  if (values.help) {
    io.stdout(`${definition.usage}\n`);
    return 0;
  }
  if (values.version) {
    io.stdout(`plex-migrate ${definition.command} ${programVersion()}\n`);
    return 0;
  }
  if (!definition.positionals && parsed.positionals.length > 0) {
    return usageFailure(
      io,
      definition.command,
      `unexpected argument "${parsed.positionals[0]}" (options start with --)`,
    );
  }
  const run = { values: parsed.values, positionals: parsed.positionals, env };
  let urls: (string | undefined)[] = [];
  try {
    urls = definition.urls?.(run) ?? [];
    return await definition.run({ ...run, io });
  } catch (error) {
    const message = redactMessage((error as Error)?.message ?? String(error), urls);
    if (error instanceof UsageError) return usageFailure(io, definition.command, message);
    io.stderr(`error: ${message}\n`);
    return definition.exitCode?.(error) ?? 1;
  }
}

/**
 * The database URL of `--database-url` or DATABASE_URL_ENV ("" when neither is set), checked
 * before any work: a URL that is not `postgres://user:password@host:port/database` is bad usage.
 */
export function databaseUrlOption(value: string | undefined, env: NodeJS.ProcessEnv): string {
  const url = value ?? env[DATABASE_URL_ENV] ?? "";
  if (!url) return "";
  const source = value !== undefined ? "--database-url" : DATABASE_URL_ENV;
  try {
    pgClientConfig(url);
  } catch (error) {
    throw new UsageError(`${source}: ${(error as Error).message}`);
  }
  return url;
}

/** A positive number option, or undefined when absent. */
export function positiveNumberOption(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw new UsageError(`--${name} must be a positive number, not "${text}"`);
  }
  return n;
}

/** Runs `main` as the program's entry point: its resolved value is the exit code. */
export function exitWith(main: Promise<number>): void {
  main.then(
    (code) => (process.exitCode = code),
    (error) => {
      process.stderr.write(`error: ${String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
