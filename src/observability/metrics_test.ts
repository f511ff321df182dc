import assert from "node:assert/strict";
import { escapeLabelValue, mergeSnapshots, Registry, renderMerged } from "./metrics.ts";

Deno.test("render: golden exposition text", () => {
  const r = new Registry();
  const c = r.counter("http_requests_total", "Total requests.", ["method", "code"]);
  c.labels("GET", 200).inc();
  c.labels("GET", "200").inc(2);
  c.labels("POST", 500).inc();
  r.counter("plain_total", "No labels.").inc(3);
  const g = r.gauge("temp", "Line one\nback\\slash.", ["room"]);
  g.labels("a").set(1.5);
  g.labels("b").set(-2);
  const h = r.histogram("lat_seconds", "Latency.", ["route"], [0.1, 1]);
  const child = h.labels("r1");
  child.observe(0.05);
  child.observe(0.1);
  child.observe(0.5);
  child.observe(3);
  assert.equal(
    r.render(),
    `# HELP http_requests_total Total requests.
# TYPE http_requests_total counter
http_requests_total{method="GET",code="200"} 3
http_requests_total{method="POST",code="500"} 1
# HELP plain_total No labels.
# TYPE plain_total counter
plain_total 3
# HELP temp Line one\\nback\\\\slash.
# TYPE temp gauge
temp{room="a"} 1.5
temp{room="b"} -2
# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{route="r1",le="0.1"} 2
lat_seconds_bucket{route="r1",le="1"} 3
lat_seconds_bucket{route="r1",le="+Inf"} 4
lat_seconds_sum{route="r1"} 3.65
lat_seconds_count{route="r1"} 4
`,
  );
});

Deno.test("label values escape backslash, quote and newline", () => {
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(escapeLabelValue("plain ünïcode"), "plain ünïcode");
  const r = new Registry();
  r.counter("x_total", "x", ["v"]).labels('say "hi"\n\\').inc();
  assert.match(r.render(), /^x_total\{v="say \\"hi\\"\\n\\\\"\} 1$/m);
});

Deno.test("histogram: default buckets, boundaries, sum and count", () => {
  const r = new Registry();
  const h = r.histogram("d_seconds", "d").labels();
  for (const v of [0, 0.005, 0.0051, 0.3, 10, 11, 100]) h.observe(v);
  const text = r.render();
  const bucket = (le: string) => Number(new RegExp(`d_seconds_bucket\\{le="${le}"\\} (\\S+)`).exec(text)![1]);
  assert.equal(bucket("0.005"), 2); // le is inclusive
  assert.equal(bucket("0.01"), 3);
  assert.equal(bucket("0.25"), 3);
  assert.equal(bucket("0.5"), 4);
  assert.equal(bucket("10"), 5);
  assert.equal(bucket("\\+Inf"), 7);
  assert.match(text, /^d_seconds_count 7$/m);
  assert.match(text, /^d_seconds_sum 121\.3101$/m);
  assert.equal(text.match(/d_seconds_bucket/g)!.length, 12);
});

Deno.test("histogram: binary search path (many buckets) agrees with linear", () => {
  const bounds = Array.from({ length: 40 }, (_, i) => (i + 1) / 10);
  const r = new Registry();
  const h = r.histogram("big", "b", [], bounds).labels();
  const values = [0, 0.1, 0.15, 1.0, 2.05, 3.99, 4, 4.01, 7];
  for (const v of values) h.observe(v);
  const expected = new Array(41).fill(0);
  for (const v of values) {
    const i = bounds.findIndex((b) => v <= b);
    expected[i < 0 ? 40 : i]++;
  }
  assert.deepEqual(Array.from(h.counts), expected);
});

Deno.test("histogram rejects an le label; registry rejects duplicates and bad names", () => {
  const r = new Registry();
  assert.throws(() => r.histogram("h", "h", ["le"]));
  r.counter("c_total", "c");
  assert.throws(() => r.counter("c_total", "c"));
  assert.throws(() => r.counter("bad-name", "c"));
  assert.throws(() => r.counter("ok_total", "c", ["__x"]));
  assert.throws(() => r.counter("ok2_total", "c", ["a"]).labels());
});

Deno.test("callback gauges are evaluated at render time", () => {
  const r = new Registry();
  let n = 1;
  r.gauge("pool_idle", "Idle.", ["endpoint"], {
    collect: () => [[{ endpoint: "a:1" }, n], [{ endpoint: "b:2" }, 2 * n]],
  });
  n = 5;
  assert.equal(
    r.render(),
    '# HELP pool_idle Idle.\n# TYPE pool_idle gauge\npool_idle{endpoint="a:1"} 5\npool_idle{endpoint="b:2"} 10\n',
  );
});

function workerRegistry(k: number): Registry {
  const r = new Registry();
  const c = r.counter("req_total", "r", ["route"]);
  c.labels("a").inc(k);
  if (k > 1) c.labels("b").inc(10);
  const h = r.histogram("lat", "l", ["route"], [1, 2]).labels("a");
  h.observe(0.5 * k);
  r.gauge("conns", "c").set(k);
  r.gauge("build", "b", ["version"], { aggregate: "max" }).labels("1.0").set(1);
  r.gauge("last_reload", "l", [], { aggregate: "last" }).set(100 * k);
  return r;
}

Deno.test("snapshot + renderMerged of two registries equals the sum", () => {
  const a = workerRegistry(1), b = workerRegistry(3);
  // Snapshots must survive a postMessage.
  const snaps = [structuredClone(a.snapshot()), structuredClone(b.snapshot())];
  const text = renderMerged(snaps);
  assert.match(text, /^req_total\{route="a"\} 4$/m);
  assert.match(text, /^req_total\{route="b"\} 10$/m);
  assert.match(text, /^lat_bucket\{route="a",le="1"\} 1$/m);
  assert.match(text, /^lat_bucket\{route="a",le="2"\} 2$/m);
  assert.match(text, /^lat_bucket\{route="a",le="\+Inf"\} 2$/m);
  assert.match(text, /^lat_sum\{route="a"\} 2$/m);
  assert.match(text, /^lat_count\{route="a"\} 2$/m);
  assert.match(text, /^conns 4$/m);
  assert.match(text, /^build\{version="1.0"\} 1$/m);
  assert.match(text, /^last_reload 300$/m);
  // Merging does not mutate the inputs.
  assert.deepEqual(snaps[0], a.snapshot());
  // One registry alone renders the same through both paths.
  assert.equal(renderMerged([a.snapshot()]), a.render());
});

Deno.test("merge skips incompatible redefinitions instead of failing", () => {
  const a = new Registry();
  a.counter("m", "m", ["x"]).labels("1").inc();
  const b = new Registry();
  b.gauge("m", "m", ["x"]).labels("1").set(7);
  const merged = mergeSnapshots([a.snapshot(), b.snapshot()]);
  assert.equal(merged.metrics.length, 1);
  assert.equal(merged.metrics[0].series[0].value, 1);
});
