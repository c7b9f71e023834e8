// fast-check arbitraries for the property tests of the wire codecs (test/130, test/131): the high-level
// form (Repr) of each protocol, valid frames built from them with our emitters, and damage (cuts and flips)
// applied to any byte arbitrary so a property reaches past a parser's first length check.
import fc from 'fast-check';
import * as W from '../../dataplane/wire/index.ts';
import * as M from '../../dataplane/link/messages.ts';

export const bytes = (maxLength: number, minLength = 0): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength, maxLength });
const exact = (n: number): fc.Arbitrary<Uint8Array> => bytes(n, n);
const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
export const mac = exact(6);

/** fc.record with ordinary prototypes, so parsed objects deep-equal the generated ones. */
export function rec<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true }) as unknown as fc.Arbitrary<T>;
}

/**
 * `(x) => void` that runs `fn(x)` and rethrows only what `allowed` rejects: the shape of every
 * "arbitrary input never throws anything but the parser's own error" property.
 */
export function onlyThrows<T>(fn: (x: T) => unknown, allowed: (e: unknown) => boolean): (x: T) => void {
  return (x) => {
    try {
      fn(x);
    } catch (e) {
      if (!allowed(e)) throw e;
    }
  };
}

/** `arb`'s bytes cut at a random length and with up to 4 bytes overwritten. */
export function mutated(arb: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const edit = fc.tuple(fc.nat(), u8);
  return fc.tuple(arb, fc.option(fc.nat(), { nil: undefined }), fc.array(edit, { maxLength: 4 })).map(([b, cut, edits]) => {
    const out = Uint8Array.from(b.subarray(0, cut === undefined ? b.length : cut % (b.length + 1)));
    for (const [at, v] of edits) if (out.length > 0) out[at % out.length] = v;
    return out;
  });
}

// --- high-level forms ------------------------------------------------------------------------------

export const arpRepr: fc.Arbitrary<W.ArpRepr> = rec({
  operation: fc.constantFrom('request', 'reply') as fc.Arbitrary<W.ArpOperation>,
  senderMac: mac, senderIp: u32, targetMac: mac, targetIp: u32,
});

export const ipv4Repr = (payload: fc.Arbitrary<Uint8Array>, protocol: fc.Arbitrary<number> = u8): fc.Arbitrary<W.Ipv4Repr> => rec({
  dscp: fc.integer({ min: 0, max: 63 }), ecn: fc.integer({ min: 0, max: 3 }), id: u16,
  dontFragment: fc.boolean(), moreFragments: fc.boolean(),
  fragmentOffset: fc.integer({ min: 0, max: 8191 }).map((x) => x * 8),
  ttl: u8, protocol, src: u32, dst: u32,
  options: fc.integer({ min: 0, max: 10 }).chain((n) => exact(4 * n)),
  payload,
});

export const udpRepr = (payload: fc.Arbitrary<Uint8Array>, dstPort: fc.Arbitrary<number> = u16): fc.Arbitrary<W.UdpRepr> =>
  rec({ srcPort: u16, dstPort, payload });

export const tcpRepr: fc.Arbitrary<W.TcpRepr> = rec({
  srcPort: u16, dstPort: u16, seq: u32, ack: u32, flags: u8, window: u16, urgent: u16,
  options: fc.integer({ min: 0, max: 10 }).chain((n) => exact(4 * n)), payload: bytes(100),
});

export const icmpv4Repr: fc.Arbitrary<W.Icmpv4Repr> = fc.oneof(
  rec({ type: fc.constantFrom('echo-request', 'echo-reply') as fc.Arbitrary<'echo-request' | 'echo-reply'>, id: u16, seq: u16, data: bytes(100) }),
  fc.integer({ min: 0, max: 15 }).chain((code) => rec({
    type: fc.constant('dest-unreachable' as const), code: fc.constant(code),
    nextHopMtu: code === 4 ? u16 : fc.constant(0), original: bytes(80, 28),
  })),
  rec({ type: fc.constant('time-exceeded' as const), code: fc.integer({ min: 0, max: 1 }), original: bytes(80, 28) }),
);

/** A NUL-free string of bytes 1..255, as sname and file carry. */
const latin1 = (maxLength: number): fc.Arbitrary<string> =>
  fc.array(fc.integer({ min: 1, max: 255 }), { maxLength }).map((a) => String.fromCharCode(...a));

export const dhcpRepr: fc.Arbitrary<W.DhcpRepr> = rec({
  op: fc.constantFrom(W.BOOTREQUEST, W.BOOTREPLY), htype: u8, hops: u8, xid: u32, secs: u16, flags: u16,
  ciaddr: u32, yiaddr: u32, siaddr: u32, giaddr: u32, chaddr: bytes(16),
  sname: latin1(63), file: latin1(127),
  options: fc.array(rec({ code: fc.integer({ min: 1, max: 254 }), data: bytes(255) }), { maxLength: 6 }),
});

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$/);
export const dnsName = fc.array(label, { minLength: 1, maxLength: 5 }).map((l) => l.join('.'));

const dnsRecord: fc.Arbitrary<W.DnsRecord> = fc.oneof(
  // An A record outside class IN is parsed as opaque data, so A records here are IN.
  rec({ name: dnsName, type: fc.constant(W.DNS_TYPE_A), class: fc.constant(W.DNS_CLASS_IN), ttl: u32, data: u32.map((address) => ({ kind: 'a' as const, address })) }),
  rec({ name: dnsName, type: fc.constantFrom(W.DNS_TYPE_PTR, W.DNS_TYPE_CNAME, W.DNS_TYPE_NS), class: u16, ttl: u32,
    data: dnsName.map((name) => ({ kind: 'name' as const, name })) }),
  rec({ name: dnsName, type: fc.constantFrom(W.DNS_TYPE_TXT, W.DNS_TYPE_AAAA, W.DNS_TYPE_MX, 99), class: u16, ttl: u32,
    data: bytes(40).map((b) => ({ kind: 'opaque' as const, bytes: b })) }),
);

export const dnsMessage: fc.Arbitrary<W.DnsMessage> = rec({
  id: u16, qr: fc.boolean(), opcode: fc.integer({ min: 0, max: 15 }), aa: fc.boolean(), tc: fc.boolean(), rd: fc.boolean(),
  ra: fc.boolean(), z: fc.boolean(), ad: fc.boolean(), cd: fc.boolean(), rcode: fc.integer({ min: 0, max: 15 }),
  questions: fc.array(rec({ name: dnsName, type: u16, class: u16 }), { maxLength: 3 }),
  answers: fc.array(dnsRecord, { maxLength: 3 }), authorities: fc.array(dnsRecord, { maxLength: 2 }),
  additionals: fc.array(dnsRecord, { maxLength: 2 }),
});

export const initiationRepr: fc.Arbitrary<M.InitiationRepr> = rec({ senderIndex: u32, noise: exact(M.NOISE_MSG1_LEN), mac1: exact(16), mac2: exact(16) });
export const responseRepr: fc.Arbitrary<M.ResponseRepr> = rec({
  senderIndex: u32, receiverIndex: u32, noise: exact(M.NOISE_MSG2_LEN), mac1: exact(16), mac2: exact(16),
});
export const cookieReplyRepr: fc.Arbitrary<M.CookieReplyRepr> = rec({ receiverIndex: u32, nonce: exact(24), encryptedCookie: exact(32) });

// --- frames -----------------------------------------------------------------------------------------

function emitted<T>(emit: (r: T, buf: Uint8Array, offset: number) => number, len: (r: T) => number): (r: T) => Uint8Array {
  return (r) => {
    const buf = new Uint8Array(len(r));
    emit(r, buf, 0);
    return buf;
  };
}
export const emitArpBytes = emitted(W.emitArp, W.arpBufferLen);
export const emitIpv4Bytes = emitted(W.emitIpv4, W.ipv4BufferLen);
export const emitIcmpv4Bytes = emitted(W.emitIcmpv4, W.icmpv4BufferLen);
export const emitVxlanBytes = emitted(W.emitVxlan, W.vxlanBufferLen);
export const emitEthernetBytes = emitted(W.emitEthernet, W.ethernetBufferLen);

function ethernet(ethertype: number, payload: Uint8Array, dst: Uint8Array, src: Uint8Array): Uint8Array {
  return emitEthernetBytes({ dst, src, ethertype, payload });
}

/** An IPv4 packet carrying `payload` with UDP/TCP checksums right for its addresses. */
function ipv4(protocol: number, l4: (ip: W.Ipv4PseudoHeader) => Uint8Array): fc.Arbitrary<Uint8Array> {
  return ipv4Repr(fc.constant(new Uint8Array(0)), fc.constant(protocol)).map((r) => {
    const payload = l4({ src: r.src, dst: r.dst });
    return emitIpv4Bytes({ ...r, options: new Uint8Array(0), fragmentOffset: 0, moreFragments: false, payload });
  });
}

const udpTo = (port: number, payload: fc.Arbitrary<Uint8Array>, srcPort: fc.Arbitrary<number> = u16): fc.Arbitrary<Uint8Array> =>
  rec({ srcPort, dstPort: fc.constant(port), payload }).chain((u) => ipv4(17, (ip) => {
    const buf = new Uint8Array(W.udpBufferLen(u));
    W.emitUdp(u, buf, 0, ip);
    return buf;
  }));

const tcpPacket = tcpRepr.chain((r) => ipv4(6, (ip) => {
  const buf = new Uint8Array(W.tcpBufferLen(r));
  W.emitTcp(r, buf, 0, ip);
  return buf;
}));

const innerFrame: fc.Arbitrary<Uint8Array> = fc.tuple(mac, mac, fc.oneof(
  arpRepr.map((r) => [W.ETHERTYPE_ARP, emitArpBytes(r)] as const),
  icmpv4Repr.chain((r) => ipv4(1, () => emitIcmpv4Bytes(r))).map((p) => [W.ETHERTYPE_IPV4, p] as const),
  tcpPacket.map((p) => [W.ETHERTYPE_IPV4, p] as const),
)).map(([d, s, [type, p]]) => ethernet(type, p, d, s));

const linkMessage = fc.oneof(
  initiationRepr.map(M.emitInitiation), responseRepr.map(M.emitResponse), cookieReplyRepr.map(M.emitCookieReply),
  fc.tuple(u32, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), bytes(80)).map(([receiver, counter, rest]) => {
    const head = new Uint8Array(16);
    W.emitLinkDataHeader({ receiver, counter: counter % W.REJECT_AFTER_MESSAGES }, head, 0);
    return Uint8Array.from([...head, ...rest]);
  }),
);

/**
 * Valid Ethernet frames of every kind the data plane and its services parse: ARP, ICMP, TCP, DHCP, DNS,
 * VXLAN around an inner frame, and link handshake and data messages.
 */
export const frames: fc.Arbitrary<Uint8Array> = fc.tuple(mac, mac, fc.oneof(
  innerFrame.map((f) => f),
  udpTo(W.DHCP_SERVER_PORT, dhcpRepr.map(W.encodeDhcp), fc.constant(W.DHCP_CLIENT_PORT)).map((p) => [W.ETHERTYPE_IPV4, p] as const),
  udpTo(W.DNS_PORT, dnsMessage.map(W.encodeDns)).map((p) => [W.ETHERTYPE_IPV4, p] as const),
  udpTo(W.VXLAN_UDP_PORT, fc.tuple(fc.integer({ min: 0, max: W.VXLAN_MAX_VNI }), innerFrame).map(([vni, f]) => emitVxlanBytes({ vni, payload: f })))
    .map((p) => [W.ETHERTYPE_IPV4, p] as const),
  udpTo(M.LINK_UDP_PORT, linkMessage).map((p) => [W.ETHERTYPE_IPV4, p] as const),
)).map(([d, s, x]) => (x instanceof Uint8Array ? x : ethernet(x[0], x[1], d, s)));
