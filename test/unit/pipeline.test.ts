/**
 * The deployment pipeline (.github/workflows/deploy.yml): valid for GitHub (checked by
 * action-validator's workflow schema), and shaped as the README promises. The affected-stacks
 * script runs for real against a throw-away git repository.
 */
import * as assert from "assert";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as YAML from "yaml";

const ROOT = path.resolve(__dirname, "..", "..");
const WORKFLOW = path.join(ROOT, ".github", "workflows", "deploy.yml");

interface Step {
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
  env?: Record<string, string>;
}
interface Job {
  needs?: string | string[];
  if?: string;
  environment?: string;
  concurrency?: { group: string; "cancel-in-progress": boolean };
  strategy?: { matrix: Record<string, unknown> };
  steps: Step[];
}

const workflowText = fs.readFileSync(WORKFLOW, "utf8");
const workflow = YAML.parse(workflowText) as {
  on: Record<string, unknown>;
  jobs: Record<string, Job>;
};
const stacks = fs
  .readdirSync(ROOT)
  .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
  .filter((s): s is string => Boolean(s))
  .sort();

function pulumiStep(job: Job): Step {
  const steps = job.steps.filter((s) => s.uses?.startsWith("pulumi/actions@"));
  assert.strictEqual(steps.length, 1, "one pulumi/actions step");
  return steps[0];
}

describe("deployment pipeline (.github/workflows/deploy.yml)", () => {
  it("passes the GitHub workflow schema (action-validator)", () => {
    const { validateWorkflow } = require("@action-validator/core");
    const state = validateWorkflow(workflowText) as { errors: unknown[] };
    assert.deepStrictEqual(state.errors, []);
  });

  it("the schema check catches a broken workflow (the validator is really checking)", () => {
    const { validateWorkflow } = require("@action-validator/core");
    const broken = workflowText.replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest");
    assert.ok((validateWorkflow(broken) as { errors: unknown[] }).errors.length > 0);
  });

  it("runs on pull requests and pushes to main", () => {
    assert.deepStrictEqual(Object.keys(workflow.on).sort(), [
      "pull_request",
      "push",
      "workflow_dispatch",
    ]);
    assert.deepStrictEqual((workflow.on.push as { branches: string[] }).branches, ["main"]);
  });

  it("tests with exactly what CI runs (.ci/run)", () => {
    const runs = workflow.jobs.test.steps.map((s) => s.run).filter(Boolean);
    assert.deepStrictEqual(runs, ["bash .ci/run"]);
  });

  it("previews only the affected stacks, on pull requests, after the tests", () => {
    const preview = workflow.jobs.preview;
    assert.match(preview.if ?? "", /github\.event_name == 'pull_request'/);
    assert.deepStrictEqual(preview.needs, ["test", "affected"]);
    assert.strictEqual(
      preview.strategy?.matrix.stack,
      "${{ fromJSON(needs.affected.outputs.stacks) }}",
    );
    assert.match(
      workflow.jobs.affected.steps.map((s) => s.run ?? "").join("\n"),
      /scripts\/affected-stacks\.sh/,
    );
    const step = pulumiStep(preview);
    assert.strictEqual(step.with?.command, "preview");
    assert.strictEqual(step.with?.["stack-name"], "${{ matrix.stack }}");
  });

  it("has one `pulumi up` job per stack file, on main only, never two at once per stack", () => {
    const upJobs = Object.entries(workflow.jobs).filter(([, job]) =>
      job.steps.some((s) => s.uses?.startsWith("pulumi/actions@") && s.with?.command === "up"),
    );
    assert.deepStrictEqual(
      upJobs.map(([name]) => name).sort(),
      stacks.map((s) => `up-${s}`),
    );
    for (const [name, job] of upJobs) {
      const stack = name.replace(/^up-/, "");
      assert.strictEqual(pulumiStep(job).with?.["stack-name"], stack);
      assert.strictEqual(job.environment, stack, `${name} uses the ${stack} environment`);
      assert.strictEqual(job.concurrency?.group, `pulumi-up-${stack}`);
      assert.strictEqual(
        job.concurrency?.["cancel-in-progress"],
        false,
        "an up is never cancelled",
      );
      assert.match(
        job.if ?? "",
        /github\.event_name == 'push' && github\.ref == 'refs\/heads\/main'/,
      );
      assert.ok(
        ([] as string[]).concat(job.needs ?? []).includes("test"),
        `${name} needs the tests`,
      );
    }
    assert.ok(
      ([] as string[]).concat(workflow.jobs["up-prod"].needs ?? []).includes("up-dev"),
      "prod after dev",
    );
  });

  it("takes credentials only from secrets, never from the file", () => {
    const envMaps: Array<Record<string, string>> = [
      (workflow as unknown as { env: Record<string, string> }).env,
      ...Object.values(workflow.jobs).flatMap((job) => job.steps.map((s) => s.env ?? {})),
    ];
    const credentials = envMaps.flatMap((env) =>
      Object.entries(env).filter(([key]) => /TOKEN|PASSPHRASE|KUBECONFIG|PASSWORD|KEY/.test(key)),
    );
    assert.ok(credentials.length >= 4);
    for (const [key, value] of credentials) {
      // Every credential is an expression over secrets.* only (no literal value, no vars.*).
      assert.match(value, /^\$\{\{ .*secrets\.[A-Z_]+.* \}\}$/, key);
      assert.ok(!/vars\./.test(value), key);
    }
  });

  describe("scripts/affected-stacks.sh (real git)", () => {
    let repo: string;
    const git = (...args: string[]) =>
      execFileSync("git", args, {
        cwd: repo,
        encoding: "utf8",
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: "t",
          GIT_AUTHOR_EMAIL: "t@t",
          GIT_COMMITTER_NAME: "t",
          GIT_COMMITTER_EMAIL: "t@t",
        },
      });
    const affected = () =>
      JSON.parse(
        execFileSync("bash", [path.join(ROOT, "scripts", "affected-stacks.sh"), "base", "HEAD"], {
          cwd: repo,
          encoding: "utf8",
        }),
      );
    function change(files: Record<string, string | null>) {
      git("checkout", "-q", "-B", "work", "base");
      for (const [file, content] of Object.entries(files)) {
        if (content === null) fs.rmSync(path.join(repo, file));
        else {
          fs.mkdirSync(path.dirname(path.join(repo, file)), { recursive: true });
          fs.writeFileSync(path.join(repo, file), content);
        }
      }
      git("add", "-A");
      git("commit", "-qm", "change");
    }

    before(() => {
      repo = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-affected-"));
      git("init", "-q");
      for (const f of [
        "Pulumi.yaml",
        "Pulumi.dev.yaml",
        "Pulumi.prod.yaml",
        "index.ts",
        "README.md",
      ]) {
        fs.writeFileSync(path.join(repo, f), `${f}\n`);
      }
      git("add", "-A");
      git("commit", "-qm", "base");
      git("branch", "base");
    });
    after(() => fs.rmSync(repo, { recursive: true, force: true }));

    it("a stack file change affects only that stack", () => {
      change({ "Pulumi.prod.yaml": "changed\n" });
      assert.deepStrictEqual(affected(), ["prod"]);
    });
    it("a program change affects every stack", () => {
      change({ "components/x.ts": "x\n", "Pulumi.dev.yaml": "changed\n" });
      assert.deepStrictEqual(affected(), ["dev", "prod"]);
      change({ "Pulumi.yaml": "changed\n" });
      assert.deepStrictEqual(affected(), ["dev", "prod"]);
    });
    it("documentation alone affects none", () => {
      change({ "README.md": "docs\n", "docs/a.md": "a\n" });
      assert.deepStrictEqual(affected(), []);
    });
    it("a new stack is previewed, a deleted one is not", () => {
      change({ "Pulumi.staging.yaml": "new\n", "Pulumi.dev.yaml": null });
      assert.deepStrictEqual(affected(), ["staging"]);
    });
  });
});
