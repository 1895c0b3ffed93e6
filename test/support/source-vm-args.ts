/** SourceVm's arguments for tests: a VM at 192.168.13.21 as root, every setting at its default. */
import * as pulumi from "@pulumi/pulumi";
import type { SourceVmArgs } from "../../components/source-vm";

export const TEST_SSH_KEY =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-key-material\n-----END OPENSSH PRIVATE KEY-----\n";
export const TEST_HOST_KEY =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINowGtU5gs5dXOUaV5MhEbh36qBgAPyObabBh9Of0q+R";

export function sourceVmArgs(overrides: Partial<SourceVmArgs> = {}): SourceVmArgs {
  return {
    connection: {
      host: "192.168.13.21",
      port: 22,
      user: "root",
      privateKey: pulumi.secret(TEST_SSH_KEY),
      hostKey: TEST_HOST_KEY,
    },
    sudo: true,
    workDir: "/var/tmp/plex-migrate",
    plexDataDir: "/var/lib/plexmediaserver/Library/Application Support/Plex Media Server",
    plexService: "plexmediaserver",
    tautulliService: "tautulli",
    tautulliDbPath: "/opt/Tautulli/tautulli.db",
    syncAllowedCidrs: ["10.42.0.0/16"],
    rollbackOnDestroy: false,
    generations: { transfer: 1, tautulliImport: 1 },
    retired: false,
    ...overrides,
  };
}
