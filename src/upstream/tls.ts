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

/** A TLS socket seen as the minimal Deno.TcpConn surface the pool and exchange use. */
class NodeTlsConn {
  private queue: Uint8Array[] = [];
  private ended = false;
  private error: Error | null = null;
  private waiting: (() => void) | null = null;

  constructor(private s: tls.TLSSocket) {
    s.on("data", (d: Uint8Array) => {
      this.queue.push(d);
      // Backpressure: stop reading from the socket while unread data piles up.
      if (this.queue.length > 8) s.pause();
      this.wake();
    });
    s.on("end", () => {
      this.ended = true;
      this.wake();
    });
    s.on("close", () => {
      this.ended = true;
      this.wake();
    });
    s.on("error", (e: Error) => {
      this.error = e;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = null;
    w?.();
  }

  async read(buf: Uint8Array): Promise<number | null> {
    while (this.queue.length === 0) {
      if (this.error !== null) throw this.error;
      if (this.ended) return null;
      await new Promise<void>((r) => this.waiting = r);
    }
    const head = this.queue[0];
    const n = Math.min(head.length, buf.length);
    buf.set(head.subarray(0, n));
    if (n === head.length) this.queue.shift();
    else this.queue[0] = head.subarray(n);
    if (this.queue.length <= 2 && this.s.isPaused()) this.s.resume();
    return n;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.error !== null) return Promise.reject(this.error);
    if (this.s.destroyed) return Promise.reject(new Deno.errors.BrokenPipe("TLS connection closed"));
    // The caller reuses its buffer after the promise: node keeps a reference, so copy.
    const copy = data.slice();
    return new Promise((resolve, reject) => {
      this.s.write(copy, (e) => e ? reject(e) : resolve(copy.length));
    });
  }

  close(): void {
    this.s.destroy();
    this.ended = true;
    this.wake();
  }

  setNoDelay(on = true): void {
    this.s.setNoDelay(on);
  }

  setKeepAlive(): void {}
  ref(): void {}
  unref(): void {}
}

/** Opens a verified (unless told otherwise) TLS connection offering ALPN http/1.1. */
export function dialTls(hostname: string, port: number, m: UpstreamTlsMaterial): Promise<Deno.TcpConn> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: hostname, port, ALPNProtocols: ["http/1.1"], ...tlsOptions(hostname, m) });
    const fail = (e: Error) => reject(e);
    s.once("error", fail);
    s.once("secureConnect", () => {
      s.off("error", fail);
      s.setNoDelay(true);
      resolve(new NodeTlsConn(s) as unknown as Deno.TcpConn);
    });
  });
}
