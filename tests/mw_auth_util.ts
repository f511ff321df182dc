/**
 * Shared by the auth middleware tests (mw_jwt_test.ts, mw_api_key_test.ts,
 * mw_basic_auth_test.ts, mw_forward_auth_test.ts, mw_mtls_test.ts): upstreams
 * echoing the request as JSON, the HTTP/1.1 and h2c bases of a Loom with an
 * `http` listener on ${PORT} and an h2c one (or such a Loom started whole),
 * a Deno.serve service, located config errors and the rejection counters.
 */
import assert from "node:assert/strict";
import { freePort, startLoom, type TestLoom, waitFor } from "./helpers.ts";
import { parseConfig } from "../src/config/load.ts";

/** What the echo upstream answers. */
export interface EchoedHead {
  headers: Record<string, string>;
  url: string;
  /** The query as received ("" or "?..."). */
  search: string;
}

/** An upstream on 127.0.0.1 answering every request with {@link EchoedHead}. */
export function startEcho(): { server: Deno.HttpServer; address: string } {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) =>
    Response.json(
      {
        headers: Object.fromEntries(req.headers),
        url: req.url,
        search: new URL(req.url).search,
      } satisfies EchoedHead,
    ));
  return { server, address: `127.0.0.1:${server.addr.port}` };
}

/** [name, base URL, fetch client] of each protocol. */
export type Protocol = readonly [string, string, Deno.HttpClient | undefined];

/** The HTTP/1.1 (`url`) and h2c (`h2cPort`) bases; `close` drops the HTTP/2 client. */
export function bothProtocols(loom: { url(path: string): string }, h2cPort: number) {
  const h2 = Deno.createHttpClient({ http1: false, http2: true });
  const protocols: Protocol[] = [["HTTP/1.1", loom.url(""), undefined], [
    "h2c",
    `http://127.0.0.1:${h2cPort}`,
    h2,
  ]];
  return { protocols, close: () => h2.close() };
}

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

/** An upstream answering `{method, url (path), headers, body}`: the whole request, body included. */
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
  const both = bothProtocols(loom, h2cPort);
  return {
    loom,
    protocols: both.protocols,
    close: async () => {
      both.close();
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
