/**
 * Load balancers through the running gateway, with real upstreams tagged by
 * name: each assertion counts which upstream answered.
 */
import assert from "node:assert/strict";
import { itest, startLoom, type TestLoom, waitFor, writeConfig, yamlOf } from "./helpers.ts";
import { echo, get, postReload } from "./gateway_util.ts";
import { startUpstream, type TestUpstream } from "./upstream.ts";

interface Balanced {
  loom: TestLoom;
  ups: TestUpstream[];
  /** Tag ("u0".."uN") of the upstream that served one GET /lb. */
  hit(init?: RequestInit): Promise<string>;
  close(): Promise<void>;
}

function lbYaml(ups: TestUpstream[], upstream: Record<string, unknown>, weights?: number[]): string {
  const endpoints = ups.map((u, i) => weights ? { address: u.address, weight: weights[i] } : u.address);
  return yamlOf({
    upstreams: [{ name: "pool", endpoints, ...upstream }],
    routes: [{ id: "lb", path: "/lb", upstream: "pool" }],
  });
}

/** `n` tagged upstreams (u0..) behind one route /lb with the given upstream settings. */
async function balanced(
  n: number,
  upstream: Record<string, unknown>,
  opts: { weights?: number[]; delays?: number[] } = {},
): Promise<Balanced> {
  const ups = Array.from(
    { length: n },
    (_, i) => startUpstream({ echo: `u${i}`, delayMs: opts.delays?.[i] ?? 0 }),
  );
  let loom: TestLoom;
  try {
    loom = await startLoom(lbYaml(ups, upstream, opts.weights));
  } catch (e) {
    await Promise.all(ups.map((u) => u.close()));
    throw e;
  }
  return {
    loom,
    ups,
    hit: async (init) => (await echo(loom.url("/lb"), init)).tag,
    close: async () => {
      await loom.close();
      await Promise.all(ups.map((u) => u.close()));
    },
  };
}

function tally(tags: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of tags) out[t] = (out[t] ?? 0) + 1;
  return out;
}

async function sequential(b: Balanced, count: number): Promise<Record<string, number>> {
  const tags: string[] = [];
  for (let i = 0; i < count; i++) tags.push(await b.hit());
  return tally(tags);
}

itest("balancing: round_robin is exactly even and cycles in order", async () => {
  const b = await balanced(4, { load_balancer: "round_robin" });
  try {
    const first = [];
    for (let i = 0; i < 8; i++) first.push(await b.hit());
    assert.deepEqual(first.slice(4), first.slice(0, 4), "a fixed cycle");
    assert.equal(new Set(first.slice(0, 4)).size, 4);
    assert.deepEqual(await sequential(b, 400), { u0: 100, u1: 100, u2: 100, u3: 100 });
  } finally {
    await b.close();
  }
});

itest("balancing: weighted follows the endpoint weights exactly per cycle", async () => {
  const b = await balanced(3, { load_balancer: "weighted" }, { weights: [1, 3, 6] });
  try {
    assert.deepEqual(await sequential(b, 500), { u0: 50, u1: 150, u2: 300 });
    const infos = await (await fetch(b.loom.admin("/upstreams"))).json() as {
      endpoints: { weight: number }[];
    }[];
    assert.deepEqual(infos[0].endpoints.map((e) => e.weight), [1, 3, 6]);
  } finally {
    await b.close();
  }
});

itest("balancing: least_conn sends fewer requests to a slow upstream under concurrency", async () => {
  const b = await balanced(3, { load_balancer: "least_conn" }, { delays: [400, 0, 0] });
  try {
    const tags: string[] = [];
    await Promise.all(Array.from({ length: 12 }, async () => {
      for (let i = 0; i < 10; i++) tags.push(await b.hit());
    }));
    const t = tally(tags);
    assert.equal(tags.length, 120);
    assert.ok((t.u0 ?? 0) > 0, "the slow upstream still gets requests");
    assert.ok((t.u0 ?? 0) * 2 < t.u1 && (t.u0 ?? 0) * 2 < t.u2, JSON.stringify(t));
  } finally {
    await b.close();
  }
});

for (const kind of ["random", "p2c"]) {
  itest(`balancing: ${kind} uses every endpoint, roughly evenly`, async () => {
    const b = await balanced(3, { load_balancer: kind });
    try {
      const t = await sequential(b, 600);
      assert.deepEqual(Object.keys(t).sort(), ["u0", "u1", "u2"]);
      for (const [tag, n] of Object.entries(t)) assert.ok(n > 120 && n < 280, `${tag}: ${n} of 600`);
    } finally {
      await b.close();
    }
  });
}

itest(
  "balancing: consistent_hash by header is sticky; removing an endpoint moves only its keys",
  async () => {
    const b = await balanced(4, {
      load_balancer: "consistent_hash",
      consistent_hash: { hash_key: "X-User-ID" },
    });
    try {
      const keys = Array.from({ length: 200 }, (_, i) => `user-${i}`);
      const before = new Map<string, string>();
      for (const k of keys) before.set(k, await b.hit({ headers: { "X-User-ID": k } }));
      for (const k of keys.slice(0, 50)) {
        assert.equal(await b.hit({ headers: { "x-user-id": k } }), before.get(k), `${k} is sticky`);
      }
      const t = tally([...before.values()]);
      assert.equal(Object.keys(t).length, 4, JSON.stringify(t));
      for (const n of Object.values(t)) assert.ok(n >= 20, JSON.stringify(t));

      // Drop u3 via a reload.
      writeConfig(
        b.loom,
        lbYaml(b.ups.slice(0, 3), {
          load_balancer: "consistent_hash",
          consistent_hash: { hash_key: "X-User-ID" },
        }),
      );
      const rel = await postReload(b.loom);
      assert.equal(rel.status, 200, JSON.stringify(rel.body));

      let moved = 0;
      let movedFromKept = 0;
      for (const k of keys) {
        const now = await b.hit({ headers: { "X-User-ID": k } });
        assert.notEqual(now, "u3");
        if (now !== before.get(k)) {
          moved++;
          if (before.get(k) !== "u3") movedFromKept++;
        }
      }
      assert.ok(moved >= t.u3, "every key of the removed endpoint moved");
      assert.ok(moved <= 200 / 4 + 20, `only ~1/N of the keys move: ${moved} moved, ${t.u3} were on u3`);
      assert.ok(movedFromKept <= 15, `keys of kept endpoints stay: ${movedFromKept} moved`);
    } finally {
      await b.close();
    }
  },
);

itest("balancing: consistent_hash by cookie is sticky and spreads keys", async () => {
  const b = await balanced(3, {
    load_balancer: "consistent_hash",
    consistent_hash: { hash_key: "cookie:session", algorithm: "ring" },
  });
  try {
    const seen = new Map<string, string>();
    for (let i = 0; i < 60; i++) {
      const cookie = `theme=dark; session=s${i}; lang=en`;
      seen.set(`s${i}`, await b.hit({ headers: { cookie } }));
    }
    for (let i = 0; i < 60; i += 3) {
      assert.equal(await b.hit({ headers: { cookie: `session=s${i}` } }), seen.get(`s${i}`), `s${i}`);
    }
    assert.equal(new Set(seen.values()).size, 3, "keys spread over all endpoints");
  } finally {
    await b.close();
  }
});

itest("balancing: consistent_hash by client IP keeps one client on one endpoint", async () => {
  const b = await balanced(3, { load_balancer: "consistent_hash", consistent_hash: { hash_key: "ip" } });
  try {
    const tags = new Set<string>();
    for (let i = 0; i < 30; i++) tags.add(await b.hit({ headers: { "X-User-ID": `u${i}` } }));
    assert.equal(tags.size, 1, [...tags].join());
    // A header-keyed upstream falls back to the IP when the key is missing: same endpoint every time.
  } finally {
    await b.close();
  }
});

itest(
  "balancing: upstream per_try_timeout and connect_timeout (pool wait) give 504; route overrides win",
  async () => {
    const slow = startUpstream({ echo: "slow", delayMs: 1000 });
    const capped = startUpstream({ echo: "capped", delayMs: 800 });
    const loom = await startLoom(yamlOf({
      upstreams: [
        { name: "slow", endpoints: [slow.address], per_try_timeout: "300ms" },
        {
          name: "capped",
          endpoints: [capped.address],
          connect_timeout: "200ms",
          pool: { max_connections: 1 },
        },
      ],
      routes: [
        { id: "slow", path: "/slow", upstream: "slow" },
        { id: "slow-patient", path: "/slow-patient", upstream: "slow", per_try_timeout: "5s" },
        { id: "capped", path: "/capped", upstream: "capped" },
        { id: "capped-patient", path: "/capped-patient", upstream: "capped", connect_timeout: "5s" },
      ],
    }));
    const timed = async (path: string) => {
      const t0 = performance.now();
      const r = await get(loom.url(path));
      return { ...r, ms: performance.now() - t0 };
    };
    try {
      const s = await timed("/slow");
      assert.equal(s.status, 504, s.text);
      assert.ok(s.ms >= 250 && s.ms < 900, `504 after ${s.ms} ms`);
      assert.match(s.headers.get("content-type") ?? "", /json/);
      assert.equal((await timed("/slow-patient")).status, 200);

      // The pool's only connection is busy: the next request waits connect_timeout for it.
      const busy = timed("/capped");
      await waitFor("the first request upstream", () => capped.seen.length === 1 || undefined);
      const c = await timed("/capped");
      assert.equal(c.status, 504, c.text);
      assert.ok(c.ms >= 150 && c.ms < 700, `504 after ${c.ms} ms`);
      const patient = timed("/capped-patient"); // waits for the busy connection instead
      assert.equal((await busy).status, 200);
      assert.equal((await patient).status, 200);
    } finally {
      await loom.close();
      await slow.close();
      await capped.close();
    }
  },
);
