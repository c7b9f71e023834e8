// MAC addresses of network interfaces, as pure functions.
//
// Allocated MACs are `02:00:00:xx:xx:xx` (locally administered, unicast; SF's `random_macaddr`).
// Uniqueness is made durable by the store layer, which claims `/appnet/macs/<mac>` with a
// createRevision == 0 compare; here a MAC is only checked against the set of claims it read.
// Unlike the reference (#535), a user-given MAC is checked for uniqueness too: 409 when taken.

import { BadRequest, Conflict, InsufficientResources, quote } from '../errors.ts';

export const MAC_PREFIX = '02:00:00';
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
/** Random picks before giving up (the 24-bit space is vast; a miss means the set is near full). */
const RANDOM_TRIES = 64;

/** Canonical (lower-case, colon-separated) form of a user-given MAC. 400 naming `field` if bad. */
export function parseMac(value: unknown, field = 'macaddr'): string {
  if (typeof value !== 'string') {
    throw new BadRequest(`${field} must be a string like "02:00:00:12:34:56", got ${quote(value)}`, { reason: 'mac' });
  }
  const mac = value.trim().toLowerCase().replace(/-/g, ':');
  if (!MAC.test(mac)) {
    throw new BadRequest(`${field} ${quote(value)} is not a MAC address; write six hex octets like "02:00:00:12:34:56"`, {
      reason: 'mac',
    });
  }
  const first = Number.parseInt(mac.slice(0, 2), 16);
  if ((first & 1) === 1) {
    throw new BadRequest(`${field} ${quote(value)} is a multicast address; an interface needs a unicast MAC (even first octet)`, {
      reason: 'mac',
    });
  }
  if (mac === '00:00:00:00:00:00') {
    throw new BadRequest(`${field} ${quote(value)} is the all-zero address`, { reason: 'mac' });
  }
  return mac;
}

/** A user-given MAC, validated and checked against `used`: 409 when already claimed. */
export function checkRequestedMac(value: unknown, used: ReadonlySet<string>, field = 'macaddr'): string {
  const mac = parseMac(value, field);
  if (used.has(mac)) {
    throw new Conflict(`${field} ${mac} is already used by another interface; omit it to have one allocated`, {
      reason: 'mac-taken',
    });
  }
  return mac;
}

/** A random `02:00:00:xx:xx:xx` not in `used`. 507 if none was found. */
export function allocateMac(used: ReadonlySet<string>, random: () => number = Math.random): string {
  for (let i = 0; i < RANDOM_TRIES; i++) {
    const n = Math.min(0xffffff, Math.floor(random() * 0x1000000));
    const hex = n.toString(16).padStart(6, '0');
    const mac = `${MAC_PREFIX}:${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4, 6)}`;
    if (!used.has(mac)) return mac;
  }
  throw new InsufficientResources(`no free MAC address found in ${MAC_PREFIX}:xx:xx:xx after ${RANDOM_TRIES} tries`, {
    reason: 'mac-congested',
  });
}
