/**
 * UDP header (RFC 768) with the IPv4 pseudo-header checksum.
 *
 * ```
 *  0               2               4               6               8
 * +---------------+---------------+---------------+---------------+---------
 * |  source port  |   dest port   |    length     |   checksum    | payload
 * +---------------+---------------+---------------+---------------+---------
 * ```
 * A checked view guarantees 8 <= length field <= buffer length; bytes after the length field's end are
 * not payload. Checksum 0 means "not computed" (RFC 768; VXLAN senders SHOULD use it, RFC 7348 §5);
 * a computed checksum of 0 is transmitted as 0xffff.
 */
import { WireError, checkRoom, checkUint } from './errors.ts';
import { finishChecksum, ipv4PseudoHeaderSum, sumBytes } from './checksum.ts';
import { IPPROTO_UDP } from './ipv4.ts';

export const UDP_HEADER_LEN = 8;

const SRC_PORT = 0;
const DST_PORT = 2;
const LENGTH = 4;
const CHECKSUM = 6;

/** Source and destination IPv4 addresses (uint32) entering the UDP checksum. */
export interface Ipv4PseudoHeader {
  src: number;
  dst: number;
}

/** Checked view over a UDP datagram. */
export class UdpView {
  readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    UdpView.check(bytes);
    this.bytes = bytes;
  }

  /** Throws `WireError` unless the header fits and 8 <= length field <= `bytes.length`. */
  static check(bytes: Uint8Array): void {
    if (bytes.length < UDP_HEADER_LEN) {
      throw new WireError('udp', 'header', 0, `datagram is ${bytes.length} bytes, header needs ${UDP_HEADER_LEN}`);
    }
    const length = (bytes[LENGTH] << 8) | bytes[LENGTH + 1];
    if (length < UDP_HEADER_LEN) {
      throw new WireError('udp', 'length', LENGTH, `length ${length} is less than the 8-byte header`);
    }
    if (length > bytes.length) {
      throw new WireError('udp', 'length', LENGTH,
        `length ${length} exceeds the ${bytes.length} bytes available (truncated datagram)`);
    }
  }

  get srcPort(): number { return this.u16(SRC_PORT); }
  get dstPort(): number { return this.u16(DST_PORT); }
  /** The length field: header plus payload. */
  get length(): number { return this.u16(LENGTH); }
  get checksum(): number { return this.u16(CHECKSUM); }
  /** Bytes `[8, length)`. */
  get payload(): Uint8Array { return this.bytes.subarray(UDP_HEADER_LEN, this.length); }

  /** The checksum this datagram should carry for `ip` (never 0: a computed 0 is 0xffff). */
  computeChecksum(ip: Ipv4PseudoHeader): number {
    const len = this.length;
    let sum = ipv4PseudoHeaderSum(ip.src, ip.dst, IPPROTO_UDP, len);
    sum = sumBytes(this.bytes, 0, CHECKSUM, sum);
    sum = sumBytes(this.bytes, UDP_HEADER_LEN, len, sum);
    return finishChecksum(sum) || 0xffff;
  }

  /** True when the stored checksum is non-zero and verifies against `ip`. */
  checksumValid(ip: Ipv4PseudoHeader): boolean {
    if (this.checksum === 0) return false;
    const sum = sumBytes(this.bytes, 0, this.length, ipv4PseudoHeaderSum(ip.src, ip.dst, IPPROTO_UDP, this.length));
    return finishChecksum(sum) === 0;
  }

  /** Stores the computed checksum (after in-place edits such as a NAT port rewrite). */
  fillChecksum(ip: Ipv4PseudoHeader): void {
    const c = this.computeChecksum(ip);
    this.bytes[CHECKSUM] = c >> 8;
    this.bytes[CHECKSUM + 1] = c;
  }

  private u16(at: number): number {
    return (this.bytes[at] << 8) | this.bytes[at + 1];
  }
}

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  /** On parse, a view into the input (not a copy). */
  payload: Uint8Array;
}

/**
 * How `parseUdp` treated the checksum: `verified` against the pseudo-header, `zero` (sender did not
 * compute one), or `unchecked` (non-zero but no pseudo-header was given).
 */
export type UdpChecksumStatus = 'verified' | 'zero' | 'unchecked';

export interface ParsedUdp extends UdpRepr {
  checksum: UdpChecksumStatus;
}

/**
 * Parses a datagram. With `ip`, a non-zero checksum must verify or `WireError` (field `checksum`,
 * offset 6) is thrown. The payload is a view into `bytes`.
 */
export function parseUdp(bytes: Uint8Array, ip?: Ipv4PseudoHeader): ParsedUdp {
  const view = new UdpView(bytes);
  let checksum: UdpChecksumStatus;
  if (view.checksum === 0) {
    checksum = 'zero';
  } else if (ip === undefined) {
    checksum = 'unchecked';
  } else if (view.checksumValid(ip)) {
    checksum = 'verified';
  } else {
    throw new WireError('udp', 'checksum', CHECKSUM,
      `checksum 0x${hex16(view.checksum)} does not verify (expected 0x${hex16(view.computeChecksum(ip))})`);
  }
  return { srcPort: view.srcPort, dstPort: view.dstPort, payload: view.payload, checksum };
}

export function udpBufferLen(repr: UdpRepr): number {
  return UDP_HEADER_LEN + repr.payload.length;
}

/**
 * Writes header and payload at `buf[offset..)` and returns the bytes written. With `ip` the checksum is
 * computed over the pseudo-header; without it the checksum field is 0. `repr.payload` may already sit
 * at `offset + 8` in `buf`.
 */
export function emitUdp(repr: UdpRepr, buf: Uint8Array, offset = 0, ip?: Ipv4PseudoHeader): number {
  checkUint('udp', 'src_port', offset + SRC_PORT, repr.srcPort, 0xffff);
  checkUint('udp', 'dst_port', offset + DST_PORT, repr.dstPort, 0xffff);
  const len = udpBufferLen(repr);
  if (len > 0xffff) {
    throw new WireError('udp', 'length', offset + LENGTH, `datagram would be ${len} bytes, the maximum is 65535`);
  }
  if (ip !== undefined) {
    checkUint('udp', 'pseudo_header_src', offset, ip.src, 0xffffffff);
    checkUint('udp', 'pseudo_header_dst', offset, ip.dst, 0xffffffff);
  }
  checkRoom('udp', buf, offset, len);
  buf.set(repr.payload, offset + UDP_HEADER_LEN);
  put16(buf, offset + SRC_PORT, repr.srcPort);
  put16(buf, offset + DST_PORT, repr.dstPort);
  put16(buf, offset + LENGTH, len);
  put16(buf, offset + CHECKSUM, 0);
  if (ip !== undefined) {
    new UdpView(buf.subarray(offset, offset + len)).fillChecksum(ip);
  }
  return len;
}

function put16(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >> 8;
  buf[at + 1] = value;
}

function hex16(v: number): string {
  return v.toString(16).padStart(4, '0');
}
