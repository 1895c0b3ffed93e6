/**
 * An HTTP server that answers like Plex Media Server for what the verification reads: `/identity`
 * (no token needed), `/library/sections`, `/library/sections/{key}/all` (paged with
 * X-Plex-Container-Start/Size as query or header, `type` filter, `totalSize`),
 * `/library/metadata/{id}` (with `exists`/`accessible` on each Part only when `checkFiles=1`, as
 * Plex checks the file on disk) and `/:/prefs`. Every other request gets 404.
 *
 * Modelled on pkkid/python-plexapi: plexapi/server.py (X-Plex-Token header, 401 → Unauthorized),
 * plexapi/library.py (LibrarySection: Directory attributes, Location path children; totalViewSize
 * with X-Plex-Container-Size 0 and totalSize), plexapi/media.py (MediaPart: file, exists,
 * accessible as "1"/"0"), plexapi/settings.py (Setting id/type/value) and tests/test_video.py
 * (test_video_exists_accessible: the attributes are absent until checkFiles). The 401 body is the
 * HTML page PMS sends.
 *
 * A Part's `exists` and `accessible` come from the file on disk, so tests make media unreadable
 * the way a missing mount does: the file is not there.
 */
import * as fs from "fs";
import * as http from "http";
import type { AddressInfo } from "net";

export interface FakeItem {
  ratingKey: string;
  title: string;
  /** The file's path as Plex stores it; `exists`/`accessible` are read from this path. */
  file: string;
}

export interface FakeSection {
  key: string;
  title: string;
  type: "movie" | "show" | "artist" | "photo" | string;
  locations: string[];
  items: FakeItem[];
}

export interface FakePlexOptions {
  machineIdentifier: string;
  version: string;
  token: string;
  claimed?: boolean;
  sections: FakeSection[];
  autoEmptyTrash?: boolean;
  /** Answer this many token-checked requests with 503 first, as a Plex still starting does. */
  busyResponses?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  /** Whether the request carried the right token (the token itself is never recorded). */
  authenticated: boolean;
  tokenInQuery: boolean;
}

/** The item element per section type, with the type number the `type` filter matches. */
const ITEM_ELEMENT: Record<string, { tag: string; type: string; typeNumber: number }> = {
  movie: { tag: "Video", type: "movie", typeNumber: 1 },
  show: { tag: "Video", type: "episode", typeNumber: 4 },
  artist: { tag: "Track", type: "track", typeNumber: 10 },
  photo: { tag: "Photo", type: "photo", typeNumber: 13 },
};

const UNAUTHORIZED_BODY =
  "<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1></body></html>";

function xmlAttr(value: string | number): string {
  return String(value)
    .replace(/&/g, "&amp;")
    .replace(/"/g, "&quot;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;");
}

function attrs(values: Record<string, string | number | undefined>): string {
  return Object.entries(values)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}="${xmlAttr(v as string | number)}"`)
    .join(" ");
}

function document(body: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${body}\n`;
}

function fileState(file: string): { exists: string; accessible: string } {
  const exists = fs.existsSync(file);
  let accessible = false;
  if (exists) {
    try {
      fs.accessSync(file, fs.constants.R_OK);
      accessible = true;
    } catch {
      accessible = false;
    }
  }
  return { exists: exists ? "1" : "0", accessible: accessible ? "1" : "0" };
}

export class FakePlex {
  readonly requests: RecordedRequest[] = [];
  private server?: http.Server;
  url = "";

  constructor(readonly options: FakePlexOptions) {}

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => this.answer(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://plex");
    const query = Object.fromEntries(url.searchParams.entries());
    const headerToken = req.headers["x-plex-token"];
    const tokenInQuery = "X-Plex-Token" in query;
    const given =
      (typeof headerToken === "string" ? headerToken : undefined) ?? query["X-Plex-Token"];
    const authenticated = given === this.options.token;
    delete query["X-Plex-Token"];
    this.requests.push({
      method: req.method ?? "",
      path: url.pathname,
      query,
      authenticated,
      tokenInQuery,
    });

    const send = (status: number, body: string, type = "text/xml;charset=utf-8") => {
      res.writeHead(status, { "Content-Type": type, "X-Plex-Protocol": "1.0" });
      res.end(body);
    };
    if (req.method !== "GET") return send(405, "", "text/html");
    if (url.pathname === "/identity") return send(200, this.identity());
    if (!authenticated) return send(401, UNAUTHORIZED_BODY, "text/html");
    if ((this.options.busyResponses ?? 0) > 0) {
      this.options.busyResponses! -= 1;
      return send(503, "", "text/html");
    }
    const container = (name: string) =>
      query[name] ?? (req.headers[name.toLowerCase()] as string | undefined);

    if (url.pathname === "/library/sections") return send(200, this.sectionsXml());
    if (url.pathname === "/:/prefs") return send(200, this.prefsXml());
    let match = /^\/library\/sections\/(\d+)\/all$/.exec(url.pathname);
    if (match) {
      const section = this.options.sections.find((s) => s.key === match![1]);
      if (!section) return send(404, "", "text/html");
      const start = Number(container("X-Plex-Container-Start") ?? 0);
      const size = Number(container("X-Plex-Container-Size") ?? 50);
      return send(200, this.allXml(section, query.type, start, size));
    }
    match = /^\/library\/metadata\/(\d+)$/.exec(url.pathname);
    if (match) {
      const found = this.findItem(match[1]);
      if (!found) return send(404, "", "text/html");
      return send(200, this.metadataXml(found.section, found.item, query.checkFiles === "1"));
    }
    send(404, "", "text/html");
  }

  private identity(): string {
    const { machineIdentifier, version, claimed = true } = this.options;
    return document(
      `<MediaContainer ${attrs({ size: 0, apiVersion: "1.1.1", claimed: claimed ? 1 : 0, machineIdentifier, version })}>\n</MediaContainer>`,
    );
  }

  private sectionsXml(): string {
    const dirs = this.options.sections.map((s, i) => {
      const kind = ITEM_ELEMENT[s.type];
      const directory = attrs({
        allowSync: 1,
        art: `/:/resources/${s.type}-fanart.jpg`,
        composite: `/library/sections/${s.key}/composite/1712345678`,
        filters: 1,
        refreshing: 0,
        thumb: `/:/resources/${s.type}.png`,
        key: s.key,
        type: s.type,
        title: s.title,
        agent: kind
          ? `tv.plex.agents.${s.type === "artist" ? "music" : s.type === "show" ? "series" : s.type}`
          : "com.plexapp.agents.none",
        scanner:
          s.type === "movie"
            ? "Plex Movie"
            : s.type === "show"
              ? "Plex TV Series"
              : s.type === "artist"
                ? "Plex Music"
                : "Plex Photo Scanner",
        language: "en-US",
        uuid: `0f7c8b1e-2a3d-4c5e-8f90-${String(i).padStart(12, "0")}`,
        updatedAt: 1712345678,
        createdAt: 1600000000,
        scannedAt: 1712345678,
        content: 1,
        directory: 1,
        contentChangedAt: 123456,
        hidden: 0,
      });
      const locations = s.locations
        .map((path, j) => `<Location ${attrs({ id: i * 10 + j + 1, path })} />`)
        .join("\n");
      return `<Directory ${directory}>\n${locations}\n</Directory>`;
    });
    return document(
      `<MediaContainer ${attrs({ size: dirs.length, allowSync: 0, title1: "Plex Library" })}>\n${dirs.join("\n")}\n</MediaContainer>`,
    );
  }

  private itemXml(section: FakeSection, item: FakeItem, checkFiles: boolean | null): string {
    const kind = ITEM_ELEMENT[section.type] ?? ITEM_ELEMENT.movie;
    const partAttrs: Record<string, string | number | undefined> = {
      id: Number(item.ratingKey) * 10,
      key: `/library/parts/${Number(item.ratingKey) * 10}/1712345678/file${item.file.slice(item.file.lastIndexOf("."))}`,
      duration: kind.tag === "Photo" ? undefined : 5_400_000,
      file: item.file,
      size: 1_468_006_400,
      container: item.file.slice(item.file.lastIndexOf(".") + 1),
    };
    if (checkFiles) Object.assign(partAttrs, fileState(item.file));
    const part = `<Part ${attrs(partAttrs)}${checkFiles === null ? " />" : '>\n<Stream id="1" streamType="1" codec="h264" index="0" />\n</Part>'}`;
    const media = `<Media ${attrs({ id: Number(item.ratingKey) * 10 + 1, duration: kind.tag === "Photo" ? undefined : 5_400_000, container: partAttrs.container as string })}>\n${part}\n</Media>`;
    const element = attrs({
      ratingKey: item.ratingKey,
      key: `/library/metadata/${item.ratingKey}`,
      guid: `plex://${kind.type}/5d7768${item.ratingKey.padStart(6, "0")}`,
      librarySectionID: section.key,
      librarySectionTitle: section.title,
      type: kind.type,
      title: item.title,
      addedAt: 1600000000,
      updatedAt: 1712345678,
    });
    return `<${kind.tag} ${element}>\n${media}\n</${kind.tag}>`;
  }

  private allXml(
    section: FakeSection,
    type: string | undefined,
    start: number,
    size: number,
  ): string {
    const kind = ITEM_ELEMENT[section.type];
    const matching =
      type === undefined || (kind && Number(type) === kind.typeNumber) ? section.items : [];
    const page = matching.slice(start, start + size);
    return document(
      `<MediaContainer ${attrs({
        size: page.length,
        totalSize: matching.length,
        allowSync: 1,
        identifier: "com.plexapp.plugins.library",
        librarySectionID: section.key,
        librarySectionTitle: section.title,
        mediaTagPrefix: "/system/bundle/media/flags/",
        mediaTagVersion: 1712345678,
        offset: start,
        title1: section.title,
        title2: "All",
        viewGroup: kind?.type ?? "secondary",
      })}>\n${page.map((item) => this.itemXml(section, item, null)).join("\n")}\n</MediaContainer>`,
    );
  }

  private metadataXml(section: FakeSection, item: FakeItem, checkFiles: boolean): string {
    return document(
      `<MediaContainer ${attrs({
        size: 1,
        allowSync: 1,
        identifier: "com.plexapp.plugins.library",
        librarySectionID: section.key,
        librarySectionTitle: section.title,
        librarySectionUUID: "0f7c8b1e-2a3d-4c5e-8f90-000000000000",
        mediaTagPrefix: "/system/bundle/media/flags/",
        mediaTagVersion: 1712345678,
      })}>\n${this.itemXml(section, item, checkFiles)}\n</MediaContainer>`,
    );
  }

  private prefsXml(): string {
    const value = (this.options.autoEmptyTrash ?? true) ? "true" : "false";
    const settings = [
      attrs({
        id: "FriendlyName",
        label: "Friendly name",
        summary: "",
        type: "text",
        default: "",
        value: "plexbox",
        hidden: 0,
        advanced: 0,
        group: "general",
      }),
      attrs({
        id: "autoEmptyTrash",
        label: "Empty trash automatically after every scan",
        summary: "",
        type: "bool",
        default: "true",
        value,
        hidden: 0,
        advanced: 0,
        group: "library",
      }),
    ];
    return document(
      `<MediaContainer size="${settings.length}">\n${settings.map((s) => `<Setting ${s} />`).join("\n")}\n</MediaContainer>`,
    );
  }

  private findItem(ratingKey: string): { section: FakeSection; item: FakeItem } | undefined {
    for (const section of this.options.sections) {
      const item = section.items.find((i) => i.ratingKey === ratingKey);
      if (item) return { section, item };
    }
    return undefined;
  }
}
