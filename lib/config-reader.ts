/**
 * Reading one stack's declared keys: each value typed by its Pulumi.yaml declaration, the default
 * applied, checked, and every problem collected (not thrown), so lib/config.ts can report them
 * all at once. A key read here must be declared, and lib/config.ts checks that every declared key
 * was read: one source of truth enforced in both directions.
 */
import * as pulumi from "@pulumi/pulumi";
import type { Check } from "./checks";

/** One key of Pulumi.yaml's `config:` block. */
export interface Declaration {
  type: "string" | "integer" | "boolean" | "array";
  default?: unknown;
  secret?: boolean;
  description?: string;
}

/**
 * Whether the stack stored `fullKey` encrypted: the CLI hands the language host the list of secret
 * keys (PULUMI_CONFIG_SECRET_KEYS), which @pulumi/pulumi's runtime/config.js reads in
 * isConfigSecret (exported by the module, not by its typings).
 */
function isConfigSecret(fullKey: string): boolean {
  const runtimeConfig = require("@pulumi/pulumi/runtime/config") as {
    isConfigSecret(key: string): boolean;
  };
  return runtimeConfig.isConfigSecret(fullKey);
}

export class ConfigReader {
  /** Every problem found so far, each naming the key (`<project>:<key>: ...`). */
  readonly problems: string[] = [];
  private readonly used = new Set<string>();

  constructor(
    private readonly project: string,
    private readonly config: pulumi.Config,
    private readonly declarations: Record<string, Declaration>,
  ) {}

  problem(key: string, text: string, fix?: string): void {
    this.problems.push(`${this.project}:${key}: ${text}${fix ? `. Fix: ${fix}` : ""}`);
  }

  /** Whether the stack sets `key` at all (for keys that are no longer declared). */
  isSet(key: string): boolean {
    return this.config.get(key) !== undefined;
  }

  /** Throws when a declared key was never read: a setting nothing uses. */
  assertEveryKeyRead(): void {
    for (const key of Object.keys(this.declarations)) {
      if (!this.used.has(key))
        throw new Error(`config key ${key} is declared in Pulumi.yaml but never read`);
    }
  }

  private declaration(key: string): Declaration {
    const decl = this.declarations[key];
    if (!decl)
      throw new Error(`config key ${key} is read by lib/config.ts but not declared in Pulumi.yaml`);
    this.used.add(key);
    return decl;
  }

  str(key: string, check?: Check): string {
    const decl = this.declaration(key);
    const value = this.config.get(key) ?? (decl.default as string | undefined);
    if (value === undefined) {
      this.problem(key, "is required but not set", `pulumi config set ${key} <value>`);
      return "";
    }
    const complaint = check?.(value);
    if (complaint) this.problem(key, complaint);
    return value;
  }

  /** A string whose "" (its default) means unset. */
  optionalStr(key: string, check?: Check): string | undefined {
    const value = this.str(key, (v) => (v === "" ? undefined : check?.(v)));
    return value === "" ? undefined : value;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[]): T {
    return this.str(key, (v) =>
      allowed.includes(v as T)
        ? undefined
        : `expected one of ${allowed.map((a) => `"${a}"`).join(", ")}, got "${v}"`,
    ) as T;
  }

  int(key: string, min: number, max: number): number {
    const decl = this.declaration(key);
    const text = this.config.get(key);
    const value = text === undefined ? (decl.default as number) : Number(text);
    if (!Number.isInteger(value) || value < min || value > max) {
      this.problem(key, `expected an integer from ${min} to ${max}, got "${text}"`);
      return Number(decl.default ?? min);
    }
    return value;
  }

  bool(key: string): boolean {
    const decl = this.declaration(key);
    const text = this.config.get(key);
    if (text === undefined) return Boolean(decl.default);
    if (text === "true" || text === "false") return text === "true";
    this.problem(key, `expected true or false, got "${text}"`);
    return Boolean(decl.default);
  }

  /** A list of strings, each checked; the items with a problem are left in (and reported). */
  list(key: string, check: Check): string[] {
    const decl = this.declaration(key);
    const text = this.config.get(key);
    let value: unknown = decl.default ?? [];
    if (text !== undefined) {
      try {
        value = JSON.parse(text);
      } catch {
        value = undefined;
      }
    }
    if (!Array.isArray(value) || value.some((item) => typeof item !== "string")) {
      this.problem(
        key,
        "expected a list of strings",
        `pulumi config set --path '${key}[0]' <value>`,
      );
      return [];
    }
    for (const item of value as string[]) {
      const complaint = check(item);
      if (complaint) this.problem(key, complaint);
    }
    return value as string[];
  }

  /** A list whose items `parse` turns into values or a complaint; only the parsed ones return. */
  parsedList<T>(key: string, parse: (item: string) => T | string): T[] {
    return this.list(key, (v) => {
      const parsed = parse(v);
      return typeof parsed === "string" ? parsed : undefined;
    })
      .map(parse)
      .filter((v): v is T => typeof v !== "string");
  }

  /**
   * A required secret: declared `secret: true` without a default in Pulumi.yaml, so the CLI itself
   * refuses a stack without it or with it in plain text (pkg/workspace/config.go, mergeConfig).
   */
  requiredSecret(key: string): pulumi.Output<string> {
    const decl = this.declaration(key);
    if (!decl.secret || decl.default !== undefined) {
      throw new Error(`Pulumi.yaml: ${key} must be declared secret: true without a default`);
    }
    const value = this.config.getSecret(key);
    if (value === undefined) {
      this.problem(key, "is required but not set", `pulumi config set --secret ${key} <value>`);
      return pulumi.secret("");
    }
    return value;
  }

  /**
   * An optional secret: declared with default "" and without `secret: true`, since the CLI
   * rejects a secret key with a default (pulumi/pulumi#21865). So the program checks that a set
   * value was stored encrypted, and reads it with getSecret so it stays a secret.
   */
  optionalSecret(key: string, required: boolean): pulumi.Output<string> | undefined {
    const decl = this.declaration(key);
    if (decl.secret || decl.default !== "") {
      throw new Error(`Pulumi.yaml: ${key} must be declared with default "" and no secret flag`);
    }
    const value = this.config.get(key);
    if (!value) {
      if (required) {
        this.problem(key, "is required but not set", `pulumi config set --secret ${key} <value>`);
      }
      return undefined;
    }
    if (!isConfigSecret(`${this.project}:${key}`)) {
      this.problem(
        key,
        "is stored in plain text in the stack file",
        `pulumi config set --secret ${key} <value> (and rotate it: it was readable)`,
      );
    }
    return this.config.getSecret(key);
  }
}
