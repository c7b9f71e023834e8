/**
 * The network gateway's own answers (.1): ARP requests for its address and ICMP echo requests to it.
 * Pure: a punted Ethernet frame in, the frame to inject back (or why there is none) out.
 *
 * The gateway is distributed (docs/services.md): every host with a port on the network answers for its
 * local ports, with the same MAC everywhere, derived from the VNI, so an instance that moves between
 * hosts keeps a valid neighbour entry and no frame for the gateway crosses the overlay.
 */
import {
  ARP_PACKET_LEN, ETHERNET_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, IPPROTO_ICMP, WireError,
  emitArp, emitEthernet, emitIcmpv4, emitIpv4, icmpv4BufferLen, parseArp, parseEthernet, parseIcmpv4,
  parseIpv4, parseIpv4Address, parseMac,
} from '../../dataplane/wire/index.ts';
import { addressAt, formatIpv4, parseCidr } from '../net/ipv4-cidr.ts';

/** The gateway as it answers: dotted quad and lower-case MAC. */
export interface GatewayIdentity {
  ipv4: string;
  mac: string;
}

/**
 * `02:61:6e:VV:VV:VV`: locally administered unicast ("an" for appnet, then the 24-bit VNI). Interface
 * MACs start 02:00:00 (control/instances/mac.ts), so the two never collide.
 */
export function gatewayMac(vni: number): string {
  if (!Number.isInteger(vni) || vni < 1 || vni > 0xffffff) throw new RangeError(`vni must be an integer in 1..16777215, got ${vni}`);
  const b = [0x02, 0x61, 0x6e, (vni >>> 16) & 0xff, (vni >>> 8) & 0xff, vni & 0xff];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Index 1 of the netblock: what IPAM reserves as the gateway (control/ipam/ipam.ts). */
export function gatewayAddress(netblock: string): string {
  return formatIpv4(addressAt(parseCidr(netblock, 'netblock'), 1));
}

export type GatewayQuietReason = 'not-for-gateway' | 'not-request';
export type GatewayDropReason = 'bad-ethernet' | 'bad-arp' | 'bad-ipv4' | 'bad-icmp' | 'not-ours';

export type GatewayOutcome =
  | { action: 'reply'; kind: 'arp' | 'echo'; frame: Uint8Array }
  | { action: 'none'; reason: GatewayQuietReason }
  | { action: 'drop'; reason: GatewayDropReason; detail: string };

/**
 * The answer to one frame. ARP: a request for the gateway's address gets a reply; other ARP (requests
 * for instances, replies, gratuitous) is not ours and gets nothing. IPv4: an ICMP echo request to the
 * gateway gets an echo reply with the same id, sequence and data. Never throws for any input bytes.
 */
export function answerGateway(frame: Uint8Array, gw: GatewayIdentity): GatewayOutcome {
  const ip = parseIpv4Address(gw.ipv4);
  const mac = parseMac(gw.mac);
  let eth;
  try {
    eth = parseEthernet(frame);
  } catch (e) {
    return drop('bad-ethernet', e);
  }
  if (eth.ethertype === ETHERTYPE_ARP) {
    let arp;
    try {
      arp = parseArp(eth.payload);
    } catch (e) {
      return drop('bad-arp', e);
    }
    if (arp.targetIp !== ip) return { action: 'none', reason: 'not-for-gateway' };
    if (arp.operation !== 'request') return { action: 'none', reason: 'not-request' };
    const out = new Uint8Array(ETHERNET_HEADER_LEN + ARP_PACKET_LEN);
    emitArp({ operation: 'reply', senderMac: mac, senderIp: ip, targetMac: arp.senderMac, targetIp: arp.senderIp }, out, ETHERNET_HEADER_LEN);
    emitEthernet({ dst: arp.senderMac, src: mac, ethertype: ETHERTYPE_ARP, payload: out.subarray(ETHERNET_HEADER_LEN) }, out);
    return { action: 'reply', kind: 'arp', frame: out };
  }
  if (eth.ethertype !== ETHERTYPE_IPV4) return { action: 'drop', reason: 'not-ours', detail: `ethertype 0x${eth.ethertype.toString(16).padStart(4, '0')}` };
  let packet;
  try {
    packet = parseIpv4(eth.payload);
  } catch (e) {
    return drop('bad-ipv4', e);
  }
  if (packet.dst !== ip) return { action: 'none', reason: 'not-for-gateway' };
  if (packet.protocol !== IPPROTO_ICMP) return { action: 'drop', reason: 'not-ours', detail: `IP protocol ${packet.protocol}` };
  if (packet.moreFragments || packet.fragmentOffset !== 0) return { action: 'drop', reason: 'bad-ipv4', detail: `fragment at offset ${packet.fragmentOffset}` };
  let icmp;
  try {
    icmp = parseIcmpv4(packet.payload);
  } catch (e) {
    return drop('bad-icmp', e);
  }
  if (icmp.type !== 'echo-request') return { action: 'none', reason: 'not-request' };
  const reply = { type: 'echo-reply' as const, id: icmp.id, seq: icmp.seq, data: icmp.data };
  const icmpLen = icmpv4BufferLen(reply);
  const out = new Uint8Array(ETHERNET_HEADER_LEN + 20 + icmpLen);
  const icmpBytes = out.subarray(ETHERNET_HEADER_LEN + 20);
  emitIcmpv4(reply, icmpBytes);
  emitIpv4({
    dscp: packet.dscp, ecn: 0, id: 0, dontFragment: true, moreFragments: false, fragmentOffset: 0, ttl: 64,
    protocol: IPPROTO_ICMP, src: ip, dst: packet.src, options: new Uint8Array(0), payload: icmpBytes,
  }, out, ETHERNET_HEADER_LEN);
  emitEthernet({ dst: eth.src, src: mac, ethertype: ETHERTYPE_IPV4, payload: out.subarray(ETHERNET_HEADER_LEN) }, out);
  return { action: 'reply', kind: 'echo', frame: out };
}

function drop(reason: GatewayDropReason, e: unknown): GatewayOutcome {
  if (!(e instanceof WireError)) throw e;
  return { action: 'drop', reason, detail: e.message };
}
