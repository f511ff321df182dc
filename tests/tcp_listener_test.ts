/**
 * tcp listeners (issue 14 item 10): byte streams through a running Loom to
 * plain TCP upstreams (echo servers on loopback), load balancing, health
 * checks, connect retries, half-close, idle timeout, hot reload, and TLS
 * passthrough by SNI to two TLS upstreams.
 */
import assert from "node:assert/strict";
import { itest, startLoom, waitFor, writeConfig } from "./helpers.ts";
import { metricValue } from "./gateway_util.ts";
import { TestCa } from "./tls_util.ts";

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
  const open = new Set<Deno.Conn>();
  const echo: Echo = {
    address: `127.0.0.1:${port}`,
    port,
    conns: 0,
    probes: 0,
    health: 200,
    close: () => {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of open) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
  (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      open.add(conn);
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
        open.delete(conn);
        try {
          conn.close();
        } catch { /* closed */ }
      })();
    }
  })();
  return echo;
}

async function writeAll(c: Deno.Conn, b: Uint8Array): Promise<void> {
  let off = 0;
  while (off < b.length) off += await c.write(b.subarray(off));
}

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
export function tcpYaml(listener: Record<string, unknown>, upstreams: unknown[], extra = ""): string {
  const keys = Object.entries(listener).map(([k, v]) => `\n    ${k}: ${JSON.stringify(v)}`).join("");
  return [
    "listeners:",
    '  - name: tcp\n    address: "127.0.0.1:${PORT}"\n    protocol: tcp' + keys,
    `upstreams: ${JSON.stringify(upstreams)}`,
    extra,
  ].join("\n") + "\n";
}

async function metrics(loom: { admin(p: string): string }): Promise<string> {
  const res = await fetch(loom.admin("/metrics"));
  return await res.text();
}

itest("tcp: bytes both ways through a TCP echo upstream, half-close each way, counted", async () => {
  const a = startEcho("A");
  const loom = await startLoom(tcpYaml({ upstream: "echo" }, [{ name: "echo", endpoints: [a.address] }]));
  try {
    assert.equal(await roundTrip(loom.port, "hello"), "A:hello|eof");
    // A larger stream, written while reading (backpressure both ways), arrives whole and in order.
    const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => 97 + (i % 26));
    const c = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
    const reading = readAll(c);
    await writeAll(c, big);
    await c.closeWrite();
    const back = await reading;
    c.close();
    assert.equal(back.length, big.length + 6);
    assert.equal(back, "A:" + dec.decode(big) + "|eof");
    const m = await metrics(loom);
    assert.equal(
      metricValue(m, "loom_tcp_connections_total", { listener: "tcp", upstream: "echo", result: "proxied" }),
      2,
    );
    assert.equal(
      metricValue(m, "loom_tcp_bytes_total", { listener: "tcp", direction: "upstream" }),
      big.length + 5,
    );
    await waitFor(
      "no open connections",
      async () =>
        metricValue(await metrics(loom), "loom_active_connections", { listener: "tcp", protocol: "tcp" }) ===
          0,
    );
  } finally {
    await loom.close();
    a.close();
  }
});

itest("tcp: round robin over two endpoints; a down endpoint is retried past; none left closes", async () => {
  const a = startEcho("A");
  const b = startEcho("B");
  const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadAddr = `127.0.0.1:${(dead.addr as Deno.NetAddr).port}`;
  dead.close(); // nothing listens there: connections are refused
  const loom = await startLoom(tcpYaml({ upstream: "two" }, [
    { name: "two", endpoints: [a.address, b.address], load_balancer: "round_robin" },
    { name: "retrying", endpoints: [deadAddr, a.address], retry: { max_retries: 1 } },
    { name: "noretry", endpoints: [deadAddr] },
  ]));
  try {
    const tags = [];
    for (let i = 0; i < 4; i++) tags.push((await roundTrip(loom.port, "x"))[0]);
    assert.deepEqual(tags.sort(), ["A", "A", "B", "B"]);

    writeConfig(
      loom,
      tcpYaml({ upstream: "retrying" }, [
        {
          name: "retrying",
          endpoints: [deadAddr, a.address],
          retry: { max_retries: 1 },
          load_balancer: "round_robin",
        },
      ]),
    );
    assert.deepEqual(await loom.sup.reload("test"), { ok: true });
    for (let i = 0; i < 3; i++) assert.equal(await roundTrip(loom.port, "r"), "A:r|eof");

    writeConfig(loom, tcpYaml({ upstream: "noretry" }, [{ name: "noretry", endpoints: [deadAddr] }]));
    assert.deepEqual(await loom.sup.reload("test"), { ok: true });
    assert.equal(await roundTrip(loom.port, "n"), "");
    const m = await metrics(loom);
    assert.equal(
      metricValue(m, "loom_tcp_connections_total", {
        listener: "tcp",
        upstream: "noretry",
        result: "connect_failed",
      }),
      1,
    );
  } finally {
    await loom.close();
    a.close();
    b.close();
  }
});

itest("tcp: an endpoint failing its health checks gets no connections", async () => {
  const a = startEcho("A");
  const b = startEcho("B");
  b.health = 503;
  const loom = await startLoom(tcpYaml({ upstream: "hc" }, [{
    name: "hc",
    endpoints: [a.address, b.address],
    load_balancer: "round_robin",
    health_check: {
      path: "/health",
      interval: "50ms",
      timeout: "500ms",
      healthy_threshold: 1,
      unhealthy_threshold: 1,
    },
  }]));
  try {
    await waitFor("B marked unhealthy", async () => {
      const ups = await (await fetch(loom.admin("/upstreams"))).json();
      const list = Array.isArray(ups) ? ups : ups.upstreams;
      const ep = list.find((u: { name: string }) => u.name === "hc").endpoints
        .find((e: { address: string }) => e.address === b.address);
      return ep.healthy === false;
    });
    const before = b.conns;
    for (let i = 0; i < 4; i++) assert.equal(await roundTrip(loom.port, "h"), "A:h|eof");
    assert.equal(b.conns, before);
    assert.ok(a.probes > 0 && b.probes > 0);
  } finally {
    await loom.close();
    a.close();
    b.close();
  }
});

itest("tcp: idle connections close; a reload applies to new connections while old ones go on", async () => {
  const a = startEcho("A");
  const b = startEcho("B");
  const ups = [{ name: "a", endpoints: [a.address] }, { name: "b", endpoints: [b.address] }];
  const loom = await startLoom(tcpYaml({ upstream: "a", idle_timeout: "300ms" }, ups));
  try {
    // Idle: nothing either way closes the connection (the client sees the end of stream).
    const idle = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
    assert.equal(await readAll(idle), "");
    idle.close();

    const old = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
    await writeAll(old, enc.encode("1"));
    assert.equal(await readText(old, 3), "A:1");
    // Same upstreams, a changed listener (another default upstream, no idle limit): reopened on its port.
    writeConfig(loom, tcpYaml({ upstream: "b", idle_timeout: "0s" }, ups));
    assert.deepEqual(await loom.sup.reload("test"), { ok: true });
    assert.equal(await roundTrip(loom.port, "2"), "B:2|eof");
    // The old connection still reaches A.
    await writeAll(old, enc.encode("3"));
    assert.equal(await readText(old, 1), "3");
    await old.closeWrite();
    assert.equal(await readAll(old), "|eof");
    old.close();
  } finally {
    await loom.close();
    a.close();
    b.close();
  }
});

itest("tcp: TLS passthrough by SNI to two TLS upstreams; the default and a closed unknown name", async () => {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const certA = await ca.leaf("a", "a.example", ["DNS:a.example"]);
  const certB = await ca.leaf("b", "b.example", ["DNS:*.b.example", "DNS:deep.x.b.example"]);
  const tlsEcho = (tag: string, files: { cert: string; key: string }) =>
    startEcho(tag, () =>
      Deno.listenTls({
        hostname: "127.0.0.1",
        port: 0,
        cert: Deno.readTextFileSync(files.cert),
        key: Deno.readTextFileSync(files.key),
      }));
  const a = tlsEcho("A", certA);
  const b = tlsEcho("B", certB);
  const plain = startEcho("P");
  const caCerts = [Deno.readTextFileSync(ca.cert)];
  const ups = [
    { name: "a", endpoints: [a.address] },
    { name: "b", endpoints: [b.address] },
    { name: "plain", endpoints: [plain.address] },
  ];
  const routes = [{ server_names: ["a.example"], upstream: "a" }, {
    server_names: ["*.b.example"],
    upstream: "b",
  }];
  const loom = await startLoom(tcpYaml({ sni_routes: routes }, ups));
  /** A TLS round trip through Loom with SNI `name`, verifying the certificate the upstream presents. */
  const tlsTrip = async (name: string, text: string) => {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
    const tls = await Deno.startTls(tcp, { hostname: name, caCerts });
    try {
      await tls.handshake();
      await writeAll(tls, enc.encode(text));
      return await readText(tls, 2 + text.length);
    } finally {
      tls.close();
    }
  };
  try {
    assert.equal(await tlsTrip("a.example", "hi-a"), "A:hi-a");
    assert.equal(await tlsTrip("x.b.example", "hi-b"), "B:hi-b");
    assert.equal(await tlsTrip("deep.x.b.example", "deep"), "B:deep");
    // a.example's certificate does not name b.example: the client refuses the wrong upstream.
    await assert.rejects(async () => {
      const tcp = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
      const tls = await Deno.startTls(tcp, { hostname: "b.example", caCerts });
      try {
        await tls.handshake();
      } finally {
        tls.close();
      }
    });
    // An unknown name (and no default upstream): closed before any upstream is asked.
    const connsBefore = a.conns + b.conns;
    await assert.rejects(() => tlsTrip("other.example", "x"));
    assert.equal(a.conns + b.conns, connsBefore);
    const m = await metrics(loom);
    assert.ok(
      metricValue(m, "loom_tcp_connections_total", { listener: "tcp", upstream: "", result: "no_route" }) >=
        1,
    );

    // With a default upstream, unknown names and plain (non-TLS) clients go there.
    writeConfig(loom, tcpYaml({ sni_routes: routes, upstream: "plain" }, ups));
    assert.deepEqual(await loom.sup.reload("test"), { ok: true });
    assert.equal(await roundTrip(loom.port, "not tls"), "P:not tls|eof");
    assert.equal(await tlsTrip("a.example", "again"), "A:again");
  } finally {
    await loom.close();
    a.close();
    b.close();
    plain.close();
    Deno.removeSync(dir, { recursive: true });
  }
}, { needs: ["openssl"] });
