/**
 * Options of the `basic_auth` middleware (src/middleware/basic_auth/), and the
 * password hash formats it accepts: bcrypt (`$2a$`, `$2b$`, `$2y$`) and
 * argon2id PHC strings (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), in the
 * config or in an htpasswd-style file (`name:hash` per line).
 *
 * @module
 */
import { type Field, opt, t } from "../dsl.ts";
import { headerName } from "./headers.ts";

/** The hash kinds a user may have. */
export type HashKind = "bcrypt" | "argon2id";

const BCRYPT = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;
const ARGON2ID = /^\$argon2id\$v=(\d+)\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{16,}$/;

/** Largest argon2id memory cost accepted, in KiB (1 GiB: verification runs in WebAssembly). */
export const MAX_ARGON2_MEMORY_KIB = 1 << 20;

/** The kind of a supported password hash, or an error message saying what is wrong with it. */
export function hashKind(hash: string): HashKind | { error: string } {
  const b = BCRYPT.exec(hash);
  if (b !== null) {
    const cost = Number(b[1]);
    return cost >= 4 && cost <= 31 ? "bcrypt" : { error: `bcrypt cost ${cost} is outside 4..31` };
  }
  if (hash.startsWith("$2")) {
    return {
      error: "not a bcrypt hash ($2a$, $2b$ or $2y$, a two-digit cost, 53 characters of salt and hash)",
    };
  }
  const a = ARGON2ID.exec(hash);
  if (a !== null) {
    const [v, m, tc, p] = a.slice(1).map(Number);
    if (v !== 19) return { error: `argon2id version ${v} is not supported (only v=19)` };
    if (p < 1 || p > 255) return { error: `argon2id parallelism ${p} is outside 1..255` };
    if (m < 8 * p || m > MAX_ARGON2_MEMORY_KIB) {
      return { error: `argon2id memory ${m} KiB is outside ${8 * p}..${MAX_ARGON2_MEMORY_KIB}` };
    }
    if (tc < 1 || tc > 1000) return { error: `argon2id iterations ${tc} is outside 1..1000` };
    return "argon2id";
  }
  if (hash.startsWith("$argon2")) {
    return {
      error: "not an argon2id PHC string ($argon2id$v=19$m=<KiB>,t=<iterations>,p=<lanes>$<salt>$<hash>, " +
        "unpadded base64); argon2i and argon2d are not accepted",
    };
  }
  return {
    error: "unsupported password hash; expected bcrypt ($2a$, $2b$, $2y$) or argon2id ($argon2id$...) " +
      "(htpasswd -B makes bcrypt; MD5, SHA-1 and crypt hashes are refused)",
  };
}

/** Why `name` cannot be a Basic user name (RFC 7617: no ":" and no control characters), or undefined. */
export function userNameError(name: string): string | undefined {
  if (name === "") return "user names may not be empty";
  if (name.includes(":")) return `user name "${name}" contains ":"`;
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) return `user name ${JSON.stringify(name)} contains a control character`;
  return undefined;
}

/** An htpasswd-style file parsed: users in file order, or the errors with their line numbers. */
export interface UsersFile {
  users: [string, string][];
  errors: string[];
}

/**
 * Parses `name:hash` lines; blank lines and lines starting with `#` are
 * skipped. Every line with a bad name or hash, and every repeated name, is an
 * error naming `path` and the line.
 */
export function parseUsersFile(text: string, path: string): UsersFile {
  const users: [string, string][] = [];
  const errors: string[] = [];
  const seen = new Set<string>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) return;
    const where = `${path}:${i + 1}`;
    const colon = line.indexOf(":");
    if (colon === -1) {
      errors.push(`${where}: expected "name:hash"`);
      return;
    }
    const name = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    const bad = userNameError(name);
    if (bad !== undefined) {
      errors.push(`${where}: ${bad}`);
      return;
    }
    const kind = hashKind(hash);
    if (typeof kind !== "string") errors.push(`${where}: user "${name}": ${kind.error}`);
    else if (seen.has(name)) errors.push(`${where}: user "${name}" is listed twice`);
    else {
      seen.add(name);
      users.push([name, hash]);
    }
  });
  return { users, errors };
}

/** Reads and parses a users file; throws with every error found. */
export function readUsersFile(path: string): [string, string][] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    throw new Error(`users_file ${path}: ${(e as Error).message}`);
  }
  const { users, errors } = parseUsersFile(text, path);
  if (errors.length > 0) throw new Error(`users_file ${errors.join("; ")}`);
  return users;
}

/** The realm of the challenge: a quoted-string without quotes, backslashes or control characters. */
const realm = t.string({
  check: (v) =>
    // deno-lint-ignore no-control-regex
    v === "" || /["\\\x00-\x1f\x7f]/.test(v)
      ? "realm must be non-empty, without quotes, backslashes or control characters"
      : undefined,
});

const TOKEN = new RegExp(headerName.pattern!);

/** A request field name, or "" for none. */
export const optionalHeaderName = t.string({
  check: (v) => v === "" || TOKEN.test(v) ? undefined : headerName.patternMessage,
});

const passwordHash = t.string({
  check: (v) => {
    const k = hashKind(v);
    return typeof k === "string" ? undefined : k.error;
  },
});

/** `basic_auth: {...}` in a middleware list. */
export const basicAuthOptions: Field = opt(
  t.object({
    realm: opt(realm, "loom", 'The realm of the 401 challenge (WWW-Authenticate: Basic realm="...").'),
    users: opt(
      t.map(passwordHash, { keys: t.string({ check: userNameError }) }),
      {},
      "User name → bcrypt ($2a$/$2b$/$2y$) or argon2id ($argon2id$...) hash.",
    ),
    users_file: opt(
      t.string({ file: true, check: (p) => readUsersFileError(p) }),
      undefined,
      "An htpasswd-style file of name:hash lines (bcrypt or argon2id); read at start and on every reload.",
    ),
    user_header: opt(
      optionalHeaderName,
      "x-auth-user",
      'Request field that carries the authenticated user name upstream (client copies are replaced); "" for none.',
    ),
    strip_authorization: opt(
      t.bool(),
      true,
      "Remove the Authorization field before the request goes upstream.",
    ),
    cache_ttl: opt(
      t.duration(),
      "60s",
      "How long a successful verification is remembered (keyed by a SHA-256 of the credentials); 0 disables.",
    ),
    cache_size: opt(t.int({ min: 1 }), 1024, "Most credentials remembered at once (oldest dropped first)."),
    max_pending: opt(
      t.int({ min: 1 }),
      64,
      "Most hash verifications waiting at once for this middleware; more get 503 with Retry-After.",
    ),
  }),
  undefined,
  "HTTP Basic authentication against bcrypt or argon2id password hashes.",
);

function readUsersFileError(path: string): string | undefined {
  try {
    readUsersFile(path);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** The normalised options. */
export interface BasicAuthOptions {
  realm: string;
  users: Record<string, string>;
  users_file?: string;
  user_header: string;
  strip_authorization: boolean;
  /** Milliseconds. */
  cache_ttl: number;
  cache_size: number;
  max_pending: number;
}
