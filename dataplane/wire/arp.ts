/**
 * ARP for IPv4 over Ethernet (RFC 826), the only combination the data plane speaks.
 *
 * ```
 *  0       2       4    5    6       8          14       18         24       28
 * +-------+-------+----+----+-------+----------+--------+----------+--------+
 * | htype | ptype |hlen|plen| oper  | sender HW|sender IP| target HW|target IP|
 * |   1   |0x0800 | 6  | 4  | 1 / 2 |          |        |          |        |
 * +-------+-------+----+----+-------+----------+--------+----------+--------+
 * ```
 * Any other hardware/protocol type, address length or operation is rejected. Bytes after offset 28
 * (Ethernet padding) are ignored.
 */
import { WireError, checkRoom, checkUint } from './errors.ts';
import { MAC_ADDRESS_LEN, bytesToIpv4, ipv4ToBytes } from './address.ts';

export const ARP_PACKET_LEN = 28;
export const ARP_HTYPE_ETHERNET = 1;
export const ARP_PTYPE_IPV4 = 0x0800;
export const ARP_OP_REQUEST = 1;
export const ARP_OP_REPLY = 2;

const HTYPE = 0;
const PTYPE = 2;
const HLEN = 4;
const PLEN = 5;
const OPER = 6;
const SHA = 8;
const SPA = 14;
const THA = 18;
const TPA = 24;

/** Checked view over an Ethernet/IPv4 ARP packet. Addresses are uint32; MACs are zero-copy views. */
export class ArpView {
  readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    ArpView.check(bytes);
    this.bytes = bytes;
  }

  /** Throws `WireError` unless `bytes` holds a 28-byte Ethernet/IPv4 request or reply. */
  static check(bytes: Uint8Array): void {
    if (bytes.length < ARP_PACKET_LEN) {
      throw new WireError('arp', 'packet', 0, `packet is ${bytes.length} bytes, need ${ARP_PACKET_LEN}`);
    }
    const htype = u16(bytes, HTYPE);
    if (htype !== ARP_HTYPE_ETHERNET) {
      throw new WireError('arp', 'htype', HTYPE, `hardware type ${htype}, only 1 (Ethernet) is supported`);
    }
    const ptype = u16(bytes, PTYPE);
    if (ptype !== ARP_PTYPE_IPV4) {
      throw new WireError('arp', 'ptype', PTYPE,
        `protocol type 0x${ptype.toString(16).padStart(4, '0')}, only 0x0800 (IPv4) is supported`);
    }
    if (bytes[HLEN] !== MAC_ADDRESS_LEN) {
      throw new WireError('arp', 'hlen', HLEN, `hardware address length ${bytes[HLEN]}, expected 6`);
    }
    if (bytes[PLEN] !== 4) {
      throw new WireError('arp', 'plen', PLEN, `protocol address length ${bytes[PLEN]}, expected 4`);
    }
    const oper = u16(bytes, OPER);
    if (oper !== ARP_OP_REQUEST && oper !== ARP_OP_REPLY) {
      throw new WireError('arp', 'oper', OPER, `operation ${oper}, expected 1 (request) or 2 (reply)`);
    }
  }

  /** 1 (request) or 2 (reply). */
  get operation(): number { return u16(this.bytes, OPER); }
  get senderMac(): Uint8Array { return this.bytes.subarray(SHA, SHA + MAC_ADDRESS_LEN); }
  get senderIp(): number { return bytesToIpv4(this.bytes, SPA); }
  get targetMac(): Uint8Array { return this.bytes.subarray(THA, THA + MAC_ADDRESS_LEN); }
  get targetIp(): number { return bytesToIpv4(this.bytes, TPA); }
}

export type ArpOperation = 'request' | 'reply';

export interface ArpRepr {
  operation: ArpOperation;
  senderMac: Uint8Array;
  /** uint32 */
  senderIp: number;
  /** All zeros in a request. */
  targetMac: Uint8Array;
  targetIp: number;
}

/** Parses an ARP packet; MACs are copied. */
export function parseArp(bytes: Uint8Array): ArpRepr {
  const view = new ArpView(bytes);
  return {
    operation: view.operation === ARP_OP_REQUEST ? 'request' : 'reply',
    senderMac: view.senderMac.slice(),
    senderIp: view.senderIp,
    targetMac: view.targetMac.slice(),
    targetIp: view.targetIp,
  };
}

export function arpBufferLen(_repr: ArpRepr): number {
  return ARP_PACKET_LEN;
}

/** Writes the 28-byte packet at `buf[offset..)` and returns 28. */
export function emitArp(repr: ArpRepr, buf: Uint8Array, offset = 0): number {
  if (repr.operation !== 'request' && repr.operation !== 'reply') {
    throw new WireError('arp', 'oper', offset + OPER, `operation must be 'request' or 'reply'`);
  }
  checkMac('sha', offset + SHA, repr.senderMac);
  checkUint('arp', 'spa', offset + SPA, repr.senderIp, 0xffffffff);
  checkMac('tha', offset + THA, repr.targetMac);
  checkUint('arp', 'tpa', offset + TPA, repr.targetIp, 0xffffffff);
  checkRoom('arp', buf, offset, ARP_PACKET_LEN);
  const op = repr.operation === 'request' ? ARP_OP_REQUEST : ARP_OP_REPLY;
  buf[offset + HTYPE] = 0;
  buf[offset + HTYPE + 1] = ARP_HTYPE_ETHERNET;
  buf[offset + PTYPE] = ARP_PTYPE_IPV4 >> 8;
  buf[offset + PTYPE + 1] = ARP_PTYPE_IPV4 & 0xff;
  buf[offset + HLEN] = MAC_ADDRESS_LEN;
  buf[offset + PLEN] = 4;
  buf[offset + OPER] = 0;
  buf[offset + OPER + 1] = op;
  buf.set(repr.senderMac, offset + SHA);
  ipv4ToBytes(repr.senderIp, buf, offset + SPA);
  buf.set(repr.targetMac, offset + THA);
  ipv4ToBytes(repr.targetIp, buf, offset + TPA);
  return ARP_PACKET_LEN;
}

function u16(bytes: Uint8Array, at: number): number {
  return (bytes[at] << 8) | bytes[at + 1];
}

function checkMac(field: string, offset: number, mac: Uint8Array): void {
  if (!(mac instanceof Uint8Array) || mac.length !== MAC_ADDRESS_LEN) {
    throw new WireError('arp', field, offset, `MAC address must be a 6-byte Uint8Array`);
  }
}
