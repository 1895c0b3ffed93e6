/**
 * The VM side's lifecycle as the real engine runs it: a second `up`, each kind of setting change,
 * `destroy` with protectData true/false and with the VM retired. The registrations come from
 * SourceVm under mocks, wired to the cluster side the way index.ts wires it (stand-ins of the same
 * dependency shape: a protected namespace and config claim sized from the preflight, the warm
 * copy after authorize-sync, the release after the stop and the destroy hooks, a protected
 * database, the import after the stop). test/support/engine-model.ts turns them into the steps the
 * engine and pulumi-command take, each rule citing its upstream source.
 */
import { strict as assert } from "assert";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import type { SourceVm, SourceVmArgs } from "../../components/source-vm";
import {
  planDestroy,
  planUpdate,
  transitiveDependencies,
  vmCommands,
} from "../support/engine-model";
import { MockRun, Registration, runWithMocks } from "../support/pulumi-mocks";
import { sourceVmCommandOutputs } from "../support/fake-vm/mock-outputs";
import { sourceVmArgs } from "../support/source-vm-args";

const CMD = "command:remote:Command";
const HOOKS = ["source-vm-on-destroy-revoke-sync", "source-vm-on-destroy-rollback"];

interface Settings {
  vm?: Partial<SourceVmArgs>;
  protectData?: boolean;
}

async function up(settings: Settings = {}): Promise<MockRun> {
  const protect = settings.protectData ?? true;
  return runWithMocks(
    () => {
      const { SourceVm } = require("../../components/source-vm");
      const vm = new SourceVm("source-vm", sourceVmArgs(settings.vm)) as SourceVm;
      const sized = (o: pulumi.Output<unknown>) => o.apply(() => 16);
      const namespace = new random.RandomPassword(
        "namespace",
        { length: 16 },
        { protect, retainOnDelete: true },
      );
      const claim = new random.RandomPassword(
        "config-claim",
        { length: sized(vm.libraryBytes) },
        { protect, retainOnDelete: true, dependsOn: [namespace] },
      );
      const warmCopy = new random.RandomPassword(
        "warm-copy",
        { length: sized(vm.syncPrivateKey) },
        { dependsOn: [claim, vm.syncAuthorized] },
      );
      const stopped = vm.stopAfter([warmCopy]);
      const release = new random.RandomPassword(
        "release",
        { length: sized(stopped.plexDatabases) },
        { dependsOn: [claim, ...vm.destroyHooks] },
      );
      const database = new random.RandomPassword("tautulli-db", { length: 16 }, { protect });
      const tautulliImport = new random.RandomPassword(
        "tautulli-import",
        { length: sized(pulumi.all([stopped.tautulliSnapshot, vm.sshConnection])) },
        { dependsOn: [database, stopped.stopped] },
      );
      vm.revokeSyncAfter([release, tautulliImport]);
      return {};
    },
    { stack: "dev", outputs: { [CMD]: sourceVmCommandOutputs() } },
  );
}

const reg = (run: MockRun, name: string): Registration => {
  const found = run.registrations.find((r) => r.name === name);
  assert.ok(found, `no ${name}`);
  return found;
};

describe("the VM lifecycle under the engine's rules", function () {
  this.timeout(60_000);
  let first: MockRun;

  before(async () => {
    first = await up();
  });

  it("first up: the steps run in order, the hooks and the key run nothing", () => {
    assert.deepEqual(vmCommands(planUpdate([], first.registrations)), [
      "source-vm-preflight: bash -s -- preflight",
      "source-vm-authorize-sync: bash -s -- authorize-sync",
      "source-vm-stop: bash -s -- stop",
      "source-vm-revoke-sync: bash -s -- revoke-sync",
    ]);
  });

  it("second up with the same inputs: every resource is the same, nothing runs", async () => {
    const plan = planUpdate(first.registrations, (await up()).registrations);
    assert.deepEqual(
      plan.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.name}`),
      [],
    );
    assert.deepEqual(vmCommands(plan), []);
  });

  // Each change, and what it does: [setting, what changes, VM commands that run].
  const changes: Array<[string, Settings, string[], string[]]> = [
    [
      "pinning another host key (connection)",
      {
        vm: {
          connection: {
            ...sourceVmArgs().connection,
            hostKey:
              "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=",
          },
        },
      },
      ["update source-vm-on-destroy-revoke-sync", "update source-vm-on-destroy-rollback"],
      [],
    ],
    [
      "rotating the SSH key",
      {
        vm: {
          connection: { ...sourceVmArgs().connection, privateKey: pulumi.secret("rotated-key") },
        },
      },
      ["update source-vm-on-destroy-revoke-sync", "update source-vm-on-destroy-rollback"],
      [],
    ],
    [
      "a setting a finished step read (plexService)",
      { vm: { plexService: "plex.service" } },
      ["update source-vm-on-destroy-rollback"],
      [],
    ],
    [
      "another sync network (authorize-sync's setting)",
      { vm: { syncAllowedCidrs: ["10.43.0.0/16"] } },
      [],
      [],
    ],
    [
      "rollbackOnDestroy on (stored for destroy)",
      { vm: { rollbackOnDestroy: true } },
      ["update source-vm-on-destroy-rollback"],
      [],
    ],
    [
      "transferGeneration 2 (retry the transfer)",
      { vm: { generations: { transfer: 2, tautulliImport: 1 } } },
      [
        "create source-vm-preflight-gen-2",
        "create source-vm-authorize-sync-gen-2",
        "create source-vm-stop-gen-2-1",
        "create source-vm-revoke-sync-gen-2-1",
        "delete source-vm-preflight",
        "delete source-vm-authorize-sync",
        "delete source-vm-stop",
        "delete source-vm-revoke-sync",
      ],
      [
        "source-vm-preflight-gen-2: bash -s -- preflight",
        "source-vm-authorize-sync-gen-2: bash -s -- authorize-sync",
        "source-vm-stop-gen-2-1: bash -s -- stop",
        "source-vm-revoke-sync-gen-2-1: bash -s -- revoke-sync",
      ],
    ],
    [
      "tautulliImportGeneration 2 (a new snapshot, imported again)",
      { vm: { generations: { transfer: 1, tautulliImport: 2 } } },
      [
        "create source-vm-stop-gen-1-2",
        "create source-vm-revoke-sync-gen-1-2",
        "delete source-vm-stop",
        "delete source-vm-revoke-sync",
      ],
      [
        "source-vm-stop-gen-1-2: bash -s -- stop",
        "source-vm-revoke-sync-gen-1-2: bash -s -- revoke-sync",
      ],
    ],
    [
      "vmRetired (the VM is gone)",
      { vm: { retired: true, rollbackOnDestroy: true } },
      // The rollback hook had no delete (rollbackOnDestroy was off) and keeps none.
      ["update source-vm-on-destroy-revoke-sync", "delete source-vm-revoke-sync"],
      [],
    ],
  ];
  for (const [what, settings, changed, runs] of changes) {
    it(`${what}: ${runs.length === 0 ? "no VM command runs" : "only its steps run"}`, async () => {
      const plan = planUpdate(first.registrations, (await up(settings)).registrations);
      // The stand-ins of the cluster side stay as they are (same outputs, same inputs).
      const notSame = plan
        .filter((s) => s.op !== "same" && s.type === CMD)
        .map((s) => `${s.op} ${s.name}`);
      assert.deepEqual(notSame.sort(), [...changed].sort());
      assert.deepEqual(vmCommands(plan), runs);
    });
  }

  it("a new plex-migrate version (another script text) runs no finished step", async () => {
    const next = (await up()).registrations.map((r) =>
      r.type === CMD
        ? { ...r, inputs: { ...r.inputs, stdin: `${String(r.inputs.stdin)}# a newer script\n` } }
        : r,
    );
    const plan = planUpdate(first.registrations, next);
    assert.deepEqual(
      plan
        .filter((s) => s.op !== "same")
        .map((s) => `${s.op} ${s.name}`)
        .sort(),
      HOOKS.map((h) => `update ${h}`).sort(),
    );
    assert.deepEqual(vmCommands(plan), []);
  });

  it("a step that failed is retried with the current settings (it never reached the state)", async () => {
    const state = first.registrations.filter((r) => r.name !== "source-vm-stop");
    const next = (await up({ vm: { tautulliDbPath: "/srv/tautulli/tautulli.db" } })).registrations;
    const plan = planUpdate(state, next);
    assert.deepEqual(vmCommands(plan), ["source-vm-stop: bash -s -- stop"]);
    const stop = next.find((r) => r.name === "source-vm-stop")!;
    assert.match(
      String(stop.inputs.stdin),
      /PLEX_MIGRATE_TAUTULLI_DB='\/srv\/tautulli\/tautulli\.db'/,
    );
  });

  describe("pulumi destroy", () => {
    const outcome = (steps: ReturnType<typeof planDestroy>, name: string) =>
      steps.find((s) => s.name === name)?.outcome;
    const order = (steps: ReturnType<typeof planDestroy>) => steps.map((s) => s.name);

    it("no protected or retained resource depends on a destroy hook", async () => {
      for (const protectData of [true, false]) {
        const run = await up({ protectData, vm: { rollbackOnDestroy: true } });
        const hooks = HOOKS.map((h) => reg(run, h).urn);
        for (const r of run.registrations.filter((x) => x.protect || x.retainOnDelete)) {
          const deps = transitiveDependencies(run.registrations, r);
          for (const hook of hooks) assert.ok(!deps.has(hook), `${r.name} depends on ${hook}`);
        }
      }
    });

    it("protectData true: the data is refused, the hooks still run, after the release", async () => {
      const steps = planDestroy((await up({ vm: { rollbackOnDestroy: true } })).registrations);
      for (const name of ["config-claim", "tautulli-db"]) {
        assert.equal(outcome(steps, name), "refused (protected)", name);
      }
      // The namespace is never even tried: the refused claim depends on it.
      assert.equal(outcome(steps, "namespace"), "skipped");
      assert.equal(outcome(steps, "source-vm-on-destroy-revoke-sync"), "deleted");
      assert.deepEqual(
        steps.filter((s) => s.runs).map((s) => `${s.name}: ${s.runs}`),
        [
          "source-vm-on-destroy-revoke-sync: bash -s -- revoke-sync",
          "source-vm-on-destroy-rollback: bash -s -- rollback",
        ].sort(),
      );
      // The cluster's Plex is gone before the VM's starts again.
      const names = order(steps);
      assert.ok(names.indexOf("release") < names.indexOf("source-vm-on-destroy-rollback"));
      assert.ok(names.indexOf("release") < names.indexOf("source-vm-on-destroy-revoke-sync"));
      assert.ok(names.indexOf("warm-copy") < names.indexOf("source-vm-on-destroy-revoke-sync"));
      // What the protected resources depend on stays (the preflight that sized the claim).
      assert.equal(outcome(steps, "source-vm-preflight"), "skipped");
    });

    it("protectData false: the claim and namespace are retained, the database deleted, the hooks run", async () => {
      const steps = planDestroy(
        (await up({ protectData: false, vm: { rollbackOnDestroy: true } })).registrations,
      );
      assert.equal(outcome(steps, "namespace"), "retained");
      assert.equal(outcome(steps, "config-claim"), "retained");
      assert.equal(outcome(steps, "tautulli-db"), "deleted");
      assert.ok(steps.every((s) => s.outcome !== "skipped" && s.outcome !== "refused (protected)"));
      assert.deepEqual(
        steps.filter((s) => s.runs).map((s) => s.runs),
        ["bash -s -- revoke-sync", "bash -s -- rollback"],
      );
    });

    it("rollbackOnDestroy false: only revoke-sync runs", async () => {
      const steps = planDestroy((await up()).registrations);
      assert.deepEqual(
        steps.filter((s) => s.runs).map((s) => s.runs),
        ["bash -s -- revoke-sync"],
      );
    });

    it("VM retired (after the up that stores it): nothing contacts the VM", async () => {
      const steps = planDestroy(
        (await up({ vm: { retired: true, rollbackOnDestroy: true } })).registrations,
      );
      assert.deepEqual(
        steps.filter((s) => s.runs),
        [],
      );
      assert.equal(outcome(steps, "source-vm-on-destroy-revoke-sync"), "deleted");
    });
  });
});
