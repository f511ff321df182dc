/** Options of the `cors` middleware (src/middleware/cors/), also the top-level Loom-format `cors` block. */
import { type Field, opt, t, type Type } from "../dsl.ts";

const stringList = t.list(t.string());

function originCheck(v: string): string | undefined {
  if (v === "*" || v === "null") return undefined;
  if (v.startsWith("regex:")) {
    try {
      new RegExp(v.slice(6));
      return undefined;
    } catch (e) {
      return `invalid regular expression: ${(e as Error).message}`;
    }
  }
  if (!/^[a-z][a-z0-9+.-]*:\/\/(\*\.)?[^/*?#]+$/i.test(v)) {
    return `"${v}" is not an origin; expected "*", "https://app.example", "https://*.example" or "regex:<pattern>"`;
  }
  return undefined;
}

/** The CORS settings (Fetch standard); `enabled` defaults to on when the block is present. */
export const corsType: Type = t.object({
  enabled: opt(t.bool(), true, "On when the block is present."),
  allow_origins: opt(
    t.list(t.string({ check: originCheck })),
    ["*"],
    'Allowed origins: "*", exact ("https://app.example"), a subdomain wildcard ("https://*.example") or "regex:<pattern>".',
  ),
  allow_methods: opt(
    stringList,
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
    "Methods a preflight may ask for.",
  ),
  allow_headers: opt(stringList, ["*"], 'Request headers a preflight may ask for; "*" allows any.'),
  expose_headers: opt(stringList, [], "Response headers scripts may read."),
  max_age: opt(t.int({ min: 0 }), 600, "Preflight cache time in seconds."),
  allow_credentials: opt(
    t.bool(),
    false,
    "Allow cookies and credentials (the origin is then echoed, never *).",
  ),
  allow_private_network: opt(t.bool(), false, "Answer Private Network Access preflights."),
});

/** `cors: {...}` in a middleware list. */
export const corsOptions: Field = opt(
  corsType,
  undefined,
  "Cross-origin resource sharing: answers preflights, adds CORS headers.",
);

/** The normalised options. */
export interface CorsOptions {
  enabled: boolean;
  allow_origins: string[];
  allow_methods: string[];
  allow_headers: string[];
  expose_headers: string[];
  max_age: number;
  allow_credentials: boolean;
  allow_private_network: boolean;
}
