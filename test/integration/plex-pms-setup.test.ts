/**
 * scripts/plex-pms-setup.sh run for real: bash, xmlstarlet on a real-shaped Preferences.xml, and
 * the real groupadd/usermod/id on a copy of /etc, bind-mounted over /etc in a private mount
 * namespace (unshare -m), so the machine's own users and groups are never touched.
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { PMS_SETUP_SCRIPT_PATH } from "../../lib/plex/pms-setup";

const PREFERENCES = `<?xml version="1.0" encoding="utf-8"?>
<Preferences OldestPreviousVersion="1.32.5.7349-8f4248874" MachineIdentifier="4f5c8a1e-1b2c-4d3e-9f00-123456789abc" ProcessedMachineIdentifier="0123456789abcdef0123456789abcdef01234567" AnonymousMachineIdentifier="2f1e0d9c-8b7a-4c5d-9e6f-0a1b2c3d4e5f" MetricsEpoch="1" AcceptedEULA="1" FriendlyName="nas-plex" PublishServerOnPlexOnlineKey="1" PlexOnlineHome="1" PlexOnlineUsername="alex" PlexOnlineMail="alex@example.com" PlexOnlineToken="xyzSecretToken123" CertificateVersion="3" LanNetworksBandwidth="192.168.13.0/24" allowedNetworks="192.168.13.0/255.255.255.0" customConnections="http://192.168.13.21:32400" TranscoderTempDirectory="/var/lib/plexmediaserver/tmp" ManualPortMappingMode="1" ManualPortMappingPort="32400"/>
`;

function run(env: Record<string, string>, wrap: (script: string) => string[] = (s) => ["bash", s]) {
  const [command, ...args] = wrap(PMS_SETUP_SCRIPT_PATH);
  return spawnSync(command, args, {
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
  });
}

function attribute(file: string, name: string): string | undefined {
  return new RegExp(` ${name}="([^"]*)"`).exec(fs.readFileSync(file, "utf8"))?.[1];
}

describe("scripts/plex-pms-setup.sh (run for real)", function () {
  this.timeout(30_000);
  let dir: string;
  let prefFile: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "plexk8s-pms-setup-"));
    prefFile = path.join(dir, "Preferences.xml");
    fs.writeFileSync(prefFile, PREFERENCES, { mode: 0o600 });
    fs.chownSync(prefFile, 4242, 4343);
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("sets LanNetworksBandwidth, keeps every other attribute and the file's owner", () => {
    const result = run({
      PLEX_MIGRATE_PREF_FILE: prefFile,
      PLEX_MIGRATE_LAN_NETWORKS: "192.168.13.0/24,10.42.0.0/16",
    });
    assert.strictEqual(result.status, 0, result.stderr + result.stdout);
    assert.match(
      result.stdout,
      /\[plex-migrate\] LAN networks: 192\.168\.13\.0\/24 -> 192\.168\.13\.0\/24,10\.42\.0\.0\/16/,
    );
    assert.strictEqual(attribute(prefFile, "LanNetworksBandwidth"), "192.168.13.0/24,10.42.0.0/16");
    const before = PREFERENCES.replace(
      'LanNetworksBandwidth="192.168.13.0/24"',
      'LanNetworksBandwidth="192.168.13.0/24,10.42.0.0/16"',
    );
    assert.strictEqual(fs.readFileSync(prefFile, "utf8"), before, "nothing else changed");
    const stat = fs.statSync(prefFile);
    assert.deepStrictEqual([stat.uid, stat.gid, stat.mode & 0o777], [4242, 4343, 0o600]);

    const again = run({
      PLEX_MIGRATE_PREF_FILE: prefFile,
      PLEX_MIGRATE_LAN_NETWORKS: "192.168.13.0/24,10.42.0.0/16",
    });
    assert.strictEqual(again.status, 0);
    assert.match(again.stdout, /LAN networks already 192\.168\.13\.0\/24,10\.42\.0\.0\/16/);
  });

  it("inserts LanNetworksBandwidth when the VM had none, and changes nothing without settings", () => {
    fs.writeFileSync(prefFile, PREFERENCES.replace(' LanNetworksBandwidth="192.168.13.0/24"', ""));
    const untouched = fs.readFileSync(prefFile, "utf8");
    const idle = run({ PLEX_MIGRATE_PREF_FILE: prefFile });
    assert.strictEqual(idle.status, 0);
    assert.strictEqual(idle.stdout, "");
    assert.strictEqual(fs.readFileSync(prefFile, "utf8"), untouched);

    const result = run({
      PLEX_MIGRATE_PREF_FILE: prefFile,
      PLEX_MIGRATE_LAN_NETWORKS: "10.42.0.0/16",
    });
    assert.strictEqual(result.status, 0, result.stderr + result.stdout);
    assert.match(result.stdout, /LAN networks: none -> 10\.42\.0\.0\/16/);
    assert.strictEqual(attribute(prefFile, "LanNetworksBandwidth"), "10.42.0.0/16");
    assert.strictEqual(attribute(prefFile, "PlexOnlineToken"), "xyzSecretToken123");
  });

  it("stops the start with the reason on bad settings or a missing Preferences.xml", () => {
    const bad = run({
      PLEX_MIGRATE_PREF_FILE: prefFile,
      PLEX_MIGRATE_LAN_NETWORKS: "10.0.0.0/8;rm",
    });
    assert.strictEqual(bad.status, 1);
    assert.match(
      bad.stdout,
      /error: PLEX_MIGRATE_LAN_NETWORKS "10\.0\.0\.0\/8;rm" is not a list of networks/,
    );
    const missing = run({
      PLEX_MIGRATE_PREF_FILE: path.join(dir, "nope.xml"),
      PLEX_MIGRATE_LAN_NETWORKS: "10.42.0.0/16",
    });
    assert.strictEqual(missing.status, 1);
    assert.match(missing.stdout, /error: no Preferences\.xml at /);
    const group = run({ PLEX_MIGRATE_GROUPS: "44,video" });
    assert.strictEqual(group.status, 1);
    assert.match(group.stdout, /error: PLEX_MIGRATE_GROUPS holds "video", which is not a gid/);
  });

  it("adds plex to the VM's groups with the real groupadd/usermod (private copy of /etc)", () => {
    const etc = path.join(dir, "etc");
    fs.cpSync("/etc", etc, { recursive: true, verbatimSymlinks: true, errorOnExist: false });
    const hostGroup = fs.readFileSync("/etc/group", "utf8");
    // The image's plex user (pms-docker Dockerfile: useradd -U -d /config plex; usermod -G users).
    const script = [
      "set -e",
      `mount --bind ${JSON.stringify(etc)} /etc`,
      "useradd -U -d /config -s /bin/false plex",
      "usermod -G users plex",
      'existing=$(getent group 44 | cut -d: -f1); [ -n "$existing" ] || groupadd -g 44 video',
      `PLEX_MIGRATE_GROUPS=44,4711 bash ${JSON.stringify(PMS_SETUP_SCRIPT_PATH)}`,
      'echo "groups: $(id -G plex | tr " " "\\n" | sort -n | tr "\\n" " ")"',
      `PLEX_MIGRATE_GROUPS=4711 bash ${JSON.stringify(PMS_SETUP_SCRIPT_PATH)}`,
    ].join("\n");
    const result = spawnSync("unshare", ["-m", "--propagation", "private", "sh", "-c", script], {
      encoding: "utf8",
    });
    assert.strictEqual(result.status, 0, result.stderr + result.stdout);
    const name44 = /^([^:]+):x?:?[^:]*:44:/m.exec(fs.readFileSync(path.join(etc, "group"), "utf8"));
    assert.ok(name44, "gid 44 exists in the copy");
    assert.match(result.stdout, new RegExp(`plex added to group ${name44[1]} \\(44\\)`));
    assert.match(
      result.stdout,
      /group vm-4711 \(4711\) created\n\[plex-migrate\] plex added to group vm-4711 \(4711\)/,
    );
    const groups = /groups: (.*)/.exec(result.stdout)?.[1].trim().split(" ").map(Number);
    assert.ok(groups?.includes(44) && groups.includes(4711) && groups.includes(100), result.stdout);
    assert.match(result.stdout, /plex is already in group vm-4711 \(4711\)/, "idempotent");
    assert.strictEqual(
      fs.readFileSync("/etc/group", "utf8"),
      hostGroup,
      "the machine's groups untouched",
    );
  });
});
