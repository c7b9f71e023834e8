/**
 * The port filter of an application connection's port (docs/port-filter.md): the one conversation the
 * port may carry. The engine (native/src/port_filter.h) applies the same check to every frame an instance
 * sends and every frame about to be delivered to it; the differential test requires both to give the same
 * verdict for the same frame. The contract, decided in this order over an Ethernet frame:
 *
 * 1. shorter than 14 bytes: `truncated`.
 * 2. ethertype 0x0806 (ARP): fewer than 28 ARP bytes: `truncated`; not htype 1 / ptype 0x0800 / hlen 6 /
 *    plen 4: `arp_format`; sender and target IP are {local, peer} in either order: `allowed`, else
 *    `arp_address`.
 * 3. any ethertype but 0x0800: `ethertype` (IPv6 and VLAN tags included).
 * 4. the IPv4 header, as native's shared view checks it (native/src/wire.h `ipv4_check`), in this order:
 *    fewer than 20 bytes: `truncated`; version != 4 or IHL < 5: `ip_header`; IHL*4 above the bytes there are:
 *    `truncated`; total length < IHL*4: `ip_header`; total length above the bytes there are: `truncated`.
 * 5. fragment offset != 0: `fragment`. Protocol other than the filter's: `protocol`.
 * 6. total length below both headers (IPv4 and TCP 20 / UDP 8): `ip_header`.
 * 7. `send`: src must be local and dst peer; `receive`: src peer, dst local; else `address`.
 * 8. the inbound's port must be the destination port of packets going towards the inbound side (the
 *    outbound sending, the inbound receiving) and the source port of packets coming from it; else `port`.
 *
 * Only headers are read (Ethernet padding after the IPv4 total length is allowed); never throws.
 */
import { parseIpv4Address } from './address.ts';
import { showValue } from './errors.ts';

export interface PortFilter {
  /** This port's address on the link, and the other end's. */
  localAddress: string;
  peerAddress: string;
  protocol: 'tcp' | 'udp';
  /** The inbound's port (1..65535). */
  port: number;
  /** 'outbound': the instance dials peerAddress:port. 'inbound': the instance serves localAddress:port. */
  side: 'outbound' | 'inbound';
}

/** The filter as the engine holds it: addresses as uint32, protocol as its IP number. */
export interface CompiledPortFilter {
  local: number;
  peer: number;
  protocol: 6 | 17;
  port: number;
  inbound: boolean;
}

/** From the instance's point of view: a frame it sends, or one about to be delivered to it. */
export type FilterDirection = 'send' | 'receive';

export type FilterVerdict =
  | 'allowed' | 'truncated' | 'ethertype' | 'arp_format' | 'arp_address'
  | 'ip_header' | 'fragment' | 'protocol' | 'address' | 'port';

export const FILTER_VERDICTS: readonly FilterVerdict[] = [
  'allowed', 'truncated', 'ethertype', 'arp_format', 'arp_address', 'ip_header', 'fragment', 'protocol', 'address', 'port',
];

const ETH_HDR = 14;
const ETHERTYPE_ARP = 0x0806;
const ETHERTYPE_IPV4 = 0x0800;
const ARP_LEN = 28;

/** A filter that does not validate; the message starts with `<path>.<field>`. */
export class PortFilterError extends RangeError {
  constructor(readonly field: string, readonly problem: string, path: string) {
    super(`${field ? `${path}.${field}` : path} ${problem}`);
    this.name = 'PortFilterError';
  }
}

/** Throws PortFilterError naming the field (prefixed with `path`) when `f` is not a valid filter. */
export function compilePortFilter(f: PortFilter, path = 'filter'): CompiledPortFilter {
  const fail = (field: string, want: string, got: unknown): never => {
    throw new PortFilterError(field, `must be ${want}, got ${showValue(got)}`, path);
  };
  if (typeof f !== 'object' || f === null) fail('', 'an object', f);
  const addr = (field: 'localAddress' | 'peerAddress'): number => {
    try {
      return parseIpv4Address(f[field]);
    } catch {
      return fail(field, 'an IPv4 address', f[field]);
    }
  };
  const local = addr('localAddress');
  const peer = addr('peerAddress');
  if (local === peer) fail('peerAddress', 'another address than localAddress', f.peerAddress);
  if (f.protocol !== 'tcp' && f.protocol !== 'udp') fail('protocol', "'tcp' or 'udp'", f.protocol);
  if (!Number.isInteger(f.port) || f.port < 1 || f.port > 65535) fail('port', 'an integer in 1..65535', f.port);
  if (f.side !== 'outbound' && f.side !== 'inbound') fail('side', "'outbound' or 'inbound'", f.side);
  return { local, peer, protocol: f.protocol === 'tcp' ? 6 : 17, port: f.port, inbound: f.side === 'inbound' };
}

const u16 = (b: Uint8Array, o: number): number => (b[o] << 8) | b[o + 1];
const u32 = (b: Uint8Array, o: number): number => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;

export function checkPortFilter(f: CompiledPortFilter, frame: Uint8Array, dir: FilterDirection): FilterVerdict {
  const n = frame.length;
  if (n < ETH_HDR) return 'truncated';
  const ethertype = u16(frame, 12);
  if (ethertype === ETHERTYPE_ARP) {
    if (n < ETH_HDR + ARP_LEN) return 'truncated';
    const a = ETH_HDR;
    if (u16(frame, a) !== 1 || u16(frame, a + 2) !== ETHERTYPE_IPV4 || frame[a + 4] !== 6 || frame[a + 5] !== 4) return 'arp_format';
    const spa = u32(frame, a + 14);
    const tpa = u32(frame, a + 24);
    const ok = (spa === f.local && tpa === f.peer) || (spa === f.peer && tpa === f.local);
    return ok ? 'allowed' : 'arp_address';
  }
  if (ethertype !== ETHERTYPE_IPV4) return 'ethertype';
  if (n < ETH_HDR + 20) return 'truncated';
  const ip = ETH_HDR;
  const ihl = (frame[ip] & 0x0f) * 4;
  if (frame[ip] >> 4 !== 4 || ihl < 20) return 'ip_header';
  if (ihl > n - ETH_HDR) return 'truncated';
  const total = u16(frame, ip + 2);
  if (total < ihl) return 'ip_header';
  if (total > n - ETH_HDR) return 'truncated';
  if (u16(frame, ip + 6) & 0x1fff) return 'fragment';
  if (frame[ip + 9] !== f.protocol) return 'protocol';
  if (total < ihl + (f.protocol === 6 ? 20 : 8)) return 'ip_header';
  const send = dir === 'send';
  const src = u32(frame, ip + 12);
  const dst = u32(frame, ip + 16);
  if (src !== (send ? f.local : f.peer) || dst !== (send ? f.peer : f.local)) return 'address';
  // The inbound's port is the destination port of what flows towards the inbound side.
  const towardsInbound = send !== f.inbound;
  const svc = u16(frame, ip + ihl + (towardsInbound ? 2 : 0));
  return svc === f.port ? 'allowed' : 'port';
}
