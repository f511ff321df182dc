/**
 * WebSocket through the gateway with real peers: a python3-websockets client
 * (ping/pong, text, binary, close code, subprotocol) and a Deno upstream;
 * subprotocol negotiation checked, idle timeout, tunnels counted in metrics,
 * and a reload that removes the route does not cut an open socket.
 */
import assert from "node:assert/strict";
import { itest, startLoom } from "./helpers.ts";
import { PYTHON } from "./grpc_util.ts";

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

async function pyClient(url: string, protocols: string[]): Promise<Record<string, unknown>> {
  const child = new Deno.Command(PYTHON, {
    args: [WS_CLIENT, url, ...protocols],
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
