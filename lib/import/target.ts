/**
 * Which database an import wrote: the server's `system_identifier` (pg_control_system(), unique
 * per initdb, the same by whichever host and port it is reached) and the database name. Moving
 * the route (a NodePort, a port-forward, the program's tunnel) keeps the identity; another
 * server or database changes it.
 */
import type { ClientBase } from "pg";
import { withClient } from "../postgres/client-config";
import { cannotReach } from "../postgres/reach";
import { latestStamp } from "./stamp";

export interface TargetProbe {
  /** "<system_identifier>/<database>", or "unknown-server/<database>" where the function is not granted. */
  identity: string;
  /** Fingerprint of the last import committed into this database, if any. */
  lastImported?: string;
}

async function systemIdentifier(client: ClientBase): Promise<string | undefined> {
  try {
    const { rows } = await client.query<{ id: string }>(
      "SELECT system_identifier::text AS id FROM pg_control_system()",
    );
    return rows[0]?.id;
  } catch {
    // A managed server may revoke EXECUTE from PUBLIC: the name alone then identifies it.
    return undefined;
  }
}

export async function targetIdentity(client: ClientBase): Promise<string> {
  const { rows } = await client.query<{ name: string }>("SELECT current_database() AS name");
  return `${(await systemIdentifier(client)) ?? "unknown-server"}/${rows[0].name}`;
}

/** The target's identity and last import; an unreachable database fails naming the route. */
export async function probeTarget(
  databaseUrl: string,
  reachedAt: string | undefined,
): Promise<TargetProbe> {
  try {
    return await withClient(databaseUrl, async (client) => ({
      identity: await targetIdentity(client),
      lastImported: (await latestStamp(client))?.fingerprint,
    }));
  } catch (error) {
    throw cannotReach("the Tautulli database", databaseUrl, reachedAt, error);
  }
}
