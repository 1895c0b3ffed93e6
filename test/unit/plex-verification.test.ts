/**
 * PlexVerification under Pulumi mocks: the exact inputs it registers (the token secret, nothing
 * else secret-looking in plain text), that it waits for what it is given to depend on, and that
 * the report's warnings reach `pulumi up`'s output.
 */
import * as assert from "assert/strict";
import * as fs from "fs";
import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { PlexVerification } from "../../components/plex-verification";
import * as YAML from "yaml";
import { parseMediaVolume } from "../../lib/plex/media-volumes";
import { chartResourceNames } from "../../lib/plex/chart";
import { MIGRATION_LOG_IN_POD } from "../../lib/plex/verify-report";
import {
  SAMPLE_MACHINE_IDENTIFIER,
  SAMPLE_PLEX_TOKEN,
  SAMPLE_PLEX_VERSION,
  sourceVmCommandOutputs,
} from "../support/fake-vm/mock-outputs";
import {
  captureWarnings,
  isSecretInput,
  plainStrings,
  rerunProgram,
  runWithMocks,
  unwrap,
} from "../support/pulumi-mocks";

const ROOT = path.resolve(__dirname, "..", "..");

const TYPE = "pulumi-nodejs:dynamic/plex-migrate:PlexVerification";
const TOKEN = "mock-plex-online-token-31337";

describe("PlexVerification component", () => {
  it("registers the exact inputs, the token secret, after the release it is given", async () => {
    const reportWarning = 'library "TV" (section 2): 3 of 5 sampled items are readable.';
    let run: Awaited<ReturnType<typeof runWithMocks>> | undefined;
    const warnings = await captureWarnings(async () => {
      run = await runWithMocks(
        () => {
          const release = new k8s.helm.v3.Release("plex-chart", {
            name: "plex",
            chart: "plex-media-server",
            namespace: "plex",
          });
          const verification = new PlexVerification(
            "plex-verification",
            {
              kubernetes: {
                context: "homelab",
                namespace: pulumi.output("plex"),
                podName: "plex-plex-media-server-0",
                container: "plex-plex-media-server-pms",
              },
              plexToken: pulumi.secret(TOKEN),
              machineIdentifier: pulumi.output("4b1c2f9e0d8a"),
              plexVersion: "1.41.3.9314-a0bfb8370",
              mediaVolumes: [
                {
                  name: "media-tv",
                  mountPath: "/srv/tv",
                  source: { kind: "nfs", server: "nas", path: "/tv" },
                  readOnly: true,
                },
              ],
              advertisedUrl: "http://192.0.2.10:32400",
              releaseRevision: 3,
            },
            { dependsOn: [release] },
          );
          return { summary: verification.summary };
        },
        {
          outputs: {
            [TYPE]: () => ({ report: { passed: true, warnings: [reportWarning] }, summary: "ok" }),
          },
        },
      );
    });
    const registration = run!.get(TYPE, "plex-verification");
    const { __provider, ...inputs } = registration.inputs;
    assert.equal(typeof __provider, "string");
    assert.deepEqual(inputs, {
      kubernetes: {
        context: "homelab",
        namespace: "plex",
        podName: "plex-plex-media-server-0",
        container: "plex-plex-media-server-pms",
      },
      plexToken: TOKEN,
      expected: { machineIdentifier: "4b1c2f9e0d8a", version: "1.41.3.9314-a0bfb8370" },
      mediaVolumes: [
        {
          name: "media-tv",
          mountPath: "/srv/tv",
          source: { kind: "nfs", server: "nas", path: "/tv" },
          readOnly: true,
        },
      ],
      advertisedUrl: "http://192.0.2.10:32400",
      samplesPerSection: 5,
      releaseRevision: 3,
      migrationLog: MIGRATION_LOG_IN_POD,
    });
    assert.ok(isSecretInput(registration, "plexToken"));
    assert.ok(!plainStrings(registration.rawInputs).some((s) => s.includes(TOKEN)));
    assert.ok(registration.additionalSecretOutputs.includes("plexToken"));
    const release = run!.get("kubernetes:helm.sh/v3:Release", "plex-chart");
    assert.ok(registration.dependencies.includes(release.urn));
    assert.deepEqual(warnings, [reportWarning]);
  });
});

/** Values of Pulumi.<stack>.yaml without the project prefix. */
function stackFile(stack: string): Record<string, unknown> {
  const file = YAML.parse(fs.readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), "utf8"));
  return Object.fromEntries(
    Object.entries(file.config as Record<string, unknown>).map(([k, v]) => [
      k.replace(/^plex-migrate:/, ""),
      v,
    ]),
  );
}

describe("the program wires PlexVerification", function () {
  this.timeout(120_000);

  it("after the Plex release is ready, through the Plex pod, with the VM's identity and token", async () => {
    const run = await runWithMocks(() => rerunProgram("index.ts"), {
      stack: "dev",
      config: {
        ...stackFile("dev"),
        sshPrivateKey:
          "-----BEGIN OPENSSH PRIVATE KEY-----\nTEST\n-----END OPENSSH PRIVATE KEY-----",
        postgresAdminPassword: "TEST-PG-ADMIN-PASSWORD",
      },
      secretKeys: ["sshPrivateKey", "postgresAdminPassword"],
      outputs: {
        "command:remote:Command": sourceVmCommandOutputs(),
        [TYPE]: () => ({ report: { passed: true, warnings: [] }, summary: "PASSED" }),
        "pulumi-nodejs:dynamic/plex-migrate:SchemaMigrations": () => ({ schemaVersion: "x" }),
        "pulumi-nodejs:dynamic/plex-migrate:SqliteImport": () => ({ summary: "ok", report: {} }),
      },
    });
    const verification = run.get(TYPE, "plex-verification");
    const release = run.get("kubernetes:helm.sh/v3:Release", "plex-chart");
    const names = chartResourceNames("plex");
    const dev = stackFile("dev");
    assert.deepEqual(verification.inputs.kubernetes, {
      ...(dev.kubeContext ? { context: dev.kubeContext } : {}),
      namespace: dev.namespace,
      podName: names.pod,
      container: names.pmsContainer,
    });
    assert.deepEqual(verification.inputs.expected, {
      machineIdentifier: SAMPLE_MACHINE_IDENTIFIER,
      version: SAMPLE_PLEX_VERSION,
    });
    assert.equal(verification.inputs.plexToken, SAMPLE_PLEX_TOKEN);
    assert.ok(isSecretInput(verification, "plexToken"));
    assert.ok(!plainStrings(verification.rawInputs).some((s) => s.includes(SAMPLE_PLEX_TOKEN)));
    // The dev stack's loadBalancer address, as Plex advertises it.
    assert.equal(verification.inputs.advertisedUrl, "http://192.0.2.40:32400");
    assert.deepEqual(verification.inputs.mediaVolumes, [
      parseMediaVolume("/mnt/media=nfs://nas.example.internal/export/media"),
    ]);
    assert.equal(verification.inputs.releaseRevision, 1);
    // Waits for the release (Ready pod), and is not part of what the release needs.
    assert.ok(verification.dependencies.includes(release.urn));
    assert.ok(!release.dependencies.includes(verification.urn));
    assert.deepEqual(await unwrap(run.exports.plexVerification as pulumi.Output<unknown>), {
      value: { passed: true, warnings: [] },
      secret: false,
    });
  });
});
