/**
 * The exact text SourceVm hands to `remote.Command` for each VM step: a short command line and a
 * stdin "bundle" (the step's settings as `export` lines, then scripts/plex-migrate-source.sh itself)
 * that `bash -s` runs.
 *
 * Why stdin: sshd drops `environment` variables unless AcceptEnv allows them (Ubuntu's does not),
 * `sudo` resets the environment, a command line is visible in `ps` and is repeated in
 * @pulumi/command's error messages. Stdin reaches the script unchanged through ssh and sudo, keeps
 * the migration key's settings out of every command line, and needs no file uploaded beforehand
 * (so a `pulumi destroy` months later still runs the script it was created with).
 */
import type { SourceVmArgs } from "../../components/source-vm";
import * as fs from "fs";
import * as path from "path";
import { SETTINGS, STEP_PROTOCOL, type SourceStep } from "./protocol";

export { SOURCE_STEPS, type SourceStep } from "./protocol";

/** What the VM script needs to know; mirrors SourceVmArgs without the SSH connection. */
/** What the VM script reads: SourceVm's own settings, plus what a step adds for itself. */
export type SourceScriptSettings = Pick<
  SourceVmArgs,
  "workDir" | "plexDataDir" | "plexService" | "tautulliService" | "tautulliDbPath"
> &
  Partial<Pick<SourceVmArgs, "syncAllowedCidrs" | "rehearsal" | "plexVersion">> & {
    /** The migration's public key ("ssh-ed25519 AAAA..."), for authorize-sync and revoke-sync. */
    syncPublicKey?: string;
    /** Roll back even though the migrated Plex may be running. @default false */
    rollbackForce?: boolean;
  };

export const SCRIPT_PATH = path.join(__dirname, "..", "..", "scripts", "plex-migrate-source.sh");

export interface ScriptSources {
  /** scripts/plex-migrate-source.sh */
  script: string;
}

export function loadScriptSources(): ScriptSources {
  return { script: fs.readFileSync(SCRIPT_PATH, "utf8") };
}

/**
 * The PLEX_MIGRATE_* variables one step reads, and only those (STEP_PROTOCOL): a setting that a
 * step does not use never changes its inputs, so changing e.g. the allowed networks of the
 * migration key does not stop Plex again.
 */
export function stepEnvironment(
  step: SourceStep,
  settings: SourceScriptSettings,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of STEP_PROTOCOL[step].settings) {
    const { env: key, value } = SETTINGS[name];
    const v = value(settings);
    if (v === undefined) continue;
    if (/[\0\n\r]/.test(v)) throw new Error(`${key} must not contain NUL or line breaks`);
    env[key] = v;
  }
  return env;
}

/** POSIX shell single-quoting: the value comes through any sh/bash/dash verbatim. */
export function shellQuote(value: string): string {
  if (value.includes("\0")) throw new Error("a shell argument cannot contain NUL");
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The stdin of a step: `export` lines for `env`, then the script. `bash -s -- <step>` runs it. */
export function scriptBundle(
  step: SourceStep,
  env: Record<string, string>,
  sources: ScriptSources,
): string {
  const lines = [
    `# plex-migrate ${step}: settings, then scripts/plex-migrate-source.sh (run by bash -s)`,
  ];
  for (const [key, value] of Object.entries(env).sort(([a], [b]) => a.localeCompare(b))) {
    if (!/^PLEX_MIGRATE_[A-Z0-9_]+$/.test(key))
      throw new Error(`not a plex-migrate setting: ${key}`);
    lines.push(`export ${key}=${shellQuote(value)}`);
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
