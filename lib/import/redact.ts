/**
 * Keeps secrets out of errors, warnings, logs and reports: Tautulli stores Plex tokens, JWTs,
 * device tokens and agent credentials (NOTES.md §6), and the database URL holds a password.
 */

/**
 * Columns whose values are secrets: users.user_token/server_token, user_login.jwt_token,
 * mobile_devices.device_token, and the JSON configs that hold API keys and SMTP passwords
 * (notifiers.notifier_config, newsletters.newsletter_config/email_config).
 */
const SECRET_COLUMN = /token|password|passwd|secret|api_?key|_config$|credential/i;

export function isSecretColumn(column: string): boolean {
  return SECRET_COLUMN.test(column);
}

const MAX_SHOWN = 120;

/**
 * A value as it may appear in a message: secrets as `<redacted: N bytes>`, long text cut, bytes
 * in hex, everything quoted so that '' and whitespace are visible.
 */
export function describeValue(value: unknown, secret: boolean): string {
  if (value === null || value === undefined) return "NULL";
  if (secret) {
    const bytes = Buffer.isBuffer(value) ? value.length : Buffer.byteLength(String(value));
    return `<redacted: ${bytes} bytes>`;
  }
  if (Buffer.isBuffer(value)) {
    const hex = value.subarray(0, MAX_SHOWN / 2).toString("hex");
    return `x'${hex}'${value.length > MAX_SHOWN / 2 ? `... (${value.length} bytes)` : ""}`;
  }
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") return String(value);
  const text = String(value);
  const shown =
    text.length > MAX_SHOWN
      ? `${text.slice(0, MAX_SHOWN)}... (${Buffer.byteLength(text)} bytes)`
      : text;
  return JSON.stringify(shown);
}

/** http://host:port/<redacted> (the path of a served snapshot holds its access token). */
export function redactHttpUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}/<redacted>`;
  } catch {
    return "<URL>";
  }
}

/** Replaces every occurrence of each secret in `text` (for messages of libraries we wrap). */
export function redactText(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) {
    if (!secret || secret.length < 4) continue;
    out = out.split(secret).join("***");
    const encoded = encodeURIComponent(secret);
    if (encoded !== secret) out = out.split(encoded).join("***");
  }
  return out;
}

/** The secrets inside a database URL: the password and the URL itself. */
export function databaseUrlSecrets(url: string): string[] {
  try {
    const parsed = new URL(url);
    return [url, decodeURIComponent(parsed.password), parsed.password].filter((s) => s.length > 0);
  } catch {
    return [url];
  }
}
