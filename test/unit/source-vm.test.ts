/**
 * SourceVm under Pulumi mocks: the exact remote.Command inputs, their order, the lifecycle options
 * (lib/source-vm/phases.ts), the destroy hooks, and secrets (SSH keys, the Plex token) never in
 * plain text.
 */
import { strict as assert } from "assert";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import type { SourceVm, SourceVmArgs } from "../../components/source-vm";
import { sourceVmArgs, TEST_HOST_KEY, TEST_SSH_KEY } from "../support/source-vm-args";
import {
  remoteCommandLine,
  scriptBundle,
  shellQuote,
  stepEnvironment,
} from "../../lib/source-vm/commands";
import { hostKeyProblem } from "../../lib/source-vm/host-key";
import { parseStepOutput } from "../../lib/source-vm/outputs";
import {
  FROZEN_STEP_INPUTS,
  generationProblems,
  stepResourceName,
} from "../../lib/source-vm/phases";
import {
  isSecretInput,
  isSecretMarker,
  MOCK_SYNC_PUBLIC_KEY,
  plainStrings,
  Registration,
  runWithMocks,
  unwrap,
} from "../support/pulumi-mocks";
import {
  SAMPLE_LIBRARY_BYTES,
  SAMPLE_PLEX_TOKEN,
  SAMPLE_PLEX_VERSION,
  SAMPLE_STEP_OUTPUT,
  sourceVmCommandOutputs,
} from "../support/fake-vm/mock-outputs";

const SAMPLE_PREFLIGHT = SAMPLE_STEP_OUTPUT.preflight as {
  fileCount: number;
  preferences: Record<string, string>;
};
const SAMPLE_STOP = SAMPLE_STEP_OUTPUT.stop as {
  plexDatabases: unknown[];
  tautulliSnapshot: unknown;
};

const CMD = "command:remote:Command";
const KEY = TEST_SSH_KEY;
const HOST_KEY = TEST_HOST_KEY;
const STEPS = ["preflight", "authorize-sync", "stop", "revoke-sync"] as const;
const HOOKS = ["vm-on-destroy-revoke-sync", "vm-on-destroy-rollback"];

const args = sourceVmArgs;

/** A SourceVm with its stop and revoke-sync steps after `after` (a stand-in resource). */
async function run(vmArgs: SourceVmArgs, preview = false) {
  let vm: SourceVm | undefined;
  let stopped: ReturnType<SourceVm["stopAfter"]> | undefined;
  const result = await runWithMocks(
    () => {
      const { SourceVm } = require("../../components/source-vm");
      const copy = new random.RandomPassword("warm-copy", { length: 8 });
      const release = new random.RandomPassword("release", { length: 8 });
      vm = new SourceVm("vm", vmArgs) as SourceVm;
      stopped = vm.stopAfter([copy]);
      vm.revokeSyncAfter([release]);
      return {};
    },
    { preview, outputs: preview ? {} : { [CMD]: sourceVmCommandOutputs() } },
  );
  return { result, vm: vm!, stopped: stopped! };
}

/** An input value, unwrapped when it is a secret. */
const plain = (value: unknown): unknown => (isSecretMarker(value) ? value.value : value);
const commands = (regs: Registration[]) => regs.filter((r) => r.type === CMD);
const byName = (regs: Registration[], name: string) => {
  const found = regs.find((r) => r.name === name);
  assert.ok(found, `no registration ${name}`);
  return found;
};
const exportLines = (stdin: unknown) =>
  String(plain(stdin))
    .split("\n")
    .filter((line) => line.startsWith("export PLEX_MIGRATE_"));

describe("SourceVm (Pulumi mocks)", () => {
  it("creates the sync key, two destroy hooks and the four steps, each a short command line plus a stdin bundle", async () => {
    const { result } = await run(args());
    const names = commands(result.registrations).map((r) => r.name);
    assert.deepEqual(names.sort(), [...HOOKS, ...STEPS.map((s) => `vm-${s}`)].sort());
    const key = result.registrations.find((r) => r.type === "tls:index/privateKey:PrivateKey");
    assert.equal(key?.name, "vm-sync-key");
    assert.deepEqual(key?.inputs, { algorithm: "ED25519" });
    const component = result.registrations.find((r) => r.type === "plex-migrate:source:Vm")!;
    for (const reg of [...commands(result.registrations), key!]) {
      assert.equal(reg.parentUrn, component.urn, `${reg.name} is a child of the component`);
    }
    for (const reg of commands(result.registrations)) {
      assert.equal(reg.inputs.logging, "stderr");
      assert.equal(reg.inputs.addPreviousOutputInEnv, false);
      assert.equal(reg.inputs.environment, undefined, "no environment (sshd drops it)");
      const connection = reg.inputs.connection as Record<string, unknown>;
      assert.deepEqual(
        [
          connection.host,
          connection.port,
          connection.user,
          connection.privateKey,
          connection.hostKey,
        ],
        ["192.168.13.21", 22, "root", KEY, HOST_KEY],
      );
      assert.match(String(plain(reg.inputs.stdin)), /\nmain "\$@"\n$/);
    }
    for (const step of STEPS) {
      const reg = byName(result.registrations, `vm-${step}`);
      assert.equal(reg.inputs.create, `bash -s -- ${step}`);
      assert.equal(reg.inputs.update, undefined);
      assert.equal(reg.inputs.delete, undefined, `${step} has no delete (the hooks do that)`);
      assert.equal(reg.inputs.triggers, undefined);
    }
  });

  it("freezes every step once it succeeded: all of its inputs are ignored changes; the hooks follow every change", async () => {
    const { result } = await run(args());
    for (const step of STEPS) {
      assert.deepEqual(byName(result.registrations, `vm-${step}`).ignoreChanges, [
        ...FROZEN_STEP_INPUTS,
      ]);
    }
    for (const hook of HOOKS) {
      const reg = byName(result.registrations, hook);
      assert.deepEqual(reg.ignoreChanges, [], `${hook} keeps its connection and script current`);
      assert.equal(reg.inputs.create, undefined, `${hook} runs nothing on create`);
      assert.equal(reg.inputs.update, undefined, `${hook} runs nothing on update`);
    }
  });

  it("names each step by its generations, so a new generation is a new resource", async () => {
    assert.equal(
      stepResourceName("vm", "preflight", { transfer: 1, tautulliImport: 1 }),
      "vm-preflight",
    );
    assert.equal(stepResourceName("vm", "stop", { transfer: 1, tautulliImport: 1 }), "vm-stop");
    assert.equal(
      stepResourceName("vm", "preflight", { transfer: 2, tautulliImport: 5 }),
      "vm-preflight-gen-2",
    );
    assert.equal(
      stepResourceName("vm", "stop", { transfer: 1, tautulliImport: 2 }),
      "vm-stop-gen-1-2",
    );
    assert.equal(
      stepResourceName("vm", "revoke-sync", { transfer: 3, tautulliImport: 1 }),
      "vm-revoke-sync-gen-3-1",
    );
    const { result } = await run(args({ generations: { transfer: 1, tautulliImport: 2 } }));
    assert.deepEqual(
      commands(result.registrations)
        .map((r) => r.name)
        .sort(),
      [
        "vm-authorize-sync",
        "vm-on-destroy-revoke-sync",
        "vm-on-destroy-rollback",
        "vm-preflight",
        "vm-revoke-sync-gen-1-2",
        "vm-stop-gen-1-2",
      ],
    );
    await assert.rejects(
      run(args({ generations: { transfer: 0, tautulliImport: 1.5 } })),
      /generations\.transfer: expected a whole number from 1.*generations\.tautulliImport: expected a whole number/,
    );
  });

  it("orders the steps: hooks first, preflight, authorize-sync, (warm copy) stop, (release, import) revoke-sync", async () => {
    const { result } = await run(args());
    const reg = (name: string) => byName(result.registrations, name);
    const deps = (name: string) => reg(name).dependencies;
    assert.deepEqual(deps("vm-preflight"), []);
    assert.deepEqual(
      [...deps("vm-authorize-sync")].sort(),
      [reg("vm-preflight").urn, reg("vm-sync-key").urn, ...HOOKS.map((h) => reg(h).urn)].sort(),
    );
    assert.deepEqual(
      [...deps("vm-stop")].sort(),
      [reg("warm-copy").urn, reg("vm-authorize-sync").urn].sort(),
    );
    assert.deepEqual(
      [...deps("vm-revoke-sync")].sort(),
      [reg("release").urn, reg("vm-stop").urn, reg("vm-sync-key").urn].sort(),
    );
    // The hooks depend on nothing but the sync key their stdin carries (revoke-sync's).
    assert.deepEqual(deps("vm-on-destroy-rollback"), []);
    assert.deepEqual(deps("vm-on-destroy-revoke-sync"), [reg("vm-sync-key").urn]);
  });

  it("passes settings on stdin, each step exactly the ones it reads", async () => {
    const { result } = await run(args());
    const lines = (name: string) => exportLines(byName(result.registrations, name).inputs.stdin);
    const data = "'/var/lib/plexmediaserver/Library/Application Support/Plex Media Server'";
    assert.deepEqual(lines("vm-preflight"), [
      `export PLEX_MIGRATE_DATA_DIR=${data}`,
      "export PLEX_MIGRATE_PLEX_SERVICE='plexmediaserver'",
      "export PLEX_MIGRATE_TAUTULLI_DB='/opt/Tautulli/tautulli.db'",
      "export PLEX_MIGRATE_TAUTULLI_SERVICE='tautulli'",
      "export PLEX_MIGRATE_WORK_DIR='/var/tmp/plex-migrate'",
    ]);
    assert.deepEqual(lines("vm-authorize-sync"), [
      `export PLEX_MIGRATE_DATA_DIR=${data}`,
      "export PLEX_MIGRATE_SYNC_ALLOWED_CIDRS='10.42.0.0/16'",
      `export PLEX_MIGRATE_SYNC_PUBLIC_KEY='${MOCK_SYNC_PUBLIC_KEY}'`,
      "export PLEX_MIGRATE_WORK_DIR='/var/tmp/plex-migrate'",
    ]);
    assert.deepEqual(lines("vm-stop"), lines("vm-preflight"));
    assert.deepEqual(lines("vm-revoke-sync"), [
      `export PLEX_MIGRATE_SYNC_PUBLIC_KEY='${MOCK_SYNC_PUBLIC_KEY}'`,
      "export PLEX_MIGRATE_WORK_DIR='/var/tmp/plex-migrate'",
    ]);
    assert.deepEqual(lines("vm-on-destroy-revoke-sync"), lines("vm-revoke-sync"));
    // Forced: the hook runs after the Plex release is deleted (see SourceVm.bundle).
    assert.deepEqual(lines("vm-on-destroy-rollback"), [
      "export PLEX_MIGRATE_PLEX_SERVICE='plexmediaserver'",
      "export PLEX_MIGRATE_ROLLBACK_FORCE='1'",
      "export PLEX_MIGRATE_TAUTULLI_SERVICE='tautulli'",
      "export PLEX_MIGRATE_WORK_DIR='/var/tmp/plex-migrate'",
    ]);
  });

  it("exposes the preflight and stop results, the Plex token secret and nothing else", async () => {
    const { result, vm, stopped } = await run(args());
    const preflight = byName(result.registrations, "vm-preflight");
    assert.ok(preflight.additionalSecretOutputs.includes("stdout"), "preflight's stdout is secret");
    for (const [output, value] of [
      [vm.plexVersion, SAMPLE_PLEX_VERSION],
      [vm.libraryBytes, SAMPLE_LIBRARY_BYTES],
      [vm.fileCount, SAMPLE_PREFLIGHT.fileCount],
      [vm.timezone, "Europe/Berlin"],
      [vm.machineIdentifier, SAMPLE_PREFLIGHT.preferences.machineIdentifier],
      [vm.preferences, SAMPLE_PREFLIGHT.preferences],
      [vm.mediaRoots, ["/mnt/nas-plex/Movies", "/mnt/nas-plex/TV Shows"]],
      [vm.syncPublicKey, MOCK_SYNC_PUBLIC_KEY],
      [stopped.plexDatabases, SAMPLE_STOP.plexDatabases],
      [stopped.tautulliSnapshot, SAMPLE_STOP.tautulliSnapshot],
    ] as const) {
      const got = await unwrap(output as pulumi.Output<unknown>);
      assert.deepEqual(got.value, value);
      assert.equal(got.secret, false, JSON.stringify(value));
    }
    assert.deepEqual((await unwrap(vm.dataOwner)).value.groups[0], { name: "video", gid: 44 });
    assert.deepEqual(await unwrap(vm.sshConnection), {
      value: {
        host: "192.168.13.21",
        port: 22,
        user: "root",
        privateKey: KEY,
        hostKey: HOST_KEY,
        sudo: false,
      },
      secret: true,
    });
    assert.deepEqual(await unwrap(vm.plexToken), { value: SAMPLE_PLEX_TOKEN, secret: true });
    const syncKey = await unwrap(vm.syncPrivateKey);
    assert.equal(syncKey.secret, true);
    assert.match(syncKey.value, /BEGIN OPENSSH PRIVATE KEY/);
    assert.deepEqual(await unwrap(vm.connection.privateKey), { value: KEY, secret: true });
    assert.equal(vm.connection.hostKey, HOST_KEY);
    assert.equal(
      (await unwrap(vm.syncAuthorized.urn)).value,
      byName(result.registrations, "vm-authorize-sync").urn,
    );
    assert.equal(
      (await unwrap(stopped.stopped.urn)).value,
      byName(result.registrations, "vm-stop").urn,
    );
    for (const reg of commands(result.registrations)) {
      assert.ok(isSecretInput(reg, "connection.privateKey"), `${reg.name}: key secret`);
      assert.ok(
        !plainStrings(reg.rawInputs).some((s) => s.includes("secret-key-material")),
        `${reg.name}: key not plain`,
      );
    }
  });

  it("on a fresh stack's preview every VM result is unknown, and nothing fails", async () => {
    const { vm, stopped } = await run(args(), true);
    const known = async (output: pulumi.Output<unknown>) =>
      (output as unknown as { isKnown: Promise<boolean> }).isKnown;
    for (const output of [
      vm.plexVersion,
      vm.libraryBytes,
      vm.fileCount,
      vm.mediaRoots,
      vm.dataOwner,
      vm.timezone,
      vm.preferences,
      vm.machineIdentifier,
      vm.plexToken,
      vm.syncPrivateKey,
      vm.syncPublicKey,
      stopped.plexDatabases,
      stopped.tautulliSnapshot,
    ]) {
      assert.equal(await known(output as pulumi.Output<unknown>), false);
    }
  });

  it("pulumi destroy: revoke-sync always, rollback only with rollbackOnDestroy; retired, neither, and no revoke-sync step", async () => {
    const off = await run(args());
    assert.equal(
      byName(off.result.registrations, "vm-on-destroy-revoke-sync").inputs.delete,
      "bash -s -- revoke-sync",
    );
    assert.equal(
      byName(off.result.registrations, "vm-on-destroy-rollback").inputs.delete,
      undefined,
    );
    const on = await run(args({ rollbackOnDestroy: true }));
    assert.equal(
      byName(on.result.registrations, "vm-on-destroy-rollback").inputs.delete,
      "bash -s -- rollback",
    );
    const retired = await run(args({ rollbackOnDestroy: true, retired: true }));
    for (const hook of HOOKS) {
      assert.equal(byName(retired.result.registrations, hook).inputs.delete, undefined, hook);
    }
    assert.deepEqual(
      commands(retired.result.registrations)
        .map((r) => r.name)
        .sort(),
      [...HOOKS, "vm-authorize-sync", "vm-preflight", "vm-stop"].sort(),
    );
  });

  describe("retired: a preview refuses steps that are not in the state", () => {
    /** A preview (or an up) where `recorded` steps are in the state; the cluster side consumes the results. */
    const previewRetired = (vmArgs: SourceVmArgs, recorded: string[], preview = true) =>
      runWithMocks(
        () => {
          const { SourceVm } = require("../../components/source-vm");
          const vm = new SourceVm("vm", vmArgs) as SourceVm;
          const claim = new random.RandomPassword("claim", {
            length: vm.libraryBytes.apply(() => 8),
          });
          const stopped = vm.stopAfter([claim]);
          new random.RandomPassword("release", { length: stopped.plexDatabases.apply(() => 8) });
          vm.revokeSyncAfter([claim]);
          return {};
        },
        { preview, recorded, outputs: { [CMD]: sourceVmCommandOutputs() } },
      );
    const all = ["vm-preflight", "vm-authorize-sync", "vm-stop", ...HOOKS];

    it("names the steps that would run, and the fix", async () => {
      await assert.rejects(
        previewRetired(args({ retired: true }), HOOKS),
        /vmRetired is true, but the VM steps vm-preflight, vm-authorize-sync have not run in this stack.*Fix: while the VM is still reachable, pulumi config set vmRetired false/,
      );
      await assert.rejects(
        previewRetired(
          args({ retired: true }),
          all.filter((n) => n !== "vm-stop"),
        ),
        /the VM step vm-stop has not run in this stack/,
      );
    });

    it("passes with every step recorded, and never checks when the VM is not retired", async () => {
      await previewRetired(args({ retired: true }), all);
      await previewRetired(args(), []);
    });
  });

  it("a non-root user goes through sudo -n, with a message saying how to fix a missing sudo rule", async () => {
    const { result } = await run(args({ connection: { ...args().connection, user: "ubuntu" } }));
    const create = String(byName(result.registrations, "vm-stop").inputs.create);
    assert.equal(create, remoteCommandLine("stop", { user: "ubuntu", sudo: true }));
    assert.match(
      create,
      /^if sudo -n -l bash >\/dev\/null 2>&1; then exec sudo -n -- bash -s -- stop; else echo '.*ubuntu ALL=\(root\) NOPASSWD: ALL.*' >&2; exit 126; fi$/,
    );
    const noSudo = await run(
      args({ connection: { ...args().connection, user: "ubuntu" }, sudo: false }),
    );
    assert.equal(byName(noSudo.result.registrations, "vm-stop").inputs.create, "bash -s -- stop");
  });

  it("stopAfter and revokeSyncAfter are called once each, in that order", async () => {
    await runWithMocks(
      () => {
        const { SourceVm } = require("../../components/source-vm");
        const vm = new SourceVm("vm", args()) as SourceVm;
        assert.throws(() => vm.revokeSyncAfter([]), /after stopAfter/);
        vm.stopAfter([]);
        assert.throws(() => vm.stopAfter([]), /only once/);
        vm.revokeSyncAfter([]);
        assert.throws(() => vm.revokeSyncAfter([]), /once per SourceVm/);
        return {};
      },
      { outputs: { [CMD]: sourceVmCommandOutputs() } },
    );
  });

  it("rejects bad arguments naming the field and the fix", async () => {
    await assert.rejects(
      run(
        args({
          workDir: "/var/lib/plexmediaserver/Library/Application Support/Plex Media Server/tmp",
          connection: { ...args().connection, hostKey: "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC" },
        }),
      ),
      (error: Error) =>
        /workDir must not be inside plexDataDir/.test(error.message) &&
        /connection\.hostKey is an RSA host key.*ssh-keyscan -t ed25519 192\.168\.13\.21/.test(
          error.message,
        ),
    );
  });
});

describe("lib/source-vm/host-key", () => {
  it("accepts ed25519 and ECDSA keys, with or without a comment", () => {
    assert.equal(hostKeyProblem(HOST_KEY, "vm"), undefined);
    assert.equal(hostKeyProblem(`${HOST_KEY} root@plex-vm`, "vm"), undefined);
    const ecdsa =
      "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=";
    assert.equal(hostKeyProblem(ecdsa, "vm"), undefined);
  });

  it("refuses RSA, DSA, security-key and broken keys, and a missing one, each naming the fix", () => {
    const fix =
      /Fix: .*pulumi config set vmHostKey "\$\(ssh-keyscan -t ed25519 plex-vm 2>\/dev\/null \| cut -d' ' -f2-\)"/;
    const cases: [string | undefined, RegExp][] = [
      [
        undefined,
        /is not set: without a pinned host key any machine answering at plex-vm would be trusted/,
      ],
      ["", /is not set/],
      [
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7",
        /is an RSA host key: pulumi-command verifies it only with the SHA-1 ssh-rsa algorithm/,
      ],
      ["ssh-dss AAAAB3NzaC1kc3MAAACBAP", /is "ssh-dss", not an ed25519 or ECDSA host key/],
      [
        "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t",
        /not an ed25519 or ECDSA host key/,
      ],
      // An ed25519 label on ECDSA key data: ParseAuthorizedKey in pulumi-command would refuse it.
      [
        "ssh-ed25519 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7",
        /is not a complete ssh-ed25519 key/,
      ],
      ["ssh-ed25519 AAAA", /is not a complete ssh-ed25519 key/],
    ];
    for (const [value, message] of cases) {
      const problem = hostKeyProblem(value, "plex-vm");
      assert.ok(problem, String(value));
      assert.match(problem, message);
      assert.match(problem, fix);
    }
  });
});

describe("lib/source-vm/phases", () => {
  it("names each step by its generations, so a new generation is a new resource", () => {
    const g = (transfer: number, tautulliImport: number) => ({ transfer, tautulliImport });
    assert.equal(stepResourceName("vm", "preflight", g(1, 1)), "vm-preflight");
    assert.equal(stepResourceName("vm", "stop", g(1, 1)), "vm-stop");
    assert.equal(stepResourceName("vm", "preflight", g(2, 5)), "vm-preflight-gen-2");
    assert.equal(stepResourceName("vm", "authorize-sync", g(3, 1)), "vm-authorize-sync-gen-3");
    assert.equal(stepResourceName("vm", "stop", g(1, 2)), "vm-stop-gen-1-2");
    assert.equal(stepResourceName("vm", "revoke-sync", g(3, 1)), "vm-revoke-sync-gen-3-1");
    assert.deepEqual(generationProblems(g(1, 1)), []);
    assert.deepEqual(generationProblems(g(0, 1.5)), [
      "generations.transfer: expected a whole number from 1 to 1000000 (each bump runs the steps again), got 0",
      "generations.tautulliImport: expected a whole number from 1 to 1000000 (each bump runs the steps again), got 1.5",
    ]);
    assert.deepEqual(generationProblems(g(1_000_000, 1_000_001)), [
      "generations.tautulliImport: expected a whole number from 1 to 1000000 (each bump runs the steps again), got 1000001",
    ]);
  });

  it("freezes every input of remote.Command (pulumi-command v1.2.1's CommandInputs)", () => {
    // provider/pkg/provider/common/inputs.go (triggers, create, update, delete) and
    // remote/command.go (stdin, logging, connection, environment, addPreviousOutputInEnv).
    assert.deepEqual([...FROZEN_STEP_INPUTS].sort(), [
      "addPreviousOutputInEnv",
      "connection",
      "create",
      "delete",
      "environment",
      "logging",
      "stdin",
      "triggers",
      "update",
    ]);
  });
});

describe("lib/source-vm/commands", () => {
  it("quotes any value for POSIX shells", () => {
    for (const value of [
      "plain",
      "with space",
      "it's",
      "$(rm -rf /)",
      "`x`",
      'a"b',
      "ünï ファイル",
      "",
    ]) {
      const out = require("child_process").spawnSync(
        "sh",
        ["-c", `printf %s ${shellQuote(value)}`],
        { encoding: "utf8" },
      );
      assert.equal(out.stdout, value);
    }
  });

  it("refuses settings with line breaks and malformed tokens", () => {
    const settings = {
      workDir: "/var/tmp/x\nrm -rf /",
      plexDataDir: "/d",
      plexService: "p",
      tautulliService: "t",
      tautulliDbPath: "/t.db",
    };
    assert.throws(
      () => stepEnvironment("preflight", settings),
      /PLEX_MIGRATE_WORK_DIR must not contain NUL or line breaks/,
    );
    assert.throws(
      () => scriptBundle("stop", { "PLEX_MIGRATE_WORK_DIR;rm": "/x" }, { script: "" }),
      /not a plex-migrate setting/,
    );
  });

  it("reports a step whose stdout is not its JSON summary", () => {
    assert.throws(
      () => parseStepOutput("preflight", "bash: warning\n"),
      /did not end with its JSON summary/,
    );
    assert.throws(
      () => parseStepOutput("stop", '{"step":"rollback"}'),
      /printed a summary for "rollback"/,
    );
    assert.throws(
      () =>
        parseStepOutput(
          "stop",
          '{"step":"stop","plexDatabases":[{"path":"x.db","sha256":"x","bytes":1}]}',
        ),
      /no valid plexDatabases/,
    );
  });
});
