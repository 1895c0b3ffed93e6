/**
 * SourceVm under Pulumi mocks: the exact remote.Command inputs, their order and triggers, the
 * destroy hooks, and secrets (SSH key, serving token, URLs) never in plain text.
 */
import { strict as assert } from "assert";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import type { ArchiveSourceVmArgs as SourceVmArgs } from "../../components/archive-source-vm";
import { remoteCommandLine } from "../../lib/source-vm/commands";
import {
  isSecretInput,
  isSecretMarker,
  plainStrings,
  Registration,
  runWithMocks,
  unwrap,
} from "../support/pulumi-mocks";
import {
  SAMPLE_ARCHIVE_SHA256,
  SAMPLE_PLEX_VERSION,
  SAMPLE_TAUTULLI_SHA256,
  sourceVmCommandOutputs,
} from "../support/fake-vm/mock-outputs";

const CMD = "command:remote:Command";
const KEY =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-key-material\n-----END OPENSSH PRIVATE KEY-----\n";
const TOKEN = "mock-password-vm-serve-token-0123456789";

function args(overrides: Partial<SourceVmArgs> = {}): SourceVmArgs {
  return {
    connection: {
      host: "192.168.13.21",
      port: 22,
      user: "root",
      privateKey: pulumi.secret(KEY),
      hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey",
    },
    sudo: true,
    workDir: "/var/tmp/plex-migrate",
    plexDataDir: "/var/lib/plexmediaserver/Library/Application Support/Plex Media Server",
    plexService: "plexmediaserver",
    tautulliService: "tautulli",
    tautulliDbPath: "/opt/Tautulli/tautulli.db",
    archiveExcludes: [],
    archiveCompression: "auto",
    serve: {
      address: "0.0.0.0",
      host: "192.168.13.21",
      port: 32499,
      lifetimeMinutes: 240,
      allowedCidrs: ["10.42.0.0/16"],
    },
    keepArchive: false,
    rollbackOnDestroy: false,
    ...overrides,
  };
}

async function run(vmArgs: SourceVmArgs, withStopServing = true) {
  let vm: import("../../components/archive-source-vm").ArchiveSourceVm | undefined;
  const result = await runWithMocks(
    () => {
      const { ArchiveSourceVm: SourceVm } = require("../../components/archive-source-vm");
      vm = new SourceVm("vm", vmArgs);
      if (withStopServing) vm!.stopServingAfter([]);
      return {};
    },
    { outputs: { [CMD]: sourceVmCommandOutputs() } },
  );
  return { result, vm: vm! };
}

/** An input value, unwrapped when it is a secret. */
const plain = (value: unknown): unknown => (isSecretMarker(value) ? value.value : value);
const commands = (regs: Registration[]) => regs.filter((r) => r.type === CMD);
const byName = (regs: Registration[], name: string) => {
  const found = regs.find((r) => r.name === name);
  assert.ok(found, `no registration ${name}`);
  return found;
};

describe("ArchiveSourceVm, the archive flow (Pulumi mocks)", () => {
  it("creates the steps as remote commands in data-flow order, each a short command line plus a stdin bundle", async () => {
    const { result } = await run(args());
    const names = commands(result.registrations)
      .map((r) => r.name)
      .sort();
    assert.deepEqual(names, [
      "vm-archive",
      "vm-on-destroy-rollback",
      "vm-on-destroy-stop-serving",
      "vm-preflight",
      "vm-serve",
      "vm-stop",
      "vm-stop-serving",
    ]);
    const component = result.registrations.find((r) => r.type === "plex-migrate:source:Vm")!;
    for (const reg of commands(result.registrations)) {
      assert.equal(reg.parentUrn, component.urn, `${reg.name} is a child of the component`);
      assert.equal(reg.inputs.logging, "stderr");
      assert.equal(reg.inputs.addPreviousOutputInEnv, false);
      assert.equal(
        reg.inputs.environment,
        undefined,
        "no environment (sshd drops it without AcceptEnv)",
      );
    }
    const steps = ["preflight", "stop", "archive", "serve", "stop-serving"] as const;
    for (const step of steps) {
      const reg = byName(result.registrations, `vm-${step}`);
      assert.equal(reg.inputs.create, `bash -s -- ${step}`);
      assert.equal(reg.inputs.delete, undefined, `${step} has no delete (destroy hooks do that)`);
      assert.match(String(plain(reg.inputs.stdin)), /set -euo pipefail/);
      assert.match(String(plain(reg.inputs.stdin)), /\nmain "\$@"\n$/);
    }
    const dependsOn = (name: string) => byName(result.registrations, name).dependencies;
    const urn = (name: string) => byName(result.registrations, name).urn;
    // The preflight (which sizes the protected claim) depends on no hook; the stop does.
    assert.deepEqual(dependsOn("vm-preflight"), []);
    assert.ok(dependsOn("vm-stop").includes(urn("vm-on-destroy-stop-serving")));
    assert.ok(dependsOn("vm-stop").includes(urn("vm-on-destroy-rollback")));
    assert.ok(dependsOn("vm-stop").includes(urn("vm-preflight")));
    assert.ok(dependsOn("vm-archive").includes(urn("vm-stop")));
    assert.ok(dependsOn("vm-serve").includes(urn("vm-archive")));
    assert.ok(dependsOn("vm-stop-serving").includes(urn("vm-serve")));
    // Each step re-runs only when the step before it produced a new result.
    const triggers = (name: string) => byName(result.registrations, name).inputs.triggers;
    assert.equal(triggers("vm-preflight"), undefined);
    for (const [name, before] of [
      ["vm-stop", "preflight"],
      ["vm-archive", "stop"],
      ["vm-serve", "archive"],
      ["vm-stop-serving", "serve"],
    ]) {
      const upstream = sourceVmCommandOutputs()(
        byName(result.registrations, `vm-${before}`),
      ).stdout;
      assert.deepEqual(triggers(name), [upstream], name);
    }
  });

  it("passes settings on stdin, each step only the ones it reads", async () => {
    const { result } = await run(
      args({ archiveExcludes: ["Cache", "Crash Reports"], keepArchive: true }),
    );
    const stdin = (name: string) => String(plain(byName(result.registrations, name).inputs.stdin));
    assert.match(
      stdin("vm-preflight"),
      /^export PLEX_MIGRATE_DATA_DIR='\/var\/lib\/plexmediaserver\/Library\/Application Support\/Plex Media Server'$/m,
    );
    assert.match(stdin("vm-archive"), /^export PLEX_MIGRATE_EXCLUDES='Cache,Crash Reports'$/m);
    assert.match(
      stdin("vm-serve"),
      /^export PLEX_MIGRATE_SERVE_ALLOWED_CIDRS='10\.42\.0\.0\/16'$/m,
    );
    assert.match(
      stdin("vm-serve"),
      /^PLEX_MIGRATE_SERVER_PY_SOURCE=\$\(cat <<'PLEX_MIGRATE_SERVE_PY_END'$/m,
    );
    assert.match(stdin("vm-stop-serving"), /^export PLEX_MIGRATE_KEEP_ARCHIVE='1'$/m);
    assert.doesNotMatch(stdin("vm-stop"), /^export PLEX_MIGRATE_SERVE_/m);
    assert.doesNotMatch(stdin("vm-archive"), /^export PLEX_MIGRATE_SERVE_/m);
    assert.doesNotMatch(stdin("vm-preflight"), /^PLEX_MIGRATE_SERVER_PY_SOURCE=/m);

    // A serve-only setting changes only the serve step's input.
    const other = await run(
      args({
        archiveExcludes: ["Cache", "Crash Reports"],
        keepArchive: true,
        serve: { ...args().serve, lifetimeMinutes: 30 },
      }),
    );
    for (const name of ["vm-preflight", "vm-stop", "vm-archive", "vm-stop-serving"]) {
      assert.equal(
        String(plain(byName(other.result.registrations, name).inputs.stdin)),
        stdin(name),
        name,
      );
    }
    assert.notEqual(
      String(plain(byName(other.result.registrations, "vm-serve").inputs.stdin)),
      stdin("vm-serve"),
    );
  });

  it("keeps the SSH key, the serving token and the URLs secret", async () => {
    const { result, vm } = await run(args());
    for (const reg of commands(result.registrations)) {
      assert.ok(isSecretInput(reg, "connection.privateKey"), `${reg.name}: key secret`);
      assert.ok(
        !plainStrings(reg.rawInputs).some((s) => s.includes("secret-key-material")),
        `${reg.name}: key not plain`,
      );
      assert.ok(
        !plainStrings(reg.rawInputs).some((s) => s.includes(TOKEN)),
        `${reg.name}: token not plain`,
      );
    }
    const serve = byName(result.registrations, "vm-serve");
    assert.ok(isSecretInput(serve, "stdin"), "the serve bundle (with the token) is a secret input");
    assert.ok(serve.additionalSecretOutputs.includes("stdin"));
    const token = result.registrations.find(
      (r) => r.type === "random:index/randomPassword:RandomPassword",
    )!;
    assert.equal(token.name, "vm-serve-token");
    assert.equal(token.inputs.length, 43);
    assert.equal(token.inputs.special, false);

    const archiveUrl = await unwrap(vm.archiveUrl);
    assert.equal(archiveUrl.secret, true);
    assert.equal(archiveUrl.value, `http://192.168.13.21:32499/${TOKEN}/plex-library.tar.zst`);
    const snapshotUrl = await unwrap(vm.tautulliSnapshotUrl);
    assert.equal(snapshotUrl.secret, true);
    assert.equal(snapshotUrl.value, `http://192.168.13.21:32499/${TOKEN}/tautulli.db`);
    for (const [output, value] of [
      [vm.plexVersion, SAMPLE_PLEX_VERSION],
      [vm.archiveSha256, SAMPLE_ARCHIVE_SHA256],
      [vm.archiveFormat, "tar.zst"],
      [vm.tautulliSnapshotSha256, SAMPLE_TAUTULLI_SHA256],
      [vm.databasesOk, true],
    ] as const) {
      const got = await unwrap(output as pulumi.Output<unknown>);
      assert.equal(got.value, value);
      assert.equal(got.secret, false);
    }
    assert.deepEqual((await unwrap(vm.mediaRoots)).value, [
      "/mnt/nas-plex/Movies",
      "/mnt/nas-plex/TV Shows",
    ]);
    assert.equal(
      (await unwrap(vm.servicesStopped.urn)).value,
      byName(result.registrations, "vm-stop").urn,
    );
    assert.equal(
      (await unwrap(vm.archiveServed.urn)).value,
      byName(result.registrations, "vm-serve").urn,
    );
  });

  it("pulumi destroy: stop-serving always, rollback only with rollbackOnDestroy, from hooks that never run on create", async () => {
    const off = await run(args());
    const offHook = byName(off.result.registrations, "vm-on-destroy-rollback");
    assert.equal(offHook.inputs.create, undefined);
    assert.equal(offHook.inputs.delete, undefined);
    const stopServingHook = byName(off.result.registrations, "vm-on-destroy-stop-serving");
    assert.equal(stopServingHook.inputs.create, undefined);
    assert.equal(stopServingHook.inputs.delete, "bash -s -- stop-serving");
    const on = await run(args({ rollbackOnDestroy: true }));
    const onHook = byName(on.result.registrations, "vm-on-destroy-rollback");
    assert.equal(onHook.inputs.create, undefined);
    assert.equal(onHook.inputs.delete, "bash -s -- rollback");
    assert.match(
      String(plain(onHook.inputs.stdin)),
      /^export PLEX_MIGRATE_PLEX_SERVICE='plexmediaserver'$/m,
    );
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

  it("stopServingAfter orders the stop-serving step after the given resources, once", async () => {
    await runWithMocks(
      () => {
        const { ArchiveSourceVm: SourceVm } = require("../../components/archive-source-vm");
        const vm = new SourceVm("vm", args());
        const release = new random.RandomPassword("stand-in", { length: 8 });
        vm.stopServingAfter([release]);
        assert.throws(() => vm.stopServingAfter([release]), /only once/);
        return {};
      },
      { outputs: { [CMD]: sourceVmCommandOutputs() } },
    ).then((result) => {
      const stopServing = byName(result.registrations, "vm-stop-serving");
      assert.ok(stopServing.dependencies.includes(byName(result.registrations, "stand-in").urn));
    });
  });

  it("refuses a VM without a pinned ed25519 or ECDSA host key, naming the fix", async () => {
    for (const hostKey of [undefined, "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7"]) {
      await assert.rejects(
        run(args({ connection: { ...args().connection, hostKey: hostKey as string } })),
        /ArchiveSourceVm vm: connection\.hostKey .*Fix: .*ssh-keyscan -t ed25519 192\.168\.13\.21/,
      );
    }
  });

  it("rejects bad arguments naming the field and the fix", async () => {
    await assert.rejects(
      run(
        args({
          archiveExcludes: ["Metadata"],
          workDir: "/var/lib/plexmediaserver/Library/Application Support/Plex Media Server/tmp",
        }),
      ),
      (error: Error) =>
        /archiveExcludes: "Metadata" may not be excluded; allowed: Cache, Logs, Crash Reports, Updates, Diagnostics/.test(
          error.message,
        ) && /workDir must not be inside plexDataDir/.test(error.message),
    );
  });
});
