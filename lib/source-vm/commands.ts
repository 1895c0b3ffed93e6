/**
 * The exact text SourceVm hands to `remote.Command` for each VM step: a short command line and a
 * stdin "bundle" (the step's settings as `export` lines, the archive server's source when serving,
 * then scripts/plex-migrate-source.sh itself) that `bash -s` runs.
 *
 * Why stdin: sshd drops `environment` variables unless AcceptEnv allows them (Ubuntu's does not),
 * `sudo` resets the environment, a command line is visible in `ps` and is repeated in
 * @pulumi/command's error messages. Stdin reaches the script unchanged through ssh and sudo, keeps
 * the serving token out of every command line, and needs no file uploaded beforehand (so a
 * `pulumi destroy` months later still runs the script it was created with).
 */
import * as fs from "fs";
import * as path from "path";
import type { ArchiveCompression } from "../config";

export type SourceStep = "preflight" | "stop" | "archive" | "serve" | "stop-serving" | "rollback";
export const SOURCE_STEPS: readonly SourceStep[] = [
  "preflight",
  "stop",
  "archive",
  "serve",
  "stop-serving",
  "rollback",
];

/** What the VM script needs to know; mirrors SourceVmArgs without the SSH connection. */
export interface SourceScriptSettings {
  workDir: string;
  plexDataDir: string;
  plexService: string;
  tautulliService: string;
  tautulliDbPath: string;
  archiveExcludes: string[];
  archiveCompression: ArchiveCompression;
  serve: { address: string; port: number; lifetimeMinutes: number; allowedCidrs: string[] };
  keepArchive: boolean;
  /** Run without systemctl/dpkg-query (a machine without Plex). @default false */
  rehearsal?: boolean;
  /** Plex version to report instead of asking dpkg-query. */
  plexVersion?: string;
}

export const SCRIPT_PATH = path.join(__dirname, "..", "..", "scripts", "plex-migrate-source.sh");
export const SERVER_PATH = path.join(__dirname, "..", "..", "scripts", "plex-migrate-serve.py");

export interface ScriptSources {
  /** scripts/plex-migrate-source.sh */
  script: string;
  /** scripts/plex-migrate-serve.py */
  server: string;
}

export function loadScriptSources(): ScriptSources {
  return {
    script: fs.readFileSync(SCRIPT_PATH, "utf8"),
    server: fs.readFileSync(SERVER_PATH, "utf8"),
  };
}

/**
 * The PLEX_MIGRATE_* variables one step reads, and only those: a setting that a step does not use
 * never changes its inputs, so changing e.g. the serve lifetime does not stop or archive again.
 */
export function stepEnvironment(
  step: SourceStep,
  settings: SourceScriptSettings,
): Record<string, string> {
  const env: Record<string, string> = { PLEX_MIGRATE_WORK_DIR: settings.workDir };
  const plex = () => {
    env.PLEX_MIGRATE_DATA_DIR = settings.plexDataDir;
    env.PLEX_MIGRATE_PLEX_SERVICE = settings.plexService;
  };
  const tautulli = () => {
    env.PLEX_MIGRATE_TAUTULLI_SERVICE = settings.tautulliService;
    env.PLEX_MIGRATE_TAUTULLI_DB = settings.tautulliDbPath;
  };
  const archive = () => {
    env.PLEX_MIGRATE_EXCLUDES = settings.archiveExcludes.join(",");
    env.PLEX_MIGRATE_COMPRESSION = settings.archiveCompression;
  };
  switch (step) {
    case "preflight":
      plex();
      tautulli();
      archive();
      break;
    case "stop":
      plex();
      tautulli();
      break;
    case "archive":
      env.PLEX_MIGRATE_DATA_DIR = settings.plexDataDir;
      env.PLEX_MIGRATE_TAUTULLI_DB = settings.tautulliDbPath;
      archive();
      break;
    case "serve":
      env.PLEX_MIGRATE_SERVE_ADDRESS = settings.serve.address;
      env.PLEX_MIGRATE_SERVE_PORT = String(settings.serve.port);
      env.PLEX_MIGRATE_SERVE_LIFETIME_MINUTES = String(settings.serve.lifetimeMinutes);
      env.PLEX_MIGRATE_SERVE_ALLOWED_CIDRS = settings.serve.allowedCidrs.join(",");
      break;
    case "stop-serving":
      env.PLEX_MIGRATE_KEEP_ARCHIVE = settings.keepArchive ? "1" : "0";
      break;
    case "rollback":
      env.PLEX_MIGRATE_PLEX_SERVICE = settings.plexService;
      env.PLEX_MIGRATE_TAUTULLI_SERVICE = settings.tautulliService;
      break;
  }
  if (settings.rehearsal) env.PLEX_MIGRATE_REHEARSAL = "1";
  if (settings.plexVersion && (step === "preflight" || step === "stop")) {
    env.PLEX_MIGRATE_PLEX_VERSION = settings.plexVersion;
  }
  for (const [key, value] of Object.entries(env)) {
    if (/[\0\n\r]/.test(value)) throw new Error(`${key} must not contain NUL or line breaks`);
  }
  return env;
}

/** POSIX shell single-quoting: the value comes through any sh/bash/dash verbatim. */
export function shellQuote(value: string): string {
  if (value.includes("\0")) throw new Error("a shell argument cannot contain NUL");
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

const SERVER_HEREDOC = "PLEX_MIGRATE_SERVE_PY_END";

/**
 * The stdin of a step: `export` lines for `env` (plus the serving token, never on a command
 * line), the archive server's source for `serve`, then the script. `bash -s -- <step>` runs it.
 */
export function scriptBundle(
  step: SourceStep,
  env: Record<string, string>,
  sources: ScriptSources,
  secrets: { serveToken?: string } = {},
): string {
  const lines = [
    `# plex-migrate ${step}: settings, then scripts/plex-migrate-source.sh (run by bash -s)`,
  ];
  for (const [key, value] of Object.entries(env).sort(([a], [b]) => a.localeCompare(b))) {
    if (!/^PLEX_MIGRATE_[A-Z0-9_]+$/.test(key))
      throw new Error(`not a plex-migrate setting: ${key}`);
    lines.push(`export ${key}=${shellQuote(value)}`);
  }
  if (secrets.serveToken !== undefined) {
    if (!/^[A-Za-z0-9_-]{22,128}$/.test(secrets.serveToken)) {
      throw new Error("the serving token must be 22-128 URL-safe characters");
    }
    lines.push(`export PLEX_MIGRATE_SERVE_TOKEN=${shellQuote(secrets.serveToken)}`);
  }
  if (step === "serve") {
    if (sources.server.split("\n").includes(SERVER_HEREDOC)) {
      throw new Error(`plex-migrate-serve.py must not contain a line "${SERVER_HEREDOC}"`);
    }
    lines.push(`PLEX_MIGRATE_SERVER_PY_SOURCE=$(cat <<'${SERVER_HEREDOC}'`);
    lines.push(sources.server.replace(/\n+$/, ""));
    lines.push(SERVER_HEREDOC, ")", "export PLEX_MIGRATE_SERVER_PY_SOURCE");
  }
  // The script's own shebang line would be a comment here; `main "$@"` is its last line, so
  // bash has read all of stdin before any command of the step runs.
  lines.push(sources.script.replace(/\n+$/, ""));
  return `${lines.join("\n")}\n`;
}

export interface RemoteUser {
  /** SSH user on the VM. */
  user: string;
  /** Use `sudo -n` when the user is not root. */
  sudo: boolean;
}

/**
 * The command line for a step. Root (or sudo disabled) runs `bash -s -- <step>`; anyone else goes
 * through `sudo -n`, checked first so a missing sudo rule gives a message that says what to do.
 */
export function remoteCommandLine(step: SourceStep, who: RemoteUser): string {
  const run = `bash -s -- ${step}`;
  if (who.user === "root" || !who.sudo) return run;
  const help =
    `plex-migrate: the VM user ${who.user} needs passwordless sudo for the ${step} step ` +
    `("sudo -n bash" was refused). Add a sudoers rule such as "${who.user} ALL=(root) NOPASSWD: ALL" ` +
    `(visudo -f /etc/sudoers.d/plex-migrate), or set vmUser to root.`;
  return `if sudo -n -l bash >/dev/null 2>&1; then exec sudo -n -- ${run}; else echo ${shellQuote(help)} >&2; exit 126; fi`;
}

/** http://host:port/<token>/<name>, with IPv6 literals bracketed. */
export function servedUrl(host: string, port: number, token: string, name: string): string {
  const hostPart = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `http://${hostPart}:${port}/${token}/${encodeURIComponent(name)}`;
}
