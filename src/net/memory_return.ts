/**
 * Gives memory that closed connections freed back to the operating system
 * once many of them closed (issue 18 item 5).
 *
 * Why: what Deno's TCP and TLS streams allocate natively (rustls' buffers
 * above all, about 9 KiB per TLS connection) is freed into glibc's heap when
 * a connection closes, but glibc keeps freed memory that is not at the top of
 * its heap: 5,000 closed TLS connections left RSS 45 MiB up for good.
 * `malloc_trim(0)` hands such free pages back (measured: all of it). It is
 * called only after the number of open connections fell by `DROP` from its
 * peak (a burst ended), not under steady churn, where the pages would be
 * faulted in again at once; then again 4, 8, 16 and 32 s later, as the
 * JavaScript collector frees what the connections held (V8 shrinks its heap
 * when allocation calms down, 8 s apart). The call runs on
 * Deno's FFI thread pool (`nonblocking`), so the event loop does not wait.
 *
 * Only where it can: Linux with glibc and the FFI permission (`loom run` has
 * `--allow-all`); elsewhere these functions only count.
 *
 * @module
 */

/** A fall in open connections from their peak that is worth a trim. */
const DROP = 512;
/** Delay between a qualifying fall and the trim; each follow-up waits twice as long as the one before. */
const DELAY_MS = 2000;
/** Trims after the first, while the collector frees what the connections held. */
const FOLLOW_UPS = 4;

let open = 0;
let peak = 0;
let followUps = 0;
let delay = DELAY_MS;
let timer: ReturnType<typeof setTimeout> | undefined;
let trimFn: (() => Promise<number>) | null | undefined;

/** A client connection opened (any listener). */
export function connectionOpened(): void {
  if (++open > peak) peak = open;
}

/** A client connection closed. */
export function connectionClosed(): void {
  open--;
  if (peak - open >= DROP && timer === undefined) schedule(DELAY_MS);
}

function schedule(ms: number): void {
  timer = setTimeout(tick, ms);
  Deno.unrefTimer(timer);
}

function tick(): void {
  timer = undefined;
  if (peak - open >= DROP) {
    peak = open;
    followUps = FOLLOW_UPS;
    delay = DELAY_MS;
  } else if (followUps > 0) followUps--;
  else return;
  trim();
  delay *= 2;
  if (followUps > 0) schedule(delay);
}

/** Calls malloc_trim(0) when it is available (looked up once). */
function trim(): void {
  if (trimFn === undefined) trimFn = loadTrim();
  trimFn?.().catch(() => {});
}

function loadTrim(): (() => Promise<number>) | null {
  if (Deno.build.os !== "linux") return null;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    const lib = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32", nonblocking: true },
    });
    return () => lib.symbols.malloc_trim(0n);
  } catch {
    return null; // not glibc (musl has no malloc_trim), or no libc.so.6
  }
}
