/**
 * The compile worker (compile.ts): instruments a plugin module's bytes and
 * compiles them with `WebAssembly.compile`, off the gateway's event loop, and
 * posts the `WebAssembly.Module` back.
 *
 * @module
 */
import { instrument } from "./binary.ts";
import type { CompileAnswer, CompileJob } from "./compile.ts";

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<CompileJob>) => void) | null;
  postMessage(m: CompileAnswer): void;
};

scope.onmessage = async (e) => {
  const { id, bytes, maxPages } = e.data;
  try {
    const inst = instrument(bytes, { maxPages });
    const module = await WebAssembly.compile(inst.bytes as Uint8Array<ArrayBuffer>);
    scope.postMessage({ id, module, loops: inst.loops });
  } catch (err) {
    scope.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
  }
};
