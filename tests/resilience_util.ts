/**
 * Helpers of the resilience tests and the chaos script: upstreams that can be
 * stopped and restarted on the same port, switchable behaviour, and a load
 * generator that counts failures and latency percentiles.
 */

/** An upstream on a fixed loopback port that can be stopped and started again. */
export interface ControlledUpstream {
  readonly port: number;
  readonly address: string;
  /** Requests answered since start (all runs). */
  served: number;
  /** Requests received (counted before any delay). */
  received: number;
  /** Health probes answered. */
  probes: number;
  /** What non-probe requests get: "ok" (200 "ok:<port>"), "fail" (500) or a custom response. */
  mode: "ok" | "fail";
  running(): boolean;
  start(): void;
  stop(): Promise<void>;
}

/**
 * Starts an upstream on 127.0.0.1 (port 0 = a free one, then kept). `/health`
 * answers 200 "healthy"; other paths per `mode`, after `delayMs`.
 */
export function controlledUpstream(opts: { port?: number; delayMs?: number } = {}): ControlledUpstream {
  let server: Deno.HttpServer<Deno.NetAddr> | null = null;
  let port = opts.port ?? 0;
  const u: ControlledUpstream = {
    get port() {
      return port;
    },
    get address() {
      return `127.0.0.1:${port}`;
    },
    served: 0,
    received: 0,
    probes: 0,
    mode: "ok",
    running: () => server !== null,
    start() {
      server = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, async (req) => {
        if (new URL(req.url).pathname === "/health") {
          u.probes++;
          return new Response("healthy");
        }
        u.received++;
        await req.arrayBuffer();
        if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
        u.served++;
        return u.mode === "ok" ? new Response(`ok:${port}`) : new Response("boom", { status: 500 });
      });
      port = server.addr.port;
    },
    async stop() {
      const s = server;
      server = null;
      await s?.shutdown();
    },
  };
  u.start();
  return u;
}

/** Result of {@linkcode runLoad}. */
export interface LoadResult {
  sent: number;
  /** Non-2xx answers plus errors (resets, timeouts). */
  failed: number;
  /** Up to 10 samples of failures, for assertion messages. */
  samples: string[];
  /** Latency percentiles in ms. */
  p50: number;
  p99: number;
}

/** Options of {@linkcode runLoad}. */
export interface LoadOptions {
  url: string | (() => string);
  concurrency: number;
  /** Stop after this many requests in total... */
  total?: number;
  /** ...or after this long (ms). */
  durationMs?: number;
  /** Stop early when aborted. */
  signal?: AbortSignal;
  /** Per request deadline (ms); default 10 s. */
  timeoutMs?: number;
  /** Called after each request with the running count. */
  onProgress?: (sent: number) => void;
  init?: RequestInit;
}

/** Keep-alive load with `concurrency` parallel request loops. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  const samples: string[] = [];
  let sent = 0;
  let failed = 0;
  const until = o.durationMs !== undefined ? Date.now() + o.durationMs : Infinity;
  const more = () => !o.signal?.aborted && Date.now() < until && (o.total === undefined || sent < o.total);
  const loop = async () => {
    while (more()) {
      sent++;
      const t0 = performance.now();
      try {
        const url = typeof o.url === "string" ? o.url : o.url();
        const res = await fetch(url, { ...o.init, signal: AbortSignal.timeout(o.timeoutMs ?? 10_000) });
        const text = await res.text();
        if (res.status < 200 || res.status >= 300) {
          failed++;
          if (samples.length < 10) samples.push(`${res.status} ${text.slice(0, 120)}`);
        }
      } catch (e) {
        failed++;
        if (samples.length < 10) samples.push(String(e));
      }
      latencies.push(performance.now() - t0);
      o.onProgress?.(sent);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, loop));
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : 0;
  return { sent, failed, samples, p50: pct(0.5), p99: pct(0.99) };
}

/** Resolves once `check()` is true, polling every `everyMs` (bounded by `timeoutMs`). */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  everyMs = 10,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** One endpoint's state from `GET /upstreams`. */
export async function endpointState(
  adminUrl: string,
  upstream: string,
  address: string,
): Promise<{ healthy: boolean; ejected?: boolean; draining: boolean; circuit?: string; in_flight: number }> {
  const ups = await (await fetch(adminUrl + "/upstreams")).json() as {
    name: string;
    endpoints: {
      address: string;
      healthy: boolean;
      ejected?: boolean;
      draining: boolean;
      circuit?: string;
      in_flight: number;
    }[];
  }[];
  const e = ups.find((u) => u.name === upstream)?.endpoints.find((x) => x.address === address);
  if (e === undefined) throw new Error(`no endpoint ${address} in ${upstream}`);
  return e;
}
