/**
 * Helpers of the authentication middleware tests (mw_basic_auth, mw_forward_auth,
 * mw_mtls): a Deno.serve service on loopback, an upstream that echoes the request
 * fields it got as JSON, a gateway with an HTTP/1.1 and an h2c listener, config
 * errors as lines, and the rejection counters from /metrics.
 */
import assert from "node:assert/strict";
import { freePort, startLoom, type TestLoom, waitFor } from "./helpers.ts";
import { parseConfig } from "../src/config/load.ts";

/** A Deno.serve on 127.0.0.1. */
export interface Service {
  address: string;
  close(): Promise<void>;
}

/** Starts `handler` on a free loopback port. */
export function serve(handler: (req: Request) => Response | Promise<Response>): Service {
  const port = freePort();
  const ac = new AbortController();
  const server = Deno.serve({ hostname: "127.0.0.1", port, signal: ac.signal, onListen: () => {} }, handler);
  return {
    address: `127.0.0.1:${port}`,
    close: async () => {
      ac.abort();
      await server.finished;
    },
  };
}

/** An upstream answering `{headers: {name: value}, body}` with every request field it got. */
export function echoUpstream(): Service {
  return serve(async (req) => {
    const headers: Record<string, string> = {};
    req.headers.forEach((v, k) => headers[k] = v);
    return Response.json({
      method: req.method,
      url: new URL(req.url).pathname,
      headers,
      body: await req.text(),
    });
  });
}

/** `loom_rejections_total` samples for `middleware`, as "route/reason" → count. */
export async function rejections(metricsUrl: string, middleware: string): Promise<Map<string, number>> {
  const text = await (await fetch(metricsUrl)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("loom_rejections_total{")) continue;
    const labels = Object.fromEntries(
      [...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]),
    );
    if (labels.middleware !== middleware) continue;
    out.set(`${labels.route}/${labels.reason}`, Number(line.slice(line.lastIndexOf(" ") + 1)));
  }
  return out;
}

/** Waits until 127.0.0.1:`port` accepts connections (a node:tls listener opens a moment after start). */
export function listening(port: number): Promise<true> {
  return waitFor(`127.0.0.1:${port} to accept`, async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return true as const;
  });
}

/** A protocol to run a test's requests over: its name, base URL and fetch client. */
export type Protocol = readonly [name: string, base: string, client: Deno.HttpClient | undefined];

/** A test gateway with listeners `http` (HTTP/1.1, ${PORT}) and `h2c` (prior knowledge). */
export interface DualLoom {
  loom: TestLoom;
  /** HTTP/1.1 and h2c, in that order. */
  protocols: readonly Protocol[];
  close(): Promise<void>;
}

/** Starts a gateway whose config is the two listeners followed by `rest` (upstreams, routes, ...). */
export async function startDualLoom(rest: string): Promise<DualLoom> {
  const h2cPort = freePort();
  const loom = await startLoom(`
listeners:
  - { name: http, address: "127.0.0.1:\${PORT}", protocol: http }
  - { name: h2c, address: "127.0.0.1:${h2cPort}", protocol: h2c }
${rest}`);
  const h2 = Deno.createHttpClient({ http1: false, http2: true });
  return {
    loom,
    protocols: [["HTTP/1.1", loom.url(""), undefined], ["h2c", `http://127.0.0.1:${h2cPort}`, h2]],
    close: async () => {
      h2.close();
      await loom.close();
    },
  };
}

/** A config's errors as "line: path: message"; asserts that each of `expected` matches one of them. */
export function configErrors(yaml: string, expected: readonly RegExp[]): string[] {
  const r = parseConfig(yaml, "test.yaml", {});
  const lines = r.ok ? [] : r.errors.map((e) => `${e.line}: ${e.path}: ${e.message}`);
  for (const re of expected) assert.ok(lines.some((l) => re.test(l)), `${re}\n${lines.join("\n")}`);
  return lines;
}
