/**
 * TCP header (RFC 9293) with the IPv4 pseudo-header checksum. Options are carried opaquely.
 *
 * ```
 *  0               2               4                               8
 * +---------------+---------------+-------------------------------+
 * |  source port  |   dest port   |        sequence number        |
 * +---------------+---------------+-------------------------------+  8
 * |     acknowledgment number     |off|rsv| flags |    window     |  12..16
 * +-------------------------------+-------+-------+---------------+
 * |   checksum    |urgent pointer |  options (data offset*4 - 20) | payload
 * +---------------+---------------+-------------------------------+
 * ```
 * A checked view guarantees 20 <= data offset*4 <= buffer length. The segment is the whole buffer (the
 * IPv4 payload), so the checksum covers all of it.
 */
import { WireError, checkRoom, checkUint } from './errors.ts';
import { finishChecksum, ipv4PseudoHeaderSum, sumBytes } from './checksum.ts';
import { IPPROTO_TCP } from './ipv4.ts';
import type { Ipv4PseudoHeader } from './udp.ts';

export const TCP_HEADER_LEN = 20;
export const TCP_MAX_HEADER_LEN = 60;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

const SRC_PORT = 0;
const DST_PORT = 2;
const SEQ = 4;
const ACK = 8;
const DATA_OFFSET = 12;
const FLAGS = 13;
const WINDOW = 14;
const CHECKSUM = 16;
const URGENT = 18;

/** Checked view over a TCP segment. */
export class TcpView {
  readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    TcpView.check(bytes);
    this.bytes = bytes;
  }

  /** Throws `WireError` unless the 20-byte header fits and 20 <= data offset*4 <= `bytes.length`. */
  static check(bytes: Uint8Array): void {
    if (bytes.length < TCP_HEADER_LEN) {
      throw new WireError('tcp', 'header', 0, `segment is ${bytes.length} bytes, header needs ${TCP_HEADER_LEN}`);
    }
    const headerLen = (bytes[DATA_OFFSET] >> 4) * 4;
    if (headerLen < TCP_HEADER_LEN) {
      throw new WireError('tcp', 'data_offset', DATA_OFFSET, `data offset ${headerLen / 4} is below the minimum 5`);
    }
    if (headerLen > bytes.length) {
      throw new WireError('tcp', 'data_offset', DATA_OFFSET,
        `header length ${headerLen} exceeds the ${bytes.length} bytes available (truncated segment)`);
    }
  }

  get srcPort(): number { return this.u16(SRC_PORT); }
  get dstPort(): number { return this.u16(DST_PORT); }
  get seq(): number { return this.u32(SEQ); }
  get ack(): number { return this.u32(ACK); }
  /** Header length in bytes (data offset * 4). */
  get headerLen(): number { return (this.bytes[DATA_OFFSET] >> 4) * 4; }
  /** The 8 flag bits CWR..FIN (`TCP_*`); the 3 reserved bits and the historic NS bit are not included. */
  get flags(): number { return this.bytes[FLAGS]; }
  get window(): number { return this.u16(WINDOW); }
  get checksum(): number { return this.u16(CHECKSUM); }
  get urgent(): number { return this.u16(URGENT); }
  get optionsLen(): number { return this.headerLen - TCP_HEADER_LEN; }
  get options(): Uint8Array { return this.bytes.subarray(TCP_HEADER_LEN, this.headerLen); }
  get payload(): Uint8Array { return this.bytes.subarray(this.headerLen); }

  computeChecksum(ip: Ipv4PseudoHeader): number {
    let sum = ipv4PseudoHeaderSum(ip.src, ip.dst, IPPROTO_TCP, this.bytes.length);
    sum = sumBytes(this.bytes, 0, CHECKSUM, sum);
    sum = sumBytes(this.bytes, CHECKSUM + 2, this.bytes.length, sum);
    return finishChecksum(sum);
  }

  checksumValid(ip: Ipv4PseudoHeader): boolean {
    const sum = sumBytes(this.bytes, 0, this.bytes.length, ipv4PseudoHeaderSum(ip.src, ip.dst, IPPROTO_TCP, this.bytes.length));
    return finishChecksum(sum) === 0;
  }

  fillChecksum(ip: Ipv4PseudoHeader): void {
    const c = this.computeChecksum(ip);
    this.bytes[CHECKSUM] = c >> 8;
    this.bytes[CHECKSUM + 1] = c;
  }

  private u16(at: number): number {
    return (this.bytes[at] << 8) | this.bytes[at + 1];
  }

  private u32(at: number): number {
    return ((this.bytes[at] << 24) | (this.bytes[at + 1] << 16) | (this.bytes[at + 2] << 8) | this.bytes[at + 3]) >>> 0;
  }
}

/** tcpdump's flag notation: `S`, `S.`, `P.`, `F.`, `R`, `.` … (`.` is ACK; E/W for ECE/CWR, U for URG). */
export function formatTcpFlags(flags: number): string {
  let s = '';
  if (flags & TCP_FIN) s += 'F';
  if (flags & TCP_SYN) s += 'S';
  if (flags & TCP_RST) s += 'R';
  if (flags & TCP_PSH) s += 'P';
  if (flags & TCP_URG) s += 'U';
  if (flags & TCP_ECE) s += 'E';
  if (flags & TCP_CWR) s += 'W';
  if (flags & TCP_ACK) s += '.';
  return s === '' ? 'none' : s;
}

export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** `TCP_*` bits. */
  flags: number;
  window: number;
  urgent: number;
  /** Raw option bytes, a multiple of 4 long, at most 40. */
  options: Uint8Array;
  /** On parse, a view into the input. */
  payload: Uint8Array;
}

/** Parses a segment; with `ip` the checksum must verify (`WireError` on field `checksum`, offset 16). */
export function parseTcp(bytes: Uint8Array, ip?: Ipv4PseudoHeader): TcpRepr {
  const view = new TcpView(bytes);
  if (ip !== undefined && !view.checksumValid(ip)) {
    throw new WireError('tcp', 'checksum', CHECKSUM,
      `checksum 0x${hex16(view.checksum)} does not verify (expected 0x${hex16(view.computeChecksum(ip))})`);
  }
  return {
    srcPort: view.srcPort,
    dstPort: view.dstPort,
    seq: view.seq,
    ack: view.ack,
    flags: view.flags,
    window: view.window,
    urgent: view.urgent,
    options: view.options.slice(),
    payload: view.payload,
  };
}

export function tcpBufferLen(repr: TcpRepr): number {
  return TCP_HEADER_LEN + repr.options.length + repr.payload.length;
}

/** Writes the segment at `buf[offset..)` (checksum over `ip`, else 0) and returns the bytes written. */
export function emitTcp(repr: TcpRepr, buf: Uint8Array, offset = 0, ip?: Ipv4PseudoHeader): number {
  const optLen = repr.options.length;
  if (optLen % 4 !== 0 || optLen > TCP_MAX_HEADER_LEN - TCP_HEADER_LEN) {
    throw new WireError('tcp', 'options', offset + TCP_HEADER_LEN,
      `options are ${optLen} bytes, must be a multiple of 4 and at most 40`);
  }
  checkUint('tcp', 'src_port', offset + SRC_PORT, repr.srcPort, 0xffff);
  checkUint('tcp', 'dst_port', offset + DST_PORT, repr.dstPort, 0xffff);
  checkUint('tcp', 'seq', offset + SEQ, repr.seq, 0xffffffff);
  checkUint('tcp', 'ack', offset + ACK, repr.ack, 0xffffffff);
  checkUint('tcp', 'flags', offset + FLAGS, repr.flags, 0xff);
  checkUint('tcp', 'window', offset + WINDOW, repr.window, 0xffff);
  checkUint('tcp', 'urgent', offset + URGENT, repr.urgent, 0xffff);
  const len = tcpBufferLen(repr);
  checkRoom('tcp', buf, offset, len);
  const headerLen = TCP_HEADER_LEN + optLen;
  buf.set(repr.payload, offset + headerLen);
  put16(buf, offset + SRC_PORT, repr.srcPort);
  put16(buf, offset + DST_PORT, repr.dstPort);
  put32(buf, offset + SEQ, repr.seq);
  put32(buf, offset + ACK, repr.ack);
  buf[offset + DATA_OFFSET] = (headerLen / 4) << 4;
  buf[offset + FLAGS] = repr.flags;
  put16(buf, offset + WINDOW, repr.window);
  put16(buf, offset + CHECKSUM, 0);
  put16(buf, offset + URGENT, repr.urgent);
  buf.set(repr.options, offset + TCP_HEADER_LEN);
  if (ip !== undefined) new TcpView(buf.subarray(offset, offset + len)).fillChecksum(ip);
  return len;
}

function put16(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >> 8;
  buf[at + 1] = value;
}

function put32(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 24;
  buf[at + 1] = value >>> 16;
  buf[at + 2] = value >>> 8;
  buf[at + 3] = value;
}

function hex16(v: number): string {
  return v.toString(16).padStart(4, '0');
}
