/**
 * Handshake load measurement and the per-source token bucket, both applied by the responder before it
 * spends Diffie-Hellman work on an initiation. Memory is bounded: the load meter keeps at most
 * `threshold + 1` timestamps and the bucket table is swept of idle (full) buckets once a second.
 */

/** "Under load" = more than `threshold` handshake messages received in the last `windowMs`. */
export class LoadMeter {
  private readonly ring: number[];
  private next = 0;
  private count = 0;

  constructor(readonly threshold: number, readonly windowMs = 1000) {
    if (!Number.isInteger(threshold) || threshold < 0) throw new RangeError(`loadThreshold ${threshold} must be an integer >= 0`);
    this.ring = new Array<number>(threshold + 1).fill(0);
  }

  /** Records one message at `now` and reports whether the responder is now under load. */
  record(now: number): boolean {
    this.ring[this.next] = now;
    this.next = (this.next + 1) % this.ring.length;
    if (this.count < this.ring.length) this.count++;
    return this.underLoad(now);
  }

  underLoad(now: number): boolean {
    if (this.count < this.ring.length) return false;
    // The oldest of the last threshold+1 messages is the slot about to be overwritten.
    return now - this.ring[this.next] < this.windowMs;
  }
}

export interface TokenBucketOptions {
  /** Tokens added per second (sustained handshakes per source). */
  ratePerSecond: number;
  /** Bucket size (handshakes a source may send at once). */
  burst: number;
}

export const DEFAULT_RATE_LIMIT: TokenBucketOptions = { ratePerSecond: 20, burst: 5 };

interface Bucket { tokens: number; lastMs: number }

/**
 * One token bucket per source address (the IP, not the port: changing ports must not buy more
 * handshakes). A source that floods drains only its own bucket, so the others still get through.
 */
export class SourceRateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweepMs = -Infinity;
  private readonly opts: TokenBucketOptions;

  constructor(opts: Partial<TokenBucketOptions> = {}) {
    this.opts = { ...DEFAULT_RATE_LIMIT, ...opts };
    if (!(this.opts.ratePerSecond > 0) || !(this.opts.burst >= 1)) {
      throw new RangeError(`rate limit needs ratePerSecond > 0 and burst >= 1, got ${JSON.stringify(this.opts)}`);
    }
  }

  /** Takes one token for `source` at `now`; false means drop the message. */
  allow(source: string, now: number): boolean {
    this.sweep(now);
    let b = this.buckets.get(source);
    if (b === undefined) {
      b = { tokens: this.opts.burst, lastMs: now };
      this.buckets.set(source, b);
    } else {
      const refill = (Math.max(0, now - b.lastMs) / 1000) * this.opts.ratePerSecond;
      b.tokens = Math.min(this.opts.burst, b.tokens + refill);
      b.lastMs = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Sources currently tracked (for tests and metrics). */
  get size(): number { return this.buckets.size; }

  private sweep(now: number): void {
    if (now - this.lastSweepMs < 1000) return;
    this.lastSweepMs = now;
    // A bucket idle long enough to have refilled is indistinguishable from a new one: drop it.
    const fullAfterMs = (this.opts.burst / this.opts.ratePerSecond) * 1000;
    for (const [k, b] of this.buckets) if (now - b.lastMs >= fullAfterMs) this.buckets.delete(k);
  }
}
