import assert from "node:assert/strict";
import { parseDuration } from "./duration.ts";

const ms = (s: string | number) => {
  const r = parseDuration(s);
  assert.ok(r.ok, `expected ${s} to parse`);
  return r.ms;
};
const err = (s: string | number) => {
  const r = parseDuration(s);
  assert.ok(!r.ok, `expected ${s} to fail`);
  return r.error;
};

Deno.test("duration: single units", () => {
  assert.equal(ms("100ns"), 0.0001);
  assert.equal(ms("100us"), 0.1);
  assert.equal(ms("100µs"), 0.1);
  assert.equal(ms("100μs"), 0.1);
  assert.equal(ms("100ms"), 100);
  assert.equal(ms("30s"), 30_000);
  assert.equal(ms("5m"), 300_000);
  assert.equal(ms("2h"), 7_200_000);
});

Deno.test("duration: combined and fractional", () => {
  assert.equal(ms("1h30m"), 5_400_000);
  assert.equal(ms("5m30s"), 330_000);
  assert.equal(ms("1.5s"), 1500);
  assert.equal(ms(".5s"), 500);
  assert.equal(ms("1m0.5s"), 60_500);
});

Deno.test("duration: zero is allowed without a unit", () => {
  assert.equal(ms(0), 0);
  assert.equal(ms("0"), 0);
  assert.equal(ms("0s"), 0);
});

Deno.test("duration: bare numbers name the accepted units", () => {
  assert.match(err(30), /no unit.*ns, us.*ms, s, m, h/);
  assert.match(err("30"), /no unit.*"30s"/);
});

Deno.test("duration: malformed values", () => {
  for (const bad of ["", "s", "30x", "-5s", "1h 30m", "30sec", "1.2.3s", "h1"]) err(bad);
});
