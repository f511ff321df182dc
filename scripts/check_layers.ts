/**
 * The layer check: folders under `src/` import downward only.
 *
 * `LAYERS` lists the folders bottom to top; folders on one line are peers and
 * may not import each other (that is how cycles start). A file may import from
 * its own folder and from any folder on a lower line. Run it directly
 * (`deno run --allow-read scripts/check_layers.ts`) or through
 * `tests/layers_test.ts`, which fails on the first upward import and names it.
 *
 * @module
 */

/** Bottom to top. Peers share a line. Files directly in `src/` (version.ts) sit at the bottom. */
export const LAYERS: readonly (readonly string[])[] = [
  ["net", "router"], // bytes and sockets; the pure radix router (knows no config, no forwarding)
  ["core"], // the request types everyone shares: context, headers, bodies, deadlines, local replies
  ["config", "http2"], // config is data (uses the router's pattern parser to validate); HTTP/2 codec
  ["http1", "http3", "observability"], // HTTP/1.1 and HTTP/3 codecs; metrics, logs, request ids
  ["k8s"], // the Kubernetes Gateway API as a config source: resources → a LoomConfig (runtime uses it)
  ["ebpf"], // the libbpf FFI shim and Loom's BPF programs: a leaf (config types, logs, metrics below it)
  ["grpc"], // gRPC framing, statuses, timeouts, the health-check client
  ["upstream"], // endpoints, pools, balancing, health, resilience: knows no routes
  ["proxy"], // forwarding to an upstream, header policy, tunnels
  ["wasm"], // the Proxy-Wasm host
  ["middleware"], // the (ctx, next) chain and one folder per middleware
  ["listeners"], // engines that fill a RequestContext and call a handler
  ["gateway"], // composition: snapshot, compiled chains, the request's life
  ["admin", "demo"],
  ["runtime"], // supervisor, workers, instances
  ["cli"],
];

/** An import that goes up (or sideways) the layer list. */
export interface LayerViolation {
  file: string;
  line: number;
  from: string;
  to: string;
  specifier: string;
}

function rankOf(folder: string): number {
  for (let i = 0; i < LAYERS.length; i++) if (LAYERS[i].includes(folder)) return i;
  return -1;
}

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\b[^;"']*?from\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)/g;

/** The top folder under src/ a path is in ("" for files directly in src/). */
function folderOf(srcRel: string): string {
  const i = srcRel.indexOf("/");
  return i === -1 ? "" : srcRel.slice(0, i);
}

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = dir + "/" + e.name;
    if (e.isDirectory) {
      if (e.name !== "testdata" && e.name !== "node_modules") yield* walk(p);
    } else if (e.name.endsWith(".ts")) yield p;
  }
}

/** Reads every module under `srcDir` and returns the imports that break the layer order. */
export async function checkLayers(
  srcDir: string,
): Promise<{ violations: LayerViolation[]; unknown: string[] }> {
  const violations: LayerViolation[] = [];
  const unknown = new Set<string>();
  const root = srcDir.replace(/\/$/, "");
  for await (const file of walk(root)) {
    const rel = file.slice(root.length + 1);
    const from = folderOf(rel);
    const fromRank = from === "" ? -1 : rankOf(from);
    if (from !== "" && fromRank === -1) unknown.add(from);
    const text = await Deno.readTextFile(file);
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2];
      if (!spec.startsWith(".")) continue; // npm:, node:, bare specifiers
      const path = new URL(spec, "file:///src/" + rel).pathname;
      if (!path.startsWith("/src/")) continue; // out of src/: a test's helper (tests/tools.ts)
      const target = path.slice("/src/".length);
      const to = folderOf(target);
      if (to === from || to === "") continue;
      const toRank = rankOf(to);
      if (toRank === -1) {
        unknown.add(to);
        continue;
      }
      if (fromRank !== -1 && toRank >= fromRank) {
        const line = text.slice(0, m.index! + m[0].length).split("\n").length;
        violations.push({ file: "src/" + rel, line, from, to, specifier: spec });
      }
    }
  }
  return { violations, unknown: [...unknown].sort() };
}

if (import.meta.main) {
  const dir = new URL("../src", import.meta.url).pathname;
  const { violations, unknown } = await checkLayers(dir);
  for (const f of unknown) console.log(`src/${f}/: folder not in LAYERS (scripts/check_layers.ts)`);
  for (const v of violations) {
    console.log(
      `${v.file}:${v.line}: ${v.from} imports ${v.to} ("${v.specifier}"): ${v.to} is not below ${v.from}`,
    );
  }
  if (violations.length > 0 || unknown.length > 0) Deno.exit(1);
  console.log("layers: ok");
}
