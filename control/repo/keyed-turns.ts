// Turns per key within one process: run(keys, fn) starts fn once every earlier run sharing one of its keys
// has finished, so writers of the same records queue instead of losing each other's compare-and-swap.
// Only an optimisation: other processes still race, and the store's compares stay the guard. Keys are
// taken together (a run waits for the tails of all its keys at once), so runs never wait in a cycle.

export class KeyedTurns {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(keys: Iterable<string>, fn: () => Promise<T>): Promise<T> {
    const mine = [...new Set(keys)];
    const before = mine.map((k) => this.#tails.get(k)).filter((p): p is Promise<void> => p !== undefined);
    let done!: () => void;
    const tail = new Promise<void>((resolve) => { done = resolve; });
    for (const k of mine) this.#tails.set(k, tail);
    try {
      await Promise.all(before);
      return await fn();
    } finally {
      done();
      for (const k of mine) if (this.#tails.get(k) === tail) this.#tails.delete(k);
    }
  }

  /** Keys with a run queued or running (for tests). */
  get size(): number {
    return this.#tails.size;
  }
}
