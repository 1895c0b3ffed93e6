/**
 * The one rule for the VM's pinned SSH host key (config key vmHostKey, SourceVm's
 * connection.hostKey, the known_hosts line the cluster's sync pod trusts).
 *
 * pulumi-command v1.2.1 (provider/pkg/provider/remote/connection.go, SSHConfig) parses the pinned
 * key with ssh.ParseAuthorizedKey and offers exactly `HostKeyAlgorithms: []string{publicKey.Type()}`.
 * For an RSA key that type is "ssh-rsa", the SHA-1 signature OpenSSH 8.8+ refuses by default, so an
 * RSA pin makes every step fail to connect. Without a pin it uses ssh.InsecureIgnoreHostKey: any
 * machine answering at vmHost would get the session, the Plex library and its token. So a key is
 * required, and only ed25519 and ECDSA keys are accepted.
 */

export const HOST_KEY_TYPES = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
] as const;

/** The command that prints the line to pin, for `host`. */
export function hostKeyScanCommand(host: string): string {
  return `ssh-keyscan -t ed25519 ${host} 2>/dev/null | cut -d' ' -f2-`;
}

function pinHelp(host: string): string {
  return (
    `pulumi config set vmHostKey "$(${hostKeyScanCommand(host)})", then compare ` +
    '`ssh-keygen -lf <(echo "$(pulumi config get vmHostKey)")` with ' +
    "`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on the VM's console"
  );
}

/**
 * Why `value` cannot be the pinned host key of `host`, with the fix; undefined when it can.
 * Accepts "<type> <base64>" with an optional comment, as ssh-keyscan (minus the host) prints it.
 */
export function hostKeyProblem(value: string | undefined, host: string): string | undefined {
  const line = (value ?? "").trim();
  if (!line) {
    return `is not set: without a pinned host key any machine answering at ${host} would be trusted. Fix: ${pinHelp(host)}`;
  }
  const [type, data] = line.split(/\s+/);
  if (type === "ssh-rsa" || type?.startsWith("rsa-sha2")) {
    return (
      "is an RSA host key: pulumi-command verifies it only with the SHA-1 ssh-rsa algorithm, which " +
      `OpenSSH 8.8 and newer refuse. Fix: pin the VM's ed25519 key instead: ${pinHelp(host)}`
    );
  }
  if (!(HOST_KEY_TYPES as readonly string[]).includes(type)) {
    return `is "${type}", not an ed25519 or ECDSA host key ("ssh-ed25519 AAAA..."). Fix: ${pinHelp(host)}`;
  }
  if (!data || !/^[A-Za-z0-9+/]+={0,2}$/.test(data) || embeddedKeyType(data) !== type) {
    return `is not a complete ${type} key (its base64 part does not decode to a ${type} key). Fix: ${pinHelp(host)}`;
  }
  return undefined;
}

/** "<type> <base64>" without a comment: the form known_hosts and pulumi-command are given. */
export function normalizeHostKey(value: string): string {
  const [type, data] = value.trim().split(/\s+/);
  return `${type} ${data}`;
}

/** The algorithm name an SSH wire-format key starts with (uint32 length, then the name). */
function embeddedKeyType(base64: string): string | undefined {
  const blob = Buffer.from(base64, "base64");
  if (blob.length < 4) return undefined;
  const length = blob.readUInt32BE(0);
  if (length > 64 || blob.length < 4 + length) return undefined;
  return blob.subarray(4, 4 + length).toString("latin1");
}
