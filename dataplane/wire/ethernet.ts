/**
 * Ethernet II header (IEEE 802.3 with an EtherType): destination MAC, source MAC, EtherType.
 *
 * ```
 *  0                   6                  12        14
 * +-------------------+-------------------+---------+---------
 * |  destination MAC  |    source MAC     |  type   | payload
 * +-------------------+-------------------+---------+---------
 * ```
 * 802.1Q tags are not decoded: a tagged frame reports `ETHERTYPE_VLAN` and the tag is part of the payload.
 * The payload is everything after the header, including any padding to the 60-byte minimum.
 */
import { WireError, checkRoom, checkUint } from './errors.ts';
import { MAC_ADDRESS_LEN } from './address.ts';

export const ETHERNET_HEADER_LEN = 14;
/** Smallest frame on the wire without FCS; shorter frames are padded by the sender. */
export const ETHERNET_MIN_FRAME_LEN = 60;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_IPV6 = 0x86dd;

const DST = 0;
const SRC = 6;
const ETHERTYPE = 12;

/** Checked view over an Ethernet frame. Byte-range accessors return zero-copy views of the frame. */
export class EthernetView {
  readonly bytes: Uint8Array;

  /** Throws `WireError` if `bytes` is shorter than the 14-byte header. */
  constructor(bytes: Uint8Array) {
    EthernetView.check(bytes);
    this.bytes = bytes;
  }

  static check(bytes: Uint8Array): void {
    if (bytes.length < ETHERNET_HEADER_LEN) {
      throw new WireError('ethernet', 'header', 0,
        `frame is ${bytes.length} bytes, header needs ${ETHERNET_HEADER_LEN}`);
    }
  }

  get dst(): Uint8Array { return this.bytes.subarray(DST, DST + MAC_ADDRESS_LEN); }
  get src(): Uint8Array { return this.bytes.subarray(SRC, SRC + MAC_ADDRESS_LEN); }
  get ethertype(): number { return (this.bytes[ETHERTYPE] << 8) | this.bytes[ETHERTYPE + 1]; }
  get payload(): Uint8Array { return this.bytes.subarray(ETHERNET_HEADER_LEN); }
}

export interface EthernetRepr {
  dst: Uint8Array;
  src: Uint8Array;
  ethertype: number;
  /** On parse, a view into the input (not a copy). */
  payload: Uint8Array;
}

/** Parses a frame; MACs are copied, the payload is a view into `bytes`. */
export function parseEthernet(bytes: Uint8Array): EthernetRepr {
  const view = new EthernetView(bytes);
  return { dst: view.dst.slice(), src: view.src.slice(), ethertype: view.ethertype, payload: view.payload };
}

export function ethernetBufferLen(repr: EthernetRepr): number {
  return ETHERNET_HEADER_LEN + repr.payload.length;
}

/**
 * Writes header and payload at `buf[offset..)` and returns the bytes written. Does not pad to 60 bytes.
 * `repr.payload` may already sit at `offset + 14` in `buf` (in-place construction).
 */
export function emitEthernet(repr: EthernetRepr, buf: Uint8Array, offset = 0): number {
  checkMac('dst', offset + DST, repr.dst);
  checkMac('src', offset + SRC, repr.src);
  checkUint('ethernet', 'ethertype', offset + ETHERTYPE, repr.ethertype, 0xffff);
  const len = ethernetBufferLen(repr);
  checkRoom('ethernet', buf, offset, len);
  buf.set(repr.dst, offset + DST);
  buf.set(repr.src, offset + SRC);
  buf[offset + ETHERTYPE] = repr.ethertype >> 8;
  buf[offset + ETHERTYPE + 1] = repr.ethertype;
  buf.set(repr.payload, offset + ETHERNET_HEADER_LEN);
  return len;
}

function checkMac(field: string, offset: number, mac: Uint8Array): void {
  if (!(mac instanceof Uint8Array) || mac.length !== MAC_ADDRESS_LEN) {
    throw new WireError('ethernet', field, offset, `MAC address must be a 6-byte Uint8Array`);
  }
}
