/**
 * Proxy semantics through a real gateway: hop-by-hop and forwarding headers
 * (RFC 9110 7.6) in both directions, Host handling, request ids, error
 * responses, chunked re-encoding with trailers, keep-alive and pipelining,
 * 100-continue, HEAD/204/304, early upstream answers, client disconnects and
 * the WebSocket tunnel.
 */
import assert from "node:assert/strict";
import {
  btest,
  deferred,
  field,
  fieldValues,
  latin1,
  parseMessage,
  RawClient,
  rawRequest,
  within,
} from "./http1_util.ts";
import { startLoom, yamlOf } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";
import type { LocalHandle } from "../src/runtime/handles.ts";

const dec = new TextDecoder();

// ---------------------------------------------------------------------------
// Headers

btest(
  "headers: hop-by-hop fields removed and forwarding fields added toward the upstream",
  10_000,
  async () => {
    const up = startUpstream({ raw: true });
    const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
    try {
      const { res } = await rawRequest(
        loom.port,
        "GET /h?q=1 HTTP/1.1\r\n" +
          "Host: example.test:8080\r\n" +
          "Connection: keep-alive, X-Hop, x-other-hop\r\n" +
          "Connection: X-Third\r\n" +
          "Keep-Alive: timeout=5\r\n" +
          "Proxy-Connection: keep-alive\r\n" +
          "TE: trailers, deflate\r\n" +
          "Upgrade: websocket\r\n" +
          "X-Hop: secret\r\n" +
          "X-Other-Hop: secret\r\n" +
          "X-Third: secret\r\n" +
          "X-Keep: yes\r\n" +
          "X-Forwarded-For: 203.0.113.7\r\n" +
          "X-Forwarded-For: 198.51.100.2\r\n" +
          "X-Forwarded-Proto: https\r\n" +
          "X-Forwarded-Host: spoofed.example\r\n" +
          "Forwarded: for=203.0.113.7;proto=https\r\n" +
          "Via: 1.0 fred\r\n" +
          "\r\n",
        3000,
        false,
      );
      assert.equal(res?.status, 200);
      assert.equal(up.requests.length, 1);
      const m = up.requests[0];
      assert.equal(m.start, "GET /h?q=1 HTTP/1.1");
      for (
        const hop of [
          "connection",
          "keep-alive",
          "proxy-connection",
          "upgrade",
          "x-hop",
          "x-other-hop",
          "x-third",
        ]
      ) {
        assert.deepEqual(fieldValues(m, hop), [], `${hop} must not reach the upstream`);
      }
      assert.deepEqual(fieldValues(m, "te"), ["trailers"]);
      assert.deepEqual(fieldValues(m, "transfer-encoding"), []);
      assert.deepEqual(fieldValues(m, "x-keep"), ["yes"]);
      assert.deepEqual(fieldValues(m, "host"), ["example.test:8080"]);
      // The client is no trusted proxy (no trusted_proxies): its forwarding fields are replaced by Loom's.
      assert.deepEqual(fieldValues(m, "x-forwarded-for"), ["127.0.0.1"]);
      assert.deepEqual(fieldValues(m, "x-forwarded-proto"), ["http"]);
      assert.deepEqual(fieldValues(m, "x-forwarded-host"), ["example.test:8080"]);
      assert.deepEqual(fieldValues(m, "forwarded"), ['for=127.0.0.1;proto=http;host="example.test:8080"']);
      assert.deepEqual(fieldValues(m, "via"), ["1.0 fred, 1.1 loom"]);
    } finally {
      await loom.close();
      up.close();
    }
  },
);

btest("headers: TE without trailers is dropped; Upgrade kept only when upgrading", 10_000, async () => {
  const up = startUpstream({ raw: true });
  const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
  try {
    await rawRequest(loom.port, "GET / HTTP/1.1\r\nHost: a\r\nTE: gzip\r\nUpgrade: h2c\r\n\r\n", 3000, false);
    const m = up.requests[0];
    assert.deepEqual(fieldValues(m, "te"), []);
    assert.deepEqual(fieldValues(m, "upgrade"), []);
    assert.deepEqual(fieldValues(m, "connection"), []);
  } finally {
    await loom.close();
    up.close();
  }
});

btest("headers: hop-by-hop fields removed from the response, Via added", 10_000, async () => {
  const heads = [
    // With an upstream Via (joined), chunked, Connection-nominated fields.
    "HTTP/1.1 200 OK\r\nConnection: X-Resp-Hop, x-resp-hop2\r\nX-Resp-Hop: s\r\nX-Resp-Hop2: s\r\n" +
    "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\n" +
    "Transfer-Encoding: chunked\r\nX-Resp-Keep: yes\r\nVia: 1.1 upstream-proxy\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    // Without Via, Content-Length.
    "HTTP/1.1 201 Created\r\nConnection: X-Resp-Hop\r\nX-Resp-Hop: s\r\nKeep-Alive: timeout=5\r\n" +
    "X-Resp-Keep: yes\r\nContent-Length: 5\r\n\r\nhello",
  ];
  let i = 0;
  const up = startUpstream({
    raw: async (c) => {
      for (;;) {
        const req = await c.nextRequest();
        if (req === null) return c.close();
        await c.write(heads[i++ % heads.length]);
      }
    },
  });
  const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
  const c = await RawClient.connect(loom.port);
  try {
    for (const status of [200, 201]) {
      await c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
      const res = await c.response();
      assert.equal(res.status, status);
      assert.equal(dec.decode(res.body), "hello");
      for (const hop of ["x-resp-hop", "x-resp-hop2", "keep-alive", "proxy-connection", "te", "upgrade"]) {
        assert.deepEqual(fieldValues(res, hop), [], `${hop} must not reach the client (${status})`);
      }
      assert.deepEqual(fieldValues(res, "x-resp-keep"), ["yes"]);
      assert.deepEqual(
        fieldValues(res, "via"),
        status === 200 ? ["1.1 upstream-proxy, 1.1 loom"] : ["1.1 loom"],
      );
      // The upstream's Connection tokens are not passed on (the connection stays open: no "close").
      assert.deepEqual(fieldValues(res, "connection"), []);
    }
  } finally {
    c.close();
    await loom.close();
    up.close();
  }
});

btest(
  "headers: an HTTP/1.0 close-delimited upstream answer reaches an HTTP/1.1 client framed",
  10_000,
  async () => {
    const up = startUpstream({
      raw: async (c) => {
        await c.nextRequest();
        await c.write("HTTP/1.0 200 OK\r\nX-A: b\r\n\r\nuntil-close");
        c.close();
      },
    });
    const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
    const c = await RawClient.connect(loom.port);
    try {
      await c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
      const res = await c.response();
      assert.match(res.start, /^HTTP\/1\.1 200/);
      assert.equal(dec.decode(res.body), "until-close");
      assert.equal(field(res, "x-a"), "b");
    } finally {
      c.close();
      await loom.close();
      up.close();
    }
  },
);

btest("headers: Host preserved by default, host_rewrite, preserve_host false", 10_000, async () => {
  const up = startUpstream((req) => new Response(req.headers.get("host")));
  const loom = await startLoom(`
listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - id: keep
    path: /keep/*
    upstream: up
  - id: rewrite
    path: /rewrite/*
    upstream: up
    host_rewrite: internal.example
  - id: endpoint
    path: /endpoint/*
    upstream: up
    preserve_host: false
  - id: both
    path: /both/*
    upstream: up
    preserve_host: false
    host_rewrite: wins.example
`);
  try {
    const host = async (path: string, h: string) => {
      const { res } = await rawRequest(
        loom.port,
        `GET ${path} HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`,
      );
      assert.equal(res?.status, 200, res?.raw);
      return dec.decode(res!.body);
    };
    assert.equal(await host("/keep/x", "client.example:8443"), "client.example:8443");
    assert.equal(await host("/rewrite/x", "client.example"), "internal.example");
    assert.equal(await host("/endpoint/x", "client.example"), up.address);
    assert.equal(await host("/both/x", "client.example"), "wins.example");
    // Absolute-form: the target's authority replaces Host (RFC 9112 3.2.2).
    const { res } = await rawRequest(
      loom.port,
      "GET http://abs.example:81/keep/x HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    );
    assert.equal(dec.decode(res!.body), "abs.example:81");
  } finally {
    await loom.close();
    await up.close();
  }
});

btest(
  "headers: X-Request-ID generated when absent, kept when valid, replaced when invalid",
  10_000,
  async () => {
    const up = startUpstream(() => new Response("ok"));
    const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
    try {
      const ids = async (h: Record<string, string>) => {
        const res = await fetch(loom.url("/"), { headers: h });
        await res.body?.cancel();
        return up.seen.at(-1)!.headers.get("x-request-id");
      };
      const a = await ids({});
      const b = await ids({});
      assert.ok(a && /^[\x21-\x7e]{1,128}$/.test(a), `generated id ${a}`);
      assert.notEqual(a, b, "generated ids are unique");
      assert.equal(await ids({ "x-request-id": "client-id-123" }), "client-id-123");
      const tooLong = "x".repeat(200);
      const replaced = await ids({ "x-request-id": tooLong });
      assert.notEqual(replaced, tooLong);
      assert.ok(replaced && replaced.length <= 128, "an invalid id is replaced by a generated one");
      const spaced = await ids({ "x-request-id": "has space" });
      assert.notEqual(spaced, "has space");
      assert.ok(!spaced?.includes(","), "exactly one id is sent");
    } finally {
      await loom.close();
      await up.close();
    }
  },
);

// ---------------------------------------------------------------------------
// Errors

btest("errors: connection refused gives 502 JSON", 10_000, async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = (l.addr as Deno.NetAddr).port;
  l.close();
  const loom = await startLoom(yamlOf({ endpoints: [`127.0.0.1:${dead}`] }));
  try {
    const res = await fetch(loom.url("/x"), { headers: { "x-request-id": "rid-502" } });
    assert.equal(res.status, 502);
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    const j = await res.json();
    assert.equal(j.status, 502);
    assert.equal(j.request_id, "rid-502");
    assert.equal(typeof j.error, "string");
  } finally {
    await loom.close();
  }
});

btest("errors: no available endpoint gives 503 JSON", 10_000, async () => {
  const up = startUpstream();
  const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
  try {
    assert.equal((await (await fetch(loom.url("/"))).text()).startsWith("ok:"), true);
    // No config knob marks an endpoint down: reach the live endpoint object of this in-process instance.
    const handles = (loom.sup as unknown as { handles: LocalHandle[] }).handles;
    const snap = handles[0].instance.gateway.snapshot;
    for (const ep of snap.upstreams.get("up")!.endpoints) ep.healthy = false;
    const res = await fetch(loom.url("/"));
    assert.equal(res.status, 503);
    const j = await res.json();
    assert.equal(j.status, 503);
    assert.equal(up.seen.length, 1);
  } finally {
    await loom.close();
    await up.close();
  }
});

btest("errors: an upstream 500 with a body passes through untouched", 10_000, async () => {
  const body = '{"upstream":"broke","detail":"\u00e9t\u00e9"}';
  const up = startUpstream(() =>
    new Response(body, { status: 500, headers: { "content-type": "application/problem+json", "x-up": "1" } })
  );
  const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
  try {
    const res = await fetch(loom.url("/"));
    assert.equal(res.status, 500);
    assert.equal(res.headers.get("content-type"), "application/problem+json");
    assert.equal(res.headers.get("x-up"), "1");
    assert.equal(await res.text(), body);
  } finally {
    await loom.close();
    await up.close();
  }
});

for (
  const [name, head, partial] of [
    ["Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", "0123456789"],
    ["chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n0123456789\r\n"],
  ] as const
) {
  btest(`errors: upstream closing mid-body (${name}) aborts the client connection`, 10_000, async () => {
    const up = startUpstream({
      raw: async (c) => {
        await c.nextRequest();
        await c.write(head + partial);
        c.close();
      },
    });
    const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
    const c = await RawClient.connect(loom.port);
    try {
      await c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
      assert.notEqual(await c.waitClose(3000), "timeout", "the client connection must be closed");
      assert.match(c.buf, /^HTTP\/1\.1 200/);
      assert.ok(c.buf.includes("0123456789"));
      // Not a clean short response: the framing is incomplete.
      assert.equal(parseMessage(c.buf), null, "the client must not see a complete message");
      // fetch sees an error, not a short body.
      await assert.rejects(async () => {
        const res = await fetch(loom.url("/"));
        await res.text();
      });
    } finally {
      c.close();
      await loom.close();
      up.close();
    }
  });
}

// ---------------------------------------------------------------------------
// Bodies

btest(
  "bodies: chunked request re-encoded upstream, chunk-ext dropped, trailers forwarded",
  10_000,
  async () => {
    const up = startUpstream({ raw: true });
    const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
    try {
      const c = await RawClient.connect(loom.port);
      await c.write(
        "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n" +
          '5;ext=1;name="quoted"\r\nhello\r\n' +
          "1 ; spaced-ext\r\n,\r\n" +
          "00006\r\n world\r\n" +
          "0;last=1\r\nX-Checksum: abc\r\nX-Other: 2\r\n\r\n",
      );
      const res = await c.response();
      c.close();
      assert.equal(res.status, 200);
      assert.equal(up.requests.length, 1);
      const raw = up.raw[0];
      const m = up.requests[0];
      assert.deepEqual(fieldValues(m, "transfer-encoding"), ["chunked"]);
      assert.deepEqual(fieldValues(m, "content-length"), []);
      assert.equal(dec.decode(m.body), "hello, world");
      const bodyPart = raw.slice(raw.indexOf("\r\n\r\n") + 4);
      assert.ok(
        !bodyPart.includes(";"),
        `chunk extensions must not be forwarded: ${JSON.stringify(bodyPart)}`,
      );
      assert.ok(!bodyPart.includes("00006"), "chunk sizes are re-encoded");
      assert.deepEqual(m.trailers, [["X-Checksum", "abc"], ["X-Other", "2"]]);
      // Exact framing: every chunk line is "<hex>\r\n", the body ends with the trailers and CRLF.
      assert.match(bodyPart, /^([0-9a-f]+\r\n[^]*?\r\n)+0\r\nX-Checksum: abc\r\nX-Other: 2\r\n\r\n$/);
    } finally {
      await loom.close();
      up.close();
    }
  },
);

btest("bodies: chunked request split across many small writes arrives intact", 10_000, async () => {
  const up = startUpstream({ raw: true });
  const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
  try {
    const c = await RawClient.connect(loom.port);
    const msg = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n";
    for (let i = 0; i < msg.length; i += 3) {
      await c.write(msg.slice(i, i + 3));
      await new Promise((r) => setTimeout(r, 1));
    }
    const res = await c.response();
    c.close();
    assert.equal(res.status, 200);
    assert.equal(dec.decode(up.requests[0].body), "abc0123456789abcdef");
    assert.deepEqual(up.requests[0].trailers, [["X-T", "1"]]);
  } finally {
    await loom.close();
    up.close();
  }
});

btest(
  "bodies: Content-Length request forwarded with its length; response trailers relayed",
  10_000,
  async () => {
    const up = startUpstream({
      raw: async (c) => {
        for (;;) {
          const req = await c.nextRequest();
          if (req === null) return c.close();
          const b = latin1(req.body);
          await c.write(
            `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n${
              b.length.toString(16)
            }\r\n${b}\r\n0\r\nX-Sum: ${b.length}\r\n\r\n`,
          );
        }
      },
    });
    const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
    const c = await RawClient.connect(loom.port);
    try {
      await c.write("POST / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nContent-Length: 11\r\n\r\nhello world");
      const res = await c.response();
      assert.equal(dec.decode(res.body), "hello world");
      assert.deepEqual(res.trailers, [["X-Sum", "11"]]);
      assert.deepEqual(fieldValues(up.requests[0], "content-length"), ["11"]);
      assert.deepEqual(fieldValues(up.requests[0], "transfer-encoding"), []);
    } finally {
      c.close();
      await loom.close();
      up.close();
    }
  },
);

// ---------------------------------------------------------------------------
// Connection management

btest("keep-alive: 3 pipelined requests answered in order on one connection", 10_000, async () => {
  const up = startUpstream(async (req) => {
    const p = new URL(req.url).pathname;
    // The first is the slowest: responses must still come back in request order.
    if (p === "/1") await new Promise((r) => setTimeout(r, 100));
    return new Response("path:" + p);
  });
  const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
  const c = await RawClient.connect(loom.port);
  try {
    await c.write(
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    for (const n of [1, 2, 3]) {
      const res = await c.response();
      assert.equal(res.status, 200);
      assert.equal(dec.decode(res.body), "path:/" + n);
    }
    // Still open for a 4th.
    await c.write("GET /4 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.equal(dec.decode((await c.response()).body), "path:/4");
  } finally {
    c.close();
    await loom.close();
    await up.close();
  }
});

btest("keep-alive: pipelined GET then POST whose body arrives later", 10_000, async () => {
  const up = startUpstream(async (req) => new Response(new URL(req.url).pathname + ":" + await req.text()));
  const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
  const c = await RawClient.connect(loom.port);
  try {
    await c.write(
      "GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
    );
    assert.equal(dec.decode((await c.response()).body), "/a:");
    await new Promise((r) => setTimeout(r, 50));
    await c.write("hello");
    assert.equal(dec.decode((await c.response()).body), "/b:hello");
    await c.write("GET /c HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.equal(dec.decode((await c.response()).body), "/c:");
  } finally {
    c.close();
    await loom.close();
    await up.close();
  }
});

btest("keep-alive: Expect: 100-continue gets 100 Continue before the body is sent", 10_000, async () => {
  const up = startUpstream(async (req) => new Response("got:" + await req.text()));
  const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
  const c = await RawClient.connect(loom.port);
  try {
    await c.write("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    await c.until((b) => b.includes("\r\n\r\n"));
    assert.equal(c.buf, "HTTP/1.1 100 Continue\r\n\r\n");
    c.buf = "";
    await c.write("hello");
    const res = await c.response();
    assert.equal(res.status, 200);
    assert.equal(dec.decode(res.body), "got:hello");
    // Chunked with Expect as well.
    await c.write("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    await c.until((b) => b.includes("\r\n\r\n"));
    assert.equal(c.buf, "HTTP/1.1 100 Continue\r\n\r\n");
    c.buf = "";
    await c.write("2\r\nhi\r\n0\r\n\r\n");
    assert.equal(dec.decode((await c.response()).body), "got:hi");
  } finally {
    c.close();
    await loom.close();
    await up.close();
  }
});

btest("keep-alive: HEAD keeps Content-Length without a body; 204 and 304 carry no body", 10_000, async () => {
  const up = startUpstream({
    raw: async (c) => {
      for (;;) {
        const req = await c.nextRequest();
        if (req === null) return c.close();
        const path = req.start.split(" ")[1];
        if (req.start.startsWith("HEAD")) {
          await c.write("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-H: 1\r\n\r\n");
        } else if (path === "/204") await c.write("HTTP/1.1 204 No Content\r\nX-H: 2\r\n\r\n");
        else if (path === "/304") {
          await c.write('HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 99\r\n\r\n');
        } else await c.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext");
      }
    },
  });
  const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
  const c = await RawClient.connect(loom.port);
  try {
    await c.write("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    const head = await c.response({ noBody: true });
    assert.equal(head.status, 200);
    assert.equal(field(head, "content-length"), "1234");
    assert.equal(field(head, "transfer-encoding"), undefined);
    await c.write("GET /204 HTTP/1.1\r\nHost: a\r\n\r\n");
    const r204 = await c.response();
    assert.equal(r204.status, 204);
    assert.equal(field(r204, "content-length"), undefined);
    assert.equal(field(r204, "transfer-encoding"), undefined);
    await c.write('GET /304 HTTP/1.1\r\nHost: a\r\nIf-None-Match: "v1"\r\n\r\n');
    const r304 = await c.response();
    assert.equal(r304.status, 304);
    assert.equal(field(r304, "etag"), '"v1"');
    assert.equal(field(r304, "transfer-encoding"), undefined);
    // No stray body bytes: the next response parses cleanly on the same connection.
    await c.write("GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    const next = await c.response();
    assert.equal(dec.decode(next.body), "next");
    assert.equal(c.buf, "");
  } finally {
    c.close();
    await loom.close();
    up.close();
  }
});

btest("keep-alive: early upstream 413 during a large upload is relayed as 413, not 502", 20_000, async () => {
  for (const mode of ["close", "keep-open"] as const) {
    const up = startUpstream({
      raw: async (c) => {
        const deadline = Date.now() + 5000;
        while (!c.received().includes("\r\n\r\n") && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 5));
        }
        await c.write(
          "HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!",
        );
        if (mode === "close") c.close();
        else await c.closed;
      },
    });
    const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
    const c = await RawClient.connect(loom.port);
    try {
      const size = 64 * 1024 * 1024;
      await c.write(`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${size}\r\n\r\n`);
      // Upload in the background while reading the answer.
      const chunk = new Uint8Array(64 * 1024).fill(120);
      let sent = 0;
      const upload = (async () => {
        try {
          while (sent < size) {
            await c.conn.write(chunk);
            sent += chunk.length;
          }
        } catch { /* the gateway closes once it answered */ }
      })();
      const res = await c.response({ ms: 10_000 });
      assert.equal(res.status, 413, `${mode}: ${res.raw}`);
      assert.equal(dec.decode(res.body), "too big!");
      c.close();
      await within(upload, 5000, "upload end");
      assert.ok(sent < size, "the gateway must not read the whole upload");
    } finally {
      c.close();
      await loom.close();
      up.close();
    }
  }
});

btest("disconnect: client going away aborts the upstream request", 10_000, async () => {
  const started = deferred();
  const aborted = deferred<string>();
  const up = startUpstream((req) => {
    started.resolve();
    // Answers only once aborted (so the server can shut down afterwards).
    return new Promise<Response>((resolve) => {
      req.signal.addEventListener("abort", () => {
        aborted.resolve("aborted");
        resolve(new Response("late"));
      });
    });
  });
  const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
  try {
    const c = await RawClient.connect(loom.port);
    await c.write("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
    await within(started.promise, 3000, "upstream request start");
    const t0 = Date.now();
    c.close();
    assert.equal(await within(aborted.promise, 3000, "upstream abort"), "aborted");
    assert.ok(Date.now() - t0 < 1000);
  } finally {
    await loom.close();
    await up.close();
  }
});

btest("disconnect: client going away mid-upload closes the upstream connection", 10_000, async () => {
  const up = startUpstream({
    raw: async (c) => {
      await c.closed;
    },
  });
  const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
  try {
    const c = await RawClient.connect(loom.port);
    await c.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" + "x".repeat(10_000));
    const deadline = Date.now() + 3000;
    while (up.conns === 0 || !up.raw[0].includes("xxxx")) {
      if (Date.now() > deadline) throw new Error("upload never reached the upstream");
      await new Promise((r) => setTimeout(r, 5));
    }
    c.close();
    // The raw upstream's reader sees EOF/reset once the gateway closes its side.
    const t0 = Date.now();
    while (!up.ended[0]) {
      if (Date.now() - t0 > 3000) throw new Error("upstream connection not closed");
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    await loom.close();
    up.close();
  }
});

// ---------------------------------------------------------------------------
// WebSocket

btest("websocket: upgrade tunnelled; text and binary echo; close code preserved", 10_000, async () => {
  const closed = deferred<{ code: number; reason: string }>();
  let via: string | null = null;
  const up = startUpstream((req) => {
    if (req.headers.get("upgrade") !== "websocket") return new Response("no", { status: 400 });
    via = req.headers.get("via");
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onmessage = (e) => {
      if (e.data === "bye") socket.close(4001, "done here");
      else socket.send(e.data);
    };
    socket.onclose = (e) => closed.resolve({ code: e.code, reason: e.reason });
    return response;
  });
  const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${loom.port}/ws`);
    ws.binaryType = "arraybuffer";
    const messages: (string | ArrayBuffer)[] = [];
    const wait = deferred();
    let want = 0;
    ws.onmessage = (e) => {
      messages.push(e.data);
      if (messages.length === want) wait.resolve();
    };
    const wsClosed = deferred<CloseEvent>();
    ws.onclose = (e) => wsClosed.resolve(e);
    await within(new Promise((r, j) => (ws.onopen = r, ws.onerror = j)), 3000, "ws open");
    want = 3;
    ws.send("hello");
    ws.send(new Uint8Array([0, 1, 2, 255]));
    ws.send("x".repeat(100_000));
    await within(wait.promise, 3000, "echo");
    assert.equal(messages[0], "hello");
    assert.deepEqual([...new Uint8Array(messages[1] as ArrayBuffer)], [0, 1, 2, 255]);
    assert.equal(messages[2], "x".repeat(100_000));
    ws.send("bye");
    const ev = await within(wsClosed.promise, 3000, "ws close");
    assert.equal(ev.code, 4001);
    assert.equal(ev.reason, "done here");
    assert.equal((await within(closed.promise, 3000, "upstream close")).code, 4001);
    assert.equal(via, "1.1 loom");
  } finally {
    await loom.close();
    await up.close();
  }
});
