/**
 * Entry point of a worker isolate: runs one GatewayInstance and answers the
 * supervisor's messages (reload, metrics, upstreams, shutdown).
 */
/// <reference lib="deno.worker" />
import { GatewayInstance } from "./instance.ts";
import type { FromWorker, ToWorker } from "./handles.ts";
import { logger, type LogLevel, setLogLevel } from "../observability/logger.ts";
import { prepareTracing, retireExporters } from "./tracing_load.ts";
import { RuntimeMetrics } from "../observability/process_metrics.ts";
import { countCompilations, moduleSourceVia, useModuleSource } from "../wasm/compile.ts";

let instance: GatewayInstance | null = null;
/** This isolate's heap and event-loop series (the main isolate has its own). */
let runtime: RuntimeMetrics | null = null;

function send(m: FromWorker): void {
  self.postMessage(m);
}

// Plugin modules come compiled from the main isolate (its config check compiled them).
const modules = moduleSourceVia(send);
useModuleSource(modules.source);

self.onmessage = async (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  try {
    switch (m.type) {
      case "start":
        setLogLevel(m.logLevel as LogLevel);
        try {
          await prepareTracing(m.opts.config.tracing);
          instance = await GatewayInstance.start(m.opts);
          runtime = new RuntimeMetrics(instance.metrics.registry);
          countCompilations(instance.metrics.registry);
          send({ type: "started", addresses: instance.addresses() });
        } catch (err) {
          send({ type: "failed", error: String(err) });
        }
        return;
      case "reload": {
        await prepareTracing(m.config.tracing);
        const data = await instance!.reload(m.config, m.counters);
        void retireExporters(m.config.tracing);
        return send({ type: "reply", id: m.id, data });
      }
      case "metrics":
        runtime?.update();
        return send({ type: "reply", id: m.id, data: instance!.metricsSnapshot() });
      case "upstreams":
        return send({ type: "reply", id: m.id, data: instance!.upstreams() });
      case "plugins":
        return send({ type: "reply", id: m.id, data: instance!.plugins() });
      case "ebpf":
        return send({ type: "reply", id: m.id, data: instance!.ebpf() });
      case "errors":
        return send({ type: "reply", id: m.id, data: instance!.recentErrors() });
      case "purge":
        return send({ type: "reply", id: m.id, data: await instance!.purgeCache(m.what, m.shared) });
      case "module":
        return modules.answer(m);
      case "shutdown":
        await instance?.shutdown(m.drainMs);
        runtime?.sampler.stop();
        await retireExporters(undefined);
        return send({ type: "reply", id: m.id });
    }
  } catch (err) {
    logger.error("worker message failed", { error: String(err) });
    if ("id" in m) send({ type: "reply", id: m.id, error: String(err) });
  }
};
