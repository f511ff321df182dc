/**
 * eBPF acceleration through the libbpf shim (src/ebpf/), against the real kernel: as root with
 * cgroup v2, libbpf1 and bpftool (CI); skipped with a line saying so elsewhere.
 *
 * - socket_redirect: the programs attach, local hops (client → Loom → local upstream, IPv4 and
 *   IPv6) go through the kernel and the counters move, the bytes are the same with it and without
 *   (random bodies, large ones, many at once, a half-closed request), and other programs' local
 *   connections are never added.
 * - splice_tunnels: upgraded tunnels are spliced, every byte arrives both ways across a half-close,
 *   large and many at once, with splicing and without; with socket_redirect on too they stay on it.
 * - Lifecycle: a reload turns it off and on, SIGTERM and SIGKILL of a child Loom leave nothing in
 *   the kernel (bpftool prog show, bpftool cgroup tree); without what it needs, one warning and
 *   Loom serves without it.
 */
import assert from "node:assert/strict";
import {
  freePort,
  itest,
  startLoom,
  startLoomProcess,
  type TestLoom,
  waitFor,
  writeConfig,
  writeTempConfig,
} from "./helpers.ts";
import { inParallel, metricValue, postReload } from "./gateway_util.ts";
import {
  cgroup2Root,
  cgroupPrograms,
  loomPrograms,
  randomBytes,
  rawHalfClosed,
  sha256,
  startBodyEcho,
  startTunnelUpstream,
  tunnelRoundTrip,
} from "./ebpf_util.ts";
import { setLogLevel, setLogOutput } from "../src/observability/logger.ts";
import { spliceTesting } from "../src/ebpf/splice.ts";

const NEEDS = ["root", "libbpf1", "bpftool"] as const;
const opts = { needs: NEEDS, timeoutMs: 180_000 };

function ebpfBlock(o: { redirect?: boolean; splice?: boolean; cgroup?: string } | null): string {
  if (o === null) return "";
  return [
    "ebpf:",
    "  enabled: true",
    `  socket_redirect: ${o.redirect ?? true}`,
    `  splice_tunnels: ${o.splice ?? false}`,
    ...(o.cgroup ? [`  cgroup: ${JSON.stringify(o.cgroup)}`] : []),
    "",
  ].join("\n");
}

/** A Loom config: an IPv4 and an IPv6 loopback listener, an echo upstream, a tunnel upstream. */
function config(echoPort: number, tunnelPort: number, v6Port: number, ebpf: string): string {
  return `listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
  - name: v6
    address: "[::1]:${v6Port}"
    protocol: http
upstreams:
  - name: echo
    endpoints: ["127.0.0.1:${echoPort}"]
  - name: tunnel
    endpoints: ["127.0.0.1:${tunnelPort}"]
routes:
  - id: echo
    path: /echo
    upstream: echo
  - id: tunnel
    path: /tunnel
    upstream: tunnel
${ebpf}`;
}

function freePort6(): number {
  const l = Deno.listen({ hostname: "::1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The upstreams every test talks to, and a free IPv6 loopback port for the second listener. */
function peers() {
  return { echo: startBodyEcho(), tun: startTunnelUpstream(), v6: freePort6() };
}

// deno-lint-ignore no-explicit-any
async function ebpfStatus(loom: TestLoom): Promise<any> {
  return await (await fetch(loom.admin("/ebpf"))).json();
}

/** Sends every body through Loom (POST /echo, `concurrency` at a time); the SHA-256 of each answer. */
async function echoAll(
  base: string,
  bodies: Uint8Array<ArrayBuffer>[],
  concurrency: number,
): Promise<string[]> {
  const out: string[] = new Array(bodies.length);
  await inParallel(bodies.length, concurrency, async (i) => {
    const res = await fetch(`${base}/echo`, { method: "POST", body: bodies[i] });
    const got = new Uint8Array(await res.arrayBuffer());
    assert.equal(res.status, 200);
    assert.equal(got.length, bodies[i].length, `body ${i}: length`);
    out[i] = [...await sha256(got)].join(",");
  });
  return out;
}

itest(
  "ebpf socket_redirect: local hops go through the kernel; the bytes are the same with it and without",
  async () => {
    const { echo, tun, v6 } = peers();
    const sizes = [
      0,
      1,
      7,
      1000,
      16_384,
      65_536,
      100_000,
      1 << 20,
      4 << 20,
      ...Array.from({ length: 48 }, (_, i) => i * 911),
    ];
    const bodies = sizes.map((n) => randomBytes(n));
    const expected = await Promise.all(bodies.map(async (b) => [...await sha256(b)].join(",")));
    const halfClosed =
      "POST /echo HTTP/1.1\r\nhost: loom\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello";
    const answers: string[] = [];
    for (const on of [false, true]) {
      const loom = await startLoom(config(echo.port, tun.port, v6, on ? ebpfBlock({}) : ""));
      try {
        assert.deepEqual(await echoAll(loom.url(""), bodies, 32), expected, `eBPF ${on ? "on" : "off"}`);
        assert.deepEqual(await echoAll(`http://[::1]:${v6}`, bodies.slice(0, 12), 4), expected.slice(0, 12));
        const raw = await rawHalfClosed(loom.port, halfClosed);
        answers.push(raw.replace(/^date: .*\r\n/im, ""));
        // WebSocket-style tunnels ride on the redirect too (both their hops are local).
        assert.equal(await tunnelRoundTrip(loom.port, "/tunnel", 300_000, 2_000_000), "");
        if (!on) continue;
        const st = await ebpfStatus(loom);
        assert.equal(st.active, true, JSON.stringify(st));
        const r = st.socket_redirect;
        assert.equal(r.attached, true);
        assert.equal(r.cgroup, cgroup2Root());
        assert.equal(r.mode, "process", "this kernel runs the full object");
        assert.deepEqual(
          r.programs.map((p: { program: string }) => p.program).sort(),
          ["loom_connect4", "loom_connect6", "loom_skmsg", "loom_sockops"],
        );
        assert.equal(r.listeners, 2);
        assert.equal(r.upstream_endpoints, 2);
        assert.ok(r.counters.sockets >= 4, `sockets added: ${r.counters.sockets}`);
        assert.ok(r.counters.msg_redirects > 0);
        // Every body went through the kernel at least twice (client → Loom, Loom → upstream) and back.
        const total = sizes.reduce((a, b) => a + b, 0);
        assert.ok(r.counters.msg_redirect_bytes > 4 * total, `redirected ${r.counters.msg_redirect_bytes}`);
        assert.equal(r.counters.socket_errors, 0);
        const attached = await cgroupPrograms(cgroup2Root());
        for (const p of ["loom_sockops", "loom_connect4", "loom_connect6"]) {
          assert.ok(attached.some((a) => a.startsWith(p + " ")), `${p} in bpftool cgroup tree: ${attached}`);
        }
        const metrics = await (await fetch(loom.admin("/metrics"))).text();
        assert.ok(metricValue(metrics, "loom_ebpf_redirect_bytes_total") >= r.counters.msg_redirect_bytes);
        assert.equal(metricValue(metrics, "loom_ebpf_attached", { program: "loom_sockops" }), 1);
      } finally {
        await loom.close();
      }
    }
    assert.equal(answers[1], answers[0], "the half-closed request's answer");
    assert.match(answers[0], /^HTTP\/1\.1 200 /);
    assert.match(answers[0], /hello$/);
    echo.close();
    tun.close();
  },
  opts,
);

itest("ebpf socket_redirect: another program's local connection to an upstream is not touched", async () => {
  const echo = startBodyEcho();
  const loom = await startLoom(config(echo.port, echo.port, freePort6(), ebpfBlock({})));
  try {
    await fetch(loom.url("/echo"), { method: "POST", body: "warm" }).then((r) => r.arrayBuffer());
    const before = (await ebpfStatus(loom)).socket_redirect.counters;
    // A shell (another process) talks to the upstream directly, over loopback.
    const sh = await new Deno.Command("bash", {
      args: [
        "-c",
        `exec 3<>/dev/tcp/127.0.0.1/${echo.port}; printf 'POST / HTTP/1.1\\r\\nhost: x\\r\\nconnection: close\\r\\ncontent-length: 2\\r\\n\\r\\nhi' >&3; cat <&3`,
      ],
      stdout: "piped",
    }).output();
    assert.match(new TextDecoder().decode(sh.stdout), /hi$/);
    const after = (await ebpfStatus(loom)).socket_redirect.counters;
    assert.equal(after.sockets, before.sockets, "no socket of that connection was added");
    assert.equal(after.msg_redirects, before.msg_redirects);
    // Loom's own next hop is still accelerated.
    await fetch(loom.url("/echo"), { method: "POST", body: "again" }).then((r) => r.arrayBuffer());
    assert.ok((await ebpfStatus(loom)).socket_redirect.counters.msg_redirects > after.msg_redirects);
  } finally {
    await loom.close();
    echo.close();
  }
}, opts);

itest(
  "ebpf splice_tunnels: tunnels move through the kernel; every byte arrives both ways, half-close included",
  async () => {
    const { echo, tun, v6 } = peers();
    const cases = Array.from(
      { length: 24 },
      (_, i) => [(i * 1_000_003) % 3_000_000, (i * 7 + 3) * 300_007 % 6_000_000],
    );
    cases.push([0, 0], [1, 0], [0, 1], [20_000_000, 20_000_000]);
    for (const mode of ["off", "splice", "splice+redirect"] as const) {
      const block = mode === "off" ? "" : ebpfBlock({ redirect: mode === "splice+redirect", splice: true });
      const loom = await startLoom(config(echo.port, tun.port, v6, block));
      try {
        const failures: string[] = [];
        await inParallel(cases.length, 12, async (i) => {
          const why = await tunnelRoundTrip(loom.port, "/tunnel", cases[i][0], cases[i][1]);
          if (why !== "") failures.push(`${mode} ${cases[i]}: ${why}`);
        });
        // The splicer's counters with the failures: whether the kernel or Loom moved what went wrong.
        if (failures.length > 0) failures.push(JSON.stringify((await ebpfStatus(loom)).splice_tunnels));
        assert.deepEqual(failures, []);
        const metrics = await (await fetch(loom.admin("/metrics"))).text();
        // Every tunnel's end reached Loom: none is still counted open.
        assert.equal(metricValue(metrics, "loom_websocket_connections_active"), 0);
        if (mode === "off") continue;
        const inst = (await ebpfStatus(loom)).splice_tunnels.instances[0];
        if (mode === "splice") {
          // A client that half-closes as soon as the 101 arrives may do so during the handover:
          // that tunnel stays in user space ("closed").
          assert.equal(inst.spliced + (inst.skipped.closed ?? 0), cases.length, JSON.stringify(inst));
          assert.ok(inst.spliced >= cases.length - 4, JSON.stringify(inst));
          assert.ok(inst.bytes > 20_000_000, `kernel bytes ${inst.bytes}`);
          assert.equal(inst.current.active, 0);
          assert.equal(inst.current.program.skb_dropped, 0);
          assert.equal(metricValue(metrics, "loom_ebpf_spliced_tunnels_total"), inst.spliced);
          assert.ok(metricValue(metrics, "loom_ebpf_spliced_bytes_total") > 20_000_000);
        } else {
          // Both hops local: socket_redirect has them, splicing leaves them be.
          assert.equal(inst.spliced, 0);
          assert.equal(inst.skipped.socket_redirect, cases.length);
        }
      } finally {
        await loom.close();
      }
    }
    echo.close();
    tun.close();
  },
  opts,
);

itest("ebpf: a reload turns it off and on; SIGTERM and SIGKILL leave nothing in the kernel", async () => {
  const { echo, tun, v6 } = peers();
  const cgroup = cgroup2Root();
  const before = await loomPrograms();
  const ours = async () => [...(await loomPrograms()).entries()].filter(([id]) => !before.has(id));
  const onCgroup = async () => (await cgroupPrograms(cgroup)).filter((p) => p.startsWith("loom_"));
  const on = config(echo.port, tun.port, v6, ebpfBlock({ splice: true }));
  for (const stop of ["SIGTERM", "SIGKILL"] as const) {
    const loom = await startLoomProcess(on);
    try {
      const body = { method: "POST", body: "x", headers: { connection: "close" } };
      await (await fetch(loom.url("/echo"), body)).arrayBuffer();
      const names = (await ours()).map(([, n]) => n).sort();
      assert.deepEqual(names, [
        "loom_connect4",
        "loom_connect6",
        "loom_skmsg",
        "loom_sockops",
        "loom_splice_verdict",
      ]);
      assert.equal((await onCgroup()).length, 3, String(await onCgroup()));
      if (stop === "SIGTERM") {
        // Off by reload: the links go at once (the program stays only with sockets it redirects,
        // here Loom's idle upstream connection, until they close).
        writeConfig(loom, config(echo.port, tun.port, v6, ""));
        assert.equal((await postReload(loom)).status, 200);
        await waitFor("cgroup hooks detached", async () => (await onCgroup()).length === 0, 10_000);
        const st = await (await fetch(loom.admin("/ebpf"))).json();
        assert.equal(st.active, false);
        assert.equal(st.splice_tunnels.instances[0].current, null);
        assert.ok(
          !(await ours()).some(([, n]) => n === "loom_splice_verdict"),
          "no tunnel was spliced: gone",
        );
        assert.equal(await (await fetch(loom.url("/echo"), body)).text(), "x");
        // And on again.
        writeConfig(loom, on);
        assert.equal((await postReload(loom)).status, 200);
        await waitFor("attached again", async () => (await onCgroup()).length === 3, 10_000);
        assert.equal(await tunnelRoundTrip(loom.port, "/tunnel", 1000, 1000), "");
      }
      loom.child.kill(stop);
      await loom.child.status;
      await waitFor(
        `nothing left after ${stop}`,
        async () => {
          return (await ours()).length === 0 && (await onCgroup()).length === 0;
        },
        10_000,
        100,
      );
    } finally {
      await loom.close();
    }
  }
  echo.close();
  tun.close();
}, opts);

itest("ebpf: enabled without what it needs: one warning naming it, and Loom serves without it", async () => {
  const echo = startBodyEcho();
  const lines: string[] = [];
  const prev = setLogOutput((l) => void lines.push(l));
  setLogLevel("warn");
  let loom: TestLoom | null = null;
  try {
    loom = await startLoom(
      config(echo.port, echo.port, freePort6(), ebpfBlock({ cgroup: "/sys/fs/cgroup/nope" })),
    );
    assert.equal(await (await fetch(loom.url("/echo"), { method: "POST", body: "ok" })).text(), "ok");
    const warns = lines.filter((l) => l.includes("ebpf"));
    assert.equal(warns.length, 1, warns.join(""));
    assert.match(warns[0], /"level":"warn"/);
    assert.match(warns[0], /cgroup v2 directory \/sys\/fs\/cgroup\/nope/);
    const st = await ebpfStatus(loom);
    assert.equal(st.active, false);
    assert.ok(st.missing.some((m: string) => m.includes("/sys/fs/cgroup/nope")));
    // A reload with the same block does not say it again.
    assert.equal((await postReload(loom)).status, 200);
    assert.equal(lines.filter((l) => l.includes("ebpf")).length, 1);
  } finally {
    setLogOutput(prev);
    setLogLevel("error");
    await loom?.close();
  }
  // Without the capabilities: root, but CAP_BPF, CAP_SYS_ADMIN and CAP_NET_ADMIN dropped.
  const port = freePort();
  const adminPort = freePort();
  const cfg = writeTempConfig(
    config(echo.port, echo.port, freePort6(), ebpfBlock({})).replaceAll("${PORT}", String(port)) +
      `admin:\n  address: "127.0.0.1:${adminPort}"\naccess_log:\n  enabled: false\n`,
  );
  const main = new URL("../src/cli/main.ts", import.meta.url).pathname;
  const child = new Deno.Command("capsh", {
    args: [
      "--drop=cap_bpf,cap_sys_admin,cap_net_admin",
      "--",
      "-c",
      `exec '${Deno.execPath()}' run -A --unstable-net '${main}' run -c '${cfg}' --log-level warn`,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const reading = (async () => {
    for await (const chunk of child.stderr) stderr += new TextDecoder().decode(chunk);
  })();
  try {
    await waitFor(
      "loom without capabilities serves",
      async () => {
        const r = await fetch(`http://127.0.0.1:${port}/echo`, { method: "POST", body: "ok" });
        return (await r.text()) === "ok";
      },
      20_000,
      100,
    );
    const warns = stderr.split("\n").filter((l) => l.includes("ebpf"));
    assert.equal(warns.length, 1, stderr);
    assert.match(warns[0], /privileges: root, or CAP_BPF with CAP_NET_ADMIN/);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await reading;
    Deno.removeSync(cfg);
    echo.close();
  }
}, { ...opts, needs: [...NEEDS, "capsh"] });

itest(
  "ebpf with workers: 2: every worker splices its own tunnels; GET /ebpf and metrics add them up",
  async () => {
    const { echo, tun, v6 } = peers();
    const loom = await startLoomProcess(
      "workers: 2\n" + config(echo.port, tun.port, v6, ebpfBlock({ redirect: false, splice: true })),
    );
    try {
      const failures: string[] = [];
      await inParallel(16, 8, async (i) => {
        const why = await tunnelRoundTrip(loom.port, "/tunnel", 100_000 * i, 200_000 * i);
        if (why !== "") failures.push(`${i}: ${why}`);
      });
      const st = await (await fetch(loom.admin("/ebpf"))).json();
      if (failures.length > 0) failures.push(JSON.stringify(st.splice_tunnels));
      assert.deepEqual(failures, []);
      const instances = st.splice_tunnels.instances as {
        spliced: number;
        skipped: Record<string, number>;
        current: { attached: boolean };
      }[];
      assert.equal(instances.length, 2);
      assert.ok(instances.every((i) => i.current.attached), JSON.stringify(instances));
      const spliced = instances.reduce((a, i) => a + i.spliced, 0);
      // The small tunnels half-close at once: they may end during the handover ("closed").
      assert.equal(
        spliced + instances.reduce((a, i) => a + (i.skipped.closed ?? 0), 0),
        16,
        JSON.stringify(instances),
      );
      assert.ok(spliced >= 12, JSON.stringify(instances));
      const metrics = await (await fetch(loom.admin("/metrics"))).text();
      assert.equal(metricValue(metrics, "loom_ebpf_spliced_tunnels_total"), spliced);
    } finally {
      await loom.close();
      echo.close();
      tun.close();
    }
  },
  opts,
);

itest(
  "ebpf splice_tunnels: bytes that come before both sockets are in go through Loom, then the kernel takes over",
  async () => {
    const { echo, tun, v6 } = peers();
    const loom = await startLoom(
      config(echo.port, tun.port, v6, ebpfBlock({ redirect: false, splice: true })),
    );
    spliceTesting.pauseBetweenInsertsMs = 30;
    try {
      const failures: string[] = [];
      // The clients send a first burst at once after the 101, so bytes reach the client's socket while
      // the upstream's is not in the map yet: the program leaves that direction to Loom. Loom forwards
      // the burst; after the pause the kernel takes the rest.
      await inParallel(12, 6, async (i) => {
        const pace = { burst: 200_000, pauseMs: 300 };
        const why = await tunnelRoundTrip(loom.port, "/tunnel", 3_000_000 + i * 100_003, 1_000_000, pace);
        if (why !== "") failures.push(`${i}: ${why}`);
      });
      const inst = (await ebpfStatus(loom)).splice_tunnels.instances[0];
      if (failures.length > 0) failures.push(JSON.stringify(inst));
      assert.deepEqual(failures, []);
      assert.ok(inst.current.program.skb_passed_bytes > 0, JSON.stringify(inst));
      // Each client's 2.8 MB after the pause went through the kernel, and the upstreams' answers.
      assert.ok(inst.current.program.skb_redirect_bytes > 12 * 2_800_000, JSON.stringify(inst));
      assert.equal(inst.current.program.skb_dropped, 0);
    } finally {
      spliceTesting.pauseBetweenInsertsMs = 0;
      await loom.close();
      echo.close();
      tun.close();
    }
  },
  opts,
);
