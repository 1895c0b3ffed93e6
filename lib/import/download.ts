/**
 * Fetches the tautulli.db snapshot the source VM serves (contracts.md: a token URL, HTTP Range
 * supported) to a local file, streamed to disk: an interrupted transfer resumes with a Range
 * request, and the file is only returned when its SHA-256 equals the published one. The URL holds
 * an access token, so it never appears in errors or logs.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as https from "https";
import { ImportError } from "./errors";
import { redactUrl } from "../redact";

export interface DownloadOptions {
  /** Attempts in all (the first plus resumptions). @default 5 */
  attempts?: number;
  /** Seconds without a byte before an attempt is abandoned. @default 60 */
  idleTimeoutSeconds?: number;
  /** Pause before attempt n+1 is n * this. @default 1000 */
  backoffMs?: number;
  log?: (line: string) => void;
}

export interface DownloadResult {
  bytes: number;
  sha256: string;
}

class AttemptFailed extends Error {
  constructor(
    message: string,
    /** Retrying cannot help (a 404, a refused Range): give up at once. */
    readonly permanent = false,
  ) {
    super(message);
  }
}

/**
 * One GET from `offset`, appending to `file` (or rewriting it when the server ignores Range).
 * Settles only after the file is closed, so its size is then exactly what was received.
 */
function attempt(url: URL, file: string, offset: number, idleTimeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let out: fs.WriteStream | undefined;
    let settled = false;
    const settle = (error?: AttemptFailed) => {
      if (settled) return;
      settled = true;
      const done = () => (error ? reject(error) : resolve());
      if (out && !out.closed) {
        out.once("close", done);
        out.end();
      } else {
        done();
      }
    };
    const get = url.protocol === "https:" ? https.get : http.get;
    const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    const request = get(url, { headers }, (response) => {
      const status = response.statusCode ?? 0;
      if (status !== 200 && status !== 206) {
        response.resume();
        settle(
          new AttemptFailed(
            `HTTP ${status}`,
            status >= 400 && status < 500 && status !== 408 && status !== 429,
          ),
        );
        return;
      }
      // A 200 answer to a Range request is the whole file again: start the file over.
      out = fs.createWriteStream(file, { flags: offset > 0 && status === 206 ? "a" : "w" });
      out.on("error", (error) =>
        settle(new AttemptFailed(`cannot write ${file}: ${error.message}`, true)),
      );
      response.on("aborted", () =>
        settle(new AttemptFailed("the connection closed before the end")),
      );
      response.on("error", (error) => settle(new AttemptFailed(error.message)));
      response.on("end", () =>
        settle(
          response.complete ? undefined : new AttemptFailed("the connection closed before the end"),
        ),
      );
      response.pipe(out, { end: false });
    });
    request.setTimeout(idleTimeoutMs, () =>
      request.destroy(new Error(`no data for ${idleTimeoutMs / 1000} s`)),
    );
    request.on("error", (error) => settle(new AttemptFailed(error.message)));
  });
}

/** SHA-256 of a file's bytes (hex). */
async function fileSha256(file: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 * 1024 * 1024 }))
    hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function sizeOf(file: string): number {
  return fs.existsSync(file) ? fs.statSync(file).size : 0;
}

/**
 * Downloads `url` to `file` and checks it against `expectedSha256` (hex). Throws ImportError
 * DOWNLOAD_FAILED or SOURCE_CHECKSUM_MISMATCH (the file is then removed).
 */
export async function downloadVerified(
  url: string,
  expectedSha256: string,
  file: string,
  options: DownloadOptions = {},
): Promise<DownloadResult> {
  const attempts = options.attempts ?? 5;
  const shown = redactUrl(url, { userInfo: true, path: true });
  let parsed: URL;
  try {
    parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("not http(s)");
  } catch {
    throw new ImportError(
      "DOWNLOAD_FAILED",
      `The snapshot URL ${shown} is not an http(s) URL.`,
      "Pass the tautulliSnapshotUrl output of the SourceVm component.",
    );
  }
  if (!/^[0-9a-f]{64}$/i.test(expectedSha256)) {
    throw new ImportError(
      "DOWNLOAD_FAILED",
      `The expected sha256 "${expectedSha256}" is not 64 hex digits.`,
      "Pass the tautulliSnapshotSha256 output of the SourceVm component.",
    );
  }
  let lastError = "";
  for (let n = 1; n <= attempts; n++) {
    const offset = sizeOf(file);
    try {
      await attempt(parsed, file, n === 1 ? 0 : offset, (options.idleTimeoutSeconds ?? 60) * 1000);
      lastError = "";
      break;
    } catch (error) {
      const failure = error as AttemptFailed;
      lastError = failure.message;
      if (failure.permanent || n === attempts) break;
      options.log?.(
        `snapshot download from ${shown} interrupted at byte ${sizeOf(file)} (${failure.message}); resuming (attempt ${n + 1}/${attempts})`,
      );
      await new Promise((resolve) => setTimeout(resolve, (options.backoffMs ?? 1000) * n));
    }
  }
  if (lastError) {
    fs.rmSync(file, { force: true });
    throw new ImportError(
      "DOWNLOAD_FAILED",
      `Downloading the Tautulli snapshot from ${shown} failed: ${lastError}.`,
      "Check that the source VM still serves it (its serve lifetime may have ended: run `pulumi up` again to serve it anew) and that this machine can reach the VM.",
    );
  }
  // Hashing the finished file (rather than the received stream) keeps the digest right however
  // the transfer was resumed; at ~1 GB/s it costs little next to the import.
  const bytes = sizeOf(file);
  const sha256 = await fileSha256(file);
  if (sha256 !== expectedSha256.toLowerCase()) {
    fs.rmSync(file, { force: true });
    throw new ImportError(
      "SOURCE_CHECKSUM_MISMATCH",
      `The downloaded Tautulli snapshot (${bytes} bytes) has sha256 ${sha256}, not the published ${expectedSha256.toLowerCase()}.`,
      "The transfer was corrupted or the VM serves another file: run `pulumi up` again (the snapshot is taken and served anew).",
    );
  }
  return { bytes, sha256 };
}
