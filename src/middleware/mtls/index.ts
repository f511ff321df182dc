/**
 * `mtls`: requires a verified TLS client certificate, optionally one on an
 * allow-list, and forwards its identity upstream.
 *
 * ```yaml
 * listeners:
 *   - name: https
 *     address: ":8443"
 *     protocol: https
 *     tls: { cert_file: server.pem, key_file: server.key, client_auth: optional, client_ca_file: clients-ca.pem }
 * middleware:
 *   - mtls:
 *       allow:
 *         - { uri: "spiffe://corp.example/ns/billing/*" }   # SPIFFE IDs of one namespace
 *         - { o: Acme, ou: [payments, ops] }                # O=Acme and OU payments or ops
 *         - { dns: "*.clients.corp.example" }
 * ```
 *
 * The certificate is the one the listener verified (`client_auth` with
 * `client_ca_file`; see README's mTLS section): `ctx.clientCert`. Without one
 * (a listener without client_auth, or `optional` and the client sent none)
 * the answer is 401 (reason `no_certificate`); a certificate that matches no
 * `allow` rule gets 403 (`not_allowed`). A rule matches when every field it
 * has matches; a field's values are alternatives: `cn`, `o`, `ou` compare
 * exactly with the subject's attributes (any of them when repeated), `dns`
 * with DNS SANs (case-insensitive; `*.example.com` covers one label), `uri`
 * with URI SANs (exact, or a prefix with a final `/*`). No rules: every
 * verified certificate passes.
 *
 * The identity goes upstream in the `headers` fields (subject, SANs, CN,
 * SPIFFE ID, SHA-256 fingerprint; defaults `x-loom-client-*`, the listener's
 * own `x-loom-client-subject`/`x-loom-client-san` among them, with the same
 * values): set on the request, client-sent copies replaced or, when the
 * certificate has no such value, removed. It is also in
 * `ctx.vars.get(MTLS_IDENTITY_VAR)`.
 *
 * Matching is done once per certificate (a TLS connection's requests share
 * one): per request it is a WeakMap look-up and the header writes.
 *
 * @module
 */
import type { ClientCertificate } from "../../core/context.ts";
import type { Middleware } from "../../core/middleware.ts";
import type { MtlsOptions, MtlsRule } from "../../config/middleware/mtls.ts";
import { reject } from "../reject.ts";

export type { MtlsOptions };

/** Key in `ctx.vars` of the verified {@link ClientIdentity}. */
export const MTLS_IDENTITY_VAR = "loom.mtls.identity";

const NAME = "mtls";

/** A client certificate's identity, as the rules and headers see it. */
export interface ClientIdentity {
  readonly subject: string;
  readonly cn: readonly string[];
  readonly o: readonly string[];
  readonly ou: readonly string[];
  /** Lower-cased DNS SANs. */
  readonly dns: readonly string[];
  readonly uri: readonly string[];
  /** The first `spiffe://` URI SAN, or "". */
  readonly spiffeId: string;
  readonly sans: string;
  readonly fingerprint: string;
}

const identities = new WeakMap<ClientCertificate, ClientIdentity>();

/** The identity of `cert` (computed once per certificate object). */
export function identityOf(cert: ClientCertificate): ClientIdentity {
  let id = identities.get(cert);
  if (id !== undefined) return id;
  const dns: string[] = [];
  const uri: string[] = [];
  for (const s of cert.sans) {
    if (s.startsWith("DNS:")) dns.push(s.slice(4).toLowerCase());
    else if (s.startsWith("URI:")) uri.push(s.slice(4));
  }
  const attrs = cert.subjectAttrs;
  id = {
    subject: cert.subject,
    cn: attrs.get("CN") ?? [],
    o: attrs.get("O") ?? [],
    ou: attrs.get("OU") ?? [],
    dns,
    uri,
    spiffeId: uri.find((u) => u.startsWith("spiffe://")) ?? "",
    sans: cert.sans.join(", "),
    fingerprint: cert.fingerprint256,
  };
  identities.set(cert, id);
  return id;
}

type Test = (id: ClientIdentity) => boolean;

function anyOf(have: (id: ClientIdentity) => readonly string[], want: (v: string) => boolean): Test {
  return (id) => have(id).some(want);
}

function dnsMatcher(pattern: string): (v: string) => boolean {
  const p = pattern.toLowerCase();
  if (!p.startsWith("*.")) return (v) => v === p;
  const suffix = p.slice(1); // ".example.com"
  return (v) =>
    v.endsWith(suffix) && v.length > suffix.length && v.lastIndexOf(".", v.length - suffix.length - 1) === -1;
}

function uriMatcher(pattern: string): (v: string) => boolean {
  if (!pattern.endsWith("/*")) return (v) => v === pattern;
  const prefix = pattern.slice(0, -1); // keeps the "/"
  return (v) => v.length > prefix.length && v.startsWith(prefix);
}

/** Compiles one rule: every field present must match. */
export function compileRule(r: MtlsRule): Test {
  const tests: Test[] = [];
  const exact = (vals: string[]) => (v: string) => vals.includes(v);
  if (r.cn !== undefined) tests.push(anyOf((id) => id.cn, exact(r.cn)));
  if (r.o !== undefined) tests.push(anyOf((id) => id.o, exact(r.o)));
  if (r.ou !== undefined) tests.push(anyOf((id) => id.ou, exact(r.ou)));
  if (r.dns !== undefined) {
    const ms = r.dns.map(dnsMatcher);
    tests.push(anyOf((id) => id.dns, (v) => ms.some((m) => m(v))));
  }
  if (r.uri !== undefined) {
    const ms = r.uri.map(uriMatcher);
    tests.push(anyOf((id) => id.uri, (v) => ms.some((m) => m(v))));
  }
  return (id) => tests.every((t) => t(id));
}

/** The middleware for `o`. */
export function mtls(o: MtlsOptions): Middleware {
  const rules = o.allow.map(compileRule);
  const allowed = rules.length === 0 ? () => true : (id: ClientIdentity) => rules.some((r) => r(id));
  const verdicts = new WeakMap<ClientCertificate, boolean>();
  const h = o.headers;
  const out: [string, (id: ClientIdentity) => string][] = (
    [
      [h.subject, (id) => id.subject],
      [h.san, (id) => id.sans],
      [h.cn, (id) => id.cn[0] ?? ""],
      [h.spiffe_id, (id) => id.spiffeId],
      [h.fingerprint, (id) => id.fingerprint],
    ] as [string, (id: ClientIdentity) => string][]
  ).filter(([name]) => name !== "").map(([name, f]) => [name.toLowerCase(), f]);

  return {
    name: NAME,
    request: (ctx, next) => {
      const cert = ctx.clientCert;
      if (cert === null) return reject(ctx, NAME, "no_certificate", 401, "client certificate required");
      const id = identityOf(cert);
      let ok = verdicts.get(cert);
      if (ok === undefined) verdicts.set(cert, ok = allowed(id));
      if (!ok) return reject(ctx, NAME, "not_allowed", 403, "client certificate not allowed");
      for (let i = 0; i < out.length; i++) {
        const v = out[i][1](id);
        if (v === "") ctx.headers.delete(out[i][0]);
        else ctx.headers.set(out[i][0], v);
      }
      ctx.vars.set(MTLS_IDENTITY_VAR, id);
      return next();
    },
  };
}
