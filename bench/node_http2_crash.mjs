// Minimal reproduction of a Deno 2.9.6 crash in the node:http2 server (no Loom code):
//   deno run -A bench/node_http2_crash.mjs 9555 &
//   h2load -n 500 -c 10 -m 10 http://127.0.0.1:9555/    # repeat 2-3 times
// ends the server with "free(): invalid pointer" or
// "nghttp2_session.c:2402: find_stream_on_goaway_func: Assertion `stream->closed_next == NULL' failed".
// Also with createSecureServer (TLS) and with -c 1 -m 1 -n 200. Loom's node:http2 listeners
// cap streams per connection at 100 to make it rarer (src/listeners/node_h2.ts).
import http2 from "node:http2";

const server = http2.createServer();
server.on("stream", (s) => {
  s.respond({ ":status": 200 });
  s.end("ok");
});
server.listen(Number((globalThis.Deno ? Deno.args : process.argv.slice(2))[0] ?? 9555), "127.0.0.1");
