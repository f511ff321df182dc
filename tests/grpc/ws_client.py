"""WebSocket client for Loom's tests (Debian python3-websockets): ping/pong,
text, binary and a close code through the gateway; prints one JSON line.

  ws_client.py [--ca CA_FILE] URL [SUBPROTOCOL...]

With --ca, wss:// URLs are verified against CA_FILE (ALPN http/1.1, as browsers
open WebSockets).
"""
import asyncio
import json
import ssl
import sys

import websockets


async def main(url, protocols, ca=None):
    out = {}
    extra = {}
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["http/1.1"])
        extra["ssl"] = ctx
    try:
        async with websockets.connect(url, subprotocols=protocols or None, open_timeout=5, **extra) as ws:
            out["subprotocol"] = ws.subprotocol
            pong = await ws.ping(b"p1")
            await asyncio.wait_for(pong, 5)
            out["pong"] = True
            await ws.send("hello")
            out["text"] = await asyncio.wait_for(ws.recv(), 5)
            await ws.send(b"\x00\x01\xfe\xff")
            out["binary"] = (await asyncio.wait_for(ws.recv(), 5)).hex()
            await ws.send("close-me")
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as e:
                out["close_code"] = e.rcvd.code if e.rcvd else None
                out["close_reason"] = e.rcvd.reason if e.rcvd else None
    except websockets.InvalidStatusCode as e:
        out["status"] = e.status_code
    except Exception as e:  # noqa: BLE001 - report anything as data
        out["error"] = repr(e)
    print(json.dumps(out), flush=True)


if sys.argv[1] == "--ca":
    asyncio.run(main(sys.argv[3], sys.argv[4:], sys.argv[2]))
else:
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
