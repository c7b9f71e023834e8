// VXLAN network identifiers (RFC 7348: 24 bits) for networks.
//
// Pure: the caller passes the VNIs already in use (the store's `vxlan/<vni>` reservations) and
// then makes the choice durable with a compare-and-swap create of that key; if the create loses
// a race, call again with the winner added to `used`. Shaken Fist picks a random VNI in
// 1..16777215 and retries the etcd create until it succeeds; we do the same, but after a few
// random misses fall back to a linear probe from a random start, so a nearly full space is
// searched to the end and exhaustion is a definite 507 rather than an endless loop.
//
// VNI 0 is never handed out: the floating pseudo-network uses it to mean "no VXLAN".

import { BadRequest, Conflict, InsufficientResources, quote } from '../errors.ts';

export const VNI_MIN = 1;
export const VNI_MAX = 0xffffff;

export interface VniRange {
  min: number;
  max: number;
}

export interface VniAllocateOptions {
  /** Uniform in [0, 1). Default Math.random; inject a seeded source for tests. */
  random?: () => number;
  /** VNIs never handed out (e.g. ones configured statically on this underlay). */
  reserved?: Iterable<number>;
  /** Narrow the space, e.g. to share an underlay with other VXLAN users. Default 1..16777215. */
  range?: VniRange;
  /** Random picks before the linear probe. Default 8. */
  randomTries?: number;
}

export function isValidVni(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= VNI_MIN && value <= VNI_MAX;
}

/** Six lower-case hex digits, as used in device names (`vxlan-00002a`). */
export function vniHex(vni: number): string {
  return vni.toString(16).padStart(6, '0');
}

function checkRange(range: VniRange): void {
  if (!isValidVni(range.min) || !isValidVni(range.max) || range.min > range.max) {
    throw new RangeError(`VNI range must satisfy ${VNI_MIN} <= min <= max <= ${VNI_MAX}, got ${range.min}..${range.max}`);
  }
}

function asSet(values: Iterable<number> | undefined): ReadonlySet<number> {
  if (values === undefined) return new Set();
  return values instanceof Set ? values : new Set(values);
}

/**
 * A VNI in the range that is neither used nor reserved. Throws InsufficientResources (507) when
 * there is none.
 */
export function allocateVni(used: Iterable<number>, options: VniAllocateOptions = {}): number {
  const random = options.random ?? Math.random;
  const range = options.range ?? { min: VNI_MIN, max: VNI_MAX };
  checkRange(range);
  const usedSet = asSet(used);
  const reserved = asSet(options.reserved);
  const span = range.max - range.min + 1;
  const taken = (vni: number): boolean => usedSet.has(vni) || reserved.has(vni);
  const pick = (): number => range.min + Math.min(span - 1, Math.floor(random() * span));

  const tries = options.randomTries ?? 8;
  for (let i = 0; i < tries; i++) {
    const vni = pick();
    if (!taken(vni)) return vni;
  }
  // Linear probe from a random start, wrapping once round the range.
  const start = pick() - range.min;
  for (let i = 0; i < span; i++) {
    const vni = range.min + ((start + i) % span);
    if (!taken(vni)) return vni;
  }
  throw new InsufficientResources(
    `no free VXLAN id in ${range.min}..${range.max}: all ${span} are in use or reserved; ` +
      'delete unused networks (their ids are reusable once they are hard-deleted)',
    { reason: 'vni-exhausted' },
  );
}

/**
 * Validate an explicitly requested VNI (field `vxlan_id`): 400 unless an integer in the range,
 * 409 if it is used or reserved. Returns the VNI.
 */
export function checkRequestedVni(
  value: unknown,
  used: Iterable<number>,
  options: Pick<VniAllocateOptions, 'reserved' | 'range'> = {},
): number {
  const range = options.range ?? { min: VNI_MIN, max: VNI_MAX };
  checkRange(range);
  if (typeof value !== 'number' || !Number.isInteger(value) || value < range.min || value > range.max) {
    throw new BadRequest(`vxlan_id ${quote(value)} is invalid: it must be an integer ${range.min}..${range.max}`, {
      reason: 'vni-range',
    });
  }
  if (asSet(options.reserved).has(value)) {
    throw new Conflict(`vxlan_id ${value} is reserved and cannot be used for a network`, { reason: 'vni-reserved' });
  }
  if (asSet(used).has(value)) {
    throw new Conflict(`vxlan_id ${value} is already used by another network; omit it to have one allocated`, {
      reason: 'vni-taken',
    });
  }
  return value;
}
