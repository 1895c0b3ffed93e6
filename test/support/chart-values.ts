/**
 * Checks values against the chart's own values.yaml: a key the chart does not declare is ignored
 * by Helm without a word, so a typo would silently drop a setting (say, the existing claim, and
 * with it the migrated library). Used by the tests against reference/pms-chart/values.yaml.
 */
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";
import { CHART_REFERENCE_DIR } from "../../lib/plex/chart";

/**
 * Keys the chart's templates read that its values.yaml documents only in comments (so they are
 * absent from the parsed defaults): `service.loadBalancerIP` and `service.externalTrafficPolicy`
 * in templates/service.yaml. The Helm render tests prove each reaches the rendered Service.
 */
export const COMMENTED_CHART_VALUES = {
  service: { loadBalancerIP: "", externalTrafficPolicy: "" },
} as const;

/** The chart's values.yaml plus {@link COMMENTED_CHART_VALUES}. */
export function loadChartValues(
  file: string = path.join(CHART_REFERENCE_DIR, "values.yaml"),
): Record<string, unknown> {
  const values = YAML.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  const service = { ...(values.service as Record<string, unknown>) };
  for (const [key, value] of Object.entries(COMMENTED_CHART_VALUES.service)) {
    if (key in service) throw new Error(`${file} now declares service.${key}: drop it here`);
    service[key] = value;
  }
  return { ...values, service };
}

/**
 * Values whose default is `{}` but that the templates render as a raw list: statefulset.yaml puts
 * `{{- with .Values.extraInitContainers }}{{- toYaml . | nindent 6 }}` under `initContainers:`,
 * so only a list renders valid YAML (checked by real Helm in test/unit/plex-chart-render.test.ts).
 */
const LIST_VALUES_WITH_MAP_DEFAULT = new Set(["extraInitContainers"]);

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Problems with `values` measured against the chart's defaults, one line each (empty = fine):
 * a key the chart does not have, or a map/list where the chart has the other kind. Where the
 * chart's default is a list, an empty map (`{}`, e.g. `pms.resources`, `extraInitContainers`) or
 * null, the value is raw Kubernetes YAML passed through, so its inside is not checked.
 */
export function unknownValueKeys(
  values: Record<string, unknown>,
  chartDefaults: Record<string, unknown>,
  prefix = "",
): string[] {
  const problems: string[] = [];
  for (const [key, value] of Object.entries(values)) {
    const keyPath = prefix ? `${prefix}.${key}` : key;
    if (!(key in chartDefaults)) {
      problems.push(`${keyPath}: not a value of the chart`);
      continue;
    }
    const chartDefault = chartDefaults[key];
    if (!prefix && LIST_VALUES_WITH_MAP_DEFAULT.has(key)) {
      if (!Array.isArray(value)) problems.push(`${keyPath}: the chart expects a list`);
    } else if (Array.isArray(chartDefault)) {
      if (!Array.isArray(value)) problems.push(`${keyPath}: the chart expects a list`);
    } else if (isMap(chartDefault)) {
      if (!isMap(value)) {
        problems.push(`${keyPath}: the chart expects a map`);
      } else if (Object.keys(chartDefault).length > 0) {
        problems.push(...unknownValueKeys(value, chartDefault, keyPath));
      }
    } else if (chartDefault !== null && (isMap(value) || Array.isArray(value))) {
      problems.push(`${keyPath}: the chart expects a ${typeof chartDefault}, not a map or list`);
    }
  }
  return problems;
}
