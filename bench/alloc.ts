/**
 * Where a proxied request's garbage comes from (issue 16 items 3 and 4): V8's
 * sampling heap profiler over the in-process harness (bench/inproc_harness.ts:
 * the HTTP/1.1 engine and the proxy on in-memory connections), bytes
 * allocated per request by function, collected objects included. What a
 * request allocates decides how often the young generation is scavenged, so
 * with Loom's 4 MiB semi-spaces it is CPU per request; what an in-flight
 * request keeps alive is what each scavenge copies.
 *
 *   deno run -A --unstable-net bench/alloc.ts [requests] [--chain] [--top N]
 *
 * `--chain`: each function with its two callers. The harness's own client and
 * upstream allocate too (`bench/inproc_harness.ts` rows): they are the same in
 * every run, so compare totals between revisions, not against zero.
 */
import { Session } from "node:inspector";
import { bareConfig, GET_REQUEST, runInproc } from "./inproc_harness.ts";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  callFrame: CallFrame;
  selfSize: number;
  children: ProfileNode[];
}

let total = 100_000, chain = false, top = 30;
for (let i = 0; i < Deno.args.length; i++) {
  const a = Deno.args[i];
  if (a === "--chain") chain = true;
  else if (a === "--top") top = Number(Deno.args[++i]);
  else total = Number(a);
}

const CONFIG = bareConfig(null);

await runInproc(CONFIG, GET_REQUEST, 50_000); // compiled and warm before sampling
const session = new Session();
session.connect();
const post = <T>(method: string, params: object = {}) =>
  new Promise<T>((resolve, reject) =>
    session.post(method, params, (e: Error | null, r?: object) => e ? reject(e) : resolve(r as T))
  );
await post("HeapProfiler.enable");
await post("HeapProfiler.startSampling", {
  samplingInterval: 256,
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: true,
});
await runInproc(CONFIG, GET_REQUEST, total);
const { profile } = await post<{ profile: { head: ProfileNode } }>("HeapProfiler.stopSampling");

const name = (cf: CallFrame) =>
  `${cf.functionName || "(anonymous)"} ${
    cf.url.replace(/^.*\/bench\/\.\.\//, "").replace(/^file:\/\/.*?\/(src|bench)\//, "$1/").replace(
      /^ext:/,
      "",
    )
  }:${cf.lineNumber + 1}`;
const bytes = new Map<string, number>();
let sum = 0;
const walk = (n: ProfileNode, callers: string[]) => {
  const me = name(n.callFrame);
  if (n.selfSize > 0) {
    const key = chain ? [me, ...callers.slice(-2).reverse()].join(" ← ") : me;
    bytes.set(key, (bytes.get(key) ?? 0) + n.selfSize);
    sum += n.selfSize;
  }
  for (const c of n.children) walk(c, [...callers, me]);
};
walk(profile.head, []);
console.log(`allocated per proxied request: ${(sum / total).toFixed(0)} bytes (${total} requests, sampled)`);
for (const [k, v] of [...bytes].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${(v / total).toFixed(0).padStart(7)}  ${k}`);
}
Deno.exit(0);
