/**
 * TAI64N timestamps (12 bytes: big-endian seconds + 2^62, big-endian nanoseconds), the replay guard of
 * an initiation: a responder accepts an initiation from a peer only if its timestamp is strictly newer
 * than the last one it accepted from that peer. Big-endian so that byte order is time order.
 */
export const TAI64N_LEN = 12;

const TAI64_EPOCH = 1n << 62n;
const NS_PER_S = 1_000_000_000n;

/** Nanoseconds since the Unix epoch for a millisecond clock reading. */
export function msToNs(ms: number): bigint {
  return BigInt(Math.floor(ms)) * 1_000_000n;
}

export function encodeTai64n(ns: bigint): Uint8Array {
  const out = new Uint8Array(TAI64N_LEN);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, TAI64_EPOCH + ns / NS_PER_S, false);
  view.setUint32(8, Number(ns % NS_PER_S), false);
  return out;
}

/** Negative, zero or positive like a comparator; both arguments are 12-byte TAI64N labels. */
export function compareTai64n(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < TAI64N_LEN; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return 0;
}

/**
 * Issues strictly increasing timestamps even when the clock stands still or steps back, so two
 * initiations in the same millisecond (or after an NTP step) are not mistaken for replays.
 */
export class Tai64nClock {
  private last = -1n;

  next(nowMs: number): Uint8Array {
    let ns = msToNs(nowMs);
    if (ns <= this.last) ns = this.last + 1n;
    this.last = ns;
    return encodeTai64n(ns);
  }
}
