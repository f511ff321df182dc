/**
 * Tests of the benchmark's pure parsing helpers on recorded output (wrk 4.1.0,
 * dash, Linux 6.18); no wrk, nginx or /proc access needed.
 */
import assert from "node:assert/strict";
import {
  busyCores,
  formatInt,
  formatLatency,
  markdownTable,
  median,
  parsePidStat,
  parseProcStat,
  parseShellTimes,
  parseVmRssKiB,
  parseWrkCount,
  parseWrkDuration,
  parseWrkOutput,
  WRK_JSON_MARKER,
  WRK_LUA,
} from "./parse.ts";

function near(actual: number, expected: number, eps: number): void {
  assert.ok(Math.abs(actual - expected) <= eps, `${actual} is not within ${eps} of ${expected}`);
}

/** `wrk -t1 -c8 -d2s --latency -s report.lua` against a server answering every 50th request with 503. */
const WRK_WITH_LUA = `Running 2s test @ http://127.0.0.1:47611/file
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   223.65us  497.94us  10.81ms   97.69%
    Req/Sec    41.05k    10.00k   52.61k    80.00%
  Latency Distribution
     50%  148.00us
     75%  219.00us
     90%  288.00us
     99%    1.88ms
  81582 requests in 2.00s, 84.23MB read
  Non-2xx or 3xx responses: 1631
Requests/sec:  40718.28
Transfer/sec:     42.04MB
BENCH_JSON {"requests":81582,"duration_us":2003572,"bytes":88322925,"connect":0,"read":0,"write":0,"status":1631,"timeout":0,"p50_us":148.0,"p90_us":288.0,"p99_us":1879.0,"max_us":10814.0,"mean_us":223.65}
`;

/** `sh -c 'wrk -t1 -c4 -d1s --latency URL; times'` against a server that drops every 3rd request. */
const WRK_SOCKET_ERRORS_WITH_TIMES = `Running 1s test @ http://127.0.0.1:47612/file
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   166.77us  338.90us   5.12ms   96.46%
    Req/Sec    17.19k     2.40k   20.79k    72.73%
  Latency Distribution
     50%  102.00us
     75%  134.00us
     90%  231.00us
     99%    2.02ms
  18720 requests in 1.10s, 731.25KB read
  Socket errors: connect 0, read 9360, write 0, timeout 0
Requests/sec:  17016.02
Transfer/sec:    664.69KB
0m0.000000s 0m0.000000s
0m0.130000s 0m0.600000s
`;

Deno.test("wrk durations and counts", () => {
  assert.equal(parseWrkDuration("512.34us"), 512.34);
  assert.equal(parseWrkDuration("2.48ms"), 2480);
  assert.equal(parseWrkDuration("8.00s"), 8e6);
  assert.equal(parseWrkDuration("1.20m"), 72e6);
  assert.throws(() => parseWrkDuration("fast"));
  assert.equal(parseWrkCount("25184"), 25184);
  assert.equal(parseWrkCount("25.18k"), 25180);
  assert.equal(parseWrkCount("1.5M"), 1.5e6);
});

Deno.test("wrk output: the Lua JSON line wins over the text report", () => {
  const r = parseWrkOutput(WRK_WITH_LUA);
  assert.equal(r.source, "lua");
  assert.equal(r.requests, 81582);
  near(r.durationS, 2.003572, 1e-9);
  near(r.rps, 81582 / 2.003572, 1e-6);
  assert.equal(r.p50Us, 148);
  assert.equal(r.p90Us, 288);
  assert.equal(r.p99Us, 1879);
  assert.deepEqual(r.errors, { connect: 0, read: 0, write: 0, timeout: 0, status: 1631 });
  assert.equal(r.totalErrors, 1631);
});

Deno.test("wrk output: text report without the Lua line", () => {
  const text = WRK_WITH_LUA.split("\n").filter((l) => !l.startsWith(WRK_JSON_MARKER)).join("\n");
  const r = parseWrkOutput(text);
  assert.equal(r.source, "text");
  assert.equal(r.requests, 81582);
  assert.equal(r.durationS, 2);
  assert.equal(r.rps, 40718.28);
  assert.equal(r.p50Us, 148);
  assert.equal(r.p90Us, 288);
  assert.equal(r.p99Us, 1880); // "1.88ms": the text report rounds
  assert.equal(r.errors.status, 1631);
  assert.equal(r.totalErrors, 1631);
});

Deno.test("wrk output: socket errors, then the shell's times", () => {
  const r = parseWrkOutput(WRK_SOCKET_ERRORS_WITH_TIMES);
  assert.equal(r.source, "text");
  assert.equal(r.requests, 18720);
  near(r.durationS, 1.1, 1e-9);
  assert.equal(r.p50Us, 102);
  assert.equal(r.p99Us, 2020);
  assert.deepEqual(r.errors, { connect: 0, read: 9360, write: 0, timeout: 0, status: 0 });
  assert.equal(r.totalErrors, 9360);
  const t = parseShellTimes(WRK_SOCKET_ERRORS_WITH_TIMES)!;
  near(t.userS, 0.13, 1e-9);
  near(t.sysS, 0.6, 1e-9);
});

Deno.test("wrk output: nothing parseable throws", () => {
  assert.throws(() => parseWrkOutput("unable to connect to 127.0.0.1:1 Connection refused\n"));
});

Deno.test("shell times: minutes, and absent", () => {
  assert.deepEqual(parseShellTimes("0m0.01s 0m0.02s\n1m2.5s 0m3.25s\n"), { userS: 62.5, sysS: 3.25 });
  assert.deepEqual(parseShellTimes("no times here"), null);
});

Deno.test("the Lua script prints the marker and every field the parser reads", () => {
  assert.ok(WRK_LUA.startsWith("done = function(summary, latency, requests)"));
  assert.ok(WRK_LUA.includes(WRK_JSON_MARKER));
  for (
    const k of [
      "requests",
      "duration_us",
      "connect",
      "read",
      "write",
      "status",
      "timeout",
      "p50_us",
      "p99_us",
    ]
  ) {
    assert.ok(WRK_LUA.includes(`\\"${k}\\":`), k);
  }
});

Deno.test("/proc/<pid>/stat: comm with spaces and parentheses", () => {
  const s = parsePidStat(
    "4242 (nginx: a (b) c) S 4200 4242 4200 0 -1 4194624 1044 0 0 0 1234 567 0 0 20 0 3 0 7788 18293132 33603 " +
      "18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0",
  );
  assert.deepEqual(s, {
    pid: 4242,
    comm: "nginx: a (b) c",
    ppid: 4200,
    minflt: 1044,
    utime: 1234,
    stime: 567,
  });
});

Deno.test("/proc/stat: busy, total, CPU count, busy cores", () => {
  const a = parseProcStat(
    "cpu  100 5 50 1000 10 1 2 3 0 0\ncpu0 50 2 25 500 5 1 1 2 0 0\ncpu1 50 3 25 500 5 0 1 1 0 0\nintr 1 2\n",
  );
  assert.deepEqual(a, { busy: 161, total: 1171, cpus: 2 });
  const b = { busy: 161 + 30, total: 1171 + 200, cpus: 2 };
  near(busyCores(a, b), 0.3, 1e-12);
});

Deno.test("VmRSS", () => {
  assert.equal(parseVmRssKiB("Name:\tdeno\nVmPeak:\t 2 kB\nVmRSS:\t  137632 kB\n"), 137632);
  assert.equal(parseVmRssKiB("Name:\tzombie\n"), 0);
});

Deno.test("median and formatting", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([NaN, 5]), 5);
  assert.ok(Number.isNaN(median([])));
  assert.equal(formatLatency(83.4), "83 µs");
  assert.equal(formatLatency(2480), "2.48 ms");
  assert.equal(formatLatency(1.2e6), "1.20 s");
  assert.equal(formatLatency(NaN), "—");
  assert.equal(formatInt(25184.4), "25,184");
  assert.equal(formatInt(1234567), "1,234,567");
  assert.equal(markdownTable(["a", "b"], [["1", "2"]]), "| a | b |\n| --- | --- |\n| 1 | 2 |");
});
