/**
 * The committed BPF objects are built from the committed sources: src/ebpf/objects.ts records the
 * SHA-256 of each object's sources, headers and build flags (scripts/build_bpf.ts sourceHash), so
 * editing a source without `deno task build:bpf` fails here on any machine. The embedded bytes
 * must be the committed .o files; with Debian 12's clang 14 a rebuild must reproduce them.
 */
import assert from "node:assert/strict";
import { buildAll, sourceHash, TARGETS } from "../scripts/build_bpf.ts";
import { objectBytes, OBJECTS } from "../src/ebpf/objects.ts";
import { toolTest } from "./tools.ts";

const BPF_DIR = new URL("../src/ebpf/bpf/", import.meta.url);

async function sha256Hex(data: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("ebpf objects: every object was rebuilt after its source last changed", async () => {
  for (const t of TARGETS) {
    const o = OBJECTS[t.name];
    assert.ok(o !== undefined, `src/ebpf/objects.ts has no ${t.name}: run deno task build:bpf`);
    assert.equal(
      o.sourceHash,
      await sourceHash(t),
      `src/ebpf/bpf/${t.source} (or a header it includes, or the build flags) changed since ` +
        `${t.object} was built: run deno task build:bpf and commit the objects and src/ebpf/objects.ts`,
    );
  }
});

Deno.test("ebpf objects: the embedded bytes are the committed .o files", async () => {
  for (const t of TARGETS) {
    const file = await Deno.readFile(new URL(t.object, BPF_DIR));
    const embedded = objectBytes(t.name);
    assert.equal(await sha256Hex(embedded), OBJECTS[t.name].sha256);
    assert.equal(
      await sha256Hex(file),
      OBJECTS[t.name].sha256,
      `${t.object} differs from src/ebpf/objects.ts`,
    );
    // An ELF object for the BPF machine (EM_BPF = 247).
    assert.deepEqual([...embedded.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]);
    assert.equal(new DataView(embedded.buffer).getUint16(18, true), 247);
  }
});

toolTest(
  ["clang 14 bpf"],
  "ebpf objects: clang 14 rebuilds the committed objects byte for byte",
  async () => {
    const built = await buildAll();
    for (const t of TARGETS) {
      const committed = await Deno.readFile(new URL(t.object, BPF_DIR));
      assert.equal(
        await sha256Hex(built.get(t.name)!),
        await sha256Hex(committed),
        `a rebuild of ${t.source} differs from ${t.object}`,
      );
    }
  },
);
