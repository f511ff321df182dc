/**
 * Protocol benchmark: h2load through Loom and through nginx, same run,
 * alternating rounds, for
 *
 *   h2c   HTTP/2 prior knowledge → HTTP/1.1 upstream (Loom: h2c listener, Loom's own HTTP/2)
 *   h2    HTTP/2 over TLS (ALPN) → HTTP/1.1 upstream (Loom: https listener with alpn h2, node:tls)
 *   grpc  gRPC unary calls (h2load POSTs of one framed message, te: trailers) → gRPC upstream
 *         (Loom: grpc listener + its HTTP/2 client; nginx: grpc_pass with upstream keepalive)
 *
 *   deno task bench:protocols [--rounds N] [--requests N] [--clients C] [--streams M]
 *
 * Upstreams: nginx serving a 1 KiB file (HTTP), and a minimal gRPC unary
 * server (bench/grpc_upstream.mjs, run by `node` when installed, else by Deno). Everything started is killed on exit; results go to stdout and
 * bench/results/<timestamp>-protocols.md. Only 127.0.0.1 is used.
 */
const REPO = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

interface Options {
  rounds: number;
  requests: number;
  clients: number;
  streams: number;
}

function parseArgs(args: string[]): Options {
  const o: Options = { rounds: 3, requests: 20000, clients: 20, streams: 10 };
  for (let i = 0; i < args.length; i++) {
    const v = Number(args[i + 1]);
    if (args[i] === "--rounds") (o.rounds = v, i++);
    else if (args[i] === "--requests") (o.requests = v, i++);
    else if (args[i] === "--clients") (o.clients = v, i++);
    else if (args[i] === "--streams") (o.streams = v, i++);
  }
  return o;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = (l.addr as Deno.NetAddr).port;
  l.close();
  return p;
}

const procs: Deno.ChildProcess[] = [];
const tmp = Deno.makeTempDirSync({ prefix: "loom-bench-protocols-" });

function cleanup(): void {
  for (const p of procs) {
    try {
      p.kill("SIGKILL");
    } catch { /* gone */ }
  }
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch { /* gone */ }
}

function spawn(cmd: string, args: string[], log: string): Deno.ChildProcess {
  const f = Deno.openSync(`${tmp}/${log}`, { write: true, create: true });
  const p = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", stdin: "null" }).spawn();
  p.stdout.pipeTo(f.writable).catch(() => {});
  p.stderr.pipeTo(new WritableStream()).catch(() => {});
  procs.push(p);
  return p;
}

async function waitPort(port: number, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`port ${port} did not open`);
}

async function openssl(args: string[]): Promise<void> {
  const o = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" }).output();
  if (!o.success) throw new Error(new TextDecoder().decode(o.stderr));
}

/** h2load run; returns req/s (0 when requests failed). */
async function h2load(
  url: string,
  o: Options,
  extra: string[] = [],
): Promise<{ rps: number; failed: number }> {
  const out = await new Deno.Command("h2load", {
    args: ["-n", String(o.requests), "-c", String(o.clients), "-m", String(o.streams), ...extra, url],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(text)?.[1] ?? 0);
  const failed = Number(/\d+ succeeded, (\d+) failed/.exec(text)?.[1] ?? o.requests);
  const errored = Number(/failed, (\d+) errored/.exec(text)?.[1] ?? 0);
  return { rps, failed: failed + errored };
}

async function main(): Promise<void> {
  const o = parseArgs(Deno.args);
  const nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (nginx === undefined) throw new Error("nginx not installed (apt-get install nginx)");

  // Certificates (leaf CA:FALSE) for the TLS listeners of both proxies.
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-addext",
    "basicConstraints=critical,CA:FALSE",
    "-keyout",
    `${tmp}/key.pem`,
    "-out",
    `${tmp}/cert.pem`,
  ]);
  const grpcMsg = `${tmp}/msg.bin`;
  Deno.writeFileSync(grpcMsg, new Uint8Array([0, 0, 0, 0, 5, 104, 101, 108, 108, 111]));

  const p = {
    httpUp: freePort(),
    grpcUp: freePort(),
    nginxH2c: freePort(),
    nginxH2: freePort(),
    nginxGrpc: freePort(),
    loomH2c: freePort(),
    loomH2: freePort(),
    loomGrpc: freePort(),
    admin: freePort(),
  };
  // nginx workers run as an unprivileged user: the temp dir (0700 by default) must be readable.
  Deno.chmodSync(tmp, 0o755);
  Deno.mkdirSync(`${tmp}/www`, { mode: 0o755 });
  Deno.writeFileSync(`${tmp}/www/file`, new Uint8Array(1024).fill(0x61), { mode: 0o644 });
  const temps = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((d) => `${d}_temp_path ${tmp}/${d};`)
    .join(
      "\n  ",
    );
  Deno.writeTextFileSync(
    `${tmp}/nginx.conf`,
    `worker_processes 1;
daemon off;
pid ${tmp}/nginx.pid;
error_log ${tmp}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  http2_max_requests 1000000;
  ${temps}
  upstream http_up { server 127.0.0.1:${p.httpUp}; keepalive 128; keepalive_requests 1000000; }
  upstream grpc_up { server 127.0.0.1:${p.grpcUp}; keepalive 32; keepalive_requests 1000000; }
  server { listen 127.0.0.1:${p.httpUp}; root ${tmp}/www; }
  server {
    listen 127.0.0.1:${p.nginxH2c} http2;
    location / { proxy_pass http://http_up/file; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:${p.nginxH2} ssl http2;
    ssl_certificate ${tmp}/cert.pem; ssl_certificate_key ${tmp}/key.pem;
    location / { proxy_pass http://http_up/file; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:${p.nginxGrpc} http2;
    location / { grpc_pass grpc://grpc_up; }
  }
}
`,
  );
  spawn(nginx, ["-p", `${tmp}/`, "-e", `${tmp}/nginx-error.log`, "-c", `${tmp}/nginx.conf`], "nginx.log");

  const upstreamScript = `${REPO}/bench/grpc_upstream.mjs`;
  const node = ["/usr/bin/node", "/usr/local/bin/node"].find((x) => {
    try {
      return Deno.statSync(x).isFile;
    } catch {
      return false;
    }
  });
  if (node !== undefined) spawn(node, [upstreamScript, String(p.grpcUp)], "grpc-up.log");
  else spawn(Deno.execPath(), ["run", "-A", upstreamScript, String(p.grpcUp)], "grpc-up.log");

  Deno.writeTextFileSync(
    `${tmp}/loom.yaml`,
    `listeners:
  - { name: h2c, address: "127.0.0.1:${p.loomH2c}", protocol: h2c }
  - name: h2
    address: "127.0.0.1:${p.loomH2}"
    protocol: https
    tls: { cert_file: "${tmp}/cert.pem", key_file: "${tmp}/key.pem", alpn: [h2, http/1.1] }
  - { name: grpc, address: "127.0.0.1:${p.loomGrpc}", protocol: grpc }
upstreams:
  - { name: http, endpoints: ["127.0.0.1:${p.httpUp}"] }
  - { name: grpc, endpoints: ["127.0.0.1:${p.grpcUp}"] }
routes:
  - { id: grpc, path: "/bench.Echo/*", upstream: grpc }
  - { id: http, path: "/*", upstream: http, rewrite: /file }
admin: { address: "127.0.0.1:${p.admin}" }
access_log: { enabled: false }
`,
  );
  // Loom is restarted if it dies: a crash is reported in the table instead of spoiling the other cases.
  let loomProc: Deno.ChildProcess | null = null;
  let loomRuns = 0;
  const startLoom = async () => {
    loomProc = spawn(
      Deno.execPath(),
      [
        "run",
        "-A",
        "--unstable-net",
        `${REPO}/src/cli/main.ts`,
        "run",
        "-c",
        `${tmp}/loom.yaml`,
        "--log-level",
        "error",
      ],
      `loom-${++loomRuns}.log`,
    );
    for (const port of [p.loomH2c, p.loomH2, p.loomGrpc]) await waitPort(port);
  };
  const loomAlive = async () => {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port: p.loomH2c })).close();
      return true;
    } catch {
      return false;
    }
  };
  for (const port of [p.httpUp, p.grpcUp, p.nginxH2c, p.nginxH2, p.nginxGrpc]) await waitPort(port);
  await startLoom();

  const grpcArgs = ["-d", grpcMsg, "-H", "content-type: application/grpc", "-H", "te: trailers"];
  const cases = [
    {
      name: "h2c (prior knowledge)",
      loom: `http://127.0.0.1:${p.loomH2c}/`,
      nginx: `http://127.0.0.1:${p.nginxH2c}/`,
      extra: [],
    },
    {
      name: "h2 (TLS, ALPN)",
      loom: `https://127.0.0.1:${p.loomH2}/`,
      nginx: `https://127.0.0.1:${p.nginxH2}/`,
      extra: [],
    },
    {
      name: "gRPC unary",
      loom: `http://127.0.0.1:${p.loomGrpc}/bench.Echo/Unary`,
      nginx: `http://127.0.0.1:${p.nginxGrpc}/bench.Echo/Unary`,
      extra: grpcArgs,
    },
  ];
  const direct = await h2load(`http://127.0.0.1:${p.grpcUp}/bench.Echo/Unary`, o, grpcArgs);
  const rows: string[][] = [];
  for (const c of cases) {
    const loom: number[] = [], ngx: number[] = [];
    let failures = 0, crashes = 0;
    const loomRun = async (opts: Options) => {
      if (!(await loomAlive())) {
        crashes++;
        try {
          (loomProc as Deno.ChildProcess | null)?.kill("SIGKILL");
        } catch { /* already gone */ }
        await startLoom();
      }
      return await h2load(c.loom, opts, c.extra);
    };
    // Warm-up: JIT, pools, TLS sessions.
    await loomRun({ ...o, requests: o.clients * 20 });
    await h2load(c.nginx, { ...o, requests: o.clients * 20 }, c.extra);
    for (let r = 0; r < o.rounds; r++) {
      const a = await loomRun(o);
      const b = await h2load(c.nginx, o, c.extra);
      loom.push(a.rps);
      ngx.push(b.rps);
      failures += a.failed + b.failed;
    }
    if (!(await loomAlive())) crashes++;
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    rows.push([
      c.name,
      loom.map((x) => x.toFixed(0)).join(" / "),
      ngx.map((x) => x.toFixed(0)).join(" / "),
      (med(loom) / med(ngx)).toFixed(2),
      String(failures),
      String(crashes),
    ]);
  }
  const header = [
    "case",
    "Loom req/s (rounds)",
    "nginx req/s (rounds)",
    "Loom/nginx",
    "failed requests",
    "Loom crashes",
  ];
  const table = [header, header.map(() => "---"), ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n");
  const report = `# Protocols benchmark ${new Date().toISOString()}

h2load -n ${o.requests} -c ${o.clients} -m ${o.streams}, ${o.rounds} alternating rounds, 127.0.0.1, Loom 1 worker, nginx 1 worker.
HTTP cases proxy to nginx serving a 1 KiB file over HTTP/1.1 keep-alive; gRPC proxies to a node:http2 unary server
(direct: ${direct.rps.toFixed(0)} calls/s); nginx uses grpc_pass with upstream keepalive 32.

${table}
`;
  console.log(report);
  Deno.mkdirSync(`${REPO}/bench/results`, { recursive: true });
  Deno.writeTextFileSync(
    `${REPO}/bench/results/${new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19)}Z-protocols.md`,
    report,
  );
}

try {
  await main();
} catch (e) {
  console.error(String(e));
  try {
    console.error("loom log:\n" + Deno.readTextFileSync(`${tmp}/loom-1.log`).slice(-3000));
  } catch { /* none */ }
  throw e;
} finally {
  if (Deno.env.get("KEEP_BENCH_TMP")) console.error("kept " + tmp);
  else cleanup();
}
