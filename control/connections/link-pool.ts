// Link addresses of connections: a configured pool (a CIDR block) cut into /31 pairs (RFC 3021
// point-to-point), one pair per connection. The even address is the outbound (source) side, the
// odd one the inbound side the source dials. A pair is allocated when the connection is added and
// kept until its record is deleted, so the address the source reaches its peer at survives
// re-establishment (daemon restarts, WAITING and back).
//
// Pure: the store layer passes the pair indexes in use (its claim keys) and makes the choice
// durable with a create-if-absent claim; a lost race calls again with the winner added. The
// lowest free pair is taken, so allocation is deterministic and a test can predict addresses.
// Exhaustion is not an exception: the caller puts the connection in ERROR with `exhaustedReason`.

import { BadRequest, quote } from '../errors.ts';
import { type Cidr, formatIpv4, parseCidr, parseIpv4 } from '../net/ipv4-cidr.ts';
import type { LinkAddresses } from './model.ts';

/** A default that every process agrees on when nothing is configured; 16384 connections. */
export const DEFAULT_LINK_POOL = '198.19.128.0/17';
/** Smallest pool: one pair. Largest: a /8 (8 million pairs) is far beyond any store we keep. */
const MIN_PREFIX = 8;
const MAX_PREFIX = 31;

export interface LinkPair extends LinkAddresses {
  /** The pair's index in the pool: its claim key. */
  index: number;
}

/** Parses and checks a configured pool; 400 naming `field`. */
export function parseLinkPool(value: unknown, field = 'linkPool'): Cidr {
  const cidr = parseCidr(value, field);
  if (cidr.prefixLen < MIN_PREFIX || cidr.prefixLen > MAX_PREFIX) {
    throw new BadRequest(`${field} ${quote(value)} must have a prefix length /${MIN_PREFIX}../${MAX_PREFIX} (each connection takes a /31)`, {
      reason: field,
    });
  }
  return cidr;
}

/** Number of /31 pairs in the pool. */
export function pairCount(pool: Cidr): number {
  return pool.size / 2;
}

export function pairAt(pool: Cidr, index: number): LinkPair {
  if (!Number.isInteger(index) || index < 0 || index >= pairCount(pool)) {
    throw new RangeError(`link pair ${index} is outside ${pool.text} (${pairCount(pool)} pairs)`);
  }
  const base = pool.network + index * 2;
  return { index, outbound_address: formatIpv4(base), inbound_address: formatIpv4(base + 1), prefix_len: 31 };
}

/** The pair holding `address`, or -1 when it is outside the pool. */
export function pairIndexOf(pool: Cidr, address: string): number {
  const value = parseIpv4(address, 'link address');
  if (value < pool.network || value > pool.broadcast) return -1;
  return Math.floor((value - pool.network) / 2);
}

/** The lowest pair not in `used`, or null when the pool is exhausted. */
export function allocateLinkPair(pool: Cidr, used: ReadonlySet<number>): LinkPair | null {
  const count = pairCount(pool);
  for (let index = 0; index < count; index++) {
    if (!used.has(index)) return pairAt(pool, index);
  }
  return null;
}

/** The operator-facing reason of an ERROR for an exhausted pool. */
export function exhaustedReason(pool: Cidr): string {
  return (
    `no free link address: the link pool ${pool.text} has all ${pairCount(pool)} address pairs in use; ` +
    'remove unused connections or configure a larger link pool'
  );
}
