/**
 * A new generation runs the stop step again on a VM it already stopped
 * (lib/source-vm/phases.ts: `tautulliImportGeneration` renames stop and revoke-sync, so the engine
 * creates them anew). scripts/plex-migrate-source.sh for real on the fake VM (bash, SQLite, fake
 * systemd): the second stop succeeds, takes a new Tautulli snapshot, and keeps the state the first
 * stop recorded, so rollback still restores Plex and Tautulli as they were before the migration.
 */
import { strict as assert } from "assert";
import Database from "better-sqlite3";
import { sha256File } from "../../lib/samples/plex-tree";
import { parseStepOutput } from "../../lib/source-vm/outputs";
import { createFakeVm, FakeVm } from "../support/fake-vm";

describe("the stop step run again by a new generation (fake VM)", function () {
  this.timeout(120_000);
  let vm: FakeVm;
  before(async () => {
    vm = await createFakeVm({ linger: 1 });
  });
  after(async () => {
    await vm?.cleanup();
  });

  it("a second stop succeeds on the stopped VM and keeps the first stop's previous state", async () => {
    const first = await vm.run("stop");
    assert.equal(first.code, 0, first.stderr);
    const firstJson = parseStepOutput("stop", first.stdout);

    const second = await vm.run("stop");
    assert.equal(second.code, 0, second.stderr);
    const secondJson = parseStepOutput("stop", second.stdout);
    // What rollback restores is still the state before the migration, not "stopped and masked".
    assert.deepEqual(secondJson.previousState, firstJson.previousState);
    assert.deepEqual(secondJson.previousState.plex, {
      unit: "plexmediaserver",
      active: true,
      enabled: true,
      unitFileState: "enabled",
    });
    // Nothing changed on the VM in between: the same databases, the same snapshot bytes, so the
    // import (keyed by the snapshot's fingerprint) has nothing new to do.
    assert.deepEqual(secondJson.plexDatabases, firstJson.plexDatabases);
    assert.equal(secondJson.tautulliSnapshot?.sha256, firstJson.tautulliSnapshot?.sha256);
    assert.equal(vm.serviceEnabled("plexmediaserver"), "masked");
  });

  it("after a rollback and new Tautulli history, the next generation's stop snapshots the new rows", async () => {
    const rollback = await vm.run("rollback", { PLEX_MIGRATE_ROLLBACK_FORCE: "1" });
    assert.equal(rollback.code, 0, rollback.stderr);
    assert.ok(vm.serviceActive("tautulli"));
    assert.equal(vm.serviceEnabled("tautulli"), "enabled");
    const before = await sha256File(vm.tautulliDb);
    const db = new Database(vm.tautulliDb);
    try {
      const row = db.prepare("SELECT * FROM session_history LIMIT 1").get() as Record<
        string,
        unknown
      >;
      const columns = Object.keys(row).filter((c) => c !== "id");
      db.prepare(
        `INSERT INTO session_history (${columns.join(", ")}) SELECT ${columns.join(", ")} FROM session_history LIMIT 1`,
      ).run();
      db.pragma("wal_checkpoint(TRUNCATE)");
    } finally {
      db.close();
    }
    assert.notEqual(await sha256File(vm.tautulliDb), before);

    const stop = await vm.run("stop");
    assert.equal(stop.code, 0, stop.stderr);
    const json = parseStepOutput("stop", stop.stdout);
    assert.ok(json.tautulliSnapshot);
    const snapshot = new Database(json.tautulliSnapshot.path, { readonly: true });
    try {
      const rows = snapshot.prepare("SELECT count(*) AS n FROM session_history").get() as {
        n: number;
      };
      assert.equal(rows.n, vm.tautulliRows + 1, "the row written after the rollback is there");
    } finally {
      snapshot.close();
    }
    // The rollback consumed the recorded state; this stop recorded it afresh (running, enabled).
    assert.equal(json.previousState.tautulli?.active, true);
    assert.equal(vm.serviceEnabled("tautulli"), "masked");
  });
});
