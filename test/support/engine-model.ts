/**
 * What the real engine and pulumi-command do with the registrations the mocks recorded: which
 * step each resource gets on the next `pulumi up` (given the previous run as the state), and in
 * which order `pulumi destroy` deletes what, which deletes it refuses, which it skips, and which
 * VM commands run. Each rule names the upstream source it follows; the tests only feed it the
 * program's real registrations.
 */
import { isDeepStrictEqual } from "util";
import type { Registration } from "./pulumi-mocks";

const COMMAND = "command:remote:Command";
const JOB = "kubernetes:batch/v1:Job";

const jobTemplate = (inputs: Record<string, unknown>) =>
  (inputs.spec as { template?: unknown } | undefined)?.template;

/** A step of `pulumi up` for one resource, and the VM command it runs (if any). */
export interface PlannedStep {
  op: "create" | "same" | "update" | "replace" | "delete";
  name: string;
  type: string;
  /** For remote.Command: the command line that runs on the VM, or undefined when none does. */
  runs?: string;
}

/**
 * The inputs the engine diffs: the new inputs with every `ignoreChanges` path set back to its old
 * value, or removed when the old inputs had none (pulumi/pulumi pkg/resource/deploy/
 * step_generator.go processIgnoreChanges; sdk/go/common/resource/properties_path.go Reset).
 * Dotted paths of object keys are modelled ("spec.resources.requests.storage"), not indexes.
 */
export function processIgnoreChanges(
  inputs: Record<string, unknown>,
  oldInputs: Record<string, unknown>,
  ignoreChanges: string[],
): Record<string, unknown> {
  const result = structuredClone(inputs);
  for (const path of ignoreChanges) {
    if (path.includes("[")) {
      throw new Error(`engine model: index paths in ignoreChanges are not modelled, got ${path}`);
    }
    const keys = path.split(".");
    const last = keys.pop()!;
    const walk = (root: Record<string, unknown>) =>
      keys.reduce<Record<string, unknown> | undefined>((at, key) => {
        const next = at?.[key];
        return next && typeof next === "object" ? (next as Record<string, unknown>) : undefined;
      }, root);
    const oldParent = walk(oldInputs);
    const newParent = walk(result);
    if (!newParent) continue;
    if (oldParent && last in oldParent) newParent[last] = structuredClone(oldParent[last]);
    else delete newParent[last];
  }
  return result;
}

/**
 * What pulumi-command v1.2.1 runs (provider/pkg/provider/remote/commandController.go): Create runs
 * `create` (nothing when unset); Update runs `update`, else `create`, else nothing; Delete runs
 * the *old* state's `delete`. A `triggers` change replaces (common/inputs.go: replaceOnChanges):
 * the old resource's delete, then the new one's create.
 */
function commandRuns(op: PlannedStep["op"], inputs: Record<string, unknown>): string | undefined {
  const text = (key: string) => (typeof inputs[key] === "string" ? String(inputs[key]) : undefined);
  switch (op) {
    case "create":
      return text("create");
    case "update":
      return text("update") ?? text("create");
    case "delete":
      return text("delete");
    default:
      return undefined;
  }
}

/** The steps of a `pulumi up` of `next` on a stack whose state is `previous`. */
export function planUpdate(previous: Registration[], next: Registration[]): PlannedStep[] {
  const old = new Map(previous.map((r) => [r.urn, r]));
  const steps: PlannedStep[] = [];
  for (const reg of next) {
    const before = old.get(reg.urn);
    const step = (op: PlannedStep["op"], inputs = reg.inputs): PlannedStep => ({
      op,
      name: reg.name,
      type: reg.type,
      ...(reg.type === COMMAND ? { runs: commandRuns(op, inputs) } : {}),
    });
    if (!before) {
      steps.push(step("create"));
      continue;
    }
    const inputs = processIgnoreChanges(reg.inputs, before.inputs, reg.ignoreChanges);
    if (isDeepStrictEqual(inputs, before.inputs)) {
      steps.push(step("same"));
    } else if (
      reg.type === JOB &&
      !isDeepStrictEqual(jobTemplate(inputs), jobTemplate(before.inputs))
    ) {
      // A Job's .spec.template is immutable: pulumi-kubernetes replaces the Job
      // (provider/pkg/provider/diff.go, forceNew for batch/v1 Job).
      steps.push(step("replace", inputs));
    } else if (
      reg.type === COMMAND &&
      !isDeepStrictEqual(inputs.triggers, before.inputs.triggers)
    ) {
      steps.push({ ...step("replace", inputs), runs: commandRuns("create", inputs) });
      const deleted = commandRuns("delete", before.inputs);
      if (deleted) steps.push({ op: "delete", name: reg.name, type: reg.type, runs: deleted });
    } else {
      steps.push(step("update", inputs));
    }
  }
  // Resources no longer in the program are deleted at the end, with their old state.
  const present = new Set(next.map((r) => r.urn));
  for (const reg of previous) {
    if (present.has(reg.urn)) continue;
    steps.push({
      op: "delete",
      name: reg.name,
      type: reg.type,
      ...(reg.type === COMMAND ? { runs: commandRuns("delete", reg.inputs) } : {}),
    });
  }
  return steps;
}

/** The VM commands a plan runs, as "<resource>: <command line>". */
export function vmCommands(steps: PlannedStep[]): string[] {
  return steps.filter((s) => s.runs !== undefined).map((s) => `${s.name}: ${s.runs}`);
}

/**
 * What a resource's deletion waits for, as pulumi/pulumi pkg/resource/graph/dependency_graph.go
 * DependenciesOf counts it: its parent, its dependencies and property dependencies, its provider,
 * and, for a component among those, the component's children registered before it.
 */
export function dependenciesOf(state: Registration[], reg: Registration): Set<string> {
  const index = state.findIndex((r) => r.urn === reg.urn);
  const direct = new Set<string>([
    ...reg.dependencies,
    ...Object.values(reg.propertyDependencies).flat(),
  ]);
  if (reg.provider) direct.add(reg.provider.split("::").slice(0, -1).join("::"));
  const result = new Set<string>();
  for (let i = index - 1; i >= 0; i--) {
    const candidate = state[i];
    if (direct.has(candidate.urn)) {
      result.add(candidate.urn);
      if (!candidate.custom) {
        for (const child of descendants(state, candidate)) {
          if (state.indexOf(child) < index) result.add(child.urn);
        }
      }
    }
    if (candidate.urn === reg.parentUrn) result.add(candidate.urn);
  }
  return result;
}

function descendants(state: Registration[], parent: Registration): Registration[] {
  const children = state.filter((r) => r.parentUrn === parent.urn);
  return children.flatMap((c) => [c, ...descendants(state, c)]);
}

/** Everything `reg` depends on, directly or not. */
export function transitiveDependencies(state: Registration[], reg: Registration): Set<string> {
  const byUrn = new Map(state.map((r) => [r.urn, r]));
  const seen = new Set<string>();
  const todo = [...dependenciesOf(state, reg)];
  while (todo.length > 0) {
    const urn = todo.pop()!;
    if (seen.has(urn)) continue;
    seen.add(urn);
    const next = byUrn.get(urn);
    if (next) todo.push(...dependenciesOf(state, next));
  }
  return seen;
}

export interface DestroyStep {
  name: string;
  type: string;
  outcome: "deleted" | "retained" | "refused (protected)" | "skipped";
  /** For remote.Command: the delete command that runs on the VM. */
  runs?: string;
}

/**
 * `pulumi destroy` of `state` (the last up's registrations): deletions in antichains, each
 * resource after every resource that depends on it (pulumi/pulumi pkg/resource/deploy/
 * step_generator.go ScheduleDeletes); a protected resource's delete fails (step.go DeleteStep.Apply:
 * deleteProtectedError) and the deployment continues past it (step_executor.go) but skips every
 * resource it depends on (deployment_executor.go: erroredDeps); retainOnDelete removes the
 * resource from the state without calling its provider.
 */
export function planDestroy(state: Registration[]): DestroyStep[] {
  const condemned = new Set(state.map((r) => r.urn));
  const byUrn = new Map(state.map((r) => [r.urn, r]));
  const deps = new Map(state.map((r) => [r.urn, dependenciesOf(state, r)]));
  const antichains: string[][] = [];
  while (condemned.size > 0) {
    const chain = [...condemned].filter((urn) =>
      [...deps.get(urn)!].every((dep) => !condemned.has(dep)),
    );
    if (chain.length === 0) throw new Error("engine model: dependency cycle");
    chain.forEach((urn) => condemned.delete(urn));
    antichains.push(chain);
  }
  antichains.reverse();

  const skipped = new Set<string>();
  const steps: DestroyStep[] = [];
  for (const chain of antichains) {
    const failed: Registration[] = [];
    for (const urn of chain.sort()) {
      const reg = byUrn.get(urn)!;
      const base = { name: reg.name, type: reg.type };
      if (skipped.has(urn)) {
        steps.push({ ...base, outcome: "skipped" });
      } else if (reg.protect) {
        steps.push({ ...base, outcome: "refused (protected)" });
        failed.push(reg);
      } else if (reg.retainOnDelete) {
        steps.push({ ...base, outcome: "retained" });
      } else {
        const runs = reg.type === COMMAND ? commandRuns("delete", reg.inputs) : undefined;
        steps.push({ ...base, outcome: "deleted", ...(runs ? { runs } : {}) });
      }
    }
    for (const reg of failed) {
      for (const dep of transitiveDependencies(state, reg)) skipped.add(dep);
    }
  }
  return steps;
}
