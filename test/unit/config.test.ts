/**
 * lib/config.ts against Pulumi.yaml: every key declared with type, default and description; every
 * bad value fails with the key named and what is expected; secrets are never echoed.
 */
import * as assert from "assert";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as YAML from "yaml";
import { ConfigError, loadConfig, projectConfigDeclarations } from "../../lib/config";
import { mediaVolumeName, parseMediaVolume } from "../../lib/plex/media-volumes";
import { tunnelPortFor } from "../../lib/postgres/tunnel";
import { mediaVolumeProblems, reservedMountPathClash } from "../../lib/plex/helm-values";

const ROOT = path.resolve(__dirname, "..", "..");
const SSH_KEY =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-key-material\n-----END OPENSSH PRIVATE KEY-----";
const SECRET_KEYS = ["sshPrivateKey", "postgresAdminPassword", "plexClaimToken"];
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINowGtU5gs5dXOUaV5MhEbh36qBgAPyObabBh9Of0q+R";
/** Secrets the CLI requires (declared secret: true, no default). */
const REQUIRED_SECRETS = ["sshPrivateKey"];
/** Secrets a stack may leave unset (declared default "", checked and read by the program). */
const OPTIONAL_SECRETS = ["plexClaimToken", "postgresAdminPassword"];

/** The minimum a stack must set, plus `overrides`; `plainKeys` are stored unencrypted. */
function load(overrides: Record<string, unknown> = {}, plainKeys: string[] = []) {
  const values: Record<string, unknown> = {
    vmHost: "192.168.13.21",
    vmHostKey: HOST_KEY,
    sshPrivateKey: SSH_KEY,
    ...overrides,
  };
  const config: Record<string, string> = {};
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined) continue;
    config[`plex-migrate:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
  }
  pulumi.runtime.setAllConfig(
    config,
    SECRET_KEYS.filter((k) => !plainKeys.includes(k)).map((k) => `plex-migrate:${k}`),
  );
  return loadConfig(new pulumi.Config("plex-migrate"));
}

function problemsOf(overrides: Record<string, unknown>, plainKeys: string[] = []): string[] {
  try {
    load(overrides, plainKeys);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return (err as ConfigError).problems;
  }
  return [];
}

describe("stack config (lib/config.ts, Pulumi.yaml)", () => {
  const declarations = projectConfigDeclarations();

  // The CLI validates Pulumi.yaml and every stack against these rules before the program runs:
  // a key it rejects fails `pulumi preview` with no message of ours.
  it("declares every key the way the Pulumi CLI accepts it", () => {
    // sdk/go/common/workspace/project.json, $defs configTypeDeclaration (additionalProperties:
    // false), simpleConfigType, configItemsType (an array declares the type of its items).
    const allowedFields = ["type", "items", "description", "secret", "default", "value"];
    for (const [key, decl] of Object.entries(declarations)) {
      for (const field of Object.keys(decl)) {
        assert.ok(allowedFields.includes(field), `${key}: "${field}" is not a declaration field`);
      }
      assert.ok(["string", "integer", "boolean", "array"].includes(decl.type), `${key} type`);
      if (decl.type === "array") {
        const items = (decl as { items?: { type?: string } }).items;
        assert.ok(items && typeof items.type === "string", `${key}: an array needs items.type`);
      }
      assert.ok(decl.description && decl.description.length > 10, `${key} needs a description`);
      // sdk/go/common/workspace/project.go ValidateConfigValue: the default must be of the type.
      if (decl.default !== undefined) {
        const ok =
          (decl.type === "string" && typeof decl.default === "string") ||
          (decl.type === "integer" && Number.isInteger(decl.default)) ||
          (decl.type === "boolean" && typeof decl.default === "boolean") ||
          (decl.type === "array" && Array.isArray(decl.default));
        assert.ok(ok, `${key}: default ${JSON.stringify(decl.default)} is not a ${decl.type}`);
      }
      // pkg/workspace/config.go mergeConfig applies a default with createConfigValue (plain
      // text); validateStackConfigValue then fails a secret key whose value is not encrypted:
      // "must be encrypted as it's secret" (pulumi/pulumi#21865, open). So: secret, no default.
      if (decl.secret) {
        assert.strictEqual(decl.default, undefined, `${key}: a secret key must have no default`);
        assert.strictEqual((decl as { value?: unknown }).value, undefined, `${key}: nor a value`);
      }
    }
    // mergeConfig: a declared key without a default (or value) that a stack does not set fails
    // with "Stack is missing configuration value". These are exactly the required ones.
    const required = Object.entries(declarations)
      .filter(([, d]) => d.default === undefined)
      .map(([k]) => k)
      .sort();
    assert.deepStrictEqual(required, ["sshPrivateKey", "vmHost", "vmHostKey"]);
    const secrets = Object.entries(declarations)
      .filter(([, d]) => d.secret)
      .map(([k]) => k);
    assert.deepStrictEqual(secrets, REQUIRED_SECRETS);
    for (const key of OPTIONAL_SECRETS) {
      assert.strictEqual(declarations[key].default, "", `${key} is optional: default ""`);
      assert.match(String(declarations[key].description), /--secret/, `${key} says --secret`);
    }
  });

  it("sets no secret in plain text and only declared keys of their type in the example stacks", () => {
    for (const stack of ["Pulumi.dev.yaml", "Pulumi.prod.yaml", "examples/Pulumi.homelab.yaml"]) {
      const file = YAML.parse(fs.readFileSync(path.join(ROOT, stack), "utf8"));
      for (const [key, value] of Object.entries(file.config as Record<string, unknown>)) {
        const bare = key.replace(/^plex-migrate:/, "");
        const decl = declarations[bare];
        assert.ok(decl, `${stack} sets undeclared key ${key}`);
        const secure = typeof value === "object" && value !== null && "secure" in value;
        if (decl.secret || OPTIONAL_SECRETS.includes(bare)) {
          assert.ok(secure, `${stack}: ${bare} must be set with --secret`);
        }
      }
      for (const key of ["vmHost", "vmHostKey"]) {
        assert.ok(`plex-migrate:${key}` in file.config, `${stack} sets ${key}`);
      }
    }
  });

  it("refuses an optional secret stored in plain text, and reads a set one as a secret", async () => {
    const problems = problemsOf(
      { plexClaimToken: "claim-plain-text", postgresAdminPassword: "pw-plain-text" },
      ["plexClaimToken", "postgresAdminPassword"],
    );
    assert.deepStrictEqual(problems, [
      "plex-migrate:plexClaimToken: is stored in plain text in the stack file. Fix: pulumi config set --secret plexClaimToken <value> (and rotate it: it was readable)",
      "plex-migrate:postgresAdminPassword: is stored in plain text in the stack file. Fix: pulumi config set --secret postgresAdminPassword <value> (and rotate it: it was readable)",
    ]);
    const config = load({ plexClaimToken: "claim-abc" });
    const token = config.plexRelease.claimToken as unknown as {
      isSecret: Promise<boolean>;
      promise(): Promise<string>;
    };
    assert.strictEqual(await token.isSecret, true);
    assert.strictEqual(await token.promise(), "claim-abc");
    // The CLI applies the "" default: unset.
    assert.strictEqual(
      load({ plexClaimToken: "" }, ["plexClaimToken"]).plexRelease.claimToken,
      undefined,
    );
  });

  it("returns the sync settings PlexConfigVolume takes: the VM's address, port and user by default", () => {
    const config = load({
      vmHostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    });
    assert.deepStrictEqual(config.configVolume.sync, {
      image: "instrumentisto/rsync-ssh:alpine3.23-r3",
      connection: { host: "192.168.13.21", port: 22, user: "ubuntu" },
      hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
      excludes: [],
      warmCopyTimeoutMinutes: 360,
      transferGeneration: 1,
    });
    const other = load({
      syncHost: "vm.cluster.lan",
      syncPort: "2222",
      warmCopyTimeoutMinutes: "60",
    });
    assert.deepStrictEqual(other.configVolume.sync.connection, {
      host: "vm.cluster.lan",
      port: 2222,
      user: "ubuntu",
    });
    assert.strictEqual(other.configVolume.sync.warmCopyTimeoutMinutes, 60);
  });

  it("refuses the archive flow's keys at preview, naming what replaced them", () => {
    const problems = problemsOf({ serveHost: "vm.lan", servePort: "32499", keepArchive: "true" });
    assert.ok(
      problems.some((p) => /serveHost: was removed: set syncHost/.test(p)),
      problems.join("\n"),
    );
    assert.ok(problems.some((p) => /servePort: was removed: set syncPort/.test(p)));
    assert.ok(problems.some((p) => /keepArchive: was removed: no archive is made/.test(p)));
    assert.ok(problems.some((p) => /Fix: pulumi config rm serveHost/.test(p)));
  });

  it("accepts the defaults and returns them typed", () => {
    const config = load();
    assert.strictEqual(config.sourceVm.connection.port, 22);
    assert.strictEqual(config.sourceVm.connection.user, "ubuntu");
    assert.strictEqual(
      config.sourceVm.plexDataDir,
      "/var/lib/plexmediaserver/Library/Application Support/Plex Media Server",
    );
    assert.strictEqual(config.kubeContext, undefined);
    assert.strictEqual(config.configVolume.configSize, "auto");
    assert.strictEqual(config.plexRelease.imageTagOverride, undefined);
    assert.strictEqual(config.plexRelease.claimToken, undefined);
    // The in-cluster server needs no endpoint: pulumi up reaches it through the tunnel, on a
    // port fixed for the stack.
    assert.deepStrictEqual(config.postgres, {
      mode: "in-cluster",
      version: "17",
      storageSize: "10Gi",
      storageClass: undefined,
      adminUser: "postgres",
      adminPassword: undefined,
      protectData: true,
      tunnel: {
        context: undefined,
        localPort: tunnelPortFor("plex-migrate", pulumi.getStack()),
      },
    });
    assert.strictEqual(config.tautulliImport.overwrite, false);
    assert.strictEqual(config.configVolume.protectData, true);
    assert.deepStrictEqual(config.sourceVm.generations, { transfer: 1, tautulliImport: 1 });
    assert.strictEqual(config.sourceVm.retired, false);
  });

  it("hands SourceVm its own arguments, as SourceVm takes them", () => {
    const { connection, ...rest } = load().sourceVm;
    const { privateKey: _privateKey, ...reach } = connection;
    assert.deepStrictEqual(reach, {
      host: "192.168.13.21",
      port: 22,
      user: "ubuntu",
      hostKey: HOST_KEY,
    });
    assert.deepStrictEqual(rest, {
      sudo: true,
      workDir: "/var/lib/plex-migrate",
      plexDataDir: "/var/lib/plexmediaserver/Library/Application Support/Plex Media Server",
      plexService: "plexmediaserver",
      tautulliService: "tautulli",
      tautulliDbPath: "/opt/Tautulli/tautulli.db",
      syncAllowedCidrs: [],
      rollbackOnDestroy: false,
      generations: { transfer: 1, tautulliImport: 1 },
      retired: false,
    });
  });

  it("labels the namespace with the Pod Security level the Plex pod needs under auto", () => {
    assert.deepStrictEqual(load().configVolume.namespaceLabels, {});
    assert.deepStrictEqual(load({ plexPodSecurity: "auto" }).configVolume.namespaceLabels, {
      "pod-security.kubernetes.io/enforce": "baseline",
      "pod-security.kubernetes.io/enforce-version": "latest",
    });
    const host = load({
      plexPodSecurity: "auto",
      plexNetworking: "host",
      plexAddress: "192.168.13.30",
      plexNodeSelector: ["kubernetes.io/hostname=node-1"],
    });
    assert.strictEqual(
      host.configVolume.namespaceLabels?.["pod-security.kubernetes.io/enforce"],
      "privileged",
    );
  });

  it("returns the migration phases SourceVm takes", () => {
    const config = load({ transferGeneration: 3, tautulliImportGeneration: 2, vmRetired: true });
    assert.deepStrictEqual(config.sourceVm.generations, { transfer: 3, tautulliImport: 2 });
    assert.strictEqual(config.sourceVm.retired, true);
    // The pod's copy records the same generation in the volume's marker.
    assert.strictEqual(config.configVolume.sync.transferGeneration, 3);
  });

  it("keeps secret config values secret", async () => {
    const config = load({ postgresAdminPassword: "pg-admin-pw", plexClaimToken: "claim-abc" });
    for (const output of [
      config.sourceVm.connection.privateKey,
      config.postgres.adminPassword!,
      config.plexRelease.claimToken!,
    ]) {
      assert.strictEqual(
        await (output as unknown as { isSecret: Promise<boolean> }).isSecret,
        true,
      );
    }
  });

  it("parses the example stack files without a problem", () => {
    for (const stack of ["Pulumi.dev.yaml", "Pulumi.prod.yaml", "examples/Pulumi.homelab.yaml"]) {
      const file = YAML.parse(fs.readFileSync(path.join(ROOT, stack), "utf8"));
      const values: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(file.config as Record<string, unknown>)) {
        const bare = key.replace(/^plex-migrate:/, "");
        assert.ok(declarations[bare], `${stack} sets undeclared key ${key}`);
        values[bare] = value;
      }
      assert.deepStrictEqual(
        problemsOf({ ...values, sshPrivateKey: SSH_KEY, postgresAdminPassword: "x" }),
        [],
      );
    }
  });

  // Each bad value must fail naming its key, say what is expected, and never echo a secret.
  const badValues: Array<[string, Record<string, unknown>, RegExp]> = [
    ["vmHost", { vmHost: undefined }, /vmHost: is required/],
    ["vmHost", { vmHost: "my host" }, /vmHost: expected a host name or IP/],
    ["vmPort", { vmPort: "70000" }, /vmPort: expected an integer from 1 to 65535/],
    ["vmPort", { vmPort: "twenty" }, /vmPort: expected an integer/],
    ["vmUser", { vmUser: "Bad User" }, /vmUser: expected a Unix user name/],
    ["vmSudo", { vmSudo: "yes" }, /vmSudo: expected true or false/],
    ["vmHostKey", { vmHostKey: undefined }, /vmHostKey: is required but not set/],
    [
      "vmHostKey",
      { vmHostKey: "AAAA" },
      /vmHostKey: is "AAAA", not an ed25519 or ECDSA host key.*ssh-keyscan -t ed25519 192\.168\.13\.21/,
    ],
    [
      "vmHostKey",
      { vmHostKey: "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7" },
      /vmHostKey: is an RSA host key: .*OpenSSH 8\.8 and newer refuse.*ssh-keyscan -t ed25519/,
    ],

    ["sshPrivateKey", { sshPrivateKey: undefined }, /sshPrivateKey: is required.*--secret/],
    ["vmWorkDir", { vmWorkDir: "tmp/plex" }, /vmWorkDir: expected an absolute path/],
    [
      "vmWorkDir",
      { vmWorkDir: "/var/lib/plexmediaserver/Library/Application Support/Plex Media Server/tmp" },
      /vmWorkDir: must not be inside plexDataDir/,
    ],
    ["plexDataDir", { plexDataDir: "/var/lib/../etc" }, /plexDataDir: expected an absolute path/],
    ["plexService", { plexService: "plex media" }, /plexService: expected a systemd unit name/],
    // The VM script and SourceVm refuse a backslash, so config does too (one rule, lib/checks.ts).
    [
      "plexService",
      { plexService: "plex\\x2dmedia" },
      /plexService: expected a systemd unit name, got "plex\\x2dmedia"/,
    ],
    [
      "tautulliService",
      { tautulliService: "taut;rm" },
      /tautulliService: expected a systemd unit name/,
    ],
    [
      "tautulliService",
      { tautulliService: "" },
      /tautulliService: is empty, but pulumi up imports Tautulli's history .* a VM without Tautulli is not supported/,
    ],
    [
      "tautulliDbPath",
      { tautulliDbPath: "tautulli.db" },
      /tautulliDbPath: expected an absolute path/,
    ],
    [
      "rollbackOnDestroy",
      { rollbackOnDestroy: "maybe" },
      /rollbackOnDestroy: expected true or false/,
    ],
    [
      "transferGeneration",
      { transferGeneration: "0" },
      /transferGeneration: expected an integer from 1 to 1000000, got "0"/,
    ],
    [
      "tautulliImportGeneration",
      { tautulliImportGeneration: "2.5" },
      /tautulliImportGeneration: expected an integer from 1 to 1000000, got "2\.5"/,
    ],
    ["vmRetired", { vmRetired: "gone" }, /vmRetired: expected true or false/],
    ["namespace", { namespace: "Plex_NS" }, /namespace: expected a DNS label/],
    ["createNamespace", { createNamespace: "no" }, /createNamespace: expected true or false/],
    [
      "plexReleaseName",
      { plexReleaseName: "p".repeat(54) },
      /plexReleaseName: expected a Helm release name/,
    ],
    [
      "plexChartVersion",
      { plexChartVersion: "latest" },
      /plexChartVersion: expected an exact chart version/,
    ],
    [
      "plexChartRepo",
      { plexChartRepo: "http://charts.example.com" },
      /plexChartRepo: expected an https:\/\/ or oci:\/\/ URL/,
    ],
    ["plexImageTag", { plexImageTag: "bad tag" }, /plexImageTag: expected an image tag/],
    [
      "plexInitImage",
      { plexInitImage: "Alpine Latest" },
      /plexInitImage: expected an image reference/,
    ],
    ["syncHost", { syncHost: "my vm" }, /syncHost: expected a host name or IP address/],
    [
      "syncAllowedCidrs",
      { syncAllowedCidrs: ["cluster"] },
      /syncAllowedCidrs: "cluster" is not a CIDR/,
    ],
    ["syncPort", { syncPort: "70000" }, /syncPort: /],
    ["warmCopyTimeoutMinutes", { warmCopyTimeoutMinutes: "5" }, /warmCopyTimeoutMinutes: /],
    [
      "plexConfigStorageClass",
      { plexConfigStorageClass: "Fast_SSD" },
      /plexConfigStorageClass: expected a StorageClass name/,
    ],
    [
      "plexConfigSize",
      { plexConfigSize: "lots" },
      /plexConfigSize: expected a Kubernetes quantity/,
    ],
    [
      "plexConfigHeadroomPercent",
      { plexConfigHeadroomPercent: "-5" },
      /plexConfigHeadroomPercent: expected an integer from 0/,
    ],
    [
      "plexMediaVolumes",
      { plexMediaVolumes: ["/mnt/media"] },
      /plexMediaVolumes: "\/mnt\/media" has no "="/,
    ],
    [
      "plexMediaVolumes",
      { plexMediaVolumes: ["/config=hostpath:///srv"] },
      /plexMediaVolumes: .*\/config is used by the Plex chart/,
    ],
    [
      "plexMediaVolumes",
      { plexMediaVolumes: ["/mnt/a=smb://nas/a"] },
      /plexMediaVolumes: .*unknown source "smb:\/\/nas\/a"/,
    ],
    [
      "plexMediaVolumes",
      { plexMediaVolumes: ["/mnt/a=pvc://Bad_Claim"] },
      /plexMediaVolumes: .*not a valid PersistentVolumeClaim name/,
    ],
    [
      "plexMediaVolumes",
      { plexMediaVolumes: ["/mnt/a=nfs://nas/x", "/mnt/a/b=nfs://nas/y"] },
      /plexMediaVolumes: mount paths "\/mnt\/a" and "\/mnt\/a\/b" overlap/,
    ],
    ["plexUid", { plexUid: "-1" }, /plexUid: expected auto or a numeric id such as 999, got "-1"/],
    ["plexGid", { plexGid: "1.5" }, /plexGid: expected auto or a numeric id/],
    [
      "plexSupplementalGroups",
      { plexSupplementalGroups: "video" },
      /plexSupplementalGroups: expected auto, "" or gids such as "44,1001", got "video"/,
    ],
    [
      "plexNodeSelector",
      { plexNodeSelector: ["node-1"] },
      /plexNodeSelector: "node-1" is not a node label such as kubernetes.io\/hostname=node-1/,
    ],
    [
      "plexHardwareTranscoding",
      { plexHardwareTranscoding: "nvidia" },
      /plexHardwareTranscoding: expected one of "none", "intel", "dev-dri", got "nvidia"/,
    ],
    [
      "plexPodSecurity",
      { plexPodSecurity: "strict" },
      /plexPodSecurity: expected one of "", "auto", "privileged", "baseline", "restricted", got "strict"/,
    ],
    [
      "plexClusterNetworks",
      { plexClusterNetworks: ["10.42.0.0/33"] },
      /plexClusterNetworks: "10.42.0.0\/33" is not a CIDR such as "10.42.0.0\/16"/,
    ],
    [
      "plexTimezone",
      { plexTimezone: "Berlin time" },
      /plexTimezone: expected auto, "" or an IANA time zone such as Europe\/Berlin, got "Berlin time"/,
    ],
    [
      "plexNetworking",
      { plexNetworking: "NodePort" },
      /plexNetworking: expected one of "host", "loadBalancer", "ingress", "internal", got "NodePort"/,
    ],
    [
      "plexAddress",
      { plexNetworking: "loadBalancer" },
      /plexAddress: is required when plexNetworking is loadBalancer: .*the LoadBalancer's fixed IP\)\. Fix: pulumi config set plexAddress <IP>/,
    ],
    [
      "plexAddress",
      { plexNetworking: "host", plexAddress: "node-1.lan" },
      /plexAddress: expected the IP address clients reach Plex on/,
    ],
    [
      "plexAddress",
      { plexAddress: "192.168.13.40" },
      /plexAddress: is only used when plexNetworking is host or loadBalancer, but it is "internal"/,
    ],
    [
      "plexAdvertiseUrls",
      { plexAdvertiseUrls: ["plex.example.net:32400"] },
      /plexAdvertiseUrls: "plex.example.net:32400" must start with http:\/\/ or https:\/\//,
    ],
    [
      "plexAdvertiseUrls",
      { plexAdvertiseUrls: ["http://plex.example.net"] },
      /plexAdvertiseUrls: "http:\/\/plex.example.net" must be scheme:\/\/host:port with the port spelled out/,
    ],
    [
      "plexIngressHost",
      { plexNetworking: "ingress", plexIngressHost: "plex_example" },
      /plexIngressHost: expected a host name/,
    ],
    [
      "plexIngressHost",
      { plexNetworking: "ingress" },
      /plexIngressHost: is required when plexNetworking is ingress/,
    ],
    [
      "plexIngressHost",
      { plexIngressHost: "plex.example.com" },
      /plexIngressHost: is only used when plexNetworking is ingress, but it is "internal"\. Fix: pulumi config rm plexIngressHost, or set plexNetworking ingress/,
    ],
    [
      "plexIngressClass",
      {
        plexNetworking: "ingress",
        plexIngressHost: "plex.example.com",
        plexIngressClass: "Nginx!",
      },
      /plexIngressClass: expected a DNS label/,
    ],
    [
      "plexIngressTlsSecret",
      {
        plexNetworking: "ingress",
        plexIngressHost: "plex.example.com",
        plexIngressTlsSecret: "TLS Secret",
      },
      /plexIngressTlsSecret: expected a Secret name/,
    ],
    [
      "plexIngressTlsSecret",
      { plexNetworking: "host", plexAddress: "192.168.13.30", plexIngressTlsSecret: "plex-tls" },
      /plexIngressTlsSecret: is only used when plexNetworking is ingress, but it is "host"/,
    ],
    ["plexCpuRequest", { plexCpuRequest: "two" }, /plexCpuRequest: expected a Kubernetes quantity/],
    [
      "plexMemoryRequest",
      { plexMemoryRequest: "2GB" },
      /plexMemoryRequest: expected a Kubernetes quantity/,
    ],
    [
      "plexMemoryLimit",
      { plexMemoryLimit: "4 Gi" },
      /plexMemoryLimit: expected a Kubernetes quantity/,
    ],
    [
      "postgresMode",
      { postgresMode: "cloud" },
      /postgresMode: expected one of "in-cluster", "external"/,
    ],
    [
      "postgresVersion",
      { postgresVersion: "12" },
      /postgresVersion: expected a PostgreSQL major version from 13 to 18/,
    ],
    [
      "postgresStorageSize",
      { postgresStorageSize: "ten" },
      /postgresStorageSize: expected a Kubernetes quantity/,
    ],
    [
      "postgresStorageClass",
      { postgresStorageClass: "SSD!" },
      /postgresStorageClass: expected a StorageClass name/,
    ],
    [
      "postgresServiceType",
      { postgresServiceType: "NodePort" },
      /postgresServiceType: was removed: the in-cluster Service is ClusterIP and pulumi up reaches the server through the Kubernetes API \(nothing is exposed\)\. Fix: pulumi config rm postgresServiceType/,
    ],
    [
      "postgresEndpoint",
      { postgresEndpoint: "192.168.1.5:30432" },
      /postgresEndpoint: is only used when postgresMode is "external": pulumi up reaches the in-cluster server through the Kubernetes API.*Fix: pulumi config rm postgresEndpoint/,
    ],
    [
      "postgresEndpoint",
      {
        postgresMode: "external",
        postgresHost: "db.lan",
        postgresAdminPassword: "pw",
        postgresEndpoint: "db",
      },
      /postgresEndpoint: expected host:port/,
    ],
    [
      "postgresTunnelPort",
      { postgresTunnelPort: "80" },
      /postgresTunnelPort: 80 is a privileged port\. Fix: choose a port from 1024 to 65535, or 0 for the stack's derived port/,
    ],
    [
      "postgresTunnelPort",
      { postgresTunnelPort: "70000" },
      /postgresTunnelPort: expected an integer from 0 to 65535/,
    ],
    [
      "postgresHost",
      { postgresMode: "external", postgresAdminPassword: "pw" },
      /postgresHost: is required when postgresMode is "external"/,
    ],
    [
      "postgresHost",
      { postgresHost: "db.example.com" },
      /postgresHost: is only used when postgresMode is "external"/,
    ],
    ["postgresPort", { postgresPort: "0" }, /postgresPort: expected an integer from 1 to 65535/],
    [
      "postgresAdminUser",
      { postgresAdminUser: "Admin User" },
      /postgresAdminUser: expected a lower-case PostgreSQL role name/,
    ],
    [
      "postgresAdminPassword",
      { postgresMode: "external", postgresHost: "db.example.com" },
      /postgresAdminPassword: is required but not set.*--secret/,
    ],
    [
      "postgresSslMode",
      { postgresSslMode: "require" },
      /postgresSslMode: "require" needs a server with TLS; the in-cluster server .* serves none/,
    ],
    [
      "postgresSslMode",
      { postgresSslMode: "verify-ca" },
      /postgresSslMode: expected one of "auto", "disable", "require", "verify-full"/,
    ],
    [
      "tautulliDatabase",
      { tautulliDatabase: "Tautulli-DB" },
      /tautulliDatabase: expected a lower-case PostgreSQL identifier/,
    ],
    [
      "tautulliRole",
      { tautulliRole: "postgres" },
      /tautulliRole: must differ from postgresAdminUser/,
    ],
    [
      "tautulliSecretName",
      { tautulliSecretName: "Tautulli Secret" },
      /tautulliSecretName: expected a Kubernetes Secret name/,
    ],
    ["importOverwrite", { importOverwrite: "please" }, /importOverwrite: expected true or false/],
    [
      "importIntegrityCheck",
      { importIntegrityCheck: "fast" },
      /importIntegrityCheck: expected one of "full", "quick"/,
    ],
    ["protectData", { protectData: "yes" }, /protectData: expected true or false/],
  ];

  for (const [key, overrides, expected] of badValues) {
    it(`rejects a bad ${key}: ${JSON.stringify(overrides)}`, () => {
      const problems = problemsOf(overrides);
      assert.ok(
        problems.some((p) => p.startsWith(`plex-migrate:${key}: `) && expected.test(p)),
        `expected a problem matching ${expected}, got:\n${problems.join("\n")}`,
      );
    });
  }

  it("returns the networking mode with exactly the fields it needs", () => {
    assert.deepStrictEqual(load().plexRelease.networking, { mode: "internal" });
    assert.deepStrictEqual(
      load({ plexNetworking: "host", plexAddress: "192.168.13.30" }).plexRelease.networking,
      { mode: "host", address: "192.168.13.30" },
    );
    assert.deepStrictEqual(
      load({ plexNetworking: "loadBalancer", plexAddress: "fd00:13::40" }).plexRelease.networking,
      { mode: "loadBalancer", address: "fd00:13::40" },
    );
    assert.deepStrictEqual(
      load({
        plexNetworking: "ingress",
        plexIngressHost: "plex.example.com",
        plexIngressTlsSecret: "plex-tls",
      }).plexRelease.networking,
      { mode: "ingress", host: "plex.example.com", className: undefined, tlsSecret: "plex-tls" },
    );
    assert.deepStrictEqual(
      load({ plexAdvertiseUrls: ["https://plex.example.net:443"] }).plexRelease.advertiseUrls,
      ["https://plex.example.net:443"],
    );
  });

  it("reads ids and the time zone as auto unless set", () => {
    const plex = load().plexRelease;
    assert.deepStrictEqual([plex.uid, plex.gid, plex.timezone], ["auto", "auto", "auto"]);
    const set = load({ plexUid: "1000", plexGid: 100, plexTimezone: "" }).plexRelease;
    assert.deepStrictEqual([set.uid, set.gid, set.timezone], [1000, 100, ""]);
    assert.strictEqual(load().plexRelease.supplementalGroups, "auto");
    assert.deepStrictEqual(load({ plexSupplementalGroups: "" }).plexRelease.supplementalGroups, []);
    assert.deepStrictEqual(
      load({ plexSupplementalGroups: "44, 1001" }).plexRelease.supplementalGroups,
      [44, 1001],
    );
    assert.deepStrictEqual(
      load({ plexNodeSelector: ["kubernetes.io/hostname=node-1", "plex-migrate/media="] })
        .plexRelease.nodeSelector,
      { "kubernetes.io/hostname": "node-1", "plex-migrate/media": "" },
    );
    assert.deepStrictEqual(
      [load().plexRelease.gpu, load().plexRelease.podSecurity, load().plexRelease.nodeSelector],
      ["none", "", {}],
    );
    assert.deepStrictEqual(
      load({ plexClusterNetworks: ["10.42.0.0/16", "fd00:42::/56"] }).plexRelease.clusterNetworks,
      ["10.42.0.0/16", "fd00:42::/56"],
    );
  });

  it("refuses the retired plexServiceType, naming its replacement", () => {
    assert.deepStrictEqual(problemsOf({ plexServiceType: "LoadBalancer" }), [
      "plex-migrate:plexServiceType: is replaced by plexNetworking (host, loadBalancer, ingress or internal), which also sets the address Plex advertises. " +
        "Fix: pulumi config rm plexServiceType; pulumi config set plexNetworking loadBalancer; pulumi config set plexAddress <fixed IP>",
    ]);
  });

  it("has a bad-value case for every validated key", () => {
    const freeForm = new Set(["kubeContext", "plexClaimToken"]);
    const covered = new Set(badValues.map(([key]) => key));
    const missing = Object.keys(declarations).filter((k) => !covered.has(k) && !freeForm.has(k));
    assert.deepStrictEqual(missing, []);
  });

  it("reports every problem at once, one line each", () => {
    const problems = problemsOf({ vmPort: "0", namespace: "NS", postgresVersion: "9" });
    assert.strictEqual(problems.length, 3);
    assert.throws(
      () => load({ vmPort: "0", namespace: "NS" }),
      (err: Error) => {
        assert.match(
          err.message,
          /Invalid stack configuration \(2 problems\):\n {2}- plex-migrate:vmPort/,
        );
        return true;
      },
    );
  });

  it("never echoes a secret value in an error", () => {
    // An external server without a host: the admin password is set, and must not be printed.
    const problems = problemsOf({
      postgresMode: "external",
      postgresAdminPassword: "hunter2-very-secret",
      plexClaimToken: "claim-very-secret",
      vmPort: "0",
    });
    assert.ok(problems.length > 0);
    for (const p of problems) {
      assert.ok(!p.includes("hunter2-very-secret") && !p.includes("claim-very-secret"), p);
      assert.ok(!p.includes("secret-key-material"), p);
    }
  });

  describe("plexMediaVolumes entries", () => {
    it("parses nfs, hostpath and pvc sources, read-only unless ?rw", () => {
      assert.deepStrictEqual(parseMediaVolume("/mnt/nas-plex=nfs://192.168.13.5/export/plex"), {
        name: "media-mnt-nas-plex",
        mountPath: "/mnt/nas-plex",
        source: { kind: "nfs", server: "192.168.13.5", path: "/export/plex" },
        readOnly: true,
      });
      assert.deepStrictEqual(parseMediaVolume("/srv/tv/=hostpath:///data/tv?rw"), {
        name: "media-srv-tv",
        mountPath: "/srv/tv",
        source: { kind: "hostPath", path: "/data/tv" },
        readOnly: false,
      });
      assert.deepStrictEqual(parseMediaVolume("/media/Movies=pvc://movies"), {
        name: "media-media-movies",
        mountPath: "/media/Movies",
        source: { kind: "pvc", claimName: "movies" },
        readOnly: true,
      });
    });

    it("keeps media under /data and refuses the pod's own paths, by the rule the values use", () => {
      const data = parseMediaVolume("/data/media=nfs://nas/export/media");
      assert.ok(typeof data !== "string", "the chart mounts under /data only for rclone");
      assert.deepStrictEqual(mediaVolumeProblems([data]), []);
      // The sync container's own mounts (/plex-migrate-sync, -script) are in no other container.
      const sync = parseMediaVolume("/plex-migrate-sync=nfs://nas/export/media");
      assert.ok(typeof sync !== "string", "media may use any path the PMS container leaves free");
      for (const path of ["/config", "/transcode/x", "/init"]) {
        const parsed = parseMediaVolume(`${path}=nfs://nas/export/media`);
        assert.strictEqual(typeof parsed, "string", `${path} is refused by config`);
        assert.match(
          parsed as string,
          new RegExp(`${reservedMountPathClash(path)} is used by the Plex`),
        );
        const asVolume = { ...data, mountPath: path };
        assert.match(mediaVolumeProblems([asVolume]).join(), /is used by the Plex pod itself/);
      }
    });

    it("derives stable DNS-label volume names, unique for long paths", () => {
      const long = `/mnt/${"very-long-library-folder-name/".repeat(4)}`;
      const a = mediaVolumeName(`${long}a`);
      const b = mediaVolumeName(`${long}b`);
      assert.ok(a.length <= 63 && b.length <= 63);
      assert.notStrictEqual(a, b);
      assert.strictEqual(a, mediaVolumeName(`${long}a`));
      assert.match(a, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    });
  });
});
