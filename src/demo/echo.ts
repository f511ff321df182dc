/**
 * The demo upstream Loom starts itself (config `demo.echo`), so the default
 * config answers on a machine with no other service: it echoes the request it
 * received as JSON.
 */

/** Starts the echo service; returns the server. */
export function startEcho(hostname: string, port: number): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname, port, onListen: () => {} }, async (req, info) => {
    const url = new URL(req.url);
    const body = req.body ? new Uint8Array(await req.arrayBuffer()) : new Uint8Array();
    const echo = {
      service: "loom-demo-echo",
      method: req.method,
      path: url.pathname,
      query: url.search.slice(1),
      headers: Object.fromEntries(req.headers),
      body_bytes: body.length,
      body: body.length <= 4096 ? new TextDecoder().decode(body) : undefined,
      client: `${info.remoteAddr.hostname}:${info.remoteAddr.port}`,
    };
    return Response.json(echo);
  });
}
