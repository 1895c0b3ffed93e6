/**
 * How clients reach Plex in the cluster, and what Plex tells plex.tv about it.
 *
 * On the VM, Plex listened on the LAN address the router forwards to and saw every client's real
 * address. In a pod it sees neither unless the stack says how it is reached: the mode decides the
 * pod's network, the Service, the Ingress and the URL Plex advertises (`ADVERTISE_IP`, which the
 * pms-docker image writes into Preferences.xml as `customConnections` on every container start:
 * pms-docker root/etc/cont-init.d/40-plex-first-run, `setPref "customConnections"`).
 */
import { PMS_PORT } from "./chart";

export const NETWORKING_MODES = ["host", "loadBalancer", "ingress", "internal"] as const;
export type NetworkingMode = (typeof NETWORKING_MODES)[number];

/** The way Plex is reached; each mode carries exactly the fields it needs. */
export type PlexNetworking =
  /**
   * The pod uses its node's network, as Plex used the VM's: LAN discovery (GDM), DLNA and the
   * real client addresses work as before. `address` is the node's LAN address clients and the
   * router's port-forward use (pin the pod to that node with a node selector).
   */
  | { mode: "host"; address: string }
  /** A LoadBalancer Service on a fixed address, keeping client addresses (traffic policy Local). */
  | { mode: "loadBalancer"; address: string }
  /**
   * An Ingress on `host`, through the cluster's default IngressClass unless `className` is set.
   * Plex advertises https://host:443 only with a TLS Secret; without one, http://host:80.
   */
  | { mode: "ingress"; host: string; className?: string; tlsSecret?: string }
  /** Only the in-cluster Service: no direct path for clients (preview warns). */
  | { mode: "internal" };

/** "192.168.1.20" -> "192.168.1.20", "fd00::20" -> "[fd00::20]" (the host part of a URL). */
function urlHost(address: string): string {
  return address.includes(":") && !address.startsWith("[") ? `[${address}]` : address;
}

/** The URL this mode gives clients directly, or undefined when it gives none. */
export function modeUrl(networking: PlexNetworking): string | undefined {
  switch (networking.mode) {
    case "host":
    case "loadBalancer":
      return `http://${urlHost(networking.address)}:${PMS_PORT}`;
    case "ingress":
      return networking.tlsSecret
        ? `https://${networking.host}:443`
        : `http://${networking.host}:80`;
    case "internal":
      return undefined;
  }
}

/**
 * The URLs Plex advertises to plex.tv, in order: the mode's own URL, then the configured extras
 * (say, a public name the router forwards). Empty means Plex keeps what the VM's Preferences.xml
 * says, which points at the VM.
 */
export function advertisedUrls(networking: PlexNetworking, extraUrls: string[]): string[] {
  const own = modeUrl(networking);
  return [...new Set([...(own ? [own] : []), ...extraUrls])];
}

/** Problems with an extra advertised URL (empty = fine): Plex wants scheme://host:port. */
export function advertiseUrlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `"${url}" is not a URL such as http://plex.example.net:32400`;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    return `"${url}" must start with http:// or https://`;
  }
  if (parsed.username || parsed.password) return `"${url}" must not hold credentials`;
  // Checked on the text: URL drops a scheme's default port (https://h:443 has host "h").
  if (!/^https?:\/\/[^/?#\s]+:\d{1,5}\/?$/.test(url)) {
    return `"${url}" must be scheme://host:port with the port spelled out and no path, such as http://plex.example.net:32400`;
  }
  return undefined;
}

/** The chart values (top level) that one mode sets: pod network, Service and Ingress. */
export function networkingChartValues(networking: PlexNetworking): Record<string, unknown> {
  // The chart's Ingress defaults to class "ingress-nginx", which matches neither ingress-nginx's
  // usual "nginx" nor k3s' traefik: an empty class omits ingressClassName, so the cluster's
  // default IngressClass serves it (templates/ingress.yaml: `if .Values.ingress.ingressClassName`).
  const noIngress = { enabled: false, ingressClassName: "" };
  switch (networking.mode) {
    case "host":
      // With the node's network the pod must still resolve cluster names (the chart's own hint).
      return {
        hostNetwork: true,
        dnsPolicy: "ClusterFirstWithHostNet",
        service: { type: "ClusterIP" },
        ingress: noIngress,
      };
    case "loadBalancer":
      // The chart renders spec.loadBalancerIP and spec.externalTrafficPolicy from these keys
      // (templates/service.yaml; values.yaml documents them only in comments).
      return {
        service: {
          type: "LoadBalancer",
          loadBalancerIP: networking.address,
          externalTrafficPolicy: "Local",
        },
        ingress: noIngress,
      };
    case "ingress":
      return {
        service: { type: "ClusterIP" },
        ingress: {
          enabled: true,
          // The chart takes the rule's host from this URL (trimPrefix "https://"); the URL Plex
          // advertises is set explicitly in ADVERTISE_IP, which the chart prefers.
          url: `https://${networking.host}`,
          ingressClassName: networking.className ?? "",
          tls: networking.tlsSecret
            ? [{ hosts: [networking.host], secretName: networking.tlsSecret }]
            : [],
        },
      };
    case "internal":
      return { service: { type: "ClusterIP" }, ingress: noIngress };
  }
}

/**
 * What preview says about a configuration that gives clients no direct path, or undefined when
 * there is one. Without it, plex.tv hands clients the pod address and playback falls back to
 * Plex's bandwidth-limited relay.
 */
export function noDirectPathWarning(
  networking: PlexNetworking,
  extraUrls: string[],
): string | undefined {
  if (advertisedUrls(networking, extraUrls).length > 0) return undefined;
  return (
    `plexNetworking is "internal": Plex is reachable only inside the cluster, so clients outside ` +
    `it fall back to Plex's bandwidth-limited relay. ` +
    `Fix: pulumi config set plexNetworking host (or loadBalancer, or ingress) with plexAddress ` +
    `(or plexIngressHost), or list the URLs clients use in plexAdvertiseUrls.`
  );
}

/**
 * With nothing advertised, Plex keeps the VM's `customConnections` (they move in
 * Preferences.xml), which point at the stopped VM: what to tell the user, or undefined.
 */
export function staleAddressWarning(
  networking: PlexNetworking,
  extraUrls: string[],
  vmCustomConnections: string,
): string | undefined {
  if (!vmCustomConnections || advertisedUrls(networking, extraUrls).length > 0) return undefined;
  return (
    `Plex keeps advertising what the VM's Preferences.xml says (${vmCustomConnections}), which ` +
    `no longer answers after the move. Fix: set plexNetworking (or plexAdvertiseUrls) so Plex ` +
    `advertises where it runs now.`
  );
}

/**
 * Preferences.xml's LanNetworksBandwidth for the pod: the VM's LAN networks plus the cluster's
 * pod and node ranges, so clients reaching Plex from cluster addresses (through an Ingress, or
 * SNAT by kube-proxy) count as local as they did on the VM's LAN. Undefined when no cluster range
 * is configured: Preferences.xml then keeps the VM's value. allowedNetworks (access without
 * sign-in) is never widened: it moves unchanged with Preferences.xml.
 */
export function podLanNetworks(
  vmLanNetworks: string,
  clusterNetworks: string[],
): string | undefined {
  if (clusterNetworks.length === 0) return undefined;
  const vm = vmLanNetworks
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  return [...new Set([...vm, ...clusterNetworks])].join(",");
}
