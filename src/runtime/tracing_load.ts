/**
 * Tracing's exporters for the isolates (supervisor and workers), with
 * observability/tracing.ts and OpenTelemetry's API under it loaded by the
 * first config that turns tracing on: most configs never pay for them.
 *
 * @module
 */
import type { TracingConfig } from "../config/observability.ts";

let code: typeof import("../observability/tracing.ts") | null = null;

/** Tracing's exporter for `cfg` ready before the first request (see observability/tracing.ts). */
export async function prepareTracing(cfg: TracingConfig | undefined): Promise<void> {
  if (cfg?.enabled) code ??= await import("../observability/tracing.ts");
  await code?.prepareTracing(cfg);
}

/** Closes the exporters `cfg` does not use (none were made while tracing never loaded). */
export async function retireExporters(cfg: TracingConfig | undefined): Promise<void> {
  await code?.retireExporters(cfg);
}
