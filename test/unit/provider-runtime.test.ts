/**
 * Dynamic providers from another checkout: `pulumi refresh` or `destroy` loads the provider text
 * stored in the state at the last `up`, in a provider process the engine starts in the project
 * directory of whoever runs the command (pulumi/pulumi pkg/engine/deployment.go and
 * sdk/go/common/resource/plugin/provider_plugin.go: plugins run in ctx.Pwd). The text must find
 * the project there, not at the path of the checkout that serialized it.
 */
import { strict as assert } from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type * as pulumi from "@pulumi/pulumi";
import { LoadedProvider, serializeProvider } from "../support/dynamic-provider-host";

const ROOT = path.resolve(__dirname, "..", "..");

/** A checkout of this project in `dir`: its sources copied, node_modules shared by a symlink. */
function makeCheckout(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const entry of ["Pulumi.yaml", "package.json", "tsconfig.json"]) {
    fs.copyFileSync(path.join(ROOT, entry), path.join(dir, entry));
  }
  for (const entry of ["components", "lib", "migrations"]) {
    fs.cpSync(path.join(ROOT, entry), path.join(dir, entry), { recursive: true });
  }
  fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"), "dir");
}

describe("dynamic providers run from another checkout (refresh, destroy)", function () {
  let work: string;
  let text: string;
  let migrations: string[];

  before(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-checkouts-"));
    const laptop = path.join(work, "laptop", "plex-migrate");
    makeCheckout(laptop);
    // The provider as the laptop's `pulumi up` serialized it into the state.
    const laptopModule = require(path.join(laptop, "components", "schema-migrations")) as {
      schemaMigrationsProvider: pulumi.dynamic.ResourceProvider;
    };
    text = await serializeProvider(laptopModule.schemaMigrationsProvider);
    migrations = fs
      .readdirSync(path.join(laptop, "migrations"))
      .filter((f) => f.endsWith(".ts"))
      .map((f) => f.replace(/\.ts$/, ""))
      .sort();
    // The laptop's checkout is gone (or elsewhere) when CI refreshes from its own clone.
    fs.renameSync(path.join(work, "laptop"), path.join(work, "moved"));
    makeCheckout(path.join(work, "ci", "plex-migrate"));
  });

  after(() => fs.rmSync(work, { recursive: true, force: true }));

  it("names no path of the checkout that serialized it, for every dynamic provider", async () => {
    assert.ok(!text.includes(path.join(work, "laptop")), "the serialized text holds a path");
    const componentsDir = path.join(ROOT, "components");
    let providers = 0;
    for (const file of fs.readdirSync(componentsDir).filter((f) => f.endsWith(".ts"))) {
      const exported = require(path.join(componentsDir, file)) as Record<string, unknown>;
      for (const [name, value] of Object.entries(exported)) {
        if (!/Provider$/.test(name) || typeof value !== "object" || value === null) continue;
        const serialized = await serializeProvider(value as pulumi.dynamic.ResourceProvider);
        assert.ok(!serialized.includes(ROOT), `${file} ${name}: its text holds ${ROOT}`);
        providers++;
      }
    }
    assert.ok(providers >= 4, `found ${providers} dynamic providers in components/`);
  });

  it("loads its implementation from the checkout it runs in", async () => {
    const provider = await LoadedProvider.loadText(text, path.join(work, "ci", "plex-migrate"));
    try {
      const result = await provider.call<{ failures: { property: string; reason: string }[] }>(
        "check",
        {},
        { databaseUrl: "postgres://tautulli@db.internal:5432/tautulli", migrations },
      );
      assert.deepEqual(result.failures, []);
      // The implementation read this checkout's migrations/: an unknown name is refused by name.
      const unknown = await provider.call<{ failures: { property: string; reason: string }[] }>(
        "check",
        {},
        { databaseUrl: "postgres://tautulli@db.internal:5432/tautulli", migrations: ["nope"] },
      );
      assert.equal(unknown.failures[0]?.property, "migrations");
      assert.match(unknown.failures[0].reason, /nope/);
    } finally {
      await provider.close();
    }
  });

  it("finds the project from a subdirectory, and says what to do outside one", async () => {
    const sub = path.join(work, "ci", "plex-migrate", "lib");
    const fromSub = await LoadedProvider.loadText(text, sub);
    try {
      const result = await fromSub.call<{ failures: unknown[] }>(
        "check",
        {},
        { databaseUrl: "postgres://tautulli@db.internal:5432/tautulli", migrations },
      );
      assert.deepEqual(result.failures, []);
    } finally {
      await fromSub.close();
    }
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-not-a-checkout-"));
    const lost = await LoadedProvider.loadText(text, outside);
    try {
      await assert.rejects(
        lost.call("check", {}, { migrations }),
        /not inside a plex-migrate checkout .*Run pulumi from the project directory/,
      );
    } finally {
      await lost.close();
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });
});
