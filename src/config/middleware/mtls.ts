/** Options of the `mtls` middleware (src/middleware/mtls/). */
import { type Field, opt, t, type Type } from "../dsl.ts";
import { optionalHeaderName } from "./basic_auth.ts";

// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

function nameCheck(v: string): string | undefined {
  return v === "" || CONTROL.test(v) ? "must be non-empty, without control characters" : undefined;
}

/** Exact names, or "*.example.com" (one label). */
function dnsCheck(v: string): string | undefined {
  if (/^(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(v)) return undefined;
  return `"${v}" is not a DNS name or "*.example.com" pattern`;
}

/** Exact URIs, or a prefix pattern ending in "/*" (spiffe://trust-domain/*). */
function uriCheck(v: string): string | undefined {
  if (!/^[a-z][a-z0-9+.-]*:[\x21-\x7e]+$/i.test(v)) return `"${v}" is not a URI (visible ASCII, scheme:...)`;
  const star = v.indexOf("*");
  if (star !== -1 && (star !== v.length - 1 || !v.endsWith("/*"))) {
    return `"${v}": "*" is only allowed as a final "/*" (prefix pattern, e.g. "spiffe://corp.example/*")`;
  }
  return undefined;
}

/** One value or a list of them, normalised to a list. */
function values(check: (v: string) => string | undefined): Type {
  return t.oneOf([
    t.string({ check, normalize: (v: string) => [v] }),
    t.list(t.string({ check }), { minItems: 1 }),
  ]);
}

/** One allow rule: every field present must match (a field's values are alternatives). */
const rule = t.object({
  cn: opt(values(nameCheck), undefined, "Subject common names (exact)."),
  o: opt(values(nameCheck), undefined, "Subject organisations (exact; any of the certificate's O values)."),
  ou: opt(
    values(nameCheck),
    undefined,
    "Subject organisational units (exact; any of the certificate's OU values).",
  ),
  dns: opt(values(dnsCheck), undefined, 'DNS SANs: exact (case-insensitive) or "*.example.com" (one label).'),
  uri: opt(
    values(uriCheck),
    undefined,
    'URI SANs, SPIFFE IDs included: exact, or a prefix ending in "/*" ("spiffe://corp.example/ns/billing/*").',
  ),
}, { minFields: 1, description: "Every field present must match; a field's values are alternatives." });

/** `mtls: {...}` in a middleware list. */
export const mtlsOptions: Field = opt(
  t.object({
    allow: opt(
      t.list(rule),
      [],
      "A verified certificate passes when any rule matches; empty: every verified certificate passes.",
    ),
    headers: opt(
      t.object({
        subject: opt(optionalHeaderName, "x-loom-client-subject", 'Subject DN; "" for none.'),
        san: opt(optionalHeaderName, "x-loom-client-san", 'SANs, ", "-separated; "" for none.'),
        cn: opt(optionalHeaderName, "x-loom-client-cn", 'Subject common name; "" for none.'),
        spiffe_id: opt(optionalHeaderName, "x-loom-client-spiffe-id", 'The spiffe:// URI SAN; "" for none.'),
        fingerprint: opt(
          optionalHeaderName,
          "x-loom-client-cert-sha256",
          'SHA-256 fingerprint (colon-separated hex); "" for none.',
        ),
      }),
      {},
      "Request fields that carry the verified identity upstream (client-sent copies are replaced or removed).",
    ),
  }),
  undefined,
  "Requires a verified TLS client certificate (listener client_auth), optionally from an allow-list.",
);

/** One normalised allow rule. */
export interface MtlsRule {
  cn?: string[];
  o?: string[];
  ou?: string[];
  dns?: string[];
  uri?: string[];
}

/** The normalised options. */
export interface MtlsOptions {
  allow: MtlsRule[];
  headers: { subject: string; san: string; cn: string; spiffe_id: string; fingerprint: string };
}
