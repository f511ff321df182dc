// A minimal gRPC unary upstream for bench/protocols.ts on node:http2 (runs
// under Node or Deno): answers every call with one framed message and
// grpc-status 0 in real trailers. Port from argv; 127.0.0.1 only.
import http2 from "node:http2";

const port = Number((globalThis.Deno ? Deno.args : process.argv.slice(2))[0]);
const reply = new Uint8Array([0, 0, 0, 0, 7, 10, 5, 104, 101, 108, 108, 111]);
const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
server.on("stream", (s) => {
  s.on("data", () => {});
  s.on("end", () => {
    s.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    // Deferred: a synchronous sendTrailers inside 'wantTrailers' crashes Deno 2.9.6 under load.
    s.on("wantTrailers", () => setImmediate(() => s.sendTrailers({ "grpc-status": "0" })));
    s.end(reply);
  });
});
server.listen(port, "127.0.0.1");
