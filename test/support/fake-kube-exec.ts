/**
 * The pods/exec subresource for test/support/fake-kube-api.ts: the command runs as a process on
 * this machine (standing in for the container), its stdout and stderr stream back on channels 1
 * and 2, and its end is a Status on channel 3, exactly as the kubelet's remotecommand WebSocket
 * server writes them (kubernetes/kubernetes staging/src/k8s.io/kubelet/pkg/cri/streaming/
 * remotecommand/websocket.go: subprotocols v5/v4.channel.k8s.io, channels 0 stdin, 1 stdout,
 * 2 stderr, 3 error; httpstream.go writeStatus: "Success", or "Failure" with reason
 * NonZeroExitCode and the cause { reason: "ExitCode", message: "<code>" }; a command that cannot
 * start is a Failure with reason InternalError).
 */
import { spawn } from "child_process";
import type * as http from "http";
import type { Duplex } from "stream";
import { WebSocketServer, type WebSocket } from "ws";

export const EXEC_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

export interface ExecRecord {
  pod: string;
  container: string;
  command: string[];
}

function send(ws: WebSocket, channel: number, data: Buffer | string): void {
  const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
  ws.send(Buffer.concat([Buffer.from([channel]), bytes]));
}

function statusFor(code: number | null, signal: string | null, command: string[]) {
  if (code === 0) return { metadata: {}, status: "Success" };
  const exit = code ?? 137;
  return {
    metadata: {},
    status: "Failure",
    message: `command terminated with non-zero exit code: error executing command [${command.join(" ")}], exit code ${exit}${signal ? ` (${signal})` : ""}`,
    reason: "NonZeroExitCode",
    details: { causes: [{ reason: "ExitCode", message: String(exit) }] },
  };
}

/** A WebSocket server for exec upgrades: runs the command, streams it, reports its status. */
export function execServer(records: ExecRecord[], env: NodeJS.ProcessEnv = process.env) {
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) => {
      for (const protocol of protocols) if (EXEC_PROTOCOLS.includes(protocol)) return protocol;
      return false;
    },
  });
  return {
    wss,
    upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer, pod: string, url: URL) {
      const command = url.searchParams.getAll("command");
      const container = url.searchParams.get("container") ?? "";
      wss.handleUpgrade(req, socket, head, (ws) => {
        records.push({ pod, container, command });
        let ended = false;
        const end = (status: object) => {
          if (ended) return;
          ended = true;
          send(ws, 3, JSON.stringify(status));
          ws.close();
        };
        const child = spawn(command[0], command.slice(1), {
          env,
          stdio: ["ignore", "pipe", "pipe"],
        });
        child.stdout.on("data", (chunk: Buffer) => send(ws, 1, chunk));
        child.stderr.on("data", (chunk: Buffer) => send(ws, 2, chunk));
        child.on("error", (error) =>
          end({
            metadata: {},
            status: "Failure",
            message: `OCI runtime exec failed: exec failed: unable to start container process: exec: "${command[0]}": ${error.message}: unknown`,
            reason: "InternalError",
            details: { causes: [{ message: error.message }] },
            code: 500,
          }),
        );
        child.on("close", (code, signal) => end(statusFor(code, signal, command)));
        ws.on("close", () => child.kill());
      });
    },
  };
}
