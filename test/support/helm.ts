/**
 * Real Helm rendering of the vendored plex-media-server chart (reference/pms-chart/): the values
 * the program builds go through `helm template`, and the tests assert on the manifests Helm
 * writes. The binary is the one scripts/ensure-test-tools.sh builds from Helm's Go module
 * (`npm test` runs it first); without it the tests fail with the command that installs it.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as YAML from "yaml";
import { CHART_REFERENCE_DIR } from "../../lib/plex/chart";

const REPO_ROOT = path.join(__dirname, "..", "..");

/** The module version scripts/ensure-test-tools.sh installs. */
export const HELM_MODULE_VERSION = "v3.22.0";

/** Path of the Helm binary the tests run. */
export function helmBinary(): string {
  const toolsDir = process.env.PLEX_MIGRATE_TOOLS_DIR ?? path.join(REPO_ROOT, ".tools");
  const bin = path.join(toolsDir, "bin", "helm");
  if (!fs.existsSync(bin)) {
    throw new Error(
      `Helm is not installed at ${bin}. Fix: bash scripts/ensure-test-tools.sh (npm test runs it)`,
    );
  }
  return bin;
}

/** A rendered Kubernetes object (the fields the tests read; the rest is there as Helm wrote it). */
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

export interface RenderedChart {
  manifests: Manifest[];
  /** The one object of `kind` (and `name`, when given); throws when there is none or several. */
  get(kind: string, name?: string): Manifest;
  /** Whether an object of `kind` was rendered. */
  has(kind: string): boolean;
}

/**
 * `helm template <release> reference/pms-chart --namespace <ns> -f <values>`: the chart rendered
 * exactly as `helm install` would send it, without a cluster.
 */
export function renderChart(
  values: Record<string, unknown>,
  options: { releaseName?: string; namespace?: string } = {},
): RenderedChart {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plexk8s-helm-"));
  try {
    const valuesFile = path.join(dir, "values.json");
    // JSON is YAML, so Helm reads exactly the object the program hands to the Release.
    fs.writeFileSync(valuesFile, JSON.stringify(values));
    const stdout = execFileSync(
      helmBinary(),
      [
        "template",
        options.releaseName ?? "plex",
        CHART_REFERENCE_DIR,
        "--namespace",
        options.namespace ?? "plex",
        "--values",
        valuesFile,
      ],
      {
        encoding: "utf8",
        env: {
          ...process.env,
          HELM_CACHE_HOME: path.join(dir, "cache"),
          HELM_CONFIG_HOME: path.join(dir, "config"),
          HELM_DATA_HOME: path.join(dir, "data"),
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    // Read as the API server's decoder does: sigs.k8s.io/yaml (go-yaml, YAML 1.1), where the
    // chart's `defaultMode: 0700` is octal 448, not YAML 1.2's decimal 700.
    const manifests = YAML.parseAllDocuments(stdout, { version: "1.1" })
      .map((doc) => {
        if (doc.errors.length > 0) throw new Error(`Helm wrote invalid YAML: ${doc.errors[0]}`);
        return doc.toJS() as Manifest | null;
      })
      .filter((m): m is Manifest => m !== null);
    return {
      manifests,
      get(kind, name) {
        const found = manifests.filter(
          (m) => m.kind === kind && (name === undefined || m.metadata.name === name),
        );
        if (found.length !== 1) {
          throw new Error(
            `expected one ${kind}${name ? ` ${name}` : ""}, Helm rendered ${found.length}: ` +
              manifests.map((m) => `${m.kind}/${m.metadata.name}`).join(", "),
          );
        }
        return found[0];
      },
      has(kind) {
        return manifests.some((m) => m.kind === kind);
      },
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
