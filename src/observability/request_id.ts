/**
 * Request ids: a random 64-bit per-isolate prefix plus a counter, in hex.
 *
 * One getRandomValues call per isolate instead of a UUID per request; the
 * prefix keeps ids unique across isolates and restarts. Ids are not secrets:
 * they are sequential within an isolate and must not be used for auth.
 *
 * @module
 */

/** Header carrying the id in and out. */
export const REQUEST_ID_HEADER = "x-request-id";

/** Longest client-supplied id accepted. */
export const MAX_REQUEST_ID_LENGTH = 128;

const PREFIX = (() => {
  const b = crypto.getRandomValues(new Uint32Array(2));
  return b[0].toString(16).padStart(8, "0") + b[1].toString(16).padStart(8, "0") + "-";
})();
let counter = 0;

/** A new id, e.g. "9f86d081884c7d65-1a". */
export function newRequestId(): string {
  return PREFIX + (++counter).toString(16);
}

// VCHAR (RFC 5234): printable ASCII without space; keeps ids safe in headers and logs.
const VALID = /^[\x21-\x7e]{1,128}$/;

/** Whether a client-supplied `X-Request-ID` is acceptable: 1–128 visible ASCII characters. */
export function isValidRequestId(value: string | null | undefined): value is string {
  return typeof value === "string" && VALID.test(value);
}

/** The incoming id when valid, else a fresh one. */
export function requestIdFrom(incoming: string | null | undefined): string {
  return isValidRequestId(incoming) ? incoming : newRequestId();
}
