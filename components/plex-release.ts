/**
 * PlexRelease (STUB — engineer D replaces the internals): namespace, config PVC and the
 * plex-media-server Helm release whose init container imports the archive.
 * Contract: /work/notes/contracts.md.
 */
import * as pulumi from "@pulumi/pulumi";
import type { MediaVolume, ServiceType } from "../lib/config";

export interface PlexReleaseArgs {
  /** Namespace for Plex (and the other workloads). @default plex */
  namespace: string;
  /** Create the namespace (false: it exists). @default true */
  createNamespace: boolean;
  /** Helm release name; fixed because every chart name derives from it. @default plex */
  releaseName: string;
  /** plex-media-server chart version. @default 1.5.0 */
  chartVersion: string;
  /** Helm repository URL of the chart. */
  chartRepo: string;
  /** Image tag override; by default the VM's Plex version. */
  imageTagOverride?: string;
  /** Plex version the VM runs (dpkg version = pms-docker tag). */
  plexVersion: pulumi.Input<string>;
  /** Init container image. @default alpine:3.22 */
  initImage: string;
  /** StorageClass of the config volume; undefined = cluster default. */
  storageClass?: string;
  /** "auto" or a Kubernetes quantity. @default auto */
  configSize: string;
  /** Headroom added to the measured library for "auto". @default 50 */
  configHeadroomPercent: number;
  /** Library bytes measured by the preflight. */
  libraryBytes: pulumi.Input<number>;
  /** Media roots mounted at the VM's paths. @default [] */
  mediaVolumes: MediaVolume[];
  /** uid/gid of the plex user in the image. @default 1000 */
  uid: number;
  /** @default 1000 */
  gid: number;
  /** plex.tv claim token (secret), if any. */
  claimToken?: pulumi.Input<string>;
  /** Service type. @default ClusterIP */
  serviceType: ServiceType;
  /** Optional Ingress. */
  ingress?: { host: string; className?: string; tlsSecret?: string };
  /** Container resources. */
  resources: { cpuRequest?: string; memoryRequest?: string; memoryLimit?: string };
  /** The archive to import (url is a secret). */
  archive: {
    url: pulumi.Input<string>;
    sha256: pulumi.Input<string>;
    bytes: pulumi.Input<number>;
    format: pulumi.Input<string>;
  };
  /** Protect the config volume from `pulumi destroy`. @default true */
  protectData: boolean;
}

export class PlexRelease extends pulumi.ComponentResource {
  readonly namespace: pulumi.Output<string>;
  readonly configClaimName: pulumi.Output<string>;
  readonly configSize: pulumi.Output<string>;
  readonly imageTag: pulumi.Output<string>;
  readonly plexUrl: pulumi.Output<string>;
  /** The Helm release (for ordering: stop serving after it). */
  readonly release: pulumi.Resource;

  constructor(name: string, args: PlexReleaseArgs, opts?: pulumi.ComponentResourceOptions) {
    super("plex-migrate:plex:Release", name, {}, opts);
    this.namespace = pulumi.output(args.namespace);
    this.configClaimName = pulumi.output("");
    this.configSize = pulumi.output("");
    this.imageTag = pulumi.output(args.plexVersion);
    this.plexUrl = pulumi.output("");
    this.release = this;
    this.registerOutputs({});
  }
}
