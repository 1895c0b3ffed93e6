/** Small networking helpers shared by the local runs (tests, benchmarks, the rehearsal). */
import * as net from "net";

/** A TCP port free on 127.0.0.1 right now (the OS picks it; the caller binds it soon after). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** "10.42.0.0/16", "fd00:42::/56": an IPv4 or IPv6 address with a prefix length that fits it. */
export function isCidr(value: string): boolean {
  const match = /^(.+)\/(\d{1,3})$/.exec(value);
  if (!match) return false;
  const version = net.isIP(match[1]);
  const bits = Number(match[2]);
  return (version === 4 && bits <= 32) || (version === 6 && bits <= 128);
}

/** An IPv4 or IPv6 address (no brackets, no prefix). */
export function isIpAddress(value: string): boolean {
  return net.isIP(value) !== 0;
}
