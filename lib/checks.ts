/**
 * The syntax rules a setting must follow, each once: the predicates are used by lib/config.ts
 * and by the components alike. The `Check`s are the predicates with the complaint config prints
 * (config prefixes the key); a component names its own field around the same predicate.
 */

/** What is wrong with a value, or undefined when it is fine. */
export type Check = (value: string) => string | undefined;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const HOSTNAME =
  /^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const QUANTITY = /^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$/;
const UNIX_USER = /^[a-z_][a-z0-9_-]{0,31}\$?$/;
// The VM script checks the same pattern before it runs systemctl (scripts/plex-migrate-source.sh).
const SYSTEMD_UNIT = /^[A-Za-z0-9:_.@-]+$/;
const IMAGE_TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const IMAGE_REF =
  /^[a-z0-9]+([._/:-][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$/;
const EXACT_VERSION = /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/;
const CHART_REPO = /^(https|oci):\/\/\S+$/;
const PG_IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** A Kubernetes DNS label (namespace, port name), at most `max` characters. */
export function isDnsLabel(value: string, max = 63): boolean {
  return DNS_LABEL.test(value) && value.length <= max;
}

/** A Kubernetes object name (Secret, StorageClass, claim) or a DNS host name in lower case. */
export function isDnsSubdomain(value: string): boolean {
  return DNS_SUBDOMAIN.test(value);
}

/** A host name, an IPv4 address or an IPv6 address (brackets allowed). */
export function isHost(value: string): boolean {
  return IPV4.test(value) || HOSTNAME.test(value) || /^\[?[0-9a-fA-F:]+\]?$/.test(value);
}

/** An absolute path with no ".." segment and no NUL or line break. */
export function isSafeAbsolutePath(value: string): boolean {
  return (
    value.startsWith("/") &&
    !/[\0\n\r]/.test(value) &&
    !value.split("/").some((segment) => segment === "..")
  );
}

/** `path` is `dir` or lies below it ("/a/b" is under "/a", "/ab" is not). */
export function isAtOrUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

/** A Unix account name (useradd's rule: lower case, digits, "_", "-", at most 32). */
export function isUnixUser(value: string): boolean {
  return UNIX_USER.test(value);
}

export function isSystemdUnit(value: string): boolean {
  return SYSTEMD_UNIT.test(value);
}

export function isImageTag(value: string): boolean {
  return IMAGE_TAG.test(value);
}

/** An exact (semver) version such as a pinned chart's. */
export function isExactVersion(value: string): boolean {
  return EXACT_VERSION.test(value);
}

/** A Helm repository URL (https://) or an OCI registry path (oci://). */
export function isChartRepo(value: string): boolean {
  return CHART_REPO.test(value);
}

/** A PostgreSQL name that needs no quoting: lower-case letters, digits and "_", at most 63. */
export function isPgIdentifier(value: string): boolean {
  return PG_IDENTIFIER.test(value);
}

export const dnsLabel: Check = (v) =>
  isDnsLabel(v)
    ? undefined
    : `expected a DNS label (lower-case letters, digits, "-", at most 63), got "${v}"`;

export const helmReleaseName: Check = (v) =>
  isDnsLabel(v, 53)
    ? undefined
    : `expected a Helm release name (DNS label, at most 53 characters), got "${v}"`;

/** A Kubernetes object name; `what` names the kind in the complaint. */
export const objectName =
  (what: string): Check =>
  (v) =>
    isDnsSubdomain(v) ? undefined : `expected a ${what} name, got "${v}"`;

export const hostName: Check = (v) =>
  isDnsSubdomain(v) ? undefined : `expected a host name such as plex.example.com, got "${v}"`;

export const host: Check = (v) =>
  isHost(v) ? undefined : `expected a host name or IP address, got "${v}"`;

export const absolutePath: Check = (v) =>
  isSafeAbsolutePath(v) ? undefined : `expected an absolute path, got "${v}"`;

export const quantity: Check = (v) =>
  QUANTITY.test(v) ? undefined : `expected a Kubernetes quantity such as "10Gi", got "${v}"`;

export const unixUser: Check = (v) =>
  isUnixUser(v) ? undefined : `expected a Unix user name, got "${v}"`;

export const systemdUnit: Check = (v) =>
  isSystemdUnit(v) ? undefined : `expected a systemd unit name, got "${v}"`;

export const imageTag: Check = (v) =>
  isImageTag(v) ? undefined : `expected an image tag such as "1.41.3.9314-a0bfb8370", got "${v}"`;

export const imageRef: Check = (v) =>
  IMAGE_REF.test(v)
    ? undefined
    : `expected an image reference such as "instrumentisto/rsync-ssh:alpine3.23-r3", got "${v}"`;

export const exactVersion: Check = (v) =>
  isExactVersion(v) ? undefined : `expected an exact chart version such as "1.5.0", got "${v}"`;

export const chartRepo: Check = (v) =>
  isChartRepo(v) ? undefined : `expected an https:// or oci:// URL, got "${v}"`;

export const pgIdentifier: Check = (v) =>
  isPgIdentifier(v)
    ? undefined
    : `expected a lower-case PostgreSQL identifier (letters, digits, "_"), got "${v}"`;

export const pgRoleName: Check = (v) =>
  isPgIdentifier(v) ? undefined : `expected a lower-case PostgreSQL role name, got "${v}"`;

/** The VM work dir may never be the Plex data dir or lie inside it: the source is only read. */
export function workDirInPlexData(workDir: string, plexDataDir: string): boolean {
  return isAtOrUnder(workDir, plexDataDir.replace(/\/+$/, ""));
}
