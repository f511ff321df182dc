/**
 * WebSocket through the gateway with real peers: a python3-websockets client
 * (ping/pong, text, binary, close code, subprotocol) and a Deno upstream;
 * subprotocol negotiation checked, idle timeout, tunnels counted in metrics,
 * and a reload that removes the route does not cut an open socket.
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoom, startLoomProcess } from "./helpers.ts";
import { PYTHON } from "./grpc_util.ts";
import { TestCa } from "./tls_util.ts";
import { H2Connection, type H2Stream } from "../src/http2/connection.ts";
import { ErrorCode } from "../src/http2/frame.ts";

const WS_CLIENT = new URL("./grpc/ws_client.py", import.meta.url).pathname;

/** Echo upstream; `?pick=NAME` makes it answer with that subprotocol. */
function wsUpstream() {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const pick = new URL(req.url).searchParams.get("pick");
    const { socket, response } = Deno.upgradeWebSocket(req, pick ? { protocol: pick } : {});
    socket.onmessage = (e) => {
      if (e.data === "close-me") socket.close(4001, "bye");
      else socket.send(e.data);
    };
    return response;
  });
  return { address: `127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
}

/** Runs ws_client.py; `ca` verifies a wss:// server against that CA file. */
async function pyClient(url: string, protocols: string[], ca?: string): Promise<Record<string, unknown>> {
  const args = ca !== undefined ? ["--ca", ca, url, ...protocols] : [url, ...protocols];
  const child = new Deno.Command(PYTHON, {
    args: [WS_CLIENT, ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .spawn();
  const t = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const out = await child.output();
  clearTimeout(t);
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.ok(text !== "", new TextDecoder().decode(out.stderr));
  return JSON.parse(text);
}

const config = (up: string, idle = "60s") => `
listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
    idle_timeout: ${idle}
upstreams:
  - name: ws
    endpoints: ["${up}"]
routes:
  - { id: ws, path: "/ws/*", upstream: ws }
`;

/** A raw upstream that completes the handshake with a subprotocol nobody offered (Deno.upgradeWebSocket refuses to). */
function evilUpstream() {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of l) {
      const buf = new Uint8Array(8192);
      const n = await conn.read(buf).catch(() => null);
      const head = new TextDecoder().decode(buf.subarray(0, n ?? 0));
      const key = /sec-websocket-key:\s*(\S+)/i.exec(head)?.[1] ?? "";
      const digest = await crypto.subtle.digest(
        "SHA-1",
        new TextEncoder().encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
      );
      const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
      await conn.write(new TextEncoder().encode(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n" +
          `sec-websocket-accept: ${accept}\r\nsec-websocket-protocol: evil\r\n\r\n`,
      )).catch(() => {});
      setTimeout(() => conn.close(), 2000);
    }
  })().catch(() => {});
  return { address: `127.0.0.1:${(l.addr as Deno.NetAddr).port}`, close: () => l.close() };
}

itest(
  "websocket: python client through Loom: subprotocol, ping/pong, text, binary, close code; metrics",
  async () => {
    const up = wsUpstream();
    const evil = evilUpstream();
    const loom = await startLoom(
      config(up.address).replace(
        "routes:\n",
        `  - name: evil\n    endpoints: ["${evil.address}"]\nroutes:\n  - { id: evil, path: "/evil/*", upstream: evil }\n`,
      ),
    );
    try {
      const ok = await pyClient(`ws://127.0.0.1:${loom.port}/ws/a?pick=chat`, ["chat", "superchat"]);
      assert.deepEqual(ok, {
        subprotocol: "chat",
        pong: true,
        text: "hello",
        binary: "0001feff",
        close_code: 4001,
        close_reason: "bye",
      });
      // The upstream picks a subprotocol the client never offered: refused before the 101 is relayed.
      const bad = await pyClient(`ws://127.0.0.1:${loom.port}/evil/a`, ["chat"]);
      assert.equal(bad.status, 502, JSON.stringify(bad));
      const metrics = await (await fetch(loom.admin("/metrics"))).text();
      assert.match(metrics, /loom_websocket_connections_total\{route="ws"\} 1\b/);
      assert.match(metrics, /loom_websocket_connections_active\{route="ws"\} 0\b/);
    } finally {
      await loom.close();
      await up.close();
      evil.close();
    }
  },
  { needs: ["python3 websockets"] },
);

/** Opens a browser-style WebSocket and resolves once open. */
function open(url: string): Promise<{ ws: WebSocket; next: () => Promise<string>; closed: Promise<number> }> {
  const ws = new WebSocket(url);
  const queue: string[] = [];
  let waiting: ((s: string) => void) | null = null;
  ws.onmessage = (e) => {
    if (waiting) {
      const w = waiting;
      waiting = null;
      w(String(e.data));
    } else queue.push(String(e.data));
  };
  const closed = new Promise<number>((r) => ws.onclose = (e) => r(e.code));
  return new Promise((resolve, reject) => {
    ws.onerror = () => reject(new Error("websocket error"));
    ws.onopen = () =>
      resolve({
        ws,
        closed,
        next: () => queue.length > 0 ? Promise.resolve(queue.shift()!) : new Promise((r) => waiting = r),
      });
  });
}

itest(
  "websocket: a reload that removes the route keeps open sockets; the idle timeout closes quiet ones",
  async () => {
    const up = wsUpstream();
    const loom = await startLoom(config(up.address, "700ms"));
    try {
      const a = await open(`ws://127.0.0.1:${loom.port}/ws/keep`);
      a.ws.send("before");
      assert.equal(await a.next(), "before");
      // New config without the route and the upstream.
      const text = Deno.readTextFileSync(loom.configPath).replace(
        /upstreams:[\s\S]*?routes:[\s\S]*?\n(?=\S|$)/,
        "",
      );
      Deno.writeTextFileSync(loom.configPath, text);
      const r = await loom.sup.reload();
      assert.ok(r.ok, JSON.stringify(r));
      const gone = await fetch(loom.url("/ws/x"));
      assert.equal(gone.status, 404);
      await gone.body?.cancel();
      // Keep traffic flowing below the idle timeout: the tunnel survives the reload.
      for (let i = 0; i < 3; i++) {
        await new Promise((res) => setTimeout(res, 300));
        a.ws.send(`after-${i}`);
        assert.equal(await a.next(), `after-${i}`);
      }
      // Then go quiet: the idle timeout (700 ms) closes it.
      const t0 = Date.now();
      const code = await a.closed;
      assert.ok(Date.now() - t0 < 3000, "closed by the idle timeout");
      assert.notEqual(code, 4001);
    } finally {
      await loom.close();
      await up.close();
    }
  },
);

itest(
  "websocket over TLS: the same wss:// works on the fast-path https listener and the HTTP/2 listener (ALPN h2)",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const leaf = await ca.leaf("ws", "localhost", ["DNS:localhost", "IP:127.0.0.1"]);
    const up = wsUpstream();
    const h2Port = freePort();
    // The second listener offers ALPN h2, so it runs on Loom's HTTP/2 listener (node:tls + src/http2).
    const loom = await startLoomProcess(`
listeners:
  - name: fast
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls: { cert_file: "${leaf.cert}", key_file: "${leaf.key}" }
  - name: h2
    address: "127.0.0.1:${h2Port}"
    protocol: https
    tls: { cert_file: "${leaf.cert}", key_file: "${leaf.key}", alpn: [h2, http/1.1] }
upstreams:
  - name: ws
    endpoints: ["${up.address}"]
routes:
  - { id: ws, path: "/ws/*", upstream: ws }
`);
    try {
      for (const port of [loom.port, h2Port]) {
        const ok = await pyClient(`wss://localhost:${port}/ws/a?pick=chat`, ["chat"], ca.cert);
        assert.deepEqual(ok, {
          subprotocol: "chat",
          pong: true,
          text: "hello",
          binary: "0001feff",
          close_code: 4001,
          close_reason: "bye",
        }, `port ${port}: ${loom.log()}`);
        // No route: the refusal is a plain HTTP answer, not a hung socket.
        const none = await pyClient(`wss://localhost:${port}/nope`, [], ca.cert);
        assert.equal(none.status, 404, JSON.stringify(none));
      }
      const metrics = await (await fetch(loom.admin("/metrics"))).text();
      assert.match(metrics, /loom_websocket_connections_total\{route="ws"\} 2\b/);
      assert.match(metrics, /loom_websocket_connections_active\{route="ws"\} 0\b/);
    } finally {
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl", "python3 websockets"] },
);

/** A masked client WebSocket frame (RFC 6455 5.2) with a payload under 126 bytes. */
function wsFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const out = new Uint8Array(6 + payload.length);
  out.set([0x80 | opcode, 0x80 | payload.length, ...mask]);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i] ^ mask[i % 4];
  return out;
}

itest(
  "websocket over HTTP/2 (RFC 8441 extended CONNECT) on the HTTP/2 listener, to an HTTP/1.1 upstream",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const leaf = await ca.leaf("ws", "localhost", ["DNS:localhost", "IP:127.0.0.1"]);
    const up = wsUpstream();
    const loom = await startLoomProcess(`
listeners:
  - name: h2
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls: { cert_file: "${leaf.cert}", key_file: "${leaf.key}", alpn: [h2, http/1.1] }
upstreams:
  - name: ws
    endpoints: ["${up.address}"]
routes:
  - { id: ws, path: "/ws/*", upstream: ws }
`);
    const tls = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: loom.port,
      caCerts: [Deno.readTextFileSync(ca.cert)],
      alpnProtocols: ["h2"],
    });
    let session: H2Connection | null = null;
    try {
      const hs = await tls.handshake();
      assert.equal(hs.alpnProtocol, "h2");
      session = H2Connection.client(tls);
      await session.ready;
      // H2Connection does not expose the peer's SETTINGS_ENABLE_CONNECT_PROTOCOL; the listener's own
      // H2Connection refuses :protocol unless it advertised it (RFC 8441 §4), so the 200 below shows it.
      const field = (f: string[], name: string) => {
        for (let i = 0; i < f.length; i += 2) if (f[i] === name) return f[i + 1];
        return undefined;
      };
      const connect = (path: string) =>
        session!.request([
          ":method",
          "CONNECT",
          ":protocol",
          "websocket",
          ":scheme",
          "https",
          ":path",
          path,
          ":authority",
          `localhost:${loom.port}`,
          "sec-websocket-version",
          "13",
          "sec-websocket-protocol",
          "chat",
        ], false);
      // No route: an ordinary HTTP/2 error status.
      const none = connect("/nope");
      assert.equal(field(await none.response, ":status"), "404");
      none.reset(ErrorCode.CANCEL);

      const s: H2Stream = connect("/ws/a?pick=chat");
      const h = await s.response;
      assert.equal(field(h, ":status"), "200", loom.log());
      assert.equal(field(h, "sec-websocket-protocol"), "chat");
      assert.equal(field(h, "sec-websocket-accept"), undefined);
      let buf = new Uint8Array(0);
      const nextFrame = async (): Promise<{ opcode: number; payload: Uint8Array }> => {
        while (buf.length < 2 || buf.length < 2 + (buf[1] & 0x7f)) {
          const d = await s.read();
          if (d === null) throw new Error("stream ended before a complete WebSocket frame");
          const n = new Uint8Array(buf.length + d.length);
          n.set(buf);
          n.set(d, buf.length);
          buf = n;
        }
        const len = buf[1] & 0x7f;
        const f = { opcode: buf[0] & 0x0f, payload: buf.slice(2, 2 + len) };
        buf = buf.slice(2 + len);
        return f;
      };
      const enc = new TextEncoder();
      await s.write(wsFrame(1, enc.encode("hello")));
      const echo = await nextFrame();
      assert.deepEqual([echo.opcode, new TextDecoder().decode(echo.payload)], [1, "hello"]);
      await s.write(wsFrame(2, new Uint8Array([0, 1, 0xfe, 0xff])));
      const bin = await nextFrame();
      assert.deepEqual([bin.opcode, [...bin.payload]], [2, [0, 1, 0xfe, 0xff]]);
      await s.write(wsFrame(1, enc.encode("close-me")));
      const close = await nextFrame();
      assert.equal(close.opcode, 8);
      assert.equal((close.payload[0] << 8) | close.payload[1], 4001);
      s.reset(ErrorCode.CANCEL);
      const metrics = await (await fetch(loom.admin("/metrics"))).text();
      assert.match(metrics, /loom_websocket_connections_total\{route="ws"\} 1\b/);
    } finally {
      if (session) session.destroy();
      else tls.close();
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl"] },
);
