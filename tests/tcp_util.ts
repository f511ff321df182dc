/**
 * Shared by the tcp listener tests (tcp_listener_test.ts, wasm_network_test.ts):
 * a TCP echo upstream that answers HTTP health probes, readers, a round trip
 * with half-close, and the config of a tcp listener.
 */
import { startLoom, type TestLoom, waitFor } from "./helpers.ts";
import { metricValue } from "./gateway_util.ts";
import { serveConns } from "./upstream.ts";
import { writeAll } from "../src/http1/reader.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A TCP echo server: every connection's bytes come back prefixed once with `<tag>:`; its end of stream with "|eof". */
export interface Echo {
  address: string;
  port: number;
  /** Connections accepted. */
  conns: number;
  /** Health probes answered. */
  probes: number;
  /** Status of `GET /health` probes (the upstream's http health check). */
  health: number;
  close(): void;
}

/**
 * Starts an echo upstream. A connection starting "GET /health" is an HTTP
 * health probe: answered with `health` and closed.
 */
export function startEcho(
  tag: string,
  listen: () => Deno.Listener = () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
): Echo {
  const listener = listen();
  const port = (listener.addr as Deno.NetAddr).port;
  const echo: Echo = {
    address: `127.0.0.1:${port}`,
    port,
    conns: 0,
    probes: 0,
    health: 200,
    close: () => served.close(),
  };
  const served = serveConns(listener, (conn) => {
    (async () => {
      const buf = new Uint8Array(64 * 1024);
      let first = true;
      try {
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) {
            await writeAll(conn, enc.encode(`${first ? tag + ":" : ""}|eof`));
            break;
          }
          const chunk = buf.subarray(0, n);
          if (first && dec.decode(chunk).startsWith("GET /health")) {
            echo.probes++;
            await writeAll(
              conn,
              enc.encode(`HTTP/1.1 ${echo.health} x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`),
            );
            break;
          }
          if (first) echo.conns++, await writeAll(conn, enc.encode(tag + ":"));
          first = false;
          await writeAll(conn, chunk);
        }
      } catch { /* reset */ }
      served.open.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    })();
  });
  return echo;
}

/** Writes all of `b` (the engine's own loop over partial writes). */
export { writeAll };

/** Reads from `c` until `want` bytes came (or the end of stream): the text read. */
export async function readText(c: Deno.Conn, want: number): Promise<string> {
  const parts: Uint8Array[] = [];
  let n = 0;
  const buf = new Uint8Array(64 * 1024);
  while (n < want) {
    const got = await c.read(buf);
    if (got === null) break;
    parts.push(buf.slice(0, got));
    n += got;
  }
  return dec.decode(concatAll(parts));
}

/** Reads until the end of stream (or a reset). */
export async function readAll(c: Deno.Conn): Promise<string> {
  return await readText(c, Infinity).catch((e) => `error: ${e}`);
}

function concatAll(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), o += p.length;
  return out;
}

/** Sends `text` on a new connection to Loom's tcp listener, half-closes, and returns all that comes back. */
export async function roundTrip(port: number, text: string): Promise<string> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(c, enc.encode(text));
    await c.closeWrite();
    return await readAll(c);
  } finally {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

/** A Loom config with one tcp listener on ${PORT} (`listener` keys added) and these upstreams. */
export function tcpYaml(
  listener: Record<string, unknown>,
  upstreams: unknown[],
  extra = "",
  more: Record<string, unknown>[] = [],
): string {
  const item = (l: Record<string, unknown>) =>
    "  - " + Object.entries(l).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join("\n    ");
  return [
    "listeners:",
    item({ name: "tcp", address: "127.0.0.1:${PORT}", protocol: "tcp", ...listener }),
    ...more.map((l) => item({ protocol: "tcp", ...l })),
    `upstreams: ${JSON.stringify(upstreams)}`,
    extra,
  ].join("\n") + "\n";
}

/** Loom's GET /metrics text. */
export async function metrics(loom: { admin(p: string): string }): Promise<string> {
  const res = await fetch(loom.admin("/metrics"));
  return await res.text();
}

/** Waits until the tcp listener "tcp" has no open connection (every one's teardown ran). */
export async function noOpenConnections(loom: { admin(p: string): string }): Promise<void> {
  await waitFor(
    "no open tcp connections",
    async () =>
      metricValue(await metrics(loom), "loom_active_connections", { listener: "tcp", protocol: "tcp" }) === 0,
  );
}

/**
 * Runs `test` on a Loom started from `yaml(echoes)`, with an echo upstream per
 * tag in `tags`; Loom and the echoes are closed afterwards, whatever happened.
 */
export async function withEchoLoom(
  tags: string[],
  yaml: (echoes: Echo[]) => string,
  test: (loom: TestLoom, echoes: Echo[]) => Promise<void>,
): Promise<void> {
  const echoes = tags.map((t) => startEcho(t));
  try {
    const loom = await startLoom(yaml(echoes));
    try {
      await test(loom, echoes);
    } finally {
      await loom.close();
    }
  } finally {
    for (const e of echoes) e.close();
  }
}
