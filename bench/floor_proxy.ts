/**
 * The floor of an HTTP/1.1 reverse proxy on Deno's socket API: per request one
 * read and one write each way on Deno.TcpConn, pooled upstream connections,
 * and nothing else (no parsing beyond finding the response's end, no routing,
 * no headers added). Not a proxy anyone should run: it assumes a request fits
 * one read and every response has a Content-Length. bench/ab_wrk.ts runs it
 * (variant `floor`) to show what the runtime's I/O costs per request before
 * any gateway logic, next to nginx and Loom.
 *
 *   deno run -A bench/floor_proxy.ts <port> <upstream port>
 */
import { asksClose, responseLength } from "./floor_http.ts";

const [port, upstreamPort] = Deno.args.map(Number);
const idle: Deno.TcpConn[] = [];
/** FLOOR_SPIN_US: CPU burnt per request, to see how a slower proxy's tail grows (bench/README.md, the tail). */
const spinUs = Number(Deno.env.get("FLOOR_SPIN_US") ?? 0);
function spin(): void {
  const end = performance.now() + spinUs / 1000;
  while (performance.now() < end) { /* burn */ }
}

async function serve(client: Deno.TcpConn): Promise<void> {
  client.setNoDelay(true);
  const req = new Uint8Array(16 * 1024), res = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await client.read(req);
    if (n === null) return client.close();
    if (spinUs > 0) spin();
    let up = idle.pop();
    if (up === undefined) {
      up = await Deno.connect({ hostname: "127.0.0.1", port: upstreamPort });
      up.setNoDelay(true);
    }
    await up.write(req.subarray(0, n));
    let got = 0, need = -1;
    while (need === -1 || got < need) {
      const m = await up.read(res.subarray(got));
      if (m === null) throw new Error("upstream closed");
      got += m;
      if (need === -1) need = responseLength(res, got);
    }
    idle.push(up);
    await client.write(res.subarray(0, got));
    if (asksClose(req, n)) return client.close(); // the harness's start-up probe
  }
}

for await (const c of Deno.listen({ hostname: "127.0.0.1", port })) {
  serve(c as Deno.TcpConn).catch(() => {
    try {
      c.close();
    } catch { /* closed */ }
  });
}
