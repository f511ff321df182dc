import assert from "node:assert/strict";
import { counterKey, CounterSlots } from "./counters.ts";
import { Upstream } from "./upstream.ts";
import { upstreamConfig } from "./testutil.ts";

Deno.test("CounterSlots: same key keeps its slot (and count) across reloads", () => {
  const slots = new CounterSlots({ capacity: 16 });
  assert.ok(slots.counters.buffer instanceof SharedArrayBuffer);
  const v1 = new Upstream(upstreamConfig("round_robin", [1, 1]), slots);
  v1.endpoints[1].begin();
  // Reload: endpoint order changes and one endpoint is added.
  const cfg = upstreamConfig("round_robin", [1, 1, 1]);
  cfg.endpoints.reverse();
  const v2 = new Upstream(cfg, slots);
  const same = v2.endpoints.find((e) => e.address === v1.endpoints[1].address)!;
  assert.equal(same.inFlight, 1);
  assert.equal(slots.get(counterKey("api", "10.0.0.2:80")), 1);
  assert.equal(slots.size, 3);
  same.end();
  assert.equal(v1.endpoints[1].inFlight, 0);
});

Deno.test("CounterSlots: full array and unknown keys on an attached copy throw clearly", () => {
  const slots = CounterSlots.local(2);
  assert.ok(!(slots.counters.buffer instanceof SharedArrayBuffer));
  slots.slot("a");
  slots.slot("b");
  assert.equal(slots.slot("a"), 0);
  assert.throws(() => slots.slot("c"), /all 2 in-flight counter slots are used/);
  const attached = CounterSlots.attach(slots.snapshot());
  assert.equal(attached.slot("b"), 1);
  assert.throws(() => attached.slot("z"), /assigned by the main thread/);
});

Deno.test("CounterSlots: a worker isolate updates the shared counters", async () => {
  const main = new CounterSlots({ capacity: 8 });
  main.reserve([upstreamConfig("least_conn", [1, 1], {}, "api")]);
  const counters = new URL("./counters.ts", import.meta.url).href;
  const endpoint = new URL("./endpoint.ts", import.meta.url).href;
  // One line: `deno test` echoes the worker's URL when it loads it.
  const source = [
    `import { CounterSlots } from ${JSON.stringify(counters)}`,
    `import { Endpoint } from ${JSON.stringify(endpoint)}`,
    `self.onmessage = (e) => {`,
    `const slots = CounterSlots.attach(e.data)`,
    `const ep = new Endpoint({ address: "x", hostname: "x", port: 80, weight: 1 }, slots.counters,` +
    ` slots.slot("api|10.0.0.2:80"))`,
    `for (let i = 0; i < 1000; i++) ep.begin()`,
    `self.postMessage(ep.inFlight) }`,
  ].join(";");
  const worker = new Worker(`data:application/javascript,${encodeURIComponent(source)}`, { type: "module" });
  try {
    const seen = new Promise<number>((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
      };
    });
    worker.postMessage(main.snapshot());
    const slot = main.get("api|10.0.0.2:80")!;
    // Races with the worker's increments: Atomics keeps both.
    for (let i = 0; i < 500; i++) Atomics.add(main.counters, slot, 1);
    const inWorker = await seen;
    assert.ok(inWorker >= 1000 && inWorker <= 1500);
    // Read in the main isolate: same memory, not a copy.
    assert.equal(Atomics.load(main.counters, slot), 1500);
  } finally {
    worker.terminate();
  }
});
