import assert from "node:assert/strict";
import { assertError, configOf, errorsOf, LISTENER } from "./testdata/helpers.ts";

const UPSTREAMS = "upstreams: [{name: a, endpoints: ['a:1']}, {name: b, endpoints: ['b:1']}]"; // line 5

Deno.test("route actions: redirect parts, direct_response, backends, sticky and mirror normalised", () => {
  const c = configOf([
    ...LISTENER,
    UPSTREAMS,
    "routes:",
    "  - {id: s, path: /s, redirect: {scheme: https}}",
    "  - {id: p, path: /p/*, redirect: {port: 8443, prefix_path: /q, status: 308}}",
    "  - {id: h, path: '/h/{id}', redirect: {hostname: Example.COM, path: '/x/{id}', code: 303}}",
    "  - {id: u, path: /u, redirect: {url: /v}}",
    "  - {id: d, path: /d, direct_response: {status: 500, body: nope}}",
    "  - id: w",
    "    path: /w",
    "    backends:",
    "      - {upstream: a, weight: 90, middleware: [{headers: {request: {set: {x-b: a}}}}]}",
    "      - {upstream: b, weight: 0}",
    "      - {direct_response: {status: 500}, weight: 10, name: broken}",
    "    sticky: {cookie: lb, ttl: 1h}",
    "    mirror: {upstream: b, percent: 12.5}",
    "  - {id: m, path: /m, upstream: a, mirror: [{upstream: b}, {upstream: a, max_body: 1KB}]}",
    "  - {id: f, path: /f, upstream: a, middleware: [{fault: {abort: {status: 503, percent: 5}}}]}",
  ]);
  const r = c.routes;
  assert.deepEqual(r[0].redirect, { scheme: "https", code: 302 });
  assert.deepEqual(r[1].redirect, { port: 8443, prefix_path: "/q", code: 308 });
  assert.deepEqual(r[2].redirect, { hostname: "example.com", path: "/x/{id}", code: 303 });
  assert.deepEqual(r[3].redirect, { url: "/v", code: 302 });
  assert.deepEqual(r[4].direct_response, { status: 500, body: "nope" });
  assert.equal(r[5].backends?.length, 3);
  assert.deepEqual(r[5].backends?.[1], { upstream: "b", weight: 0, middleware: [] });
  assert.equal(r[5].backends?.[0].middleware[0].name, "headers");
  assert.deepEqual(r[5].backends?.[2], {
    direct_response: { status: 500 },
    weight: 10,
    name: "broken",
    middleware: [],
  });
  assert.deepEqual(r[5].sticky, { cookie: "lb", ttl: 3_600_000, path: "/" });
  assert.deepEqual(r[5].mirror, [{
    upstream: "b",
    percent: 12.5,
    max_in_flight: 16,
    max_body: 65_536,
    timeout: 10_000,
  }]);
  assert.deepEqual(r[6].mirror?.map((m) => [m.upstream, m.max_body]), [["b", 65_536], ["a", 1024]]);
  assert.deepEqual(r[7].middleware[0], {
    name: "fault",
    options: { abort: { status: 503, percent: 5 }, headers: false },
  });
});

Deno.test("route actions: located errors", () => {
  const errors = errorsOf([
    ...LISTENER,
    UPSTREAMS,
    "routes:", // 6
    "  - {id: r1, path: /r1, redirect: {url: /x, scheme: https}}", // 7
    "  - {id: r2, path: /r2, redirect: {path: /x, prefix_path: /y}}", // 8
    "  - {id: r3, path: /r3, redirect: {code: 301, status: 302}}", // 9
    "  - {id: r4, path: /r4, redirect: {scheme: ftp, port: 0, hostname: 'a b'}}", // 10
    "  - {id: r5, path: /r5, upstream: a, backends: [{upstream: b}]}", // 11
    "  - {id: r6, path: /r6, backends: [{upstream: nope}, {}, {upstream: a, direct_response: {status: 500}}]}", // 12
    "  - {id: r7, path: /r7, backends: [{upstream: a}, {upstream: a}]}", // 13
    "  - {id: r8, path: /r8, upstream: a, sticky: {cookie: c}}", // 14
    "  - {id: r9, path: /r9, backends: [{upstream: a}], sticky: {header: x-u, ttl: 1s}}", // 15
    "  - {id: r10, path: /r10, backends: [{upstream: a}], sticky: {}}", // 16
    "  - {id: r11, path: /r11, upstream: a, mirror: {upstream: gone}}", // 17
    "  - {id: r12, path: /r12, upstream: a, middleware: [{mirror: {upstream: gone, percent: 101}}]}", // 18
    "  - {id: r13, path: /r13, direct_response: {status: 100}}", // 19
    "  - {id: r14, path: /r14, backends: [{upstream: a, weight: -1, middleware: [{mirror: {upstream: x}}]}]}", // 20
    "  - {id: r15, path: /r15, upstream: a, middleware: [{fault: {}}, {fault: {abort: {status: 200}}}]}", // 21
    "  - {id: r16, path: '/r16/{id}', redirect: {path: '/x/{uid}'}}", // 22
  ]);
  const expected: [string, number, RegExp][] = [
    ["routes[0].redirect.scheme", 7, /"url" is the whole target: it excludes "scheme"/],
    ["routes[1].redirect.prefix_path", 8, /"path" and "prefix_path" exclude each other/],
    ["routes[2].redirect.status", 9, /"code" and "status" are the same field/],
    ["routes[3].redirect.scheme", 10, /allowed: http, https/],
    ["routes[3].redirect.port", 10, /at least 1/],
    ["routes[3].redirect.hostname", 10, /not a valid host name/],
    ["routes[4].backends", 11, /both "upstream" and "backends"/],
    ["routes[5].backends[0].upstream", 12, /upstream "nope" is not defined/],
    ["routes[5].backends[1]", 12, /exactly one of "upstream" and "direct_response"/],
    ["routes[5].backends[2]", 12, /exactly one of "upstream" and "direct_response"/],
    ["routes[6].backends[1]", 13, /backend name "a" also names backends\[0\]/],
    ["routes[7].sticky", 14, /sticky needs "backends"/],
    ["routes[8].sticky.ttl", 15, /needs "cookie", not "header"/],
    ["routes[9].sticky", 16, /exactly one of "cookie" and "header"/],
    ["routes[10].mirror.upstream", 17, /upstream "gone" is not defined/],
    ["routes[11].middleware[0].mirror.percent", 18, /at most 100/],
    ["routes[12].direct_response.status", 19, /at least 200/],
    ["routes[13].backends[0].weight", 20, /at least 0/],
    ["routes[13].backends[0].middleware[0].mirror.upstream", 20, /upstream "x" is not defined/],
    ["routes[14].middleware[0].fault", 21, /at least 1 of/],
    ["routes[14].middleware[1].fault.abort.status", 21, /at least 400/],
    ["routes[15].redirect", 22, /uses \{uid\} but path/],
  ];
  for (const [path, line, message] of expected) assertError(errors, path, line, message);
  assert.deepEqual(
    errors.map((e) => `${e.path}:${e.line}`).sort(),
    expected.map(([p, l]) => `${p}:${l}`).sort(),
  );
});
