import { type AccessLogEntry, BatchedAccessLog, formatAccessLogLine } from "./access_log.ts";

const agents = [
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
  "curl/8.4.0",
  "Go-http-client/1.1",
];
const entries: AccessLogEntry[] = Array.from({ length: 1000 }, (_, i) => ({
  time: Date.now(),
  request_id: "9f86d081884c7d65-" + i.toString(16),
  route: "users",
  method: "GET",
  path: `/api/v1/users/${i}`,
  query: "include=orders&limit=10",
  status: 200,
  bytes_in: 0,
  bytes_out: 5321 + i,
  duration_ms: 3.4567 + i / 7,
  upstream: "users/10.0.0.12:8080",
  client_ip: "203.0.113.7",
  protocol: "HTTP/1.1",
  user_agent: agents[i % 3],
}));

// The rejected alternative: hand-built JSON by concatenation, with a regex
// fast path that skips escaping for plain strings.
// deno-lint-ignore no-control-regex
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\ud800-\udfff]/;
const str = (s: string) => NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
const num = (n: number) => Number.isFinite(n) ? String(n) : "null";
const iso = new Date().toISOString();
function concatLine(e: AccessLogEntry): string {
  return '{"time":"' + iso + '","request_id":' + str(e.request_id) + ',"route":' + str(e.route) +
    ',"method":' + str(e.method) + ',"path":' + str(e.path) + ',"status":' + num(e.status) +
    ',"bytes_in":' + num(e.bytes_in) + ',"bytes_out":' + num(e.bytes_out) +
    ',"duration_ms":' + num(Math.round(e.duration_ms * 1000) / 1000) + ',"upstream":' + str(e.upstream) +
    ',"client_ip":' + str(e.client_ip) + ',"protocol":' + str(e.protocol) +
    ',"user_agent":' + str(e.user_agent) + "}\n";
}

let sink = 0;
const encoder = new TextEncoder();

Deno.bench("format x1000: JSON.stringify (used)", { group: "format", baseline: true }, () => {
  for (const e of entries) sink += formatAccessLogLine(e).length;
});
Deno.bench("format x1000: concatenation", { group: "format" }, () => {
  for (const e of entries) sink += concatLine(e).length;
});

// What a flush really costs: format, join, encode.
Deno.bench("format+join+encode x1000: JSON.stringify (used)", { group: "batch", baseline: true }, () => {
  const lines: string[] = [];
  for (const e of entries) lines.push(formatAccessLogLine(e));
  sink += encoder.encode(lines.join("")).length;
});
Deno.bench("format+join+encode x1000: concatenation", { group: "batch" }, () => {
  const lines: string[] = [];
  for (const e of entries) lines.push(concatLine(e));
  sink += encoder.encode(lines.join("")).length;
});

// A discarding sink: measures log() and the flush path, not the disk.
const accessLog = new BatchedAccessLog({ write: (p) => Promise.resolve(p.length) }, false);
Deno.bench("AccessLog.log x1000 + flush", async () => {
  for (const e of entries) accessLog.log(e);
  await accessLog.flush();
});

addEventListener("unload", () => {
  if (sink < 0) console.log(sink);
});
