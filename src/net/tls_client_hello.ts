/**
 * The server name (SNI) of a TLS ClientHello, read from the first bytes of a
 * connection without terminating TLS (passthrough routing, as Envoy's
 * tls_inspector). The hello may arrive in pieces and may span several
 * handshake records; reading gives up after {@link MAX_CLIENT_HELLO} bytes.
 *
 * @module
 */

/** Most bytes read while looking for the ClientHello's end (a hello with post-quantum key shares is ~2 KB). */
export const MAX_CLIENT_HELLO = 16 * 1024;

/** Outcome of {@link peekClientHello}. */
export type ClientHelloPeek =
  /** More bytes are needed. */
  | { done: false }
  /**
   * Done: `sni` is the server name (lower case), or null when the bytes are
   * not TLS, the hello names none, is malformed, or is larger than the cap.
   */
  | { done: true; sni: string | null; tls: boolean };

const MORE: ClientHelloPeek = { done: false };
const dec = new TextDecoder();

/**
 * Looks at the bytes a client sent so far (`data`, from the connection's
 * start). Pure: call it again with more bytes appended until `done`.
 */
export function peekClientHello(data: Uint8Array): ClientHelloPeek {
  if (data.length === 0) return MORE;
  // A handshake record (22) starts every TLS connection; anything else is some other protocol.
  if (data[0] !== 0x16) return { done: true, sni: null, tls: false };
  // The handshake message, gathered from as many records as it takes.
  const hs: Uint8Array[] = [];
  let hsLen = 0;
  let need = -1; // the ClientHello's length once its 4-byte header is in
  let off = 0;
  while (need < 0 || hsLen < need + 4) {
    if (off + 5 > data.length) return tooLong(data) ?? MORE;
    if (data[off] !== 0x16 || data[off + 1] !== 0x03) return notHello(off === 0);
    const len = (data[off + 3] << 8) | data[off + 4];
    if (len === 0 || len > 16384 + 256) return notHello(false);
    if (off + 5 + len > data.length) {
      // Take what this record holds so far: the hello's header may be in it already.
      const part = data.subarray(off + 5);
      if (need < 0 && hsLen + part.length >= 4) {
        need = headerLength(hs, part);
        if (need < 0) return notHello(true);
      }
      if (need >= 0 && need + 4 > MAX_CLIENT_HELLO) return notHello(true);
      return tooLong(data) ?? MORE;
    }
    const frag = data.subarray(off + 5, off + 5 + len);
    hs.push(frag);
    hsLen += frag.length;
    off += 5 + len;
    if (need < 0 && hsLen >= 4) {
      need = headerLength(hs, new Uint8Array(0));
      if (need < 0) return notHello(true);
      if (need + 4 > MAX_CLIENT_HELLO) return notHello(true);
    }
  }
  const msg = join(hs, hsLen);
  return { done: true, sni: sniOf(msg.subarray(4, 4 + need)), tls: true };
}

/** Past the cap without a whole hello: give up (a client that is not speaking TLS after all). */
function tooLong(data: Uint8Array): ClientHelloPeek | null {
  return data.length >= MAX_CLIENT_HELLO + 5 ? notHello(true) : null;
}

function notHello(tls: boolean): ClientHelloPeek {
  return { done: true, sni: null, tls };
}

/** The ClientHello body length from its 4-byte header, -1 when the message is not a ClientHello. */
function headerLength(hs: Uint8Array[], more: Uint8Array): number {
  const head = join([...hs, more], 4);
  if (head[0] !== 1) return -1; // handshake type client_hello
  return (head[1] << 16) | (head[2] << 8) | head[3];
}

/** The first `n` bytes of the concatenated parts. */
function join(parts: Uint8Array[], n: number): Uint8Array {
  if (parts.length === 1 && parts[0].length >= n) return parts[0].subarray(0, n);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    if (o >= n) break;
    const take = p.subarray(0, n - o);
    out.set(take, o);
    o += take.length;
  }
  return out;
}

/** The host_name of the server_name extension of a ClientHello body; null without one. */
function sniOf(b: Uint8Array): string | null {
  let p = 2 + 32; // legacy_version, random
  if (p + 1 > b.length) return null;
  p += 1 + b[p]; // session id
  if (p + 2 > b.length) return null;
  p += 2 + ((b[p] << 8) | b[p + 1]); // cipher suites
  if (p + 1 > b.length) return null;
  p += 1 + b[p]; // compression methods
  if (p + 2 > b.length) return null;
  const end = Math.min(b.length, p + 2 + ((b[p] << 8) | b[p + 1]));
  p += 2;
  while (p + 4 <= end) {
    const type = (b[p] << 8) | b[p + 1];
    const len = (b[p + 2] << 8) | b[p + 3];
    p += 4;
    if (p + len > end) return null;
    if (type === 0) return hostName(b.subarray(p, p + len));
    p += len;
  }
  return null;
}

/** server_name_list: the first entry of type host_name (0). */
function hostName(ext: Uint8Array): string | null {
  if (ext.length < 2) return null;
  const end = Math.min(ext.length, 2 + ((ext[0] << 8) | ext[1]));
  let p = 2;
  while (p + 3 <= end) {
    const type = ext[p];
    const len = (ext[p + 1] << 8) | ext[p + 2];
    p += 3;
    if (p + len > end) return null;
    if (type === 0 && len > 0) return dec.decode(ext.subarray(p, p + len)).toLowerCase();
    p += len;
  }
  return null;
}
