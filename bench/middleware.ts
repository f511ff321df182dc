/**
 * CPU cost of middleware, in process (bench/inproc_harness.ts: the HTTP/1.1
 * engine and the proxy on in-memory connections): the same request loop on a
 * route without middleware and on routes with the VARIANTS below, alternating
 * A B A B; prints the medians and the difference to the plain route (target
 * for three no-op request-phase middleware: at most 0.5 µs per request).
 *
 *   deno run -A --unstable-net bench/middleware.ts [requests] [rounds] [variant,variant...]
 */
import { GET_REQUEST, runInproc } from "./inproc_harness.ts";
import { t } from "../src/config/dsl.ts";
import { defineMiddleware } from "../src/middleware/registry.ts";

defineMiddleware("noop", t.object({}), () => ({ name: "noop", request: (_ctx, next) => next() }));

const total = Number(Deno.args[0] ?? 200_000);
const rounds = Number(Deno.args[1] ?? 5);

const config = (middleware: string) =>
  `listeners: [{name: http, address: "127.0.0.1:9", protocol: http}]
upstreams: [{name: up, endpoints: ["127.0.0.1:1"]}]
routes: [{id: all, path: "/*", upstream: up${middleware}}]
access_log: {enabled: false}`;

/** Variant name → the route's extra YAML (flow style). Add one line per middleware worth measuring. */
const VARIANTS: Record<string, string> = {
  "none": "",
  "3-noop": ", middleware: [{noop: {}}, {noop: {}}, {noop: {}}]",
  "headers": ", middleware: [{headers: {response: {set: {x-a: b}}, request: {set: {x-ip: '${client_ip}'}}}}]",
};
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
    const { cpu } = await runInproc(config(mw), GET_REQUEST, total);
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
Deno.exit(0);
