/**
 * ICMPv4 (RFC 792) messages the gateway sends and answers: echo request/reply, destination
 * unreachable (including code 4 "fragmentation needed" with the next-hop MTU of RFC 1191) and time
 * exceeded.
 *
 * ```
 *  0       1       2               4                               8
 * +-------+-------+---------------+-------------------------------+---------------------------
 * | type  | code  |   checksum    | echo: id | seq                 | echo: data
 * |       |       |               | unreachable: unused | MTU     | error: original IP header
 * |       |       |               | time exceeded: unused         |   + leading payload bytes
 * +-------+-------+---------------+-------------------------------+---------------------------
 * ```
 * The view spans the whole ICMP message (the IPv4 payload); the checksum covers all of it.
 */
import { WireError, checkRoom, checkUint } from './errors.ts';
import { finishChecksum, sumBytes } from './checksum.ts';
import { Ipv4View } from './ipv4.ts';

export const ICMPV4_HEADER_LEN = 8;

export const ICMPV4_ECHO_REPLY = 0;
export const ICMPV4_DEST_UNREACHABLE = 3;
export const ICMPV4_ECHO_REQUEST = 8;
export const ICMPV4_TIME_EXCEEDED = 11;

export const ICMPV4_UNREACH_NET = 0;
export const ICMPV4_UNREACH_HOST = 1;
export const ICMPV4_UNREACH_PROTOCOL = 2;
export const ICMPV4_UNREACH_PORT = 3;
export const ICMPV4_UNREACH_FRAG_NEEDED = 4;
export const ICMPV4_EXCEEDED_TTL = 0;
export const ICMPV4_EXCEEDED_REASSEMBLY = 1;

/** Largest quote that keeps an ICMP error within 576 bytes behind a 20-byte IPv4 header (RFC 1812 4.3.2.3). */
export const ICMPV4_MAX_QUOTE_LEN = 576 - 20 - ICMPV4_HEADER_LEN;

const TYPE = 0;
const CODE = 1;
const CHECKSUM = 2;
const ECHO_ID = 4;
const ECHO_SEQ = 6;
const NEXT_HOP_MTU = 6;

/** Checked view over an ICMPv4 message. Only the 8-byte header is checked; see `parseIcmpv4` for types. */
export class Icmpv4View {
  readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    Icmpv4View.check(bytes);
    this.bytes = bytes;
  }

  static check(bytes: Uint8Array): void {
    if (bytes.length < ICMPV4_HEADER_LEN) {
      throw new WireError('icmpv4', 'header', 0,
        `message is ${bytes.length} bytes, header needs ${ICMPV4_HEADER_LEN}`);
    }
  }

  get type(): number { return this.bytes[TYPE]; }
  get code(): number { return this.bytes[CODE]; }
  get checksum(): number { return this.u16(CHECKSUM); }
  /** Echo identifier (meaningful for echo request/reply). */
  get echoId(): number { return this.u16(ECHO_ID); }
  /** Echo sequence number (meaningful for echo request/reply). */
  get echoSeq(): number { return this.u16(ECHO_SEQ); }
  /** Next-hop MTU (meaningful for destination unreachable, code 4). */
  get nextHopMtu(): number { return this.u16(NEXT_HOP_MTU); }
  /** Everything after the 8-byte header: echo data, or the quoted original datagram. */
  get data(): Uint8Array { return this.bytes.subarray(ICMPV4_HEADER_LEN); }
  get checksumValid(): boolean { return finishChecksum(sumBytes(this.bytes)) === 0; }

  computeChecksum(): number {
    return finishChecksum(sumBytes(this.bytes, 0, CHECKSUM) + sumBytes(this.bytes, CHECKSUM + 2));
  }

  /** Recomputes and stores the checksum (e.g. after turning a request into a reply in place). */
  fillChecksum(): void {
    const c = this.computeChecksum();
    this.bytes[CHECKSUM] = c >> 8;
    this.bytes[CHECKSUM + 1] = c;
  }

  private u16(at: number): number {
    return (this.bytes[at] << 8) | this.bytes[at + 1];
  }
}

export interface Icmpv4EchoRepr {
  type: 'echo-request' | 'echo-reply';
  id: number;
  seq: number;
  data: Uint8Array;
}

export interface Icmpv4DestUnreachableRepr {
  type: 'dest-unreachable';
  /** 0..15; `ICMPV4_UNREACH_FRAG_NEEDED` (4) carries `nextHopMtu`. */
  code: number;
  /** Next-hop MTU for code 4 (RFC 1191); must be 0 for other codes. */
  nextHopMtu: number;
  /** Original IPv4 header plus at least 8 bytes of its payload; see `quoteOriginalDatagram`. */
  original: Uint8Array;
}

export interface Icmpv4TimeExceededRepr {
  type: 'time-exceeded';
  /** 0: TTL exceeded in transit; 1: fragment reassembly time exceeded. */
  code: number;
  original: Uint8Array;
}

export type Icmpv4Repr = Icmpv4EchoRepr | Icmpv4DestUnreachableRepr | Icmpv4TimeExceededRepr;

/**
 * Parses a message, verifying the checksum. Unsupported types, and codes outside those RFC 792 defines
 * for the type, throw `WireError`. Data/original are views into `bytes`.
 */
export function parseIcmpv4(bytes: Uint8Array): Icmpv4Repr {
  const view = new Icmpv4View(bytes);
  if (!view.checksumValid) {
    throw new WireError('icmpv4', 'checksum', CHECKSUM,
      `checksum 0x${hex16(view.checksum)} does not verify (expected 0x${hex16(view.computeChecksum())})`);
  }
  const { type, code } = view;
  switch (type) {
    case ICMPV4_ECHO_REQUEST:
    case ICMPV4_ECHO_REPLY:
      checkCode(type, code, 0);
      return {
        type: type === ICMPV4_ECHO_REQUEST ? 'echo-request' : 'echo-reply',
        id: view.echoId,
        seq: view.echoSeq,
        data: view.data,
      };
    case ICMPV4_DEST_UNREACHABLE:
      checkCode(type, code, 15);
      return {
        type: 'dest-unreachable',
        code,
        nextHopMtu: code === ICMPV4_UNREACH_FRAG_NEEDED ? view.nextHopMtu : 0,
        original: view.data,
      };
    case ICMPV4_TIME_EXCEEDED:
      checkCode(type, code, 1);
      return { type: 'time-exceeded', code, original: view.data };
    default:
      throw new WireError('icmpv4', 'type', TYPE,
        `type ${type} is not supported (echo reply 0, destination unreachable 3, echo request 8, time exceeded 11)`);
  }
}

function checkCode(type: number, code: number, max: number): void {
  if (code > max) {
    throw new WireError('icmpv4', 'code', CODE, `code ${code} is not defined for type ${type} (0..${max})`);
  }
}

export function icmpv4BufferLen(repr: Icmpv4Repr): number {
  switch (repr.type) {
    case 'echo-request':
    case 'echo-reply':
      return ICMPV4_HEADER_LEN + repr.data.length;
    default:
      return ICMPV4_HEADER_LEN + repr.original.length;
  }
}

/** Writes the message with its checksum at `buf[offset..)` and returns the bytes written. */
export function emitIcmpv4(repr: Icmpv4Repr, buf: Uint8Array, offset = 0): number {
  let type: number;
  let code: number;
  let word1: number;
  let word2: number;
  let body: Uint8Array;
  switch (repr.type) {
    case 'echo-request':
    case 'echo-reply':
      checkUint('icmpv4', 'id', offset + ECHO_ID, repr.id, 0xffff);
      checkUint('icmpv4', 'seq', offset + ECHO_SEQ, repr.seq, 0xffff);
      type = repr.type === 'echo-request' ? ICMPV4_ECHO_REQUEST : ICMPV4_ECHO_REPLY;
      code = 0;
      word1 = repr.id;
      word2 = repr.seq;
      body = repr.data;
      break;
    case 'dest-unreachable':
      checkUint('icmpv4', 'code', offset + CODE, repr.code, 15);
      checkUint('icmpv4', 'next_hop_mtu', offset + NEXT_HOP_MTU, repr.nextHopMtu,
        repr.code === ICMPV4_UNREACH_FRAG_NEEDED ? 0xffff : 0);
      type = ICMPV4_DEST_UNREACHABLE;
      code = repr.code;
      word1 = 0;
      word2 = repr.nextHopMtu;
      body = repr.original;
      break;
    case 'time-exceeded':
      checkUint('icmpv4', 'code', offset + CODE, repr.code, 1);
      type = ICMPV4_TIME_EXCEEDED;
      code = repr.code;
      word1 = 0;
      word2 = 0;
      body = repr.original;
      break;
    default:
      throw new WireError('icmpv4', 'type', offset + TYPE,
        `unsupported message type ${JSON.stringify((repr as { type: unknown }).type)}`);
  }
  const len = ICMPV4_HEADER_LEN + body.length;
  checkRoom('icmpv4', buf, offset, len);
  buf.set(body, offset + ICMPV4_HEADER_LEN);
  buf[offset + TYPE] = type;
  buf[offset + CODE] = code;
  put16(buf, offset + CHECKSUM, 0);
  put16(buf, offset + 4, word1);
  put16(buf, offset + 6, word2);
  put16(buf, offset + CHECKSUM, finishChecksum(sumBytes(buf, offset, offset + len)));
  return len;
}

/**
 * The part of an offending IPv4 packet to quote in an ICMP error: its header and as much payload as fits
 * in `limit` bytes (default keeps the error within 576 bytes), never less than header + 8 bytes, never
 * past its total length. Returns a view. Throws `WireError` if `packet` is not a valid IPv4 packet, about
 * which no ICMP error may be sent (RFC 1122 3.2.2).
 */
export function quoteOriginalDatagram(packet: Uint8Array, limit = ICMPV4_MAX_QUOTE_LEN): Uint8Array {
  const ip = new Ipv4View(packet);
  const len = Math.min(ip.totalLength, Math.max(limit, ip.headerLen + 8));
  return packet.subarray(0, len);
}

function put16(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >> 8;
  buf[at + 1] = value;
}

function hex16(v: number): string {
  return v.toString(16).padStart(4, '0');
}
