/**
 * Reads the XML Plex Media Server answers with, for the few endpoints the verification uses.
 * The shapes follow python-plexapi (pkkid/python-plexapi): `plexapi/server.py` and the identity
 * endpoint's `MediaContainer` attributes, `plexapi/library.py` `LibrarySection._loadData`
 * (`Directory` key/type/title with `Location` path children), `plexapi/base.py` `fetchItems`
 * (`totalSize` on the container), and `plexapi/media.py` `MediaPart` (`exists` and `accessible`,
 * present only when the item is read with `checkFiles=1`; booleans are "1"/"0").
 */
import { XMLParser } from "fast-xml-parser";

/** What `/identity` says about the running server. */
export interface PlexIdentity {
  machineIdentifier: string;
  version: string;
  /** Whether the server is signed in to a plex.tv account (absent on very old servers). */
  claimed: boolean | null;
}

export interface PlexSection {
  key: string;
  title: string;
  /** movie, show, artist or photo. */
  type: string;
  /** The folders the section reads, as paths Plex sees (the VM's paths, mounted alike). */
  locations: string[];
}

export interface PlexItemsPage {
  /** Items in the whole listing (the container's totalSize), not just this page. */
  totalSize: number;
  items: { ratingKey: string; title: string }[];
}

/** One file of an item, as `checkFiles=1` reports it. */
export interface PlexPart {
  file: string;
  /** null when Plex did not say (it was not asked with checkFiles=1, or is too old). */
  exists: boolean | null;
  accessible: boolean | null;
}

type XmlNode = Record<string, unknown>;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  // Numeric character references (&#233;) occur in titles and file names.
  htmlEntities: true,
  parseAttributeValue: false,
  parseTagValue: false,
  // Every element is a list, so one child and many read alike.
  isArray: (_name, _path, _leaf, isAttribute) => !isAttribute,
});

/** A parse failure: the answer was not the XML Plex sends. */
export class PlexXmlError extends Error {
  constructor(what: string, detail: string) {
    super(`${what} is not the XML Plex Media Server writes: ${detail}`);
    this.name = "PlexXmlError";
  }
}

function mediaContainer(xml: string, what: string): XmlNode {
  let doc: XmlNode;
  try {
    doc = parser.parse(xml, true) as XmlNode;
  } catch (error) {
    throw new PlexXmlError(`Plex's answer to ${what}`, (error as Error).message);
  }
  const containers = doc.MediaContainer as XmlNode[] | undefined;
  if (!containers || containers.length !== 1) {
    throw new PlexXmlError(`Plex's answer to ${what}`, "no MediaContainer element");
  }
  return containers[0];
}

function attr(node: XmlNode, name: string): string | undefined {
  const value = node[`@${name}`];
  return typeof value === "string" ? value : undefined;
}

function children(node: XmlNode, tag: string): XmlNode[] {
  const value = node[tag];
  return Array.isArray(value) ? (value as XmlNode[]) : [];
}

/** Plex's booleans: "1"/"0" (python-plexapi's utils.cast(bool, ...)). */
function flag(value: string | undefined): boolean | null {
  if (value === undefined) return null;
  return value === "1" || value.toLowerCase() === "true";
}

/** The element children of a node (attributes and text aside), with their tag names. */
function elementChildren(node: XmlNode): [string, XmlNode][] {
  const out: [string, XmlNode][] = [];
  for (const [tag, value] of Object.entries(node)) {
    if (tag.startsWith("@") || tag === "#text" || !Array.isArray(value)) continue;
    for (const child of value as XmlNode[]) out.push([tag, child]);
  }
  return out;
}

export function parseIdentity(xml: string): PlexIdentity {
  const container = mediaContainer(xml, "/identity");
  const machineIdentifier = attr(container, "machineIdentifier");
  const version = attr(container, "version");
  if (!machineIdentifier || !version) {
    throw new PlexXmlError(
      "Plex's answer to /identity",
      "the MediaContainer has no machineIdentifier or version",
    );
  }
  return { machineIdentifier, version, claimed: flag(attr(container, "claimed")) };
}

export function parseSections(xml: string): PlexSection[] {
  const container = mediaContainer(xml, "/library/sections");
  return children(container, "Directory").map((directory) => {
    const key = attr(directory, "key");
    if (!key)
      throw new PlexXmlError("Plex's answer to /library/sections", "a Directory has no key");
    return {
      key,
      title: attr(directory, "title") ?? `section ${key}`,
      type: attr(directory, "type") ?? "",
      locations: children(directory, "Location")
        .map((location) => attr(location, "path"))
        .filter((path): path is string => typeof path === "string"),
    };
  });
}

/** A page of `/library/sections/{key}/all`: the items are Video, Track or Photo elements. */
export function parseItemsPage(xml: string, what: string): PlexItemsPage {
  const container = mediaContainer(xml, what);
  const items = elementChildren(container)
    .map(([, node]) => ({ ratingKey: attr(node, "ratingKey"), title: attr(node, "title") ?? "" }))
    .filter((item): item is { ratingKey: string; title: string } => !!item.ratingKey);
  const total = Number(attr(container, "totalSize") ?? attr(container, "size") ?? items.length);
  if (!Number.isInteger(total) || total < 0) {
    throw new PlexXmlError(
      `Plex's answer to ${what}`,
      "the MediaContainer's totalSize is not a count",
    );
  }
  return { totalSize: total, items };
}

/** The parts (files) of the item `/library/metadata/{id}?checkFiles=1` describes. */
export function parseMetadataParts(xml: string, what: string): PlexPart[] {
  const container = mediaContainer(xml, what);
  const parts: PlexPart[] = [];
  for (const [, item] of elementChildren(container)) {
    for (const media of children(item, "Media")) {
      for (const part of children(media, "Part")) {
        parts.push({
          file: attr(part, "file") ?? "",
          exists: flag(attr(part, "exists")),
          accessible: flag(attr(part, "accessible")),
        });
      }
    }
  }
  return parts;
}

/** A Setting of `/:/prefs` (e.g. autoEmptyTrash), or undefined when the server has none. */
export function parsePreference(xml: string, id: string): string | undefined {
  const container = mediaContainer(xml, "/:/prefs");
  const setting = children(container, "Setting").find((node) => attr(node, "id") === id);
  return setting ? attr(setting, "value") : undefined;
}

/** ProcessedMachineIdentifier of a Preferences.xml (the identity /identity reports), or null. */
export function parsePreferencesIdentity(xml: string): string | null {
  let doc: XmlNode;
  try {
    doc = parser.parse(xml, true) as XmlNode;
  } catch (error) {
    throw new PlexXmlError("Preferences.xml", (error as Error).message);
  }
  const preferences = (doc.Preferences as XmlNode[] | undefined)?.[0];
  if (!preferences) throw new PlexXmlError("Preferences.xml", "no Preferences element");
  return attr(preferences, "ProcessedMachineIdentifier") ?? null;
}
