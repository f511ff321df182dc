import assert from "node:assert/strict";
import { validateRequest } from "./connection.ts";
import { H3Error, H3ProtocolError } from "./frame.ts";

const base = [":method", "GET", ":scheme", "https", ":authority", "a.test", ":path", "/x"];
const malformed = (e: unknown) => e instanceof H3ProtocolError && e.code === H3Error.MESSAGE_ERROR;

Deno.test("validateRequest: well-formed requests pass (RFC 9114 §4.3.1)", () => {
  validateRequest(base);
  validateRequest([...base, "te", "trailers", "cookie", "a=1", "cookie", "b=2"]);
  // host alone is enough authority, and may equal :authority.
  validateRequest([":method", "GET", ":scheme", "https", ":path", "/", "host", "a.test"]);
  validateRequest([...base, "host", "a.test"]);
  validateRequest([":method", "CONNECT", ":authority", "a.test:443"]);
});

Deno.test("validateRequest: malformed requests are H3_MESSAGE_ERROR", () => {
  const bad: string[][] = [
    [":method", "GET", ":scheme", "https", ":authority", "a.test"], // no :path
    [":method", "GET", ":scheme", "https", ":authority", "a.test", ":path", ""], // empty :path
    [":scheme", "https", ":authority", "a.test", ":path", "/"], // no :method
    [":method", "GET", ":authority", "a.test", ":path", "/"], // no :scheme
    [":method", "GET", ":scheme", "https", ":path", "/"], // no authority at all
    [...base, ":method", "POST"], // duplicate pseudo-header
    [...base, ":status", "200"], // response pseudo-header
    [...base, ":protocol", "websocket"], // extended CONNECT not enabled
    ["x-a", "1", ...base], // pseudo-header after a regular field
    [...base, "X-Upper", "1"], // upper-case name
    [...base, "connection", "keep-alive"],
    [...base, "transfer-encoding", "chunked"],
    [...base, "te", "gzip"],
    [...base, "x-a", "line\r\nbreak"],
    [...base, "host", "b.test"], // :authority and host differ
    [":method", "CONNECT", ":authority", "a.test:443", ":path", "/"], // CONNECT with :path
  ];
  for (const f of bad) assert.throws(() => validateRequest(f), malformed, JSON.stringify(f));
});
