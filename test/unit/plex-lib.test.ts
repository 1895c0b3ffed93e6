/**
 * lib/plex helpers on their own: config volume sizing, image references, the rendered init
 * script (valid sh, settings quoted, no URL inside).
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parseImageRef, plexUrl, releaseTimeoutSeconds } from "../../lib/plex/helm-values";
import {
  INIT_EXIT_CODES,
  INIT_MARKER,
  INIT_PLEX_DATA,
  INIT_SCRIPT_PATH,
  INIT_STAGING,
  databaseLines,
  knownHostsFor,
  syncContainer,
} from "../../lib/plex/init-script";
import {
  advertiseUrlProblem,
  podLanNetworks,
  staleAddressWarning,
} from "../../lib/plex/networking";
import {
  autoConfigSize,
  minimumConfigGiB,
  parseQuantity,
  requiredConfigBytes,
  requiredConfigInodes,
  resolveConfigSize,
} from "../../lib/plex/sizing";

const GiB = 1024 ** 3;
const SHA = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheVmxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

describe("lib/plex sizing", () => {
  it("parses Kubernetes quantities", () => {
    assert.strictEqual(parseQuantity("10Gi"), 10 * GiB);
    assert.strictEqual(parseQuantity("1.5Ti"), 1.5 * 1024 ** 4);
    assert.strictEqual(parseQuantity("500G"), 500e9);
    assert.strictEqual(parseQuantity("2048"), 2048);
    assert.throws(() => parseQuantity("10GB"), /"10GB" is not a Kubernetes quantity/);
  });

  it("auto: library and files + headroom, as an ext4 claim that holds them, whole GiB up, at least 10Gi", () => {
    assert.strictEqual(autoConfigSize(0, 50), "10Gi");
    assert.strictEqual(autoConfigSize(5 * GiB, 50), "10Gi");
    // 12 GiB with headroom -> 12.6 GiB + 16 MiB + 1 GiB journal, / 0.93 = 14.7 -> 15Gi.
    assert.strictEqual(autoConfigSize(8 * GiB, 50), "15Gi");
    assert.strictEqual(autoConfigSize(30 * GiB, 0), "35Gi");
    assert.strictEqual(autoConfigSize(100 * GiB, 0), "114Gi");
    assert.strictEqual(autoConfigSize(100 * GiB, 100), "227Gi");
    // Three million small files need 3.3M inodes: 51 GiB at one inode per 16 KiB.
    assert.strictEqual(autoConfigSize(2 * GiB, 0, 3_000_000), "51Gi");
  });

  it("an explicit size must hold the library once formatted, naming the size that does", () => {
    assert.strictEqual(requiredConfigBytes(0), 16 * 1024 * 1024);
    assert.strictEqual(requiredConfigInodes(3000), 4300);
    assert.deepStrictEqual(resolveConfigSize("50Gi", 40 * GiB, 50), {
      quantity: "50Gi",
      auto: false,
    });
    assert.deepStrictEqual(resolveConfigSize("auto", 40 * GiB, 50), {
      quantity: "69Gi",
      auto: true,
    });
    // The library x 1.05 + 16 MiB alone would call 32Gi enough for 30 GiB; formatted, it is not.
    assert.throws(
      () => resolveConfigSize("32Gi", 30 * GiB, 50, 250_000),
      /plexConfigSize 32Gi cannot hold the Plex library \(30\.00 GiB and 250000 files measured on the VM\) once formatted: ext4 keeps 5% for root and about 2% for its own metadata, and has one inode per 16 KiB\. Fix: pulumi config set plexConfigSize 35Gi/,
    );
    assert.throws(
      () => resolveConfigSize("20Gi", 1 * GiB, 50, 2_000_000),
      /\(here the file count decides\)\. Fix: pulumi config set plexConfigSize 34Gi/,
    );
    assert.throws(() => resolveConfigSize("auto", Number.NaN, 50), /library size of NaN bytes/);
    assert.throws(() => resolveConfigSize("auto", -1, 50), /not a byte count/);
    assert.throws(() => resolveConfigSize("auto", 1, 50, 1.5), /1\.5 files in the library/);
  });

  describe("against real ext4 filesystems (mke2fs on sparse images, read back with dumpe2fs)", () => {
    let dir: string;
    before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "plexk8s-ext4-"))));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** e2fsprogs live in /usr/sbin, which a non-root PATH may lack. */
    const sbin = (tool: string) =>
      fs.existsSync(`/usr/sbin/${tool}`) ? `/usr/sbin/${tool}` : tool;

    /** What a non-root user can use on a fresh ext4 of `bytes` made with `mkfsArgs`. */
    function ext4(bytes: number, mkfsArgs: string[] = []): { freeBytes: number; inodes: number } {
      const image = path.join(dir, `fs-${bytes}-${mkfsArgs.join("")}.img`);
      fs.writeFileSync(image, "");
      fs.truncateSync(image, bytes);
      const mkfs = spawnSync(
        sbin("mke2fs"),
        [
          "-F",
          "-q",
          "-t",
          "ext4",
          "-E",
          "lazy_itable_init=1,lazy_journal_init=1",
          ...mkfsArgs,
          image,
        ],
        { encoding: "utf8" },
      );
      assert.strictEqual(mkfs.status, 0, mkfs.stderr);
      const dump = spawnSync(sbin("dumpe2fs"), ["-h", image], { encoding: "utf8" });
      fs.rmSync(image);
      const field = (name: string) => {
        const match = new RegExp(`^${name}:\\s+(\\d+)$`, "m").exec(dump.stdout);
        assert.ok(match, `dumpe2fs printed no ${name}`);
        return Number(match[1]);
      };
      const blockSize = field("Block size");
      return {
        // statfs's f_bavail: free blocks minus the ones kept for root.
        freeBytes: (field("Free blocks") - field("Reserved block count")) * blockSize,
        inodes: field("Free inodes"),
      };
    }

    const libraries: [string, number, number][] = [
      ["a small library", 3 * GiB, 40_000],
      ["30 GiB", 30 * GiB, 250_000],
      ["many small files", 4 * GiB, 1_500_000],
      ["150 GiB", 150 * GiB, 900_000],
    ];
    for (const [label, libraryBytes, fileCount] of libraries) {
      it(`${label}: the smallest claim the rule accepts holds it with and without -m0`, () => {
        const gib = minimumConfigGiB(libraryBytes, fileCount);
        for (const mkfsArgs of [[], ["-m0"]]) {
          const fsys = ext4(gib * GiB, mkfsArgs);
          assert.ok(
            fsys.freeBytes >= requiredConfigBytes(libraryBytes),
            `${gib}Gi ${mkfsArgs}: bytes`,
          );
          assert.ok(fsys.inodes >= requiredConfigInodes(fileCount), `${gib}Gi ${mkfsArgs}: inodes`);
        }
      });
    }

    it("the old rule's size for 30 GiB (32Gi) really is too small, so the check can fail", () => {
      const fsys = ext4(32 * GiB);
      assert.ok(fsys.freeBytes < requiredConfigBytes(30 * GiB));
      assert.ok(ext4(4 * GiB).inodes < requiredConfigInodes(300_000), "4Gi has 262144 inodes");
    });
  });
});

describe("lib/plex helm values helpers", () => {
  it("splits image references into the chart's registry/repository/tag/sha", () => {
    assert.deepStrictEqual(parseImageRef("alpine:3.22"), {
      registry: "index.docker.io",
      repository: "alpine",
      tag: "3.22",
      sha: "",
    });
    assert.deepStrictEqual(parseImageRef("library/alpine"), {
      registry: "index.docker.io",
      repository: "library/alpine",
      tag: "latest",
      sha: "",
    });
    assert.deepStrictEqual(parseImageRef("localhost/tools/init:1"), {
      registry: "localhost",
      repository: "tools/init",
      tag: "1",
      sha: "",
    });
    const digest = `sha256:${"0f".repeat(32)}`;
    assert.deepStrictEqual(parseImageRef(`ghcr.io/org/init@${digest}`), {
      registry: "ghcr.io",
      repository: "org/init",
      tag: "latest",
      sha: digest,
    });
    assert.throws(() => parseImageRef("alpine@md5:00"), /not an image reference/);
  });

  it("gives the mode's URL or the in-cluster one, and a timeout that grows with the archive", () => {
    assert.strictEqual(
      plexUrl("plex-media-server", "media", { mode: "internal" }),
      "http://plex-media-server.media.svc.cluster.local:32400",
    );
    assert.strictEqual(
      plexUrl("plex", "plex", { mode: "ingress", host: "p.example.com", tlsSecret: "p-tls" }),
      "https://p.example.com:443",
    );
    assert.strictEqual(
      plexUrl("plex", "plex", { mode: "host", address: "192.168.1.20" }),
      "http://192.168.1.20:32400",
    );
    assert.strictEqual(releaseTimeoutSeconds(0), 600);
    assert.strictEqual(releaseTimeoutSeconds(50 * GiB), 600 + 5120);
  });
});

describe("lib/plex/init-script.ts (the sync container for both phases)", () => {
  const common = {
    name: "plex-plex-media-server-pms-init",
    image: "instrumentisto/rsync-ssh:alpine3.23-r3",
    connection: { host: "192.168.13.21", port: 2222, user: "admin" },
    uid: 1001,
    gid: 100,
    excludes: ["Cache", "Crash Reports"],
    need: { libraryBytes: 5_000_000, inodes: 4300 },
  };

  it("builds the final phase's container: settings as env, the key only from the Secret", () => {
    const db = {
      path: "Plug-in Support/Databases/com.plexapp.plugins.library.db",
      sha256: SHA,
      bytes: 4096,
    };
    assert.deepStrictEqual(syncContainer({ ...common, phase: "final", databases: [db] }), {
      name: "plex-plex-media-server-pms-init",
      image: "instrumentisto/rsync-ssh:alpine3.23-r3",
      imagePullPolicy: "IfNotPresent",
      command: ["sh", "/plex-migrate-script/plex-init.sh"],
      env: [
        { name: "PLEX_SYNC_PHASE", value: "final" },
        { name: "PLEX_CONFIG_DIR", value: "/config" },
        { name: "PLEX_SYNC_HOST", value: "192.168.13.21" },
        { name: "PLEX_SYNC_PORT", value: "2222" },
        { name: "PLEX_SYNC_USER", value: "admin" },
        { name: "PLEX_SYNC_KEY_FILE", value: "/plex-migrate-sync/id_ed25519" },
        { name: "PLEX_SYNC_KNOWN_HOSTS", value: "/plex-migrate-sync/known_hosts" },
        { name: "PLEX_UID", value: "1001" },
        { name: "PLEX_GID", value: "100" },
        { name: "PLEX_SYNC_EXCLUDES", value: "Cache\nCrash Reports" },
        { name: "PLEX_REQUIRED_BYTES", value: "22027216" },
        { name: "PLEX_REQUIRED_INODES", value: "4300" },
        {
          name: "PLEX_SYNC_DATABASES",
          value: `${SHA} 4096 Plug-in Support/Databases/com.plexapp.plugins.library.db`,
        },
      ],
      securityContext: { runAsUser: 0, runAsGroup: 0, allowPrivilegeEscalation: false },
      volumeMounts: [
        { name: "pms-config", mountPath: "/config" },
        { name: "plex-migrate-sync", mountPath: "/plex-migrate-sync", readOnly: true },
        { name: "plex-migrate-script", mountPath: "/plex-migrate-script", readOnly: true },
      ],
    });
    const warm = syncContainer({ ...common, phase: "warm" });
    const env = Object.fromEntries(
      (warm.env as { name: string; value: string }[]).map((e) => [e.name, e.value]),
    );
    assert.strictEqual(env.PLEX_SYNC_PHASE, "warm");
    assert.strictEqual(env.PLEX_REQUIRED_BYTES, "22027216");
    assert.strictEqual(env.PLEX_REQUIRED_INODES, "4300");
    assert.strictEqual(env.PLEX_SYNC_DATABASES, undefined);
  });

  it("refuses a connection, exclude or database the script could not carry", () => {
    assert.throws(
      () =>
        syncContainer({
          ...common,
          phase: "warm",
          connection: { host: "vm;x", port: 0, user: "-o" },
        }),
      /"vm;x" is not a host name.*0 is not a TCP port.*"-o" is not a user name/,
    );
    assert.throws(
      () => syncContainer({ ...common, phase: "warm", excludes: ["Cache/Old"] }),
      /exclude "Cache\/Old" must be a top-level folder name/,
    );
    assert.throws(
      () => syncContainer({ ...common, phase: "warm", need: { libraryBytes: -1, inodes: 1.5 } }),
      /libraryBytes -1 is not a count; inodes 1.5 is not a count/,
    );
    assert.throws(
      () => syncContainer({ ...common, phase: "warm", generation: 0 }),
      /generation: expected a whole number from 1 to 1000000 .*got 0/,
    );
    assert.throws(
      () => databaseLines([{ path: "a.db", sha256: "xyz", bytes: 1 }]),
      /is not 64 lowercase hex/,
    );
    assert.throws(
      () => databaseLines([{ path: "../a.db", sha256: SHA, bytes: 1 }]),
      /must be relative/,
    );
    assert.throws(() => databaseLines([{ path: "a\n.db", sha256: SHA, bytes: 1 }]), /on one line/);
    assert.throws(
      () => databaseLines([{ path: "a.db", sha256: SHA, bytes: -1 }]),
      /not a byte count/,
    );
  });

  it("pins the host key under the alias plex-init.sh connects with; refuses none or garbage", () => {
    assert.strictEqual(knownHostsFor(HOST_KEY), `plex-migrate-vm ${HOST_KEY}\n`);
    assert.strictEqual(
      knownHostsFor(`[vm.lan]:22 ${HOST_KEY} root@vm\n`),
      `plex-migrate-vm ${HOST_KEY}\n`,
      "a known_hosts or ssh-keyscan line works too",
    );
    assert.throws(() => knownHostsFor(""), /no VM host key is pinned.*pulumi config set vmHostKey/);
    assert.throws(() => knownHostsFor("hello"), /"hello" is not an SSH host key line/);
  });

  it("names the same exit codes as the script's header", () => {
    const header = fs
      .readFileSync(INIT_SCRIPT_PATH, "utf8")
      .split("# Exit codes:")[1]
      .split("set -eu")[0];
    const codes = [...header.matchAll(/^#\s+(\d+) /gm)].map((m) => Number(m[1]));
    assert.deepStrictEqual(codes, Object.values(INIT_EXIT_CODES));
    const script = fs.readFileSync(INIT_SCRIPT_PATH, "utf8");
    for (const [name, code] of Object.entries(INIT_EXIT_CODES)) {
      if (code === 0) continue;
      const variable = `EXIT_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
      assert.match(script, new RegExp(`^${variable}=${code}$`, "m"), `${variable}=${code}`);
    }
  });

  it("names the volume's paths as the script does (data dir, staging, marker)", () => {
    const script = fs.readFileSync(INIT_SCRIPT_PATH, "utf8");
    assert.match(script, /^STATE_DIR=\$CONFIG_DIR\/\.plex-migrate$/m);
    assert.strictEqual(INIT_MARKER, ".plex-migrate/import-complete");
    assert.match(script, /^MARKER=\$STATE_DIR\/import-complete$/m);
    assert.strictEqual(INIT_STAGING, ".plex-migrate/staging");
    assert.match(script, /^STAGING=\$STATE_DIR\/staging$/m);
    assert.match(script, new RegExp(`^PLEX_DATA_RELATIVE="${INIT_PLEX_DATA}"$`, "m"));
  });

  it("is POSIX sh that busybox, dash and shellcheck accept", () => {
    for (const shell of [["busybox", "sh"], ["dash"]]) {
      const parse = spawnSync(shell[0], [...shell.slice(1), "-n", INIT_SCRIPT_PATH], {
        encoding: "utf8",
      });
      assert.strictEqual(parse.status, 0, `${shell.join(" ")}: ${parse.stderr}`);
    }
    const lint = spawnSync("shellcheck", ["-s", "sh", INIT_SCRIPT_PATH], { encoding: "utf8" });
    assert.strictEqual(lint.status, 0, lint.stdout);
  });
});

describe("lib/plex/networking.ts", () => {
  it("merges the cluster's ranges into the VM's LAN networks, keeping the VM's when none", () => {
    assert.strictEqual(podLanNetworks("192.168.13.0/24", []), undefined);
    assert.strictEqual(
      podLanNetworks(" 192.168.13.0/24,10.42.0.0/16 ", ["10.42.0.0/16", "10.43.0.0/16"]),
      "192.168.13.0/24,10.42.0.0/16,10.43.0.0/16",
    );
    assert.strictEqual(podLanNetworks("", ["10.42.0.0/16"]), "10.42.0.0/16");
  });

  it("names the VM's stale address only when nothing new is advertised", () => {
    const vm = "http://192.168.13.21:32400";
    assert.match(staleAddressWarning({ mode: "internal" }, [], vm) ?? "", /192\.168\.13\.21/);
    assert.strictEqual(staleAddressWarning({ mode: "internal" }, [], ""), undefined);
    assert.strictEqual(
      staleAddressWarning({ mode: "internal" }, ["http://plex.example.net:32400"], vm),
      undefined,
    );
    assert.strictEqual(
      staleAddressWarning({ mode: "host", address: "192.168.13.30" }, [], vm),
      undefined,
    );
  });

  it("accepts scheme://host:port URLs only", () => {
    assert.strictEqual(advertiseUrlProblem("https://plex.example.net:443"), undefined);
    assert.strictEqual(advertiseUrlProblem("http://[fd00::1]:32400/"), undefined);
    assert.match(advertiseUrlProblem("ftp://plex.lan:21") ?? "", /must start with http/);
    assert.match(advertiseUrlProblem("http://plex.lan:32400/web") ?? "", /no path/);
    assert.match(advertiseUrlProblem("http://plex.lan") ?? "", /port spelled out/);
  });
});
