/**
 * lib/kube/pod-exec.ts against test/support/fake-kube-api.ts, whose pods/exec runs the command on
 * this machine and answers with the kubelet's channels and Status (real bash here).
 */
import * as assert from "assert/strict";
import type * as K8s from "@kubernetes/client-node" with { "resolution-mode": "import" };
import { execInPod } from "../../lib/kube/pod-exec";
import { FakeKubeApi, startFakeKubeApi } from "../support/fake-kube-api";

const k8s = require("@kubernetes/client-node") as typeof K8s;

describe("execInPod through the Kubernetes API's pods/exec", function () {
  let api: FakeKubeApi;
  let kubeConfig: K8s.KubeConfig;

  before(async () => {
    api = await startFakeKubeApi("plex");
    api.addPod({ name: "plex-0", labels: {}, phase: "Running", ready: true });
    kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromString(api.kubeconfig());
  });
  after(async () => api?.close());

  const run = (command: string[], podName = "plex-0") =>
    execInPod({ kubeConfig, namespace: "plex", podName, container: "pms", command });

  it("returns stdout, stderr and exit code 0", async () => {
    assert.deepEqual(
      await run(["bash", "-c", 'printf "%s" "$1"; printf warn >&2', "bash", "a b"]),
      {
        exitCode: 0,
        stdout: "a b",
        stderr: "warn",
      },
    );
    assert.deepEqual(api.execs.at(-1), {
      pod: "plex-0",
      container: "pms",
      command: ["bash", "-c", 'printf "%s" "$1"; printf warn >&2', "bash", "a b"],
    });
  });

  it("returns a non-zero exit code from the Status's ExitCode cause", async () => {
    const result = await run(["bash", "-c", "echo no route >&2; exit 7"]);
    assert.deepEqual(result, { exitCode: 7, stdout: "", stderr: "no route\n" });
  });

  it("fails when the command cannot start in the container", async () => {
    await assert.rejects(
      run(["no-such-tool-in-this-image"]),
      /exec in plex\/plex-0 \(container pms\): the command could not run: OCI runtime exec failed/,
    );
  });

  it("fails naming the pod when the API server refuses", async () => {
    await assert.rejects(
      run(["true"], "missing-0"),
      /cannot exec in plex\/missing-0 \(container pms\): the Kubernetes API server answered 404/,
    );
  });
});
