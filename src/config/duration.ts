/**
 * Go-style duration strings ("30s", "1h30m", "1.5s", "100us") → milliseconds.
 *
 * Loom's published format uses Go's `time.ParseDuration` syntax, so existing
 * configs keep working. Negative durations are rejected: no Loom setting means
 * anything by them.
 */

/**
 * [multiplier, divisor] to milliseconds; dividing for sub-ms units keeps "100ns"
 * exactly 0.0001. `µs` (micro sign) and `μs` (Greek mu) both appear in the wild.
 */
const UNIT_MS: Record<string, [number, number]> = {
  ns: [1, 1e6],
  us: [1, 1e3],
  "µs": [1, 1e3],
  "μs": [1, 1e3],
  ms: [1, 1],
  s: [1000, 1],
  m: [60_000, 1],
  h: [3_600_000, 1],
};

/** Human-readable list of accepted units, used in error messages. */
export const DURATION_UNITS = "ns, us (or µs), ms, s, m, h";

/** JSON-Schema pattern matching what {@link parseDuration} accepts as a string. */
export const DURATION_PATTERN = "^(0|([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$";

const PART = /([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)/y;

/** Result of parsing a duration: milliseconds, or an error message. */
export type DurationResult = { ok: true; ms: number } | { ok: false; error: string };

/**
 * Parses a Go-style duration into milliseconds (possibly fractional, e.g. "100ns").
 * A bare number is rejected (except 0) because "30" is ambiguous between s and ms.
 */
export function parseDuration(input: string | number): DurationResult {
  if (typeof input === "number") {
    return input === 0 ? { ok: true, ms: 0 } : {
      ok: false,
      error: `duration ${input} has no unit; write it with one of ${DURATION_UNITS}, e.g. "${input}s"`,
    };
  }
  const s = input.trim();
  if (s === "0") return { ok: true, ms: 0 };
  if (s === "") return { ok: false, error: `empty duration; use e.g. "30s" (units: ${DURATION_UNITS})` };
  if (/^[0-9.]+$/.test(s)) {
    return {
      ok: false,
      error: `duration "${s}" has no unit; write it with one of ${DURATION_UNITS}, e.g. "${s}s"`,
    };
  }
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    PART.lastIndex = pos;
    const m = PART.exec(s);
    if (!m) {
      return {
        ok: false,
        error: `invalid duration "${s}"; expected e.g. "30s", "1h30m", "1.5s" (units: ${DURATION_UNITS})`,
      };
    }
    const [mul, div] = UNIT_MS[m[2]];
    total += (Number(m[1]) * mul) / div;
    pos = PART.lastIndex;
  }
  return { ok: true, ms: total };
}
