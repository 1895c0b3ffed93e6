/**
 * PostgresAdminLogin: a dynamic resource that keeps the in-cluster server's superuser password
 * equal to postgresAdminPassword (rotating it when the setting changes) and proves the data
 * volume accepts it before anything else logs in. The work lives in lib/postgres/admin-login.ts;
 * the provider object is serialized by the engine, so its methods only load it and delegate.
 */
import * as pulumi from "@pulumi/pulumi";
import type * as ProviderModule from "../lib/postgres/admin-login";
import { loadProjectModule } from "./provider-runtime";

export interface PostgresAdminLoginArgs {
  /** Where `pulumi up` reaches the server (the tunnel's local end). */
  host: pulumi.Input<string>;
  port: pulumi.Input<number>;
  user: pulumi.Input<string>;
  /** Secret. */
  password: pulumi.Input<string>;
  /** How `pulumi up` reaches the server, named when it cannot. */
  reachedAt?: pulumi.Input<string>;
}

function implementation(): typeof ProviderModule {
  return loadProjectModule<typeof ProviderModule>("lib/postgres/admin-login");
}

export const postgresAdminLoginProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news) {
    return { inputs: news, failures: implementation().checkInputs(news) };
  },
  async create(inputs) {
    return implementation().createLogin(inputs);
  },
  async diff(_id, olds, news) {
    return implementation().diffLogin(olds, news);
  },
  async update(_id, olds, news) {
    return implementation().updateLogin(olds, news);
  },
  async read(id, props) {
    return { id, props };
  },
  async delete() {
    // The role lives in the server's volume; nothing to undo.
  },
};

export class PostgresAdminLogin extends pulumi.dynamic.Resource {
  declare readonly host: pulumi.Output<string>;
  declare readonly port: pulumi.Output<number>;
  declare readonly user: pulumi.Output<string>;

  constructor(name: string, args: PostgresAdminLoginArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      postgresAdminLoginProvider,
      name,
      { ...args, password: pulumi.secret(args.password) },
      {
        ...opts,
        additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "password"],
      },
      "plex-migrate",
      "PostgresAdminLogin",
    );
  }
}
