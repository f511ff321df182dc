/**
 * Password hash verification for `basic_auth`: bcrypt and argon2id with
 * hash-wasm (WebAssembly, no native addon: runs the same under `deno run`,
 * `deno compile` and on every target).
 *
 * Verifying is slow on purpose (tens to hundreds of milliseconds of CPU), so
 * it runs on one verification worker per isolate ({@link HashVerifier}),
 * never on the isolate's event loop: requests of other clients go on while a
 * hash is checked. The worker starts on the first verification and stops
 * after {@link IDLE_MS} without one (argon2's memory goes with it). Where a
 * worker cannot be started (a compiled binary built without
 * `--include src/middleware/basic_auth/verify_worker.ts`), verification falls
 * back to the event loop, with one warning.
 *
 * @module
 */
import { argon2Verify, bcryptVerify } from "hash-wasm";
import { logger } from "../../observability/logger.ts";
import { workerUrl } from "../../build.ts";

const encoder = new TextEncoder();

/**
 * Whether `password` matches `hash` (bcrypt `$2a$/$2b$/$2y$` or an argon2id
 * PHC string). An empty password never matches. bcrypt reads the first 72
 * bytes of the UTF-8 password, as OpenBSD's, Apache's htpasswd and PHP's do.
 */
export function verifyHash(hash: string, password: string): Promise<boolean> {
  if (password === "") return Promise.resolve(false);
  if (hash.startsWith("$argon2id$")) return argon2Verify({ password, hash });
  const bytes = encoder.encode(password);
  return bcryptVerify({ password: bytes.length > 72 ? bytes.subarray(0, 72) : bytes, hash });
}

/** A verification request to the worker. */
export interface VerifyJob {
  id: number;
  hash: string;
  password: string;
}

/** The worker's answer. */
export interface VerifyResult {
  id: number;
  ok?: boolean;
  error?: string;
}

/** Idle time after which the verification worker is stopped. */
export const IDLE_MS = 30_000;

interface Pending {
  job: VerifyJob;
  resolve: (ok: boolean) => void;
  reject: (e: Error) => void;
}

/** Verifies hashes on a worker thread (started on demand), or inline where no worker can run. */
export class HashVerifier {
  private worker: Worker | null = null;
  private pending = new Map<number, Pending>();
  private nextId = 1;
  private idle: ReturnType<typeof setTimeout> | undefined;
  /** Set once a worker failed to start: verify inline from then on. */
  private inline: boolean;

  constructor(opts: { inline?: boolean } = {}) {
    this.inline = opts.inline ?? false;
  }

  /** Verifications sent and not answered yet. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Whether `password` matches `hash`; rejects only when verification itself failed. */
  verify(hash: string, password: string): Promise<boolean> {
    if (this.inline) return verifyHash(hash, password);
    clearTimeout(this.idle);
    this.idle = undefined;
    const job: VerifyJob = { id: this.nextId++, hash, password };
    return new Promise<boolean>((resolve, reject) => {
      this.pending.set(job.id, { job, resolve, reject });
      try {
        this.start().postMessage(job);
      } catch (e) {
        this.fallBack(e);
      }
    });
  }

  /** Stops the worker (tests; idle shutdown). Pending verifications finish inline. */
  close(): void {
    clearTimeout(this.idle);
    this.idle = undefined;
    this.worker?.terminate();
    this.worker = null;
    for (const p of this.takePending()) verifyHash(p.job.hash, p.job.password).then(p.resolve, p.reject);
  }

  private start(): Worker {
    if (this.worker !== null) return this.worker;
    const w = new Worker(workerUrl("basicAuthVerify"), { type: "module" });
    w.onmessage = (e: MessageEvent<VerifyResult>) => this.answered(e.data);
    w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.fallBack(e.error ?? e.message);
    };
    this.worker = w;
    return w;
  }

  private answered(r: VerifyResult): void {
    const p = this.pending.get(r.id);
    if (p === undefined) return;
    this.pending.delete(r.id);
    if (r.error !== undefined) p.reject(new Error(r.error));
    else p.resolve(r.ok === true);
    if (this.pending.size === 0 && this.worker !== null) {
      this.idle = setTimeout(() => {
        if (this.pending.size === 0) this.close();
      }, IDLE_MS);
    }
  }

  private fallBack(e: unknown): void {
    if (!this.inline) {
      logger.warn("basic_auth: no verification worker; verifying on the event loop", { error: String(e) });
    }
    this.inline = true;
    this.close();
  }

  private takePending(): Pending[] {
    const all = [...this.pending.values()];
    this.pending.clear();
    return all;
  }
}

let shared: HashVerifier | null = null;

/** The isolate's verifier, shared by every `basic_auth` middleware of every snapshot. */
export function sharedVerifier(): HashVerifier {
  return shared ??= new HashVerifier();
}
