/** The one-line progress display of long imports (the CLI redraws it on a terminal). */
import type { ImportProgress } from "./run-import";

const number = new Intl.NumberFormat("en-US");

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** e.g. `copy session_history 450,000/1,000,000 | all 31% | 52,300 rows/s | ETA 1m12s`. */
export function formatProgressLine(event: ImportProgress): string {
  if (event.phase !== "copy") return `${event.phase}: ${event.message}`;
  const percent = event.totalRows > 0 ? Math.floor((100 * event.rows) / event.totalRows) : 100;
  const table =
    event.tableTotalRows !== undefined
      ? `${event.table} ${number.format(event.tableRows ?? 0)}/${number.format(event.tableTotalRows)}`
      : (event.table ?? "");
  const eta = event.etaSeconds !== undefined ? ` | ETA ${formatDuration(event.etaSeconds)}` : "";
  return `copy ${table} | all ${percent}% | ${number.format(Math.round(event.rowsPerSecond))} rows/s${eta}`;
}
