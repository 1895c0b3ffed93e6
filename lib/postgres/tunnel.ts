/**
 * How `pulumi up` reaches the in-cluster PostgreSQL server: a tunnel through the Kubernetes API to
 * the server's Ready pod (lib/kube/tunnel.ts), opened by the program for the whole of `up` and
 * `preview`. The postgresql provider, the schema migrations and the import all connect to its
 * local end, 127.0.0.1:<port>.
 *
 * The local port is part of those resources' inputs (the provider's `port`, the database URL), so
 * it must be the same on every run: it is fixed per stack (postgresTunnelPort, or derived from the
 * project and stack name by {@link tunnelPortFor}), never chosen by the system.
 */
import * as crypto from "crypto";
import { PodTunnel, programTunnels } from "../kube/tunnel";
import { POSTGRES_PORT, postgresSelector } from "./instance-spec";

/** The derived ports lie below Linux's ephemeral range (32768-60999), so no outgoing connection holds one. */
export const DERIVED_PORT_BASE = 20000;
export const DERIVED_PORT_SPAN = 10000;

/** The tunnel's local port for a stack: stable across runs, different for most stacks. */
export function tunnelPortFor(project: string, stack: string): number {
  const digest = crypto.createHash("sha256").update(`${project}/${stack}`).digest();
  return DERIVED_PORT_BASE + (digest.readUInt32BE(0) % DERIVED_PORT_SPAN);
}

export interface ServerTunnelOptions {
  /** PostgresInstance's name: selects its pod. */
  name: string;
  namespace: string;
  /** kubeconfig context (the stack's kubeContext). @default the current context */
  context?: string;
  localPort: number;
  log?: (line: string, level: "info" | "error") => void;
}

/** Opens (once per process) the program's tunnel to the server's pod. */
export function openServerTunnel(options: ServerTunnelOptions): Promise<PodTunnel> {
  return programTunnels.open({
    context: options.context,
    namespace: options.namespace,
    target: { selector: postgresSelector(options.name) },
    remotePort: POSTGRES_PORT,
    localPort: options.localPort,
    log: options.log,
  });
}

/** Where the tunnel leads, for messages: "the tunnel 127.0.0.1:20417 → pod app...=postgres in plex". */
export function describeTunnel(options: ServerTunnelOptions): string {
  const selector = Object.entries(postgresSelector(options.name))
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return `127.0.0.1:${options.localPort} (the program's tunnel through the Kubernetes API to the Ready pod ${selector} in namespace ${options.namespace}, port ${POSTGRES_PORT})`;
}
