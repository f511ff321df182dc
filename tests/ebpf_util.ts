/**
 * Peers and probes of the eBPF tests (tests/ebpf_test.ts) and bench/ebpf.ts: an upstream that
 * echoes request bodies byte for byte, a tunnel upstream and client that check every byte both ways
 * across a half-close, and what bpftool sees of Loom's programs.
 */

import { concat } from "../src/net/bytes.ts";

/** SHA-256 of `b`. */
export async function sha256(b: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", b as Uint8Array<ArrayBuffer>));
}

/** `n` random bytes. */
export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65536)));
  return out;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function writeAll(c: Deno.Conn, d: Uint8Array): Promise<void> {
  let o = 0;
  while (o < d.length) o += await c.write(d.subarray(o));
}

const latin1 = new TextDecoder("latin1");

/** Reads a head up to its blank line; the bytes after it come back as `rest`. */
async function readHead(c: Deno.Conn): Promise<{ head: string; rest: Uint8Array }> {
  let buf = new Uint8Array(0);
  const tmp = new Uint8Array(16384);
  for (;;) {
    const n = await c.read(tmp);
    if (n === null) throw new Error("end of stream in a head");
    const nb = new Uint8Array(buf.length + n);
    nb.set(buf);
    nb.set(tmp.subarray(0, n), buf.length);
    buf = nb;
    const i = latin1.decode(buf).indexOf("\r\n\r\n");
    if (i >= 0) return { head: latin1.decode(buf.subarray(0, i)), rest: buf.slice(i + 4) };
  }
}

/** Everything until end of stream, after `first`. */
async function readToEnd(c: Deno.Conn, first: Uint8Array): Promise<Uint8Array> {
  const parts = [first];
  const tmp = new Uint8Array(256 * 1024);
  for (;;) {
    const n = await c.read(tmp);
    if (n === null) return concat(parts);
    parts.push(tmp.slice(0, n));
  }
}

/** A listening test peer. */
export interface Peer {
  port: number;
  close(): void;
}

/** An HTTP upstream answering every request with its body, unchanged (Deno.serve). */
export function startBodyEcho(): Peer {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => new Response(new Uint8Array(await req.arrayBuffer()), { status: 200 }),
  );
  return { port: server.addr.port, close: () => void server.shutdown() };
}

/**
 * `n` bytes in 8-byte words, each the tag and the word's index (both 32-bit big-endian): a tunnel's
 * own bytes, in which a byte out of place says where it came from (see {@linkcode divergence}).
 */
export function taggedBytes(tag: number, n: number): Uint8Array<ArrayBuffer> {
  const words = new DataView(new ArrayBuffer(Math.ceil(n / 8) * 8));
  for (let i = 0; i * 8 < n; i++) {
    words.setUint32(i * 8, tag);
    words.setUint32(i * 8 + 4, i);
  }
  return new Uint8Array(words.buffer, 0, n).slice();
}

/**
 * Where `got` first differs from {@linkcode taggedBytes}(tag, want) and what follows there: bytes
 * from another offset of the same stream (repeated or skipped), or not this tunnel's. "" if equal.
 */
export function divergence(got: Uint8Array, tag: number, want: number): string {
  const expected = taggedBytes(tag, want);
  let i = 0;
  while (i < got.length && i < want && got[i] === expected[i]) i++;
  if (i === want && got.length === want) return "";
  if (i === got.length) return `the stream ends at byte ${i} of ${want}`;
  if (i === want) return `${got.length - want} bytes after the last of ${want}`;
  // The next word of this tunnel after the divergence tells which offset the stream went on with.
  const t = [tag >>> 24, (tag >>> 16) & 255, (tag >>> 8) & 255, tag & 255];
  let q = i;
  while (
    q + 8 <= got.length &&
    !(got[q] === t[0] && got[q + 1] === t[1] && got[q + 2] === t[2] && got[q + 3] === t[3])
  ) {
    q++;
  }
  // Bytes of this stream from any offset reach a word start within 8 bytes; more is something else.
  if (q - i >= 8 || q + 8 > got.length) {
    return `at byte ${i} of ${want} come ${
      q - i
    } or more bytes that are not this tunnel's; ${got.length} bytes in all`;
  }
  const from = new DataView(got.buffer, got.byteOffset + q + 4, 4).getUint32(0) * 8 - (q - i);
  const what = from < i
    ? `bytes ${from}-${i - 1} again`
    : `the upstream's byte ${from} (${from - i} skipped)`;
  return `at byte ${i} of ${want} the stream goes on with ${what}; ${got.length} bytes in all`;
}

/**
 * A tunnel upstream: answers an Upgrade with 101 (with a random `x-tag`), then sends `x-size`
 * bytes ({@linkcode taggedBytes} with that tag) while it reads the client's bytes until end of
 * stream; then it sends SHA-256 of what it received and of what it sent, and closes. The client's
 * half-close is what makes it send those last 64 bytes.
 */
export function startTunnelUpstream(): Peer {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  (async () => {
    for await (const c of l) {
      open.add(c);
      (async () => {
        const { head, rest } = await readHead(c);
        const size = Number(/x-size: (\d+)/i.exec(head)?.[1] ?? "0");
        const tag = crypto.getRandomValues(new Uint32Array(1))[0];
        await writeAll(
          c,
          new TextEncoder().encode(
            `HTTP/1.1 101 Switching Protocols\r\nupgrade: test\r\nconnection: upgrade\r\nx-tag: ${tag}\r\n\r\n`,
          ),
        );
        const payload = taggedBytes(tag, size);
        const [got] = await Promise.all([readToEnd(c, rest), writeAll(c, payload)]);
        const trailer = new Uint8Array(64);
        trailer.set(await sha256(got), 0);
        trailer.set(await sha256(payload), 32);
        await writeAll(c, trailer);
      })().catch(() => {}).finally(() => {
        open.delete(c);
        try {
          c.close();
        } catch { /* closed */ }
      });
    }
  })().catch(() => {});
  return {
    port: (l.addr as Deno.NetAddr).port,
    close: () => {
      l.close();
      for (const c of open) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

/**
 * One tunnel through Loom to {@linkcode startTunnelUpstream}: sends `up` random bytes (the first
 * `burst` of them, then a pause of `pauseMs`, then the rest), half-closes, reads until end of
 * stream. "" when every byte arrived both ways, else what went wrong.
 */
export async function tunnelRoundTrip(
  port: number,
  path: string,
  up: number,
  down: number,
  pace: { burst: number; pauseMs: number } = { burst: up, pauseMs: 0 },
): Promise<string> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(
      c,
      new TextEncoder().encode(
        `GET ${path} HTTP/1.1\r\nhost: loom\r\nupgrade: test\r\nconnection: upgrade\r\nx-size: ${down}\r\n\r\n`,
      ),
    );
    const { head, rest } = await readHead(c);
    if (!head.startsWith("HTTP/1.1 101")) return head.split("\r\n")[0];
    const data = randomBytes(up);
    const [got] = await Promise.all([
      readToEnd(c, rest),
      (async () => {
        await writeAll(c, data.subarray(0, pace.burst));
        if (pace.pauseMs > 0) await new Promise((r) => setTimeout(r, pace.pauseMs));
        await writeAll(c, data.subarray(pace.burst));
        await c.closeWrite();
      })(),
    ]);
    const tag = Number(/x-tag: (\d+)/i.exec(head)?.[1]);
    // Where the answer went wrong, for the message only (the checks are the length and the
    // upstream's SHA-256 of what it sent); the last 64 bytes are the upstream's trailer.
    const where = () => divergence(got.subarray(0, Math.max(0, got.length - 64)), tag, down);
    if (got.length !== down + 64) {
      return `tag ${tag}: received ${got.length} bytes, expected ${down + 64}: ${where()}`;
    }
    const t = got.subarray(down);
    if (!equalBytes(t.subarray(0, 32), await sha256(data))) return "the upstream received other bytes";
    if (!equalBytes(t.subarray(32), await sha256(got.subarray(0, down)))) {
      return `tag ${tag}: the client received other bytes: ${where()}`;
    }
    return "";
  } finally {
    c.close();
  }
}

/** One HTTP/1.1 request written whole, then a half-close; everything read until end of stream. */
export async function rawHalfClosed(port: number, request: string): Promise<string> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(c, new TextEncoder().encode(request));
    await c.closeWrite();
    return latin1.decode(await readToEnd(c, new Uint8Array(0)));
  } finally {
    c.close();
  }
}

/** Loom's BPF programs the kernel has now (bpftool prog show): id → name. */
export async function loomPrograms(): Promise<Map<number, string>> {
  const out = await new Deno.Command("bpftool", {
    args: ["-j", "prog", "show"],
    stdout: "piped",
    stderr: "null",
  })
    .output();
  const progs = JSON.parse(new TextDecoder().decode(out.stdout) || "[]") as { id: number; name?: string }[];
  return new Map(progs.filter((p) => p.name?.startsWith("loom_")).map((p) => [p.id, p.name!]));
}

/** Programs attached to `cgroup` (bpftool cgroup tree): "name attach_type" each. */
export async function cgroupPrograms(cgroup: string): Promise<string[]> {
  const out = await new Deno.Command("bpftool", {
    args: ["-j", "cgroup", "tree", cgroup],
    stdout: "piped",
    stderr: "null",
  }).output();
  const tree = JSON.parse(new TextDecoder().decode(out.stdout) || "[]") as {
    programs: { name: string; attach_type: string; id: number }[];
  }[];
  return tree.flatMap((c) => c.programs.map((p) => `${p.name} ${p.attach_type} ${p.id}`));
}

/** The cgroup v2 mount point (where Loom attaches by default). */
export function cgroup2Root(): string {
  const line = Deno.readTextFileSync("/proc/self/mounts").split("\n").find((l) =>
    l.split(" ")[2] === "cgroup2"
  );
  if (line === undefined) throw new Error("no cgroup2 mount");
  return line.split(" ")[1];
}
