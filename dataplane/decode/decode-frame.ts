/**
 * `decodeFrame`: an Ethernet frame → its layers, down through VXLAN and decrypted link data.
 *
 * Never throws on packet bytes: the first layer that does not parse gets a `malformed` field saying
 * which field at which byte is wrong, and decoding stops there. Byte offsets count from the start of the
 * captured frame, or of the decrypted plaintext for layers inside link data. Checksums are reported
 * (`ok` / `bad …`), not enforced, so a corrupted packet still shows its contents.
 */
import {
  ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, EthernetView, Icmpv4View, IPPROTO_ICMP, IPPROTO_TCP,
  IPPROTO_UDP, Ipv4View, TcpView, UdpView, VXLAN_UDP_PORT, VxlanView, WireError, ArpView, DHCP_CLIENT_PORT,
  DHCP_MESSAGE_TYPE_NAMES, DHCP_SERVER_PORT, dhcpMessageType, dhcpOptionName, formatDhcpOptionValue, formatIpv4Address,
  formatMac, formatTcpFlags, parseDhcp, TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG,
} from '../wire/index.ts';
import { type DecodeOptions, type Layer, type LayerName, LINK_UDP_PORT } from './layers.ts';
import { LINK_HEADER_LEN, LINK_TAG_LEN, LINK_TYPE_DATA, openData } from '../wire/link.ts';

export const LINK_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: 'handshake initiation', 2: 'handshake response', 3: 'cookie reply', 4: 'data',
};

interface Ctx {
  opts: DecodeOptions;
  out: Layer[];
  /** Offset of the current buffer in its space. */
  at: number;
  space: 'frame' | 'plaintext';
}

const ETHERTYPE_NAMES: Readonly<Record<number, string>> = {
  [ETHERTYPE_IPV4]: 'IPv4', [ETHERTYPE_ARP]: 'ARP', [ETHERTYPE_VLAN]: '802.1Q', [ETHERTYPE_IPV6]: 'IPv6',
};
const IP_PROTO_NAMES: Readonly<Record<number, string>> = { [IPPROTO_ICMP]: 'ICMP', [IPPROTO_TCP]: 'TCP', [IPPROTO_UDP]: 'UDP' };
const ICMP_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'echo reply', 3: 'destination unreachable', 5: 'redirect', 8: 'echo request', 11: 'time exceeded',
};
const TCP_FLAG_NAMES: ReadonlyArray<[number, string]> = [
  [TCP_CWR, 'CWR'], [TCP_ECE, 'ECE'], [TCP_URG, 'URG'], [TCP_ACK, 'ACK'], [TCP_PSH, 'PSH'], [TCP_RST, 'RST'],
  [TCP_SYN, 'SYN'], [TCP_FIN, 'FIN'],
];

export function decodeFrame(data: Uint8Array, opts: DecodeOptions = {}): Layer[] {
  const ctx: Ctx = { opts, out: [], at: 0, space: 'frame' };
  try {
    ethernet(data, ctx);
  } catch (err) {
    // Codec errors are handled per layer; anything reaching here is a decoder bug, but a capture
    // viewer must not die on one packet.
    ctx.out.push({ name: 'payload', fields: { malformed: `decoder error: ${(err as Error).message}` } });
  }
  return ctx.out;
}

function push(ctx: Ctx, name: LayerName, fields: Layer['fields']): Layer {
  const layer = { name, fields };
  ctx.out.push(layer);
  return layer;
}

/** Runs a view check; on `WireError` appends a malformed layer and returns false. */
function checked(ctx: Ctx, name: LayerName, check: () => void): boolean {
  try {
    check();
    return true;
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
    push(ctx, name, { malformed: malformedText(ctx, err) });
    return false;
  }
}

function malformedText(ctx: Ctx, err: WireError): string {
  const detail = err.message.replace(/^[^:]*: bad [^:]* at byte offset \d+: /, '');
  const where = ctx.space === 'frame' ? `byte ${ctx.at + err.offset}` : `byte ${ctx.at + err.offset} of the decrypted payload`;
  return `${err.protocol} ${err.field} at ${where}: ${detail}`;
}

function within(ctx: Ctx, delta: number): Ctx {
  return { ...ctx, at: ctx.at + delta };
}

function ethernet(bytes: Uint8Array, ctx: Ctx): void {
  if (!checked(ctx, 'eth', () => EthernetView.check(bytes))) return;
  const eth = new EthernetView(bytes);
  const type = eth.ethertype;
  push(ctx, 'eth', {
    src: formatMac(eth.src), dst: formatMac(eth.dst), type: hex(type, 4),
    ...(ETHERTYPE_NAMES[type] !== undefined ? { typeName: ETHERTYPE_NAMES[type] } : {}),
  });
  const inner = within(ctx, 14);
  if (type === ETHERTYPE_IPV4) ipv4(eth.payload, inner);
  else if (type === ETHERTYPE_ARP) arp(eth.payload, inner);
  else payload(eth.payload, inner, `ethertype ${hex(type, 4)}${ETHERTYPE_NAMES[type] ? ` (${ETHERTYPE_NAMES[type]})` : ''} not decoded`);
}

function arp(bytes: Uint8Array, ctx: Ctx): void {
  if (!checked(ctx, 'arp', () => ArpView.check(bytes))) return;
  const a = new ArpView(bytes);
  push(ctx, 'arp', {
    operation: a.operation === 1 ? 'request' : 'reply',
    senderMac: formatMac(a.senderMac), senderIp: formatIpv4Address(a.senderIp),
    targetMac: formatMac(a.targetMac), targetIp: formatIpv4Address(a.targetIp),
  });
}

function ipv4(bytes: Uint8Array, ctx: Ctx): void {
  if (!checked(ctx, 'ipv4', () => Ipv4View.check(bytes))) return;
  const ip = new Ipv4View(bytes);
  const flags = [ip.dontFragment ? 'DF' : '', ip.moreFragments ? 'MF' : ''].filter(Boolean).join(',');
  push(ctx, 'ipv4', {
    src: formatIpv4Address(ip.src), dst: formatIpv4Address(ip.dst), protocol: ip.protocol,
    ...(IP_PROTO_NAMES[ip.protocol] !== undefined ? { protocolName: IP_PROTO_NAMES[ip.protocol] } : {}),
    ttl: ip.ttl, id: ip.id, length: ip.totalLength, headerLength: ip.headerLen, flags: flags || 'none',
    fragmentOffset: ip.fragmentOffset,
    checksum: ip.checksumValid ? 'ok' : `bad ${hex(ip.checksum, 4)} (expected ${hex(ip.computeChecksum(), 4)})`,
  });
  const inner = within(ctx, ip.headerLen);
  if (ip.fragmentOffset > 0) return payload(ip.payload, inner, `fragment at offset ${ip.fragmentOffset}`);
  const pseudo = { src: ip.src, dst: ip.dst };
  switch (ip.protocol) {
    case IPPROTO_UDP: return udp(ip.payload, pseudo, inner, ip.moreFragments);
    case IPPROTO_TCP: return tcp(ip.payload, pseudo, inner, ip.moreFragments);
    case IPPROTO_ICMP: return icmp(ip.payload, inner, ip.moreFragments);
    default: return payload(ip.payload, inner, `IP protocol ${ip.protocol} not decoded`);
  }
}

function icmp(bytes: Uint8Array, ctx: Ctx, fragment: boolean): void {
  if (!checked(ctx, 'icmp', () => Icmpv4View.check(bytes))) return;
  const m = new Icmpv4View(bytes);
  const fields: Layer['fields'] = { type: m.type, code: m.code, typeName: ICMP_TYPE_NAMES[m.type] ?? `type ${m.type}` };
  if (m.type === 0 || m.type === 8) Object.assign(fields, { id: m.echoId, seq: m.echoSeq, dataLength: m.data.length });
  if (m.type === 3 && m.code === 4) fields.nextHopMtu = m.nextHopMtu;
  fields.checksum = fragment ? 'unchecked (fragment)' : m.checksumValid ? 'ok' : `bad ${hex(m.checksum, 4)} (expected ${hex(m.computeChecksum(), 4)})`;
  push(ctx, 'icmp', fields);
}

function tcp(bytes: Uint8Array, pseudo: { src: number; dst: number }, ctx: Ctx, fragment: boolean): void {
  if (!checked(ctx, 'tcp', () => TcpView.check(bytes))) return;
  const t = new TcpView(bytes);
  push(ctx, 'tcp', {
    srcPort: t.srcPort, dstPort: t.dstPort, seq: t.seq, ack: t.ack, flags: formatTcpFlags(t.flags),
    flagNames: TCP_FLAG_NAMES.filter(([bit]) => (t.flags & bit) !== 0).map(([, name]) => name).join(',') || 'none',
    window: t.window, headerLength: t.headerLen, optionsLength: t.optionsLen, payloadLength: t.payload.length,
    checksum: fragment ? 'unchecked (fragment)' : t.checksumValid(pseudo) ? 'ok'
      : `bad ${hex(t.checksum, 4)} (expected ${hex(t.computeChecksum(pseudo), 4)})`,
  });
  if (t.payload.length > 0) payload(t.payload, within(ctx, t.headerLen));
}

function udp(bytes: Uint8Array, pseudo: { src: number; dst: number }, ctx: Ctx, fragment: boolean): void {
  if (!checked(ctx, 'udp', () => UdpView.check(bytes))) return;
  const u = new UdpView(bytes);
  push(ctx, 'udp', {
    srcPort: u.srcPort, dstPort: u.dstPort, length: u.length,
    checksum: u.checksum === 0 ? 'none' : fragment ? 'unchecked (fragment)' : u.checksumValid(pseudo) ? 'ok'
      : `bad ${hex(u.checksum, 4)} (expected ${hex(u.computeChecksum(pseudo), 4)})`,
  });
  const inner = within(ctx, 8);
  const port = (p: number) => u.dstPort === p || u.srcPort === p;
  if (u.dstPort === (ctx.opts.vxlanPort ?? VXLAN_UDP_PORT)) return vxlan(u.payload, inner);
  if (port(ctx.opts.linkPort ?? LINK_UDP_PORT)) return link(u.payload, inner);
  if (port(DHCP_SERVER_PORT) && port(DHCP_CLIENT_PORT)) return dhcp(u.payload, inner);
  if (u.payload.length > 0) payload(u.payload, inner);
}

function vxlan(bytes: Uint8Array, ctx: Ctx): void {
  if (!checked(ctx, 'vxlan', () => VxlanView.check(bytes))) return;
  const v = new VxlanView(bytes);
  push(ctx, 'vxlan', { vni: v.vni, flags: hex(bytes[0], 2) });
  ethernet(v.payload, within(ctx, 8));
}

function link(bytes: Uint8Array, ctx: Ctx): void {
  if (bytes.length === 0) {
    push(ctx, 'link', { malformed: `link type at byte ${ctx.at}: empty datagram` });
    return;
  }
  const type = bytes[0];
  const typeName = LINK_TYPE_NAMES[type];
  if (typeName === undefined) {
    push(ctx, 'link', { type, malformed: `link type at byte ${ctx.at}: unknown message type ${type} (1..4)` });
    return;
  }
  if (type !== LINK_TYPE_DATA) {
    push(ctx, 'link', { type, typeName, length: bytes.length });
    return;
  }
  if (bytes.length < LINK_HEADER_LEN + LINK_TAG_LEN) {
    push(ctx, 'link', { type, typeName, malformed: `link message at byte ${ctx.at}: ${bytes.length} bytes, a data message needs at least ${LINK_HEADER_LEN + LINK_TAG_LEN}` });
    return;
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const receiver = dv.getUint32(4, true);
  const counter = dv.getBigUint64(8, true).toString();
  const fields: Layer['fields'] = { type, typeName, receiver: hex(receiver, 8), counter, length: bytes.length };
  if (bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0) {
    push(ctx, 'link', { ...fields, malformed: `link reserved at byte ${ctx.at + 1}: reserved bytes are not zero` });
    return;
  }
  const keys = ctx.opts.keys?.get(receiver);
  if (keys === undefined) {
    push(ctx, 'link', { ...fields, state: 'encrypted' });
    return;
  }
  let plaintext: Uint8Array | null = null;
  for (const key of keys) {
    const r = openData(key, bytes);
    if ('plaintext' in r) {
      plaintext = r.plaintext;
      break;
    }
  }
  if (plaintext === null) {
    push(ctx, 'link', { ...fields, state: 'encrypted',
      malformed: `link tag at byte ${ctx.at + bytes.length - LINK_TAG_LEN}: does not verify with the keylog's key(s) for receiver ${hex(receiver, 8)}` });
    return;
  }
  push(ctx, 'link', { ...fields, state: 'decrypted', plaintextLength: plaintext.length });
  if (plaintext.length === 0) return; // keepalive
  vxlan(plaintext, { ...ctx, at: 0, space: 'plaintext' });
}

function dhcp(bytes: Uint8Array, ctx: Ctx): void {
  let m: ReturnType<typeof parseDhcp> | undefined;
  if (!checked(ctx, 'dhcp', () => { m = parseDhcp(bytes); })) return;
  const msg = m!;
  const type = dhcpMessageType(msg);
  push(ctx, 'dhcp', {
    op: msg.op === 1 ? 'request' : 'reply',
    ...(type !== undefined ? { messageType: type, messageTypeName: DHCP_MESSAGE_TYPE_NAMES[type] ?? `unknown (${type})` } : {}),
    xid: hex(msg.xid, 8), secs: msg.secs, broadcast: (msg.flags & 0x8000) !== 0,
    ciaddr: formatIpv4Address(msg.ciaddr), yiaddr: formatIpv4Address(msg.yiaddr),
    siaddr: formatIpv4Address(msg.siaddr), giaddr: formatIpv4Address(msg.giaddr),
    chaddr: msg.chaddr.length === 6 ? formatMac(msg.chaddr) : Buffer.from(msg.chaddr).toString('hex'),
    options: msg.options.map((o) => `${o.code} ${dhcpOptionName(o.code)}: ${formatDhcpOptionValue(o)}`),
  });
}

function payload(bytes: Uint8Array, ctx: Ctx, note?: string): void {
  const fields: Layer['fields'] = { length: bytes.length };
  if (note !== undefined) fields.note = note;
  if (bytes.length > 0) fields.hex = Buffer.from(bytes.subarray(0, 32)).toString('hex') + (bytes.length > 32 ? '…' : '');
  push(ctx, 'payload', fields);
}

function hex(v: number, digits: number): string {
  return `0x${v.toString(16).padStart(digits, '0')}`;
}
