/**
 * Run by tests/h3_reload_gc_test.ts in its own process with `--v8-flags=--expose-gc`: Loom in-process
 * with an http3 listener is reloaded twice so the listener is rebuilt (renewed certificate files: a new
 * QUIC listener on the endpoint; a changed setting: a new H3Listener taking the socket over), garbage is
 * collected, and a new client must still complete a handshake and a request. Then the listener's kept
 * references to its stopped QUIC listeners are dropped on purpose (what Loom did before) and garbage is
 * collected again: the accept check must find the listener deaf, log and count it, and reopen it.
 * Prints one JSON object on stdout.
 */
import { freePort, startLoom, writeConfig } from "./helpers.ts";
import { postReload } from "./gateway_util.ts";
import { startUpstream } from "./upstream.ts";
import { TestCa } from "./tls_util.ts";
import { GET, h3Client } from "./h3_client.ts";
import type { H3Listener } from "../src/listeners/h3.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --v8-flags=--expose-gc");

async function collect(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A GET through a new connection: the `:status`, or the error (a deaf listener times out). */
async function freshRequest(port: number, caPem: string): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      (async () => {
        const c = await h3Client(port, caPem);
        const r = await c.request(GET("/x"));
        c.conn.close();
        return r.fields[1];
      })(),
      new Promise<string>((_, reject) => timer = setTimeout(() => reject(new Error("timeout")), 4000)),
    ]);
  } catch (e) {
    return String(e);
  } finally {
    clearTimeout(timer);
  }
}

const dir = Deno.makeTempDirSync();
const ca = await TestCa.create(dir);
const caPem = Deno.readTextFileSync(ca.cert);
const first = await ca.leaf("first", "localhost", ["DNS:localhost"]);
const second = await ca.leaf("second", "localhost", ["DNS:localhost"]);
const live = { cert: `${dir}/live.pem`, key: `${dir}/live.key` };
const install = (pair: { cert: string; key: string }) => {
  Deno.copyFileSync(pair.cert, live.cert);
  Deno.copyFileSync(pair.key, live.key);
};
install(first);
const up = startUpstream(() => new Response("ok"));
const h3Port = freePort();
const tls = `tls: { cert_file: "${live.cert}", key_file: "${live.key}" }`;
const config = (idle: string) => `
listeners:
  - { name: h3, address: "127.0.0.1:${h3Port}", protocol: http3, ${tls}, idle_timeout: ${idle} }
upstreams:
  - { name: up, endpoints: ["${up.address}"] }
routes:
  - { id: all, path: "/*", upstream: up }
`;
const loom = await startLoom(config("60s"));
const out: Record<string, unknown> = {};
try {
  out.before = await freshRequest(h3Port, caPem);
  // 1. Renewed certificate files: a new QUIC listener on the same endpoint.
  install(second);
  out.certReload = (await postReload(loom)).status;
  // 2. A changed listener setting: a new H3Listener takes the UDP socket over.
  writeConfig(loom, config("30s"));
  out.listenerReload = (await postReload(loom)).status;
  await collect();
  out.afterGc = await freshRequest(h3Port, caPem);
  await collect();
  out.afterMoreGc = await freshRequest(h3Port, caPem);

  // What happens without the kept references: the listener goes deaf, and the accept check says so.
  const inst =
    (loom.sup as unknown as { handles: { instance: { listeners: unknown[] } }[] }).handles[0].instance;
  const h3 = inst.listeners.find((l) => (l as H3Listener).cfg.protocol === "http3") as H3Listener;
  (h3 as unknown as { socket: { stopped: unknown[] } }).socket.stopped.length = 0;
  await collect();
  out.withoutRefs = await freshRequest(h3Port, caPem);
  out.check = await h3.checkAccepting();
  out.afterCheck = await freshRequest(h3Port, caPem);
  const metrics = await (await fetch(loom.admin("/metrics"))).text();
  out.acceptFailures = Number(
    /loom_listener_accept_failures_total\{listener="h3"\} (\d+)/.exec(metrics)?.[1] ?? 0,
  );
  out.checkAgain = await h3.checkAccepting();
} finally {
  console.log(JSON.stringify(out));
  await loom.close();
  await up.close();
  Deno.removeSync(dir, { recursive: true });
  Deno.exit(0);
}
