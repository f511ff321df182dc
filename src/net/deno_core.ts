/**
 * The parts of Deno's internal `core` object that Loom's hot path calls
 * directly, each with a fallback to the public API when a runtime does not
 * have it (issue 16).
 *
 * Why: the public wrappers around these do work Loom does not need on every
 * request. `Conn.read` keeps a Set of pending reads (see read_op.ts).
 * `TextDecoder.decode` checks its options and input (a SharedArrayBuffer
 * check is an op call) before the same decode; `core.decode` makes the string
 * straight from the bytes: 0.13–0.15 against 0.09–0.10 µs for a request or
 * response head, about 0.1 µs per proxied request (two heads).
 *
 * @module
 */

/** What Loom uses of Deno's internal core. */
export interface DenoCore {
  read(rid: number, buf: Uint8Array): Promise<number>;
  decode(bytes: Uint8Array): string;
}

// deno-lint-ignore no-explicit-any
const internal = (Deno as any)[(Deno as any).internal] as { core?: Partial<DenoCore> } | undefined;

/** Deno's read op (what `Conn.read` awaits), or null in a runtime without it. */
export const coreRead: DenoCore["read"] | null = typeof internal?.core?.read === "function"
  ? internal.core.read.bind(internal.core)
  : null;

const textDecoder = new TextDecoder();
const coreDecode = internal?.core?.decode;

/** Whether {@link decodeAscii} goes through Deno's core (false: TextDecoder). */
export const coreDecodes: boolean = typeof coreDecode === "function";

/**
 * Decodes bytes known to be ASCII (0x00–0x7f) into a string. For such bytes
 * UTF-8 and Latin-1 agree, so either decoder is exact; callers with bytes
 * from 0x80 up decode them as Latin-1 themselves.
 */
export const decodeAscii: (bytes: Uint8Array) => string = coreDecodes
  ? (b) => coreDecode!(b)
  : (b) => textDecoder.decode(b);
