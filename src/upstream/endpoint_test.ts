import assert from "node:assert/strict";
import { Endpoint } from "./endpoint.ts";

const cfg = { address: "[::1]:8080", hostname: "::1", port: 8080, weight: 2 };

Deno.test("Endpoint: fields, in-flight counting and availability", () => {
  const counters = new Int32Array(4);
  const ep = new Endpoint(cfg, counters, 2);
  assert.equal(ep.address, "[::1]:8080");
  assert.equal(ep.hostname, "::1");
  assert.equal(ep.port, 8080);
  assert.equal(ep.weight, 2);
  ep.begin();
  ep.begin();
  ep.end();
  assert.equal(ep.inFlight, 1);
  assert.equal(counters[2], 1);
  assert.equal(ep.available, true);
  ep.draining = true;
  assert.equal(ep.available, false);
  ep.draining = false;
  ep.healthy = false;
  assert.equal(ep.available, false);
});

Deno.test("Endpoint: rejects a non-positive weight and an out-of-range slot", () => {
  assert.throws(() => new Endpoint({ ...cfg, weight: 0 }, new Int32Array(1), 0), RangeError);
  assert.throws(() => new Endpoint(cfg, new Int32Array(1), 1), RangeError);
});
