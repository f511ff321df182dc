/**
 * Size strings ("512KB", "16MB", "1GiB", "1024") → bytes.
 *
 * Units are 1024-based and case-insensitive, matching Loom's Go `ParseSize`
 * (where "16MB" means 16 MiB); the `KiB`/`MiB`/`GiB` spellings are accepted too.
 */

const UNIT_BYTES: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1024,
  kib: 1024,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** Human-readable list of accepted units, used in error messages. */
export const SIZE_UNITS = "B, KB, MB, GB (1024-based; KiB, MiB, GiB also accepted)";

/** JSON-Schema pattern matching what {@link parseSize} accepts as a string. */
export const SIZE_PATTERN = "^[0-9]+ ?([bB]|[kKmMgG][iI]?[bB])?$";

const SIZE = /^([0-9]+) ?([kmg]i?b|b)?$/i;

/** Result of parsing a size: bytes, or an error message. */
export type SizeResult = { ok: true; bytes: number } | { ok: false; error: string };

/** Parses a size (bare integers are bytes) into a byte count. */
export function parseSize(input: string | number): SizeResult {
  if (typeof input === "number") {
    return Number.isInteger(input) && input >= 0
      ? { ok: true, bytes: input }
      : { ok: false, error: `invalid size ${input}; expected a whole number of bytes or e.g. "16MB"` };
  }
  const m = SIZE.exec(input.trim());
  if (!m) {
    return {
      ok: false,
      error: `invalid size "${input}"; expected e.g. "64KB", "16MB" (units: ${SIZE_UNITS})`,
    };
  }
  return { ok: true, bytes: Number(m[1]) * UNIT_BYTES[(m[2] ?? "").toLowerCase()] };
}
