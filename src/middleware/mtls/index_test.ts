import assert from "node:assert/strict";
import { compileRule, identityOf, mtls, MTLS_IDENTITY_VAR, type MtlsOptions } from "./index.ts";
import type { ClientCertificate } from "../../core/context.ts";
import { testContext } from "../test_context.ts";

function cert(attrs: Record<string, string[]>, sans: string[]): ClientCertificate {
  return {
    subject: Object.entries(attrs).flatMap(([k, vs]) => vs.map((v) => `${k}=${v}`)).join(","),
    sans,
    fingerprint256: "AB:CD",
    subjectAttrs: new Map(Object.entries(attrs)),
  };
}

const HEADERS: MtlsOptions["headers"] = {
  subject: "x-loom-client-subject",
  san: "x-loom-client-san",
  cn: "x-loom-client-cn",
  spiffe_id: "x-loom-client-spiffe-id",
  fingerprint: "x-loom-client-cert-sha256",
};

async function run(o: Partial<MtlsOptions>, c: ClientCertificate | null, headers: [string, string][] = []) {
  const { ctx, sent } = testContext();
  ctx.clientCert = c;
  for (const [n, v] of headers) ctx.headers.append(n, v);
  let passed = false;
  await mtls({ allow: [], headers: HEADERS, ...o }).request!(ctx, () => {
    passed = true;
    return Promise.resolve();
  });
  return { ctx, sent, passed };
}

const billing = cert({ CN: ["billing-1"], O: ["Acme, Inc"], OU: ["payments", "ops"] }, [
  "DNS:billing-1.svc.corp.example",
  "URI:spiffe://corp.example/ns/billing/sa/api",
  "IP Address:10.0.0.1",
]);

Deno.test("mtls: no certificate is 401, one on no rule 403, any verified one passes without rules", async () => {
  const none = await run({}, null);
  assert.equal(none.sent.status, 401);
  assert.equal(none.ctx.rejection, "mtls/no_certificate");
  assert.ok((await run({}, billing)).passed);
  const denied = await run({ allow: [{ cn: ["other"] }] }, billing);
  assert.equal(denied.sent.status, 403);
  assert.equal(denied.ctx.rejection, "mtls/not_allowed");
});

Deno.test("mtls: rules on CN/O/OU (exact, attributes not text), DNS and URI SANs with patterns", () => {
  const id = identityOf(billing);
  const yes = (r: Parameters<typeof compileRule>[0]) => compileRule(r)(id);
  assert.ok(yes({ cn: ["billing-1"] }));
  assert.ok(yes({ o: ["Acme, Inc"] }), "a comma inside a value is part of the value");
  assert.ok(!yes({ o: ["Acme"] }));
  assert.ok(yes({ ou: ["ops"] }), "any of a repeated attribute");
  assert.ok(yes({ o: ["Acme, Inc"], ou: ["nope", "payments"] }), "all fields, any value");
  assert.ok(!yes({ o: ["Acme, Inc"], ou: ["nope"] }));
  assert.ok(yes({ dns: ["BILLING-1.svc.corp.example"] }), "DNS case-insensitive");
  assert.ok(yes({ dns: ["*.svc.corp.example"] }));
  assert.ok(!yes({ dns: ["*.corp.example"] }), "a wildcard covers one label");
  assert.ok(yes({ uri: ["spiffe://corp.example/ns/billing/sa/api"] }));
  assert.ok(yes({ uri: ["spiffe://corp.example/*"] }));
  assert.ok(yes({ uri: ["spiffe://corp.example/ns/billing/*"] }));
  assert.ok(!yes({ uri: ["spiffe://corp.example/ns/bill/*"] }), "prefix ends at a /");
  assert.ok(!yes({ uri: ["spiffe://corp.example.evil/*"] }), "another trust domain");
  assert.ok(!yes({ uri: ["spiffe://corp.example/ns/billing/sa"] }), "exact means exact");
  // The text form is ambiguous; the attributes are not: an OU value "x,OU=admin" is not OU=admin.
  const tricky = cert({ CN: ["c"], OU: ["x,OU=admin"] }, []);
  assert.ok(!compileRule({ ou: ["admin"] })(identityOf(tricky)));
});

Deno.test("mtls: identity headers set (client copies replaced), absent values removed, names configurable", async () => {
  const r = await run({ allow: [{ uri: ["spiffe://corp.example/*"] }] }, billing, [
    ["x-loom-client-spiffe-id", "spiffe://forged"],
    ["x-loom-client-cn", "forged"],
  ]);
  assert.ok(r.passed);
  assert.equal(
    r.ctx.headers.getJoined("x-loom-client-subject"),
    "CN=billing-1,O=Acme, Inc,OU=payments,OU=ops",
  );
  assert.equal(
    r.ctx.headers.getJoined("x-loom-client-san"),
    "DNS:billing-1.svc.corp.example, URI:spiffe://corp.example/ns/billing/sa/api, IP Address:10.0.0.1",
  );
  assert.equal(r.ctx.headers.getJoined("x-loom-client-cn"), "billing-1");
  assert.equal(r.ctx.headers.getJoined("x-loom-client-spiffe-id"), "spiffe://corp.example/ns/billing/sa/api");
  assert.equal(r.ctx.headers.getJoined("x-loom-client-cert-sha256"), "AB:CD");
  assert.equal((r.ctx.vars.get(MTLS_IDENTITY_VAR) as { cn: string[] }).cn[0], "billing-1");

  const plain = cert({ CN: ["plain"] }, ["DNS:plain.example"]);
  const p = await run(
    { headers: { ...HEADERS, subject: "X-Client-DN", fingerprint: "" } },
    plain,
    [["x-loom-client-spiffe-id", "spiffe://forged"], ["x-loom-client-cert-sha256", "forged"]],
  );
  assert.ok(p.passed);
  assert.equal(p.ctx.headers.get("x-client-dn"), "CN=plain");
  assert.equal(p.ctx.headers.get("x-loom-client-spiffe-id"), undefined, "no SPIFFE ID: the forged one goes");
  assert.equal(p.ctx.headers.get("x-loom-client-cert-sha256"), "forged", "a disabled header is not Loom's");
});

Deno.test("mtls: the verdict and identity are computed once per certificate", async () => {
  let reads = 0;
  const c = cert({ CN: ["once"] }, []);
  const counted: ClientCertificate = {
    ...c,
    get subjectAttrs() {
      reads++;
      return c.subjectAttrs;
    },
  };
  for (let i = 0; i < 3; i++) assert.ok((await run({ allow: [{ cn: ["once"] }] }, counted)).passed);
  assert.equal(reads, 1);
});
