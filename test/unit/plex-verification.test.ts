/**
 * PlexVerification under Pulumi mocks: the exact inputs it registers (the token secret, nothing
 * else secret-looking in plain text), that it waits for what it is given to depend on, and that
 * the report's warnings reach `pulumi up`'s output.
 */
import * as assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { PlexVerification } from "../../components/plex-verification";
import { MIGRATION_LOG_IN_POD } from "../../lib/plex/verify-report";
import {
  captureWarnings,
  isSecretInput,
  plainStrings,
  runWithMocks,
} from "../support/pulumi-mocks";

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
