/**
 * The API-server path of the Gateway API source against a stand-in on
 * loopback that speaks the list/watch protocol (tests/kube_stub.ts): initial
 * lists, watch events applied as reloads, bookmarks, re-lists after 410 Gone
 * (as an answer and as an ERROR event), status PATCHes with observedGeneration
 * written only by the Lease holder, a take-over when it stops, and invalid
 * resources answered with conditions while Loom keeps serving.
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoom, waitFor } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";
import { KubeStub, type Obj } from "./kube_stub.ts";
import { gateway, gatewayClass, httpRoute, NS, ref, send, service } from "./gateway_api_util.ts";

function loomYaml(stub: KubeStub, tokenFile: string, identity: string, portMap = "{}"): string {
  return [
    "gateway_api:",
    "  listen_host: 127.0.0.1",
    `  port_map: ${portMap}`,
    "  kubernetes:",
    `    server: ${stub.url}`,
    `    token_file: ${tokenFile}`,
    "    ca_file: /nonexistent/ca.crt",
    `    identity: ${identity}`,
    "    initial_sync_timeout: 5s",
    "    lease: { namespace: loom-system, duration: 1s }",
    "",
  ].join("\n");
}

// deno-lint-ignore no-explicit-any
const cond = (o: Obj, type: string): any =>
  o?.status?.conditions?.find((c: { type: string }) => c.type === type);
// deno-lint-ignore no-explicit-any
const routeCond = (o: Obj, type: string): any =>
  o?.status?.parents?.[0]?.conditions?.find((c: { type: string }) => c.type === type);

itest("gateway api: list + watch against an API server stand-in, status by the Lease holder", async () => {
  const v1 = startUpstream({ echo: "v1" });
  const v2 = startUpstream({ echo: "v2" });
  const stub = new KubeStub(["token-a", "token-b"]);
  const port = freePort();
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/a`, "token-a\n");
  Deno.writeTextFileSync(`${dir}/b`, "token-b\n");
  for (const o of [gatewayClass(), gateway("same-namespace", [{ name: "http", port, protocol: "HTTP" }])]) {
    stub.put(o);
  }
  for (const o of [...service("v1", v1.port), ...service("v2", v2.port)]) stub.put(o);
  stub.put(httpRoute("r1", { hostnames: ["one.test"], rules: [{ backendRefs: [ref("v1")] }] }));
  // Enough routes for the list to take several pages (limit=500 per page is Loom's; the stub pages too).
  let a: Awaited<ReturnType<typeof startLoom>> | null = null;
  let b: Awaited<ReturnType<typeof startLoom>> | null = null;
  try {
    a = await startLoom(loomYaml(stub, `${dir}/a`, "loom-a"));
    assert.equal((await send(port, "one.test", "/")).echo?.tag, "v1");

    // Status from the Lease holder: class, gateway, route, with observedGeneration.
    await waitFor(
      "status written",
      () => routeCond(stub.get("HTTPRoute", NS, "r1"), "Accepted")?.status === "True",
    );
    await waitFor("gateway status", () => cond(stub.get("Gateway", NS, "same-namespace"), "Programmed"));
    assert.equal(cond(stub.get("GatewayClass", undefined, "loom"), "Accepted").status, "True");
    const gw = stub.get("Gateway", NS, "same-namespace");
    assert.equal(cond(gw, "Programmed").status, "True");
    assert.equal(gw.status.listeners[0].attachedRoutes, 1);
    assert.equal(routeCond(stub.get("HTTPRoute", NS, "r1"), "Accepted").observedGeneration, 1);
    assert.equal(stub.get("Lease", "loom-system", "loom-gateway-status").spec.holderIdentity, "loom-a");
    assert.ok(stub.patches.every((p) => p.token === "token-a"));

    // A watch event: a new route is served; a spec change bumps observedGeneration.
    stub.put(httpRoute("r2", { hostnames: ["two.test"], rules: [{ backendRefs: [ref("v2")] }] }));
    await waitFor("r2 served", async () => (await send(port, "two.test", "/")).echo?.tag === "v2", 10_000);
    stub.put(httpRoute("r1", { hostnames: ["one.test"], rules: [{ backendRefs: [ref("v2")] }] }));
    await waitFor("r1 changed", async () => (await send(port, "one.test", "/")).echo?.tag === "v2", 10_000);
    await waitFor(
      "observedGeneration 2",
      () => routeCond(stub.get("HTTPRoute", NS, "r1"), "Accepted")?.observedGeneration === 2,
    );

    // An invalid route: conditions, never a crash; the rest keeps serving.
    stub.put(httpRoute("bad", {
      hostnames: ["bad.test"],
      rules: [{ matches: [{ path: { type: "RegularExpression", value: "([" } }], backendRefs: [ref("v1")] }],
    }));
    stub.put(httpRoute("missing", { hostnames: ["missing.test"], rules: [{ backendRefs: [ref("nope")] }] }));
    await waitFor(
      "bad route rejected",
      () => routeCond(stub.get("HTTPRoute", NS, "bad"), "Accepted")?.status === "False",
    );
    assert.equal(routeCond(stub.get("HTTPRoute", NS, "bad"), "Accepted").reason, "UnsupportedValue");
    await waitFor(
      "missing backend",
      () => routeCond(stub.get("HTTPRoute", NS, "missing"), "ResolvedRefs")?.reason === "BackendNotFound",
    );
    assert.equal((await send(port, "missing.test", "/")).status, 500);
    assert.equal((await send(port, "two.test", "/")).echo?.tag, "v2");

    // 410 Gone on a stale resourceVersion: Loom lists again and sees what changed meanwhile.
    const lists = stub.lists.get("HTTPRoute") ?? 0;
    stub.compact();
    stub.put(httpRoute("r3", { hostnames: ["three.test"], rules: [{ backendRefs: [ref("v1")] }] }));
    stub.compact(); // r3's event is gone from history too: only a list finds it
    await waitFor("relisted", () => (stub.lists.get("HTTPRoute") ?? 0) > lists, 10_000);
    await waitFor("r3 served", async () => (await send(port, "three.test", "/")).echo?.tag === "v1", 10_000);
    // The same as an ERROR event in a 200 watch.
    stub.goneAsEvent = true;
    const lists2 = stub.lists.get("HTTPRoute") ?? 0;
    stub.compact();
    stub.delete("HTTPRoute", NS, "r3");
    stub.compact();
    await waitFor("relisted after ERROR 410", () => (stub.lists.get("HTTPRoute") ?? 0) > lists2, 10_000);
    await waitFor("r3 gone", async () => (await send(port, "three.test", "/")).status === 404, 10_000);
    stub.goneAsEvent = false;

    // A second replica serves too but writes no status while the first holds the Lease.
    const portB = freePort(); // the Gateway's port is a's here: b binds another through port_map
    b = await startLoom(loomYaml(stub, `${dir}/b`, "loom-b", `{ "${port}": ${portB} }`));
    assert.equal((await send(portB, "two.test", "/")).echo?.tag, "v2");
    const before = stub.patches.length;
    stub.put(httpRoute("r4", { hostnames: ["four.test"], rules: [{ backendRefs: [ref("v1")] }] }));
    await waitFor(
      "r4 status",
      () => routeCond(stub.get("HTTPRoute", NS, "r4"), "Accepted")?.status === "True",
    );
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(
      stub.patches.slice(before).every((p) => p.token === "token-a"),
      "only the holder writes status",
    );

    // The holder stops (releasing the Lease): the other takes over and writes status.
    await a.close();
    a = null;
    await waitFor(
      "lease taken over",
      () => stub.get("Lease", "loom-system", "loom-gateway-status").spec.holderIdentity === "loom-b",
      10_000,
    );
    stub.put(httpRoute("r5", { hostnames: ["five.test"], rules: [{ backendRefs: [ref("v1")] }] }));
    await waitFor(
      "r5 status by b",
      () => routeCond(stub.get("HTTPRoute", NS, "r5"), "Accepted")?.status === "True",
      10_000,
    );
    assert.ok(stub.patches.some((p) => p.token === "token-b"));
  } finally {
    await a?.close();
    await b?.close();
    await stub.close();
    await v1.close();
    await v2.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
