/**
 * TLS reload, the same for every TLS listener kind: the fast-path `https`
 * listener on Deno.listenTls (reopens its socket), the node:tls listeners of
 * h2.ts (swap contexts, SNI names and client CAs for new handshakes) and the
 * HTTP/3 listener (a new QUIC listener on the same UDP socket).
 *
 * On each reload the listener's files are read once and compared with what it
 * serves: unchanged, nothing happens; changed, the material is built and
 * checked (tls.ts: every certificate parses and matches its key) and handed
 * to the listener's `apply`; a file that cannot be read, bad material or an
 * `apply` that throws is invalid, and the listener keeps what it had (logged).
 * Open connections keep their certificate in every case.
 */
import type { TlsConfig } from "../config/types.ts";
import { logger } from "../observability/logger.ts";
import { buildListenerTls, type ListenerTls, readTlsFiles, sameFiles, type TlsUse } from "./tls.ts";

/** What a reload did. */
export type TlsReloadOutcome = "unchanged" | "changed" | "invalid";

/** A TLS listener's current material, and its reload. */
export class TlsMaterial {
  #current: ListenerTls;

  /** Loads the material at start; throws (naming the file) when it is bad. */
  constructor(private readonly listener: string, cfg: TlsConfig, private readonly use: TlsUse) {
    this.#current = buildListenerTls(cfg, use, readTlsFiles(cfg, use));
  }

  /** What the listener serves (or, while it reopens a socket, is about to serve). */
  get current(): ListenerTls {
    return this.#current;
  }

  /**
   * Re-reads `cfg`'s files. When they changed, `apply` puts the new material
   * in service (it may throw: the old stays) and it becomes `current`.
   */
  reload(cfg: TlsConfig, apply: (next: ListenerTls) => void): TlsReloadOutcome {
    try {
      const files = readTlsFiles(cfg, this.use);
      if (sameFiles(files, this.#current.files)) return "unchanged";
      const next = buildListenerTls(cfg, this.use, files);
      apply(next);
      this.#current = next;
    } catch (e) {
      logger.error("TLS reload failed; keeping the previous certificates", {
        listener: this.listener,
        error: String(e),
      });
      return "invalid";
    }
    logger.info("TLS certificates reloaded", { listener: this.listener });
    return "changed";
  }
}
