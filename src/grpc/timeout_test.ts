import assert from "node:assert/strict";
import { formatGrpcTimeout, parseGrpcTimeout } from "./timeout.ts";

Deno.test("grpc-timeout: parse every unit, reject junk, format back", () => {
  assert.equal(parseGrpcTimeout("1H"), 3_600_000);
  assert.equal(parseGrpcTimeout("2M"), 120_000);
  assert.equal(parseGrpcTimeout("3S"), 3000);
  assert.equal(parseGrpcTimeout("250m"), 250);
  assert.equal(parseGrpcTimeout("1500u"), 2);
  assert.equal(parseGrpcTimeout("1000000n"), 1);
  for (const bad of [undefined, "", "5", "x5m", "-1m", "123456789m", "5x"]) {
    assert.equal(parseGrpcTimeout(bad), -1);
  }
  assert.equal(formatGrpcTimeout(1234.5), "1234m");
  assert.equal(formatGrpcTimeout(0), "1m");
  assert.equal(formatGrpcTimeout(200_000_000), "200000S");
});
