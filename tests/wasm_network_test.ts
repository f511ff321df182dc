/**
 * Proxy-Wasm network (L4) filters on a tcp listener (issue 14 item 10),
 * through a running Loom with our own C plugin (plugins/test/network.c):
 * bytes rewritten both ways, connection properties, Pause with accumulation,
 * proxy_continue_stream from a tick (held data and a held new connection),
 * proxy_close_stream, both close callbacks, failure policies.
 */
import assert from "node:assert/strict";
import { freePort, itest, waitFor, writeConfig } from "./helpers.ts";
import { metricValue } from "./gateway_util.ts";
import { type Echo, metrics, readAll, readText, roundTrip, tcpYaml, withEchoLoom } from "./tcp_util.ts";
import { PLUGINS } from "./wasm_util.ts";

const NETWORK = PLUGINS + "network.wasm";
const enc = new TextEncoder();

async function send(c: Deno.Conn, text: string): Promise<void> {
  const b = enc.encode(text);
  let off = 0;
  while (off < b.length) off += await c.write(b.subarray(off));
}

/**
 * A tcp listener on ${PORT} to the echo upstream `a` (`listener` keys added),
 * a second one on `port2` with the plugins in `second` when given, and network.c
 * defined once per entry of `configs` (plugin name → its configuration words).
 */
function filterYaml(
  a: Echo,
  listener: Record<string, unknown>,
  configs: Record<string, string>,
  second?: { port: number; plugins: string[] },
  policies: Record<string, string> = {},
): string {
  const plugins = Object.entries(configs).map(([name, config]) => ({
    name,
    path: NETWORK,
    config,
    ...(policies[name] !== undefined ? { failure_policy: policies[name] } : {}),
  }));
  const more = second === undefined
    ? []
    : [{ name: "second", address: `127.0.0.1:${second.port}`, upstream: "echo", plugins: second.plugins }];
  return tcpYaml(
    { upstream: "echo", ...listener },
    [{ name: "echo", endpoints: [a.address] }],
    `plugins: ${JSON.stringify(plugins)}`,
    more,
  );
}

itest(
  "wasm network: bytes rewritten both ways, connection properties, close callbacks",
  () =>
    withEchoLoom(
      ["A"],
      ([a]) => filterYaml(a, { plugins: ["net"] }, { net: "upper tag" }),
      async (loom, [a]) => {
        const c = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
        const src = `127.0.0.1:${c.localAddr.port}`;
        await send(c, "hello, world");
        await c.closeWrite();
        const back = await readAll(c);
        c.close();
        // Downstream upper-cased before the upstream saw it; the first upstream bytes prefixed with properties.
        assert.equal(back, `up=${a.address};src=${src};dst=127.0.0.1:${loom.port};sni=;A:HELLO, WORLD|eof`);
        const m = await waitFor("the connection's teardown callbacks", async () => {
          const m = await metrics(loom);
          return metricValue(m, "wasm_net_deleted") === 1 ? m : undefined;
        });
        const counters = ["connections", "downstream_bytes", "upstream_bytes"].map((n) =>
          metricValue(m, `wasm_net_${n}`)
        );
        assert.deepEqual(counters, [1, 12, "A:HELLO, WORLD|eof".length]);
        // Both peers ended their side first: remote closes.
        const closes = ["downstream_remote", "upstream_remote", "downstream_local"].map((n) =>
          metricValue(m, `wasm_net_close_${n}`)
        );
        assert.deepEqual(closes, [1, 1, 0]);
      },
    ),
);

itest(
  "wasm network: Pause holds bytes until a newline; continue_stream from a tick; a paused new connection",
  () => {
    const port2 = freePort();
    const configs = { line: "line", hold: "hold pausenew" };
    return withEchoLoom(
      ["A"],
      ([a]) => filterYaml(a, { plugins: ["line"] }, configs, { port: port2, plugins: ["hold"] }),
      async (loom) => {
        // "ab" is held (no newline), then seen again with "cd\n" appended: the window is "abcd\n".
        const c = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
        await send(c, "ab");
        // Held by the filter before the next bytes are read (into the same read buffer: the held ones are a copy).
        await waitFor(
          "the filter saw ab",
          async () => metricValue(await metrics(loom), "wasm_net_downstream_bytes") === 2,
        );
        await send(c, "cd\n");
        assert.equal(await readText(c, 10), "A:[5]abcd\n");
        await send(c, "x\n");
        assert.equal(await readText(c, 5), "[2]x\n");
        // A held tail without a newline goes on at the end of stream.
        await send(c, "tail");
        await c.closeWrite();
        assert.equal(await readAll(c), "[4]tail|eof");
        c.close();

        // Paused in on_new_connection (no upstream yet) and on "HOLD": each continued by the next tick.
        const h = await Deno.connect({ hostname: "127.0.0.1", port: port2 });
        await send(h, "HOLD me");
        // The tick appended "!" to the held bytes (the buffer outside a data callback) before continuing.
        assert.equal(await readText(h, 10), "A:HOLD me!");
        await send(h, " then more");
        await h.closeWrite();
        assert.equal(await readAll(h), " then more|eof");
        h.close();
      },
    );
  },
);

itest(
  "wasm network: proxy_close_stream closes; a trap closes under fail_closed and passes under fail_open",
  () => {
    const port2 = freePort();
    return withEchoLoom(
      ["A"],
      ([a]) =>
        filterYaml(a, { plugins: ["closed"] }, { closed: "", open: "" }, { port: port2, plugins: ["open"] }, {
          open: "fail_open",
        }),
      async (loom, [a]) => {
        // QUIT: the window is dropped and the connection closed; the upstream never sees a byte.
        const c = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
        await send(c, "please QUIT now");
        const back = await readAll(c);
        c.close();
        assert.ok(!back.includes("QUIT"), back);
        assert.equal(a.conns, 0);
        await waitFor("close callbacks of the closed connection", async () => {
          const m = await metrics(loom);
          return metricValue(m, "wasm_net_close_downstream_local") === 1 &&
            metricValue(m, "wasm_net_close_upstream_local") === 1;
        });

        // fail_closed: the trap closes the connection.
        const t = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
        await send(t, "TRAP");
        assert.ok(!(await readAll(t)).includes("TRAP"));
        t.close();
        assert.equal(a.conns, 0);

        // fail_open: the bytes pass the failed plugin unchanged, and later ones too.
        const o = await Deno.connect({ hostname: "127.0.0.1", port: port2 });
        await send(o, "TRAP");
        assert.equal(await readText(o, 6), "A:TRAP");
        await send(o, " after");
        await o.closeWrite();
        assert.equal(await readAll(o), " after|eof");
        o.close();
        const m = await metrics(loom);
        for (const plugin of ["closed", "open"]) {
          assert.ok(metricValue(m, "loom_plugin_errors_total", { plugin }) >= 1, plugin);
        }
      },
    );
  },
);

itest(
  "wasm network: an upstream that never connected: the downstream's close (local), no upstream close",
  () => {
    const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const deadAddr = `127.0.0.1:${(dead.addr as Deno.NetAddr).port}`;
    dead.close(); // nothing listens there: the connect is refused
    const plugins = [{ name: "net", path: NETWORK, config: "" }];
    return withEchoLoom(
      [],
      () =>
        tcpYaml(
          { upstream: "dead", plugins: ["net"] },
          [{ name: "dead", endpoints: [deadAddr] }],
          `plugins: ${JSON.stringify(plugins)}`,
        ),
      async (loom) => {
        const c = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
        assert.equal(await readAll(c), "");
        c.close();
        // As Envoy's wasm filter before tcp_proxy: the failed connect closes the downstream (LOCAL); the
        // filter hears of no upstream connection, then its context ends.
        const m = await waitFor("the connection's teardown callbacks", async () => {
          const m = await metrics(loom);
          return metricValue(m, "wasm_net_deleted") === 1 ? m : undefined;
        });
        const seen = ["connections", "close_downstream_local", "close_downstream_remote"].map((n) =>
          metricValue(m, `wasm_net_${n}`)
        );
        assert.deepEqual(seen, [1, 1, 0]);
        for (const peer of ["local", "remote", "unknown"]) {
          assert.equal(metricValue(m, `wasm_net_close_upstream_${peer}`), 0, peer);
        }
        assert.equal(
          metricValue(m, "loom_tcp_connections_total", {
            listener: "tcp",
            upstream: "dead",
            result: "connect_failed",
          }),
          1,
        );
      },
    );
  },
);

itest(
  "wasm network: a reload replacing the filter: established connections keep the old one, new ones get the new",
  () =>
    withEchoLoom(
      ["A"],
      ([a]) => filterYaml(a, { plugins: ["net"] }, { net: "upper" }),
      async (loom, [a]) => {
        const old = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
        await send(old, "one");
        assert.equal(await readText(old, 5), "A:ONE");
        // The same plugin name with another configuration: a new plugin (and VM); the old one retires.
        writeConfig(loom, filterYaml(a, { plugins: ["net"] }, { net: "" }));
        assert.deepEqual(await loom.sup.reload("test"), { ok: true });
        assert.equal(await roundTrip(loom.port, "new"), "A:new|eof");
        // As in Envoy, a connection keeps the filter chain it was accepted with (its plugin, VM and root context).
        await send(old, "two");
        assert.equal(await readText(old, 3), "TWO");
        const deleted = async () => metricValue(await metrics(loom), "wasm_net_deleted");
        const before = await deleted();
        await old.closeWrite();
        assert.equal(await readAll(old), "|eof");
        old.close();
        // Its end deletes its stream context, then the retired plugin's root context (its last user gone).
        await waitFor(
          "the old stream and root contexts deleted",
          async () => (await deleted()) === before + 2,
        );
      },
    ),
);

// ABI 0.2.1's continue/close_stream(DOWNSTREAM | UPSTREAM) and ABI 0.1.0's resume_downstream/upstream and
// close_downstream/upstream: network.c and its 0.1.0 build (network_0_1_0.c) through the same steps.
for (const [abi, file] of [["0.2.1", "network.wasm"], ["0.1.0", "network_0_1_0.wasm"]]) {
  itest(
    `wasm network (ABI ${abi}): each direction paused and continued from a tick; closed by either stream type`,
    () =>
      withEchoLoom(
        ["A"],
        ([a]) => {
          const plugins = [{ name: "ctl", path: PLUGINS + file, config: "pausenew hold upctl" }];
          return tcpYaml(
            { upstream: "echo", plugins: ["ctl"] },
            [{ name: "echo", endpoints: [a.address] }],
            `plugins: ${JSON.stringify(plugins)}`,
          );
        },
        async (loom, [a]) => {
          // The new connection and "HOLD" (downstream) wait for a tick, which resumes the downstream.
          const c = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
          await send(c, "HOLD me");
          assert.equal(await readText(c, 10), "A:HOLD me!");
          // Known once the module is compiled (it is: its callbacks ran).
          const info = await (await fetch(loom.admin("/plugins"))).json() as {
            name: string;
            abi_version: string;
          }[];
          assert.equal(info.find((p) => p.name === "ctl")?.abi_version, abi);
          // The echo of "WAIT" is paused on its way back (upstream); the tick appends "!" and resumes the upstream.
          await send(c, " WAIT");
          assert.equal(await readText(c, 6), " WAIT!");
          // The echo of "BYE" closes the upstream stream: the whole connection, as Envoy's closeStream.
          await send(c, " BYE");
          assert.equal(await readAll(c), "");
          c.close();
          // "QUIT" closes the downstream stream.
          const q = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
          await send(q, "QUIT");
          assert.ok(!(await readAll(q)).includes("QUIT"));
          q.close();
          assert.equal(a.conns, 1);
          await waitFor("both connections' close callbacks", async () => {
            const m = await metrics(loom);
            return metricValue(m, "wasm_net_close_downstream_local") === 2 &&
              metricValue(m, "wasm_net_deleted") === 2;
          });
        },
      ),
  );
}

itest("wasm network: connection.requested_server_name from a passed-through ClientHello", () => {
  const routes = [{ server_names: ["*.example"], upstream: "echo" }];
  return withEchoLoom(
    ["A"],
    ([a]) => filterYaml(a, { sni_routes: routes, plugins: ["net"] }, { net: "" }),
    async (loom) => {
      // The echo upstream does not speak TLS: the handshake fails, after Loom read the name.
      const tcp = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
      const tls = await Deno.startTls(tcp, { hostname: "svc.example" });
      await assert.rejects(() => tls.handshake());
      tls.close();
      await waitFor(
        "the SNI counter",
        async () => metricValue(await metrics(loom), "wasm_net_sni_svc_example") === 1,
      );
    },
  );
});
