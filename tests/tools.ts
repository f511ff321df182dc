/**
 * External programs the tests run (Debian tools, a build artifact), and the one
 * gate for a test that needs them: {@linkcode toolTest}.
 *
 * Without a tool the test is ignored and one line says which tool is missing
 * and what installs it, so `deno task test` passes on a machine with only Deno.
 * With `LOOM_TEST_REQUIRE_TOOLS=1` (CI, see .ci/run) a missing tool fails the
 * test with that line instead: nothing is skipped by accident there.
 *
 * This module has no side effects beyond the checks, so src/ tests can use it.
 *
 * @module
 */

/** How to find one tool (a `/bin/sh` command that succeeds when it is there) and what brings it. */
interface ToolSpec {
  check: string;
  /** Debian packages that bring it (one `apt-get install` line for all missing tools of a test). */
  apt?: string;
  /** How to get it when no package does. */
  hint?: string;
}

const SDK_RUST_WASM = new URL("../plugins/sdk-rust/http_filter.wasm", import.meta.url).pathname;

/** Every external program a test runs. Python is Debian's: its modules come from Debian packages. */
const TOOLS = {
  curl: { check: "command -v curl", apt: "curl" },
  openssl: { check: "command -v openssl", apt: "openssl" },
  nghttp: { check: "command -v nghttp", apt: "nghttp2-client" },
  h2load: { check: "command -v h2load", apt: "nghttp2-client" },
  // tests/protocols_h3_test.ts runs this path.
  gtlsclient: { check: "test -x /usr/bin/gtlsclient", apt: "ngtcp2-client" },
  "python3 grpc": { check: "/usr/bin/python3 -c 'import grpc'", apt: "python3-grpcio" },
  "python3 websockets": { check: "/usr/bin/python3 -c 'import websockets'", apt: "python3-websockets" },
  // The committed C plugins are Debian 12's clang 14 output (another version gives other bytes); clang
  // alone cannot link wasm32: wasm-ld is in lld.
  "clang 14": {
    check: "command -v wasm-ld && clang --version | grep -q 'clang version 14\\.'",
    apt: "clang lld",
  },
  npm: { check: "command -v npm && command -v node", apt: "npm" },
  // tests/mw_rate_limit_test.ts starts its own on a loopback port.
  "redis-server": { check: "command -v redis-server", apt: "redis-server" },
  // tests/dashboard_test.ts drives it headless through the DevTools protocol (tests/cdp.ts).
  chromium: { check: "test -x /usr/bin/chromium", apt: "chromium" },
  // The ARM64 run of the bundle (tests/dist_arm64_test.ts): qemu-user and the arm64 glibc and libgcc_s
  // that Deno's aarch64 binary loads.
  "qemu-aarch64-static": { check: "command -v qemu-aarch64-static", apt: "qemu-user-static" },
  "aarch64 sysroot": {
    check:
      "test -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 && test -e /usr/aarch64-linux-gnu/lib/libgcc_s.so.1",
    apt: "libc6-arm64-cross libgcc-s1-arm64-cross",
  },
  // eBPF (tests/ebpf_test.ts): loading and attaching BPF programs needs root (or CAP_BPF with
  // CAP_NET_ADMIN) and cgroup v2; libbpf1 is what Loom loads, bpftool what the tests look with.
  root: {
    check: `test "$(id -u)" = 0 && grep -q ' cgroup2 ' /proc/self/mounts`,
    hint: "run as root (CI does) on a host with cgroup v2 mounted",
  },
  libbpf1: { check: "ls /usr/lib/*/libbpf.so.1 /lib/*/libbpf.so.1 2>/dev/null | grep -q .", apt: "libbpf1" },
  bpftool: { check: "command -v bpftool", apt: "bpftool" },
  // Runs a Loom with the eBPF capabilities dropped (tests/ebpf_test.ts).
  capsh: { check: "command -v capsh", apt: "libcap2-bin" },
  // The committed BPF objects are Debian 12's clang 14 output (tests/ebpf_objects_test.ts rebuilds them).
  "clang 14 bpf": {
    check:
      "command -v llvm-strip && test -f /usr/include/bpf/bpf_helpers.h && clang --version | grep -q 'clang version 14\\.'",
    apt: "clang llvm libbpf-dev linux-libc-dev",
  },
  "plugins/sdk-rust/http_filter.wasm": {
    check: `test -f '${SDK_RUST_WASM}'`,
    hint: "build it with scripts/build_sdk_rust.sh (plugins/sdk-rust/README.md)",
  },
} satisfies Record<string, ToolSpec>;

/** A tool name of {@linkcode TOOLS}. */
export type Tool = keyof typeof TOOLS;

const found = new Map<Tool, boolean>();

/** Whether `tool` is there; checked once per process, synchronously (test registration needs the answer). */
function have(tool: Tool): boolean {
  let ok = found.get(tool);
  if (ok === undefined) {
    try {
      const cmd = new Deno.Command("/bin/sh", {
        args: ["-c", TOOLS[tool].check],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      });
      ok = cmd.outputSync().success;
    } catch {
      ok = false; // no /bin/sh either
    }
    found.set(tool, ok);
  }
  return ok;
}

/** "needs nghttp, h2load: apt-get install nghttp2-client" for the missing `tools`. */
function missingLine(missing: Tool[]): string {
  const specs: ToolSpec[] = missing.map((t) => TOOLS[t]);
  const apt = [...new Set(specs.flatMap((s) => s.apt?.split(" ") ?? []))];
  const how = [
    ...(apt.length > 0 ? [`apt-get install ${apt.join(" ")}`] : []),
    ...specs.flatMap((s) => s.hint ?? []),
  ];
  return `needs ${missing.join(", ")}: ${how.join("; ")}`;
}

/**
 * Deno.test for a test that runs external `tools`. When one is missing the
 * test is ignored and one line names it with what installs it; with
 * LOOM_TEST_REQUIRE_TOOLS=1 the test fails with that line instead. A test
 * already ignored by `opts` prints nothing.
 */
export function toolTest(
  tools: readonly Tool[],
  name: string,
  fn: (t: Deno.TestContext) => void | Promise<void>,
  opts: Omit<Deno.TestDefinition, "name" | "fn"> = {},
): void {
  const missing = opts.ignore ? [] : tools.filter((t) => !have(t));
  if (missing.length === 0) return Deno.test({ ...opts, name, fn });
  const line = missingLine(missing);
  if (Deno.env.get("LOOM_TEST_REQUIRE_TOOLS") === "1") {
    return Deno.test({
      ...opts,
      name,
      fn: () => {
        throw new Error(`${line} (LOOM_TEST_REQUIRE_TOOLS=1)`);
      },
    });
  }
  console.log(`skipped "${name}": ${line}`);
  Deno.test({ ...opts, name, ignore: true, fn });
}
