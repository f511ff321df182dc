"""gRPC peer for Loom's tests: a server with generic (codegen-free) raw-bytes
handlers, and a client that runs the four call types against a target and
prints one JSON object with what it saw. Uses Debian's python3-grpcio.

  peer.py server PORT [tls CERT KEY]   serve on 127.0.0.1:PORT until stdin closes
                                       (stdin lines "serving"/"not_serving" set the health status)
  peer.py client TARGET [tls CA NAME]  run the scenarios against TARGET
  peer.py bench TARGET SECONDS CONC    unary calls/s (CONC threads on one channel)
  peer.py fresh TARGET N [tls CA NAME] N unary calls, each on a new channel (new connection)
"""
import json
import sys
import threading
import time
from concurrent import futures

import grpc

SVC = "test.Echo"


def meta_dict(md):
    return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in md}


def unary(req, ctx):
    md = dict(ctx.invocation_metadata())
    ctx.send_initial_metadata((("x-initial", "i1"),))
    ctx.set_trailing_metadata((("x-trailer", "t1"), ("x-data-bin", b"\x00\x01\xff"),
                               ("x-echo-meta", md.get("x-meta", "")),
                               ("x-saw-req-hex", md.get("x-req-bin", b"").hex())))
    return b"echo:" + req


def client_stream(it, ctx):
    parts = [r for r in it]
    ctx.set_trailing_metadata((("x-count", str(len(parts))),))
    return b"|".join(parts)


def server_stream(req, ctx):
    n = int(req.decode() or "3")
    for i in range(n):
        yield b"msg-%d" % i
    ctx.set_trailing_metadata((("x-sent", str(n)),))


def bidi(it, ctx):
    for r in it:
        yield b"re:" + r


def fail(req, ctx):
    ctx.set_trailing_metadata((("x-why", "because"),))
    ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def slow(req, ctx):
    remaining = ctx.time_remaining()
    time.sleep(float(req.decode() or "2"))
    return b"remaining:%.3f" % (remaining if remaining is not None else -1)


def deadline_seen(req, ctx):
    r = ctx.time_remaining()
    return b"%.3f" % (r if r is not None else -1)


# Overall serving state; the test flips it with "serving" / "not_serving" lines on stdin.
SERVING = [True]


def health(req, ctx):
    # HealthCheckResponse{status: SERVING} unless the service is "down" or stdin said not_serving.
    return b"\x08\x02" if b"down" in req or not SERVING[0] else b"\x08\x01"


def unavailable(req, ctx):
    ctx.abort(grpc.StatusCode.UNAVAILABLE, "overloaded")


def serve(port, tls=None):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    h = grpc.method_handlers_generic_handler(SVC, {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Deadline": grpc.unary_unary_rpc_method_handler(deadline_seen),
        "Unavailable": grpc.unary_unary_rpc_method_handler(unavailable),
    })
    hh = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(health),
    })
    server.add_generic_rpc_handlers((h, hh))
    addr = "127.0.0.1:%d" % port
    if tls:
        creds = grpc.ssl_server_credentials([(open(tls[1], "rb").read(), open(tls[0], "rb").read())])
        server.add_secure_port(addr, creds)
    else:
        server.add_insecure_port(addr)
    server.start()
    print("ready", flush=True)
    # Lines on stdin set the health status; the test closes stdin to stop us.
    for line in iter(sys.stdin.readline, ""):
        if line.strip() in ("serving", "not_serving"):
            SERVING[0] = line.strip() == "serving"
            print("health " + line.strip(), flush=True)
    server.stop(0)


def channel(target, tls=None):
    if tls:
        creds = grpc.ssl_channel_credentials(open(tls[0], "rb").read())
        return grpc.secure_channel(target, creds, options=(("grpc.ssl_target_name_override", tls[1]),))
    return grpc.insecure_channel(target)


def run_client(target, tls=None):
    out = {}
    ch = channel(target, tls)
    m = lambda name: "/%s/%s" % (SVC, name)

    def err(e):
        return {"code": e.code().name, "details": e.details(), "trailers": meta_dict(e.trailing_metadata() or ())}

    try:
        resp, call = ch.unary_unary(m("Unary")).with_call(
            b"hello", metadata=(("x-meta", "m1"), ("x-req-bin", b"\x07\x08")), timeout=5)
        out["unary"] = {"body": resp.decode(), "initial": meta_dict(call.initial_metadata()),
                        "trailers": meta_dict(call.trailing_metadata()), "code": call.code().name}
    except grpc.RpcError as e:
        out["unary"] = err(e)
    try:
        resp, call = ch.stream_unary(m("ClientStream")).with_call(iter([b"a", b"b", b"c"]), timeout=5)
        out["client_stream"] = {"body": resp.decode(), "trailers": meta_dict(call.trailing_metadata())}
    except grpc.RpcError as e:
        out["client_stream"] = err(e)
    try:
        call = ch.unary_stream(m("ServerStream"))(b"4", timeout=5)
        msgs = [x.decode() for x in call]
        out["server_stream"] = {"msgs": msgs, "trailers": meta_dict(call.trailing_metadata())}
    except grpc.RpcError as e:
        out["server_stream"] = err(e)
    try:
        call = ch.stream_stream(m("Bidi"))(iter([b"x", b"y", b"z"]), timeout=5)
        out["bidi"] = {"msgs": [x.decode() for x in call], "code": call.code().name}
    except grpc.RpcError as e:
        out["bidi"] = err(e)
    try:
        ch.unary_unary(m("Fail"))(b"", timeout=5)
        out["fail"] = {"code": "OK"}
    except grpc.RpcError as e:
        out["fail"] = err(e)
    try:
        ch.unary_unary(m("Slow"))(b"2", timeout=0.5)
        out["deadline"] = {"code": "OK"}
    except grpc.RpcError as e:
        out["deadline"] = err(e)
    try:
        out["deadline_propagated"] = float(ch.unary_unary(m("Deadline"))(b"", timeout=3).decode())
    except grpc.RpcError as e:
        out["deadline_propagated"] = err(e)
    try:
        ch.unary_unary("/test.Nope/Missing")(b"", timeout=5)
        out["unrouted"] = {"code": "OK"}
    except grpc.RpcError as e:
        out["unrouted"] = err(e)
    try:
        ch.unary_unary("/test.Down/Call")(b"", timeout=5)
        out["no_upstream"] = {"code": "OK"}
    except grpc.RpcError as e:
        out["no_upstream"] = err(e)
    print(json.dumps(out), flush=True)


def bench(target, seconds, conc):
    ch = grpc.insecure_channel(target)
    f = ch.unary_unary("/%s/Unary" % SVC)
    f(b"warm", timeout=5)
    stop = time.time() + seconds
    counts = [0] * conc
    errors = [0]

    def worker(i):
        while time.time() < stop:
            try:
                f(b"hello", timeout=5)
                counts[i] += 1
            except grpc.RpcError:
                errors[0] += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(conc)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    el = time.time() - t0
    print(json.dumps({"calls": sum(counts), "errors": errors[0], "seconds": el, "rps": sum(counts) / el}), flush=True)


def fresh(target, n, tls=None):
    ok, errors = 0, []
    for i in range(n):
        ch = channel(target, tls)
        try:
            if ch.unary_unary("/%s/Unary" % SVC)(b"n%d" % i, timeout=5) == b"echo:n%d" % i:
                ok += 1
        except grpc.RpcError as e:
            errors.append(e.code().name)
        finally:
            ch.close()
    print(json.dumps({"ok": ok, "errors": errors}), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        serve(int(sys.argv[2]), sys.argv[4:6] if len(sys.argv) > 3 and sys.argv[3] == "tls" else None)
    elif mode == "client":
        run_client(sys.argv[2], sys.argv[4:6] if len(sys.argv) > 3 and sys.argv[3] == "tls" else None)
    elif mode == "fresh":
        fresh(sys.argv[2], int(sys.argv[3]), sys.argv[5:7] if len(sys.argv) > 4 and sys.argv[4] == "tls" else None)
    else:
        bench(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
