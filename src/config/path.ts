/** Helpers for the YAML paths used in error messages: `routes[2].upstream`. */

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** Appends a mapping key; odd keys are quoted so the path stays unambiguous. */
export function joinKey(path: string, key: string): string {
  const part = PLAIN_KEY.test(key) ? key : JSON.stringify(key);
  if (path === "") return PLAIN_KEY.test(key) ? key : `[${part}]`;
  return PLAIN_KEY.test(key) ? `${path}.${key}` : `${path}[${part}]`;
}

/** Appends a sequence index. */
export function joinIndex(path: string, index: number): string {
  return `${path}[${index}]`;
}
