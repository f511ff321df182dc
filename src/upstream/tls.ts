/**
 * TLS towards upstreams: the material read from an upstream's `tls:` block,
 * and a `node:tls` connection wrapped as the `read`/`write`/`close` byte
 * stream the HTTP/1.1 pool expects.
 *
 * Why node:tls and not Deno.connectTls/startTls: Deno's own client cannot
 * verify against one name while connecting to another address together with
 * a client certificate (startTls has no cert/key; connectTls resolves the SNI
 * name), and it cannot skip chain verification. node:tls in Deno does all of
 * it (measured: ca + servername, wrong name rejected, client certificate
 * presented, rejectUnauthorized:false), at some CPU cost per byte that only
 * TLS upstreams pay.
 */
import tls from "node:tls";
import { isIP } from "node:net";
import type { UpstreamTlsConfig } from "../config/types.ts";
import { NodeSocketConn } from "../net/node_conn.ts";

/** Files of an upstream `tls:` block, read once per config load (so a reload re-reads them). */
export interface UpstreamTlsMaterial {
  ca?: string;
  /** SNI name and the name the certificate must carry; undefined = endpoint host (when not an IP). */
  servername?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized: boolean;
}

/** Reads the files of `cfg`; null when the upstream has no TLS. Throws when a file is unreadable. */
export function loadUpstreamTls(
  cfg: UpstreamTlsConfig | undefined,
  protocol?: string,
): UpstreamTlsMaterial | null {
  if (cfg === undefined) return protocol === "h2" ? { rejectUnauthorized: true } : null;
  return {
    ca: cfg.ca_file !== undefined ? Deno.readTextFileSync(cfg.ca_file) : undefined,
    servername: cfg.server_name,
    cert: cfg.cert_file !== undefined ? Deno.readTextFileSync(cfg.cert_file) : undefined,
    key: cfg.key_file !== undefined ? Deno.readTextFileSync(cfg.key_file) : undefined,
    // Verification stays on unless the config says otherwise in so many words.
    rejectUnauthorized: cfg.insecure_skip_verify !== true,
  };
}

/** node:tls connect options for `hostname` under `m`. */
export function tlsOptions(hostname: string, m: UpstreamTlsMaterial): tls.ConnectionOptions {
  const o: tls.ConnectionOptions = { rejectUnauthorized: m.rejectUnauthorized };
  if (m.ca !== undefined) o.ca = m.ca;
  if (m.cert !== undefined) o.cert = m.cert;
  if (m.key !== undefined) o.key = m.key;
  // SNI must not be an IP literal; an IP endpoint without server_name is verified by IP SAN.
  const sni = m.servername ?? (isIP(hostname) === 0 ? hostname : undefined);
  if (sni !== undefined) o.servername = sni;
  return o;
}

/** Opens a verified (unless told otherwise) TLS connection offering ALPN `alpn` (http/1.1 or h2). */
export function dialTls(
  hostname: string,
  port: number,
  m: UpstreamTlsMaterial,
  alpn = "http/1.1",
): Promise<Deno.TcpConn> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: hostname, port, ALPNProtocols: [alpn], ...tlsOptions(hostname, m) });
    const fail = (e: Error) => reject(e);
    s.once("error", fail);
    s.once("secureConnect", () => {
      s.off("error", fail);
      s.setNoDelay(true);
      resolve(new NodeSocketConn(s) as unknown as Deno.TcpConn);
    });
  });
}
