/**
 * Secret redaction for `GET /config`.
 *
 * @module
 */

/** Replacement for redacted values. */
export const REDACTED = "[REDACTED]";

/** Keys whose values are secrets wherever they appear. */
export const SECRET_KEY = /secret|password|token|api[_-]?key|private[_-]?key|credential/i;

/**
 * A deep copy of `value` with secret values replaced by {@link REDACTED}:
 * values under keys matching {@link SECRET_KEY}, and the password hashes of
 * `admin.auth.users` (usernames stay visible). The input is not mutated.
 */
export function redactConfig<T>(value: T): T {
  return redact(value, []) as T;
}

function redact(value: unknown, path: string[]): unknown {
  if (Array.isArray(value)) return value.map((v) => redact(v, path));
  if (value === null || typeof value !== "object") return value;
  const isAdminUsers = path.length === 3 && path[0] === "admin" && path[1] === "auth" && path[2] === "users";
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = isAdminUsers || SECRET_KEY.test(k) ? REDACTED : redact(v, [...path, k]);
  }
  return out;
}
