/**
 * The pure parts of bench/profile.ts and bench/cpuprofile.ts on recorded
 * samples: strace -c summaries, perf report lines, and the stage summary of a
 * small V8 profile.
 */
import assert from "node:assert/strict";
import { parseStraceSummary, perfSummary } from "./profile.ts";
import { type CpuProfile, stageOf, summarise } from "./cpuprofile.ts";

Deno.test("parseStraceSummary: calls per syscall, with and without an errors column", () => {
  const text = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 64.00    1.183025       32861        36         4 futex
 20.24    0.374184          11     31532           sendto
 11.33    0.209367           6     32181           epoll_wait
  4.35    0.080431           2     31534         1 recvfrom
------ ----------- ----------- --------- --------- ----------------
100.00    1.847107          19     95283         5 total
`;
  assert.deepEqual(
    [...parseStraceSummary(text)],
    [["futex", 36], ["sendto", 31532], ["epoll_wait", 32181], ["recvfrom", 31534]],
  );
});

Deno.test("perfSummary: samples grouped by where they ran", () => {
  const report = `    41.79%  [kernel.kallsyms]  [k] _raw_spin_unlock_irqrestore
    30.00%  deno               [.] 0x0000000001d99409
     1.80%  [JIT] tid 19716    [.] JS:*'exchange file:///work/main/src/proxy/exchange.ts:32:35
     4.28%  libc.so.6          [.] _int_malloc
`;
  const md = perfSummary(report);
  assert.match(md, /\| kernel \| 41\.8 % \|/);
  assert.match(md, /\| deno native .* \| 30\.0 % \|/);
  assert.match(md, /\| JavaScript \(JIT and interpreted\) \| 1\.8 % \|/);
  assert.match(md, /\| libc \| 4\.3 % \|/);
});

Deno.test("stageOf: Loom frames by file and function, runtime frames none", () => {
  assert.equal(stageOf("file:///w/src/observability/access_log.ts", "log"), "access log");
  assert.equal(stageOf("file:///w/src/listeners/http1.ts", "write"), "write (client response)");
  assert.equal(stageOf("file:///w/src/listeners/http1.ts", "serve"), "parse (request head, reads)");
  assert.equal(stageOf("file:///w/src/router/router.ts", "match"), "route (normalise, match, rewrite)");
  assert.equal(stageOf("ext:deno_net/01_net.js", "read"), null);
});

Deno.test("summarise: samples charged to the innermost Loom frame, in the window only", () => {
  const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0 });
  const p: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame("(root)", ""), children: [2, 4, 5, 6] },
      { id: 2, callFrame: frame("exchange", "file:///w/src/proxy/exchange.ts"), children: [3] },
      { id: 3, callFrame: frame("op_write", ""), children: [] },
      { id: 4, callFrame: frame("(garbage collector)", ""), children: [] },
      { id: 5, callFrame: frame("(idle)", ""), children: [] },
      { id: 6, callFrame: frame("(program)", ""), children: [] },
    ],
    startTime: 1000,
    endTime: 2000,
    // Timestamps 1100 1200 ... ; each sample stands for the gap to the next one (100 µs).
    samples: [3, 3, 2, 4, 5, 6, 3, 3],
    timeDeltas: [100, 100, 100, 100, 100, 100, 100, 100],
  };
  const s = summarise(p, 1100, 1600); // the last two samples fall outside
  assert.equal(s.samples, 5);
  assert.equal(s.idleUs, 100);
  assert.equal(s.stages.get("upstream exchange (response head, body relay)"), 100);
  assert.equal(s.stages.get("I/O ops (read, write: the system calls)"), 200);
  assert.equal(s.gcUs, 100);
  assert.equal(s.functions.get("op_write (native)"), 200);
});
