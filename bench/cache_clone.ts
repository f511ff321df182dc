/**
 * Why the cache's memory store is per worker: the CPU cost of a lookup in
 * this isolate's Map against a lookup in a store held by another isolate of
 * the process (a request and a structured-clone reply through postMessage,
 * what a store shared by the workers of one process would cost per hit).
 * Process CPU time (both isolates) per lookup, for bodies of 1 KiB and 64 KiB.
 *
 *   deno run -A bench/cache_clone.ts [lookups]
 */
const n = Number(Deno.args[0] ?? 20_000);

function cpuMicros(): number {
  const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 1e6 / 100;
}

/** The store isolate: answers {key} with the stored entry (status, fields, body), cloned by postMessage. */
const STORE = `
const entries = new Map();
self.onmessage = (e) => {
  const m = e.data;
  if (m.set) { entries.set(m.key, m.value); self.postMessage({ id: m.id }); return; }
  self.postMessage({ id: m.id, value: entries.get(m.key) });
};`;

async function measure(size: number): Promise<[number, number]> {
  const value = {
    status: 200,
    names: ["content-type", "etag", "date", "cache-control", "via"],
    values: ["text/plain", '"abc"', new Date().toUTCString(), "max-age=60", "1.1 loom"],
    body: new Uint8Array(size).fill(97),
  };
  // Local: a Map hit with the LRU touch the memory store does.
  const local = new Map<string, typeof value>([["GET h/k", value]]);
  let sink = 0;
  let c0 = cpuMicros();
  for (let i = 0; i < n * 10; i++) {
    const v = local.get("GET h/k")!;
    local.delete("GET h/k");
    local.set("GET h/k", v);
    sink += v.body.length;
  }
  const localUs = (cpuMicros() - c0) / (n * 10);
  // Remote: one round trip per lookup to a worker isolate.
  const url = URL.createObjectURL(new Blob([STORE], { type: "application/javascript" }));
  const w = new Worker(url, { type: "module" });
  let next = 0;
  const waiting = new Map<number, (v: unknown) => void>();
  w.onmessage = (e) => {
    waiting.get(e.data.id)!(e.data.value);
    waiting.delete(e.data.id);
  };
  const call = (m: Record<string, unknown>) =>
    new Promise((r) => {
      const id = next++;
      waiting.set(id, r);
      w.postMessage({ ...m, id });
    });
  await call({ set: true, key: "GET h/k", value });
  for (let i = 0; i < 1000; i++) await call({ key: "GET h/k" }); // warm-up
  c0 = cpuMicros();
  for (let i = 0; i < n; i++) {
    const v = await call({ key: "GET h/k" }) as typeof value;
    sink += v.body.length;
  }
  const remoteUs = (cpuMicros() - c0) / n;
  w.terminate();
  if (sink === 0) console.log(sink);
  return [localUs, remoteUs];
}

for (const size of [1024, 64 * 1024]) {
  const [l, r] = await measure(size);
  console.log(
    `body ${size / 1024} KiB: local Map hit ${
      l.toFixed(2)
    } µs CPU, other isolate (postMessage + structured clone) ${r.toFixed(1)} µs CPU per lookup`,
  );
}
