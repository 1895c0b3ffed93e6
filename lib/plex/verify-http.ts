/**
 * A read-only HTTP client for the migrated Plex Media Server. It only ever sends GET requests to
 * the endpoints the verification reads (identity, the library listing, item metadata, the
 * preferences), so nothing it does can start a scan, empty the trash or change a setting. The
 * server's own token travels in the X-Plex-Token header (never in a URL, never in a message).
 */
import * as http from "http";
import * as https from "https";

/** Why a request to Plex did not give an answer the verification can use. */
export type PlexRequestFailure = "not-answering" | "token-rejected" | "http-error";

export class PlexRequestError extends Error {
  constructor(
    readonly failure: PlexRequestFailure,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "PlexRequestError";
  }
}

/** The only paths the verification reads; anything else is refused before it is sent. */
const READ_ONLY_PATHS = [
  /^\/identity$/,
  /^\/library\/sections$/,
  /^\/library\/sections\/\d+\/all$/,
  /^\/library\/metadata\/\d+$/,
  /^\/:\/prefs$/,
];

export function isReadOnlyPath(path: string): boolean {
  return READ_ONLY_PATHS.some((pattern) => pattern.test(path));
}

export interface PlexClientOptions {
  /** http(s)://host:port of the server (e.g. the local end of the tunnel). */
  baseUrl: string;
  /** The server's own token (PlexOnlineToken); omitted for /identity, which needs none. */
  token?: string;
  /** Per-request timeout. @default 20000 */
  timeoutMs?: number;
}

export interface PlexClient {
  /** GETs `path` with `query`; resolves with the XML body of a 200 answer. */
  get(
    path: string,
    query?: Record<string, string | number>,
    authenticated?: boolean,
  ): Promise<string>;
  /** Where the client talks to, for messages (no token in it). */
  readonly where: string;
}

export function plexClient(options: PlexClientOptions): PlexClient {
  const base = new URL(options.baseUrl);
  const timeoutMs = options.timeoutMs ?? 20_000;
  const where = `${base.protocol}//${base.host}`;
  return {
    where,
    get(path, query = {}, authenticated = true) {
      if (!isReadOnlyPath(path)) {
        return Promise.reject(new Error(`refusing to send ${path} to Plex: not a read-only path`));
      }
      const url = new URL(path, base);
      for (const [name, value] of Object.entries(query)) url.searchParams.set(name, String(value));
      const headers: Record<string, string> = { Accept: "application/xml" };
      if (authenticated && options.token) headers["X-Plex-Token"] = options.token;
      return request(url, headers, timeoutMs, `${where}${path}`);
    },
  };
}

function request(
  url: URL,
  headers: Record<string, string>,
  timeoutMs: number,
  shown: string,
): Promise<string> {
  const transport = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(url, { method: "GET", headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("error", (error) =>
        reject(new PlexRequestError("not-answering", `${shown}: ${error.message}`)),
      );
      res.on("end", () => {
        const status = res.statusCode ?? 0;
        if (status === 200) return resolve(Buffer.concat(chunks).toString("utf8"));
        if (status === 401 || status === 403) {
          return reject(
            new PlexRequestError("token-rejected", `${shown} answered HTTP ${status}`, status),
          );
        }
        reject(new PlexRequestError("http-error", `${shown} answered HTTP ${status}`, status));
      });
    });
    req.setTimeout(timeoutMs, () =>
      req.destroy(new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`)),
    );
    req.on("error", (error: NodeJS.ErrnoException) =>
      reject(new PlexRequestError("not-answering", `${shown}: ${error.code ?? error.message}`)),
    );
    req.end();
  });
}
