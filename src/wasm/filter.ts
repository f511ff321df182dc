/**
 * Runs a route's plugin chain around one request, driving the Proxy-Wasm
 * stream lifecycle as the reference host does:
 *
 *   on_context_create → on_request_headers → on_request_body* → on_request_trailers
 *   → (upstream) → on_response_headers → on_response_body* → on_done → on_log → on_delete
 *
 * A non-zero action pauses the request until the plugin resumes it
 * (continue_stream, typically from on_http_call_response); a local response
 * ends the stream. Bodies are only buffered for plugins whose phase asks for
 * them (`on_request_body`, `on_response_body`); response-side plugins see the
 * response through a ResponseWriter wrapper that holds the head back until
 * they are done with it.
 *
 * This module starts the streams and runs the request side; chain.ts drives
 * callbacks, request_body.ts and response_writer.ts carry the bodies.
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import { ChainRun, stopWith } from "./chain.ts";
import { StaleVM } from "./errors.ts";
import type { Plugin, PluginChain } from "./plugin.ts";
import { startRequestBody } from "./request_body.ts";
import { PluginResponseWriter } from "./response_writer.ts";
import { Stop, Stream } from "./stream.ts";

const notLogOnly = (p: Plugin) => !p.onlyLog;

/**
 * Runs `chain` around `proceed` (which forwards to the upstream with the
 * possibly rewritten target; `routeAgain`, when the plugins changed request
 * headers or the path in on_request_headers, is the target to route again
 * on). Always finishes the response.
 */
export async function runPlugins(
  ctx: RequestContext,
  chain: PluginChain,
  pauseTimeout: number,
  target: string,
  proceed: (target: string, routeAgain: string | null) => Promise<void>,
): Promise<void> {
  const run = new ChainRun(ctx, chain, pauseTimeout);
  const originalTarget = ctx.target;
  const noBody = ctx.body.length === 0;
  try {
    const plugins = chain.plugins;
    for (let i = 0; i < plugins.length; i++) {
      const p = plugins[i];
      let vm = p.getVM();
      if (vm instanceof Promise) vm = await vm; // a new VM starting (timeslice)
      if (vm === null) {
        if (p.cfg.failure_policy === "fail_open") continue;
        throw new Stop("fail");
      }
      const s = new Stream(run, p, vm);
      // No other plugin runs between this one's on_context_create and on_request_headers
      // (the last one, after log-only or failed ones): both go in one timeslice call.
      if (
        i === plugins.length - 1 && vm.sliced && notLogOnly(p) && vm.hasBatch("loom:start") &&
        run.streams.every((o) => o.dead || !notLogOnly(o.plugin))
      ) {
        run.streams.push(s);
        let action = run.start(s, ctx.headers.size + 4, noBody ? 1 : 0);
        if (typeof action !== "number") action = await action;
        if (action !== -1) await run.afterAction(s, action);
        return await afterRequestHeaders(run, chain, noBody, originalTarget, target, proceed);
      }
      run.streams.push(s);
      try {
        const r = vm.call("proxy_on_context_create", s.id, s.id, vm.rootFor(p));
        if (typeof r !== "number") await r;
      } catch (e) {
        if (e instanceof StaleVM && (await s.rebind())) continue;
        s.failure = s.failure ?? (e instanceof Error ? e : new Error(String(e)));
        s.dead = true;
        if (p.cfg.failure_policy !== "fail_open") throw new Stop("fail");
      }
    }
    await run.phase(
      "proxy_on_request_headers",
      "on_request_headers",
      notLogOnly,
      ctx.headers.size + 4,
      noBody ? 1 : 0,
    );
    await afterRequestHeaders(run, chain, noBody, originalTarget, target, proceed);
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
    await stopWith(run, e);
  } finally {
    const f = run.finish();
    if (f !== undefined) await f;
  }
}

/** The rest of a request once on_request_headers ran. */
async function afterRequestHeaders(
  run: ChainRun,
  chain: PluginChain,
  noBody: boolean,
  originalTarget: string,
  target: string,
  proceed: (target: string, routeAgain: string | null) => Promise<void>,
): Promise<void> {
  const ctx = run.ctx;
  if (chain.requestBody && !noBody) await startRequestBody(run);
  if (chain.responseSide && ctx.upgrade === undefined) ctx.res = new PluginResponseWriter(ctx.res, run);
  // Request headers or :path changed (or proxy_clear_route_cache): route again on the plugins' target.
  await proceed(run.target === originalTarget ? target : run.target, run.routeCleared ? run.target : null);
}
