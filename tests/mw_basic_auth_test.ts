/**
 * The `basic_auth` middleware through a running gateway on HTTP/1.1 and h2c:
 * bcrypt ($2a$, $2y$ from an htpasswd file) and argon2id hashes made here,
 * the 401 challenge, the user name upstream without the Authorization field,
 * verification off the event loop, and the cache serving a keep-alive client.
 */
import assert from "node:assert/strict";
import { argon2id, bcrypt } from "hash-wasm";
import { itest } from "./helpers.ts";
import { configErrors, echoUpstream, rejections, startDualLoom } from "./mw_auth_util.ts";

const salt = () => crypto.getRandomValues(new Uint8Array(16));
const basic = (user: string, pw: string) =>
  "Basic " + btoa(String.fromCharCode(...new TextEncoder().encode(`${user}:${pw}`)));

itest(
  "basic_auth: bcrypt and argon2id users over HTTP/1.1 and h2c; challenge, user header, cache",
  async () => {
    const dir = Deno.makeTempDirSync();
    const bcryptHash = await bcrypt({
      password: "alice-pw",
      salt: salt(),
      costFactor: 8,
      outputType: "encoded",
    });
    // Cost 12: a verification takes long enough to see that the event loop stays free meanwhile.
    const slowHash = await bcrypt({
      password: "slow-pw",
      salt: salt(),
      costFactor: 12,
      outputType: "encoded",
    });
    const argonHash = await argon2id({
      password: "bøb-pw",
      salt: salt(),
      parallelism: 1,
      iterations: 2,
      memorySize: 19456,
      hashLength: 32,
      outputType: "encoded",
    });
    const htpasswd = `${dir}/htpasswd`;
    // htpasswd -B writes $2y$.
    Deno.writeTextFileSync(htpasswd, `# ops\ncarol:${bcryptHash.replace(/^\$2a\$/, "$2y$")}\n`);
    const up = echoUpstream();
    const gw = await startDualLoom(`
upstreams:
  - { name: up, endpoints: ["${up.address}"] }
routes:
  - id: private
    path: /private/*
    upstream: up
    middleware:
      - basic_auth:
          realm: Loom test
          users:
            alice: "${bcryptHash}"
            bob: "${argonHash}"
            slow: "${slowHash}"
          users_file: "${htpasswd}"
  - { id: open, path: /open/*, upstream: up }
`);
    try {
      for (const [proto, base, client] of gw.protocols) {
        const get = async (path: string, headers: Record<string, string> = {}) => {
          const r = await fetch(base + path, { client, headers });
          return { status: r.status, headers: r.headers, body: await r.json() };
        };
        const none = await get("/private/x");
        assert.equal(none.status, 401, proto);
        assert.equal(none.headers.get("www-authenticate"), 'Basic realm="Loom test", charset="UTF-8"', proto);
        assert.equal(none.body.error, "authentication required", proto);
        const wrong = await get("/private/x", { authorization: basic("alice", "nope") });
        assert.equal(wrong.status, 401, proto);
        assert.equal((await get("/private/x", { authorization: "Basic %%%" })).status, 401, proto);

        for (const [user, pw] of [["alice", "alice-pw"], ["bob", "bøb-pw"], ["carol", "alice-pw"]]) {
          const ok = await get("/private/x", { authorization: basic(user, pw), "x-auth-user": "root" });
          assert.equal(ok.status, 200, `${proto} ${user}`);
          assert.equal(ok.body.headers["x-auth-user"], user, `${proto} ${user}`);
          assert.equal(ok.body.headers["authorization"], undefined, `${proto} ${user}`);
        }

        // A verification runs on the worker: a request on another route is answered meanwhile.
        const order: string[] = [];
        const slow = get("/private/x", { authorization: basic("slow", "slow-pw") }).then((r) => {
          order.push("slow");
          return r;
        });
        await new Promise((r) => setTimeout(r, 20));
        const open = await get("/open/x");
        order.push("open");
        assert.equal(open.status, 200, proto);
        assert.equal((await slow).status, 200, proto);
        // (On the h2c round the credentials are cached already.)
        if (proto === "HTTP/1.1") assert.deepEqual(order, ["open", "slow"], "the event loop was not blocked");
        // Cached: twenty more requests cost less than one cost-12 verification did.
        const t0 = performance.now();
        for (let i = 0; i < 20; i++) {
          assert.equal((await get("/private/x", { authorization: basic("slow", "slow-pw") })).status, 200);
        }
        const cached = performance.now() - t0;
        assert.ok(cached < 1000, `20 cached requests took ${cached.toFixed(0)} ms`);
      }
      const counted = await rejections(gw.loom.admin("/metrics"), "basic_auth");
      assert.equal(counted.get("private/missing"), 2);
      assert.equal(counted.get("private/invalid"), 2);
      assert.equal(counted.get("private/malformed"), 2);
    } finally {
      await gw.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
);

Deno.test("basic_auth config: bad hashes, names, realm, a missing users file and no users are located errors", () => {
  const lines = configErrors(
    `listeners: [{ name: l, address: ":1", protocol: http }]
upstreams: [{ name: u, endpoints: ["127.0.0.1:2"] }]
middleware:
  - basic_auth: { users: { ada: "{SHA}abc", "a:b": "$2y$10$${"x".repeat(53)}" } }
  - basic_auth: { realm: 'say "hi"', users_file: /nonexistent/htpasswd }
  - basic_auth: {}
routes: [{ id: r, path: /, upstream: u }]
`,
    [
      /^4: middleware\[0\]\.basic_auth\.users\.ada: unsupported password hash/,
      /^4: .*user name "a:b" contains ":"/,
      /^5: middleware\[1\]\.basic_auth\.realm: realm must be/,
      /^5: middleware\[1\]\.basic_auth\.users_file: users_file \/nonexistent\/htpasswd: /,
      /^6: middleware\[2\]\.basic_auth: basic_auth needs users or users_file/,
    ],
  );
  assert.equal(lines.filter((l) => l.startsWith("5:")).length, 2, "no 'needs users' beside a bad users_file");
});
