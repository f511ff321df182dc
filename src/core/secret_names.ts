/**
 * Which names carry secrets: one rule for every place Loom hides values
 * (`GET /config`, TRACE echoes, logs).
 *
 * @module
 */

/** Replacement for redacted values. */
export const REDACTED = "[REDACTED]";

/** Keys whose values are secrets wherever they appear. */
export const SECRET_KEY = /secret|password|token|api[_-]?key|private[_-]?key|credential/i;

/** Header names that carry credentials whatever their spelling suggests. */
const CREDENTIAL_HEADER = /^(?:proxy-)?authorization$|^(?:set-)?cookie$/i;
/** A word of a name (split at "-", "_", ".") that marks a secret: `X-Auth-Token`, `sig`, `X-Amz-Signature`. */
const SECRET_WORD =
  /(?:^|[-_.])(?:auth|authorization|token|key|apikey|secret|session|sessionid|sig|signature|pass|passwd|password|pwd|credentials?|cookie)(?:[-_.]|$)/i;

/**
 * True for a header or query parameter name whose value is a credential:
 * `authorization`, `cookie`, `x-api-key`, `x-auth-token`, `sig`, `access_token`...
 */
export function isSecretName(name: string): boolean {
  return SECRET_KEY.test(name) || CREDENTIAL_HEADER.test(name) || SECRET_WORD.test(name);
}
