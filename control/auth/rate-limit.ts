// Failed POST /auth attempts, limited per source address: a token bucket of `burst` failures that
// refills one every `refillSeconds`. While a source's bucket is empty its attempts are refused
// with 429 before any key is hashed, so guessing is slow and the hashing threads stay free.
// Successes cost nothing. Memory is bounded: at most `maxSources` buckets (the fullest dropped).
export interface RateLimitOptions {
  burst?: number;
  refillSeconds?: number;
  maxSources?: number;
  now?: () => number;
}

export class FailureLimiter {
  readonly #burst: number;
  readonly #refillMs: number;
  readonly #max: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(o: RateLimitOptions = {}) {
    this.#burst = o.burst ?? 10;
    this.#refillMs = (o.refillSeconds ?? 6) * 1000;
    this.#max = o.maxSources ?? 10_000;
    this.#now = o.now ?? Date.now;
  }

  #level(source: string): { tokens: number; at: number } {
    const now = this.#now();
    const b = this.#buckets.get(source) ?? { tokens: this.#burst, at: now };
    const refilled = Math.floor((now - b.at) / this.#refillMs);
    if (refilled > 0) {
      b.tokens = Math.min(this.#burst, b.tokens + refilled);
      b.at = b.tokens === this.#burst ? now : b.at + refilled * this.#refillMs;
    }
    return b;
  }

  /** Seconds until `source` may try again; 0 when it may try now. */
  retryAfter(source: string): number {
    const b = this.#level(source);
    return b.tokens > 0 ? 0 : Math.max(1, Math.ceil((b.at + this.#refillMs - this.#now()) / 1000));
  }

  /** Sources remembered (bounded by maxSources). */
  get size(): number {
    return this.#buckets.size;
  }

  fail(source: string): void {
    const b = this.#level(source);
    b.tokens = Math.max(0, b.tokens - 1);
    this.#buckets.set(source, b);
    if (this.#buckets.size > this.#max) {
      // Forget sources that may still try first (they lose at most part of a burst), then the oldest.
      for (const k of this.#buckets.keys()) {
        if (this.#buckets.size <= this.#max / 2) break;
        if (this.#level(k).tokens > 0) this.#buckets.delete(k);
      }
      for (const k of this.#buckets.keys()) {
        if (this.#buckets.size <= this.#max) break;
        this.#buckets.delete(k);
      }
    }
  }
}
