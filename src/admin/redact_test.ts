import assert from "node:assert/strict";
import { redactConfig, REDACTED } from "./redact.ts";

Deno.test("redactConfig: key patterns, nesting, arrays, admin users", () => {
  const input = {
    password: "p",
    Secret_Value: "s",
    access_token: "t",
    apiKey: "k",
    "api-key": "k",
    private_key: "pk",
    credential: "c",
    keep: "v",
    nested: [{ APIKEY: 1, n: null }, "plain"],
    admin: { auth: { enabled: true, users: { alice: "hash", bob: "hash2" }, realm: "r" } },
    users: { carol: "not the admin map" },
  };
  const copy = structuredClone(input);
  assert.deepEqual(redactConfig(input), {
    password: REDACTED,
    Secret_Value: REDACTED,
    access_token: REDACTED,
    apiKey: REDACTED,
    "api-key": REDACTED,
    private_key: REDACTED,
    credential: REDACTED,
    keep: "v",
    nested: [{ APIKEY: REDACTED, n: null }, "plain"],
    admin: { auth: { enabled: true, users: { alice: REDACTED, bob: REDACTED }, realm: "r" } },
    users: { carol: "not the admin map" },
  });
  assert.deepEqual(input, copy);
});
