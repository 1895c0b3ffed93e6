/**
 * The sync flow's two VM steps, authorize-sync and revoke-sync (the script's cmd_authorize_sync
 * and cmd_revoke_sync): the settings each reads and their PLEX_MIGRATE_* variables. They join
 * protocol.ts's table together with the script functions that run them, whose test checks that
 * table and script agree; until then SourceVm builds their environment here.
 */
import type { SourceScriptSettings } from "./commands";

export type SyncStep = "authorize-sync" | "revoke-sync";

/** The environment `step` reads: the migration's public key, and for authorize-sync its scope. */
export function syncStepEnvironment(
  step: SyncStep,
  settings: SourceScriptSettings,
): Record<string, string> {
  const key = settings.syncPublicKey?.trim() ?? "";
  if (!/^ssh-ed25519 [A-Za-z0-9+/]+={0,3}$/.test(key)) {
    throw new Error(
      `the ${step} step needs the migration's ed25519 public key ("ssh-ed25519 AAAA...")`,
    );
  }
  const env: Record<string, string> = {
    PLEX_MIGRATE_WORK_DIR: settings.workDir,
    PLEX_MIGRATE_SYNC_PUBLIC_KEY: key,
  };
  if (step === "authorize-sync") {
    env.PLEX_MIGRATE_DATA_DIR = settings.plexDataDir;
    env.PLEX_MIGRATE_SYNC_ALLOWED_CIDRS = (settings.syncAllowedCidrs ?? []).join(",");
  }
  if (settings.rehearsal) env.PLEX_MIGRATE_REHEARSAL = "1";
  for (const [name, value] of Object.entries(env)) {
    if (/[\0\n\r]/.test(value)) throw new Error(`${name} must not contain NUL or line breaks`);
  }
  return env;
}
