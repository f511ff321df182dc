/**
 * Named blocks of memory shared by every isolate of one Loom process (the
 * main isolate and its `workers:`), for middleware state that must count once
 * per process, such as a rate limit's key table.
 *
 * The supervisor owns the blocks: before it posts a config it reserves one
 * block per id the config needs ({@linkcode SharedRegions.reserve}) and sends
 * {@linkcode SharedRegions.snapshot} with the config; each isolate views the
 * same memory through {@linkcode SharedRegions.attach}. A block keeps its id
 * (and its contents) across reloads while a config still asks for the same id
 * and size; blocks no config asks for are dropped (isolates still holding an
 * old snapshot keep theirs until it is collected).
 *
 * @module
 */

/** What the supervisor posts to isolates (structured-clonable; the buffers are shared, not copied). */
export interface SharedRegionsSnapshot {
  /** `[id, buffer]` pairs. */
  regions: [string, SharedArrayBuffer][];
}

/** Shared memory blocks by id. */
export class SharedRegions {
  readonly #regions = new Map<string, SharedArrayBuffer | ArrayBuffer>();
  /** Ids asked for that the snapshot lacked (each reported once by the caller). */
  readonly missing = new Set<string>();

  /** A view of the blocks of `snapshot` (an isolate's side), or an empty owner. */
  constructor(snapshot?: SharedRegionsSnapshot) {
    for (const [id, buf] of snapshot?.regions ?? []) this.#regions.set(id, buf);
  }

  /** A view of the blocks posted by the supervisor. */
  static attach(snapshot: SharedRegionsSnapshot): SharedRegions {
    return new SharedRegions(snapshot);
  }

  /**
   * The block `id` of `bytes` bytes: the shared one when the supervisor
   * reserved it with that size, else a new zeroed block private to this
   * isolate (recorded in {@linkcode missing}; a unit test, a tool, or a
   * middleware whose needs were not declared).
   */
  get(id: string, bytes: number): SharedArrayBuffer | ArrayBuffer {
    const b = this.#regions.get(id);
    if (b !== undefined && b.byteLength === bytes) return b;
    this.missing.add(id);
    const own = new ArrayBuffer(bytes);
    this.#regions.set(id, own);
    return own;
  }

  /**
   * Owner side: makes the set of shared blocks exactly `needs` (id → bytes).
   * A block already there with the same size is kept with its contents.
   */
  reserve(needs: ReadonlyMap<string, number>): void {
    for (const id of [...this.#regions.keys()]) {
      if (needs.get(id) !== this.#regions.get(id)!.byteLength) this.#regions.delete(id);
    }
    for (const [id, bytes] of needs) {
      if (!this.#regions.has(id)) this.#regions.set(id, new SharedArrayBuffer(bytes));
    }
  }

  /** The shared blocks, to post with the config. */
  snapshot(): SharedRegionsSnapshot {
    const regions: [string, SharedArrayBuffer][] = [];
    for (const [id, b] of this.#regions) if (b instanceof SharedArrayBuffer) regions.push([id, b]);
    return { regions };
  }
}
