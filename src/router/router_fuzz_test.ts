// Cross-checks the radix-tree router against a brute-force reference that
// applies the documented precedence rules literally to every route.
import assert from "node:assert/strict";
import { Router } from "./router.ts";
import type { MatchInput, RouteSpec } from "./types.ts";

const STATIC = 3;
const PARAM = 2;
const CATCH = 1;
const END = 4; // pattern ended: beats a catch-all matching nothing

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface RefResult {
  id: string;
  params: Record<string, string>;
  rest: string;
}

/** Segment-wise match of `pattern` on `path`; returns specificity key and captures. */
function refMatch(
  pattern: string,
  path: string,
): { key: number[]; params: Record<string, string>; rest: string } | null {
  const ps = pattern.slice(1).split("/");
  const xs = path.slice(1).split("/");
  const key: number[] = [];
  const params: Record<string, string> = {};
  for (let k = 0; k < ps.length; k++) {
    const p = ps[k];
    if (p === "*" || p.endsWith("...}")) {
      // The catch-all also matches the bare prefix (no "/" before it).
      if (xs.length < k) return null;
      const rest = xs.slice(k).join("/");
      params[p === "*" ? "*" : p.slice(1, -4)] = rest;
      key.push(CATCH);
      return { key, params, rest };
    }
    if (k >= xs.length) return null;
    if (p.startsWith("{") || p.startsWith(":")) {
      if (xs[k] === "") return null;
      params[p.startsWith(":") ? p.slice(1) : p.slice(1, -1)] = xs[k];
      key.push(PARAM);
    } else {
      if (xs[k] !== p) return null;
      key.push(STATIC);
    }
  }
  if (xs.length !== ps.length) return null;
  key.push(END);
  return { key, params, rest: "" };
}

function hostRank(host: string | undefined, reqHost: string): number | null {
  if (host === undefined) return 0;
  if (host.startsWith("*.")) {
    const suffix = host.slice(1);
    return reqHost.endsWith(suffix) && reqHost.length > suffix.length ? 1 : null;
  }
  return host === reqHost ? 2 : null;
}

function refRoute(specs: RouteSpec<string>[], req: MatchInput): RefResult | null {
  type Cand = {
    spec: RouteSpec<string>;
    key: number[];
    hr: number;
    params: Record<string, string>;
    rest: string;
  };
  const cands: Cand[] = [];
  for (const spec of specs) {
    const m = refMatch(spec.path, req.path);
    if (m === null) continue;
    const hr = hostRank(spec.host, req.host);
    if (hr === null) continue;
    if (spec.methods && !spec.methods.includes(req.method)) continue;
    if (spec.headers && Object.keys(spec.headers).some((h) => req.header(h) === undefined)) continue;
    cands.push({ spec, hr, ...m });
  }
  const matchers = (s: RouteSpec<string>) => (s.methods ? 1 : 0) + Object.keys(s.headers ?? {}).length;
  cands.sort((a, b) => {
    const pr = (b.spec.priority ?? 0) - (a.spec.priority ?? 0);
    if (pr) return pr;
    for (let i = 0; i < Math.min(a.key.length, b.key.length); i++) {
      if (a.key[i] !== b.key[i]) return b.key[i] - a.key[i];
    }
    return b.hr - a.hr || (a.hr === 1 ? b.spec.host!.length - a.spec.host!.length : 0) ||
      matchers(b.spec) - matchers(a.spec) || a.spec.order - b.spec.order;
  });
  const best = cands[0];
  return best ? { id: best.spec.id, params: best.params, rest: best.rest } : null;
}

const STATICS = ["a", "b", "ab", "abc", "ba"];
const PATH_SEGS = [...STATICS, "abd", "x", "a"];

function pick<X>(rnd: () => number, xs: readonly X[]): X {
  return xs[Math.floor(rnd() * xs.length)];
}

function randomPattern(rnd: () => number): string {
  const n = 1 + Math.floor(rnd() * 3);
  const segs: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = rnd();
    if (r < 0.6) segs.push(pick(rnd, STATICS));
    else if (r < 0.75) segs.push(rnd() < 0.5 ? `{p${i}}` : `:p${i}`);
    else {
      segs.push(rnd() < 0.5 ? "*" : `{rest...}`);
      break;
    }
  }
  const last = segs[segs.length - 1];
  if (last !== "*" && !last.endsWith("...}") && rnd() < 0.15) segs.push("");
  return "/" + segs.join("/");
}

function randomPath(rnd: () => number): string {
  const n = 1 + Math.floor(rnd() * 4);
  const segs: string[] = [];
  for (let i = 0; i < n; i++) segs.push(pick(rnd, PATH_SEGS));
  if (rnd() < 0.15) segs.push("");
  return "/" + segs.join("/");
}

Deno.test("router agrees with a brute-force reference on random route sets", () => {
  const rnd = mulberry32(0x10011);
  let matched = 0;
  for (let set = 0; set < 300; set++) {
    const specs: RouteSpec<string>[] = [];
    const count = 1 + Math.floor(rnd() * 25);
    for (let i = 0; i < count; i++) {
      specs.push({
        id: `r${i}`,
        path: randomPattern(rnd),
        host: pick(rnd, [undefined, undefined, "x.com", "*.x.com", "a.x.com", "*.a.x.com"]),
        methods: pick(rnd, [undefined, undefined, ["GET"], ["POST"], ["GET", "POST"]]),
        headers: rnd() < 0.15 ? { "x-flag": { kind: "present" } } : undefined,
        priority: pick(rnd, [0, 0, 0, 0, 1, 2, -1]),
        order: Math.floor(rnd() * 1000),
        data: `r${i}`,
      });
    }
    const router = new Router(specs);
    for (let q = 0; q < 60; q++) {
      const flag = rnd() < 0.3;
      const req: MatchInput = {
        method: pick(rnd, ["GET", "POST", "PUT"]),
        host: pick(rnd, ["x.com", "a.x.com", "b.a.x.com", "y.com"]),
        path: randomPath(rnd),
        query: "",
        header: (name) => flag && name === "x-flag" ? "1" : undefined,
      };
      const want = refRoute(specs, req);
      const got = router.match(req);
      const ctx = () => JSON.stringify({ req: { ...req, header: flag }, specs }, null, 1);
      assert.equal(got?.route.id ?? null, want?.id ?? null, ctx());
      if (got && want) {
        assert.deepEqual({ ...got.params }, want.params, ctx());
        assert.equal(got.rest, want.rest, ctx());
        matched++;
      }
    }
  }
  assert.ok(matched > 2000, `too few matches exercised: ${matched}`);
});
