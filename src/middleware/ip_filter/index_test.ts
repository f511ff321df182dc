import assert from "node:assert/strict";
import { ipFilter } from "./index.ts";
import { testContext } from "../test_context.ts";

async function decide(ip: string, o: Parameters<typeof ipFilter>[0]): Promise<[number, string]> {
  const { ctx, sent } = testContext();
  ctx.clientIp = ip;
  let passed = false;
  await ipFilter(o).request!(ctx, () => (passed = true, Promise.resolve()));
  return passed ? [200, ""] : [sent.status, ctx.rejection];
}

Deno.test("ip_filter: deny first, then a non-empty allow list; IPv4 and IPv6", async () => {
  const o = { allow: ["10.0.0.0/8", "2001:db8::/32"], deny: ["10.66.0.0/16"], status: 403 as const };
  assert.deepEqual(await decide("10.1.2.3", o), [200, ""]);
  assert.deepEqual(await decide("2001:db8::7", o), [200, ""]);
  assert.deepEqual(await decide("10.66.1.1", o), [403, "ip_filter/denied"]);
  assert.deepEqual(await decide("192.0.2.1", o), [403, "ip_filter/not_allowed"]);
  assert.deepEqual(await decide("2001:db9::1", o), [403, "ip_filter/not_allowed"]);
  assert.deepEqual(await decide("192.0.2.1", { allow: [], deny: ["192.0.2.0/24"], status: 404 }), [
    404,
    "ip_filter/denied",
  ]);
  assert.deepEqual(await decide("198.51.100.1", { allow: [], deny: ["192.0.2.0/24"], status: 403 }), [
    200,
    "",
  ]);
});
