/**
 * SqliteImport under mocks with the VM's snapshot over SSH: the stop step's tautulliSnapshot and
 * SourceVm's connection become the provider's flat source, secret as a whole; no snapshot (no
 * Tautulli on the VM) is refused by check with the reason.
 */
import * as assert from "assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { SqliteImport } from "../../components/sqlite-import";
import { checkInputs } from "../../lib/import/provider";
import { isSecretInput, runWithMocks, unwrapSecrets } from "../support/pulumi-mocks";

const SSH = {
  host: "plex-vm.example.internal",
  port: 22,
  user: "alex",
  privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nTEST\n-----END OPENSSH PRIVATE KEY-----",
  hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhVWJ2m6JqfJvVtN6pKQ0fO9g5Y2oYdJ3sLw1bq3mXn",
  sudo: true,
};
const SNAPSHOT = {
  path: "/var/lib/plex-migrate/tautulli-snapshot.db",
  sha256: "c".repeat(64),
  bytes: 4096,
};

async function importWith(snapshot: typeof SNAPSHOT | null) {
  const run = await runWithMocks(() => {
    new SqliteImport("tautulli-import", {
      databaseUrl: pulumi.secret("postgres://tautulli:pw@127.0.0.1:28010/tautulli"),
      source: { ssh: pulumi.secret(SSH), snapshot: pulumi.output(snapshot) },
      overwrite: false,
      schemaVersion: "20261201000200-describe-tautulli-columns",
      integrityCheck: "full",
    });
    return {};
  });
  return run.get("pulumi-nodejs:dynamic/plex-migrate:SqliteImport", "tautulli-import");
}

describe("SqliteImport with the VM's snapshot over SSH (mocks)", () => {
  it("hands the provider { ssh, path, sha256, bytes }, the whole source secret", async () => {
    const registration = await importWith(SNAPSHOT);
    const inputs = unwrapSecrets(registration.inputs) as Record<string, unknown>;
    assert.deepEqual(inputs.source, { ssh: SSH, ...SNAPSHOT });
    assert.ok(isSecretInput(registration, "source.ssh"), "the private key stays secret");
    assert.ok(registration.additionalSecretOutputs.includes("source"));
    assert.deepEqual(checkInputs(inputs as never), []);
  });

  it("no snapshot (the VM has no Tautulli): check says so, once", async () => {
    const registration = await importWith(null);
    const inputs = unwrapSecrets(registration.inputs) as Record<string, unknown>;
    assert.deepEqual(checkInputs(inputs as never), [
      {
        property: "source",
        reason:
          "the stop step took no Tautulli snapshot (no tautulli.db at tautulliDbPath on the VM): there is nothing to import; set tautulliDbPath to the VM's tautulli.db",
      },
    ]);
  });
});
