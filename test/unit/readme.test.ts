/**
 * README.md stays true: its two newcomer commands are what CI and package.json run, its config
 * table is Pulumi.yaml's, and every npm script, config key and stack output it names exists.
 */
import * as assert from "assert";
import * as fs from "fs";
import * as path from "path";
import { projectConfigDeclarations } from "../../lib/config";
import { configTable } from "../../scripts/config-table";

const ROOT = path.resolve(__dirname, "..", "..");
const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
  scripts: Record<string, string>;
};

describe("README.md", () => {
  it("gives exactly two newcomer commands: the rehearsal and the tests that CI runs", () => {
    const quickStart = readme.split("## Quick start")[1]?.split("\n## ")[0] ?? "";
    const commands = quickStart
      .split("\n")
      .filter((line) => /^npm /.test(line.trim()))
      .map((line) => line.trim());
    assert.deepStrictEqual(commands, ["npm ci && npm run rehearse", "npm ci && npm test"]);
    const ci = fs.readFileSync(path.join(ROOT, ".ci", "run"), "utf8");
    assert.ok(
      ci.split("\n").some((line) => line.trim() === "npm ci && npm test"),
      ".ci/run runs the README's test command",
    );
  });

  it("holds the config table generated from Pulumi.yaml (npm run docs:config)", () => {
    const match = /<!-- BEGIN config-table -->\n([\s\S]*?)\n<!-- END config-table -->/.exec(readme);
    assert.ok(match, "config-table markers");
    assert.strictEqual(match[1], configTable(), "README table is stale: npm run docs:config");
  });

  it("names only npm scripts that exist", () => {
    const named = [...readme.matchAll(/npm run (?:-s )?([a-z][a-z:-]*)/g)].map((m) => m[1]);
    assert.ok(named.length > 3);
    for (const script of new Set(named)) assert.ok(pkg.scripts[script], `npm run ${script}`);
  });

  it("names only config keys that exist", () => {
    const declared = projectConfigDeclarations();
    const named = [
      ...readme.matchAll(/pulumi config set (?:--secret |--path )?'?([A-Za-z]+)/g),
    ].map((m) => m[1]);
    assert.ok(named.length > 3);
    for (const key of new Set(named)) assert.ok(declared[key], `config key ${key}`);
  });

  it("lists the stack outputs index.ts exports", () => {
    const index = fs.readFileSync(path.join(ROOT, "index.ts"), "utf8");
    const exported = [...index.matchAll(/^export const (\w+)/gm)].map((m) => m[1]);
    const listed = /Stack outputs: ([^.]+)\./.exec(readme.replace(/\n/g, " "))?.[1] ?? "";
    for (const name of exported) assert.ok(listed.includes(`\`${name}\``), `README lists ${name}`);
  });
});
