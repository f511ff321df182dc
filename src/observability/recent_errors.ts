/**
 * The most recent failed requests of an isolate (5xx answers, and requests
 * that ended without one), for the admin dashboard: a fixed ring, one object
 * per failure, nothing for requests that succeed.
 *
 * @module
 */

/** One failed request. */
export interface RecentError {
  /** Epoch ms when it finished. */
  time: number;
  request_id: string;
  route: string;
  method: string;
  /** The path as received, without the query. */
  path: string;
  /** 0: no response reached the client. */
  status: number;
  duration_ms: number;
  upstream: string;
  /** Why, when known: the upstream failure, a middleware's refusal. */
  error: string;
}

/** How many failures an isolate keeps. */
export const RECENT_ERRORS = 50;

/** A ring of the last {@link RECENT_ERRORS} failures. */
export class RecentErrors {
  readonly #ring: (RecentError | undefined)[] = new Array(RECENT_ERRORS);
  #n = 0;

  add(e: RecentError): void {
    this.#ring[this.#n++ % RECENT_ERRORS] = e;
  }

  /** Newest first. */
  list(): RecentError[] {
    const out: RecentError[] = [];
    for (let i = this.#n - 1; i >= 0 && i >= this.#n - RECENT_ERRORS; i--) {
      out.push(this.#ring[i % RECENT_ERRORS]!);
    }
    return out;
  }
}
