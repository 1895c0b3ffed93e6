/** Resource options the components share. */
import * as pulumi from "@pulumi/pulumi";

/**
 * `extra` added to the caller's `dependsOn` (which may be one resource, a list or an Output), so
 * a child that needs its own dependencies still waits for what the caller asked for.
 */
export function withDependencies(
  callerDependsOn: pulumi.ResourceOptions["dependsOn"],
  extra: pulumi.Resource[],
): pulumi.Input<pulumi.Input<pulumi.Resource>[]> {
  if (!callerDependsOn) return extra;
  return pulumi
    .output(callerDependsOn as pulumi.Input<pulumi.Resource | pulumi.Resource[]>)
    .apply((deps) => [...(Array.isArray(deps) ? deps : [deps]), ...extra]);
}
