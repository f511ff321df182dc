/**
 * In-process measurement harness shared by bench/inproc.ts and bench/plugins.ts:
 * the HTTP/1.1 engine and the proxy run against in-memory client and upstream
 * connections, so the figure is the gateway's own JavaScript cost per request,
 * stable on a noisy machine (process CPU time, not wall time).
 */
import { parseConfig } from "../src/config/mod.ts";
import { Http1Listener } from "../src/listeners/http1.ts";
import { Gateway } from "../src/gateway/gateway.ts";
import { buildSnapshot, loadSnapshotCode } from "../src/gateway/snapshot.ts";
import { CounterSlots } from "../src/upstream/counters.ts";
import { setDialer } from "../src/upstream/pool.ts";
import { GatewayMetrics } from "../src/observability/gateway_metrics.ts";
import { createAccessLog } from "../src/observability/access_log.ts";
import { asksClose, responseLength } from "./floor_http.ts";

const enc = new TextEncoder();

/**
 * The bare proxy's config (one route to one upstream), as bench/inproc.ts measures it and bench/alloc.ts
 * profiles it; `accessLog`: the JSON access log's file, or null for none.
 */
export function bareConfig(accessLog: string | null): string {
  return `listeners: [{name: http, address: "127.0.0.1:9", protocol: http}]
upstreams: [{name: up, endpoints: ["127.0.0.1:1"]}]
routes: [{id: all, path: "/*", upstream: up}]
access_log: ${accessLog !== null ? `{enabled: true, path: "${accessLog}"}` : "{enabled: false}"}`;
}

/** A small GET, as wrk sends it. */
export const GET_REQUEST: Uint8Array = enc.encode(
  "GET /file1k HTTP/1.1\r\nHost: 127.0.0.1:9201\r\nUser-Agent: wrk\r\n\r\n",
);

/** nginx's answer for a 1 KiB static file. */
export const RESPONSE_1K: Uint8Array = enc.encode(
  "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 13:01:12 GMT\r\nContent-Type: text/plain\r\n" +
    'Content-Length: 1024\r\nLast-Modified: Fri, 27 Nov 2026 12:55:16 GMT\r\nConnection: keep-alive\r\nETag: "6b097db4-400"\r\n' +
    "Accept-Ranges: bytes\r\n\r\n" + "x".repeat(1024),
);

/** nginx's answer for a 16 KiB text file (numbered lines, so any 64-byte window is unique): for compression. */
export const RESPONSE_16K_TEXT: Uint8Array = (() => {
  let body = "";
  for (let i = 0; body.length < 16 * 1024; i++) {
    body += `${String(i).padStart(4, "0")}: the quick brown fox jumps over the lazy dog, ${
      i * 7919 % 1000
    }\n`;
  }
  return enc.encode(
    "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 13:01:12 GMT\r\nContent-Type: text/plain\r\n" +
      'Content-Length: 16384\r\nConnection: keep-alive\r\nETag: "6b097db4-4000"\r\n\r\n' +
      body.slice(0, 16 * 1024),
  );
})();
const LAST_CHUNK = enc.encode("0\r\n\r\n");
const latin1 = new TextDecoder("latin1");

/** The Content-Length of a head (`text` up to `end`), 0 when absent. */
function contentLength(text: string, end: number): number {
  const lower = text.slice(0, end).toLowerCase();
  const i = lower.indexOf("\r\ncontent-length:");
  if (i === -1) return 0;
  return parseInt(lower.slice(i + 17, lower.indexOf("\r\n", i + 2)).trim(), 10) || 0;
}

function endsWith(d: Uint8Array, tail: Uint8Array): boolean {
  if (d.length < tail.length) return false;
  for (let i = 1; i <= tail.length; i++) if (d[d.length - i] !== tail[tail.length - i]) return false;
  return true;
}
const ADDR = { transport: "tcp", hostname: "127.0.0.1", port: 1 } as Deno.NetAddr;

/** A connection whose reads are fed by `push` and whose writes go to `onWrite`. */
export class MemConn {
  private queue: Uint8Array[] = [];
  private waiter: ((n: number | null) => void) | null = null;
  private target: Uint8Array | null = null;
  closed = false;
  localAddr = ADDR;
  remoteAddr = ADDR;
  constructor(public onWrite: (d: Uint8Array) => void) {}
  push(d: Uint8Array): void {
    if (this.waiter !== null && this.target !== null) {
      const n = Math.min(d.length, this.target.length);
      this.target.set(d.subarray(0, n));
      // Bodies larger than the reader's buffer arrive over several reads.
      if (n < d.length) this.queue.push(d.subarray(n));
      const w = this.waiter;
      this.waiter = this.target = null;
      w(n);
    } else this.queue.push(d);
  }
  read(p: Uint8Array): Promise<number | null> {
    if (this.closed) return Promise.resolve(null);
    const d = this.queue.shift();
    if (d !== undefined) {
      const n = Math.min(d.length, p.length);
      p.set(d.subarray(0, n));
      if (n < d.length) this.queue.unshift(d.subarray(n));
      return Promise.resolve(n);
    }
    return new Promise((r) => {
      this.waiter = r;
      this.target = p;
    });
  }
  write(p: Uint8Array): Promise<number> {
    this.onWrite(p);
    return Promise.resolve(p.length);
  }
  close(): void {
    this.closed = true;
    this.waiter?.(null);
  }
  setNoDelay(): void {}
  setKeepAlive(): void {}
}

/** Process CPU time (user + system) in µs: robust to being descheduled on a busy machine. */
function cpuMicros(): number {
  const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 1e6 / 100;
}

/** Result of {@link runInproc}: per-request CPU and wall time in µs. */
export interface InprocResult {
  cpu: number;
  wall: number;
  requests: number;
}

/**
 * Serves `total` copies of `request` through a gateway built from `configYaml`
 * (one `http` listener; the upstream answers `response`, RESPONSE_1K by default, once a whole request,
 * head and Content-Length body, was written). The first 1000 are warm-up.
 */
export async function runInproc(
  configYaml: string,
  request: Uint8Array,
  total: number,
  response: Uint8Array = RESPONSE_1K,
): Promise<InprocResult> {
  const res = parseConfig(configYaml, "inproc.yaml");
  if (!res.ok) throw new Error(JSON.stringify(res.errors));
  const cfg = res.config;
  await loadSnapshotCode(cfg);
  // The access log as the config says (a file or nothing), as a running instance opens it.
  const gateway = new Gateway(
    buildSnapshot(cfg, CounterSlots.local()),
    new GatewayMetrics("bench"),
    createAccessLog(cfg.access_log),
  );
  // Upstream: the canned response for each whole request.
  setDialer(() => Promise.resolve(cannedUpstream(response) as unknown as Deno.TcpConn));
  const { client, result } = measuringClient(request, total, response);
  let accepted = false;
  const listener = {
    addr: ADDR,
    accept(): Promise<Deno.Conn> {
      if (accepted) return new Promise(() => {});
      accepted = true;
      return Promise.resolve(client as unknown as Deno.Conn);
    },
    close() {},
  } as unknown as Deno.Listener;
  new Http1Listener(listener, cfg.listeners[0], gateway);
  client.push(request);
  return result;
}

/**
 * The client of a run: sends `request` again each time a whole `response`
 * arrived, `total` times; the CPU and wall time per request after the first
 * 1000 (warm-up). A response other than RESPONSE_1K may come in several writes
 * (or chunked, compressed): its end is its body's last bytes or the last chunk.
 */
function measuringClient(
  request: Uint8Array,
  total: number,
  response: Uint8Array,
): { client: MemConn; result: Promise<InprocResult> } {
  let done = 0, t0 = 0, cpu0 = 0;
  let finish!: (r: InprocResult) => void;
  const result = new Promise<InprocResult>((r) => finish = r);
  const tail = response === RESPONSE_1K ? null : response.subarray(response.length - 64);
  const client: MemConn = new MemConn((d) => {
    // head-only writes would be partial responses; RESPONSE_1K comes in one write
    if (tail === null ? d.length < 1024 : !endsWith(d, tail) && !endsWith(d, LAST_CHUNK)) return;
    done++;
    if (done === 1000) {
      t0 = performance.now();
      cpu0 = cpuMicros();
    }
    if (done === total) {
      const n = total - 1000;
      finish({ cpu: (cpuMicros() - cpu0) / n, wall: (performance.now() - t0) * 1000 / n, requests: n });
    } else queueMicrotask(() => client.push(request));
  });
  return { client, result };
}

/**
 * An in-memory upstream connection that answers `response` once a whole
 * request (head + Content-Length body) was written to it, however many writes
 * it took (a streamed upload arrives in several).
 */
function cannedUpstream(response: Uint8Array): MemConn {
  let pending = 0;
  let need = -1;
  const up: MemConn = new MemConn((d) => {
    if (need === -1) {
      // The harness's own cost stays small: one shared decoder, the length found without a RegExp.
      const text = latin1.decode(d);
      const end = text.indexOf("\r\n\r\n");
      need = end + 4 + contentLength(text, end);
    }
    pending += d.length;
    if (pending >= need) {
      pending = 0;
      need = -1;
      queueMicrotask(() => up.push(response));
    }
  });
  return up;
}

/**
 * The floor of {@link runInproc}: bench/floor_proxy.ts's loop (one read and
 * one write each way, no parsing beyond the response's length, no gateway) on
 * the same in-memory connections, upstream and client. What it costs is the
 * harness's share and the promises of four socket operations; Loom's figure
 * minus this one is what Loom's own code adds per request.
 */
export function runInprocFloor(request: Uint8Array, total: number): Promise<InprocResult> {
  const up = cannedUpstream(RESPONSE_1K);
  const { client, result } = measuringClient(request, total, RESPONSE_1K);
  const serve = async () => {
    const req = new Uint8Array(16 * 1024), res = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await client.read(req);
      if (n === null) return;
      await up.write(req.subarray(0, n));
      let got = 0, want = -1;
      while (want === -1 || got < want) {
        const m = await up.read(res.subarray(got));
        if (m === null) throw new Error("upstream closed");
        got += m;
        if (want === -1) want = responseLength(res, got);
      }
      await client.write(res.subarray(0, got));
      if (asksClose(req, n)) return;
    }
  };
  serve();
  client.push(request);
  return result;
}
