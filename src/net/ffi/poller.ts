/**
 * One epoll instance per isolate that tells the FFI sockets (conn.ts) when
 * they are ready, beside Deno's own event loop.
 *
 * While sockets are ready the poller looks with synchronous epoll_wait calls
 * (timeout 0): no promise per socket op, one system call per batch. When
 * nothing is ready it waits with a `nonblocking` epoll_wait, which Deno runs
 * on a thread of its blocking pool so that its event loop goes on; that costs
 * about 10 µs of CPU per return on one core (two context switches, a futex
 * and an eventfd write), so it is paid once per idle period, not per op.
 *
 * `LOOM_FFI_POLL=wait` sleeps in a synchronous epoll_wait for up to WAIT_MS
 * first, with Deno's own epoll instances nested in this one so that its I/O
 * wakes the poller. That is what makes bench/ffi_floor_proxy.ts beat nginx,
 * but it is only sound when no Deno op is on the request path: Deno acts on
 * its sockets' events only when tokio turns its I/O driver, every 61
 * scheduler ticks while JavaScript keeps the loop busy, and Loom's upstream
 * sockets are Deno's (measured: the upstream read then waits out the 1 ms,
 * about 1.2 ms per request at c1). See bench/README.md, "An FFI socket path".
 *
 * Sockets are registered once, edge-triggered for reading and writing (as
 * tokio does), with EPOLLRDHUP: no epoll_ctl per request.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import {
  EPOLL_CTL_ADD,
  EPOLLET,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
  EV_DATA,
  EV_SIZE,
  type Libc,
  openLibc,
  SOCK_CLOEXEC,
  sysError,
  unavailableReason,
} from "./libc.ts";

/** What the poller wakes: a socket. */
export interface PollTarget {
  /** The socket's epoll event bits since its last call (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP). */
  onReady(events: number): void;
}

/** Longest synchronous sleep in epoll_wait (Deno's timers are late by at most this much), ms. */
const WAIT_MS = 1;
const MAX_EVENTS = 256;
/** A poller-internal fd's target: Deno's nested reactor or the wake-up eventfd. */
const INTERNAL: PollTarget = { onReady() {} };

const immediate = () => new Promise<void>((r) => setImmediate(r));

/** How an idle poller waits: `async` (on a pool thread) or `wait` (synchronously first, up to WAIT_MS). */
export type PollMode = "wait" | "async";

/** The isolate's socket poller. */
export class Poller {
  private readonly events = new Uint8Array(EV_SIZE * MAX_EVENTS);
  private readonly view = new DataView(this.events.buffer);
  private readonly eventsPtr = Deno.UnsafePointer.of(this.events);
  private readonly ctlEvent = new Uint8Array(EV_SIZE);
  private readonly ctlPtr = Deno.UnsafePointer.of(this.ctlEvent);
  private readonly targets: (PollTarget | undefined)[] = [];
  private count = 0;
  private running = false;
  private done: Promise<void> = Promise.resolve();
  /** One of Deno's reactors reported events: hand the thread back before sleeping again. */
  private denoReady = false;
  private readonly wakeFd: number;
  /** fds of Deno's epoll instances nested in ours ([] when /proc/self/fd was unreadable). */
  readonly nested: number[] = [];
  /** The poller's epoll fd. */
  readonly ep: number;

  constructor(readonly libc: Libc, readonly mode: PollMode = "async") {
    const { sys } = libc;
    this.ep = sys.epoll_create1(SOCK_CLOEXEC);
    if (this.ep < 0) throw sysError("epoll_create1", libc.errno());
    this.wakeFd = sys.eventfd(0, 0o4000 | SOCK_CLOEXEC);
    if (this.wakeFd < 0) throw sysError("eventfd", libc.errno());
    this.ctl(this.wakeFd, EPOLLIN | EPOLLET);
    this.targets[this.wakeFd] = INTERNAL;
    if (mode === "wait") {
      for (const fd of denoEpollFds(this.ep)) {
        if (sys.epoll_ctl(this.ep, EPOLL_CTL_ADD, fd, this.fill(fd, EPOLLIN | EPOLLET)) === 0) {
          this.nested.push(fd);
          this.targets[fd] = INTERNAL;
        }
      }
    }
  }

  private fill(fd: number, mask: number): Deno.PointerValue {
    const v = new DataView(this.ctlEvent.buffer);
    v.setUint32(0, mask >>> 0, true);
    v.setInt32(EV_DATA, fd, true);
    return this.ctlPtr;
  }

  private ctl(fd: number, mask: number): void {
    if (this.libc.sys.epoll_ctl(this.ep, EPOLL_CTL_ADD, fd, this.fill(fd, mask)) < 0) {
      throw sysError("epoll_ctl", this.libc.errno());
    }
  }

  /** Watches `fd` (a non-blocking socket) for reading and writing until `remove`. */
  add(fd: number, target: PollTarget): void {
    this.ctl(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    this.targets[fd] = target;
    this.count++;
    if (!this.running) this.done = this.loop();
  }

  /** Resolves once nothing is watched and the wait loop has returned (no FFI call pending). */
  stopped(): Promise<void> {
    return this.done;
  }

  /** Stops delivering `fd`'s events; call before closing it (closing removes it from the epoll set). */
  remove(fd: number): void {
    if (this.targets[fd] === undefined || this.targets[fd] === INTERNAL) return;
    this.targets[fd] = undefined;
    if (--this.count === 0) this.wake();
  }

  /** Ends a wait on the pool thread (nothing left to watch: the process may exit). */
  private wake(): void {
    const one = new BigUint64Array([1n]);
    this.libc.sys.write(this.wakeFd, Deno.UnsafePointer.of(one), 8n);
  }

  private dispatch(n: number): void {
    const v = this.view;
    for (let i = 0; i < n; i++) {
      const fd = v.getInt32(i * EV_SIZE + EV_DATA, true);
      const t = this.targets[fd];
      if (t === undefined) continue;
      if (t === INTERNAL) {
        if (fd !== this.wakeFd) this.denoReady = true;
        continue;
      }
      try {
        t.onReady(v.getUint32(i * EV_SIZE, true));
      } catch { /* a target's own error: it settles its promises itself */ }
    }
  }

  private async loop(): Promise<void> {
    const { sys } = this.libc;
    // Without Deno's reactors nested, a synchronous sleep would hold up Deno's own sockets.
    const sleepHere = this.mode === "wait" && this.nested.length > 0;
    this.running = true;
    try {
      while (this.count > 0) {
        let n = sys.epoll_wait(this.ep, this.eventsPtr, MAX_EVENTS, 0);
        if (n > 0) {
          this.dispatch(n);
          await null; // the dispatched reads' callbacks start; then look again without sleeping
          continue;
        }
        // Nothing ready: one macrotask, so the callbacks of what was dispatched have run to their
        // next wait and Deno's loop has had a turn; then look once more before sleeping.
        await immediate();
        n = sys.epoll_wait(this.ep, this.eventsPtr, MAX_EVENTS, 0);
        if (n === 0 && sleepHere && !this.denoReady) {
          n = sys.epoll_wait(this.ep, this.eventsPtr, MAX_EVENTS, WAIT_MS);
        }
        this.denoReady = false;
        if (n === 0 && this.count > 0) {
          n = await sys.epoll_wait_async(this.ep, this.eventsPtr, MAX_EVENTS, -1);
        }
        if (n > 0) this.dispatch(n);
      }
    } finally {
      this.running = false;
    }
  }
}

/** The epoll fds of this process other than `own` (Deno's reactors), from /proc/self/fd. */
function denoEpollFds(own: number): number[] {
  const out: number[] = [];
  try {
    for (const e of Deno.readDirSync("/proc/self/fd")) {
      const fd = Number(e.name);
      if (fd === own) continue;
      try {
        if (Deno.readLinkSync(`/proc/self/fd/${e.name}`) === "anon_inode:[eventpoll]") out.push(fd);
      } catch { /* closed meanwhile */ }
    }
  } catch { /* no read permission: the poller then only waits on the pool thread */ }
  return out;
}

let shared: Poller | null | undefined;

/**
 * The isolate's poller, made on first use (its mode from `LOOM_FFI_POLL`,
 * `async` unless it says `wait`); null where FFI sockets are unavailable
 * (see `pollerUnavailable`).
 */
export function poller(): Poller | null {
  if (shared !== undefined) return shared;
  const libc = openLibc();
  let mode: PollMode = "async";
  try {
    if (Deno.env.get("LOOM_FFI_POLL") === "wait") mode = "wait";
  } catch { /* no env permission: the default */ }
  shared = libc === null ? null : new Poller(libc, mode);
  return shared;
}

/** Why `poller()` is null. */
export function pollerUnavailable(): string {
  return unavailableReason();
}
