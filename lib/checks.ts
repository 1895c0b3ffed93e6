/**
 * The syntax rules a setting must follow, each once: used by lib/config.ts (which prefixes the
 * key) and by the components (which prefix the field). A check returns what is wrong, or
 * undefined when the value is fine.
 */

export type Check = (value: string) => string | undefined;

const PG_IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** A PostgreSQL name that needs no quoting: lower-case letters, digits and "_", at most 63. */
export function isPgIdentifier(value: string): boolean {
  return PG_IDENTIFIER.test(value);
}

export const pgIdentifier: Check = (v) =>
  isPgIdentifier(v)
    ? undefined
    : `expected a lower-case PostgreSQL identifier (letters, digits, "_"), got "${v}"`;

export const pgRoleName: Check = (v) =>
  isPgIdentifier(v) ? undefined : `expected a lower-case PostgreSQL role name, got "${v}"`;
