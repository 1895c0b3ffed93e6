/**
 * SourceVm: the VM side of the Plex move as `@pulumi/command` remote steps over SSH, in data-flow
 * order: preflight -> authorize-sync -> (the warm copy) -> stop ({@link SourceVm.stopAfter}) ->
 * (the final copy, the import) -> revoke-sync ({@link SourceVm.revokeSyncAfter}).
 *
 * Every step runs scripts/plex-migrate-source.sh, sent on stdin with the settings it reads (see
 * lib/source-vm/commands.ts). How often a step runs is the lifecycle rule of lib/source-vm/phases.ts:
 * once per generation. Until it succeeded, each `pulumi up` tries it again with the current
 * settings, script and connection; once it succeeded, only a new generation (a new resource name)
 * runs it again. Nothing else does: its inputs are all in `ignoreChanges`.
 *
 * `pulumi destroy` runs revoke-sync and, with rollbackOnDestroy, rollback, from two hook commands
 * that have only a `delete`. The cluster's Plex release depends on them ({@link destroyHooks}), so
 * they run after it is gone; nothing that is protected depends on them, so a refused delete of a
 * protected resource never skips them. With `retired` no step or hook contacts the VM again.
 */
import * as fs from "fs";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { isSafeAbsolutePath, isSystemdUnit, workDirInPlexData } from "../lib/checks";
import * as tls from "@pulumi/tls";
import type { SshConnection } from "../lib/import/ssh-download";
import {
  remoteCommandLine,
  RemoteUser,
  SCRIPT_PATH,
  scriptBundle,
  SourceScriptSettings,
  SourceStep,
  stepEnvironment,
} from "../lib/source-vm/commands";
import { hostKeyProblem, normalizeHostKey } from "../lib/source-vm/host-key";
import {
  DataOwner,
  FileDigest,
  parseStepOutput,
  PlexPreferences,
  PreviousState,
} from "../lib/source-vm/outputs";
import {
  FROZEN_STEP_INPUTS,
  MigrationGenerations,
  MigrationStep,
  generationProblems,
  retiredStepProblem,
  stepResourceName,
} from "../lib/source-vm/phases";

/** The admin SSH connection to the VM. */
export interface SourceVmConnection {
  /** VM host name or IP. */
  host: string;
  /** SSH port. */
  port: number;
  /** SSH user; steps run through `sudo -n` when it is not root and `sudo` is true. */
  user: string;
  /** OpenSSH private key (secret). */
  privateKey: pulumi.Input<string>;
  /** The VM's pinned ed25519 or ECDSA host key ("ssh-ed25519 AAAA..."), see lib/source-vm/host-key.ts. */
  hostKey: string;
}

export interface SourceVmArgs {
  connection: SourceVmConnection;
  /** Run the steps with `sudo -n` when the user is not root. */
  sudo: boolean;
  /** Work directory on the VM (snapshot, state, migration log). */
  workDir: string;
  /** Plex data directory on the VM, never modified. */
  plexDataDir: string;
  /** systemd unit of Plex. */
  plexService: string;
  /** systemd unit of Tautulli. */
  tautulliService: string;
  /** Path of tautulli.db on the VM. */
  tautulliDbPath: string;
  /** Networks the migration key may connect from (`from=` in authorized_keys); empty allows any. */
  syncAllowedCidrs: string[];
  /** Start Plex and Tautulli again on `pulumi destroy`. */
  rollbackOnDestroy: boolean;
  /** Which run of the transfer and of the Tautulli import this is (lib/source-vm/phases.ts). */
  generations: MigrationGenerations;
  /** The VM is gone: nothing contacts it again (steps keep their recorded results). */
  retired: boolean;
  /** Run without systemd and dpkg (a machine without Plex, for rehearsals). */
  rehearsal?: boolean;
  /** Plex version to report instead of asking dpkg-query (rehearsals). */
  plexVersion?: string;
}

/** What the stop step hands to the final copy and the import. */
export interface StoppedSource {
  /** The stop step itself: done once Plex and Tautulli are stopped and masked. */
  stopped: pulumi.Resource;
  /** sha256 of each Plex database after the stop: what the final copy must reproduce. */
  plexDatabases: pulumi.Output<FileDigest[]>;
  /** Tautulli's snapshot on the VM (null when the VM has no Tautulli). */
  tautulliSnapshot: pulumi.Output<FileDigest | null>;
  /** Plex and Tautulli before the stop (what rollback restores). */
  previousState: pulumi.Output<PreviousState>;
}

type Extra = Partial<command.remote.CommandArgs>;

export class SourceVm extends pulumi.ComponentResource {
  readonly plexVersion: pulumi.Output<string>;
  /** Bytes the Plex data dir occupies on the VM's disk. */
  readonly libraryBytes: pulumi.Output<number>;
  /** Files, directories and links in the data dir: the inode need of the copy. */
  readonly fileCount: pulumi.Output<number>;
  /** Media paths the Plex library refers to (section_locations), for plexMediaVolumes. */
  readonly mediaRoots: pulumi.Output<string[]>;
  readonly dataOwner: pulumi.Output<DataOwner>;
  /** IANA time zone of the VM ("" when unknown). */
  readonly timezone: pulumi.Output<string>;
  /** Preferences.xml's identity and LAN settings. */
  readonly preferences: pulumi.Output<PlexPreferences>;
  readonly machineIdentifier: pulumi.Output<string>;
  /** Secret: Preferences.xml's PlexOnlineToken. */
  readonly plexToken: pulumi.Output<string>;
  /** Secret: the migration's own ed25519 key (OpenSSH), authorized by authorize-sync. */
  readonly syncPrivateKey: pulumi.Output<string>;
  readonly syncPublicKey: pulumi.Output<string>;
  /** The authorize-sync step: done once the migration key may read plexDataDir. */
  readonly syncAuthorized: pulumi.Resource;
  /** The admin connection (privateKey secret), for the snapshot fetch over SSH. */
  readonly connection: SourceVmConnection & { privateKey: pulumi.Output<string> };
  /** The same as one secret value, in the shape the snapshot fetch takes. */
  readonly sshConnection: pulumi.Output<SshConnection>;
  /**
   * The destroy hooks. The resource that runs the cluster's Plex depends on them, so on destroy
   * they run after it is gone; nothing protected may depend on them (or on this component).
   */
  readonly destroyHooks: pulumi.Resource[];

  private readonly name: string;
  private readonly args: SourceVmArgs;
  private readonly connectionArgs: command.types.input.remote.ConnectionArgs;
  private readonly preflight: command.remote.Command;
  private readonly authorizeSync: command.remote.Command;
  private stopStep?: command.remote.Command;
  private revokeSyncDone = false;

  constructor(name: string, args: SourceVmArgs, opts?: pulumi.ComponentResourceOptions) {
    // Validated before registering anything, so a bad argument leaves no half-made component.
    super("plex-migrate:source:Vm", name, validateArgs(name, args), opts);
    this.name = name;
    this.args = args;
    const privateKey = pulumi.secret(pulumi.output(args.connection.privateKey));
    this.connection = {
      ...args.connection,
      hostKey: normalizeHostKey(args.connection.hostKey),
      privateKey,
    };
    this.connectionArgs = {
      host: args.connection.host,
      port: args.connection.port,
      user: args.connection.user,
      privateKey,
      hostKey: this.connection.hostKey,
    };

    this.sshConnection = pulumi.secret(
      privateKey.apply((key) => ({
        host: args.connection.host,
        port: args.connection.port,
        user: args.connection.user,
        privateKey: key,
        hostKey: normalizeHostKey(args.connection.hostKey),
        sudo: args.sudo && args.connection.user !== "root",
      })),
    );
    const syncKey = new tls.PrivateKey(
      `${name}-sync-key`,
      { algorithm: "ED25519" },
      { parent: this },
    );
    this.syncPrivateKey = pulumi.secret(syncKey.privateKeyOpenssh);
    this.syncPublicKey = syncKey.publicKeyOpenssh.apply((key) => key.trim());
    this.destroyHooks = this.createDestroyHooks();

    this.preflight = this.step("preflight", {}, { additionalSecretOutputs: ["stdout"] });
    this.authorizeSync = this.step(
      "authorize-sync",
      {},
      { dependsOn: [this.preflight, ...this.destroyHooks] },
    );
    this.syncAuthorized = this.authorizeSync;

    const recorded = this.recordedWhenRetired([
      ["preflight", this.preflight],
      ["authorize-sync", this.authorizeSync],
    ]);
    const preflight = pulumi
      .all([this.preflight.stdout, recorded])
      .apply(([out]) => parseStepOutput("preflight", out));
    const field = <T>(pick: (p: ReturnType<typeof parseStepOutput<"preflight">>) => T) =>
      pulumi.unsecret(preflight.apply(pick));
    this.plexVersion = field((p) => p.plexVersion);
    this.libraryBytes = field((p) => p.libraryBytes);
    this.fileCount = field((p) => p.fileCount);
    this.mediaRoots = field((p) => p.mediaRoots);
    this.dataOwner = field((p) => p.dataOwner);
    this.timezone = field((p) => p.timezone);
    this.preferences = field((p) => p.preferences);
    this.machineIdentifier = field((p) => p.preferences.machineIdentifier);
    this.plexToken = pulumi.secret(preflight.apply((p) => p.plexToken));

    this.registerOutputs({
      plexVersion: this.plexVersion,
      libraryBytes: this.libraryBytes,
      fileCount: this.fileCount,
      mediaRoots: this.mediaRoots,
      timezone: this.timezone,
      machineIdentifier: this.machineIdentifier,
    });
  }

  /**
   * Creates the stop step, run once everything in `after` (the warm copy) is done: stops and
   * masks Plex and Tautulli, re-checks the databases, records their sha256 and snapshots Tautulli.
   * Call it once.
   */
  stopAfter(after: pulumi.Resource[]): StoppedSource {
    if (this.stopStep) {
      throw new pulumi.ResourceError("stopAfter may be called only once per SourceVm", this);
    }
    this.stopStep = this.step("stop", {}, { dependsOn: [...after, this.authorizeSync] });
    const recorded = this.recordedWhenRetired([["stop", this.stopStep]]);
    const result = pulumi
      .all([this.stopStep.stdout, recorded])
      .apply(([out]) => parseStepOutput("stop", out));
    return {
      stopped: this.stopStep,
      plexDatabases: result.apply((r) => r.plexDatabases),
      tautulliSnapshot: result.apply((r) => r.tautulliSnapshot),
      previousState: result.apply((r) => r.previousState),
    };
  }

  /**
   * Creates the revoke-sync step, run once everything in `after` (the Plex release, the import) is
   * done: removes the migration key from the VM's authorized_keys. Returns
   * undefined when the VM is retired (there is nothing left to revoke). Call it once, after
   * {@link stopAfter}.
   */
  revokeSyncAfter(after: pulumi.Resource[]): pulumi.Resource | undefined {
    if (this.revokeSyncDone || !this.stopStep) {
      throw new pulumi.ResourceError(
        "revokeSyncAfter must be called once per SourceVm, after stopAfter",
        this,
      );
    }
    this.revokeSyncDone = true;
    if (this.args.retired) return undefined;
    return this.step("revoke-sync", {}, { dependsOn: [...after, this.stopStep] });
  }

  /**
   * Retired, a step must already be in the stack's state: there its inputs are frozen and the
   * engine hands back its recorded outputs without calling the provider (a SameStep keeps the old
   * outputs, pulumi/pulumi pkg/resource/deploy/step.go SameStep.Apply). A step that is not (a new
   * stack, a step that failed, a new generation) would be created, and creating a remote.Command
   * connects to the VM. A preview sees that as unknown outputs (a create in a dry run returns only
   * its inputs, pulumi-go-provider infer/resource.go), and refuses here, naming the step, before
   * `pulumi up` would try. The returned Output fails then; everything made from the steps'
   * results waits for it, so the first resource that takes one fails to register with this error
   * (an Output's promise rejects through `all` and `apply` even while its value is unknown,
   * sdk/nodejs/output.ts).
   */
  private recordedWhenRetired(
    steps: [MigrationStep, command.remote.Command][],
  ): pulumi.Output<void> {
    if (!this.args.retired || !pulumi.runtime.isDryRun()) return pulumi.output(undefined);
    // OutputImpl.isKnown (sdk/nodejs/output.ts): false while a preview has no value for it.
    const isKnown = (r: command.remote.Command) =>
      (r.stdout as unknown as { isKnown: Promise<boolean> }).isKnown;
    const missing = Promise.all(
      steps.map(async ([step, r]) =>
        (await isKnown(r)) ? [] : [stepResourceName(this.name, step, this.args.generations)],
      ),
    ).then((names) => names.flat());
    return pulumi.output(missing).apply((names) => {
      if (names.length > 0) {
        throw new pulumi.ResourceError(retiredStepProblem(names), this, true);
      }
    });
  }

  /** The settings the script reads (lib/source-vm/protocol.ts picks each step's). */
  private settings(syncPublicKey?: string): SourceScriptSettings {
    const a = this.args;
    return {
      workDir: a.workDir,
      plexDataDir: a.plexDataDir,
      plexService: a.plexService,
      tautulliService: a.tautulliService,
      tautulliDbPath: a.tautulliDbPath,
      syncAllowedCidrs: a.syncAllowedCidrs,
      syncPublicKey,
      rehearsal: a.rehearsal,
      plexVersion: a.plexVersion,
    };
  }

  /** A step's stdin: its settings (and the migration's public key), then the script. */
  private bundle(step: SourceStep): pulumi.Output<string> {
    const script = fs.readFileSync(SCRIPT_PATH, "utf8");
    const needsKey = step === "authorize-sync" || step === "revoke-sync";
    const key: pulumi.Output<string | undefined> = needsKey
      ? this.syncPublicKey
      : pulumi.output<string | undefined>(undefined);
    // Rollback runs only from its destroy hook, which is deleted after everything that depends on
    // authorize-sync (the stop, the Plex release) since Pulumi deletes dependents first: the
    // cluster's Plex is gone by then, so it runs forced (the script refuses otherwise).
    const forced = step === "rollback" ? { rollbackForce: true } : {};
    return key.apply((syncPublicKey) =>
      scriptBundle(step, stepEnvironment(step, { ...this.settings(syncPublicKey), ...forced }), {
        script,
      }),
    );
  }

  private remoteUser(): RemoteUser {
    return { user: this.args.connection.user, sudo: this.args.sudo };
  }

  /** One VM step: frozen once it succeeded, renamed (so run anew) by a new generation. */
  private step(
    step: "preflight" | "authorize-sync" | "stop" | "revoke-sync",
    extra: Extra,
    opts: pulumi.CustomResourceOptions,
  ): command.remote.Command {
    return new command.remote.Command(
      stepResourceName(this.name, step, this.args.generations),
      {
        connection: this.connectionArgs,
        create: remoteCommandLine(step, this.remoteUser()),
        stdin: this.bundle(step),
        // stdout is the step's JSON summary; progress lines (stderr) go to the Pulumi log.
        logging: "stderr",
        // Without AcceptEnv on the VM these would only produce warnings.
        addPreviousOutputInEnv: false,
        ...extra,
      },
      { parent: this, ignoreChanges: [...FROZEN_STEP_INPUTS], ...opts },
    );
  }

  /**
   * The destroy hooks: no create and no update command, so creating or updating them never
   * contacts the VM (pulumi-command v1.2.1 remote/commandController.go runs `update`, else
   * `create`, and nothing when both are unset); their `delete` runs on destroy with the connection
   * and script of the last `up`. Retired, they keep no delete, so removing them needs no VM.
   */
  private createDestroyHooks(): command.remote.Command[] {
    const hook = (step: "revoke-sync" | "rollback", enabled: boolean) =>
      new command.remote.Command(
        `${this.name}-on-destroy-${step}`,
        {
          connection: this.connectionArgs,
          // Always present, so turning the hook off is an update, never a delete that runs it.
          delete:
            enabled && !this.args.retired ? remoteCommandLine(step, this.remoteUser()) : undefined,
          stdin: this.bundle(step),
          logging: "stderr",
          addPreviousOutputInEnv: false,
        },
        { parent: this },
      );
    return [hook("revoke-sync", true), hook("rollback", this.args.rollbackOnDestroy)];
  }
}

function validateArgs(name: string, args: SourceVmArgs): Record<string, never> {
  const problems: string[] = [];
  const absolute = (field: string, value: string) => {
    if (!isSafeAbsolutePath(value)) {
      problems.push(`${field} must be an absolute path without "..", got ${JSON.stringify(value)}`);
    }
  };
  absolute("workDir", args.workDir);
  absolute("plexDataDir", args.plexDataDir);
  absolute("tautulliDbPath", args.tautulliDbPath);
  if (workDirInPlexData(args.workDir, args.plexDataDir)) {
    problems.push("workDir must not be inside plexDataDir (the Plex source is never written to)");
  }
  for (const unit of [args.plexService, args.tautulliService]) {
    if (!isSystemdUnit(unit)) problems.push(`"${unit}" is not a systemd unit name`);
  }
  const hostKey = hostKeyProblem(args.connection.hostKey, args.connection.host);
  if (hostKey) problems.push(`connection.hostKey ${hostKey}`);
  problems.push(...generationProblems(args.generations));
  if (problems.length > 0) throw new Error(`SourceVm ${name}: ${problems.join("; ")}`);
  return {};
}
