/**
 * The frame edge of the UDP services (DHCP, DNS): punted Ethernet frames in, injectable frames out.
 *
 * The service cores decide *what* to answer and *to whom* (MAC, IPv4 address, port); these functions
 * turn a punted frame into the datagram the core reads, and a decision into the Ethernet/IPv4/UDP
 * frame the integrator injects (`Engine.injectToPort` / `injectToVni`). Both sides use the wire codecs
 * in dataplane/wire, so checksums and header rules are the data plane's own.
 */
import {
  ETHERTYPE_IPV4, IPPROTO_UDP, IPV4_HEADER_LEN, UDP_HEADER_LEN, WireError,
  emitEthernet, emitIpv4, emitUdp, encodeDhcp, formatIpv4Address, formatMac, parseEthernet, parseIpv4,
  parseIpv4Address, parseMac, parseUdp, ETHERNET_HEADER_LEN,
} from '../../dataplane/wire/index.ts';
import type { DhcpRepr } from '../../dataplane/wire/index.ts';

/** A UDP datagram with the Ethernet and IPv4 addressing it arrived with (or leaves with). */
export interface UdpFrame {
  /** Lower-case `aa:bb:cc:dd:ee:ff`. */
  srcMac: string;
  dstMac: string;
  /** Dotted quads. */
  srcIp: string;
  dstIp: string;
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
}

/** Why a punted frame is not a UDP datagram the services can read. */
export type FrameDropReason = 'not-ipv4' | 'bad-ipv4' | 'fragment' | 'not-udp' | 'bad-udp';

export type ReadUdpFrameResult =
  | { ok: true; frame: UdpFrame }
  | { ok: false; reason: FrameDropReason; detail: string };

/**
 * Reads an Ethernet/IPv4/UDP frame. Never throws: every malformed layer is a reason plus the codec's
 * message (which names the field and offset). The IPv4 header checksum and a non-zero UDP checksum
 * must verify; fragments are refused because no service message needs more than one datagram.
 */
export function readUdpFrame(bytes: Uint8Array): ReadUdpFrameResult {
  let eth;
  try {
    eth = parseEthernet(bytes);
  } catch (e) {
    return { ok: false, reason: 'not-ipv4', detail: detailOf(e) };
  }
  if (eth.ethertype !== ETHERTYPE_IPV4) {
    return { ok: false, reason: 'not-ipv4', detail: `ethertype 0x${eth.ethertype.toString(16).padStart(4, '0')}` };
  }
  let ip;
  try {
    ip = parseIpv4(eth.payload);
  } catch (e) {
    return { ok: false, reason: 'bad-ipv4', detail: detailOf(e) };
  }
  if (ip.moreFragments || ip.fragmentOffset !== 0) {
    return { ok: false, reason: 'fragment', detail: `fragment at offset ${ip.fragmentOffset}` };
  }
  if (ip.protocol !== IPPROTO_UDP) {
    return { ok: false, reason: 'not-udp', detail: `IP protocol ${ip.protocol}` };
  }
  let udp;
  try {
    udp = parseUdp(ip.payload, { src: ip.src, dst: ip.dst });
  } catch (e) {
    return { ok: false, reason: 'bad-udp', detail: detailOf(e) };
  }
  return {
    ok: true,
    frame: {
      srcMac: formatMac(eth.src), dstMac: formatMac(eth.dst),
      srcIp: formatIpv4Address(ip.src), dstIp: formatIpv4Address(ip.dst),
      srcPort: udp.srcPort, dstPort: udp.dstPort, payload: udp.payload,
    },
  };
}

/**
 * Builds the Ethernet/IPv4/UDP frame for `f` with a computed UDP checksum. IPv4: TTL 64, DF set and
 * id 0 (an atomic datagram, RFC 6864), no options. No padding to 60 bytes: the frame goes to a TAP
 * device or the engine, neither of which needs it. Throws `WireError` for an unrepresentable field.
 */
export function buildUdpFrame(f: UdpFrame): Uint8Array {
  const src = parseIpv4Address(f.srcIp);
  const dst = parseIpv4Address(f.dstIp);
  const udpLen = UDP_HEADER_LEN + f.payload.length;
  const out = new Uint8Array(ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + udpLen);
  const udp = out.subarray(ETHERNET_HEADER_LEN + IPV4_HEADER_LEN);
  emitUdp({ srcPort: f.srcPort, dstPort: f.dstPort, payload: f.payload }, udp, 0, { src, dst });
  const ip = out.subarray(ETHERNET_HEADER_LEN);
  emitIpv4({
    dscp: 0, ecn: 0, id: 0, dontFragment: true, moreFragments: false, fragmentOffset: 0, ttl: 64,
    protocol: IPPROTO_UDP, src, dst, options: new Uint8Array(0), payload: udp,
  }, ip);
  emitEthernet({ dst: parseMac(f.dstMac), src: parseMac(f.srcMac), ethertype: ETHERTYPE_IPV4, payload: ip }, out);
  return out;
}

/** Where a DHCP reply goes (RFC 2131 §4.1), and which rule chose it. */
export interface DhcpDestination {
  mac: string;
  ipv4: string;
  /** 68 to a client, 67 to a relay agent. */
  port: number;
  via: 'relay' | 'ciaddr' | 'broadcast' | 'yiaddr';
}

/** What `buildDhcpReplyFrame` needs from a reply decision (the `reply` outcome of `DhcpServer`). */
export interface DhcpReplyDecision {
  message: DhcpRepr;
  to: DhcpDestination;
  /** The server's MAC and address (the network's gateway, which is also the server identifier). */
  from: { mac: string; ipv4: string };
}

/** The frame to inject for a DHCP reply: from the gateway, port 67, to the decided destination. */
export function buildDhcpReplyFrame(d: DhcpReplyDecision): Uint8Array {
  return buildUdpFrame({
    srcMac: d.from.mac, dstMac: d.to.mac, srcIp: d.from.ipv4, dstIp: d.to.ipv4,
    srcPort: 67, dstPort: d.to.port, payload: encodeDhcp(d.message),
  });
}

function detailOf(e: unknown): string {
  if (e instanceof WireError) return e.message;
  throw e;
}
