/**
 * Textual and binary forms of IPv4 and Ethernet (MAC) addresses.
 *
 * IPv4 addresses are carried as unsigned 32-bit numbers (network order: `1.2.3.4` is `0x01020304`) so
 * views can return them without allocating. MAC addresses are 6-byte `Uint8Array`s.
 * Parsers are strict and throw `WireError` whose offset is the character index in the input string.
 */
import { WireError } from './errors.ts';

export const IPV4_ADDRESS_LEN = 4;
export const MAC_ADDRESS_LEN = 6;

const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/**
 * Parses dotted-quad IPv4 text into a uint32. Accepts exactly four decimal octets 0..255 separated by
 * single dots; rejects fewer/more octets, leading zeros (`01.2.3.4`, ambiguous with octal), signs,
 * whitespace and anything else.
 */
export function parseIpv4Address(text: string): number {
  if (typeof text !== 'string') {
    throw new WireError('ipv4-address', 'text', 0, `expected a string, got ${typeof text}`);
  }
  let value = 0;
  let i = 0;
  for (let octet = 1; octet <= 4; octet++) {
    const start = i;
    let n = 0;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c < DIGIT_0 || c > DIGIT_9) break;
      n = n * 10 + (c - DIGIT_0);
      i++;
    }
    const digits = i - start;
    if (digits === 0) {
      throw new WireError('ipv4-address', `octet ${octet}`, start,
        `expected a decimal number 0..255 in "${text}"`);
    }
    if (digits > 1 && text.charCodeAt(start) === DIGIT_0) {
      throw new WireError('ipv4-address', `octet ${octet}`, start, `leading zero in "${text}"`);
    }
    if (n > 255) {
      throw new WireError('ipv4-address', `octet ${octet}`, start, `${text.slice(start, i)} > 255 in "${text}"`);
    }
    value = value * 256 + n;
    if (octet < 4) {
      if (text.charCodeAt(i) !== 0x2e) {
        throw new WireError('ipv4-address', 'separator', i,
          `expected '.' after octet ${octet} in "${text}" (need 4 octets)`);
      }
      i++;
    }
  }
  if (i !== text.length) {
    throw new WireError('ipv4-address', 'trailing', i, `unexpected characters after 4th octet in "${text}"`);
  }
  return value;
}

/** Formats a uint32 as dotted-quad text. Throws `RangeError` for anything but an integer 0..2^32-1. */
export function formatIpv4Address(address: number): string {
  checkU32(address);
  return `${address >>> 24}.${(address >>> 16) & 0xff}.${(address >>> 8) & 0xff}.${address & 0xff}`;
}

/** Writes `address` big-endian into `out[offset..offset+4)` and returns `out`. */
export function ipv4ToBytes(address: number, out: Uint8Array = new Uint8Array(4), offset = 0): Uint8Array {
  checkU32(address);
  out[offset] = address >>> 24;
  out[offset + 1] = address >>> 16;
  out[offset + 2] = address >>> 8;
  out[offset + 3] = address;
  return out;
}

/** Reads the big-endian uint32 at `bytes[offset..offset+4)`; the caller guarantees the 4 bytes exist. */
export function bytesToIpv4(bytes: Uint8Array, offset = 0): number {
  return ((bytes[offset] << 24) | (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) | bytes[offset + 3]) >>> 0;
}

function checkU32(address: number): void {
  if (!Number.isInteger(address) || address < 0 || address > 0xffffffff) {
    throw new RangeError(`IPv4 address must be an integer 0..0xffffffff, got ${address}`);
  }
}

function hexValue(c: number): number {
  if (c >= DIGIT_0 && c <= DIGIT_9) return c - DIGIT_0;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/** Parses `aa:bb:cc:dd:ee:ff` (hex digits in either case, exactly two per byte) into a new 6-byte array. */
export function parseMac(text: string): Uint8Array {
  if (typeof text !== 'string') {
    throw new WireError('mac-address', 'text', 0, `expected a string, got ${typeof text}`);
  }
  const out = new Uint8Array(MAC_ADDRESS_LEN);
  for (let b = 0; b < MAC_ADDRESS_LEN; b++) {
    const i = b * 3;
    const hi = hexValue(text.charCodeAt(i));
    const lo = hexValue(text.charCodeAt(i + 1));
    if (hi < 0 || lo < 0) {
      throw new WireError('mac-address', `byte ${b + 1}`, i,
        `expected two hex digits in "${text}" (format aa:bb:cc:dd:ee:ff)`);
    }
    out[b] = (hi << 4) | lo;
    if (b < MAC_ADDRESS_LEN - 1 && text.charCodeAt(i + 2) !== 0x3a) {
      throw new WireError('mac-address', 'separator', i + 2,
        `expected ':' in "${text}" (format aa:bb:cc:dd:ee:ff)`);
    }
  }
  if (text.length !== 17) {
    throw new WireError('mac-address', 'trailing', 17, `unexpected characters after 6th byte in "${text}"`);
  }
  return out;
}

const HEX = '0123456789abcdef';

/** Formats `bytes[offset..offset+6)` as lower-case `aa:bb:cc:dd:ee:ff`. */
export function formatMac(bytes: Uint8Array, offset = 0): string {
  if (offset < 0 || offset + MAC_ADDRESS_LEN > bytes.length) {
    throw new RangeError(`MAC address needs 6 bytes at offset ${offset}, buffer has ${bytes.length}`);
  }
  let s = '';
  for (let b = 0; b < MAC_ADDRESS_LEN; b++) {
    const v = bytes[offset + b];
    s += (b === 0 ? '' : ':') + HEX[v >> 4] + HEX[v & 0xf];
  }
  return s;
}

/** True when `bytes[offset..offset+6)` is ff:ff:ff:ff:ff:ff. */
export function isBroadcastMac(bytes: Uint8Array, offset = 0): boolean {
  for (let b = 0; b < MAC_ADDRESS_LEN; b++) if (bytes[offset + b] !== 0xff) return false;
  return true;
}

/** True when the I/G bit (least significant bit of the first byte) is set; broadcast is multicast too. */
export function isMulticastMac(bytes: Uint8Array, offset = 0): boolean {
  return (bytes[offset] & 0x01) === 1;
}
