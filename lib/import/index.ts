/**
 * The Tautulli SQLite -> PostgreSQL import (no Pulumi inside). Used by `npm run import`
 * (scripts/import.ts), the SqliteImport dynamic provider (components/sqlite-import.ts via
 * lib/import/provider.ts), `npm run rehearse` and `npm run bench:import`. Rules: docs/import.md.
 */
export { runImport } from "./run-import";
export type { ImportOptions, ImportProgress } from "./run-import";
export { formatSummary } from "./report";
export type { ImportReport, ImportWarning, TableReport, ValueSample } from "./report";
export { ImportError, isImportError } from "./errors";
export type { ImportErrorCode } from "./errors";
export { RULES } from "./normalize";
export type { RuleInfo } from "./normalize";
export { sourceFingerprint } from "./sqlite-source";
export { formatProgressLine } from "./progress";
