/**
 * lib/import/ssh-download.ts against a real OpenSSH server on loopback (test/support/sshd.ts):
 * the snapshot in a root-only work dir, read as root or through `sudo -n`, the host key pinned,
 * a cut transfer resumed from the partial file, and every refusal with its reason.
 */
import * as assert from "assert/strict";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { sqliteImportProvider } from "../../components/sqlite-import";
import type { SqliteImportOutputs } from "../../lib/import/provider";
import { downloadOverSsh, SshSnapshotSource } from "../../lib/import/ssh-download";
import { listMigrationNames, migrateUp } from "../../lib/postgres/migrator";
import { generateTautulliDb } from "../../lib/samples/tautulli-db";
import { LoadedProvider } from "../support/dynamic-provider-host";
import { freshDatabase } from "../support/postgres";
import { SshServer, startSshd } from "../support/sshd";

describe("Tautulli snapshot over SSH (ssh2 against a real sshd)", function () {
  this.timeout(120_000);
  let sshd: SshServer;
  let workDir: string;
  let local: string;
  let snapshot: string;
  let bytes: Buffer;
  let sudoUser: string;
  let plainUser: string;

  before(async () => {
    sshd = await startSshd();
    sudoUser = sshd.addUser({ sudo: true });
    plainUser = sshd.addUser({ sudo: false });
    // The VM's work dir: root's, closed to others (as the step script makes it).
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-vm-work-"));
    fs.chmodSync(workDir, 0o700);
    snapshot = path.join(workDir, "tautulli snapshot.db");
    bytes = crypto.randomBytes(3 * 1024 * 1024 + 17);
    fs.writeFileSync(snapshot, bytes, { mode: 0o600 });
    local = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-fetch-")), "t.db");
  });
  after(async () => {
    await sshd?.stop();
    fs.rmSync(workDir, { recursive: true, force: true });
    fs.rmSync(path.dirname(local), { recursive: true, force: true });
  });
  afterEach(() => fs.rmSync(local, { force: true }));

  function source(overrides: Partial<SshSnapshotSource["ssh"]> = {}): SshSnapshotSource {
    return {
      ssh: {
        host: sshd.host,
        port: sshd.port,
        user: "root",
        privateKey: sshd.privateKey,
        hostKey: sshd.hostPublicKey,
        sudo: false,
        ...overrides,
      },
      path: snapshot,
      sha256: crypto.createHash("sha256").update(bytes).digest("hex"),
      bytes: bytes.length,
    };
  }

  it("copies the snapshot as root, verified", async () => {
    const result = await downloadOverSsh(source(), local);
    assert.deepEqual(result, {
      bytes: bytes.length,
      sha256: source().sha256,
      transferred: bytes.length,
    });
    assert.ok(fs.readFileSync(local).equals(bytes));
  });

  it("reads a root-only file through sudo -n when the VM user is not root", async () => {
    await downloadOverSsh(source({ user: sudoUser, sudo: true }), local);
    assert.ok(fs.readFileSync(local).equals(bytes));
  });

  it("without sudo the user cannot read it: a clear, permanent error", async () => {
    await assert.rejects(
      downloadOverSsh(source({ user: plainUser, sudo: false }), local, { backoffMs: 0 }),
      (error: Error) => {
        assert.match(
          error.message,
          /^Copying the Tautulli snapshot pmtest[0-9a-f]+@127\.0\.0\.2:.* over SSH failed: reading .* on the VM failed \(exit 1: .*Permission denied\)\./,
        );
        assert.equal((error as { code?: string }).code, "DOWNLOAD_FAILED");
        return true;
      },
    );
    await assert.rejects(
      downloadOverSsh(source({ user: plainUser, sudo: true }), local, { backoffMs: 0 }),
      /exit 1: sudo: a password is required/,
    );
    assert.ok(!fs.existsSync(local));
  });

  it("resumes a cut transfer from the partial file instead of starting over", async () => {
    const half = Math.floor(bytes.length / 2);
    fs.writeFileSync(local, bytes.subarray(0, half));
    const result = await downloadOverSsh(source({ user: sudoUser, sudo: true }), local);
    assert.equal(result.transferred, bytes.length - half);
    assert.ok(fs.readFileSync(local).equals(bytes));
  });

  it("a partial file with other bytes ends in a checksum mismatch, and is removed", async () => {
    fs.writeFileSync(local, crypto.randomBytes(1000));
    await assert.rejects(downloadOverSsh(source(), local), (error: Error) => {
      assert.match(
        error.message,
        /^The copied Tautulli snapshot has \d+ bytes and sha256 [0-9a-f]{64}; the stop step recorded/,
      );
      assert.equal((error as { code?: string }).code, "SOURCE_CHECKSUM_MISMATCH");
      return true;
    });
    assert.ok(!fs.existsSync(local));
  });

  it("refuses a VM whose host key is not the pinned one", async () => {
    const other = crypto.generateKeyPairSync("ed25519");
    const raw = other.publicKey.export({ format: "der", type: "spki" }).subarray(-32);
    const blob = Buffer.concat([
      Buffer.from([0, 0, 0, 11]),
      Buffer.from("ssh-ed25519"),
      Buffer.from([0, 0, 0, 32]),
      raw,
    ]);
    await assert.rejects(
      downloadOverSsh(source({ hostKey: `ssh-ed25519 ${blob.toString("base64")}` }), local),
      /presented another SSH host key than the pinned vmHostKey/,
    );
    await assert.rejects(
      downloadOverSsh(source({ hostKey: "ssh-rsa AAAAB3NzaC1yc2E" }), local),
      /is not an ed25519 or ECDSA public key line.*vmHostKey/,
    );
  });

  it("a snapshot that is gone, or a wrong sha256: named, nothing kept, no key material", async () => {
    const gone = { ...source(), path: path.join(workDir, "missing.db") };
    await assert.rejects(downloadOverSsh(gone, local), (error: Error) => {
      assert.match(error.message, /exit 1: .*No such file or directory/);
      assert.match(error.message, /the stop step writes it to vmWorkDir\/snapshot/);
      assert.ok(!error.message.includes("PRIVATE KEY"));
      return true;
    });
    await assert.rejects(
      downloadOverSsh({ ...source(), sha256: "0".repeat(64) }, local),
      (error: Error) => (error as { code?: string }).code === "SOURCE_CHECKSUM_MISMATCH",
    );
    assert.ok(!fs.existsSync(local));
  });
});

describe("SqliteImport provider with the VM's snapshot over SSH (serialized, real sshd and PostgreSQL)", function () {
  this.timeout(180_000);
  let sshd: SshServer;
  let provider: LoadedProvider;
  let workDir: string;

  before(async () => {
    sshd = await startSshd();
    provider = await LoadedProvider.load(sqliteImportProvider);
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-vm-snapshot-"));
    fs.chmodSync(workDir, 0o700);
  });
  after(async () => {
    await provider?.close();
    await sshd?.stop();
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  it("imports the snapshot copied over SSH; a changed connection is no change; a foreign host key is refused", async () => {
    const sample = generateTautulliDb(path.join(workDir, "tautulli-snapshot.db"), {
      plays: 60,
      seed: 9,
    });
    const file = fs.readFileSync(sample.path);
    const url = await freshDatabase("ssh_import");
    await migrateUp(url);
    const ssh = {
      host: sshd.host,
      port: sshd.port,
      user: sshd.addUser({ sudo: true }),
      privateKey: sshd.privateKey,
      hostKey: sshd.hostPublicKey,
      sudo: true,
    };
    const inputs = {
      databaseUrl: url,
      source: {
        ssh,
        path: sample.path,
        sha256: crypto.createHash("sha256").update(file).digest("hex"),
        bytes: file.length,
      },
      overwrite: false,
      schemaVersion: listMigrationNames()[listMigrationNames().length - 1],
      integrityCheck: "full",
    };
    assert.deepEqual(
      (await provider.call<{ failures: unknown[] }>("check", {}, inputs)).failures,
      [],
    );
    const created = await provider.create<SqliteImportOutputs>(inputs);
    assert.equal(created.outs.report.status, "imported");
    assert.equal(created.outs.sourceFingerprint, `sha256:${inputs.source.sha256}`);

    // The VM user or its key changing later (a retired admin user) is no reason to import again.
    const moved = {
      ...inputs,
      source: { ...inputs.source, ssh: { ...ssh, user: "root", sudo: false } },
    };
    assert.equal((await provider.diff(created.id, created.outs, moved)).changes, false);

    const foreign = {
      ...inputs.source,
      ssh: {
        ...ssh,
        hostKey:
          "ssh-ed25519 " +
          Buffer.concat([
            Buffer.from([0, 0, 0, 11]),
            Buffer.from("ssh-ed25519"),
            Buffer.from([0, 0, 0, 32]),
            crypto.randomBytes(32),
          ]).toString("base64"),
      },
    };
    await assert.rejects(
      provider.create({
        ...inputs,
        databaseUrl: await freshDatabase("ssh_refused"),
        source: foreign,
      }),
      (error: Error) => {
        assert.match(error.message, /presented another SSH host key than the pinned vmHostKey/);
        assert.ok(!error.message.includes("PRIVATE KEY"), "no key material in the error");
        return true;
      },
    );
  });
});
