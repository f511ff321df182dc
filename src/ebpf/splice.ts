/**
 * splice_tunnels (bpf/splice.bpf.c): the two plain-TCP sockets of an established tunnel are handed
 * to an sk_skb stream verdict program that sends what each receives out of the other, so tunnel
 * bytes stop passing through JavaScript. One {@linkcode Splicer} per isolate (each worker loads its
 * own object: a tunnel lives in one isolate, and the map and program go when the last of its
 * tunnels ends).
 *
 * How a pair is handed over without losing or reordering a byte:
 *
 * 1. The tunnel has written what it already read (the bytes after the request and response
 *    heads). Neither socket has a read pending (the HTTP/1.1 engine stops reading at an upgrade).
 * 2. Each socket's receive queue is emptied with non-blocking reads and forwarded by the tunnel,
 *    until a pass reads less than it asked for on both (a read that returns less has taken every
 *    segment that was queued, whole). So no partly read segment is left behind.
 * 3. The peer entries are written, then the client's socket goes into the SOCKHASH, then the
 *    upstream's (which often talks first). Bytes that arrived between steps 2 and 3 wait in the
 *    queue: SO_RCVLOWAT is set, which calls the socket's data-ready hook, now the verdict's. The
 *    program decides per direction, segment by segment (see splice.bpf.c): a segment that comes
 *    before the peer is in the map goes to the process, and so does everything after it until the
 *    process has forwarded all of it; only then does the kernel take over that direction. A
 *    socket whose insertion fails leaves its direction with the process. Nothing is ever deleted
 *    from the map while the tunnel lives: that would drop what its receive queue holds.
 * 4. The tunnel keeps one read pending on each socket: what the program leaves to the process is
 *    read and forwarded in order (and counted back in loom_splice_forwarded); otherwise a read
 *    ends with end of stream or an error.
 * 5. Bytes read by the process after the kernel moved some of that direction (a socket leaves the
 *    map when it closes), and the half-close at end of stream, are forwarded only after every byte
 *    the kernel took from that side is queued on the other socket: the program counts them per
 *    socket, and TCP_INFO's bytes_acked plus SIOCOUTQ count what the other socket has queued.
 *
 * What stays in user space: TLS on either side (the bytes are records only the process can
 * decrypt), HTTP/1.1 upgrades on h2c/grpc listeners (their connection is wrapped after sniffing),
 * tunnels whose sockets cannot be found (another network namespace) or whose queues did not go
 * quiet within a few passes, and HTTP/2 tunnels (streams of a shared connection).
 *
 * @module
 */
import { attachToMap, AttachType, type BpfAttachment, type BpfMap, type BpfObject } from "./bpf.ts";
import { formatSockKey, type HostPort, SOCK_KEY_SIZE, sockKey } from "./keys.ts";
import { loaded, readStats } from "./redirect.ts";
import { bytesQueued, findSocketFd, kickDataReady, recvNow, socketCookie } from "./sockets.ts";

/** Indices of loom_stats in splice.bpf.c. */
const STATS = [
  "skb_redirects",
  "skb_redirect_bytes",
  "skb_dropped",
  "skb_passed",
  "skb_passed_bytes",
] as const;

/** Counters of the splice program (since it was loaded). */
export type SpliceProgramStats = Record<(typeof STATS)[number], number>;

/** sizeof(struct loom_splice_end): peer key, bytes, segments, passed, state, pad. */
const END_SIZE = SOCK_KEY_SIZE + 32;
/** Offsets in it. */
const END_BYTES = SOCK_KEY_SIZE;
const END_PASSED = SOCK_KEY_SIZE + 16;
const END_STATE = SOCK_KEY_SIZE + 24;
/** enum of splice.bpf.c: who moves a direction. */
const STATE_NAMES = ["new", "kernel", "process"] as const;
/** Step 2 gives up (the tunnel stays in user space) after this many passes that filled their reads. */
const MAX_DRAIN_PASSES = 64;
/** Bytes step 2 asks for per read. */
const DRAIN_READ = 256 * 1024;

/**
 * Tests only: a pause between the two sockets' insertions, so that bytes arrive while only the
 * client's socket is in the map (the direction the program then leaves to the process).
 */
export const spliceTesting = { pauseBetweenInsertsMs: 0 };

/** Why a tunnel stayed in user space (a metric label). */
export type SkipReason = "tls" | "not_tcp" | "no_socket" | "busy" | "closed" | "error" | "stopped";

/** A spliced pair; `a` is the client side, `b` the upstream side. */
export interface SplicedPair {
  /** Bytes the kernel moved from a to b and from b to a so far. */
  bytes(): { fromA: number; fromB: number };
  /** Resolves once every byte the kernel took from `from` is queued on the other socket (or it failed). */
  drained(from: "a" | "b"): Promise<void>;
  /** Counts bytes the process wrote to a side after the handover. */
  wrote(to: "a" | "b", n: number): void;
  /** Whether both descriptors still name the sockets that were spliced. */
  alive(): boolean;
  /** Takes both sockets out of the map (before they are closed); idempotent. */
  release(): void;
}

/** What a Splicer reports (GET /ebpf, metrics). */
export interface SplicerInfo {
  attached: boolean;
  attachment: string;
  active: number;
  spliced: number;
  skipped: Record<string, number>;
  bytes: number;
  program: SpliceProgramStats;
  pairs: string[];
}

function isPlainTcp(conn: Deno.Conn): boolean {
  const la = conn.localAddr as Deno.NetAddr;
  // Deno's own TCP connection class: wrappers (TLS through node:tls, sniffed h2c) are not it.
  return la?.transport === "tcp" && conn.constructor?.name === "TcpConn";
}

function fdValue(fd: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(fd), true);
  return b;
}

/** One isolate's splice program and map. */
export class Splicer {
  private pairs = new Set<Pair>();
  private accepting = true;
  private closed = false;
  private splicedCount = 0;
  private movedBytes = 0;
  readonly skipped: Record<string, number> = {};
  /** Called when the last pair ends after {@linkcode stop}. */
  onIdle: (() => void) | null = null;

  private constructor(
    private readonly obj: BpfObject,
    readonly socks: BpfMap,
    readonly ends: BpfMap,
    readonly forwarded: BpfMap,
    private readonly statsMap: BpfMap,
    private readonly attachment: BpfAttachment,
  ) {}

  /** Loads the object and attaches the verdict program to its SOCKHASH; throws BpfError. */
  static start(): Splicer {
    const obj = loaded("splice");
    try {
      const socks = obj.map("loom_splice_socks");
      const att = attachToMap(obj.program("loom_splice_verdict"), socks, AttachType.SK_SKB_STREAM_VERDICT);
      return new Splicer(
        obj,
        socks,
        obj.map("loom_splice_ends"),
        obj.map("loom_splice_forwarded"),
        obj.map("loom_stats"),
        att,
      );
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  get active(): number {
    return this.pairs.size;
  }

  private skip(reason: SkipReason): null {
    this.skipped[reason] = (this.skipped[reason] ?? 0) + 1;
    return null;
  }

  /**
   * Hands the sockets of `a` (client) and `b` (upstream) to the kernel. `forward` writes bytes
   * found in the receive queues during step 2 (to a, to b) and resolves once they are written.
   * Null: the tunnel stays in user space (the reason is counted); nothing of it is left in the maps.
   */
  async splice(
    a: Deno.Conn,
    b: Deno.Conn,
    forward: (toA: Uint8Array, toB: Uint8Array) => Promise<void>,
  ): Promise<SplicedPair | null> {
    if (!this.accepting || this.closed) return this.skip("stopped");
    if (!isPlainTcp(a) || !isPlainTcp(b)) return this.skip("tls");
    const la = a.localAddr as HostPort, ra = a.remoteAddr as HostPort;
    const lb = b.localAddr as HostPort, rb = b.remoteAddr as HostPort;
    const ka = sockKey(la, ra), kb = sockKey(lb, rb);
    if (ka === null || kb === null) return this.skip("not_tcp");
    const fdA = findSocketFd(la, ra), fdB = findSocketFd(lb, rb);
    if (fdA < 0 || fdB < 0) return this.skip("no_socket");
    const cookieA = socketCookie(fdA), cookieB = socketCookie(fdB);
    // Step 2: empty both receive queues.
    for (let pass = 0;; pass++) {
      if (pass === MAX_DRAIN_PASSES) return this.skip("busy");
      const fromA = recvNow(fdA, DRAIN_READ), fromB = recvNow(fdB, DRAIN_READ);
      if (fromA === null || fromB === null) {
        // End of stream or an error: the tunnel's own reads see it again; it ends in user space.
        if (fromA?.length || fromB?.length) {
          await forward(fromB ?? new Uint8Array(0), fromA ?? new Uint8Array(0));
        }
        return this.skip("closed");
      }
      if (fromA.length > 0 || fromB.length > 0) await forward(fromB, fromA);
      if (!this.accepting || this.closed) return this.skip("stopped");
      if (fromA.length < DRAIN_READ && fromB.length < DRAIN_READ) break;
    }
    // The descriptors may have been closed and reused while forwarding.
    if (socketCookie(fdA) !== cookieA || socketCookie(fdB) !== cookieB) return this.skip("closed");
    // Step 3, synchronously from here: baselines, peer entries, then the sockets.
    const baseA = bytesQueued(fdA), baseB = bytesQueued(fdB);
    if (baseA === null || baseB === null) return this.skip("error");
    const endA = new Uint8Array(END_SIZE), endB = new Uint8Array(END_SIZE);
    endA.set(kb, 0);
    endB.set(ka, 0);
    const zero = new Uint8Array(8);
    const entries = () => {
      this.ends.delete(ka);
      this.ends.delete(kb);
      this.forwarded.delete(ka);
      this.forwarded.delete(kb);
    };
    if (
      this.ends.update(ka, endA) !== 0 || this.ends.update(kb, endB) !== 0 ||
      this.forwarded.update(ka, zero) !== 0 || this.forwarded.update(kb, zero) !== 0
    ) {
      entries();
      return this.skip("error");
    }
    // The client's socket first: the upstream, which may be talking already, joins second and so
    // finds its peer in the map. Once one is in, nothing is deleted before the tunnel ends.
    const rc = this.socks.update(ka, fdValue(fdA));
    if (rc !== 0) {
      entries();
      // EOPNOTSUPP: no longer established (the client half-closed meanwhile).
      return this.skip(rc === -95 ? "closed" : "error");
    }
    if (spliceTesting.pauseBetweenInsertsMs > 0) {
      await new Promise((r) => setTimeout(r, spliceTesting.pauseBetweenInsertsMs));
    }
    const inB = this.socks.update(kb, fdValue(fdB)) === 0;
    kickDataReady(fdA);
    kickDataReady(fdB);
    const pair = new Pair(this, ka, kb, fdA, fdB, cookieA, cookieB, baseA, baseB, inB);
    this.pairs.add(pair);
    this.splicedCount++;
    return pair;
  }

  /** @internal A pair released: counts its bytes; closes the object when stopped and idle. */
  done(pair: Pair, bytes: number): void {
    if (!this.pairs.delete(pair)) return;
    this.movedBytes += bytes;
    if (!this.accepting && this.pairs.size === 0) {
      this.close();
      this.onIdle?.();
    }
  }

  /** Bytes the program moved for `key`'s socket (0 once released). */
  sent(key: Uint8Array): number {
    return this.end(key)?.bytes ?? 0;
  }

  /** The program's entry for `key`'s socket. */
  end(key: Uint8Array): { bytes: number; passed: number; state: string } | null {
    const v = new Uint8Array(END_SIZE);
    if (!this.ends.lookup(key, v)) return null;
    const d = new DataView(v.buffer);
    return {
      bytes: Number(d.getBigUint64(END_BYTES, true)),
      passed: Number(d.getBigUint64(END_PASSED, true)),
      state: STATE_NAMES[d.getUint32(END_STATE, true)] ?? "?",
    };
  }

  /** No new splices; the object closes when the last pair ends (now, if there is none). */
  stop(): void {
    this.accepting = false;
    if (this.pairs.size === 0) this.close();
  }

  get stopped(): boolean {
    return !this.accepting;
  }

  info(): SplicerInfo {
    let live = 0;
    for (const p of this.pairs) {
      const b = p.bytes();
      live += b.fromA + b.fromB;
    }
    return {
      attached: !this.closed,
      attachment: `${this.attachment.kind} loom_splice_verdict → loom_splice_socks`,
      active: this.pairs.size,
      spliced: this.splicedCount,
      skipped: { ...this.skipped },
      bytes: this.movedBytes + live,
      program: this.closed
        ? { skb_redirects: 0, skb_redirect_bytes: 0, skb_dropped: 0, skb_passed: 0, skb_passed_bytes: 0 }
        : readStats(this.statsMap, STATS) as SpliceProgramStats,
      pairs: [...this.pairs].slice(0, 100).map((p) => p.describe()),
    };
  }

  /** Detaches and closes now (shutdown): pairs still open fall back to their user-space reads. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.accepting = false;
    for (const p of this.pairs) p.forget();
    this.pairs.clear();
    this.attachment.close();
    this.obj.close();
  }
}

class Pair implements SplicedPair {
  private released = false;
  /** Bytes the process wrote to a and to b after the handover. */
  private jsToA = 0n;
  private jsToB = 0n;
  private finalBytes: { fromA: number; fromB: number } | null = null;

  constructor(
    private readonly s: Splicer,
    private readonly ka: Uint8Array,
    private readonly kb: Uint8Array,
    private readonly fdA: number,
    private readonly fdB: number,
    private readonly cookieA: bigint,
    private readonly cookieB: bigint,
    private readonly baseA: bigint,
    private readonly baseB: bigint,
    /** Whether the upstream's socket joined the map (the client's always did). */
    private readonly inB: boolean,
  ) {}

  bytes(): { fromA: number; fromB: number } {
    if (this.finalBytes !== null) return this.finalBytes;
    return { fromA: this.s.sent(this.ka), fromB: this.s.sent(this.kb) };
  }

  /** Bytes the process forwarded from the other side to `to`, once written. */
  wrote(to: "a" | "b", n: number): void {
    if (this.released) return;
    if (to === "a") this.jsToA += BigInt(n);
    else this.jsToB += BigInt(n);
    // What the other side's socket has had forwarded: the program hands that direction to the
    // kernel once this equals what it left to the process.
    const v = new Uint8Array(8);
    new DataView(v.buffer).setBigUint64(0, to === "a" ? this.jsToA : this.jsToB, true);
    this.s.forwarded.update(to === "a" ? this.kb : this.ka, v);
  }

  alive(): boolean {
    return !this.released && socketCookie(this.fdA) === this.cookieA &&
      socketCookie(this.fdB) === this.cookieB;
  }

  async drained(from: "a" | "b"): Promise<void> {
    const key = from === "a" ? this.ka : this.kb;
    const fd = from === "a" ? this.fdB : this.fdA;
    const cookie = from === "a" ? this.cookieB : this.cookieA;
    const base = from === "a" ? this.baseB : this.baseA;
    for (let i = 0; !this.released; i++) {
      // Read the program's count first: bytes it moves after this are not waited for (none come
      // after end of stream), and bytes it counted are queued on the other socket soon.
      const sent = BigInt(this.s.sent(key)) + (from === "a" ? this.jsToB : this.jsToA);
      if (socketCookie(fd) !== cookie) return; // closed meanwhile: nothing left to wait for
      const queued = bytesQueued(fd);
      if (queued === null || queued - base >= sent) return;
      await new Promise((r) => setTimeout(r, Math.min(20, 1 << Math.min(i, 5))));
    }
  }

  release(): void {
    if (this.released) return;
    this.finalBytes = this.bytes();
    this.released = true;
    // Sockets first: the program sees no more segments of this pair, then the entries go.
    this.s.socks.delete(this.ka);
    if (this.inB) this.s.socks.delete(this.kb);
    for (const k of [this.ka, this.kb]) {
      this.s.ends.delete(k);
      this.s.forwarded.delete(k);
    }
    this.s.done(this, this.finalBytes.fromA + this.finalBytes.fromB);
  }

  /** The object is closing: keep the last counts, touch no map. */
  forget(): void {
    if (this.released) return;
    this.finalBytes = this.bytes();
    this.released = true;
  }

  /** "client <=> upstream (client→upstream kernel, upstream→client process)". */
  describe(): string {
    const a = this.s.end(this.ka)?.state ?? "-", b = this.s.end(this.kb)?.state ?? "-";
    return `${formatSockKey(this.ka)} <=> ${formatSockKey(this.kb)} (client→upstream ${a}, upstream→client ${
      this.inB ? b : "process (not in the map)"
    })`;
  }
}
