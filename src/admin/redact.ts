/**
 * Secret redaction for `GET /config`.
 *
 * @module
 */

import { joinIndex, joinKey } from "../config/path.ts";
import { isSecretName, REDACTED, SECRET_KEY } from "../core/secret_names.ts";

export { isSecretName, REDACTED, SECRET_KEY };

/** An api_key middleware's key list entry. */
const API_KEY_ENTRY = /\.api_key\.keys\[\d+\]$/;

/** Keys whose children are header or query parameter names (`headers`, `query_params`, `set` below `headers`). */
const NAME_MAP = /header|query|param/i;

/** Path of an entry of a `middleware:` list (top level or a route's). */
const MIDDLEWARE_ENTRY = /(?:^|\.)middleware\[\d+\]$/;
/** The users map of a `basic_auth` middleware (its options' YAML path is the entry's name). */
const BASIC_AUTH_USERS = /(?:^|\.)middleware\[\d+\]\.basic_auth\.users$/;

const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;
const PARAM = /([?&;#])([^=&;#]*)=([^&;#]*)/g;

/**
 * `value` with the userinfo of a URL (`postgres://user:pass@db` -> `postgres://[REDACTED]@db`)
 * and the values of secret-looking query parameters (`/health?token=x` -> `/health?token=[REDACTED]`)
 * redacted. Strings that are neither a URL nor a path with a query come back unchanged.
 */
export function redactUrl(value: string): string {
  const scheme = SCHEME.exec(value);
  if (scheme === null && !(value.startsWith("/") && value.includes("?"))) return value;
  let out = value;
  if (scheme !== null) {
    // The last "@" before the query: passwords are not always escaped (over-redacting an "@" in a path is fine).
    const start = scheme[0].length;
    const query = value.slice(start).search(/[?#]/);
    const at = value.lastIndexOf("@", query < 0 ? value.length : start + query);
    if (at >= start) out = value.slice(0, start) + REDACTED + value.slice(at);
  }
  return out.replace(PARAM, (all, sep: string, name: string) => {
    let decoded = name;
    try {
      decoded = decodeURIComponent(name.replaceAll("+", " "));
    } catch { /* keep it raw */ }
    return isSecretName(decoded) ? `${sep}${name}=${REDACTED}` : all;
  });
}

/** Settings of {@link redactConfig}. */
export interface RedactOptions {
  /** YAML paths of values that came from `${VAR}` substitution: redacted whole. */
  envPaths?: Iterable<string>;
}

/**
 * A deep copy of `value` with secret values replaced by {@link REDACTED}. The
 * input is not mutated. Redacted:
 *
 * - values under keys matching {@link SECRET_KEY}, anywhere;
 * - the password hashes of `admin.auth.users` and of a `basic_auth` middleware's `users` (usernames stay
 *   visible);
 * - every value under a plugin's `config`, except the top-level keys listed in
 *   its `public_config_keys` (which the other rules still apply to);
 * - values of credential header and query parameter names ({@link isSecretName})
 *   below a key naming headers, queries or params (`routes[].headers`,
 *   `query_params`, a middleware's `headers.set`);
 * - URL userinfo and secret-looking query parameters in any string ({@link redactUrl});
 * - every value at (or below) a path of `envPaths`, and the `hostname`/`port`
 *   derived from an `address` there.
 */
export function redactConfig<T>(value: T, opts: RedactOptions = {}): T {
  return new Redactor(new Set(opts.envPaths ?? [])).value(value, "", false) as T;
}

class Redactor {
  constructor(private readonly env: ReadonlySet<string>) {}

  /** `names`: the value sits below a key naming headers or query parameters. */
  value(value: unknown, path: string, names: boolean): unknown {
    if (this.env.has(path)) return REDACTED;
    if (typeof value === "string") return redactUrl(value);
    if (Array.isArray(value)) return value.map((v, i) => this.value(v, joinIndex(path, i), names));
    if (value === null || typeof value !== "object") return value;
    const obj = value as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    // Password hashes: the admin API's and basic_auth's (user names stay visible).
    const adminUsers = path === "admin.auth.users" || BASIC_AUTH_USERS.test(path);
    const fromEnvAddress = this.env.has(joinKey(path, "address"));
    // A middleware entry `{headers: {...}}` is normalised to {name: "headers", options: {...}}.
    const middleware = MIDDLEWARE_ENTRY.test(path) && typeof obj.name === "string" ? obj.name : undefined;
    for (const [k, v] of Object.entries(obj)) {
      if (adminUsers || (fromEnvAddress && (k === "hostname" || k === "port"))) out[k] = REDACTED;
      else if (k === "config" && /^plugins\[\d+\]$/.test(path)) {
        out[k] = this.pluginConfig(v, obj.public_config_keys, joinKey(path, k));
      } else if (k === "options" && middleware !== undefined) {
        out[k] = this.value(v, joinKey(path, middleware), names || NAME_MAP.test(middleware));
      } else out[k] = this.entry(k, v, path, names);
    }
    return out;
  }

  private entry(key: string, value: unknown, parent: string, names: boolean): unknown {
    if (SECRET_KEY.test(key) || (names && isSecretName(key))) return REDACTED;
    // api_key keys are SHA-256 hashes by then; a weak key's hash can still be cracked offline.
    if (key === "key" && API_KEY_ENTRY.test(parent)) return REDACTED;
    return this.value(value, joinKey(parent, key), names || NAME_MAP.test(key));
  }

  /** A plugin's `config`: only the values of `public_config_keys` are shown. */
  private pluginConfig(config: unknown, publicKeys: unknown, path: string): unknown {
    if (config === undefined || config === null) return config;
    if (this.env.has(path) || typeof config !== "object" || Array.isArray(config)) return REDACTED;
    const shown = new Set(Array.isArray(publicKeys) ? publicKeys : []);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(config)) {
      out[k] = shown.has(k) ? this.entry(k, v, path, false) : REDACTED;
    }
    return out;
  }
}
