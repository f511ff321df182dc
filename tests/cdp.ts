/**
 * Headless Chromium (Debian's `chromium`) driven through the DevTools
 * protocol over a WebSocket, for page tests: one page, its console errors,
 * every network request it made, script evaluation and screenshots. Other
 * hosts than 127.0.0.1 resolve to nothing (`--host-resolver-rules`), so a
 * page that needs the network fails visibly instead of loading it.
 */

/** Chromium's path (tests/tools.ts checks it). */
export const CHROMIUM = "/usr/bin/chromium";

type Pending = { resolve(v: Record<string, unknown>): void; reject(e: Error): void };

/** A page in a headless Chromium. */
export interface Page {
  /** Console errors, uncaught exceptions and log entries at level error, as text. */
  readonly errors: string[];
  /** URLs of every request the page made. */
  readonly requests: string[];
  /** Runs a CDP method on the page's session. */
  send(method: string, params?: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** Loads `url` and waits for its load event. */
  goto(url: string): Promise<void>;
  /** Evaluates `expression` in the page (awaiting a promise) and returns its value. */
  evaluate<T>(expression: string): Promise<T>;
  /** A PNG of the viewport. */
  screenshot(): Promise<Uint8Array>;
  /** A phone's viewport (CSS pixels, mobile). */
  phone(width?: number, height?: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts Chromium and opens a blank page. */
export async function openPage(): Promise<Page> {
  const profile = await Deno.makeTempDir({ prefix: "loom-chromium-" });
  const child = new Deno.Command(CHROMIUM, {
    args: [
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-extensions",
      "--disable-background-networking",
      "--disable-component-update",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" on stderr.
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let head = "";
  const deadline = Date.now() + 20_000;
  let wsUrl = "";
  while (wsUrl === "") {
    if (Date.now() > deadline) throw new Error("chromium did not start:\n" + head);
    const { value, done } = await reader.read();
    if (done) throw new Error("chromium exited:\n" + head);
    head += value;
    wsUrl = /DevTools listening on (ws:\/\/\S+)/.exec(head)?.[1] ?? "";
  }
  // Keep draining stderr so Chromium never blocks on it.
  (async () => {
    try {
      while (!(await reader.read()).done) { /* drop */ }
    } catch { /* closed */ }
  })();

  const ws = new WebSocket(wsUrl);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error("cannot connect to " + wsUrl));
  });
  let nextId = 1;
  const pending = new Map<number, Pending>();
  const listeners: ((method: string, params: Record<string, unknown>, session?: string) => void)[] = [];
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data as string);
    if (m.id !== undefined) {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.error) p?.reject(new Error(`${m.error.message} (${m.error.code})`));
      else p?.resolve(m.result ?? {});
    } else for (const l of listeners) l(m.method, m.params ?? {}, m.sessionId);
  };
  const call = (method: string, params: Record<string, unknown> = {}, sessionId?: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });

  const { targetId } = await call("Target.createTarget", { url: "about:blank" }) as { targetId: string };
  const { sessionId } = await call("Target.attachToTarget", { targetId, flatten: true }) as {
    sessionId: string;
  };
  const errors: string[] = [];
  const requests: string[] = [];
  let onLoad: (() => void) | null = null;
  listeners.push((method, p, session) => {
    if (session !== sessionId) return;
    if (method === "Runtime.consoleAPICalled" && (p.type === "error" || p.type === "assert")) {
      errors.push("console: " + JSON.stringify(p.args));
    } else if (method === "Runtime.exceptionThrown") {
      errors.push(
        "exception: " + JSON.stringify((p.exceptionDetails as Record<string, unknown>)?.exception ?? p),
      );
    } else if (method === "Log.entryAdded") {
      const entry = p.entry as { level: string; text: string; url?: string };
      if (entry.level === "error") errors.push(`log: ${entry.text} ${entry.url ?? ""}`);
    } else if (method === "Network.requestWillBeSent") {
      requests.push((p.request as { url: string }).url);
    } else if (method === "Page.loadEventFired") {
      onLoad?.();
    }
  });
  const send = (method: string, params: Record<string, unknown> = {}) => call(method, params, sessionId);
  for (const domain of ["Page", "Runtime", "Log", "Network"]) await send(`${domain}.enable`);

  return {
    errors,
    requests,
    send,
    async goto(url) {
      const loaded = new Promise<void>((r) => onLoad = r);
      const res = await send("Page.navigate", { url }) as { errorText?: string };
      if (res.errorText) throw new Error(`navigation to ${url} failed: ${res.errorText}`);
      await loaded;
    },
    async evaluate<T>(expression: string): Promise<T> {
      const r = await send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true }) as {
        result: { value: T };
        exceptionDetails?: unknown;
      };
      if (r.exceptionDetails) throw new Error("evaluate failed: " + JSON.stringify(r.exceptionDetails));
      return r.result.value;
    },
    async screenshot() {
      const { data } = await send("Page.captureScreenshot", {
        format: "png",
        captureBeyondViewport: true,
      }) as {
        data: string;
      };
      return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    },
    async phone(width = 390, height = 844) {
      await send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 2, mobile: true });
    },
    async close() {
      try {
        await call("Browser.close");
      } catch { /* already gone */ }
      ws.close();
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 3000);
      await child.status;
      clearTimeout(timer);
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}
