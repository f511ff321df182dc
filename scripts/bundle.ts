/**
 * `deno task bundle [--out dir]`: Loom as JavaScript that needs only a Deno binary (2.9).
 *
 *   dist/loom.js                      the CLI, every module and npm package inlined (`deno bundle`)
 *   dist/loom-worker.js, ...          the worker entry points (src/build.ts WORKERS)
 *   dist/<name>-<hash>.js             chunks: code the entries share, and code loaded on demand
 *   dist/config/loom.yaml             the default config (and its JSON Schema)
 *   dist/plugins/<name>/*.wasm        the example Proxy-Wasm plugins
 *
 * Run it as `deno run -A --unstable-net dist/loom.js run -c loom.yaml` (or `./dist/loom.js ...`: it
 * starts with a `deno run` shebang). Each bundle is stamped with the commit it was built from
 * (LOOM_BUILD_COMMIT, else `git rev-parse --short HEAD`, else "unknown"), which `loom version` prints.
 *
 * @module
 */
import { WORKERS } from "../src/build.ts";
import {
  buildCommitOfCheckout,
  capture,
  copyInto,
  humanSize,
  LOOM_V8_FLAGS,
  ROOT,
  run,
  shippedAssets,
} from "./dist_common.ts";

/** The literal src/build.ts carries until a bundle is stamped. */
const COMMIT_PLACEHOLDER = '"<loom-build-commit>"';

/** The shebang of dist/loom.js: the flags Loom needs. */
export const BUNDLE_SHEBANG =
  `#!/usr/bin/env -S deno run --allow-all --unstable-net ${LOOM_V8_FLAGS} --no-config\n`;

/** What {@linkcode buildBundle} wrote. */
export interface BundleResult {
  dir: string;
  /** dist/loom.js */
  main: string;
  commit: string;
  /** Relative path → size in bytes, of everything written. */
  files: Map<string, number>;
}

/** What an earlier bundle in the directory wrote: its chunks (every top-level .js file). */
function removeOldScripts(dir: string): void {
  for (const e of Deno.readDirSync(dir)) {
    if (e.isFile && e.name.endsWith(".js")) Deno.removeSync(`${dir}/${e.name}`);
  }
}

/**
 * Bundles the CLI and the worker entry points together into `dir`, split into chunks
 * (`--code-splitting`): code that only some configs use (HTTP/2, HTTP/3, Wasm, most middleware,
 * eBPF; see bench/README.md, Memory) is in chunks that `import()` reads when a config needs them,
 * so a plain proxy never even parses it, and the workers share the chunks the CLI uses. Every
 * file is stamped with `commit` (the placeholder is in one chunk), the CLI's entry gets the
 * shebang. Returns the names of the files written.
 */
async function bundleAll(dir: string, commit: string): Promise<string[]> {
  const tmp = Deno.makeTempDirSync({ dir, prefix: ".bundle-" });
  try {
    const entries = ["src/cli/main.ts", ...Object.values(WORKERS).map((w) => w.source)];
    await run(
      Deno.execPath(),
      ["bundle", "--quiet", "--platform", "deno", "--code-splitting", "--outdir", tmp, ...entries],
      { cwd: ROOT, env: { NO_COLOR: "1" } },
    );
    // Entries come out at their path under src/, chunks beside them at the top: the entries move up
    // to their names (nothing imports an entry) and their imports of chunks ("../chunk-X.js") with them.
    const entryNames = new Map<string, string>([
      ["cli/main.js", "loom.js"],
      ...Object.values(WORKERS).map((w): [string, string] => [
        w.source.replace(/^src\/(.*)\.ts$/, "$1.js"),
        w.bundle,
      ]),
    ]);
    const chunks = [...Deno.readDirSync(tmp)].filter((e) => e.isFile).map((e) => e.name);
    removeOldScripts(dir);
    let stamped = false;
    const written: string[] = [];
    for (const from of [...entryNames.keys(), ...chunks]) {
      let js = Deno.readTextFileSync(`${tmp}/${from}`);
      if (from.includes("/")) js = js.replace(/((?:\bfrom|\bimport)\s*\(?\s*)"(?:\.\.\/)+/g, '$1"./');
      stamped ||= js.includes(COMMIT_PLACEHOLDER);
      const name = entryNames.get(from) ?? from;
      const shebang = name === "loom.js" ? BUNDLE_SHEBANG : "";
      Deno.writeTextFileSync(
        `${dir}/${name}`,
        shebang + asciiOnly(js.replaceAll(COMMIT_PLACEHOLDER, JSON.stringify(commit))),
      );
      written.push(name);
    }
    if (!stamped) {
      throw new Error(`the commit placeholder of src/build.ts is missing; cannot stamp the build`);
    }
    return written.sort();
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
}

/**
 * `js` with every non-ASCII character written as a `\uXXXX` escape (same meaning in strings,
 * templates, regular expressions and comments). V8 holds a script's source for lazy compilation,
 * and one character beyond Latin-1 makes it hold all of it two bytes per character: a dozen
 * "→" and "≤" in messages cost the bundle 2.2 MiB of heap (bench/README.md, Memory).
 */
export function asciiOnly(js: string): string {
  if (/\\[\u0080-\uffff]/.test(js)) throw new Error("bundle: a backslash before a non-ASCII character");
  return js.replace(/[\u0080-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

/** Writes the bundle and what it ships with to `dir` (created; earlier bundle files are replaced). */
export async function buildBundle(
  dir = ROOT + "dist",
  commit = buildCommitOfCheckout(),
): Promise<BundleResult> {
  Deno.mkdirSync(dir, { recursive: true });
  if (Deno.realPathSync(dir) === Deno.realPathSync(ROOT)) {
    throw new Error("the bundle needs its own directory");
  }
  const main = `${dir}/loom.js`;
  const scripts = await bundleAll(dir, commit);
  Deno.chmodSync(main, 0o755);
  const assets = shippedAssets();
  for (const a of ["config", "plugins"]) {
    try {
      Deno.removeSync(`${dir}/${a}`, { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  copyInto(dir, assets);
  const files = new Map<string, number>();
  for (const f of scripts) files.set(f, Deno.statSync(`${dir}/${f}`).size);
  for (const f of assets) files.set(f, Deno.statSync(`${dir}/${f}`).size);
  // The bundle must run: its own version (cheap, and it proves the stamp and the inlined npm packages).
  const v = await capture(Deno.execPath(), ["run", "-A", "--unstable-net", "--no-config", main, "version"]);
  if (v.code !== 0 || !v.stdout.startsWith("loom ") || !v.stdout.includes(`commit:     ${commit}`)) {
    throw new Error(`${main} does not run: exit ${v.code}\n${v.stdout}${v.stderr}`);
  }
  return { dir, main, commit, files };
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--out");
  const dir = i >= 0 ? Deno.args[i + 1] : ROOT + "dist";
  const r = await buildBundle(dir);
  let total = 0;
  for (const [f, size] of r.files) {
    total += size;
    if (!f.startsWith("plugins/")) console.log(`${humanSize(size).padStart(9)}  ${dir}/${f}`);
  }
  const plugins = [...r.files].filter(([f]) => f.startsWith("plugins/"));
  const pluginBytes = plugins.reduce((n, [, s]) => n + s, 0);
  console.log(`${humanSize(pluginBytes).padStart(9)}  ${dir}/plugins/ (${plugins.length} files)`);
  console.log(`bundle: ${humanSize(total)} in ${dir} (commit ${r.commit})`);
  console.log(`run:    deno run -A --unstable-net ${r.main} run -c config.yaml`);
}
