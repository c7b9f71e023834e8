// Strict IPv4 addresses and CIDR blocks for the control plane.
//
// Addresses are handled as unsigned 32-bit integers (0 .. 2^32-1) and printed as dotted quads.
// Parsing is strict on purpose, because a netblock typed by an operator becomes routes, DHCP
// ranges and NAT rules: exactly four decimal octets 0..255 without leading zeros (so "010" can
// never be read as octal 8 by some other tool), no surrounding whitespace, a decimal prefix
// length 0..32, and no host bits set below the prefix. IPv6 is recognised only to say it is not
// supported.
//
// Parse failures throw BadRequest (400) with the reference's wording, `cannot parse <field>: …`,
// naming the value and, for host bits, the block the operator probably meant.

import { BadRequest, quote } from '../errors.ts';

/** A parsed, canonical IPv4 block. All addresses are uint32. JSON-serialisable. */
export interface Cidr {
  /** The network (first) address. */
  readonly network: number;
  readonly prefixLen: number;
  /** The netmask, e.g. 0xffffff00 for /24. */
  readonly mask: number;
  /** The last address of the block (the broadcast address for prefixes up to /30). */
  readonly broadcast: number;
  /** Number of addresses in the block, 2^(32-prefixLen). */
  readonly size: number;
  /** Canonical text, e.g. "198.18.4.0/24". */
  readonly text: string;
}

const OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
const PREFIX = /^(?:0|[1-9][0-9]?)$/;

/** Why `text` is not a dotted quad, or the address. */
function scanIpv4(text: string): number | string {
  if (text.includes(':')) return 'is IPv6; only IPv4 is supported';
  if (text !== text.trim()) return 'has surrounding whitespace';
  const parts = text.split('.');
  if (parts.length !== 4) return 'is not a dotted-quad IPv4 address (four octets, e.g. 198.18.4.1)';
  let value = 0;
  for (const part of parts) {
    if (!OCTET.test(part)) {
      return /^0[0-9]+$/.test(part)
        ? `has octet "${part}" with a leading zero; write it as ${Number.parseInt(part, 10)}`
        : `has octet "${part}", which is not a decimal number 0..255`;
    }
    const octet = Number(part);
    if (octet > 255) return `has octet ${octet}, which is above 255`;
    value = value * 256 + octet;
  }
  return value;
}

/** Parse a dotted quad into a uint32; throws BadRequest naming `field`. */
export function parseIpv4(text: unknown, field = 'address'): number {
  if (typeof text !== 'string') {
    throw new BadRequest(`cannot parse ${field}: ${quote(text)} is not a string holding an IPv4 address`, {
      reason: 'parse',
    });
  }
  const result = scanIpv4(text);
  if (typeof result === 'string') {
    throw new BadRequest(`cannot parse ${field}: ${quote(text)} ${result}`, { reason: 'parse' });
  }
  return result;
}

/** True when `text` is a strict dotted quad. */
export function isIpv4(text: unknown): text is string {
  return typeof text === 'string' && typeof scanIpv4(text) === 'number';
}

export function formatIpv4(address: number): string {
  if (!Number.isInteger(address) || address < 0 || address > 0xffffffff) {
    throw new RangeError(`not a uint32 IPv4 address: ${address}`);
  }
  return `${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}`;
}

/** The netmask of a prefix length, as a uint32. */
export function maskOf(prefixLen: number): number {
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 32) {
    throw new RangeError(`prefix length must be an integer 0..32, got ${prefixLen}`);
  }
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/** Build a Cidr from a network address and prefix; throws RangeError if host bits are set. */
export function cidrOf(network: number, prefixLen: number): Cidr {
  const mask = maskOf(prefixLen);
  if ((network & ~mask) >>> 0 !== 0) {
    throw new RangeError(`${formatIpv4(network)}/${prefixLen} has host bits set`);
  }
  const size = 2 ** (32 - prefixLen);
  return {
    network,
    prefixLen,
    mask,
    broadcast: network + size - 1,
    size,
    text: `${formatIpv4(network)}/${prefixLen}`,
  };
}

/**
 * Parse "a.b.c.d/len" strictly. Rejects: non-strings, IPv6, a missing or malformed prefix
 * length, malformed or non-canonical octets, and host bits set (suggesting the right network).
 */
export function parseCidr(text: unknown, field = 'netblock'): Cidr {
  const fail = (why: string, reason = 'parse'): never => {
    throw new BadRequest(`cannot parse ${field}: ${quote(text)} ${why}`, { reason });
  };
  if (typeof text !== 'string') {
    return fail('is not a string in CIDR form such as 198.18.4.0/24');
  }
  if (text.includes(':')) return fail('is IPv6; only IPv4 netblocks are supported', 'not-ipv4');
  const slash = text.indexOf('/');
  if (slash < 0) return fail('has no prefix length; write it in CIDR form such as 198.18.4.0/24');
  const addressText = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  const address = scanIpv4(addressText);
  if (typeof address === 'string') return fail(address);
  if (!PREFIX.test(prefixText) || Number(prefixText) > 32) {
    return fail(`has prefix length "${prefixText}"; it must be a decimal number 0..32 without leading zeros`);
  }
  const prefixLen = Number(prefixText);
  const mask = maskOf(prefixLen);
  if ((address & ~mask) >>> 0 !== 0) {
    const network = (address & mask) >>> 0;
    return fail(
      `has host bits set; the network of ${formatIpv4(address)}/${prefixLen} is ${formatIpv4(network)}/${prefixLen}`,
      'host-bits',
    );
  }
  return cidrOf(address, prefixLen);
}

/** Netmask of a block as a dotted quad, e.g. "255.255.255.0". */
export function netmaskText(cidr: Cidr): string {
  return formatIpv4(cidr.mask);
}

export function contains(cidr: Cidr, address: number): boolean {
  return address >= cidr.network && address <= cidr.broadcast;
}

/** True when every address of `inner` lies in `outer`. */
export function containsCidr(outer: Cidr, inner: Cidr): boolean {
  return inner.network >= outer.network && inner.broadcast <= outer.broadcast;
}

/** True when the blocks share at least one address (CIDR blocks either nest or are disjoint). */
export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.network <= b.broadcast && b.network <= a.broadcast;
}

/**
 * The address at `index` in the block; negative indexes count from the end, as in Python's
 * ipaddress (index 1 is the gateway, -1 the broadcast, -2 the last host).
 */
export function addressAt(cidr: Cidr, index: number): number {
  const i = index < 0 ? cidr.size + index : index;
  if (!Number.isInteger(i) || i < 0 || i >= cidr.size) {
    throw new RangeError(`index ${index} is outside ${cidr.text} (${cidr.size} addresses)`);
  }
  return cidr.network + i;
}

/** The index of `address` in the block, or -1 if it lies outside. */
export function indexOf(cidr: Cidr, address: number): number {
  return contains(cidr, address) ? address - cidr.network : -1;
}

/** Addresses of the block from index `from` to index `to` inclusive (defaults: all of them). */
export function* addresses(cidr: Cidr, from = 0, to = cidr.size - 1): Generator<number> {
  for (let i = Math.max(0, from); i <= Math.min(to, cidr.size - 1); i++) yield cidr.network + i;
}
