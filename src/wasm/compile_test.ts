import assert from "node:assert/strict";
import {
  compiledByKey,
  compileModule,
  countCompilations,
  type ModuleRequest,
  moduleSourceVia,
  useModuleSource,
} from "./compile.ts";
import { Registry } from "../observability/metrics.ts";

const KITCHEN = Deno.readFileSync(new URL("../../plugins/test/kitchen_0_2_1.wasm", import.meta.url));
const LIMIT = 64 * 65536;
let unique = 0;

/** The kitchen module with a custom section of its own: content no other test compiled. */
function freshBytes(): Uint8Array {
  const tag = new TextEncoder().encode(`t${unique++}-${crypto.randomUUID()}`);
  const section = [0, 1 + 3 + tag.length, 3, 0x70, 0x61, 0x64, ...tag];
  const b = new Uint8Array(KITCHEN.length + section.length);
  b.set(KITCHEN);
  b.set(section, KITCHEN.length);
  return b;
}

/** This isolate's compilations so far, as loom_wasm_module_compilations_total reports them. */
function compilations(): number {
  const r = new Registry();
  countCompilations(r);
  return r.snapshot().metrics.find((m) => m.name === "loom_wasm_module_compilations_total")!.series[0].value!;
}

async function keyOf(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("") + "/" + LIMIT / 65536;
}

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "compile: a module is compiled once per content; compiledByKey hands it out by content key",
  opts,
  async () => {
    const bytes = freshBytes();
    const before = compilations();
    const a = await compileModule(bytes, LIMIT);
    const b = await compileModule(bytes.slice(), LIMIT);
    assert.equal(a, b, "the second load is a cache hit");
    assert.equal(compilations(), before + 1);
    const shared = await compiledByKey(await keyOf(bytes));
    assert.equal(shared?.module, a.module);
    assert.equal(shared?.loops, a.loops);
    assert.equal(await compiledByKey(await keyOf(freshBytes())), null, "content never compiled here");
  },
);

Deno.test("compile: with a module source the module comes from it; nothing compiles here", opts, async () => {
  const donor = await compileModule(freshBytes(), LIMIT);
  const asked: string[] = [];
  useModuleSource((key) => {
    asked.push(key);
    return Promise.resolve({ module: donor.module, loops: 7 });
  });
  try {
    const bytes = freshBytes();
    const before = compilations();
    const c = await compileModule(bytes, LIMIT);
    assert.equal(c.module, donor.module);
    assert.equal(c.loops, 7);
    assert.equal(c.abi, "0.2.1");
    assert.deepEqual(asked, [await keyOf(bytes)]);
    assert.equal(compilations(), before);
  } finally {
    useModuleSource(null);
  }
});

Deno.test(
  "compile: a source that has nothing, fails or answers junk leaves the compilation to this isolate",
  opts,
  async () => {
    const sources = [
      () => Promise.resolve(null),
      () => Promise.reject(new Error("parent gone")),
      () => Promise.resolve({ module: {} as WebAssembly.Module, loops: 0 }),
    ];
    for (const s of sources) {
      useModuleSource(s);
      try {
        const before = compilations();
        const c = await compileModule(freshBytes(), LIMIT);
        assert.ok(c.module instanceof WebAssembly.Module);
        assert.equal(c.abi, "0.2.1");
        assert.equal(compilations(), before + 1);
      } finally {
        useModuleSource(null);
      }
    }
  },
);

Deno.test(
  "compile: moduleSourceVia matches answers to requests by id; an unanswered one is null at its timeout",
  opts,
  async () => {
    const sent: ModuleRequest[] = [];
    const via = moduleSourceVia((r) => sent.push(r), 50);
    const module = new WebAssembly.Module(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
    const a = via.source("ka"), b = via.source("kb");
    assert.deepEqual(sent.map((r) => [r.type, r.key]), [["module", "ka"], ["module", "kb"]]);
    via.answer({ type: "module", id: sent[1].id, module: { module, loops: 3 } });
    via.answer({ type: "module", id: 999, module: null }); // unknown: ignored
    assert.deepEqual(await b, { module, loops: 3 });
    assert.equal(await a, null);
  },
);
