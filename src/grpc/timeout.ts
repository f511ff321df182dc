/**
 * The `grpc-timeout` request field: an integer of at most 8 digits and a unit
 * (H hours, M minutes, S seconds, m milliseconds, u microseconds, n nanoseconds).
 *
 * @module
 */

/** `grpc-timeout` in milliseconds, or -1 when absent or invalid. */
export function parseGrpcTimeout(v: string | undefined): number {
  if (v === undefined || v.length < 2 || v.length > 9) return -1;
  const n = Number(v.slice(0, -1));
  if (!Number.isInteger(n) || n < 0) return -1;
  switch (v[v.length - 1]) {
    case "H":
      return n * 3_600_000;
    case "M":
      return n * 60_000;
    case "S":
      return n * 1000;
    case "m":
      return n;
    case "u":
      return Math.ceil(n / 1000);
    case "n":
      return Math.ceil(n / 1_000_000);
    default:
      return -1;
  }
}

/** `grpc-timeout` value for `ms` milliseconds (at most 8 digits, as the spec demands). */
export function formatGrpcTimeout(ms: number): string {
  const m = Math.max(1, Math.floor(ms));
  return m < 100_000_000 ? m + "m" : Math.ceil(m / 1000) + "S";
}
