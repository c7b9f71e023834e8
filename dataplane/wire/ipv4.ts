/**
 * IPv4 header (RFC 791), options carried opaquely.
 *
 * ```
 *  0       4       8              16      19                      31
 * +-------+-------+---------------+-------------------------------+
 * |version|  IHL  |  DSCP  | ECN  |          total length         |  0
 * +-------+-------+---------------+-------+-----------------------+
 * |        identification         |0|D|M|   fragment offset     |  4
 * +---------------+---------------+-------+-----------------------+
 * |      TTL      |   protocol    |        header checksum        |  8
 * +---------------+---------------+-------------------------------+
 * |                        source address                         | 12
 * |                     destination address                       | 16
 * |                options (IHL*4 - 20 bytes)                     | 20
 * +---------------------------------------------------------------+
 * ```
 * A checked view guarantees 20 <= IHL*4 <= total length <= buffer length, so the payload
 * `[IHL*4, total length)` always exists; bytes after total length (Ethernet padding) are not payload.
 * The header checksum is not part of the check: `checksumValid` reports it and `parseIpv4` enforces it.
 */
import { WireError, checkRoom, checkUint } from './errors.ts';
import { bytesToIpv4, ipv4ToBytes } from './address.ts';
import { finishChecksum, sumBytes } from './checksum.ts';

export const IPV4_HEADER_LEN = 20;
export const IPV4_MAX_HEADER_LEN = 60;
export const IPV4_MAX_PACKET_LEN = 0xffff;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

const VER_IHL = 0;
const DSCP_ECN = 1;
const TOTAL_LENGTH = 2;
const IDENT = 4;
const FLAGS_FRAG = 6;
const TTL = 8;
const PROTOCOL = 9;
const CHECKSUM = 10;
const SRC = 12;
const DST = 16;

const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;
const FRAG_MASK = 0x1fff;

/** Checked view over an IPv4 packet. Scalars never allocate; byte ranges are zero-copy views. */
export class Ipv4View {
  readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    Ipv4View.check(bytes);
    this.bytes = bytes;
  }

  /** Throws `WireError` unless version, IHL and total length are consistent with each other and `bytes`. */
  static check(bytes: Uint8Array): void {
    if (bytes.length < IPV4_HEADER_LEN) {
      throw new WireError('ipv4', 'header', 0, `packet is ${bytes.length} bytes, header needs ${IPV4_HEADER_LEN}`);
    }
    const version = bytes[VER_IHL] >> 4;
    if (version !== 4) {
      throw new WireError('ipv4', 'version', VER_IHL, `version ${version}, expected 4`);
    }
    const headerLen = (bytes[VER_IHL] & 0x0f) * 4;
    if (headerLen < IPV4_HEADER_LEN) {
      throw new WireError('ipv4', 'ihl', VER_IHL, `IHL ${headerLen / 4} is below the minimum 5`);
    }
    if (headerLen > bytes.length) {
      throw new WireError('ipv4', 'ihl', VER_IHL,
        `header length ${headerLen} exceeds the ${bytes.length} bytes available`);
    }
    const totalLength = (bytes[TOTAL_LENGTH] << 8) | bytes[TOTAL_LENGTH + 1];
    if (totalLength < headerLen) {
      throw new WireError('ipv4', 'total_length', TOTAL_LENGTH,
        `total length ${totalLength} is less than header length ${headerLen}`);
    }
    if (totalLength > bytes.length) {
      throw new WireError('ipv4', 'total_length', TOTAL_LENGTH,
        `total length ${totalLength} exceeds the ${bytes.length} bytes available (truncated packet)`);
    }
  }

  get version(): number { return this.bytes[VER_IHL] >> 4; }
  /** Header length in bytes (IHL * 4). */
  get headerLen(): number { return (this.bytes[VER_IHL] & 0x0f) * 4; }
  get dscp(): number { return this.bytes[DSCP_ECN] >> 2; }
  get ecn(): number { return this.bytes[DSCP_ECN] & 0x03; }
  get totalLength(): number { return this.u16(TOTAL_LENGTH); }
  get id(): number { return this.u16(IDENT); }
  get dontFragment(): boolean { return (this.u16(FLAGS_FRAG) & FLAG_DF) !== 0; }
  get moreFragments(): boolean { return (this.u16(FLAGS_FRAG) & FLAG_MF) !== 0; }
  /** Fragment offset in bytes (the 13-bit field times 8). */
  get fragmentOffset(): number { return (this.u16(FLAGS_FRAG) & FRAG_MASK) * 8; }
  get ttl(): number { return this.bytes[TTL]; }
  get protocol(): number { return this.bytes[PROTOCOL]; }
  get checksum(): number { return this.u16(CHECKSUM); }
  get src(): number { return bytesToIpv4(this.bytes, SRC); }
  get dst(): number { return bytesToIpv4(this.bytes, DST); }
  get options(): Uint8Array { return this.bytes.subarray(IPV4_HEADER_LEN, this.headerLen); }
  /** Bytes `[IHL*4, total length)`; trailing link-layer padding excluded. */
  get payload(): Uint8Array { return this.bytes.subarray(this.headerLen, this.totalLength); }
  /** True when the header checksum verifies. */
  get checksumValid(): boolean { return finishChecksum(sumBytes(this.bytes, 0, this.headerLen)) === 0; }

  /** The header checksum the header should carry, ignoring the stored one. */
  computeChecksum(): number {
    return finishChecksum(sumBytes(this.bytes, 0, CHECKSUM) + sumBytes(this.bytes, CHECKSUM + 2, this.headerLen));
  }

  /** Recomputes and stores the header checksum (after in-place edits such as a TTL decrement). */
  fillChecksum(): void {
    const c = this.computeChecksum();
    this.bytes[CHECKSUM] = c >> 8;
    this.bytes[CHECKSUM + 1] = c;
  }

  private u16(at: number): number {
    return (this.bytes[at] << 8) | this.bytes[at + 1];
  }
}

export interface Ipv4Repr {
  dscp: number;
  ecn: number;
  id: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** In bytes; a multiple of 8, at most 65528. */
  fragmentOffset: number;
  ttl: number;
  protocol: number;
  /** uint32 */
  src: number;
  dst: number;
  /** Raw option bytes, a multiple of 4 long, at most 40. Empty for a 20-byte header. */
  options: Uint8Array;
  /** On parse, a view into the input (not a copy). */
  payload: Uint8Array;
}

/**
 * Parses a packet and verifies the header checksum (throws `WireError` on field `checksum`, offset 10).
 * Options are copied; the payload is a view into `bytes`. The reserved flag bit is ignored.
 */
export function parseIpv4(bytes: Uint8Array): Ipv4Repr {
  const view = new Ipv4View(bytes);
  if (!view.checksumValid) {
    throw new WireError('ipv4', 'checksum', CHECKSUM,
      `header checksum 0x${hex16(view.checksum)} does not verify (expected 0x${hex16(view.computeChecksum())})`);
  }
  return {
    dscp: view.dscp,
    ecn: view.ecn,
    id: view.id,
    dontFragment: view.dontFragment,
    moreFragments: view.moreFragments,
    fragmentOffset: view.fragmentOffset,
    ttl: view.ttl,
    protocol: view.protocol,
    src: view.src,
    dst: view.dst,
    options: view.options.slice(),
    payload: view.payload,
  };
}

/** Header plus payload length: the total length field `emitIpv4` writes. */
export function ipv4BufferLen(repr: Ipv4Repr): number {
  return IPV4_HEADER_LEN + repr.options.length + repr.payload.length;
}

/**
 * Writes header (with computed checksum) and payload at `buf[offset..)` and returns the bytes written.
 * `repr.payload` may already sit at its final place in `buf` (in-place construction).
 */
export function emitIpv4(repr: Ipv4Repr, buf: Uint8Array, offset = 0): number {
  const optLen = repr.options.length;
  if (optLen % 4 !== 0 || optLen > IPV4_MAX_HEADER_LEN - IPV4_HEADER_LEN) {
    throw new WireError('ipv4', 'options', offset + IPV4_HEADER_LEN,
      `options are ${optLen} bytes, must be a multiple of 4 and at most 40`);
  }
  const headerLen = IPV4_HEADER_LEN + optLen;
  const total = headerLen + repr.payload.length;
  if (total > IPV4_MAX_PACKET_LEN) {
    throw new WireError('ipv4', 'total_length', offset + TOTAL_LENGTH,
      `packet would be ${total} bytes, the maximum is ${IPV4_MAX_PACKET_LEN}`);
  }
  checkUint('ipv4', 'dscp', offset + DSCP_ECN, repr.dscp, 0x3f);
  checkUint('ipv4', 'ecn', offset + DSCP_ECN, repr.ecn, 0x03);
  checkUint('ipv4', 'id', offset + IDENT, repr.id, 0xffff);
  if (!Number.isInteger(repr.fragmentOffset) || repr.fragmentOffset < 0
      || repr.fragmentOffset % 8 !== 0 || repr.fragmentOffset > FRAG_MASK * 8) {
    throw new WireError('ipv4', 'fragment_offset', offset + FLAGS_FRAG,
      `${repr.fragmentOffset} is not a multiple of 8 in 0..${FRAG_MASK * 8}`);
  }
  checkUint('ipv4', 'ttl', offset + TTL, repr.ttl, 0xff);
  checkUint('ipv4', 'protocol', offset + PROTOCOL, repr.protocol, 0xff);
  checkUint('ipv4', 'src', offset + SRC, repr.src, 0xffffffff);
  checkUint('ipv4', 'dst', offset + DST, repr.dst, 0xffffffff);
  checkRoom('ipv4', buf, offset, total);

  const flagsFrag = (repr.dontFragment ? FLAG_DF : 0) | (repr.moreFragments ? FLAG_MF : 0)
    | (repr.fragmentOffset / 8);
  buf.set(repr.payload, offset + headerLen);
  buf[offset + VER_IHL] = 0x40 | (headerLen / 4);
  buf[offset + DSCP_ECN] = (repr.dscp << 2) | repr.ecn;
  put16(buf, offset + TOTAL_LENGTH, total);
  put16(buf, offset + IDENT, repr.id);
  put16(buf, offset + FLAGS_FRAG, flagsFrag);
  buf[offset + TTL] = repr.ttl;
  buf[offset + PROTOCOL] = repr.protocol;
  put16(buf, offset + CHECKSUM, 0);
  ipv4ToBytes(repr.src, buf, offset + SRC);
  ipv4ToBytes(repr.dst, buf, offset + DST);
  buf.set(repr.options, offset + IPV4_HEADER_LEN);
  put16(buf, offset + CHECKSUM, finishChecksum(sumBytes(buf, offset, offset + headerLen)));
  return total;
}

function put16(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >> 8;
  buf[at + 1] = value;
}

function hex16(v: number): string {
  return v.toString(16).padStart(4, '0');
}
