/**
 * scripts/plex-init.sh on its own, for real (sh, curl, GNU tar, gzip), against an HTTP server in
 * this process that misbehaves on purpose: dropped connections, no Range support, 404, nothing
 * listening. Also: bad settings, a Library it did not create, runs interrupted at every point,
 * missing tools installed through apk, and an archive with the wrong layout.
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import { compareTrees, digestTree } from "../../lib/samples/plex-tree";
import { INIT_EXIT_CODES, INIT_LOG, INIT_MARKER } from "../../lib/plex/init-script";
import {
  freePort,
  killGroup,
  startPlexInit,
  type PlexInitEnv,
  type ProcessResult,
} from "../../lib/plex/local-run";

const DATA_ROOT = "Library/Application Support/Plex Media Server";
const TOKEN = "Zx9-kQ_tokenThatMustNeverBeLogged42";

type Behaviour =
  | { kind: "ok" }
  | { kind: "drop"; afterBytes: number[] } // the n-th request ends after afterBytes[n] bytes
  | { kind: "ignore-range"; afterBytes: number }
  | { kind: "status"; status: number };

/** A Range-capable file server whose behaviour the test sets per case. */
class TestServer {
  behaviour: Behaviour = { kind: "ok" };
  requests: { range?: string }[] = [];
  private server?: http.Server;
  port = 0;

  constructor(private readonly file: () => Buffer) {}

  async start(): Promise<void> {
    this.port = await freePort();
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(this.port, "127.0.0.1", resolve));
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
  }

  url(name = "plex-library.tar.gz"): string {
    return `http://127.0.0.1:${this.port}/${TOKEN}/${name}`;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const index = this.requests.length;
    this.requests.push({ range: req.headers.range });
    const behaviour = this.behaviour;
    if (behaviour.kind === "status" || !req.url?.startsWith(`/${TOKEN}/`)) {
      res.writeHead(behaviour.kind === "status" ? behaviour.status : 404).end();
      return;
    }
    const body = this.file();
    const match = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    const start = match && behaviour.kind !== "ignore-range" ? Number(match[1]) : 0;
    const headers = { "Content-Length": String(body.length - start) };
    if (start > 0) {
      res.writeHead(206, {
        ...headers,
        "Content-Range": `bytes ${start}-${body.length - 1}/${body.length}`,
      });
    } else {
      res.writeHead(200, headers);
    }
    let limit = body.length - start;
    if (behaviour.kind === "drop" && index < behaviour.afterBytes.length)
      limit = behaviour.afterBytes[index];
    if (behaviour.kind === "ignore-range" && index === 0) limit = behaviour.afterBytes;
    if (limit >= body.length - start) {
      res.end(body.subarray(start));
      return;
    }
    // Send part of the body, then cut the connection (a dropped link or a killed server).
    res.write(body.subarray(start, start + limit), () =>
      setTimeout(() => res.socket?.destroy(), 50),
    );
  }
}

describe("plex-init.sh (sh, curl, tar against a test HTTP server)", function () {
  this.timeout(120_000);
  let root: string;
  let sourceDir: string;
  let scratch: string;
  let archive: Buffer;
  let sha256: string;
  let server: TestServer;
  let caseNumber = 0;

  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "plex-init-"));
    sourceDir = path.join(root, "source");
    scratch = path.join(root, "tmp");
    fs.mkdirSync(scratch);
    const data = path.join(sourceDir, DATA_ROOT);
    fs.mkdirSync(path.join(data, "Metadata", "Movies", "ä b"), { recursive: true });
    fs.mkdirSync(path.join(data, "Cache", "empty"), { recursive: true });
    fs.writeFileSync(path.join(data, "Preferences.xml"), '<Preferences MachineIdentifier="x"/>\n');
    fs.writeFileSync(
      path.join(data, "Metadata", "Movies", "ä b", "poster.jpg"),
      crypto.randomBytes(3 * 1024 * 1024),
    );
    fs.symlinkSync("ä b", path.join(data, "Metadata", "Movies", "latest"));
    fs.chmodSync(path.join(data, "Preferences.xml"), 0o600);
    const tar = spawnSync(
      "tar",
      ["-c", "-z", "--numeric-owner", "-f", "-", "-C", sourceDir, "Library"],
      {
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    assert.strictEqual(tar.status, 0, tar.stderr?.toString());
    archive = tar.stdout;
    sha256 = crypto.createHash("sha256").update(archive).digest("hex");
    server = new TestServer(() => archive);
    await server.start();
  });

  after(async () => {
    await server?.stop();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  beforeEach(() => {
    server.behaviour = { kind: "ok" };
    server.requests = [];
  });

  function freshConfig(): string {
    const config = path.join(root, `config-${++caseNumber}`);
    fs.mkdirSync(config);
    return config;
  }

  function envFor(config: string, extra: Partial<PlexInitEnv> = {}): PlexInitEnv {
    return {
      PLEX_CONFIG_DIR: config,
      PLEX_ARCHIVE_URL: server.url(),
      PLEX_ARCHIVE_SHA256: sha256,
      PLEX_ARCHIVE_BYTES: String(archive.length),
      PLEX_UID: "1000",
      PLEX_GID: "1000",
      PLEX_INIT_RETRY_DELAY: "1",
      PLEX_INIT_INSTALL_TOOLS: "never",
      // Its FIFOs go here, so a run killed with SIGKILL leaves nothing outside this test's dir.
      PLEX_INIT_TMPDIR: scratch,
      ...extra,
    };
  }

  async function assertImported(config: string, result: ProcessResult): Promise<void> {
    assert.strictEqual(result.code, 0, result.stderr);
    const expected = await digestTree(path.join(sourceDir, "Library"));
    const actual = await digestTree(path.join(config, "Library"));
    assert.deepStrictEqual(compareTrees(expected, actual), []);
    assert.ok(fs.existsSync(path.join(config, INIT_MARKER)));
    assert.ok(!fs.existsSync(path.join(config, ".plex-migrate", "staging")));
  }

  function assertNothingImported(config: string, result: ProcessResult, code: number): void {
    assert.strictEqual(result.code, code, result.stderr);
    assert.ok(!fs.existsSync(path.join(config, "Library")), "no Library");
    assert.ok(!fs.existsSync(path.join(config, ".plex-migrate", "staging")), "no staging dir");
    assert.ok(!fs.existsSync(path.join(config, INIT_MARKER)), "no marker");
    assertNoToken(config, result);
  }

  function assertNoToken(config: string, result: ProcessResult): void {
    const log = fs.existsSync(path.join(config, INIT_LOG))
      ? fs.readFileSync(path.join(config, INIT_LOG), "utf8")
      : "";
    assert.ok(!result.stderr.includes(TOKEN), "token in stderr");
    assert.ok(!log.includes(TOKEN), "token in the log on the volume");
  }

  it("resumes with HTTP Range after each dropped connection and completes", async () => {
    const config = freshConfig();
    server.behaviour = { kind: "drop", afterBytes: [700_000, 1_100_000] };
    const result = await startPlexInit(envFor(config)).done;
    await assertImported(config, result);
    assert.deepStrictEqual(
      server.requests.map((r) => r.range),
      [undefined, "bytes=700000-", "bytes=1800000-"],
      "each attempt asks for exactly the bytes not yet received",
    );
    assert.match(result.stderr, /resuming at byte 700000 of \d+ \(attempt 2\)/);
    assert.match(result.stderr, /resuming at byte 1800000 of \d+ \(attempt 3\)/);
    assertNoToken(config, result);
  });

  it("stops at once on HTTP 404 (wrong token or server gone), naming the fix", async () => {
    const config = freshConfig();
    server.behaviour = { kind: "status", status: 404 };
    const result = await startPlexInit(envFor(config)).done;
    assertNothingImported(config, result, INIT_EXIT_CODES.download);
    assert.strictEqual(server.requests.length, 1, "no retry of a refusal");
    assert.match(result.stderr, /refused the archive \(HTTP 404\).*run pulumi up again/);
  });

  it("retries server errors, and gives up after PLEX_INIT_RETRIES attempts without progress", async () => {
    const config = freshConfig();
    server.behaviour = { kind: "status", status: 503 };
    const result = await startPlexInit(envFor(config, { PLEX_INIT_RETRIES: "2" })).done;
    assertNothingImported(config, result, INIT_EXIT_CODES.download);
    assert.strictEqual(server.requests.length, 3, "one attempt and two retries");
    assert.match(result.stderr, /giving up after 2 attempts without progress/);

    const nobody = freshConfig();
    const closed = await startPlexInit(
      envFor(nobody, {
        PLEX_INIT_RETRIES: "1",
        PLEX_ARCHIVE_URL: `http://127.0.0.1:${await freePort()}/${TOKEN}/plex-library.tar.gz`,
      }),
    ).done;
    assertNothingImported(nobody, closed, INIT_EXIT_CODES.download);
    assert.match(closed.stderr, /curl exit 7/);
  });

  it("refuses to splice a stream from a server that ignores Range", async () => {
    const config = freshConfig();
    server.behaviour = { kind: "ignore-range", afterBytes: 500_000 };
    const result = await startPlexInit(envFor(config)).done;
    assertNothingImported(config, result, INIT_EXIT_CODES.download);
    assert.match(result.stderr, /cannot resume at byte 500000 \(no HTTP Range support\)/);
  });

  it("rejects bad settings before touching anything, naming the variable", async () => {
    const cases: [Partial<PlexInitEnv>, RegExp][] = [
      [{ PLEX_ARCHIVE_SHA256: "abc" }, /PLEX_ARCHIVE_SHA256 must be 64 hex digits/],
      [{ PLEX_ARCHIVE_BYTES: "12 MB" }, /PLEX_ARCHIVE_BYTES must be the archive length in bytes/],
      [
        { PLEX_ARCHIVE_FORMAT: "zip" },
        /PLEX_ARCHIVE_FORMAT "zip" is not one of tar\.zst, tar\.gz, tar/,
      ],
      [
        { PLEX_ARCHIVE_URL: undefined, PLEX_ARCHIVE_URL_FILE: "/nonexistent/archive-url" },
        /no archive URL: set PLEX_ARCHIVE_URL or mount the URL Secret at \/nonexistent\/archive-url/,
      ],
      [{ PLEX_ARCHIVE_URL: "ftp://host/x.tar.gz" }, /must start with http:\/\/ or https:\/\//],
      [{ PLEX_ARCHIVE_URL: `http://host/${TOKEN}/a b".tar.gz` }, /characters that are not allowed/],
      [
        { PLEX_ARCHIVE_URL: `http://host/${TOKEN}/archive.bin` },
        /cannot tell the archive format from the URL: set PLEX_ARCHIVE_FORMAT/,
      ],
      [{ PLEX_UID: "plex" }, /PLEX_UID must be a numeric uid/],
      [{ PLEX_INIT_INSTALL_TOOLS: "maybe" }, /PLEX_INIT_INSTALL_TOOLS must be auto or never/],
    ];
    for (const [overrides, message] of cases) {
      const config = freshConfig();
      const result = await startPlexInit(envFor(config, overrides)).done;
      assert.match(result.stderr, message);
      assertNothingImported(config, result, INIT_EXIT_CODES.settings);
    }
    assert.strictEqual(server.requests.length, 0, "nothing was downloaded");
    const missing = await startPlexInit(envFor(path.join(root, "no-such-dir"))).done;
    assert.strictEqual(missing.code, INIT_EXIT_CODES.settings);
    assert.match(
      missing.stderr,
      /config directory .*no-such-dir does not exist \(set PLEX_CONFIG_DIR\)/,
    );
  });

  it("reads the URL from the mounted Secret file (as in the pod)", async () => {
    const config = freshConfig();
    const secretDir = path.join(root, `secret-${caseNumber}`);
    fs.mkdirSync(secretDir);
    fs.writeFileSync(path.join(secretDir, "archive-url"), `${server.url()}\n`, { mode: 0o400 });
    const result = await startPlexInit(
      envFor(config, {
        PLEX_ARCHIVE_URL: undefined,
        PLEX_ARCHIVE_URL_FILE: path.join(secretDir, "archive-url"),
      }),
    ).done;
    await assertImported(config, result);
  });

  it("never overwrites a Library it did not create", async () => {
    const config = freshConfig();
    const theirs = path.join(config, "Library", "Application Support", "Plex Media Server");
    fs.mkdirSync(theirs, { recursive: true });
    fs.writeFileSync(path.join(theirs, "Preferences.xml"), "<Preferences/>");
    const before = await digestTree(path.join(config, "Library"));
    const result = await startPlexInit(envFor(config)).done;
    assert.strictEqual(result.code, INIT_EXIT_CODES.foreignLibrary, result.stderr);
    assert.match(
      result.stderr,
      /Library exists but was not imported by plex-init .* it is left untouched/,
    );
    assert.deepStrictEqual(
      compareTrees(before, await digestTree(path.join(config, "Library"))),
      [],
    );
    assert.strictEqual(server.requests.length, 0);
  });

  it("finishes a run that stopped between moving Library into place and writing the marker", async () => {
    const config = freshConfig();
    const first = await startPlexInit(envFor(config)).done;
    await assertImported(config, first);
    // Reconstruct the moment after the rename: receipt in staging, no marker yet.
    fs.rmSync(path.join(config, INIT_MARKER));
    fs.mkdirSync(path.join(config, ".plex-migrate", "staging"));
    fs.writeFileSync(
      path.join(config, ".plex-migrate", "staging", "verified"),
      `${sha256} ${archive.length} tar.gz\n`,
    );
    const result = await startPlexInit(envFor(config)).done;
    assert.match(
      result.stderr,
      /moved into place by an earlier run that stopped before the marker; completing it/,
    );
    await assertImported(config, result);
    assert.strictEqual(server.requests.length, 1, "no second download");
  });

  it("removes the staging directory of an interrupted run, then imports", async () => {
    const config = freshConfig();
    const stale = path.join(config, ".plex-migrate", "staging", "Library", "half");
    fs.mkdirSync(stale, { recursive: true });
    fs.writeFileSync(path.join(stale, "partial.db"), "half a file");
    const result = await startPlexInit(envFor(config)).done;
    assert.match(result.stderr, /removing the staging directory left by an interrupted run/);
    await assertImported(config, result);
  });

  it("leaves no Library when killed mid-extraction (pod killed); the next start imports", async () => {
    const config = freshConfig();
    const slow = startPlexInit(envFor(config, { PLEX_INIT_MAX_RATE: "300K" }), { detached: true });
    const staging = path.join(config, ".plex-migrate", "staging", "Library");
    const deadline = Date.now() + 20_000;
    while (!fs.existsSync(staging) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    assert.ok(fs.existsSync(staging), "extraction started");
    killGroup(slow.child, "SIGKILL");
    await slow.done;
    assert.ok(!fs.existsSync(path.join(config, "Library")), "no Library after the kill");
    await assertImported(config, await startPlexInit(envFor(config)).done);
  });

  it("on SIGTERM during the download exits 10 and removes the staging directory", async () => {
    const config = freshConfig();
    const slow = startPlexInit(envFor(config, { PLEX_INIT_MAX_RATE: "300K" }));
    const staging = path.join(config, ".plex-migrate", "staging", "Library");
    const deadline = Date.now() + 20_000;
    while (!fs.existsSync(staging) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    slow.child.kill("SIGTERM");
    const result = await slow.done;
    assert.strictEqual(result.code, INIT_EXIT_CODES.interrupted, result.stderr);
    assert.match(result.stderr, /interrupted/);
    assertNothingImported(config, result, INIT_EXIT_CODES.interrupted);
  });

  it("on SIGTERM while waiting to retry makes no further attempt", async () => {
    const config = freshConfig();
    server.behaviour = { kind: "status", status: 503 };
    const waiting = startPlexInit(envFor(config, { PLEX_INIT_RETRY_DELAY: "3" }));
    const deadline = Date.now() + 10_000;
    while (server.requests.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 300));
    const signalled = Date.now();
    waiting.child.kill("SIGTERM");
    const result = await waiting.done;
    assertNothingImported(config, result, INIT_EXIT_CODES.interrupted);
    assert.ok(Date.now() - signalled < 6000, "stopped within the retry delay");
    assert.strictEqual(server.requests.length, 1, "no attempt after the signal");
  });

  it("refuses an archive not rooted at Library/Application Support/Plex Media Server", async () => {
    const config = freshConfig();
    const wrongRoot = path.join(root, "wrong-root");
    fs.mkdirSync(path.join(wrongRoot, "Plex Media Server"), { recursive: true });
    fs.writeFileSync(
      path.join(wrongRoot, "Plex Media Server", "Preferences.xml"),
      "<Preferences/>",
    );
    const tar = spawnSync("tar", ["-c", "-f", "-", "-C", wrongRoot, "Plex Media Server"]);
    const body = tar.stdout;
    const wrong = new TestServer(() => body);
    await wrong.start();
    try {
      const result = await startPlexInit(
        envFor(config, {
          PLEX_ARCHIVE_URL: wrong.url("plex-library.tar"),
          PLEX_ARCHIVE_SHA256: crypto.createHash("sha256").update(body).digest("hex"),
          PLEX_ARCHIVE_BYTES: String(body.length),
        }),
      ).done;
      assert.match(
        result.stderr,
        /the archive has no "Library\/Application Support\/Plex Media Server" directory/,
      );
      assertNothingImported(config, result, INIT_EXIT_CODES.layout);
    } finally {
      await wrong.stop();
    }
  });

  it("installs missing curl, tar and zstd with apk (alpine), or names them when it may not", async () => {
    // A busybox-only PATH, as in alpine:3.22, with an apk that "installs" by linking the real tools.
    const bin = path.join(root, "alpine-bin");
    fs.mkdirSync(bin);
    const busybox = spawnSync("sh", ["-c", "command -v busybox"], {
      encoding: "utf8",
    }).stdout.trim();
    assert.ok(busybox, "busybox is needed for this test (Debian package busybox)");
    for (const applet of spawnSync(busybox, ["--list"], { encoding: "utf8" }).stdout.split("\n")) {
      if (applet && applet !== "tar") fs.symlinkSync(busybox, path.join(bin, applet));
    }
    const real = (tool: string) =>
      spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).stdout.trim();
    const apkCalls = path.join(root, "apk-calls");
    fs.writeFileSync(
      path.join(bin, "apk"),
      `#!${busybox} sh\necho "$*" >> ${apkCalls}\n` +
        `for p in "$@"; do case $p in -*|add) ;; curl) ln -s ${real("curl")} ${bin}/curl ;; ` +
        `tar) ln -s ${real("tar")} ${bin}/tar ;; zstd) ln -s ${real("zstd")} ${bin}/zstd ;; *) exit 1 ;; esac; done\n`,
      { mode: 0o755 },
    );
    const never = freshConfig();
    const refused = await startPlexInit(envFor(never, { PLEX_ARCHIVE_FORMAT: "tar.zst" }), {
      shell: [busybox, "sh"],
      path: bin,
    }).done;
    assert.strictEqual(refused.code, INIT_EXIT_CODES.tools, refused.stderr);
    assert.match(refused.stderr, /missing tools: curl tar zstd \(GNU tar is required\)/);
    assert.ok(!fs.existsSync(apkCalls), "never: apk not called");

    const config = freshConfig();
    const result = await startPlexInit(envFor(config, { PLEX_INIT_INSTALL_TOOLS: "auto" }), {
      shell: [busybox, "sh"],
      path: bin,
    }).done;
    assert.match(result.stderr, /installing curl tar with apk \(needs the Alpine package mirror\)/);
    assert.strictEqual(fs.readFileSync(apkCalls, "utf8"), "add --no-cache --quiet curl tar\n");
    await assertImported(config, result);
  });
});
