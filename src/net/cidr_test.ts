import assert from "node:assert/strict";
import { cidrError, CidrSet, parseIp } from "./cidr.ts";

Deno.test("parseIp: IPv4 (mapped), IPv6 forms, zones; invalid ones null", () => {
  assert.deepEqual([...parseIp("10.1.2.3")!], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 1, 2, 3]);
  assert.deepEqual(parseIp("::ffff:10.1.2.3"), parseIp("10.1.2.3"));
  assert.deepEqual([...parseIp("::1")!], [...new Array(15).fill(0), 1]);
  assert.deepEqual(parseIp("2001:db8:0:0:0:0:0:1"), parseIp("2001:db8::1"));
  assert.deepEqual(parseIp("fe80::1%eth0"), parseIp("fe80::1"));
  assert.deepEqual([...parseIp("::")!], new Array(16).fill(0));
  for (const bad of ["", "1.2.3", "1.2.3.256", "01.2.3.4", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "x"]) {
    assert.equal(parseIp(bad), null, bad);
  }
});

Deno.test("CidrSet: IPv4 and IPv6 ranges, single addresses, mapped clients", () => {
  const s = new CidrSet(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]);
  assert.ok(s.has("10.255.0.1"));
  assert.ok(s.has("::ffff:10.0.0.1"), "an IPv4-mapped client matches an IPv4 range");
  assert.ok(s.has("192.0.2.7"));
  assert.ok(!s.has("192.0.2.8"));
  assert.ok(s.has("2001:db8:1::5"));
  assert.ok(!s.has("2001:db9::1"));
  assert.ok(!s.has("11.0.0.1"));
  assert.ok(!s.has("not an ip"));
  assert.ok(!s.has("11.0.0.1"), "the cached answer is the same");
  const odd = new CidrSet(["172.16.0.0/12", "::1/128"]);
  assert.ok(odd.has("172.31.255.255"));
  assert.ok(!odd.has("172.32.0.0"));
  assert.ok(odd.has("::1"));
  assert.ok(!odd.has("127.0.0.1"));
  assert.ok(new CidrSet(["0.0.0.0/0"]).has("203.0.113.9"));
  assert.ok(
    !new CidrSet(["0.0.0.0/0"]).has("2001:db8::1"),
    "an IPv4 range never matches a plain IPv6 client",
  );
  assert.ok(!new CidrSet([]).has("10.0.0.1"));
});

Deno.test("cidrError: says what is wrong", () => {
  assert.equal(cidrError("10.0.0.0/8"), undefined);
  assert.equal(cidrError("::/0"), undefined);
  assert.match(cidrError("10.0.0.0/33")!, /prefix length \(0-32\)/);
  assert.match(cidrError("2001:db8::/129")!, /prefix length \(0-128\)/);
  assert.match(cidrError("example.com")!, /not an IP address or CIDR range/);
  assert.throws(() => new CidrSet(["10.0.0.0/x"]), TypeError);
});
