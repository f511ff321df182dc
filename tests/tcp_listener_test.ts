/**
 * tcp listeners (issue 14 item 10): byte streams through a running Loom to
 * plain TCP upstreams (echo servers on loopback), load balancing, health
 * checks, connect retries, half-close, idle timeout, hot reload, and TLS
 * passthrough by SNI to two TLS upstreams.
 */
import assert from "node:assert/strict";
import { itest, startLoom, startLoomProcess, waitFor, writeConfig, writeTempConfig } from "./helpers.ts";
import { loadConfig } from "../src/config/mod.ts";
import { PLUGINS } from "./wasm_util.ts";
import { metricValue } from "./gateway_util.ts";
import { TestCa } from "./tls_util.ts";
import {
  type Echo,
  metrics,
  noOpenConnections,
  readAll,
  readText,
  roundTrip,
  startEcho,
  tcpYaml,
  withEchoLoom,
  writeAll,
} from "./tcp_util.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

itest(
  "tcp: bytes both ways through a TCP echo upstream, half-close each way, counted",
  () =>
    withEchoLoom(
      ["A"],
      ([a]) => tcpYaml({ upstream: "echo" }, [{ name: "echo", endpoints: [a.address] }]),
      async (loom) => {
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
          metricValue(m, "loom_tcp_connections_total", {
            listener: "tcp",
            upstream: "echo",
            result: "proxied",
          }),
          2,
        );
        assert.equal(
          metricValue(m, "loom_tcp_bytes_total", { listener: "tcp", direction: "upstream" }),
          big.length + 5,
        );
        await noOpenConnections(loom);
      },
    ),
);

itest("tcp: round robin over two endpoints; a down endpoint is retried past; none left closes", () => {
  const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadAddr = `127.0.0.1:${(dead.addr as Deno.NetAddr).port}`;
  dead.close(); // nothing listens there: connections are refused
  const yaml = ([a, b]: Echo[]) =>
    tcpYaml({ upstream: "two" }, [{
      name: "two",
      endpoints: [a.address, b.address],
      load_balancer: "round_robin",
    }]);
  return withEchoLoom(["A", "B"], yaml, async (loom, [a]) => {
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

    // With outlier detection a refused connect ejects the endpoint: /upstreams shows it.
    const ejecting = {
      name: "ejecting",
      endpoints: [deadAddr, a.address],
      retry: { max_retries: 1 },
      load_balancer: "round_robin",
      outlier_detection: { consecutive_failures: 1, base_ejection_time: "1m" },
    };
    writeConfig(loom, tcpYaml({ upstream: "ejecting" }, [ejecting]));
    assert.deepEqual(await loom.sup.reload("test"), { ok: true });
    for (let i = 0; i < 2; i++) assert.equal(await roundTrip(loom.port, "e"), "A:e|eof");
    const ups = await (await fetch(loom.admin("/upstreams"))).json();
    const eps = (Array.isArray(ups) ? ups : ups.upstreams).find((u: { name: string }) =>
      u.name === "ejecting"
    )
      .endpoints;
    assert.deepEqual(
      eps.map((e: { address: string; ejected?: boolean }) => [e.address, e.ejected === true]),
      [
        [deadAddr, true],
        [a.address, false],
      ],
    );

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
  });
});

itest(
  "tcp: the upstream's bulkhead caps open connections: one queued until a slot frees, one refused",
  () => {
    const bulkhead = { max_concurrent: 1, queue_size: 1, timeout: "30s" };
    const yaml = (bh: Record<string, unknown>) => ([a]: Echo[]) =>
      tcpYaml({ upstream: "capped" }, [{ name: "capped", endpoints: [a.address], bulkhead: bh }]);
    return withEchoLoom(["A"], yaml(bulkhead), async (loom, [a]) => {
      const first = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
      await writeAll(first, enc.encode("1"));
      assert.equal(await readText(first, 3), "A:1");
      // The slot is taken: the second connection waits in the queue (it has not reached the upstream).
      const second = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
      await writeAll(second, enc.encode("2"));
      await first.closeWrite();
      assert.equal(await readAll(first), "|eof");
      first.close();
      // The first one's end hands its slot to the queued one.
      assert.equal(await readText(second, 3), "A:2");
      await second.closeWrite();
      assert.equal(await readAll(second), "|eof");
      second.close();
      assert.equal(a.conns, 2);

      // No queue: while the slot is held, a further connection is closed at once and counted.
      writeConfig(loom, yaml({ max_concurrent: 1, queue_size: 0 })([a]));
      assert.deepEqual(await loom.sup.reload("test"), { ok: true });
      const holder = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
      await writeAll(holder, enc.encode("h"));
      assert.equal(await readText(holder, 3), "A:h");
      assert.equal(await roundTrip(loom.port, "refused"), "");
      assert.equal(a.conns, 3);
      const overflow = { listener: "tcp", upstream: "capped", result: "overflow" };
      assert.equal(metricValue(await metrics(loom), "loom_tcp_connections_total", overflow), 1);
      holder.close();
      await noOpenConnections(loom); // the holder's slot given back
      assert.equal(await roundTrip(loom.port, "again"), "A:again|eof");
    });
  },
);

itest(
  "tcp: a failed connect opens the endpoint's circuit breaker; an open circuit is passed by or closes",
  () => {
    const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const deadAddr = `127.0.0.1:${(dead.addr as Deno.NetAddr).port}`;
    dead.close(); // nothing listens there: connections are refused
    const circuit_breaker = { failure_threshold: 1, timeout: "1m" };
    const yaml = (endpoints: string[]) =>
      tcpYaml({ upstream: "cb" }, [{ name: "cb", endpoints, load_balancer: "round_robin", circuit_breaker }]);
    return withEchoLoom(["A"], () => yaml([deadAddr]), async (loom, [a]) => {
      const count = async (result: string) =>
        metricValue(await metrics(loom), "loom_tcp_connections_total", {
          listener: "tcp",
          upstream: "cb",
          result,
        });
      // The refused connect opens the circuit; the next connection is closed without a connect.
      assert.equal(await roundTrip(loom.port, "x"), "");
      assert.equal(await count("connect_failed"), 1);
      assert.equal(await roundTrip(loom.port, "y"), "");
      assert.equal(await count("circuit_open"), 1);
      assert.equal(await count("connect_failed"), 1);
      assert.equal(
        metricValue(await metrics(loom), "loom_circuit_breaker_state", {
          upstream: "cb",
          endpoint: deadAddr,
        }),
        1,
      );

      // A second endpoint (the open breaker kept across the reload): round robin without retries would send
      // every other connection to the refusing one; the open circuit sends them all to A.
      writeConfig(loom, yaml([deadAddr, a.address]));
      assert.deepEqual(await loom.sup.reload("test"), { ok: true });
      for (let i = 0; i < 4; i++) assert.equal(await roundTrip(loom.port, `r${i}`), `A:r${i}|eof`);
      assert.equal(await count("connect_failed"), 1);
      const ups = await (await fetch(loom.admin("/upstreams"))).json();
      const eps = (Array.isArray(ups) ? ups : ups.upstreams).find((u: { name: string }) =>
        u.name === "cb"
      ).endpoints;
      assert.deepEqual(
        eps.map((e: { address: string; circuit: string }) => [e.address, e.circuit]),
        [[deadAddr, "open"], [a.address, "closed"]],
      );
    });
  },
);

itest("tcp: an endpoint failing its health checks gets no connections", () => {
  const health_check = {
    path: "/health",
    interval: "50ms",
    timeout: "500ms",
    healthy_threshold: 1,
    unhealthy_threshold: 1,
  };
  const yaml = ([a, b]: Echo[]) => {
    b.health = 503;
    const hc = { name: "hc", endpoints: [a.address, b.address], load_balancer: "round_robin", health_check };
    return tcpYaml({ upstream: "hc" }, [hc]);
  };
  return withEchoLoom(["A", "B"], yaml, async (loom, [a, b]) => {
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
  });
});

itest("tcp: idle connections close; a reload applies to new connections while old ones go on", () => {
  const ups = (
    [a, b]: Echo[],
  ) => [{ name: "a", endpoints: [a.address] }, { name: "b", endpoints: [b.address] }];
  const yaml = (echoes: Echo[]) => tcpYaml({ upstream: "a", idle_timeout: "300ms" }, ups(echoes));
  return withEchoLoom(["A", "B"], yaml, async (loom, echoes) => {
    // Idle: nothing either way closes the connection (the client sees the end of stream).
    const idle = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
    assert.equal(await readAll(idle), "");
    idle.close();

    const old = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
    await writeAll(old, enc.encode("1"));
    assert.equal(await readText(old, 3), "A:1");
    // Same upstreams, a changed listener (another default upstream, no idle limit): reopened on its port.
    writeConfig(loom, tcpYaml({ upstream: "b", idle_timeout: "0s" }, ups(echoes)));
    assert.deepEqual(await loom.sup.reload("test"), { ok: true });
    assert.equal(await roundTrip(loom.port, "2"), "B:2|eof");
    // The old connection still reaches A.
    await writeAll(old, enc.encode("3"));
    assert.equal(await readText(old, 1), "3");
    await old.closeWrite();
    assert.equal(await readAll(old), "|eof");
    old.close();
  });
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

itest("tcp: workers: 2 share the port; fresh connections through a network filter all succeed", async () => {
  const a = startEcho("A");
  const plugins = [{ name: "net", path: PLUGINS + "network.wasm", config: "upper" }];
  const loom = await startLoomProcess(
    "workers: 2\n" +
      tcpYaml({ upstream: "echo", plugins: ["net"] }, [{ name: "echo", endpoints: [a.address] }]) +
      `plugins: ${JSON.stringify(plugins)}\n`,
  );
  try {
    assert.equal((await (await fetch(loom.admin("/info"))).json()).workers, 2);
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => roundTrip(loom.port, `c${i}`)));
    results.forEach((r, i) => assert.equal(r, `A:C${i}|eof`, loom.log()));
    const m = await metrics(loom);
    assert.equal(metricValue(m, "loom_tcp_connections_total", { result: "proxied" }), 40);
  } finally {
    await loom.close();
    a.close();
  }
});

itest("tcp: config errors name the YAML path and line", async () => {
  const path = writeTempConfig(`listeners:
  - name: t
    address: "127.0.0.1:1"
    protocol: tcp
    tls: { cert_file: a.pem, key_file: a.key }
    sni_routes:
      - { server_names: ["a.example", "bad name"], upstream: nope }
  - name: h
    address: "127.0.0.1:2"
    protocol: http
    plugins: [x]
upstreams: [{ name: up, endpoints: ["127.0.0.1:3"] }]
`);
  try {
    const r = await loadConfig(path);
    assert.ok(!r.ok);
    const got = r.errors.map((e) => `${e.line} ${e.path}: ${e.message}`);
    const want = [
      /^5 listeners\[0\]\.tls: tcp listeners pass TLS through/,
      /^7 listeners\[0\]\.sni_routes\[0\]\.server_names\[1\]: a server name is a host name/,
      /^7 listeners\[0\]\.sni_routes\[0\]\.upstream: upstream "nope" is not defined/,
      /^11 listeners\[1\]\.plugins: "plugins" is for tcp listeners only/,
    ];
    for (const w of want) assert.ok(got.some((g) => w.test(g)), `${w} in\n${got.join("\n")}`);
  } finally {
    Deno.removeSync(path);
  }
});
