import assert from "node:assert/strict";
import { createLogger, getLogLevel, setLogLevel, setLogOutput } from "./logger.ts";

function capture(fn: () => void): Array<Record<string, unknown>> {
  const lines: string[] = [];
  const prev = setLogOutput((l) => lines.push(l));
  try {
    fn();
  } finally {
    setLogOutput(prev);
  }
  for (const l of lines) assert.ok(l.endsWith("\n") && l.indexOf("\n") === l.length - 1);
  return lines.map((l) => JSON.parse(l));
}

Deno.test("logger: JSON lines, levels, child fields", () => {
  const prevLevel = getLogLevel();
  try {
    setLogLevel("info");
    const log = createLogger({ service: "loom" });
    const records = capture(() => {
      log.debug("hidden");
      log.info("hello", { port: 8080 });
      log.child({ worker: 1 }).warn("multi\nline", { worker: 2, error: new Error("boom") });
      setLogLevel("error");
      log.warn("hidden too");
      log.error("bad");
    });
    assert.equal(records.length, 3);
    assert.deepEqual(Object.keys(records[0]), ["time", "level", "msg", "service", "port"]);
    assert.equal(records[0].level, "info");
    assert.equal(records[0].port, 8080);
    assert.ok(!Number.isNaN(Date.parse(records[0].time as string)));
    assert.equal(records[1].msg, "multi\nline");
    assert.equal(records[1].worker, 2);
    assert.equal((records[1].error as { message: string }).message, "boom");
    assert.equal(records[2].level, "error");
    assert.equal(getLogLevel(), "error");
  } finally {
    setLogLevel(prevLevel);
  }
});

Deno.test("logger: unserialisable fields do not throw", () => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const records = capture(() => createLogger().error("cyclic", { cyclic }));
  assert.equal(records[0].msg, "cyclic");
});
