/**
 * Helpers of the resilience tests and the chaos script: a load generator that
 * counts failures and latency percentiles, and an endpoint's state from the
 * admin API. Their upstreams are tests/upstream.ts (stop() and start() again
 * on the same port, `mode` "fail").
 */

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
