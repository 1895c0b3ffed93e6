/**
 * The VM step protocol table (lib/source-vm/protocol.ts) and scripts/plex-migrate-source.sh agree:
 * the steps the script accepts, the variables it reads, and the keys of the JSON summary each step
 * prints when it runs for real on the fake VM.
 */
import { strict as assert } from "assert";
import * as fs from "fs";
import * as path from "path";
import {
  SCRIPT_PATH,
  loadScriptSources,
  scriptBundle,
  stepEnvironment,
} from "../../lib/source-vm/commands";
import {
  BY_HAND_SETTINGS,
  SETTINGS,
  SOURCE_STEPS,
  STEP_PROTOCOL,
  type SourceStep,
} from "../../lib/source-vm/protocol";
import { parseStepOutput } from "../../lib/source-vm/outputs";
import { createFakeVm, FakeVm } from "../support/fake-vm";

const script = fs.readFileSync(SCRIPT_PATH, "utf8");

describe("the VM step protocol table and plex-migrate-source.sh agree", function () {
  this.timeout(180_000);

  it("the script accepts exactly the table's steps", () => {
    const main = script.slice(script.indexOf("\nmain() {"));
    const accepted = /\n\s+([a-z-]+(?: \| [a-z-]+)*)\) ;;/.exec(main);
    assert.ok(accepted, "main's step list");
    assert.deepEqual(accepted[1].split(" | ").sort(), [...SOURCE_STEPS].sort());
  });

  it("every variable the script reads is in the table or the by-hand list, and documented in its header", () => {
    const read = new Set(
      [...script.matchAll(/\$\{(PLEX_MIGRATE_[A-Z0-9_]+)[:-]/g)].map((m) => m[1]),
    );
    const table = new Set([
      ...Object.values(SETTINGS).map((s) => s.env),
      ...(BY_HAND_SETTINGS as readonly string[]),
    ]);
    assert.deepEqual([...read].sort(), [...table].sort());
    const header = script.slice(0, script.indexOf("\nset -euo pipefail"));
    for (const name of read) assert.ok(header.includes(`#   ${name} `), `${name} documented`);
  });

  it("every step's settings are read by the script, and stepEnvironment sends only those", () => {
    for (const step of SOURCE_STEPS) {
      const settings = STEP_PROTOCOL[step].settings as readonly (keyof typeof SETTINGS)[];
      for (const name of settings) assert.ok(script.includes(`\${${SETTINGS[name].env}`), name);
    }
  });

  describe("each step's summary has exactly the table's keys", () => {
    let vm: FakeVm;
    before(async () => {
      vm = await createFakeVm({ linger: 0 });
    });
    after(async () => vm?.cleanup());

    const run = async (step: SourceStep, extra: Record<string, string> = {}) => {
      const settings = { ...vm.settings, rollbackForce: step === "rollback" };
      const env = stepEnvironment(step, settings);
      const bundle = scriptBundle(step, { ...env, ...extra }, loadScriptSources());
      const result = await vm.runBundle(step, bundle);
      assert.equal(result.code, 0, `${step}: ${result.stderr}`);
      const json = parseStepOutput(step, result.stdout) as unknown as Record<string, unknown>;
      assert.deepEqual(
        Object.keys(json).sort(),
        Object.keys(STEP_PROTOCOL[step].keys).sort(),
        step,
      );
      return json;
    };

    for (const step of ["preflight", "stop", "rollback"]) {
      it(step, async () => {
        await run(step as SourceStep);
      });
    }

    for (const step of ["authorize-sync", "revoke-sync"] as const) {
      it(step, async () => {
        const keys = path.join(vm.root, "authorized_keys-protocol");
        await run(step, {
          PLEX_MIGRATE_SYNC_PUBLIC_KEY:
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIProtocolTestKeyxxxxxxxxxxxxxxxxxxxxxxxxxxx",
          PLEX_MIGRATE_SYNC_USER: "root",
          PLEX_MIGRATE_SYNC_AUTHORIZED_KEYS: keys,
        });
      });
    }
  });

  it("the parser refuses a summary with a key the table does not know, or without one it lists", () => {
    const summary = { step: "revoke-sync", revoked: false, removed: [], notes: [] };
    assert.equal(parseStepOutput("revoke-sync", JSON.stringify(summary)).revoked, false);
    assert.throws(
      () => parseStepOutput("revoke-sync", JSON.stringify({ ...summary, surprise: 1 })),
      /keys this version does not know \(surprise\)/,
    );
    const { removed: _removed, ...without } = summary;
    assert.throws(
      () => parseStepOutput("revoke-sync", JSON.stringify(without)),
      /summary lacks removed \(array\)/,
    );
  });
});
