/**
 * Shared by the auth middleware tests (mw_jwt_test.ts, mw_api_key_test.ts):
 * an upstream echoing the request head as JSON, and the HTTP/1.1 and h2c
 * bases of a Loom with an `http` listener on ${PORT} and an h2c one.
 */

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
