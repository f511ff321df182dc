/**
 * Helpers shared by the gateway-level integration tests (routing, balancing,
 * reload, admin, workers, CLI): tagged echo upstreams, raw HTTP/1.1 requests,
 * bounded polling.
 */
import { rawExchange, startUpstream, type TestUpstream } from "./helpers.ts";

/** What a tagged upstream saw, as it reports it in its JSON body. */
export interface Echo {
  tag: string;
  port: number;
  method: string;
  /** Request target exactly as received (path + query, not re-normalised). */
  target: string;
  host: string;
}

/** The request target exactly as the upstream received it (Deno keeps req.url raw). */
export function rawTarget(req: Request): string {
  const u = req.url;
  const slash = u.indexOf("/", u.indexOf("//") + 2);
  return slash === -1 ? "/" : u.slice(slash);
}

/**
 * An upstream answering `{tag, port, method, target, host}` as JSON, after
 * `delayMs` if given.
 */
export function echoUpstream(tag: string, delayMs = 0): TestUpstream {
  let up: TestUpstream | undefined = undefined;
  up = startUpstream(async (req) => {
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    const echo: Echo = {
      tag,
      port: up?.port ?? 0,
      method: req.method,
      target: rawTarget(req),
      host: req.headers.get("host") ?? "",
    };
    return Response.json(echo);
  });
  return up;
}

/** A parsed raw HTTP/1.1 response. */
export interface RawResponse {
  status: number;
  headers: Headers;
  body: string;
}

/**
 * Sends one request over a fresh TCP connection with `Connection: close`,
 * the target written byte for byte (fetch() would normalise it).
 */
export async function rawRequest(
  port: number,
  target: string,
  opts: { method?: string; headers?: Record<string, string>; host?: string } = {},
): Promise<RawResponse> {
  const lines = [`${opts.method ?? "GET"} ${target} HTTP/1.1`, `Host: ${opts.host ?? "127.0.0.1"}`];
  for (const [k, v] of Object.entries(opts.headers ?? {})) lines.push(`${k}: ${v}`);
  lines.push("Connection: close", "", "");
  const raw = await rawExchange(port, lines.join("\r\n"), 3000);
  return parseRaw(raw);
}

/** Parses one HTTP/1.1 response (content-length, chunked or close-delimited body). */
export function parseRaw(raw: string): RawResponse {
  const end = raw.indexOf("\r\n\r\n");
  if (end === -1) return { status: 0, headers: new Headers(), body: raw };
  const [statusLine, ...headerLines] = raw.slice(0, end).split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  const headers = new Headers();
  for (const l of headerLines) {
    const i = l.indexOf(":");
    if (i > 0) headers.append(l.slice(0, i).trim(), l.slice(i + 1).trim());
  }
  let body = raw.slice(end + 4);
  if (headers.get("transfer-encoding")?.toLowerCase().includes("chunked")) {
    let out = "";
    let rest = body;
    for (;;) {
      const nl = rest.indexOf("\r\n");
      if (nl === -1) break;
      const size = parseInt(rest.slice(0, nl), 16);
      if (!(size > 0)) break;
      out += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    body = out;
  } else if (headers.has("content-length")) {
    body = body.slice(0, Number(headers.get("content-length")));
  }
  return { status: m ? Number(m[1]) : 0, headers, body };
}

/** Polls `check` every 20 ms until it returns a non-undefined value or `timeoutMs` passes (then throws). */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = undefined;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** fetch() with a deadline; the body is read as text. */
export async function get(
  url: string,
  init: RequestInit = {},
  timeoutMs = 10_000,
): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** fetch() to a tagged echo upstream through the gateway; returns the echo (or throws with the status). */
export async function echo(url: string, init: RequestInit = {}): Promise<Echo> {
  const r = await get(url, init);
  if (r.status !== 200) throw new Error(`${url}: status ${r.status}: ${r.text}`);
  return JSON.parse(r.text) as Echo;
}

/** A Loom YAML with one http listener on ${PORT}, the given upstreams and routes (as JSON flow). */
export function yamlOf(parts: { upstreams: unknown[]; routes: unknown[]; extra?: string }): string {
  return [
    "listeners:",
    '  - name: http\n    address: "127.0.0.1:${PORT}"\n    protocol: http',
    `upstreams: ${JSON.stringify(parts.upstreams)}`,
    `routes: ${JSON.stringify(parts.routes)}`,
    parts.extra ?? "",
  ].join("\n") + "\n";
}

/** Value of one Prometheus sample (`name{labels}` with labels in any order), summed over matches; 0 if none. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const lm of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      got[lm[1]] = lm[2];
    }
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) total += Number(m[4]);
  }
  return total;
}

/** Rewrites a running test Loom's config file the way startLoom wrote it (ports substituted, admin kept). */
export function writeConfig(
  loom: { configPath: string; port: number; adminPort: number },
  yaml: string,
): void {
  let text = yaml.replaceAll("${PORT}", String(loom.port)).replaceAll(
    "${ADMIN_PORT}",
    String(loom.adminPort),
  );
  if (!/^access_log:/m.test(text)) text += "\naccess_log:\n  enabled: false\n";
  if (!/^admin:/m.test(text)) text += `\nadmin:\n  address: "127.0.0.1:${loom.adminPort}"\n`;
  // Write then rename: a watcher never sees a half-written file.
  const tmp = loom.configPath + ".tmp";
  Deno.writeTextFileSync(tmp, text);
  Deno.renameSync(tmp, loom.configPath);
}

/** POST /reload on the admin API; returns status and parsed body. */
export async function postReload(loom: { admin(path: string): string }): Promise<
  { status: number; body: { result: string; errors?: string[] } }
> {
  // The header marks the write as deliberate: the admin API refuses writes a web page could send.
  const r = await get(loom.admin("/reload"), { method: "POST", headers: { "X-Loom-Admin": "1" } });
  return { status: r.status, body: JSON.parse(r.text) };
}
