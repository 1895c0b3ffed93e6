/**
 * The one message for "the machine running `pulumi up` cannot reach the database", used by the
 * dynamic providers' diff, read and create. An unreachable database is never reported as a
 * change: previews fail here, naming where the program expected the server and what to do.
 */
import { redactMessage } from "../redact";

/** The route to the server when the URL alone does not say it (e.g. the tunnel). */
function route(databaseUrl: string, reachedAt: string | undefined): string {
  if (reachedAt) return reachedAt;
  try {
    const url = new URL(databaseUrl);
    return `${url.hostname}:${url.port || "5432"}`;
  } catch {
    return "the configured address";
  }
}

/** `error` (a failed connect or query) as the error the engine shows. */
export function cannotReach(
  what: string,
  databaseUrl: string,
  reachedAt: string | undefined,
  error: unknown,
): Error {
  const reason = redactMessage((error as Error)?.message ?? String(error), [databaseUrl]);
  return new Error(
    `cannot reach ${what} at ${route(databaseUrl, reachedAt)}: ${reason}. ` +
      "Fix: make the server reachable from this machine and rerun. In-cluster, the program's " +
      "tunnel through the Kubernetes API reports its cause in the warnings above (the pod not " +
      "Ready, the API server refusing the kubeconfig's credentials). `pulumi refresh` and " +
      "`pulumi destroy` do not run the program, so there is no tunnel: add --run-program " +
      "(pulumi refresh --run-program).",
  );
}
