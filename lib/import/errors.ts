/**
 * The import's errors: each names the problem and the fix, and carries a stable code that the
 * report, the CLI exit status and the tests rely on. Messages never hold secrets (see redact.ts).
 */

export type ImportErrorCode =
  | "SOURCE_NOT_FOUND"
  | "NOT_SQLITE"
  | "TRUNCATED"
  | "CORRUPT"
  | "SOURCE_UNREADABLE"
  | "NOT_TAUTULLI"
  | "TARGET_UNREACHABLE"
  | "TARGET_NOT_MIGRATED"
  | "TARGET_SCHEMA_VERSION"
  | "TARGET_NOT_EMPTY"
  | "TARGET_BUSY"
  | "UNSUPPORTED_TARGET_TYPE"
  | "UNCONVERTIBLE_VALUE"
  | "COPY_FAILED"
  | "CONNECTION_LOST"
  | "VERIFICATION_FAILED"
  | "DOWNLOAD_FAILED"
  | "SOURCE_CHECKSUM_MISMATCH";

export class ImportError extends Error {
  override readonly name = "ImportError";

  constructor(
    readonly code: ImportErrorCode,
    /** What is wrong, in one or two sentences. */
    readonly problem: string,
    /** What the user should do about it. */
    readonly fix: string,
    /** Structured details for the report (never secrets). */
    readonly details: Record<string, unknown> = {},
  ) {
    super(`${problem} Fix: ${fix}`);
  }
}

export function isImportError(error: unknown): error is ImportError {
  return error instanceof Error && (error as ImportError).name === "ImportError" && "code" in error;
}
