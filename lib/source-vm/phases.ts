/**
 * When a VM step runs: the lifecycle rule, stated once.
 *
 * A step runs once per generation. Its resource name carries the generations it belongs to
 * (`source-vm-stop`, then `source-vm-stop-gen-2-1` after `transferGeneration: 2`), and every input
 * of a step is in `ignoreChanges`:
 *
 * - Until the step succeeded it is not in the state (pulumi-command returns no ID for a failed
 *   create, pulumi-go-provider v1.3.0 infer/resource.go), so the next `pulumi up` creates it again
 *   with the current settings, script and connection: a failed step is retried with the fix.
 * - Once it succeeded, the engine sets every ignored input back to its recorded value before the
 *   diff (pulumi/pulumi pkg/resource/deploy/step_generator.go, processIgnoreChanges), so no change
 *   of a connection detail, of the script text or of any setting runs it again; refresh reads no
 *   VM either (remote.Command has no Read of its own).
 * - A new generation is a new name, so a new resource: the engine creates it with the current
 *   inputs and deletes the old one, whose delete runs nothing (steps have no `delete`). A
 *   `triggers` replacement would not do: processIgnoreChanges carries the old, ignored values
 *   (old script, old connection) into the replacement.
 */

export interface MigrationGenerations {
  /** Bump to run the whole transfer again (preflight, sync access, stop, revoke). */
  transfer: number;
  /** Bump to take a new Tautulli snapshot and import it again (stop, revoke). */
  tautulliImport: number;
}

export type MigrationStep = "preflight" | "authorize-sync" | "stop" | "revoke-sync";

/** The generations whose change runs each step again. */
export const STEP_GENERATIONS: Record<MigrationStep, readonly (keyof MigrationGenerations)[]> = {
  preflight: ["transfer"],
  "authorize-sync": ["transfer"],
  stop: ["transfer", "tautulliImport"],
  "revoke-sync": ["transfer", "tautulliImport"],
};

/** Every input of `remote.Command` (pulumi-command v1.2.1 remote/command.go, common/inputs.go). */
export const FROZEN_STEP_INPUTS = [
  "connection",
  "create",
  "update",
  "delete",
  "stdin",
  "triggers",
  "environment",
  "logging",
  "addPreviousOutputInEnv",
] as const;

/** `${component}-${step}`, plus `-gen-<n>[-<m>]` once any of its generations is past 1. */
export function stepResourceName(
  component: string,
  step: MigrationStep,
  generations: MigrationGenerations,
): string {
  const values = STEP_GENERATIONS[step].map((key) => generations[key]);
  if (values.every((value) => value === 1)) return `${component}-${step}`;
  return `${component}-${step}-gen-${values.join("-")}`;
}

/** Why a preview with the VM retired refuses: the steps named have not run in this stack. */
export function retiredStepProblem(stepNames: string[]): string {
  const steps =
    stepNames.length === 1 ? `step ${stepNames[0]} has` : `steps ${stepNames.join(", ")} have`;
  return (
    `vmRetired is true, but the VM ${steps} not run in this stack (a new stack, a ` +
    "step that failed, or a raised transferGeneration/tautulliImportGeneration), and running them " +
    "needs the VM. Fix: while the VM is still reachable, pulumi config set vmRetired false and " +
    "run pulumi up; otherwise set the generations back to the values of the last successful up"
  );
}

/** The largest generation: far more re-runs than a migration has, small enough for any marker. */
export const MAX_GENERATION = 1_000_000;

/** Why `value` cannot be a generation (a whole number from 1 to MAX_GENERATION). */
export function generationProblem(value: number): string | undefined {
  return Number.isInteger(value) && value >= 1 && value <= MAX_GENERATION
    ? undefined
    : `expected a whole number from 1 to ${MAX_GENERATION} (each bump runs the steps again), got ${value}`;
}

export function generationProblems(generations: MigrationGenerations): string[] {
  return (Object.keys(generations) as (keyof MigrationGenerations)[]).flatMap((key) => {
    const problem = generationProblem(generations[key]);
    return problem ? [`generations.${key}: ${problem}`] : [];
  });
}
