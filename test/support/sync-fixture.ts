/**
 * The real transfer path on this machine, for the plex-init.sh tests: a real sshd on loopback
 * standing in for the VM, the migration key authorized by the VM script's authorize-sync step
 * (the same forced read-only rrsync as on a VM), a PATH like the init image's (busybox applets,
 * real rsync and ssh), and a stand-in for the /config volume. Faults are injected at known
 * points, never by timing: a wrapper `ssh` passes a fixed number of bytes of the VM's answer,
 * then cuts the connection or holds it (blocked on a FIFO) until the test acts.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import {
  imageLikePath,
  measureDatabases,
  plexSyncEnv,
  startPlexInit,
  type LocalSyncTarget,
  type PlexInitOptions,
  type PlexSyncEnv,
  type ProcessResult,
  type RunningProcess,
} from "../../lib/plex/local-run";
import {
  LocalVmSync,
  generateSshKey,
  knownHostsLine,
  startLoopbackSshd,
  type LoopbackSshd,
} from "../../lib/plex/local-sync";
import { INIT_PLEX_DATA, INIT_STAGING, type SyncPhase } from "../../lib/plex/init-script";
import {
  generatePlexTree,
  type PlexTreeManifest,
  type PlexTreeOptions,
} from "../../lib/samples/plex-tree";

/**
 * Copies exactly N bytes from stdin to stdout, each read written at once (head -c would hold
 * output in its stdio buffer and stall rsync's handshake).
 */
const PASS_BYTES = [
  "import fcntl, os, sys",
  // rsync makes its end of the pipes non-blocking; the gate wants plain blocking I/O.
  "for fd in (0, 1): fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)",
  "n = int(sys.argv[1])",
  "while n > 0:",
  "    data = os.read(0, min(65536, n))",
  "    if not data: break",
  "    n -= len(data)",
  "    while data: data = data[os.write(1, data):]",
].join("\n");

export interface SyncFixture {
  root: string;
  sshd: LoopbackSshd;
  vm: LocalVmSync;
  tree: PlexTreeManifest;
  /** The VM's Plex data directory. */
  dataDir: string;
  target: LocalSyncTarget;
  /** The image-like PATH. */
  binDir: string;
  /** Where the copy ends up once verified. */
  libraryDataDir: string;
  stagingDataDir: string;
  /** Runs one phase to its end (final: with the databases measured now, as the stop step does). */
  run(
    phase: SyncPhase,
    extra?: Partial<PlexSyncEnv>,
    options?: PlexInitOptions,
  ): Promise<ProcessResult>;
  start(phase: SyncPhase, extra?: Partial<PlexSyncEnv>, options?: PlexInitOptions): RunningProcess;
  /** A PATH whose `ssh` passes `bytes` of the VM's answer on its `call`-th use, then cuts or holds. */
  gatedPath(gate: { call: number; bytes: number; mode: "cut" | "hold" }): Gate;
  cleanup(): Promise<void>;
}

export interface Gate {
  path: string;
  /** Resolves once the gate reached its byte count (the transfer is held or cut there). */
  reached(): Promise<void>;
  /** Lets a held transfer go on. */
  release(): void;
  calls(): number;
}

export async function createSyncFixture(
  treeOptions: PlexTreeOptions = {},
  options: { configDir?: string } = {},
): Promise<SyncFixture> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-sync-"));
  const dataDir = path.join(root, "vm", INIT_PLEX_DATA);
  fs.mkdirSync(path.dirname(dataDir), { recursive: true });
  const tree = await generatePlexTree(dataDir, treeOptions);
  const sshd = await startLoopbackSshd();
  const key = generateSshKey(root, "migration-key");
  const user = os.userInfo().username;
  const vm = new LocalVmSync({
    dataDir,
    workDir: path.join(root, "vm-work"),
    user,
    authorizedKeysFile: sshd.authorizedKeysFile(user),
    publicKey: key.publicKey,
  });
  await vm.authorize();
  const secretDir = path.join(root, "secret");
  fs.mkdirSync(secretDir, { mode: 0o700 });
  fs.writeFileSync(path.join(secretDir, "id_ed25519"), key.privateKey, { mode: 0o400 });
  const knownHostsFile = path.join(secretDir, "known_hosts");
  fs.writeFileSync(knownHostsFile, knownHostsLine(sshd.hostPublicKey));
  const configDir = options.configDir ?? path.join(root, "config");
  fs.mkdirSync(configDir, { recursive: true });
  const target: LocalSyncTarget = {
    configDir,
    host: sshd.host,
    port: sshd.port,
    user,
    keyFile: path.join(secretDir, "id_ed25519"),
    knownHostsFile,
  };
  const binDir = imageLikePath(path.join(root, "bin"));
  const started: RunningProcess[] = [];
  const gates: Gate[] = [];

  const envFor = (phase: SyncPhase, extra: Partial<PlexSyncEnv>) =>
    plexSyncEnv(phase, target, {
      ...(phase === "final" ? { databases: measureDatabases(dataDir) } : {}),
      ...extra,
    });
  const start = (
    phase: SyncPhase,
    extra: Partial<PlexSyncEnv> = {},
    opts: PlexInitOptions = {},
  ) => {
    const running = startPlexInit(envFor(phase, extra), { path: binDir, detached: true, ...opts });
    started.push(running);
    return running;
  };

  return {
    root,
    sshd,
    vm,
    tree,
    dataDir,
    target,
    binDir,
    libraryDataDir: path.join(configDir, INIT_PLEX_DATA),
    stagingDataDir: path.join(configDir, INIT_STAGING, INIT_PLEX_DATA),
    start,
    run: (phase, extra, opts) => start(phase, extra, opts).done,
    gatedPath(gate) {
      const dir = fs.mkdtempSync(path.join(root, "gate-"));
      const state = path.join(dir, "state");
      fs.mkdirSync(state);
      spawnSync("mkfifo", [path.join(state, "fifo")]);
      const which = (tool: string) =>
        spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).stdout.trim();
      const realSsh = which("ssh");
      const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : which("python3");
      const action = gate.mode === "hold" ? `cat "${state}/fifo" >/dev/null` : ":";
      const script = [
        "#!/bin/sh",
        `n=$(($(cat "${state}/calls" 2>/dev/null || echo 0) + 1))`,
        `echo "$n" >"${state}/calls"`,
        `[ "$n" -eq ${gate.call} ] || exec ${realSsh} "$@"`,
        // The real ssh records its pid so the gate can end it: a cut must reach rsync as EOF.
        `sh -c 'echo $$ >"${state}/ssh.pid"; exec ${realSsh} "$@"' ssh "$@" | {`,
        `  ${python} -c '${PASS_BYTES}' ${gate.bytes}`,
        `  : >"${state}/reached"`,
        `  ${action}`,
        `  kill "$(cat "${state}/ssh.pid")" 2>/dev/null`,
        "}",
        "exit 255",
        "",
      ].join("\n");
      const wrapper = path.join(dir, "ssh");
      fs.writeFileSync(wrapper, script, { mode: 0o755 });
      const gateBin = imageLikePath(path.join(dir, "bin"), { ssh: wrapper });
      const handle: Gate = {
        path: gateBin,
        async reached() {
          // Waits for an event the wrapper signals (a file it creates), not for a duration.
          while (!fs.existsSync(path.join(state, "reached"))) {
            await new Promise((r) => setTimeout(r, 20));
          }
        },
        release() {
          // Opening the FIFO for writing (and closing it) ends the wrapper's `cat`.
          const fd = fs.openSync(
            path.join(state, "fifo"),
            fs.constants.O_WRONLY | fs.constants.O_NONBLOCK,
          );
          fs.closeSync(fd);
        },
        calls: () => Number(fs.readFileSync(path.join(state, "calls"), "utf8").trim() || 0),
      };
      gates.push(handle);
      return handle;
    },
    async cleanup() {
      for (const running of started) {
        if (
          running.child.exitCode === null &&
          running.child.signalCode === null &&
          running.child.pid
        ) {
          try {
            process.kill(-running.child.pid, "SIGKILL");
          } catch {
            // gone
          }
        }
      }
      for (const gate of gates) {
        try {
          gate.release();
        } catch {
          // no reader left
        }
      }
      await sshd.stop();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Bytes rsync reported as transferred ("Total transferred file size") in a run's log. */
export function transferredBytes(stderr: string): number {
  const match = /Total transferred file size: ([\d,]+)/.exec(stderr);
  if (!match) throw new Error(`no transfer statistics in: ${stderr}`);
  return Number(match[1].replace(/,/g, ""));
}
