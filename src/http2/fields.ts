/**
 * Flat field lists as H2Stream carries them: `[name, value, name, value, ...]`,
 * names lower-case.
 *
 * @module
 */

/** The value of the first field `name`, or undefined. */
export function field(fields: string[], name: string): string | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

/** The list as `[name, value]` pairs. */
export function fieldPairs(fields: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < fields.length; i += 2) out.push([fields[i], fields[i + 1]]);
  return out;
}
