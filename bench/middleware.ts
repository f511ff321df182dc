/**
 * CPU cost of middleware, in process (bench/inproc_harness.ts: the HTTP/1.1
 * engine and the proxy on in-memory connections): the same request loop on a
 * route without middleware and on routes with the VARIANTS below, alternating
 * A B A B; prints the medians and the difference to the plain route (target
 * for three no-op request-phase middleware: at most 0.5 µs per request).
 *
 *   deno run -A --unstable-net bench/middleware.ts [requests] [rounds] [variant,variant...]
 */
import { GET_REQUEST, RESPONSE_16K_TEXT, RESPONSE_1K, runInproc } from "./inproc_harness.ts";
import { t } from "../src/config/dsl.ts";
import { defineMiddleware } from "../src/middleware/registry.ts";
import { signToken, testKey } from "../src/middleware/jwt/test_keys.ts";
import { bcrypt } from "hash-wasm";
import { parseConfig } from "../src/config/mod.ts";
import { prepareTracing } from "../src/observability/tracing.ts";

defineMiddleware("noop", t.object({}), () => ({ name: "noop", request: (_ctx, next) => next() }));

const total = Number(Deno.args[0] ?? 200_000);
const rounds = Number(Deno.args[1] ?? 5);

const config = (middleware: string, top = "") =>
  `listeners: [{name: http, address: "127.0.0.1:9", protocol: http}]
upstreams: [{name: up, endpoints: ["127.0.0.1:1"]}]
routes: [{id: all, path: "/*", upstream: up${middleware}}]
access_log: {enabled: false}
${top}`;

const rs256 = await testKey("RS256", "b1");
/** GET_REQUEST with one more header line. */
const withHeader = (line: string) =>
  new TextEncoder().encode(new TextDecoder().decode(GET_REQUEST).replace(/\r\n\r\n$/, `\r\n${line}\r\n\r\n`));
/**
 * Variants whose requests carry a credential (the rest send GET_REQUEST); `none-bearer`: the token, no middleware.
 * `jwt-rs256` reuses one token (verified once, then from the cache); `jwt-rs256-verify` checks its signature each time.
 */
const REQUESTS: Record<string, Uint8Array> = {
  "jwt-rs256": withHeader(`Authorization: Bearer ${await signToken(rs256, { sub: "bench" }, { kid: "b1" })}`),
  "api-key": withHeader("X-Api-Key: bench-key-0001"),
};
REQUESTS["none-bearer"] = REQUESTS["jwt-rs256-verify"] = REQUESTS["jwt-rs256"];
REQUESTS["basic-auth"] = withHeader(`Authorization: Basic ${btoa("bench:bench-password")}`);
REQUESTS["none-basic"] = REQUESTS["basic-auth"];
REQUESTS["gzip-16k"] = REQUESTS["none-16k"] = withHeader("Accept-Encoding: gzip");
REQUESTS["cors"] = REQUESTS["none-origin"] = withHeader("Origin: https://app.example");
/** Variants whose upstream answers another response than RESPONSE_1K (compare `gzip-16k` with `none-16k`). */
const RESPONSES: Record<string, Uint8Array> = {
  "gzip-16k": RESPONSE_16K_TEXT,
  "none-16k": RESPONSE_16K_TEXT,
};
/** RESPONSE_1K dated now (a cache counts its age from Date), with `extra` field lines. */
const fresh1k = (extra = "") =>
  new TextEncoder().encode(
    new TextDecoder().decode(RESPONSE_1K).replace(
      /Date: [^\r]*\r\n/,
      `Date: ${new Date().toUTCString()}\r\n${extra}`,
    ),
  );
RESPONSES["cache-hit"] = fresh1k();
RESPONSES["cache-miss"] = fresh1k("Cache-Control: no-store\r\n");
const benchHash = await bcrypt({
  password: "bench-password",
  salt: new Uint8Array(16),
  costFactor: 10,
  outputType: "encoded",
});

/** Variant name → the route's extra YAML (flow style). Add one line per middleware worth measuring. */
const VARIANTS: Record<string, string> = {
  "none": "",
  "3-noop": ", middleware: [{noop: {}}, {noop: {}}, {noop: {}}]",
  "headers": ", middleware: [{headers: {response: {set: {x-a: b}}, request: {set: {x-ip: '${client_ip}'}}}}]",
  "none-origin": "",
  "cors":
    ", middleware: [{cors: {allow_origins: ['https://app.example', 'https://*.example.org'], allow_credentials: true}}]",
  "jwt-rs256": `, middleware: [{jwt: {keys: [{pem: ${JSON.stringify(rs256.pem)}, algorithms: [RS256]}]}}]`,
  "jwt-rs256-verify": `, middleware: [{jwt: {cache_size: 0, keys: [{pem: ${
    JSON.stringify(rs256.pem)
  }, algorithms: [RS256]}]}}]`,
  "api-key": ", middleware: [{api_key: {keys: [{name: bench, key: bench-key-0001}]}}]",
  "none-bearer": "",
  "basic-auth": `, middleware: [{basic_auth: {users: {bench: "${benchHash}"}}}]`,
  "none-basic": "",
  "forward-auth": ", middleware: [{forward_auth: {upstream: up}}]",
  "body-limit": ", middleware: [{body_limit: {max: 1MB}}]",
  "gzip-16k": ", middleware: [{compress: {encodings: [gzip]}}]",
  "none-16k": "",
  // fault configured at 0 % (its own cost, no draw); mirror-100: every request copied to `up` too
  // (the copy's context, its own exchange and the discarded answer).
  "fault-off":
    ", middleware: [{fault: {delay: {percent: 0, duration: 1s}, abort: {percent: 0, status: 503}}}]",
  "mirror-100": ", mirror: {upstream: up}",
  // A local limit that never refuses (the table lookup, update and RateLimit fields on every request).
  "rate-limit-local": ", middleware: [{rate_limit: {limits: [{rate: 1e9, burst: 1000000000}]}}]",
  "rate-limit-local-noheaders":
    ", middleware: [{rate_limit: {headers: false, limits: [{rate: 1e9, burst: 1000000000}]}}]",
  // One Redis round trip per request: needs a redis-server at LOOM_BENCH_REDIS (host:port).
  "rate-limit-redis": `, middleware: [{rate_limit: {redis: {address: "${
    Deno.env.get("LOOM_BENCH_REDIS") ?? "127.0.0.1:6379"
  }", timeout: 1s}, limits: [{rate: 1e9, burst: 1000000000, store: redis}]}}]`,
  // A cache hit (the first request fills it): the answer is written from memory, no upstream round trip.
  "cache-hit": ", middleware: [{cache: {default_ttl: 10m}}]",
  // Every request a miss that may not be stored (no-store): the cost of passing through the cache.
  // (Another max_size: a store of its own, not the one cache-hit filled; stores outlive snapshots.)
  "cache-miss": ", middleware: [{cache: {max_size: 64MB}}]",
  // The same with prefetch: 100 (one round trip per 100 requests).
  "rate-limit-redis-prefetch": `, middleware: [{rate_limit: {redis: {address: "${
    Deno.env.get("LOOM_BENCH_REDIS") ?? "127.0.0.1:6379"
  }", timeout: 1s}, limits: [{rate: 1e9, burst: 1000000000, store: redis, prefetch: 100}]}}]`,
};
/**
 * Top-level blocks of variants (their route gets no middleware). `tracing-*`: every request traced
 * (1.0) or one in a hundred (0.01), spans exported by Loom's own OTLP exporter (the OpenTelemetry SDK)
 * to a sink in another process, so the export's cost counts; `tracing-deno-*`: Deno's built-in
 * exporter (run the bench with OTEL_DENO=true and OTEL_EXPORTER_OTLP_ENDPOINT at a collector or sink).
 */
const sink = Deno.args[2]?.includes("tracing") ? otlpSink() : null;
const TOP: Record<string, string> = {
  "tracing-1": `tracing: {endpoint: "${sink?.url}", sample_rate: 1.0}`,
  "tracing-0.01": `tracing: {endpoint: "${sink?.url}", sample_rate: 0.01}`,
  "tracing-deno-1": "tracing: {sample_rate: 1.0}",
  "tracing-deno-0.01": "tracing: {sample_rate: 0.01}",
};
for (const k of Object.keys(TOP)) VARIANTS[k] = "";
for (const [k, top] of Object.entries(TOP)) {
  if (!(Deno.args[2] ?? "").split(",").includes(k)) continue;
  if (k.includes("deno") && Deno.env.get("OTEL_DENO") !== "true") {
    throw new Error(`${k} needs OTEL_DENO=true`);
  }
  const cfg = parseConfig(config("", top), "bench.yaml");
  if (cfg.ok) await prepareTracing(cfg.config.tracing);
}

/** An OTLP/HTTP receiver that discards what it gets, in a process of its own. */
function otlpSink(): { url: string; child: Deno.ChildProcess } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const code = `Deno.serve({hostname: "127.0.0.1", port: ${port}, onListen() {}}, async (r) => ` +
    `{ await r.arrayBuffer(); return Response.json({}); })`;
  const child = new Deno.Command(Deno.execPath(), { args: ["eval", code], stdout: "null", stderr: "null" })
    .spawn();
  return { url: `http://127.0.0.1:${port}`, child };
}

const wanted = Deno.args[2]?.split(",") ?? Object.keys(VARIANTS);
const variants: [string, string][] = [
  ["none", ""],
  ...wanted.filter((n) => n !== "none").map((n) => {
    if (!(n in VARIANTS)) throw new Error(`unknown variant ${n}; known: ${Object.keys(VARIANTS).join(", ")}`);
    return [n, VARIANTS[n]] as [string, string];
  }),
];
const results = new Map<string, number[]>(variants.map(([n]) => [n, []]));
for (let r = 0; r < rounds; r++) {
  for (const [name, mw] of variants) {
    const yaml = config(mw, TOP[name]);
    const { cpu } = await runInproc(yaml, REQUESTS[name] ?? GET_REQUEST, total, RESPONSES[name]);
    results.get(name)!.push(cpu);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = median(results.get("none")!);
for (const [name] of variants) {
  const m = median(results.get(name)!);
  console.log(
    `middleware=${name}: ${m.toFixed(2)} µs CPU per request (median of ${rounds}; rounds ${
      results.get(name)!.map((x) => x.toFixed(2)).join(" ")
    })${name === "none" ? "" : `, +${(m - base).toFixed(2)} µs`}`,
  );
}
sink?.child.kill();
Deno.exit(0);
