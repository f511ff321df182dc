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

/** A field list's size as SETTINGS_MAX_HEADER_LIST_SIZE counts it: name + value + 32 per field (RFC 9113 §6.5.2). */
export function fieldSectionSize(fields: string[]): number {
  let n = 0;
  for (let i = 0; i < fields.length; i++) n += fields[i].length;
  return n + 32 * (fields.length >>> 1);
}
