/**
 * The deployment pipeline (.github/workflows/deploy.yml): valid for GitHub (checked by
 * action-validator's workflow schema), and shaped as the README promises. The affected-stacks
 * script runs for real against a throw-away git repository.
 */
import * as assert from "assert";
import { execFileSync, spawnSync } from "child_process";
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
  env?: Record<string, string>;
  concurrency?: { group: string; "cancel-in-progress": boolean };
  strategy?: { matrix: Record<string, unknown> };
  steps: Step[];
}

const workflowText = fs.readFileSync(WORKFLOW, "utf8");
const workflow = YAML.parse(workflowText) as {
  on: Record<string, unknown>;
  env: Record<string, string>;
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

  it("previews only the affected stacks but prod, on pull requests, after the tests", () => {
    const preview = workflow.jobs.preview;
    assert.match(preview.if ?? "", /github\.event_name == 'pull_request'/);
    assert.deepStrictEqual(preview.needs, ["test", "affected"]);
    assert.strictEqual(
      preview.strategy?.matrix.stack,
      "${{ fromJSON(needs.affected.outputs.stacks) }}",
    );
    assert.match(
      workflow.jobs.affected.steps.map((s) => s.run ?? "").join("\n"),
      /bash scripts\/affected-stacks\.sh --except prod "origin\/\$BASE_REF" HEAD/,
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
      assert.strictEqual(job.concurrency?.group, `pulumi-${stack}`);
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
    // Reviewers approve prod's up after its preview of the same (merged) code.
    const previewProd = workflow.jobs["preview-prod"];
    assert.strictEqual(pulumiStep(previewProd).with?.command, "preview");
    assert.strictEqual(pulumiStep(previewProd).with?.["stack-name"], "prod");
    assert.strictEqual(previewProd.environment, "prod-preview");
    assert.match(
      previewProd.if ?? "",
      /github\.event_name == 'push' && github\.ref == 'refs\/heads\/main'/,
    );
    assert.ok(
      ([] as string[]).concat(workflow.jobs["up-prod"].needs ?? []).includes("preview-prod"),
    );
  });

  // Which jobs a pull request can run: those whose `if` does not require a push.
  const pullRequestJobs = Object.entries(workflow.jobs).filter(
    ([, job]) => !/github\.event_name == 'push'/.test(job.if ?? ""),
  );

  it("never runs pull request code with prod's credentials", () => {
    assert.deepStrictEqual(pullRequestJobs.map(([name]) => name).sort(), [
      "affected",
      "preview",
      "test",
    ]);
    // No credential at workflow level: only a job in an environment gets that environment's.
    assert.ok(!/secrets\./.test(JSON.stringify(workflow.env ?? {})), "workflow-level secrets");
    for (const [name, job] of pullRequestJobs) {
      const text = JSON.stringify(job);
      if (name === "preview") {
        assert.strictEqual(job.environment, "preview", "previews use their own environment");
      } else {
        assert.ok(!/secrets\./.test(text), `${name} reads no secret`);
        assert.strictEqual(job.environment, undefined, name);
      }
      assert.ok(!/\bprod\b/.test(job.environment ?? ""), `${name} is not in a prod environment`);
    }
    for (const [name, job] of Object.entries(workflow.jobs)) {
      if (/secrets\.(PULUMI|KUBECONFIG)/.test(JSON.stringify(job))) {
        assert.ok(job.environment, `${name} reads credentials outside an environment`);
      }
    }
  });

  const deployJobs = Object.entries(workflow.jobs).filter(([, job]) =>
    job.steps.some((s) => s.uses?.startsWith("pulumi/actions@")),
  );

  it("puts the kubeconfig under $RUNNER_TEMP, exports KUBECONFIG, fails when it is empty, removes it", () => {
    assert.ok(!workflowText.includes("~/.kube"), "nothing writes the shared ~/.kube");
    for (const [name, job] of deployJobs) {
      const index = job.steps.findIndex((s) => s.run?.includes('$RUNNER_TEMP/kubeconfig"'));
      assert.ok(index >= 0, `${name} writes a kubeconfig`);
      const step = job.steps[index];
      assert.strictEqual(step.env?.KUBECONFIG_CONTENT, "${{ secrets.KUBECONFIG }}", name);
      assert.ok(index < job.steps.findIndex((s) => s.uses?.startsWith("pulumi/actions@")), name);
      const last = job.steps[job.steps.length - 1] as Step & { if?: string };
      assert.strictEqual(last.run, 'rm -f "$RUNNER_TEMP/kubeconfig"', `${name} removes it`);
      assert.strictEqual(last.if, "always()", `${name} removes it even after a failure`);

      // The step's script, run for real: an empty secret fails with the fix; a set one is written
      // for this job only (0600) and KUBECONFIG points the providers at it.
      const temp = fs.mkdtempSync(path.join(os.tmpdir(), "plex-migrate-runner-"));
      const githubEnv = path.join(temp, "github-env");
      const runStep = (content: string) =>
        spawnSync("bash", ["-e", "-c", step.run!], {
          encoding: "utf8",
          env: {
            PATH: process.env.PATH,
            RUNNER_TEMP: temp,
            GITHUB_ENV: githubEnv,
            KUBECONFIG_CONTENT: content,
          },
        });
      try {
        const empty = runStep("");
        assert.strictEqual(empty.status, 1, `${name}: an empty KUBECONFIG fails`);
        assert.match(
          empty.stdout,
          /::error::the environment's KUBECONFIG secret is empty or missing/,
        );
        assert.ok(!fs.existsSync(path.join(temp, "kubeconfig")));
        const set = runStep("apiVersion: v1\nkind: Config\n");
        assert.strictEqual(set.status, 0, set.stderr);
        assert.strictEqual(
          fs.readFileSync(path.join(temp, "kubeconfig"), "utf8"),
          "apiVersion: v1\nkind: Config\n\n",
        );
        assert.strictEqual(fs.statSync(path.join(temp, "kubeconfig")).mode & 0o777, 0o600);
        assert.strictEqual(fs.readFileSync(githubEnv, "utf8"), `KUBECONFIG=${temp}/kubeconfig\n`);
      } finally {
        fs.rmSync(temp, { recursive: true, force: true });
      }
    }
  });

  it("gives previews and ups of one stack one concurrency group that never cancels", () => {
    for (const [name, job] of deployJobs) {
      const stack = String(pulumiStep(job).with?.["stack-name"]);
      const group =
        stack === "${{ matrix.stack }}" ? "pulumi-${{ matrix.stack }}" : `pulumi-${stack}`;
      assert.strictEqual(job.concurrency?.group, group, name);
      assert.strictEqual(job.concurrency?.["cancel-in-progress"], false, name);
    }
  });

  it("pins the Pulumi CLI to the SDK's version", () => {
    const sdk = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")).dependencies[
      "@pulumi/pulumi"
    ];
    assert.match(sdk, /^\d+\.\d+\.\d+$/, "package.json pins @pulumi/pulumi exactly");
    assert.strictEqual(workflow.env.PULUMI_VERSION, sdk);
    for (const [name, job] of deployJobs) {
      assert.strictEqual(
        pulumiStep(job).with?.["pulumi-version"],
        "${{ env.PULUMI_VERSION }}",
        name,
      );
    }
  });

  it("takes credentials only from secrets, never from the file", () => {
    const envMaps: Array<Record<string, string>> = [
      workflow.env,
      ...Object.values(workflow.jobs).map((job) => job.env ?? {}),
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
    it("--except leaves a stack out (pull requests never preview prod)", () => {
      const except = () =>
        JSON.parse(
          execFileSync(
            "bash",
            [path.join(ROOT, "scripts", "affected-stacks.sh"), "--except", "prod", "base", "HEAD"],
            { cwd: repo, encoding: "utf8" },
          ),
        );
      change({ "index.ts": "changed\n" });
      assert.deepStrictEqual(except(), ["dev"]);
      change({ "Pulumi.prod.yaml": "changed\n" });
      assert.deepStrictEqual(except(), []);
    });
    it("a new stack is previewed, a deleted one is not", () => {
      change({ "Pulumi.staging.yaml": "new\n", "Pulumi.dev.yaml": null });
      assert.deepStrictEqual(affected(), ["staging"]);
    });
  });
});
