/**
 * Where the Plex pod runs and what of the node it uses: node selection, the GPU for hardware
 * transcoding, and the Pod Security level its namespace needs. Each is off unless the stack asks,
 * since each ties the pod to a node or opens it to the host.
 */

/**
 * Hardware transcoding: "none"; "intel" asks Intel's GPU device plugin for one GPU
 * (`gpu.intel.com/i915`), the device plugin mounting /dev/dri; "dev-dri" mounts the node's
 * /dev/dri directly, which only a privileged container may open (the runtime's device cgroup
 * denies device nodes it did not grant). In both cases the image adds plex to the groups of the
 * device nodes it finds (pms-docker root/etc/cont-init.d/45-plex-hw-transcode-and-connected-tuner).
 */
export const GPU_MODES = ["none", "intel", "dev-dri"] as const;
export type GpuMode = (typeof GPU_MODES)[number];

/** The resource Intel's GPU device plugin (intel/intel-device-plugins-for-kubernetes) offers. */
export const INTEL_GPU_RESOURCE = "gpu.intel.com/i915";
export const DEV_DRI = "/dev/dri";
export const DEV_DRI_VOLUME = "dev-dri";

/** Pod Security Standards levels (pod-security.kubernetes.io/enforce). */
export const POD_SECURITY_LEVELS = ["privileged", "baseline", "restricted"] as const;
export type PodSecurityLevel = (typeof POD_SECURITY_LEVELS)[number];
/** "" = no labels; "auto" = the least level the Plex pod needs; or a level. */
export type PodSecuritySetting = "" | "auto" | PodSecurityLevel;

/** "kubernetes.io/hostname=node-1" -> ["kubernetes.io/hostname", "node-1"], or an error text. */
export function parseNodeSelectorEntry(entry: string): [string, string] | string {
  const eq = entry.indexOf("=");
  const key = eq < 0 ? "" : entry.slice(0, eq);
  const value = eq < 0 ? "" : entry.slice(eq + 1);
  const name =
    /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
  const labelValue = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
  if (!name.test(key) || !labelValue.test(value)) {
    return `"${entry}" is not a node label such as kubernetes.io/hostname=node-1`;
  }
  return [key, value];
}

/** What of the host the pod uses, for its Pod Security level. */
export interface HostUse {
  hostNetwork: boolean;
  hostPathVolumes: boolean;
  privileged: boolean;
}

/**
 * The least Pod Security level the Plex pod passes: the image starts as root (fails
 * "restricted"); host network, hostPath volumes and a privileged container fail "baseline"
 * (https://kubernetes.io/docs/concepts/security/pod-security-standards/).
 */
export function requiredPodSecurityLevel(use: HostUse): PodSecurityLevel {
  return use.hostNetwork || use.hostPathVolumes || use.privileged ? "privileged" : "baseline";
}

/** The namespace labels for a setting, or {} for none. */
export function podSecurityLabels(
  setting: PodSecuritySetting,
  use: HostUse,
): Record<string, string> {
  if (setting === "") return {};
  const level = setting === "auto" ? requiredPodSecurityLevel(use) : setting;
  return {
    "pod-security.kubernetes.io/enforce": level,
    "pod-security.kubernetes.io/enforce-version": "latest",
  };
}

/** Problems with a stated level the pod cannot pass, one line (empty = fine). */
export function podSecurityProblem(setting: PodSecuritySetting, use: HostUse): string | undefined {
  if (setting === "" || setting === "auto") return undefined;
  const needed = requiredPodSecurityLevel(use);
  const order = POD_SECURITY_LEVELS.indexOf(setting);
  if (order > POD_SECURITY_LEVELS.indexOf(needed)) {
    return (
      `Pod Security level "${setting}" would refuse the Plex pod, which needs "${needed}"` +
      (needed === "privileged"
        ? " (host network, hostPath media or /dev/dri)"
        : " (the pms-docker image starts as root)")
    );
  }
  return undefined;
}
