/**
 * Header and query value matchers, compiled once at router construction.
 *
 * `regex` is an unanchored JavaScript `RegExp` test (like `RegExp#test`): it
 * matches anywhere in the value unless the pattern anchors itself with `^`/`$`.
 * `exact` is a case-sensitive string comparison. `present` only requires the
 * header or query parameter to exist (an empty value counts).
 *
 * @module
 */

import type { ValueMatcher } from "./types.ts";

const EXACT = 0;
const REGEX = 1;
const PRESENT = 2;

/** A compiled {@link ValueMatcher}. */
export class ValueTest {
  readonly #kind: number;
  readonly #value: string;
  readonly #re: RegExp | null;

  /** Compiles `m`; throws if a regex does not compile. `what` names it in errors. */
  constructor(m: ValueMatcher, what: string) {
    this.#value = "";
    this.#re = null;
    if (m.kind === "exact") {
      this.#kind = EXACT;
      this.#value = m.value;
    } else if (m.kind === "regex") {
      this.#kind = REGEX;
      try {
        // No "g"/"y" flag: those make `test` stateful across requests.
        this.#re = new RegExp(m.pattern);
      } catch (e) {
        throw new Error(`${what}: invalid regex "${m.pattern}": ${(e as Error).message}`);
      }
    } else if (m.kind === "present") {
      this.#kind = PRESENT;
    } else {
      throw new Error(`${what}: unknown matcher kind "${(m as { kind: string }).kind}"`);
    }
  }

  /** Whether `value` (undefined = absent) satisfies the matcher. */
  test(value: string | undefined): boolean {
    if (value === undefined) return false;
    if (this.#kind === EXACT) return value === this.#value;
    if (this.#kind === REGEX) return this.#re!.test(value);
    return true;
  }
}
