/**
 * Prints the README's stack-config table from Pulumi.yaml, the single source of the keys, their
 * defaults and meanings (`npm run docs:config`). A test keeps README.md equal to this output.
 */
import { projectConfigDeclarations } from "../lib/config";

const SECTIONS: Array<[string, RegExp]> = [
  [
    "Source VM",
    /^(vm(?!Retired)|sshPrivateKey|plexDataDir|plexService|tautulliService|tautulliDbPath|rollbackOnDestroy)/,
  ],
  ["Migration phases (README, Day 2)", /^(transferGeneration|tautulliImportGeneration|vmRetired)$/],
  ["Kubernetes", /^(kubeContext|namespace|createNamespace)$/],
  ["Library transfer (rsync over SSH)", /^(sync|warmCopy)/],
  ["Plex", /^plex/],
  ["PostgreSQL", /^postgres/],
  ["Tautulli database and import", /^(tautulli|import)/],
  ["Data safety", /^protectData$/],
];

function formatDefault(value: unknown, secret: boolean | undefined): string {
  if (value === undefined) return secret ? "**required** (secret)" : "**required**";
  const shown = Array.isArray(value) ? JSON.stringify(value) : value === "" ? '""' : String(value);
  return `\`${shown}\`${secret ? " (secret)" : ""}`;
}

export function configTable(): string {
  const declarations = projectConfigDeclarations();
  const lines: string[] = [];
  const placed = new Set<string>();
  for (const [title, pattern] of SECTIONS) {
    const keys = Object.keys(declarations).filter((k) => !placed.has(k) && pattern.test(k));
    if (keys.length === 0) continue;
    lines.push(`**${title}**`, "", "| key | type | default | meaning |", "|---|---|---|---|");
    for (const key of keys) {
      placed.add(key);
      const decl = declarations[key];
      const type = decl.type === "array" ? "list" : decl.type;
      const meaning = (decl.description ?? "").replace(/\s+/g, " ").replace(/\|/g, "\\|").trim();
      lines.push(
        `| \`${key}\` | ${type} | ${formatDefault(decl.default, decl.secret)} | ${meaning} |`,
      );
    }
    lines.push("");
  }
  const unplaced = Object.keys(declarations).filter((k) => !placed.has(k));
  if (unplaced.length > 0)
    throw new Error(`config keys without a README section: ${unplaced.join(", ")}`);
  return lines.join("\n").trimEnd();
}

if (require.main === module) {
  process.stdout.write(`${configTable()}\n`);
}
