/**
 * ArchiveSourceVm: the archive flow's VM side, which index.ts runs until the sync flow's SourceVm
 * (components/source-vm.ts) replaces it: `@pulumi/command` remote steps over SSH, in data-flow
 * order: preflight -> stop -> archive -> serve (-> stop serving, via {@link ArchiveSourceVm.stopServingAfter}).
 *
 * Every step runs scripts/plex-migrate-source.sh, sent on stdin with its settings (see
 * lib/source-vm/commands.ts). A step runs when it is created and again only when its own settings,
 * the script, or the result of the step before it change (`triggers`), so a second `pulumi up`
 * with the same inputs neither stops Plex nor archives again.
 *
 * `pulumi destroy` runs stop-serving and, only with rollbackOnDestroy, rollback. Those run from two
 * hook commands created before the first step and deleted after the last, never from the steps
 * themselves: a step replaced by a trigger would otherwise run its delete right after its
 * successor (restarting Plex or killing the new server).
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import type { ArchiveCompression } from "../lib/config";
import {
  loadScriptSources,
  remoteCommandLine,
  scriptBundle,
  servedUrl,
  SourceScriptSettings,
  SourceStep,
  stepEnvironment,
} from "../lib/source-vm/commands";
import { hostKeyProblem, normalizeHostKey } from "../lib/source-vm/host-key";
import {
  ArchiveFormat,
  archiveFormatOf,
  parseStepOutput,
  type DataOwner,
  type PlexPreferences,
} from "../lib/source-vm/outputs";

export interface ArchiveSourceVmArgs {
  /** SSH connection to the VM; `privateKey` is a secret. */
  connection: {
    /** VM host name or IP. */
    host: string;
    /** SSH port. @default 22 */
    port: number;
    /** SSH user; steps run through `sudo -n` when it is not root and `sudo` is true. @default ubuntu */
    user: string;
    /** OpenSSH private key (secret). */
    privateKey: pulumi.Input<string>;
    /** The VM's pinned ed25519 or ECDSA host key ("ssh-ed25519 AAAA..."), see lib/source-vm/host-key.ts. */
    hostKey: string;
  };
  /** Run the steps with `sudo -n` when the user is not root. @default true */
  sudo: boolean;
  /** Work directory on the VM (snapshot, state, migration log); see the vmWorkDir key. */
  workDir: string;
  /** Plex data directory on the VM, never modified. @default /var/lib/plexmediaserver/Library/Application Support/Plex Media Server */
  plexDataDir: string;
  /** systemd unit of Plex. @default plexmediaserver */
  plexService: string;
  /** systemd unit of Tautulli. @default tautulli */
  tautulliService: string;
  /** Path of tautulli.db on the VM. @default /opt/Tautulli/tautulli.db */
  tautulliDbPath: string;
  /** Top-level folders left out of the archive (Cache, Logs, Crash Reports, Updates, Diagnostics). @default [] */
  archiveExcludes: string[];
  /** Archive compression. @default auto */
  archiveCompression: ArchiveCompression;
  /**
   * The archive server on the VM: listen `address`:`port`, reached by the cluster at
   * `host`:`port`, stops after `lifetimeMinutes`, answers only clients in `allowedCidrs` (all if empty).
   * @default { address: "0.0.0.0", host: connection.host, port: 32499, lifetimeMinutes: 240, allowedCidrs: [] }
   */
  serve: {
    address: string;
    host: string;
    port: number;
    lifetimeMinutes: number;
    allowedCidrs: string[];
  };
  /** Keep the archive on the VM after serving (it holds the Plex token). @default false */
  keepArchive: boolean;
  /** Start Plex and Tautulli again on `pulumi destroy`. @default false */
  rollbackOnDestroy: boolean;
  /**
   * Run without systemd and dpkg (a machine without Plex, for rehearsals); the version comes from
   * `plexVersion` or the newest Plex log. @default false
   */
  rehearsal?: boolean;
  /** Plex version to report instead of asking dpkg-query (rehearsals). @default undefined */
  plexVersion?: string;
}

export class ArchiveSourceVm extends pulumi.ComponentResource {
  readonly plexVersion: pulumi.Output<string>;
  /** Bytes the Plex data dir occupies on the VM's disk. */
  readonly libraryBytes: pulumi.Output<number>;
  /** Both the preflight and the after-stop integrity checks passed. */
  readonly databasesOk: pulumi.Output<boolean>;
  /** Media paths the Plex library refers to (section_locations), for plexMediaVolumes. */
  readonly mediaRoots: pulumi.Output<string[]>;
  /** Files, directories and links in the data dir: the inode need of the copy. */
  readonly fileCount: pulumi.Output<number>;
  /** Owner of the Plex data dir and that user's other groups. */
  readonly dataOwner: pulumi.Output<DataOwner>;
  /** IANA time zone of the VM ("" when unknown). */
  readonly timezone: pulumi.Output<string>;
  /** Preferences.xml's identity and LAN settings. */
  readonly preferences: pulumi.Output<PlexPreferences>;
  readonly machineIdentifier: pulumi.Output<string>;
  /** Secret: Preferences.xml's PlexOnlineToken (the verification reads Plex with it). */
  readonly plexToken: pulumi.Output<string>;
  /** Secret: the URL holds the serving token. */
  readonly archiveUrl: pulumi.Output<string>;
  readonly archiveSha256: pulumi.Output<string>;
  readonly archiveBytes: pulumi.Output<number>;
  readonly archiveFormat: pulumi.Output<ArchiveFormat>;
  /** Secret: the URL holds the serving token. */
  readonly tautulliSnapshotUrl: pulumi.Output<string>;
  readonly tautulliSnapshotSha256: pulumi.Output<string>;
  /** Done once Plex and Tautulli are stopped (and the databases re-checked). */
  readonly servicesStopped: pulumi.Resource;
  /** Done once the archive and the snapshot are being served. */
  readonly archiveServed: pulumi.Resource;

  private readonly stepCommand: (
    step: SourceStep,
    extra: Partial<command.remote.CommandArgs>,
    opts: pulumi.CustomResourceOptions,
  ) => command.remote.Command;
  private readonly serveStep: command.remote.Command;
  private stopServing?: command.remote.Command;

  constructor(name: string, args: ArchiveSourceVmArgs, opts?: pulumi.ComponentResourceOptions) {
    // Validated before registering anything, so a bad argument leaves no half-made component.
    super("plex-migrate:source:Vm", name, validateArgs(name, args), opts);

    const settings: SourceScriptSettings = {
      workDir: args.workDir,
      plexDataDir: args.plexDataDir,
      plexService: args.plexService,
      tautulliService: args.tautulliService,
      tautulliDbPath: args.tautulliDbPath,
      archiveExcludes: args.archiveExcludes,
      archiveCompression: args.archiveCompression,
      serve: args.serve,
      keepArchive: args.keepArchive,
      rehearsal: args.rehearsal,
      plexVersion: args.plexVersion,
    };
    const sources = loadScriptSources();
    const connection: command.types.input.remote.ConnectionArgs = {
      host: args.connection.host,
      port: args.connection.port,
      user: args.connection.user,
      privateKey: pulumi.secret(args.connection.privateKey),
      hostKey: normalizeHostKey(args.connection.hostKey),
    };
    const who = { user: args.connection.user, sudo: args.sudo };
    const bundle = (step: SourceStep) =>
      scriptBundle(step, stepEnvironment(step, settings), sources);

    this.stepCommand = (step, extra, stepOpts) =>
      new command.remote.Command(
        `${name}-${step}`,
        {
          connection,
          create: remoteCommandLine(step, who),
          stdin: bundle(step),
          // stdout is the step's JSON summary; progress lines (stderr) go to the Pulumi log.
          logging: "stderr",
          // Without AcceptEnv on the VM these would only produce warnings.
          addPreviousOutputInEnv: false,
          ...extra,
        },
        { parent: this, ...stepOpts },
      );

    // Destroy hooks: no create command; their delete runs last on `pulumi destroy`.
    const onDestroyStopServing = new command.remote.Command(
      `${name}-on-destroy-stop-serving`,
      {
        connection,
        delete: remoteCommandLine("stop-serving", who),
        stdin: bundle("stop-serving"),
        logging: "stderr",
        addPreviousOutputInEnv: false,
      },
      { parent: this },
    );
    const onDestroyRollback = new command.remote.Command(
      `${name}-on-destroy-rollback`,
      {
        connection,
        // Always present, so turning rollbackOnDestroy off is an update, not a delete that runs it.
        delete: args.rollbackOnDestroy ? remoteCommandLine("rollback", who) : undefined,
        // Forced: this delete runs after everything that depends on preflight (the Plex release
        // among them) is deleted, since Pulumi deletes dependents first; the migrated Plex is gone.
        stdin: scriptBundle(
          "rollback",
          stepEnvironment("rollback", { ...settings, rollbackForce: true }),
          sources,
        ),
        logging: "stderr",
        addPreviousOutputInEnv: false,
      },
      { parent: this },
    );

    // The hooks exist before the first step that changes the VM (stop), and only what follows
    // it depends on them: the config claim is sized from the preflight and protected, and a
    // protected resource's refused delete skips everything it depends on (pulumi/pulumi
    // pkg/resource/deploy/deployment_executor.go, erroredDeps), so the preflight must not
    // depend on the hooks or they would never run on `pulumi destroy`.
    const preflight = this.stepCommand("preflight", {}, {});
    const stop = this.stepCommand(
      "stop",
      { triggers: [preflight.stdout] },
      { dependsOn: [preflight, onDestroyStopServing, onDestroyRollback] },
    );
    const archive = this.stepCommand("archive", { triggers: [stop.stdout] }, { dependsOn: [stop] });

    // 256 bits, letters and digits: the only thing between the LAN and Preferences.xml's token.
    const token = new random.RandomPassword(
      `${name}-serve-token`,
      { length: 43, special: false },
      { parent: this, additionalSecretOutputs: ["result"] },
    );
    const serveStdin = pulumi
      .secret(token.result)
      .apply((serveToken) =>
        scriptBundle("serve", stepEnvironment("serve", settings), sources, { serveToken }),
      );
    this.serveStep = this.stepCommand(
      "serve",
      { stdin: serveStdin, triggers: [archive.stdout] },
      { dependsOn: [archive], additionalSecretOutputs: ["stdin"] },
    );

    const preflightResult = preflight.stdout.apply((out) => {
      const result = parseStepOutput("preflight", out);
      return result;
    });
    const stopResult = stop.stdout.apply((out) => parseStepOutput("stop", out));
    const serveResult = this.serveStep.stdout.apply((out) => parseStepOutput("serve", out));
    const served = (fileName: (names: string[]) => string | undefined) =>
      serveResult.apply((result) => {
        const file = result.files.find((f) => f.name === fileName(result.files.map((x) => x.name)));
        if (!file) {
          throw new pulumi.ResourceError(
            `the VM is not serving the expected file (serving: ${result.files.map((f) => f.name).join(", ")})`,
            this,
          );
        }
        return file;
      });
    const archiveFile = served((names) => names.find((n) => n.startsWith("plex-library.")));
    const tautulliFile = served(() => "tautulli.db");
    const { host, port } = args.serve;

    this.plexVersion = preflightResult.apply((p) => p.plexVersion);
    this.libraryBytes = preflightResult.apply((p) => p.libraryBytes);
    this.mediaRoots = preflightResult.apply((p) => p.mediaRoots);
    this.fileCount = preflightResult.apply((p) => p.fileCount);
    this.dataOwner = preflightResult.apply((p) => p.dataOwner);
    this.timezone = preflightResult.apply((p) => p.timezone);
    this.preferences = preflightResult.apply((p) => p.preferences);
    this.machineIdentifier = preflightResult.apply((p) => p.preferences.machineIdentifier);
    this.plexToken = pulumi.secret(preflightResult.apply((p) => p.plexToken));
    this.databasesOk = pulumi
      .all([preflightResult, stopResult])
      .apply(([p, s]) => p.databasesOk && s.databasesOk);
    // Everything the Plex release and the import read comes through the serve step's summary, so
    // using any of it orders them after the server is up.
    this.archiveSha256 = archiveFile.apply((f) => f.sha256);
    this.archiveBytes = archiveFile.apply((f) => f.bytes);
    this.archiveFormat = archiveFile.apply((f) => archiveFormatOf(f.name));
    this.archiveUrl = pulumi.secret(
      pulumi.all([token.result, archiveFile]).apply(([t, f]) => servedUrl(host, port, t, f.name)),
    );
    this.tautulliSnapshotUrl = pulumi.secret(
      pulumi.all([token.result, tautulliFile]).apply(([t, f]) => servedUrl(host, port, t, f.name)),
    );
    this.tautulliSnapshotSha256 = tautulliFile.apply((f) => f.sha256);
    this.servicesStopped = stop;
    this.archiveServed = this.serveStep;

    this.registerOutputs({
      plexVersion: this.plexVersion,
      libraryBytes: this.libraryBytes,
      databasesOk: this.databasesOk,
      mediaRoots: this.mediaRoots,
      archiveUrl: this.archiveUrl,
      archiveSha256: this.archiveSha256,
      archiveBytes: this.archiveBytes,
      archiveFormat: this.archiveFormat,
      tautulliSnapshotUrl: this.tautulliSnapshotUrl,
      tautulliSnapshotSha256: this.tautulliSnapshotSha256,
    });
  }

  /**
   * Creates the stop-serving step, run once everything in `after` (the Plex release, the import)
   * is done: stops the archive server and, unless keepArchive, removes the archive and snapshot.
   * It runs again whenever the server is restarted. Call it once.
   */
  stopServingAfter(after: pulumi.Resource[]): pulumi.Resource {
    if (this.stopServing) {
      throw new pulumi.ResourceError(
        "stopServingAfter may be called only once per ArchiveSourceVm",
        this,
      );
    }
    this.stopServing = this.stepCommand(
      "stop-serving",
      { triggers: [this.serveStep.stdout] },
      { dependsOn: [...after, this.serveStep] },
    );
    return this.stopServing;
  }
}

const ALLOWED_EXCLUDES = ["Cache", "Logs", "Crash Reports", "Updates", "Diagnostics"];

function validateArgs(name: string, args: ArchiveSourceVmArgs): Record<string, never> {
  const problems: string[] = [];
  const absolute = (field: string, value: string) => {
    if (!value.startsWith("/") || /[\0\n\r]/.test(value) || value.split("/").includes("..")) {
      problems.push(`${field} must be an absolute path without "..", got ${JSON.stringify(value)}`);
    }
  };
  absolute("workDir", args.workDir);
  absolute("plexDataDir", args.plexDataDir);
  absolute("tautulliDbPath", args.tautulliDbPath);
  const data = args.plexDataDir.replace(/\/+$/, "");
  if (args.workDir === data || args.workDir.startsWith(`${data}/`)) {
    problems.push("workDir must not be inside plexDataDir (the Plex source is never written to)");
  }
  for (const exclude of args.archiveExcludes) {
    if (!ALLOWED_EXCLUDES.includes(exclude)) {
      problems.push(
        `archiveExcludes: "${exclude}" may not be excluded; allowed: ${ALLOWED_EXCLUDES.join(", ")}`,
      );
    }
  }
  for (const unit of [args.plexService, args.tautulliService]) {
    if (!/^[A-Za-z0-9:_.@-]+$/.test(unit)) problems.push(`"${unit}" is not a systemd unit name`);
  }
  if (!Number.isInteger(args.serve.port) || args.serve.port < 1 || args.serve.port > 65535) {
    problems.push(`serve.port must be a TCP port, got ${args.serve.port}`);
  }
  if (!Number.isInteger(args.serve.lifetimeMinutes) || args.serve.lifetimeMinutes < 1) {
    problems.push(
      `serve.lifetimeMinutes must be a positive whole number, got ${args.serve.lifetimeMinutes}`,
    );
  }
  if (!args.serve.host)
    problems.push("serve.host is empty: set the host the cluster reaches the VM at");
  const hostKey = hostKeyProblem(args.connection.hostKey, args.connection.host);
  if (hostKey) problems.push(`connection.hostKey ${hostKey}`);
  if (problems.length > 0) throw new Error(`ArchiveSourceVm ${name}: ${problems.join("; ")}`);
  return {};
}
