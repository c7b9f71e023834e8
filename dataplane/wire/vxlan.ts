/**
 * VXLAN header (RFC 7348 §5) and the encap/decap transforms the native engine also implements.
 *
 * ```
 *  0       1                       4                       7       8
 * +-------+-----------------------+-----------------------+-------+-----------------
 * | flags |       reserved        |          VNI          | rsvd  | inner Ethernet frame
 * | 0x08  |       0  0  0         |       24 bits         |   0   |
 * +-------+-----------------------+-----------------------+-------+-----------------
 * ```
 * RFC 7348 says receivers ignore the reserved bits; we require them to be zero (as the native decap
 * does) so that both implementations agree on every input. `vxlanEncap` and `vxlanDecap` are compared
 * byte for byte with `native/` by the differential tests: change them only together with the C code.
 */
import { WireError, checkRoom, checkUint } from './errors.ts';

export const VXLAN_HEADER_LEN = 8;
export const VXLAN_UDP_PORT = 4789;
export const VXLAN_FLAGS_I = 0x08;
export const VXLAN_MAX_VNI = 0xffffff;
/** Outer Ethernet + IPv4 + UDP + VXLAN bytes the underlay carries per inner frame beyond its IP MTU share. */
export const VXLAN_IPV4_OVERHEAD = 14 + 20 + 8 + VXLAN_HEADER_LEN;

const FLAGS = 0;
const RESERVED1 = 1;
const VNI = 4;
const RESERVED2 = 7;

/** Checked view over a VXLAN datagram (the UDP payload). */
export class VxlanView {
  readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    VxlanView.check(bytes);
    this.bytes = bytes;
  }

  /** Throws `WireError` unless the 8-byte header is present with flags 0x08 and zero reserved bytes. */
  static check(bytes: Uint8Array): void {
    if (bytes.length < VXLAN_HEADER_LEN) {
      throw new WireError('vxlan', 'header', 0, `datagram is ${bytes.length} bytes, header needs ${VXLAN_HEADER_LEN}`);
    }
    if (bytes[FLAGS] !== VXLAN_FLAGS_I) {
      throw new WireError('vxlan', 'flags', FLAGS,
        `flags 0x${bytes[FLAGS].toString(16).padStart(2, '0')}, expected 0x08 (I flag only)`);
    }
    for (let i = RESERVED1; i < VNI; i++) {
      if (bytes[i] !== 0) throw new WireError('vxlan', 'reserved', i, `reserved byte is ${bytes[i]}, expected 0`);
    }
    if (bytes[RESERVED2] !== 0) {
      throw new WireError('vxlan', 'reserved', RESERVED2, `reserved byte is ${bytes[RESERVED2]}, expected 0`);
    }
  }

  get vni(): number { return (this.bytes[VNI] << 16) | (this.bytes[VNI + 1] << 8) | this.bytes[VNI + 2]; }
  /** The inner Ethernet frame: everything after the header. */
  get payload(): Uint8Array { return this.bytes.subarray(VXLAN_HEADER_LEN); }
}

export interface VxlanRepr {
  /** 0..0xffffff */
  vni: number;
  /** Inner Ethernet frame; on parse, a view into the input. */
  payload: Uint8Array;
}

export function parseVxlan(bytes: Uint8Array): VxlanRepr {
  const view = new VxlanView(bytes);
  return { vni: view.vni, payload: view.payload };
}

export function vxlanBufferLen(repr: VxlanRepr): number {
  return VXLAN_HEADER_LEN + repr.payload.length;
}

/** Writes header and payload at `buf[offset..)` and returns the bytes written. */
export function emitVxlan(repr: VxlanRepr, buf: Uint8Array, offset = 0): number {
  checkUint('vxlan', 'vni', offset + VNI, repr.vni, VXLAN_MAX_VNI);
  const len = vxlanBufferLen(repr);
  checkRoom('vxlan', buf, offset, len);
  buf.set(repr.payload, offset + VXLAN_HEADER_LEN);
  writeHeader(buf, offset, repr.vni);
  return len;
}

function writeHeader(buf: Uint8Array, offset: number, vni: number): void {
  buf[offset + FLAGS] = VXLAN_FLAGS_I;
  buf[offset + 1] = 0;
  buf[offset + 2] = 0;
  buf[offset + 3] = 0;
  buf[offset + VNI] = vni >> 16;
  buf[offset + VNI + 1] = vni >> 8;
  buf[offset + VNI + 2] = vni;
  buf[offset + RESERVED2] = 0;
}

/**
 * Differential-test contract: returns a new array `[0x08,0,0,0, vni>>16, vni>>8, vni, 0] ++ frame`.
 * Throws `WireError` (field `vni`) unless `vni` is an integer in 0..0xffffff. The frame is not inspected.
 */
export function vxlanEncap(vni: number, frame: Uint8Array): Uint8Array {
  checkUint('vxlan', 'vni', VNI, vni, VXLAN_MAX_VNI);
  const out = new Uint8Array(VXLAN_HEADER_LEN + frame.length);
  writeHeader(out, 0, vni);
  out.set(frame, VXLAN_HEADER_LEN);
  return out;
}

export type VxlanMalformed = 'short' | 'flags' | 'inner short' | 'inner ipv4' | 'inner arp';

export type VxlanDecapResult =
  | { ok: true; vni: number; frame: Uint8Array }
  | { ok: false; reason: 'malformed'; detail: VxlanMalformed };

const INNER_MIN = 14;
const INNER_IPV4_MIN = 14 + 20;
const INNER_ARP_MIN = 14 + 28;

/**
 * Differential-test contract. Never throws. `frame` is `datagram.subarray(8)` (whole remainder,
 * Ethernet padding kept). Rules, first match wins:
 * 1. length < 8                                               → malformed "short"
 * 2. byte 0 != 0x08, any of bytes 1..3 != 0, or byte 7 != 0   → malformed "flags"
 * 3. inner length < 14                                        → malformed "inner short"
 * 4. inner ethertype 0x0800 and (inner length < 34, version != 4, IHL < 5, IHL*4 > total length,
 *    or 14 + total length > inner length)                     → malformed "inner ipv4"
 * 5. inner ethertype 0x0806 and inner length < 42             → malformed "inner arp"
 */
export function vxlanDecap(datagram: Uint8Array): VxlanDecapResult {
  if (datagram.length < VXLAN_HEADER_LEN) return malformed('short');
  if (datagram[0] !== VXLAN_FLAGS_I || datagram[1] !== 0 || datagram[2] !== 0 || datagram[3] !== 0
      || datagram[7] !== 0) {
    return malformed('flags');
  }
  const frame = datagram.subarray(VXLAN_HEADER_LEN);
  const n = frame.length;
  if (n < INNER_MIN) return malformed('inner short');
  const ethertype = (frame[12] << 8) | frame[13];
  if (ethertype === 0x0800) {
    if (n < INNER_IPV4_MIN) return malformed('inner ipv4');
    const version = frame[14] >> 4;
    const ihl = frame[14] & 0x0f;
    const totalLength = (frame[16] << 8) | frame[17];
    if (version !== 4 || ihl < 5 || ihl * 4 > totalLength || 14 + totalLength > n) return malformed('inner ipv4');
  } else if (ethertype === 0x0806) {
    if (n < INNER_ARP_MIN) return malformed('inner arp');
  }
  const vni = (datagram[4] << 16) | (datagram[5] << 8) | datagram[6];
  return { ok: true, vni, frame };
}

function malformed(detail: VxlanMalformed): VxlanDecapResult {
  return { ok: false, reason: 'malformed', detail };
}
