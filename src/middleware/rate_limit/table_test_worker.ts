/**
 * Test fixture of index_test.ts: a Worker that takes units from a LocalTable
 * over a posted SharedArrayBuffer as fast as it can, then reports how many it got.
 */
/// <reference lib="deno.worker" />
import { last, LocalTable } from "./table.ts";

self.onmessage = (e: MessageEvent<{ buffer: SharedArrayBuffer; tries: number; keys: number }>) => {
  const table = new LocalTable(e.data.buffer);
  const params = { algorithm: "token_bucket" as const, interval: 1e9, capacity: 5000 };
  let granted = 0;
  for (let i = 0; i < e.data.tries; i++) {
    table.take(`k${i % e.data.keys}`, params);
    granted += last.granted;
  }
  self.postMessage(granted);
};
