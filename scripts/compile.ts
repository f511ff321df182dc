/**
 * `deno task compile[:<target>]`: Loom as one executable (`deno compile`), checked before it is kept.
 *
 *   deno run -A scripts/compile.ts [--target host|linux-x86_64|linux-aarch64|macos-x86_64|macos-aarch64|
 *                                   windows-x86_64|<rust triple>] [--out file] [--no-check]
 *
 * The binary embeds the worker entry points (src/build.ts WORKERS), the default config and the example
 * plugins (`--include`), and the commit (LOOM_BUILD_COMMIT through `--env-file`). Then it is verified:
 *
 * 1. Its runtime must be `denort` for the target. `deno compile` appends the program to the runtime
 *    binary it downloads from dl.deno.land, or to whatever DENORT_BIN names; given the full Deno CLI
 *    (the `deno` of npm, `@deno/linux-*-glibc`) it still exits 0, but the result is the Deno CLI, which
 *    never runs the program (`loom version` answers Deno's "unrecognized subcommand", no arguments
 *    start Deno's REPL). The file is checked for the CLI and for the target's machine code.
 * 2. Host target (or a Linux target with `qemu-<arch>-static` and its sysroot under /usr/<arch>-linux-gnu):
 *    `version` must print Loom's version, and a one-request smoke test must pass (start, proxy through
 *    the demo echo upstream, SIGTERM).
 *
 * On failure the output is deleted and the reason and the fix are printed (exit 1): nobody gets a binary
 * that does not run Loom.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { WORKERS } from "../src/build.ts";
import {
  buildCommitOfCheckout,
  capture,
  humanSize,
  LOOM_V8_FLAGS,
  onPath,
  ROOT,
  shippedAssets,
  smokeTest,
  VERSION,
} from "./dist_common.ts";

/** Short names of the targets `deno compile` supports, and their Rust triples. */
export const TARGETS: Record<string, string> = {
  "linux-x86_64": "x86_64-unknown-linux-gnu",
  "linux-aarch64": "aarch64-unknown-linux-gnu",
  "macos-x86_64": "x86_64-apple-darwin",
  "macos-aarch64": "aarch64-apple-darwin",
  "windows-x86_64": "x86_64-pc-windows-msvc",
};

/** A compile that did not give a working Loom: what happened and what to do. */
export class CompileError extends Error {
  constructor(readonly reason: string, readonly fix: string) {
    super(`${reason}\n  fix: ${fix}`);
  }
}

/** The target triple and default output of a `--target` value ("host" or none: this machine). */
export function resolveTarget(name = "host"): { triple: string; output: string } {
  if (name === "host") {
    const triple = Deno.build.target;
    return { triple, output: `${ROOT}dist/loom${triple.includes("windows") ? ".exe" : ""}` };
  }
  const short = Object.entries(TARGETS).find(([k, v]) => k === name || v === name);
  if (!short) throw new Error(`unknown target "${name}"; one of host, ${Object.keys(TARGETS).join(", ")}`);
  return {
    triple: short[1],
    output: `${ROOT}dist/loom-${short[0]}${short[0].startsWith("windows") ? ".exe" : ""}`,
  };
}

/** The machine an executable's header names ("x86_64", "aarch64"), or undefined if not recognised. */
export function machineOf(head: Uint8Array): string | undefined {
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length >= 20 && v.getUint32(0) === 0x7f454c46) { // ELF
    return ({ 0x3e: "x86_64", 0xb7: "aarch64" } as Record<number, string>)[v.getUint16(18, true)];
  }
  if (head.length >= 8 && v.getUint32(0, true) === 0xfeedfacf) { // Mach-O 64
    return ({ 0x01000007: "x86_64", 0x0100000c: "aarch64" } as Record<number, string>)[v.getUint32(4, true)];
  }
  if (head.length >= 64 && head[0] === 0x4d && head[1] === 0x5a) { // PE: MZ, then "PE\0\0" + machine
    const pe = v.getUint32(0x3c, true);
    if (pe + 6 <= head.length && v.getUint32(pe) === 0x50450000) {
      return ({ 0x8664: "x86_64", 0xaa64: "aarch64" } as Record<number, string>)[v.getUint16(pe + 4, true)];
    }
  }
  return undefined;
}

/** Text only the Deno CLI carries (its `compile` help), never denort. */
const CLI_MARKER = "Compile the script into a self contained executable";

function runtimeFix(triple: string): string {
  const denort = Deno.env.get("DENORT_BIN");
  return [
    denort !== undefined
      ? `DENORT_BIN=${denort} is not the denort runtime of ${triple}: unset it so that deno compile downloads ` +
        `denort ${Deno.version.deno} from dl.deno.land, or point it at that denort`
      : `deno compile must get denort ${Deno.version.deno} for ${triple} (from dl.deno.land, or DENORT_BIN)`,
    `(denort-${triple}.zip of the Deno ${Deno.version.deno} release; the deno of npm or @deno/* is the CLI, not denort).`,
    "Without denort, ship the bundle instead: deno task bundle (needs only a deno binary) or the npm package " +
    "(deno task pack:npm).",
  ].join(" ");
}

/** Static checks of the written binary: the target's machine, and no Deno CLI inside. */
export function checkRuntime(file: string, triple: string): void {
  const bytes = Deno.readFileSync(file);
  const want = triple.split("-")[0];
  const got = machineOf(bytes.subarray(0, 4096));
  if (got !== undefined && got !== want) {
    throw new CompileError(
      `${file} is built for ${got}, not ${triple}: deno compile used a runtime of another machine`,
      runtimeFix(triple),
    );
  }
  if (Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(CLI_MARKER) !== -1) {
    throw new CompileError(
      `${file} is the Deno CLI with Loom appended, not Loom: the runtime deno compile embedded is a full ` +
        "`deno`, not `denort`, and it never runs the program (`version` gets Deno's own answer)",
      runtimeFix(triple),
    );
  }
}

/** How to run an executable of `triple` here: directly, under qemu-user, or not at all. */
export function runnerFor(triple: string): { prefix: string[]; how: string } | string {
  if (triple === Deno.build.target) return { prefix: [], how: "natively" };
  const [arch, , os] = triple.split("-");
  if (os !== "linux" || Deno.build.os !== "linux") {
    return `a ${triple} binary cannot run on ${Deno.build.target}`;
  }
  const qemu = onPath(`qemu-${arch}-static`) ?? onPath(`qemu-${arch}`);
  const sysroot = `/usr/${arch}-linux-gnu`;
  if (!qemu) return `no qemu-${arch}-static (apt-get install qemu-user-static) to run ${triple}`;
  try {
    Deno.statSync(`${sysroot}/lib`);
  } catch {
    return `no ${arch} sysroot in ${sysroot} (apt-get install libc6-${
      arch === "aarch64" ? "arm64" : arch
    }-cross ` +
      `libgcc-s1-${arch === "aarch64" ? "arm64" : arch}-cross)`;
  }
  return { prefix: [qemu, "-L", sysroot], how: `under ${qemu}` };
}

/** Runs `version` and the smoke test on the binary; throws CompileError when it is not a working Loom. */
export async function verifyBinary(file: string, triple: string): Promise<string> {
  const runner = runnerFor(triple);
  if (typeof runner === "string") return `not run (${runner}); static checks passed`;
  const [cmd, ...pre] = [...runner.prefix, file];
  const v = await capture(cmd, [...pre, "version"], { timeoutMs: 120_000, env: { NO_COLOR: "1" } });
  const said = (v.stdout + v.stderr).trim();
  if (v.code !== 0 || !v.stdout.startsWith(`loom ${VERSION} `)) {
    const deno = /unrecognized subcommand|Usage: deno|A modern JavaScript and TypeScript runtime/.test(said);
    throw new CompileError(
      deno
        ? `${file} runs the Deno CLI, not Loom (\`${file} version\` printed: ${said.split("\n")[0]}): ` +
          "its runtime is a full `deno`, not `denort`"
        : `${file} version failed (exit ${v.code}): ${said.slice(0, 500)}`,
      deno ? runtimeFix(triple) : "see the output above",
    );
  }
  const smoke = await smokeTest(cmd, pre, { timeoutMs: runner.prefix.length > 0 ? 120_000 : 30_000 });
  return `ran ${runner.how}: version ok; smoke test ok (first request after ${
    Math.round(smoke.coldStartMs)
  } ms)`;
}

/** What `<file> version` prints when it can run here (evidence for a failed static check), else "". */
async function versionAnswer(file: string, triple: string): Promise<string> {
  const runner = runnerFor(triple);
  if (typeof runner === "string") return "";
  const [cmd, ...pre] = [...runner.prefix, file];
  const v = await capture(cmd, [...pre, "version"], { timeoutMs: 60_000, env: { NO_COLOR: "1" } });
  const first = (v.stdout + v.stderr).trim().split("\n")[0];
  return `; run ${runner.how}, \`version\` printed: "${first}" (exit ${v.code})`;
}

/** Compiles Loom for `target` to `output` and verifies it; on any failure the output is removed. */
export async function compile(
  opts: { target?: string; output?: string; check?: boolean } = {},
): Promise<{ output: string; triple: string; size: number; verified: string }> {
  const { triple, output: defaultOutput } = resolveTarget(opts.target);
  const output = opts.output ?? defaultOutput;
  Deno.mkdirSync(output.slice(0, output.lastIndexOf("/")) || "/", { recursive: true });
  const envFile = await Deno.makeTempFile({ prefix: "loom-build-", suffix: ".env" });
  Deno.writeTextFileSync(envFile, `LOOM_BUILD_COMMIT=${buildCommitOfCheckout()}\n`);
  const includes = [...Object.values(WORKERS).map((w) => w.source), ...shippedAssets()];
  const args = [
    "compile",
    "--allow-all",
    "--unstable-net",
    LOOM_V8_FLAGS,
    "--exclude-unused-npm",
    ...(opts.check === false ? ["--no-check"] : []),
    ...includes.flatMap((p) => ["--include", p]),
    `--env-file=${envFile}`,
    "--target",
    triple,
    "--output",
    output,
    "src/cli/main.ts",
  ];
  try {
    const r = await capture(Deno.execPath(), args, { cwd: ROOT, env: { NO_COLOR: "1" } });
    if (r.code !== 0) {
      const url = r.stderr.match(/error sending request for url \((\S+denort\S+)\)/)?.[1];
      // The innermost cause ("dns error: ..."): the last of deno's numbered "Caused by" lines.
      const cause = [...r.stderr.split("Stack backtrace")[0].matchAll(/^\s*\d+: (.+)$/gm)].at(-1)?.[1];
      throw new CompileError(
        url
          ? `deno compile could not download its runtime ${url} (${cause ?? "network error"})`
          : `deno compile failed (exit ${r.code}):\n${r.stderr.trim()}`,
        url || /denort/i.test(r.stderr) ? runtimeFix(triple) : "see deno compile's message above",
      );
    }
    try {
      checkRuntime(output, triple);
    } catch (e) {
      if (!(e instanceof CompileError)) throw e;
      throw new CompileError(e.reason + await versionAnswer(output, triple), e.fix);
    }
    const verified = await verifyBinary(output, triple);
    return { output, triple, size: Deno.statSync(output).size, verified };
  } catch (e) {
    try {
      Deno.removeSync(output);
    } catch { /* not written */ }
    throw e;
  } finally {
    Deno.removeSync(envFile);
  }
}

if (import.meta.main) {
  const at = (flag: string) => {
    const i = Deno.args.indexOf(flag);
    return i >= 0 ? Deno.args[i + 1] : undefined;
  };
  try {
    const r = await compile({
      target: at("--target"),
      output: at("--out"),
      check: !Deno.args.includes("--no-check"),
    });
    console.log(`compile: ${r.output} (${r.triple}, ${humanSize(r.size)}): ${r.verified}`);
  } catch (e) {
    if (!(e instanceof CompileError)) throw e;
    console.error(`compile: ${e.reason}\ncompile: fix: ${e.fix}`);
    Deno.exit(1);
  }
}
