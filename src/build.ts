/**
 * How this Loom was built and where the files it ships with are: the same code runs from a checkout
 * (`deno run src/cli/main.ts`), from a `deno compile` binary (the sources are embedded, so it looks like a
 * checkout) and from the bundle (`deno task bundle`: dist/loom.js, every module inlined, so
 * `import.meta.url` is the bundle's file for all of them).
 *
 * The bundle's layout (scripts/bundle.ts writes it, the npm package and the container image ship it):
 *
 *   loom.js                           the CLI
 *   <WORKERS[name].bundle>            one bundle per worker entry point, beside loom.js
 *   config/loom.yaml                  the default config
 *   plugins/<name>/<file>.wasm        the example Proxy-Wasm plugins
 *
 * @module
 */

/**
 * Every module src/ starts as a worker isolate: its source (from the repository root) and its
 * bundle's file name. scripts/bundle.ts bundles each, scripts/compile.ts `--include`s each, and
 * tests/dist_bundle_test.ts fails on a worker started without {@linkcode workerUrl}.
 */
export const WORKERS = {
  gateway: { source: "src/runtime/worker.ts", bundle: "loom-worker.js" },
  basicAuthVerify: {
    source: "src/middleware/basic_auth/verify_worker.ts",
    bundle: "loom-basic-auth-worker.js",
  },
  wasmCompile: { source: "src/wasm/compile_worker.ts", bundle: "loom-wasm-compile-worker.js" },
} as const;

/** A worker entry point of {@linkcode WORKERS}. */
export type WorkerName = keyof typeof WORKERS;

/** Whether this module runs inlined in a bundle (a .js file) rather than from its TypeScript source. */
export const BUNDLED: boolean = !import.meta.url.endsWith(".ts");

/** The module URL to start worker `name` from: its source, or its bundle beside the running bundle. */
export function workerUrl(name: WorkerName): URL {
  return BUNDLED
    ? new URL("./" + WORKERS[name].bundle, import.meta.url)
    : new URL("../" + WORKERS[name].source, import.meta.url);
}

/**
 * A file shipped with Loom, by its path in the repository (`config/loom.yaml`): from a checkout or a
 * compiled binary (which embeds it with `--include`) that path, from the bundle the copy beside it.
 */
export function shippedFile(repoPath: string): URL {
  return new URL((BUNDLED ? "./" : "../") + repoPath, import.meta.url);
}

/** The literal scripts/bundle.ts replaces with the commit in the bundle (a string starting with "<" is unset). */
const STAMPED_COMMIT: string = "<loom-build-commit>";

/**
 * The git commit Loom was built from: stamped into the bundle by scripts/bundle.ts; embedded in a
 * compiled binary as LOOM_BUILD_COMMIT (scripts/compile.ts passes `--env-file`); from a checkout,
 * `git rev-parse --short HEAD`; otherwise "unknown".
 */
export function buildCommit(): string {
  if (!STAMPED_COMMIT.startsWith("<")) return STAMPED_COMMIT;
  const embedded = envOrUndefined("LOOM_BUILD_COMMIT");
  if (embedded) return embedded;
  if (!BUNDLED && import.meta.url.startsWith("file:")) {
    const head = gitHead(new URL("..", import.meta.url).pathname);
    if (head) return head;
  }
  return "unknown";
}

/** `git rev-parse --short HEAD` in `dir`, or undefined (no git, no checkout, no permission). */
export function gitHead(dir: string): string | undefined {
  try {
    const out = new Deno.Command("git", {
      args: ["-C", dir, "rev-parse", "--short", "HEAD"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const head = new TextDecoder().decode(out.stdout).trim();
    return out.success && /^[0-9a-f]{4,40}$/.test(head) ? head : undefined;
  } catch {
    return undefined;
  }
}

function envOrUndefined(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env
  }
}

/** `loom version`: Loom's version and commit, the Deno, V8 and TypeScript versions, the build target. */
export function versionReport(version: string): string {
  const rows: [string, string][] = [
    ["commit", buildCommit()],
    ["deno", Deno.version.deno],
    ["v8", Deno.version.v8],
    ["typescript", Deno.version.typescript],
    ["target", Deno.build.target],
  ];
  return [
    `loom ${version} (deno ${Deno.version.deno})`,
    ...rows.map(([k, v]) => `${(k + ":").padEnd(12)}${v}`),
  ].join("\n");
}
