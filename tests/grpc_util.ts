/**
 * Helpers for gRPC tests: the Python gRPC peer (tests/grpc/peer.py, Debian's
 * python3-grpcio) as a server process, and as a client run to completion.
 */
import assert from "node:assert/strict";

const PEER = new URL("./grpc/peer.py", import.meta.url).pathname;
/** Debian's python, which has python3-grpcio (pyenv's python on PATH does not). */
export const PYTHON = "/usr/bin/python3";

/** A running Python gRPC server. */
export interface GrpcServer {
  port: number;
  /** Sets the overall grpc.health.v1 status (SERVING or NOT_SERVING); resolves once the server applied it. */
  setServing(serving: boolean): Promise<void>;
  close(): Promise<void>;
}

/** Starts the Python echo server on `port` (optionally TLS) and waits until it serves. */
export async function startGrpcServer(
  port: number,
  tls?: { cert: string; key: string },
): Promise<GrpcServer> {
  const args = [PEER, "server", String(port)];
  if (tls) args.push("tls", tls.cert, tls.key);
  const child = new Deno.Command(PYTHON, { args, stdin: "piped", stdout: "piped", stderr: "inherit" })
    .spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.match(new TextDecoder().decode(value), /ready/);
  const stdin = child.stdin.getWriter();
  return {
    port,
    setServing: async (serving) => {
      const word = serving ? "serving" : "not_serving";
      await stdin.write(new TextEncoder().encode(word + "\n"));
      // The server acknowledges each change on stdout.
      let seen = "";
      while (!seen.includes("health " + word)) {
        const { value, done } = await reader.read();
        if (done) throw new Error("grpc server exited");
        seen += new TextDecoder().decode(value);
      }
    },
    close: async () => {
      // Closing stdin stops the server; kill is the fallback.
      await stdin.close().catch(() => {});
      const t = setTimeout(() => child.kill("SIGKILL"), 3000);
      await child.status;
      clearTimeout(t);
      await reader.cancel().catch(() => {});
    },
  };
}

/** Runs a peer.py mode to completion (bounded) and parses its JSON line. */
export async function runPeer(args: string[], timeoutMs = 30_000): Promise<Record<string, unknown>> {
  const child = new Deno.Command(PYTHON, { args: [PEER, ...args], stdout: "piped", stderr: "piped" }).spawn();
  const t = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const out = await child.output();
  clearTimeout(t);
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.ok(
    out.success && text !== "",
    `peer ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`,
  );
  return JSON.parse(text.split("\n").pop()!);
}

// deno-lint-ignore no-explicit-any
type Any = any;

/** What the Python client must see through the gateway. */
export function assertScenarios(r: Any): void {
  // Unary: body, initial metadata, custom and binary trailers, request metadata incl. -bin.
  assert.equal(r.unary.body, "echo:hello", JSON.stringify(r.unary));
  assert.equal(r.unary.code, "OK");
  assert.equal(r.unary.initial["x-initial"], "i1");
  assert.equal(r.unary.trailers["x-trailer"], "t1");
  assert.equal(r.unary.trailers["x-data-bin"], "0001ff");
  assert.equal(r.unary.trailers["x-echo-meta"], "m1");
  assert.equal(r.unary.trailers["x-saw-req-hex"], "0708");
  // Client streaming.
  assert.equal(r.client_stream.body, "a|b|c", JSON.stringify(r.client_stream));
  assert.equal(r.client_stream.trailers["x-count"], "3");
  // Server streaming.
  assert.deepEqual(
    r.server_stream.msgs,
    ["msg-0", "msg-1", "msg-2", "msg-3"],
    JSON.stringify(r.server_stream),
  );
  assert.equal(r.server_stream.trailers["x-sent"], "4");
  // Bidirectional.
  assert.deepEqual(r.bidi.msgs, ["re:x", "re:y", "re:z"], JSON.stringify(r.bidi));
  assert.equal(r.bidi.code, "OK");
  // Upstream error status: a trailers-only answer, relayed as one.
  assert.equal(r.fail.code, "NOT_FOUND");
  assert.equal(r.fail.details, "no such thing");
  assert.equal(r.fail.trailers["x-why"], "because");
  // The client's deadline (0.5 s) ends a 2 s call.
  assert.equal(r.deadline.code, "DEADLINE_EXCEEDED");
  // grpc-timeout propagated: the upstream sees about the client's 3 s, not the route's 30 s.
  assert.ok(
    typeof r.deadline_propagated === "number" && r.deadline_propagated > 1 && r.deadline_propagated <= 3.1,
    JSON.stringify(r.deadline_propagated),
  );
  // Gateway-made errors are gRPC statuses, not HTTP errors.
  assert.equal(r.unrouted.code, "UNIMPLEMENTED", JSON.stringify(r.unrouted));
  assert.equal(r.no_upstream.code, "UNAVAILABLE", JSON.stringify(r.no_upstream));
}
