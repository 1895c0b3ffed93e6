/**
 * The Plex verification (lib/plex/verify.ts) against test/support/fake-plex.ts, an HTTP server on
 * loopback answering as Plex Media Server does, with media files on disk (a missing file is what
 * an unmounted volume looks like to Plex).
 */
import * as assert from "assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { MediaVolume } from "../../lib/plex/media-volumes";
import { freePort } from "../../lib/net";
import { isReadOnlyPath, plexClient } from "../../lib/plex/verify-http";
import { PlexVerificationError, verifyPlex, VerifyPlexOptions } from "../../lib/plex/verify";
import { sampleOffsets } from "../../lib/plex/verify-sample";
import {
  EMPTY_TRASH_ADVICE,
  formatReport,
  OUTSIDE_CHECK_ADVICE,
  VerificationReport,
} from "../../lib/plex/verify-report";
import { parseItemsPage, parseSections } from "../../lib/plex/verify-xml";
import { FakePlex, FakeSection } from "../support/fake-plex";

const MACHINE_ID = "4b1c2f9e0d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";
const OTHER_ID = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432";
const VERSION = "1.41.3.9314-a0bfb8370";
const TOKEN = "xYz-PlexOnlineToken-9Qw3";

describe("Plex verification against a server answering as Plex Media Server", function () {
  let media: string;
  const plexes: FakePlex[] = [];

  before(() => {
    media = fs.mkdtempSync(path.join(os.tmpdir(), "plex-verify-media-"));
  });
  after(async () => {
    await Promise.all(plexes.map((p) => p.stop()));
    fs.rmSync(media, { recursive: true, force: true });
  });

  /** Files under `root` in the temp media dir; `present` of them exist on disk. */
  function items(root: string, count: number, present: number, firstKey: number, ext = "mkv") {
    const dir = path.join(media, root);
    fs.mkdirSync(dir, { recursive: true });
    return Array.from({ length: count }, (_, i) => {
      const file = path.join(dir, `Title & Co ${i} (20${10 + i}).${ext}`);
      if (i < present) fs.writeFileSync(file, "media");
      return { ratingKey: String(firstKey + i), title: `Title ${i}`, file };
    });
  }

  function volumes(): MediaVolume[] {
    return [
      {
        name: "media-movies",
        mountPath: path.join(media, "movies"),
        source: { kind: "nfs", server: "nas.lan", path: "/export/movies" },
        readOnly: true,
      },
      {
        name: "media-tv",
        mountPath: path.join(media, "tv"),
        source: { kind: "pvc", claimName: "tv-media" },
        readOnly: true,
      },
    ];
  }

  async function plex(
    sections: FakeSection[],
    over: Partial<ConstructorParameters<typeof FakePlex>[0]> = {},
  ) {
    const fake = await new FakePlex({
      machineIdentifier: MACHINE_ID,
      version: VERSION,
      token: TOKEN,
      sections,
      ...over,
    }).start();
    plexes.push(fake);
    return fake;
  }

  function options(
    fake: FakePlex | string,
    over: Partial<VerifyPlexOptions> = {},
  ): VerifyPlexOptions & { lines: string[] } {
    const lines: string[] = [];
    const url = typeof fake === "string" ? fake : fake.url;
    return {
      client: plexClient({ baseUrl: url, token: TOKEN, timeoutMs: 5000 }),
      target: "pod plex/plex-plex-media-server-0",
      expected: { machineIdentifier: MACHINE_ID, version: VERSION },
      mediaVolumes: volumes(),
      advertised: null,
      log: (line) => lines.push(line),
      now: () => new Date("2026-12-01T20:00:00Z"),
      lines,
      ...over,
    };
  }

  function assertNoToken(...texts: unknown[]) {
    for (const text of texts) {
      const s = typeof text === "string" ? text : JSON.stringify(text);
      assert.ok(!s.includes(TOKEN), `the token appears in: ${s.slice(0, 200)}`);
    }
  }

  async function failure(run: Promise<unknown>): Promise<PlexVerificationError> {
    try {
      await run;
    } catch (error) {
      assert.ok(error instanceof PlexVerificationError, `not a verification error: ${error}`);
      return error;
    }
    assert.fail("the verification passed");
  }

  it("passes for the same server with every sampled file readable, reading only", async () => {
    const fake = await plex(
      [
        {
          key: "1",
          title: "Movies",
          type: "movie",
          locations: [path.join(media, "movies")],
          items: items("movies", 12, 12, 100),
        },
        {
          key: "2",
          title: "TV Shows",
          type: "show",
          locations: [path.join(media, "tv")],
          items: items("tv", 3, 3, 200),
        },
      ],
      { autoEmptyTrash: false },
    );
    const opts = options(fake);
    const report = await verifyPlex(opts);
    assert.equal(report.passed, true);
    assert.deepEqual(report.identity, {
      expectedMachineIdentifier: MACHINE_ID,
      machineIdentifier: MACHINE_ID,
      expectedVersion: VERSION,
      version: VERSION,
      claimed: true,
    });
    assert.deepEqual(
      report.sections.map((s) => [s.title, s.status, s.items, s.sampled, s.readable]),
      [
        ["Movies", "readable", 12, 5, 5],
        ["TV Shows", "readable", 3, 3, 3],
      ],
    );
    assert.deepEqual(report.sections[0].locations, [
      {
        path: path.join(media, "movies"),
        volume: `${path.join(media, "movies")}=nfs://nas.lan/export/movies`,
        sampled: 5,
        readable: 5,
      },
    ]);
    assert.deepEqual(report.failures, []);
    assert.deepEqual(report.warnings, []);
    assert.match(
      formatReport(report),
      /advertised address: not checked \(the Plex networking mode advertises no address\)/,
    );
    assert.equal(report.autoEmptyTrash, false);
    // Off now, and the report still says to keep it off until it passes.
    assert.match(formatReport(report), /empty trash automatically: off/);
    assert.deepEqual(report.advice, [EMPTY_TRASH_ADVICE, OUTSIDE_CHECK_ADVICE]);
    // Samples spread over the listing (offsets 0, 2, 4, 7, 9 of 12), each file checked by Plex.
    const metadata = fake.requests.filter((r) => r.path.startsWith("/library/metadata/"));
    assert.deepEqual(
      metadata.map((r) => [r.path, r.query.checkFiles]),
      [100, 102, 104, 107, 109, 200, 201, 202].map((k) => [`/library/metadata/${k}`, "1"]),
    );
    // Episodes are sampled in a show library (type 4), movies in a movie library (type 1).
    assert.deepEqual(
      [
        ...new Set(
          fake.requests
            .filter((r) => r.path.endsWith("/all"))
            .map((r) => `${r.path}?type=${r.query.type}`),
        ),
      ],
      ["/library/sections/1/all?type=1", "/library/sections/2/all?type=4"],
    );
    // Read-only: GETs of the allowed paths only, the token in the header, never in a URL.
    for (const request of fake.requests) {
      assert.equal(request.method, "GET");
      assert.ok(isReadOnlyPath(request.path), request.path);
      assert.equal(request.tokenInQuery, false);
      // /identity needs no token, so it is not sent one; everything else carries it.
      assert.equal(request.authenticated, request.path !== "/identity");
    }
    assert.ok(!fake.requests.some((r) => /refresh|emptyTrash|scan/i.test(r.path)));
    assertNoToken(report, formatReport(report), opts.lines);
    assert.match(
      formatReport(report),
      /Movies \[movie\]: readable, 5\/5 sampled items readable \(of 12\)/,
    );
  });

  it("fails for another server: a new, unclaimed server was created", async () => {
    const fake = await plex(
      [{ key: "1", title: "Movies", type: "movie", locations: [], items: [] }],
      {
        machineIdentifier: OTHER_ID,
        claimed: false,
      },
    );
    const error = await failure(verifyPlex(options(fake)));
    assert.match(
      error.message,
      new RegExp(`answers as server ${OTHER_ID}, but the VM's server is ${MACHINE_ID}`),
    );
    assert.match(error.message, /a new, unclaimed server was created/);
    assert.match(error.message, /Fix: .*Preferences\.xml/);
    assert.match(error.message, /claimed no/);
    assert.equal(error.report?.passed, false);
    // The new server's libraries say nothing about the migrated one: they are not read.
    assert.deepEqual(
      fake.requests.map((r) => r.path),
      ["/identity"],
    );
    assertNoToken(error.message, error.report);
  });

  it("fails when the pod runs another Plex version than expected", async () => {
    const fake = await plex([], { version: "1.42.0.9975-abcdef123" });
    const error = await failure(verifyPlex(options(fake)));
    assert.match(
      error.message,
      /runs version 1\.42\.0\.9975-abcdef123, expected 1\.41\.3\.9314-a0bfb8370/,
    );
    assert.match(error.message, /Fix: unset plexImageTag/);
  });

  it("fails naming the library, its VM path and the volume when no sample is readable", async () => {
    const tv = path.join(media, "tv-missing");
    const fake = await plex([
      {
        key: "1",
        title: "Movies",
        type: "movie",
        locations: [path.join(media, "movies")],
        items: items("movies", 4, 4, 100),
      },
      {
        key: "3",
        title: "Series",
        type: "show",
        locations: [tv],
        items: items("tv-missing", 8, 0, 300),
      },
    ]);
    const opts = options(fake, {
      mediaVolumes: [
        ...volumes(),
        {
          name: "media-tv-missing",
          mountPath: tv,
          source: { kind: "hostPath", path: "/mnt/tv" },
          readOnly: true,
        },
      ],
    });
    const error = await failure(verifyPlex(opts));
    assert.match(
      error.message,
      /library "Series" \(section 3\): none of the 5 sampled items can be read/,
    );
    assert.ok(
      error.message.includes(
        `${tv} (mounted by plexMediaVolumes entry "${tv}=hostpath:///mnt/tv")`,
      ),
      error.message,
    );
    assert.match(error.message, /Do not let Plex scan this library/);
    // Plex's own default keeps autoEmptyTrash on: the report says to turn it off.
    assert.match(error.message, /"Empty trash automatically after every scan" is on: turn it off/);
    assert.ok(error.message.includes(EMPTY_TRASH_ADVICE));
    const series = error.report!.sections.find((s) => s.title === "Series")!;
    assert.deepEqual([series.status, series.sampled, series.readable], ["unreadable", 5, 0]);
    assert.deepEqual(series.unreadableFiles[0], {
      file: path.join(tv, "Title & Co 0 (2010).mkv"),
      exists: false,
      accessible: false,
    });
    assertNoToken(error.message, error.report, opts.lines);
  });

  it("names the missing plexMediaVolumes entry when no volume mounts the library's folder", async () => {
    const music = path.join(media, "music");
    const fake = await plex([
      {
        key: "4",
        title: "Music",
        type: "artist",
        locations: [music],
        items: items("music", 2, 0, 400, "flac"),
      },
    ]);
    const error = await failure(verifyPlex(options(fake)));
    assert.match(error.message, /library "Music" \(section 4\): none of the 2 sampled items/);
    assert.ok(
      error.message.includes(
        `${music} (no plexMediaVolumes entry mounts it: add one, e.g. "${music}=nfs://<server>/<export>")`,
      ),
    );
    assert.equal(fake.requests.find((r) => r.path === "/library/sections/4/all")?.query.type, "10");
  });

  it("passes a partly readable library with a warning that counts, naming the unreadable folder", async () => {
    const a = path.join(media, "movies-a");
    const b = path.join(media, "movies-b");
    const sectionItems = [...items("movies-a", 5, 5, 500), ...items("movies-b", 5, 0, 600)];
    const fake = await plex([
      { key: "5", title: "Films", type: "movie", locations: [a, b], items: sectionItems },
    ]);
    const opts = options(fake, {
      samplesPerSection: 4,
      mediaVolumes: [
        {
          name: "a",
          mountPath: a,
          source: { kind: "nfs", server: "nas", path: "/a" },
          readOnly: true,
        },
        {
          name: "b",
          mountPath: b,
          source: { kind: "nfs", server: "nas", path: "/b" },
          readOnly: false,
        },
      ],
    });
    const report = await verifyPlex(opts);
    assert.equal(report.passed, true);
    const films = report.sections[0];
    assert.deepEqual(
      [films.status, films.items, films.sampled, films.readable],
      ["partly-readable", 10, 4, 2],
    );
    assert.deepEqual(
      films.locations.map((l) => [l.path, l.sampled, l.readable]),
      [
        [a, 2, 2],
        [b, 2, 0],
      ],
    );
    assert.ok(
      report.warnings.some((w) =>
        w.startsWith('library "Films" (section 5): 2 of 4 sampled items are readable'),
      ),
      report.warnings.join("\n"),
    );
    assert.ok(
      report.warnings.some((w) =>
        w.includes(
          `none of the 2 items sampled in ${b} (mounted by plexMediaVolumes entry "${b}=nfs://nas/b?rw") is readable`,
        ),
      ),
    );
    assertNoToken(report, opts.lines);
  });

  it("fails with what a rejected token means when Plex answers 401", async () => {
    const fake = await plex([]);
    const opts = options(fake, {
      client: plexClient({ baseUrl: fake.url, token: "not-the-server-token" }),
    });
    const error = await failure(verifyPlex(opts));
    assert.match(
      error.message,
      /rejected the server's own token \(HTTP 401 on \/library\/sections\)/,
    );
    assert.match(error.message, /Fix: compare .*Preferences\.xml/);
    assert.ok(!error.message.includes("not-the-server-token"));
  });

  it("asks again while Plex answers 503 (starting), and fails with the fix when it stays busy", async () => {
    const sections: FakeSection[] = [
      {
        key: "1",
        title: "Movies",
        type: "movie",
        locations: [path.join(media, "movies")],
        items: items("movies", 2, 2, 100),
      },
    ];
    const starting = await plex(sections, { busyResponses: 2 });
    const report = await verifyPlex(options(starting, { busyRetry: { tries: 3, delayMs: 0 } }));
    assert.equal(report.passed, true);
    assert.deepEqual(
      starting.requests.slice(0, 4).map((r) => r.path),
      ["/identity", "/library/sections", "/library/sections", "/library/sections"],
    );
    const busy = await plex(sections, { busyResponses: 100 });
    const error = await failure(verifyPlex(options(busy, { busyRetry: { tries: 3, delayMs: 0 } })));
    assert.match(
      error.message,
      /answered HTTP 503 \(busy\) to \/library\/sections 3 times: it is still starting/,
    );
  });

  it("fails with the fix when Plex does not answer", async () => {
    const port = await freePort();
    const error = await failure(verifyPlex(options(`http://127.0.0.1:${port}`)));
    assert.match(
      error.message,
      /Plex in the cluster \(pod plex\/plex-plex-media-server-0\) did not answer \/identity/,
    );
    assert.match(error.message, /ECONNREFUSED/);
    assert.match(error.message, /Fix: check the Plex container's log/);
  });

  it("checks the advertised address's identity and warns when it reaches nothing or another server", async () => {
    const fake = await plex([
      {
        key: "1",
        title: "Movies",
        type: "movie",
        locations: [path.join(media, "movies")],
        items: items("movies", 1, 1, 100),
      },
    ]);
    const other = await plex([], { machineIdentifier: OTHER_ID });
    const viaHttp = async (url: string) => plexClient({ baseUrl: url }).get("/identity", {}, false);

    const same = await verifyPlex(
      options(fake, { advertised: { url: fake.url, fetchIdentity: viaHttp } }),
    );
    assert.deepEqual(same.advertised, {
      url: fake.url,
      answered: true,
      machineIdentifier: MACHINE_ID,
    });
    assert.deepEqual(same.warnings, []);
    assert.match(
      formatReport(same),
      new RegExp(`advertised address ${fake.url}: answers /identity as ${MACHINE_ID}`),
    );

    const elsewhere = await verifyPlex(
      options(fake, { advertised: { url: other.url, fetchIdentity: viaHttp } }),
    );
    assert.match(
      elsewhere.warnings[0],
      new RegExp(`answers as server ${OTHER_ID}, not the migrated ${MACHINE_ID}`),
    );

    const port = await freePort();
    const nowhere = await verifyPlex(
      options(fake, { advertised: { url: `http://127.0.0.1:${port}`, fetchIdentity: viaHttp } }),
    );
    assert.equal(nowhere.advertised.url, `http://127.0.0.1:${port}`);
    assert.match(
      nowhere.warnings[0],
      /did not answer \/identity from inside the cluster \(.*ECONNREFUSED\)/,
    );
  });

  it("reads Plex's XML: entities in titles and paths, one or many children, totalSize", () => {
    const sections = parseSections(
      `<?xml version="1.0" encoding="UTF-8"?>\n<MediaContainer size="1"><Directory key="7" type="movie" title="Films &amp; S&#233;ries"><Location id="1" path="/srv/a &quot;b&quot;" /><Location id="2" path="/srv/c" /></Directory></MediaContainer>`,
    );
    assert.deepEqual(sections, [
      { key: "7", title: "Films & Séries", type: "movie", locations: ['/srv/a "b"', "/srv/c"] },
    ]);
    assert.deepEqual(
      parseItemsPage(`<MediaContainer size="0" totalSize="42" offset="0"></MediaContainer>`, "x"),
      { totalSize: 42, items: [] },
    );
    assert.throws(
      () => parseSections("<html><body>401 Unauthorized</body></html>"),
      /Plex's answer to \/library\/sections is not the XML Plex Media Server writes: no MediaContainer/,
    );
  });

  it("spreads samples over the listing", () => {
    assert.deepEqual(sampleOffsets(3, 5), [0, 1, 2]);
    assert.deepEqual(sampleOffsets(100, 5), [0, 20, 40, 60, 80]);
    assert.deepEqual(sampleOffsets(0, 5), []);
  });

  it("refuses any request that is not a read", async () => {
    const client = plexClient({ baseUrl: "http://127.0.0.1:1", token: TOKEN });
    await assert.rejects(
      client.get("/library/sections/1/refresh"),
      /refusing to send \/library\/sections\/1\/refresh to Plex: not a read-only path/,
    );
    await assert.rejects(client.get("/library/sections/1/emptyTrash"), /not a read-only path/);
  });

  it("formats a report without any secret", () => {
    const report: VerificationReport = {
      verifiedAt: "2026-12-01T20:00:00.000Z",
      passed: true,
      identity: {
        expectedMachineIdentifier: MACHINE_ID,
        machineIdentifier: MACHINE_ID,
        expectedVersion: VERSION,
        version: VERSION,
        claimed: true,
      },
      sections: [],
      advertised: { url: null, detail: "none" },
      autoEmptyTrash: null,
      failures: [],
      warnings: [],
      advice: [EMPTY_TRASH_ADVICE],
    };
    assert.equal(
      formatReport(report),
      [
        "Plex verification PASSED at 2026-12-01T20:00:00.000Z",
        `identity: server ${MACHINE_ID} (expected ${MACHINE_ID}), version ${VERSION} (expected ${VERSION}), claimed yes`,
        "libraries (0):",
        "advertised address: not checked (none)",
        "empty trash automatically: unknown",
        EMPTY_TRASH_ADVICE,
      ].join("\n"),
    );
  });
});
