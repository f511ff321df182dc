import assert from "node:assert/strict";
import {
  type AccessLogEntry,
  BatchedAccessLog,
  createAccessLog,
  FLUSH_THRESHOLD_CHARS,
  formatAccessLogLine,
  type LogSink,
} from "./access_log.ts";
import { DEFAULT_ACCESS_LOG_FIELDS } from "../config/observability.ts";

/** The default line's keys (grpc_status and rejection are left out when undefined). */
const FIELDS = DEFAULT_ACCESS_LOG_FIELDS.filter((f) => f !== "grpc_status" && f !== "rejection");

function entry(over: Partial<AccessLogEntry> = {}): AccessLogEntry {
  return {
    time: Date.UTC(2024, 0, 2, 3, 4, 5, 678),
    request_id: "abc-1",
    route: "users",
    method: "GET",
    path: "/users/1",
    query: "x=y",
    status: 200,
    bytes_in: 0,
    bytes_out: 1234,
    duration_ms: 1.23456,
    upstream: "api/10.0.0.1:80",
    client_ip: "192.0.2.1",
    protocol: "HTTP/1.1",
    user_agent: "curl/8.0",
    ...over,
  };
}

const ODD = 'q"uote \\ back\nnew\r\ttab \u0000\u001f ünï 日本 😀 \u2028\u2029 lone\ud800 </script>';

Deno.test("formatAccessLogLine: valid JSON with every field, odd characters round-trip", () => {
  const line = formatAccessLogLine(entry({ path: ODD, user_agent: ODD, request_id: ODD }));
  assert.ok(line.endsWith("\n"));
  assert.equal(line.indexOf("\n"), line.length - 1, "exactly one newline, at the end");
  const obj = JSON.parse(line);
  assert.deepEqual(Object.keys(obj), FIELDS);
  assert.equal(obj.time, "2024-01-02T03:04:05.678Z");
  assert.equal(obj.user_agent, ODD);
  assert.equal(obj.path, ODD);
  assert.equal(obj.status, 200);
  assert.equal(obj.duration_ms, 1.235);
});

Deno.test("formatAccessLogLine matches JSON.stringify of the same data", () => {
  const e = entry({ path: ODD });
  const viaStringify = JSON.parse(
    JSON.stringify({ ...e, time: new Date(e.time!).toISOString(), duration_ms: 1.235 }),
  );
  assert.deepEqual(JSON.parse(formatAccessLogLine(e)), viaStringify);
  // Non-finite numbers would be invalid JSON: they become null.
  assert.equal(JSON.parse(formatAccessLogLine(entry({ duration_ms: NaN }))).duration_ms, null);
});

Deno.test("createAccessLog: disabled -> null", () => {
  assert.equal(createAccessLog({ enabled: false, path: "stdout" }), null);
});

Deno.test("createAccessLog: file output, appended and batched", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/access.log`;
  try {
    await Deno.writeTextFile(path, "existing\n");
    const log = createAccessLog({ enabled: true, path })!;
    log.log(entry({ request_id: "r1", path: ODD }));
    log.log(entry({ request_id: "r2" }));
    // Nothing is written synchronously per request.
    assert.equal(await Deno.readTextFile(path), "existing\n");
    await log.close();
    const lines = (await Deno.readTextFile(path)).split("\n");
    assert.equal(lines[0], "existing");
    assert.equal(lines.at(-1), "");
    const records = lines.slice(1, -1).map((l) => JSON.parse(l));
    assert.deepEqual(records.map((r) => r.request_id), ["r1", "r2"]);
    assert.equal(records[0].path, ODD);
    for (const r of records) assert.deepEqual(Object.keys(r), FIELDS);
    log.log(entry()); // after close: ignored, no throw
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("timer flushes a partial batch", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/a.log`;
  try {
    const log = createAccessLog({ enabled: true, path })!;
    log.log(entry());
    await new Promise((r) => setTimeout(r, 250));
    assert.equal((await Deno.readTextFile(path)).split("\n").length, 2);
    await log.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a full buffer flushes without waiting for the timer, in one write per batch", async () => {
  const writes: Uint8Array[] = [];
  const sink: LogSink = {
    write(p) {
      writes.push(p.slice());
      return Promise.resolve(p.length);
    },
  };
  const log = new BatchedAccessLog(sink, false);
  const n = Math.ceil(FLUSH_THRESHOLD_CHARS / formatAccessLogLine(entry()).length);
  for (let i = 0; i < n; i++) log.log(entry());
  await Promise.resolve();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(writes.length, 1);
  await log.close();
  const text = new TextDecoder().decode(writes[0]);
  assert.equal(text.split("\n").length, n + 1);
});

Deno.test("partial writes are completed", async () => {
  let out = "";
  const dec = new TextDecoder();
  const sink: LogSink = {
    write(p) {
      const n = Math.min(7, p.length);
      out += dec.decode(p.subarray(0, n), { stream: true });
      return Promise.resolve(n);
    },
  };
  const log = new BatchedAccessLog(sink, false);
  log.log(entry({ user_agent: "日本語" }));
  await log.close();
  assert.equal(out, formatAccessLogLine(entry({ user_agent: "日本語" })));
});

Deno.test("access log: configured fields in their order (query apart from the path, extras)", async () => {
  const chunks: string[] = [];
  const sink: LogSink = {
    write: (p) => (chunks.push(new TextDecoder().decode(p)), Promise.resolve(p.length)),
  };
  const log = new BatchedAccessLog(sink, false, { fields: ["status", "path", "query", "host", "trace_id"] });
  assert.equal(log.extras, true);
  log.log(entry({ host: "api.example:8080", trace_id: "4bf92f3577b34da6a3ce929d0e0e4736" }));
  await log.close();
  assert.deepEqual(JSON.parse(chunks.join("")), {
    status: 200,
    path: "/users/1",
    query: "x=y",
    host: "api.example:8080",
    trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
  });
  assert.equal(new BatchedAccessLog(sink, false, { fields: ["status", "path"] }).extras, false);
});

Deno.test("access log: sample keeps a fraction of 1xx-3xx lines, every error", async () => {
  let lines = 0;
  const sink: LogSink = {
    write: (p) => {
      lines += new TextDecoder().decode(p).split("\n").length - 1;
      return Promise.resolve(p.length);
    },
  };
  const log = new BatchedAccessLog(sink, false, { sample: 0.1 });
  for (let i = 0; i < 5000; i++) log.log(entry({ status: 200 }));
  for (const status of [404, 500, 502, 0]) for (let i = 0; i < 100; i++) log.log(entry({ status }));
  await log.close();
  const ok = lines - 400;
  assert.ok(ok > 350 && ok < 650, `~10 % of 5000 successes logged: ${ok}`);
  const none = new BatchedAccessLog(sink, false, { sample: 0 });
  lines = 0;
  for (let i = 0; i < 100; i++) none.log(entry({ status: 302 }));
  none.log(entry({ status: 503 }));
  await none.close();
  assert.equal(lines, 1, "sample 0: errors only");
});
