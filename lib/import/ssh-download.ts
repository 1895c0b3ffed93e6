/**
 * Fetches the Tautulli snapshot the `stop` step left on the source VM, over the same SSH access as
 * the VM steps (ssh2, the admin user and key, the host key pinned: any other key is refused), to a
 * local file: `cat` (or `tail -c +N` to resume after a cut connection) run as the VM user, through
 * `sudo -n` when that user is not root (the work dir is root's). The file is only returned when
 * its size and SHA-256 equal what the step printed. Nothing else listens on the VM.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import { Client, type ConnectConfig } from "ssh2";
import { shellQuote } from "../source-vm/commands";
import { ImportError } from "./errors";

/** The admin SSH connection SourceVm exposes (the private key is a secret). */
export interface SshConnection {
  host: string;
  port: number;
  user: string;
  privateKey: string;
  /** The VM's pinned host key, "ssh-ed25519 AAAA..." (or ecdsa-sha2-*). */
  hostKey: string;
  /** The user is not root: read through `sudo -n`. */
  sudo: boolean;
}

/** The stop step's `tautulliSnapshot`, with the connection to fetch it by. */
export interface SshSnapshotSource {
  ssh: SshConnection;
  /** Absolute path on the VM. */
  path: string;
  sha256: string;
  bytes: number;
}

export interface SshDownloadOptions {
  /** Attempts in all (the first plus resumptions). @default 5 */
  attempts?: number;
  /** Seconds to wait for the SSH handshake. @default 30 */
  readyTimeoutSeconds?: number;
  /** Pause before attempt n+1 is n * this. @default 1000 */
  backoffMs?: number;
  log?: (line: string) => void;
}

export interface SshDownloadResult {
  bytes: number;
  sha256: string;
  /** Bytes received by this call (less than `bytes` when it resumed a partial file). */
  transferred: number;
}

class AttemptFailed extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
  ) {
    super(message);
  }
}

/** The key blob and algorithm of a pinned "type base64 [comment]" host key line. */
export function parseHostKey(line: string): { type: string; blob: Buffer } {
  const [type, data] = line.trim().split(/\s+/);
  if (!/^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521))$/.test(type ?? "") || !data) {
    throw new ImportError(
      "DOWNLOAD_FAILED",
      `The VM's host key "${line.slice(0, 40)}" is not an ed25519 or ECDSA public key line.`,
      "Pin it with vmHostKey (ssh-keyscan -t ed25519 <vmHost>).",
    );
  }
  return { type, blob: Buffer.from(data, "base64") };
}

function readCommand(source: SshSnapshotSource, offset: number): string {
  const read =
    offset > 0
      ? `tail -c +${offset + 1} -- ${shellQuote(source.path)}`
      : `cat -- ${shellQuote(source.path)}`;
  return source.ssh.sudo ? `sudo -n ${read}` : read;
}

function sizeOf(file: string): number {
  return fs.existsSync(file) ? fs.statSync(file).size : 0;
}

/** One SSH session: appends what the VM sends from `offset` to `file`. */
function attempt(
  source: SshSnapshotSource,
  file: string,
  offset: number,
  readyTimeoutMs: number,
): Promise<number> {
  const pinned = parseHostKey(source.ssh.hostKey);
  return new Promise((resolve, reject) => {
    const client = new Client();
    let settled = false;
    let hostKeyRefused = false;
    let received = 0;
    const settle = (error?: AttemptFailed) => {
      if (settled) return;
      settled = true;
      client.end();
      if (error) reject(error);
      else resolve(received);
    };
    client.on("error", (error: Error & { level?: string }) => {
      if (hostKeyRefused) {
        settle(
          new AttemptFailed(
            `the VM at ${source.ssh.host}:${source.ssh.port} presented another SSH host key than the pinned vmHostKey`,
            true,
          ),
        );
      } else if (error.level === "client-authentication") {
        settle(
          new AttemptFailed(
            `the VM refused the SSH key of ${source.ssh.user} (${error.message})`,
            true,
          ),
        );
      } else {
        settle(new AttemptFailed(error.message, false));
      }
    });
    client.on("close", () => settle(new AttemptFailed("the SSH connection closed", false)));
    client.on("ready", () => {
      client.exec(readCommand(source, offset), (error, channel) => {
        if (error) return settle(new AttemptFailed(error.message, false));
        const out = fs.createWriteStream(file, { flags: offset > 0 ? "a" : "w" });
        let stderr = "";
        let exit: number | null = null;
        channel.on("data", (chunk: Buffer) => {
          received += chunk.length;
          if (!out.write(chunk)) {
            channel.pause();
            out.once("drain", () => channel.resume());
          }
        });
        channel.stderr.on("data", (chunk: Buffer) => {
          if (stderr.length < 4096) stderr += chunk.toString("utf8");
        });
        channel.on("exit", (code: number | null) => (exit = code));
        channel.on("close", () => {
          out.end(() => {
            if (exit === 0) return settle();
            // sshd's own notice for users without a home is not the command's answer.
            const text = stderr
              .split("\n")
              .filter((line) => line.trim() && !line.startsWith("Could not chdir to home"))
              .slice(-3)
              .join(" ");
            // The command ran and said why (no file, no sudo): trying again cannot help.
            if (exit !== null) {
              settle(
                new AttemptFailed(
                  `reading ${source.path} on the VM failed (exit ${exit}${text ? `: ${text}` : ""})`,
                  true,
                ),
              );
            } else {
              settle(new AttemptFailed("the SSH session ended before the command did", false));
            }
          });
        });
      });
    });
    const config: ConnectConfig = {
      host: source.ssh.host,
      port: source.ssh.port,
      username: source.ssh.user,
      privateKey: source.ssh.privateKey,
      readyTimeout: readyTimeoutMs,
      // Ask for the pinned key's type, then accept exactly that key.
      algorithms: { serverHostKey: [pinned.type as "ssh-ed25519"] },
      hostVerifier: (key: Buffer) => {
        const same = Buffer.isBuffer(key) && key.equals(pinned.blob);
        hostKeyRefused = !same;
        return same;
      },
    };
    client.connect(config);
  });
}

async function fileSha256(file: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 * 1024 * 1024 }))
    hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function checkSource(source: SshSnapshotSource): void {
  if (!source.path.startsWith("/") || /[\0\n]/.test(source.path)) {
    throw new ImportError(
      "DOWNLOAD_FAILED",
      `The snapshot path "${source.path}" is not an absolute path on the VM.`,
      "Pass the tautulliSnapshot output of the SourceVm component's stop step.",
    );
  }
  if (!/^[0-9a-f]{64}$/i.test(source.sha256)) {
    throw new ImportError(
      "DOWNLOAD_FAILED",
      `The expected sha256 "${source.sha256}" is not 64 hex digits.`,
      "Pass the tautulliSnapshot output of the SourceVm component's stop step.",
    );
  }
  parseHostKey(source.ssh.hostKey);
}

/**
 * Copies the snapshot to `file` and verifies it. A partial `file` left by a cut transfer (this
 * call's or an earlier one's) is continued, not started over. Throws ImportError DOWNLOAD_FAILED
 * or SOURCE_CHECKSUM_MISMATCH (the file is then removed).
 */
export async function downloadOverSsh(
  source: SshSnapshotSource,
  file: string,
  options: SshDownloadOptions = {},
): Promise<SshDownloadResult> {
  checkSource(source);
  const attempts = options.attempts ?? 5;
  const where = `${source.ssh.user}@${source.ssh.host}:${source.path}`;
  let transferred = 0;
  let lastError = "";
  if (sizeOf(file) > source.bytes) fs.rmSync(file);
  for (let n = 1; n <= attempts; n++) {
    const offset = sizeOf(file);
    if (offset === source.bytes && offset > 0) break;
    try {
      transferred += await attempt(
        source,
        file,
        offset,
        (options.readyTimeoutSeconds ?? 30) * 1000,
      );
      lastError = "";
      break;
    } catch (error) {
      const failure = error as AttemptFailed;
      lastError = failure.message;
      if (failure.permanent || n === attempts) break;
      options.log?.(
        `snapshot copy from ${where} interrupted at byte ${sizeOf(file)} (${failure.message}); resuming (attempt ${n + 1}/${attempts})`,
      );
      await new Promise((resolve) => setTimeout(resolve, (options.backoffMs ?? 1000) * n));
    }
  }
  if (lastError) {
    fs.rmSync(file, { force: true });
    throw new ImportError(
      "DOWNLOAD_FAILED",
      `Copying the Tautulli snapshot ${where} over SSH failed: ${lastError}.`,
      "Check that this machine reaches the VM by SSH with the stack's key and vmHostKey, and that the snapshot is still there (the stop step writes it to vmWorkDir/snapshot; a new tautulliImportGeneration takes a new one).",
    );
  }
  const bytes = sizeOf(file);
  const sha256 = await fileSha256(file);
  if (bytes !== source.bytes || sha256 !== source.sha256.toLowerCase()) {
    fs.rmSync(file, { force: true });
    throw new ImportError(
      "SOURCE_CHECKSUM_MISMATCH",
      `The copied Tautulli snapshot has ${bytes} bytes and sha256 ${sha256}; the stop step recorded ${source.bytes} bytes and ${source.sha256.toLowerCase()}.`,
      "The file on the VM changed or the copy was corrupted: run the stop step again (see README, Day 2) and rerun pulumi up.",
    );
  }
  return { bytes, sha256, transferred };
}
