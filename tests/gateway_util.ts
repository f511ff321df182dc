/**
 * Helpers shared by the gateway-level integration tests (routing, balancing,
 * reload, admin, workers, CLI): fetch with a deadline, an echo through the
 * gateway, Prometheus samples, the admin API's reload.
 */
import type { Echo } from "./upstream.ts";

/** fetch() with a deadline; the body is read as text. */
export async function get(
  url: string,
  init: RequestInit = {},
  timeoutMs = 10_000,
): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** fetch() to an echo upstream through the gateway; returns the echo (or throws with the status). */
export async function echo(url: string, init: RequestInit = {}): Promise<Echo> {
  const r = await get(url, init);
  if (r.status !== 200) throw new Error(`${url}: status ${r.status}: ${r.text}`);
  return JSON.parse(r.text) as Echo;
}

/** Value of one Prometheus sample (`name{labels}` with labels in any order), summed over matches; 0 if none. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const lm of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      got[lm[1]] = lm[2];
    }
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) total += Number(m[4]);
  }
  return total;
}

/** Runs `fn(0)` ... `fn(n - 1)`, `concurrency` at a time (each call starts when one ends). */
export async function inParallel(
  n: number,
  concurrency: number,
  fn: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await fn(next++);
  }));
}

/** A running {@linkcode loadLoop}. */
export interface LoadLoop {
  /** Requests answered as wanted so far. */
  readonly ok: number;
  /** Every other outcome (status and body, or the error), in order. */
  readonly failures: string[];
  /** Stops the clients and waits for their last requests. */
  stop(): Promise<void>;
}

/**
 * `clients` concurrent clients GET `url` in a loop until stopped; a response is fine when `problem`
 * returns undefined for it (default: status 200), else its answer is a failure, as is any error.
 */
export function loadLoop(
  url: string,
  clients: number,
  problem = (r: { status: number; headers: Headers; text: string }): string | undefined =>
    r.status === 200 ? undefined : `${r.status} ${r.text}`,
): LoadLoop {
  let stopped = false;
  let ok = 0;
  const failures: string[] = [];
  const runs = Array.from({ length: clients }, async () => {
    while (!stopped) {
      try {
        const p = problem(await get(url, {}, 5000));
        if (p === undefined) ok++;
        else failures.push(p);
      } catch (e) {
        failures.push(String(e));
      }
    }
  });
  return {
    get ok() {
      return ok;
    },
    failures,
    stop: async () => {
      stopped = true;
      await Promise.all(runs);
    },
  };
}

/** POST /reload on the admin API; returns status and parsed body. */
export async function postReload(loom: { admin(path: string): string }): Promise<
  { status: number; body: { result: string; errors?: string[] } }
> {
  // The header marks the write as deliberate: the admin API refuses writes a web page could send.
  const r = await get(loom.admin("/reload"), { method: "POST", headers: { "X-Loom-Admin": "1" } });
  return { status: r.status, body: JSON.parse(r.text) };
}
