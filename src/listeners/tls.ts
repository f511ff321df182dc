/**
 * Listener TLS material: the default certificate, extra certificates chosen
 * by SNI (exact names and `*.` wildcards, taken from each certificate's SANs,
 * else its CN), the minimum version, and client certificate verification.
 *
 * Why client certificates are verified here: node:tls in Deno requests and
 * exposes the client certificate but does not check it against `ca`
 * (`authorized` stays false with UNABLE_TO_GET_ISSUER_CERT even for a good
 * certificate; measured), so the chain check (issuer signature, validity
 * period, CA:FALSE leaf) is done with node:crypto's X509Certificate.
 */
import tls from "node:tls";
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { TlsConfig } from "../config/types.ts";
import type { ClientCertificate } from "../core/context.ts";

/** How client certificates are treated. */
export type ClientAuthMode = "none" | "optional" | "require";

/** Everything a TLS listener needs, loaded from its files at start and on every reload (tls_reload.ts). */
export interface ListenerTls {
  cert: string;
  key: string;
  /** What it was built from (equal files: the same material). */
  files: TlsFiles;
  /** SNI entries in config order: lower-case names (maybe "*.suffix") → context. */
  sni: { names: string[]; ctx: tls.SecureContext }[];
  defaultCtx: tls.SecureContext;
  clientAuth: ClientAuthMode;
  clientCas: X509Certificate[];
  /** node:tls minVersion ("TLSv1.2" / "TLSv1.3"). */
  minVersion: "TLSv1.2" | "TLSv1.3";
  alpn: string[];
}

/** Maps Loom's client_auth values onto require / optional / none. */
export function clientAuthMode(v: TlsConfig["client_auth"]): ClientAuthMode {
  switch (v) {
    case "require":
    case "require_and_verify":
      return "require";
    case "optional":
    case "request":
    case "verify_if_given":
      return "optional";
    default:
      return "none";
  }
}

/** DNS names a certificate serves: its DNS SANs, else its CN. */
export function certNames(pem: string): string[] {
  const x = new X509Certificate(pem);
  const names: string[] = [];
  for (const part of (x.subjectAltName ?? "").split(",")) {
    const p = part.trim();
    if (p.startsWith("DNS:")) names.push(p.slice(4).toLowerCase());
  }
  if (names.length === 0) {
    const cn = /(?:^|\n|,)\s*CN=([^,\n]+)/.exec(x.subject);
    if (cn) names.push(cn[1].trim().toLowerCase());
  }
  return names;
}

/** Whether `host` is served by certificate name `name` (a wildcard covers exactly one label). */
export function nameMatches(name: string, host: string): boolean {
  if (name === host) return true;
  if (!name.startsWith("*.")) return false;
  const dot = host.indexOf(".");
  return dot > 0 && host.slice(dot + 1) === name.slice(2);
}

/** How a listener kind uses its TLS block. */
export interface TlsUse {
  /** ALPN protocols when the block lists none. */
  alpn: string[];
  /** Only cert_file/key_file (one certificate, no client certificates: Deno.listenTls, QUIC). */
  pairOnly?: boolean;
}

function readPem(f: string): string {
  try {
    return Deno.readTextFileSync(f);
  } catch (e) {
    throw new Error(`cannot read ${f}: ${(e as Error).message}`);
  }
}

/** The texts of every file a TLS block names, read once per start or reload. */
export interface TlsFiles {
  /** The block and its use, as JSON (a different setting is different material). */
  settings: string;
  cert: string;
  key: string;
  /** The SNI certificates' pairs, in config order. */
  certificates: { cert: string; key: string }[];
  /** The client CA bundle, when client certificates are asked for. */
  clientCa: string | null;
}

/** Reads every file of `cfg` (throws naming the file when one cannot be read). */
export function readTlsFiles(cfg: TlsConfig, use: TlsUse): TlsFiles {
  const files: TlsFiles = {
    settings: JSON.stringify([cfg, use]),
    cert: readPem(cfg.cert_file),
    key: readPem(cfg.key_file),
    certificates: [],
    clientCa: null,
  };
  if (use.pairOnly) return files;
  for (const c of cfg.certificates ?? []) {
    files.certificates.push({ cert: readPem(c.cert_file), key: readPem(c.key_file) });
  }
  if (clientAuthMode(cfg.client_auth) !== "none") {
    if (cfg.client_ca_file === undefined) throw new Error("client_auth needs client_ca_file");
    files.clientCa = readPem(cfg.client_ca_file);
  }
  return files;
}

/** Whether two readings hold the same texts. */
export function sameFiles(a: TlsFiles, b: TlsFiles): boolean {
  return a.settings === b.settings && a.cert === b.cert && a.key === b.key && a.clientCa === b.clientCa &&
    a.certificates.length === b.certificates.length &&
    a.certificates.every((c, i) => c.cert === b.certificates[i].cert && c.key === b.certificates[i].key);
}

/**
 * Checks that `cert` parses and `key` is its private key (Deno's node:tls contexts check neither); throws
 * naming the file.
 */
export function checkPair(cert: string, key: string, certFile: string, keyFile: string): void {
  let x: X509Certificate;
  try {
    x = new X509Certificate(cert);
  } catch (e) {
    throw new Error(`${certFile}: not a PEM certificate (${(e as Error).message})`);
  }
  let k;
  try {
    k = createPrivateKey(key);
  } catch (e) {
    throw new Error(`${keyFile}: not a PEM private key (${(e as Error).message})`);
  }
  if (!x.checkPrivateKey(k)) throw new Error(`${keyFile} is not the private key of ${certFile}`);
}

/**
 * Builds and checks a listener's TLS material from a reading of its files:
 * every certificate parses and matches its key, the client CA bundle holds
 * certificates. Throws naming the file when one is bad.
 */
export function buildListenerTls(cfg: TlsConfig, use: TlsUse, files: TlsFiles): ListenerTls {
  const { cert, key } = files;
  checkPair(cert, key, cfg.cert_file, cfg.key_file);
  const minVersion = cfg.min_version === "1.3" ? "TLSv1.3" : "TLSv1.2";
  const sni: ListenerTls["sni"] = [];
  const listed = cfg.certificates ?? [];
  files.certificates.forEach((c, i) => {
    checkPair(c.cert, c.key, listed[i].cert_file, listed[i].key_file);
    sni.push({
      names: certNames(c.cert),
      ctx: tls.createSecureContext({ cert: c.cert, key: c.key, minVersion }),
    });
  });
  const defaultCtx = tls.createSecureContext({ cert, key, minVersion });
  // The default certificate takes part in SNI matching too, after the listed ones.
  sni.push({ names: certNames(cert), ctx: defaultCtx });
  const clientAuth = files.clientCa === null ? "none" : clientAuthMode(cfg.client_auth);
  const clientCas = files.clientCa === null ? [] : parseCaBundle(files.clientCa, cfg.client_ca_file!);
  return { cert, key, files, sni, defaultCtx, clientAuth, clientCas, minVersion, alpn: cfg.alpn ?? use.alpn };
}

/** The certificates of a PEM CA bundle read from `file`; throws naming it when there is none or one is bad. */
export function parseCaBundle(text: string, file: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const m of text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)) {
    try {
      out.push(new X509Certificate(m[0]));
    } catch (e) {
      throw new Error(`${file}: certificate ${out.length + 1} does not parse (${(e as Error).message})`);
    }
  }
  if (out.length === 0) throw new Error(`${file}: no certificate found`);
  return out;
}

/** Reads, builds and checks a listener's TLS material (throws naming the file when one is bad). */
export function loadListenerTls(cfg: TlsConfig, use: TlsUse): ListenerTls {
  return buildListenerTls(cfg, use, readTlsFiles(cfg, use));
}

/** The context for an SNI name: exact names first, then wildcards, else the default. */
export function contextFor(t: ListenerTls, servername: string): tls.SecureContext {
  const host = servername.toLowerCase();
  for (const e of t.sni) if (e.names.includes(host)) return e.ctx;
  for (const e of t.sni) if (e.names.some((n) => nameMatches(n, host))) return e.ctx;
  return t.defaultCtx;
}

/** Longest chain accepted from a client: leaf + intermediates (the root is ours, from client_ca_file). */
const MAX_CHAIN = 5;

function parseCert(der: Uint8Array): X509Certificate | null {
  try {
    return new X509Certificate(der);
  } catch {
    return null;
  }
}

function inValidity(x: X509Certificate, now: number): boolean {
  return Date.parse(x.validFrom) <= now && Date.parse(x.validTo) >= now;
}

function signedBy(x: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return x.checkIssued(issuer) && x.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** A certificate's subject attributes by short name (from the parsed name, not its text form). */
function subjectAttrs(x: X509Certificate): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let subject: Record<string, string | string[]> | undefined;
  try {
    subject = x.toLegacyObject().subject as unknown as Record<string, string | string[]> | undefined;
  } catch {
    return out;
  }
  for (const [k, v] of Object.entries(subject ?? {})) {
    out.set(k, Array.isArray(v) ? v.map(String) : [String(v)]);
  }
  return out;
}

/**
 * Verifies a client's certificate chain (DER, leaf first, then whatever
 * intermediates the client sent) against the configured CAs: the leaf is
 * inside its validity period and not a CA, and a path of valid CA
 * intermediates from the sent ones leads from it to one of the CAs. Returns
 * the leaf's identity, or null when absent or not valid.
 */
export function verifyClientCert(t: ListenerTls, chain: readonly Uint8Array[]): ClientCertificate | null {
  if (chain.length === 0 || chain[0].length === 0) return null;
  const leaf = parseCert(chain[0]);
  const now = Date.now();
  if (leaf === null || !inValidity(leaf, now) || leaf.ca) return null;
  const sent: X509Certificate[] = [];
  for (let i = 1; i < chain.length && i < MAX_CHAIN; i++) {
    const x = parseCert(chain[i]);
    if (x !== null && x.ca && inValidity(x, now)) sent.push(x);
  }
  let cur = leaf;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    if (t.clientCas.some((ca) => signedBy(cur, ca))) {
      return {
        subject: leaf.subject.split("\n").join(","),
        sans: (leaf.subjectAltName ?? "").split(",").map((s) => s.trim()).filter((s) => s !== ""),
        fingerprint256: leaf.fingerprint256,
        subjectAttrs: subjectAttrs(leaf),
      };
    }
    const next = sent.find((x) => x !== cur && signedBy(cur, x));
    if (next === undefined) return null;
    cur = next;
  }
  return null;
}

/**
 * The DER chain a node TLS socket's peer sent (leaf first). Deno's node:tls
 * links the certificates through `issuerCertificate`; the walk stops at a
 * self-issued one or a repeat.
 */
export function peerChain(sock: tls.TLSSocket): Uint8Array[] {
  const out: Uint8Array[] = [];
  const seen = new Set<string>();
  let c = sock.getPeerCertificate(true) as tls.DetailedPeerCertificate | null;
  while (c && c.raw && c.raw.length > 0 && !seen.has(c.fingerprint256) && out.length < MAX_CHAIN) {
    seen.add(c.fingerprint256);
    out.push(c.raw);
    c = c.issuerCertificate;
  }
  return out;
}

/** Whether an https listener needs the HTTP/2 listener on node:tls (h2 ALPN, SNI certificates or client certificates). */
export function needsNodeTls(cfg: TlsConfig): boolean {
  return (cfg.alpn?.includes("h2") ?? false) || (cfg.certificates?.length ?? 0) > 0 ||
    clientAuthMode(cfg.client_auth) !== "none";
}
