/**
 * Runs a command in a container of a pod through the Kubernetes API server's pods/exec
 * subresource (what `kubectl exec` does), with the official client's Exec
 * (`@kubernetes/client-node` 1.4.0), and collects stdout, stderr and the exit code.
 *
 * The exit code comes from the status channel (3): a `Status` object, "Success", or "Failure" with
 * reason "NonZeroExitCode" and a cause { reason: "ExitCode", message: "<code>" }
 * (kubernetes/kubernetes staging/src/k8s.io/kubelet/pkg/cri/streaming/remotecommand/websocket.go
 * and httpstream.go writeStatus; kubernetes-client/javascript src/exec.ts hands it to the
 * status callback). No stdin is sent: with the v4 subprotocol the client closes the whole
 * connection when its input ends (src/web-socket-handler.ts handleStandardInput), which would end
 * the command, so data goes in as arguments.
 */
import { Writable } from "stream";
import type * as K8s from "@kubernetes/client-node" with { "resolution-mode": "import" };
import { loadKubeConfig } from "./tunnel";

const k8s = require("@kubernetes/client-node") as typeof K8s;

export interface PodExecOptions {
  /** A loaded kubeconfig, or undefined for the default (KUBECONFIG or ~/.kube/config). */
  kubeConfig?: K8s.KubeConfig;
  /** kubeconfig context. @default the kubeconfig's current context */
  context?: string;
  namespace: string;
  podName: string;
  container: string;
  /** The command and its arguments (no stdin is attached: v4 servers cannot half-close it). */
  command: string[];
  /** The command is stopped (the stream closed) after this long. @default 60000 */
  timeoutMs?: number;
}

export interface PodExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

function collector(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString("utf8") };
}

/** The exit code a Status from the status channel reports. */
export function exitCodeOf(status: K8s.V1Status): number {
  if (status.status === "Success") return 0;
  const cause = status.details?.causes?.find((c) => c.reason === "ExitCode");
  const code = Number(cause?.message);
  if (Number.isInteger(code)) return code;
  throw new Error(
    `the command could not run: ${status.message ?? status.reason ?? "unknown failure"}`,
  );
}

export async function execInPod(options: PodExecOptions): Promise<PodExecResult> {
  const kc = loadKubeConfig(options);
  const exec = new k8s.Exec(kc);
  const stdout = collector();
  const stderr = collector();
  const where = `${options.namespace}/${options.podName} (container ${options.container})`;
  return new Promise<PodExecResult>((resolve, reject) => {
    let settled = false;
    const settle = (work: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      work();
    };
    const timer = setTimeout(
      () =>
        settle(() =>
          reject(
            new Error(
              `exec in ${where} gave no result within ${(options.timeoutMs ?? 60_000) / 1000} s`,
            ),
          ),
        ),
      options.timeoutMs ?? 60_000,
    );
    timer.unref();
    exec
      .exec(
        options.namespace,
        options.podName,
        options.container,
        options.command,
        stdout.stream,
        stderr.stream,
        null,
        false,
        (status) =>
          settle(() => {
            try {
              resolve({
                exitCode: exitCodeOf(status),
                stdout: stdout.text(),
                stderr: stderr.text(),
              });
            } catch (error) {
              reject(new Error(`exec in ${where}: ${(error as Error).message}`));
            }
          }),
      )
      .then((ws) => {
        ws.on("close", () =>
          settle(() => reject(new Error(`exec in ${where} ended without an exit status`))),
        );
      })
      .catch((error: Error) => {
        const status = /Unexpected server response: (\d{3})/.exec(error.message ?? "")?.[1];
        settle(() =>
          reject(
            new Error(
              status === "403"
                ? `the Kubernetes API server forbids exec in ${where} (403): the user needs create on pods/exec in the namespace`
                : `cannot exec in ${where}: ${status ? `the Kubernetes API server answered ${status}` : error.message}`,
            ),
          ),
        );
      });
  });
}
