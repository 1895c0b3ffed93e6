/**
 * Keeps secrets out of outputs, logs, errors and reports. Tautulli stores Plex tokens, JWTs,
 * device tokens and agent credentials (reference/tautulli/NOTES.md §6), and the database URL holds
 * a password.
 *
 * URLs are redacted from their parsed fields, never by searching a message for the password: a
 * password such as `postgres`, `tautulli` or `5439` also spells a scheme, a file name or a port,
 * and replacing it wherever it occurs garbles the message without hiding anything. Messages are
 * built from redacted URLs; a library message that quotes a URL whole gets that URL replaced by
 * its redacted form (redactMessage).
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

/** Query parameters that carry a password (libpq reads `?password=`, `?sslpassword=`). */
const SECRET_PARAMETER = /pass|secret|token/i;

/**
 * `url` as it may be shown: its password (and password-like query parameters) as `***`;
 * `<unparseable URL>` when it is not a URL.
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "<unparseable URL>";
  }
  if (parsed.password) parsed.password = "***";
  for (const key of [...parsed.searchParams.keys()]) {
    if (SECRET_PARAMETER.test(key)) parsed.searchParams.set(key, "***");
  }
  // URLSearchParams.set re-encodes `*`; keep the marker readable.
  return parsed.toString().replace(/%2A%2A%2A/g, "***");
}

/**
 * `text` (a library's message) with each of `urls` replaced by its redacted form where it
 * appears whole, as given or as the URL parser prints it.
 */
export function redactMessage(text: string, urls: readonly (string | undefined)[]): string {
  let result = text;
  for (const url of urls) {
    if (!url) continue;
    const forms = new Set([url]);
    try {
      forms.add(new URL(url).toString());
    } catch {
      // only the given form can appear
    }
    const shown = redactUrl(url);
    for (const form of [...forms].sort((a, b) => b.length - a.length)) {
      result = result.split(form).join(shown);
    }
  }
  return result;
}
