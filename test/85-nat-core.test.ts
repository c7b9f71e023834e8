// NAT core (native/src/nat.cc through dataplane/nat.ts): every translated packet must equal the packet
// built from scratch with the translated addresses and ports (so every checksum equals a full
// recomputation), flows must time out per protocol and TCP state, and a full table must drop only new
// flows. tshark, with checksum validation on, is the independent judge of the checksums.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  emitEthernet, emitIcmpv4, emitIpv4, emitTcp, emitUdp, ETHERTYPE_IPV4, Icmpv4View,
  IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, ipv4BufferLen, Ipv4View, parseIpv4Address, parseMac,
  quoteOriginalDatagram, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, tcpBufferLen, TcpView, UdpView,
} from '../dataplane/wire/index.ts';
import type { Ipv4Repr } from '../dataplane/wire/index.ts';
import { writeCapture } from '../dataplane/pcap/index.ts';
import { NAT_DROP_REASONS, NatTable } from '../dataplane/nat.ts';
import type { NatDropReason, NatFlow, NatVerdict } from '../dataplane/nat.ts';
import { xorshift32 } from './helpers/random.ts';

const A = parseIpv4Address;
const VNI = 42;
const NET = A('198.18.10.0');
const GW = A('198.19.0.10'); // the network's floating gateway (SNAT external) address
const H5 = A('198.18.10.5');
const H6 = A('198.18.10.6');
const H7 = A('198.18.10.7');
const H9 = A('198.18.10.9'); // floated
const FIP = A('198.19.0.77');
const REM = A('198.19.200.1');
const REM2 = A('198.19.200.2');
const T0 = 1_000_000;
const S = 1000; // ms per second

// Every packet the tests translate, for tshark to check at the end.
const seen: Uint8Array[] = [];

// --- packets built from scratch with the wire codecs -------------------------------------------------

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

function ip(src: number, dst: number, protocol: number, payload: Uint8Array, extra: Partial<Ipv4Repr> = {}): Uint8Array {
  const repr: Ipv4Repr = {
    dscp: 0, ecn: 0, id: 0x1234, dontFragment: true, moreFragments: false, fragmentOffset: 0, ttl: 64,
    protocol, src, dst, options: new Uint8Array(0), payload, ...extra,
  };
  const b = new Uint8Array(ipv4BufferLen(repr));
  emitIpv4(repr, b);
  return b;
}

function udp(src: number, sport: number, dst: number, dport: number, payload = text('hello nat'), checksum = true): Uint8Array {
  const l4 = new Uint8Array(8 + payload.length);
  emitUdp({ srcPort: sport, dstPort: dport, payload }, l4, 0, checksum ? { src, dst } : undefined);
  return ip(src, dst, IPPROTO_UDP, l4);
}

function tcp(src: number, sport: number, dst: number, dport: number, flags: number, payload: Uint8Array = new Uint8Array(0), seq = 1000): Uint8Array {
  const repr = { srcPort: sport, dstPort: dport, seq, ack: flags & TCP_ACK ? 2000 : 0, flags, window: 64240, urgent: 0, options: new Uint8Array(0), payload };
  const l4 = new Uint8Array(tcpBufferLen(repr));
  emitTcp(repr, l4, 0, { src, dst });
  return ip(src, dst, IPPROTO_TCP, l4);
}

function echo(src: number, dst: number, type: 'echo-request' | 'echo-reply', id: number, seq = 1): Uint8Array {
  const l4 = new Uint8Array(8 + 16);
  emitIcmpv4({ type, id, seq, data: text('abcdefghijklmnop') }, l4);
  return ip(src, dst, IPPROTO_ICMP, l4);
}

/** A destination unreachable (port, code 3) from `src` to `dst` quoting `original`. */
function unreachable(src: number, dst: number, original: Uint8Array): Uint8Array {
  const quote = quoteOriginalDatagram(original);
  const l4 = new Uint8Array(8 + quote.length);
  emitIcmpv4({ type: 'dest-unreachable', code: 3, nextHopMtu: 0, original: quote }, l4);
  return ip(src, dst, IPPROTO_ICMP, l4, { dontFragment: false });
}

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const sport = (p: Uint8Array): number => (p[20] << 8) | p[21];
const echoId = (p: Uint8Array): number => (p[24] << 8) | p[25];

/** Every checksum in the packet, recomputed from scratch: names the ones that do not match. */
function badChecksums(p: Uint8Array, where = 'ip'): string[] {
  const bad: string[] = [];
  const v = new Ipv4View(p);
  if (v.computeChecksum() !== v.checksum) bad.push(`${where} header`);
  if (v.moreFragments || v.fragmentOffset !== 0) return bad;
  const ph = { src: v.src, dst: v.dst };
  if (v.protocol === IPPROTO_UDP) {
    const u = new UdpView(v.payload);
    if (u.checksum !== 0 && u.computeChecksum(ph) !== u.checksum) bad.push(`${where} udp`);
  } else if (v.protocol === IPPROTO_TCP) {
    const c = new TcpView(v.payload);
    if (c.computeChecksum(ph) !== c.checksum) bad.push(`${where} tcp`);
  } else if (v.protocol === IPPROTO_ICMP) {
    const c = new Icmpv4View(v.payload);
    if (c.computeChecksum() !== c.checksum) bad.push(`${where} icmp`);
    if (c.type === 3 || c.type === 11) bad.push(...badChecksums(c.data, 'quoted ip'));
  }
  return bad;
}

/** Translates a copy of `p` and requires the result to be byte for byte `expected`. */
function expectTranslated(t: ExecutionContext, nat: NatTable, dir: 'egress' | 'ingress', vni: number, p: Uint8Array,
  expected: Uint8Array, now: number, deliverTo = vni): Uint8Array {
  const b = p.slice();
  const v = nat.translate(dir, vni, b, now);
  seen.push(b); // before the assertions, which throw: tshark judges the failures too
  t.deepEqual(v, { action: 'translated', reason: 'none', vni: deliverTo } as NatVerdict, `${dir} verdict`);
  t.deepEqual(badChecksums(b), [], `${dir} checksums`);
  t.is(hexOf(b), hexOf(expected), `${dir} packet equals the one built from scratch`);
  return b;
}

/** Translates a copy of `p`, requires a drop for `reason`, and the packet left as it was. */
function expectDrop(t: ExecutionContext, nat: NatTable, dir: 'egress' | 'ingress', p: Uint8Array, reason: NatDropReason, now: number): void {
  const b = p.slice();
  const v = nat.translate(dir, VNI, b, now);
  t.is(v.action, 'drop', `${dir} ${reason}`);
  t.is(v.reason as string, reason);
  t.is(hexOf(b), hexOf(p), 'a dropped packet is not modified');
}

function table(capacity = 1024, portMin = 1024, portMax = 65535): NatTable {
  const nat = new NatTable({ capacity, seed: 7n });
  nat.addSnat({ vni: VNI, insideNet: NET, prefix: 24, external: GW, portMin, portMax });
  return nat;
}

const flowOf = (nat: NatTable, inside: number, insidePort: number): NatFlow | undefined =>
  nat.flows().find((f) => f.inside === inside && f.insidePort === insidePort);

// --- translation --------------------------------------------------------------------------------------

test('UDP: egress gets the gateway address with the port kept, the reply goes back to the instance', (t) => {
  const nat = table();
  expectTranslated(t, nat, 'egress', VNI, udp(H5, 40000, REM, 53), udp(GW, 40000, REM, 53), T0);
  expectTranslated(t, nat, 'ingress', 0, udp(REM, 53, GW, 40000, text('answer')), udp(REM, 53, H5, 40000, text('answer')), T0 + 5, VNI);
  const s = nat.stats();
  t.is(s.entries, 1);
  t.is(s.flowsCreated, 1);
  t.deepEqual(s.translated, { egress: 1, ingress: 1 });
  const r = nat.rules().snat[0];
  t.is(r.egressPackets, 1);
  t.is(r.ingressPackets, 1);
  t.is(r.ingressBytes, udp(REM, 53, GW, 40000, text('answer')).length);
});

test('UDP: a zero checksum stays zero, and a checksum that comes out 0 is sent as 0xffff', (t) => {
  const nat = table();
  expectTranslated(t, nat, 'egress', VNI, udp(H5, 40001, REM, 53, text('x'), false), udp(GW, 40001, REM, 53, text('x'), false), T0);
  // Choose the payload so the translated datagram sums to zero: its checksum must be 0xffff, never 0.
  const probe = udp(GW, 40002, REM, 53, new Uint8Array(2));
  const word = new UdpView(probe.subarray(20)).checksum;
  const payload = new Uint8Array([word >> 8, word & 0xff]);
  const expected = udp(GW, 40002, REM, 53, payload);
  t.is(new UdpView(expected.subarray(20)).checksum, 0xffff);
  expectTranslated(t, nat, 'egress', VNI, udp(H5, 40002, REM, 53, payload), expected, T0);
});

test('TCP: translated both ways through the handshake, data and close, state and timeout follow', (t) => {
  const nat = table();
  const state = (): [string, number] => {
    const f = flowOf(nat, H5, 33000)!;
    return [f.tcpState, f.expiresMs];
  };
  const out = (flags: number, now: number, data: Uint8Array = new Uint8Array(0)) =>
    expectTranslated(t, nat, 'egress', VNI, tcp(H5, 33000, REM, 443, flags, data), tcp(GW, 33000, REM, 443, flags, data), now);
  const back = (flags: number, now: number, data: Uint8Array = new Uint8Array(0)) =>
    expectTranslated(t, nat, 'ingress', 0, tcp(REM, 443, GW, 33000, flags, data), tcp(REM, 443, H5, 33000, flags, data), now, VNI);
  out(TCP_SYN, T0);
  t.deepEqual(state(), ['syn_sent', T0 + 120 * S]);
  back(TCP_SYN | TCP_ACK, T0 + 1);
  t.deepEqual(state(), ['syn_recv', T0 + 1 + 60 * S]);
  out(TCP_ACK, T0 + 2);
  t.deepEqual(state(), ['established', T0 + 2 + 7440 * S]);
  out(TCP_ACK, T0 + 3, text('GET / HTTP/1.1\r\n\r\n'));
  back(TCP_ACK, T0 + 4, text('HTTP/1.1 200 OK\r\n\r\nodd'));
  t.deepEqual(state(), ['established', T0 + 4 + 7440 * S]);
  out(TCP_FIN | TCP_ACK, T0 + 5);
  t.deepEqual(state(), ['fin_wait', T0 + 5 + 120 * S], 'a FIN shortens the timeout');
  back(TCP_FIN | TCP_ACK, T0 + 6);
  t.deepEqual(state(), ['last_ack', T0 + 6 + 30 * S]);
  out(TCP_ACK, T0 + 7);
  t.deepEqual(state(), ['time_wait', T0 + 7 + 120 * S]);
  // The same 4-tuple reopens with a new SYN (port reuse after TIME_WAIT).
  out(TCP_SYN, T0 + 8);
  t.deepEqual(state(), ['syn_sent', T0 + 8 + 120 * S]);
  t.is(nat.stats().flowsCreated, 1);
});

test('TCP: RST closes with a 10 s timeout; RST or no flags cannot start a flow; a mid-stream ACK is picked up', (t) => {
  const nat = table();
  expectTranslated(t, nat, 'egress', VNI, tcp(H5, 33001, REM, 80, TCP_SYN), tcp(GW, 33001, REM, 80, TCP_SYN), T0);
  expectTranslated(t, nat, 'ingress', 0, tcp(REM, 80, GW, 33001, TCP_SYN | TCP_ACK), tcp(REM, 80, H5, 33001, TCP_SYN | TCP_ACK), T0, VNI);
  expectTranslated(t, nat, 'egress', VNI, tcp(H5, 33001, REM, 80, TCP_ACK), tcp(GW, 33001, REM, 80, TCP_ACK), T0);
  expectTranslated(t, nat, 'ingress', 0, tcp(REM, 80, GW, 33001, TCP_RST), tcp(REM, 80, H5, 33001, TCP_RST), T0 + S, VNI);
  t.deepEqual([flowOf(nat, H5, 33001)!.tcpState, flowOf(nat, H5, 33001)!.expiresMs], ['close', T0 + 11 * S], 'RST shortens the timeout');
  // Late segments of the closed flow still translate until it expires.
  expectTranslated(t, nat, 'egress', VNI, tcp(H5, 33001, REM, 80, TCP_ACK), tcp(GW, 33001, REM, 80, TCP_ACK), T0 + 2 * S);
  expectDrop(t, nat, 'ingress', tcp(REM, 80, GW, 33001, TCP_ACK), 'no_flow', T0 + 12 * S);

  expectDrop(t, nat, 'egress', tcp(H5, 33002, REM, 80, TCP_RST), 'invalid_tcp', T0);
  expectDrop(t, nat, 'egress', tcp(H5, 33002, REM, 80, 0), 'invalid_tcp', T0);
  t.is(nat.stats().drops.invalid_tcp, 2);
  expectTranslated(t, nat, 'egress', VNI, tcp(H5, 33003, REM, 80, TCP_ACK), tcp(GW, 33003, REM, 80, TCP_ACK), T0);
  t.is(flowOf(nat, H5, 33003)!.tcpState, 'established');
});

test('TCP: an ingress RST far from the inside\'s last ACK does not close the flow (a blind RST); one near it does', (t) => {
  const nat = table();
  expectTranslated(t, nat, 'egress', VNI, tcp(H5, 33010, REM, 80, TCP_SYN), tcp(GW, 33010, REM, 80, TCP_SYN), T0);
  expectTranslated(t, nat, 'ingress', 0, tcp(REM, 80, GW, 33010, TCP_SYN | TCP_ACK), tcp(REM, 80, H5, 33010, TCP_SYN | TCP_ACK), T0, VNI);
  expectTranslated(t, nat, 'egress', VNI, tcp(H5, 33010, REM, 80, TCP_ACK), tcp(GW, 33010, REM, 80, TCP_ACK), T0); // acks 2000
  const blind = tcp(REM, 80, GW, 33010, TCP_RST, new Uint8Array(0), 2000 + 2 ** 31);
  expectTranslated(t, nat, 'ingress', 0, blind, tcp(REM, 80, H5, 33010, TCP_RST, new Uint8Array(0), 2000 + 2 ** 31), T0 + 1, VNI);
  t.is(flowOf(nat, H5, 33010)!.tcpState, 'established', 'the blind RST passes through but does not end the flow');
  expectTranslated(t, nat, 'ingress', 0, tcp(REM, 80, GW, 33010, TCP_RST, new Uint8Array(0), 2000), tcp(REM, 80, H5, 33010, TCP_RST, new Uint8Array(0), 2000), T0 + 2, VNI);
  t.is(flowOf(nat, H5, 33010)!.tcpState, 'close');
});

test('ICMP echo: the id is translated into the port range and back', (t) => {
  const nat = table();
  const req = echo(H5, REM, 'echo-request', 7);
  const b = req.slice();
  t.is(nat.translate('egress', VNI, b, T0).action, 'translated');
  const id = echoId(b);
  t.true(id >= 1024 && id <= 65535, `id ${id} is in the port range`);
  t.is(hexOf(b), hexOf(echo(GW, REM, 'echo-request', id)));
  seen.push(b);
  expectTranslated(t, nat, 'ingress', 0, echo(REM, GW, 'echo-reply', id), echo(REM, H5, 'echo-reply', 7), T0 + 10, VNI);
  // An id already in the range is kept, like a port.
  expectTranslated(t, nat, 'egress', VNI, echo(H5, REM, 'echo-request', 5000), echo(GW, REM, 'echo-request', 5000), T0);
  // Echo requests from outside to the gateway address belong to no flow.
  expectDrop(t, nat, 'ingress', echo(REM, GW, 'echo-request', 5000), 'no_flow', T0);
});

test('ICMP errors about a tracked flow are translated, quote included, in both directions', (t) => {
  const nat = table();
  const sent = expectTranslated(t, nat, 'egress', VNI, udp(H5, 40000, REM, 9999), udp(GW, 40000, REM, 9999), T0);
  // The remote's port unreachable quotes the datagram as it left us.
  expectTranslated(t, nat, 'ingress', 0, unreachable(REM2, GW, sent), unreachable(REM2, H5, udp(H5, 40000, REM, 9999)), T0, VNI);
  // An instance's port unreachable about a reply we delivered to it.
  const delivered = udp(REM, 9999, H5, 40000, text('late'));
  expectTranslated(t, nat, 'egress', VNI, unreachable(H5, REM, delivered), unreachable(GW, REM, udp(REM, 9999, GW, 40000, text('late'))), T0);
  // TCP and ICMP echo quotes too.
  const syn = expectTranslated(t, nat, 'egress', VNI, tcp(H5, 33000, REM, 25, TCP_SYN), tcp(GW, 33000, REM, 25, TCP_SYN), T0);
  expectTranslated(t, nat, 'ingress', 0, unreachable(REM, GW, syn), unreachable(REM, H5, tcp(H5, 33000, REM, 25, TCP_SYN)), T0, VNI);
  const ping = expectTranslated(t, nat, 'egress', VNI, echo(H5, REM, 'echo-request', 4000), echo(GW, REM, 'echo-request', 4000), T0);
  expectTranslated(t, nat, 'ingress', 0, unreachable(REM2, GW, ping), unreachable(REM2, H5, echo(H5, REM, 'echo-request', 4000)), T0, VNI);
  // An error about a flow we never saw is dropped; so is one whose quote is cut short.
  expectDrop(t, nat, 'ingress', unreachable(REM, GW, udp(GW, 41000, REM, 9999)), 'no_flow', T0);
  const cut = unreachable(REM, GW, sent).slice(0, 20 + 8 + 20 + 4);
  cut[3] = cut.length;
  new Ipv4View(cut).fillChecksum();
  expectDrop(t, nat, 'ingress', cut, 'truncated_l4', T0);
  t.is(nat.flows().find((f) => f.insidePort === 40000)!.expiresMs, T0 + 30 * S, 'errors do not refresh the flow');
});

// --- ports, timeouts, capacity ------------------------------------------------------------------------

test('port allocation: a taken port moves, collisions are per remote endpoint, an exhausted range drops', (t) => {
  const nat = table(64, 5000, 5001);
  expectTranslated(t, nat, 'egress', VNI, udp(H5, 5000, REM, 80), udp(GW, 5000, REM, 80), T0);
  expectTranslated(t, nat, 'egress', VNI, udp(H6, 5000, REM, 80), udp(GW, 5001, REM, 80), T0);
  expectDrop(t, nat, 'egress', udp(H7, 5000, REM, 80), 'ports_exhausted', T0);
  expectDrop(t, nat, 'egress', udp(H7, 6000, REM, 80), 'ports_exhausted', T0);
  t.is(nat.stats().drops.ports_exhausted, 2);
  // Another remote port, another remote address or another protocol does not collide.
  expectTranslated(t, nat, 'egress', VNI, udp(H7, 5000, REM, 81), udp(GW, 5000, REM, 81), T0);
  expectTranslated(t, nat, 'egress', VNI, udp(H7, 5000, REM2, 80), udp(GW, 5000, REM2, 80), T0);
  expectTranslated(t, nat, 'egress', VNI, tcp(H7, 5000, REM, 80, TCP_SYN), tcp(GW, 5000, REM, 80, TCP_SYN), T0);
  // Replies to the shared external port reach the right instance.
  expectTranslated(t, nat, 'ingress', 0, udp(REM, 80, GW, 5000), udp(REM, 80, H5, 5000), T0, VNI);
  expectTranslated(t, nat, 'ingress', 0, udp(REM, 80, GW, 5001), udp(REM, 80, H6, 5000), T0, VNI);
  expectTranslated(t, nat, 'ingress', 0, udp(REM2, 80, GW, 5000), udp(REM2, 80, H7, 5000), T0, VNI);
  expectTranslated(t, nat, 'ingress', 0, udp(REM, 81, GW, 5000), udp(REM, 81, H7, 5000), T0, VNI);
  // Once the flows have expired (answered UDP 180 s, TCP SYN 120 s) the ports are free again.
  t.is(nat.sweep(T0 + 180 * S), 5);
  expectTranslated(t, nat, 'egress', VNI, udp(H7, 5000, REM, 80), udp(GW, 5000, REM, 80), T0 + 180 * S);
});

test('timeouts per protocol: UDP 30 s, 180 s once answered; ICMP 30 s; TCP SYN 120 s; sweep counts them', (t) => {
  const nat = table();
  const udpOut = (p: number) => t.is(nat.translate('egress', VNI, udp(H5, p, REM, 53), T0).action, 'translated');
  udpOut(50000);
  udpOut(50001);
  t.is(nat.translate('ingress', 0, udp(REM, 53, GW, 50001), T0 + S).action, 'translated');
  t.is(nat.translate('egress', VNI, echo(H5, REM, 'echo-request', 3000), T0).action, 'translated');
  t.is(nat.translate('egress', VNI, tcp(H5, 50002, REM, 80, TCP_SYN), T0).action, 'translated');
  const live = () => nat.flows().map((f) => `${f.proto}:${f.insidePort}`).sort();
  t.is(nat.sweep(T0 + 30 * S - 1), 0);
  t.deepEqual(live(), ['17:50000', '17:50001', '1:3000', '6:50002']);
  t.is(nat.sweep(T0 + 30 * S), 2, 'the unanswered UDP flow and the ping');
  t.deepEqual(live(), ['17:50001', '6:50002']);
  t.is(nat.sweep(T0 + 120 * S), 1, 'the SYN');
  t.is(nat.sweep(T0 + S + 180 * S - 1), 0);
  t.is(nat.sweep(T0 + S + 180 * S), 1, 'the answered UDP flow');
  t.is(nat.stats().flowsExpired, 4);
  t.is(nat.stats().entries, 0);
  // An expired flow is gone at once, even before a sweep.
  udpOut(50003);
  expectDrop(t, nat, 'ingress', udp(REM, 53, GW, 50003), 'no_flow', T0 + 30 * S);
});

test('timeouts are configurable', (t) => {
  const nat = new NatTable({ capacity: 8, timeouts: { udp: 5, icmp: 60 } });
  nat.addSnat({ vni: VNI, insideNet: NET, prefix: 24, external: GW });
  nat.translate('egress', VNI, udp(H5, 40000, REM, 53), T0);
  nat.translate('egress', VNI, echo(H5, REM, 'echo-request', 2000), T0);
  t.is(nat.sweep(T0 + 5 * S), 1);
  t.is(nat.sweep(T0 + 60 * S), 1);
  t.throws(() => new NatTable({ timeouts: { udp: 0 } }), { instanceOf: RangeError, message: /timeouts\.udp/ });
});

test('table full: new flows are dropped and counted, existing flows keep translating both ways', (t) => {
  const nat = table(4);
  for (let i = 0; i < 4; i++) {
    expectTranslated(t, nat, 'egress', VNI, udp(H5, 41000 + i, REM, 53), udp(GW, 41000 + i, REM, 53), T0);
  }
  expectDrop(t, nat, 'egress', udp(H5, 41004, REM, 53), 'conntrack_full', T0);
  expectDrop(t, nat, 'egress', tcp(H6, 41005, REM, 80, TCP_SYN), 'conntrack_full', T0);
  expectDrop(t, nat, 'egress', echo(H6, REM, 'echo-request', 9000), 'conntrack_full', T0);
  for (let i = 0; i < 4; i++) {
    expectTranslated(t, nat, 'egress', VNI, udp(H5, 41000 + i, REM, 53), udp(GW, 41000 + i, REM, 53), T0 + 10 * S);
    expectTranslated(t, nat, 'ingress', 0, udp(REM, 53, GW, 41000 + i), udp(REM, 53, H5, 41000 + i), T0 + 10 * S, VNI);
  }
  const s = nat.stats();
  t.is(s.drops.conntrack_full, 3);
  t.is(s.entries, 4);
  t.is(s.capacity, 4);
  // The 1:1 path needs no table room.
  nat.addFloat({ vni: VNI, inside: H9, external: FIP });
  expectTranslated(t, nat, 'egress', VNI, udp(H9, 41000, REM, 53), udp(FIP, 41000, REM, 53), T0);
  // Room comes back when flows expire.
  t.is(nat.sweep(T0 + 10 * S + 180 * S), 4);
  expectTranslated(t, nat, 'egress', VNI, udp(H5, 41004, REM, 53), udp(GW, 41004, REM, 53), T0 + 200 * S);
});

test('the flow index survives churn: 2000 flows, half expired, every survivor still maps both ways', (t) => {
  const nat = table(2048);
  const rnd = xorshift32(0x0a7c0de);
  const made: Array<{ h: number; p: number; r: number; rp: number; udp: boolean }> = [];
  const keys = new Set<string>();
  while (made.length < 2000) {
    const f = { h: NET + 1 + (rnd() % 250), p: 1 + (rnd() % 65535), r: REM + (rnd() % 4), rp: 1 + (rnd() % 3), udp: made.length % 2 === 0 };
    const key = `${f.h}:${f.p}:${f.r}:${f.rp}:${f.udp}`;
    if (keys.has(key)) continue;
    keys.add(key);
    const pkt = f.udp ? udp(f.h, f.p, f.r, f.rp) : tcp(f.h, f.p, f.r, f.rp, TCP_SYN);
    t.is(nat.translate('egress', VNI, pkt, T0).action, 'translated');
    made.push(f);
  }
  t.is(nat.stats().entries, 2000);
  // UDP flows expire at 30 s, TCP SYN flows at 120 s.
  t.is(nat.sweep(T0 + 60 * S), 1000);
  const ext = new Map(nat.flows().map((f) => [`${f.inside}:${f.insidePort}:${f.remote}:${f.remotePort}`, f.externalPort]));
  let ok = 0;
  for (const f of made) {
    const port = ext.get(`${f.h}:${f.p}:${f.r}:${f.rp}`);
    if (f.udp) {
      t.is(nat.translate('ingress', 0, udp(f.r, f.rp, GW, f.p), T0 + 60 * S).reason, f.p === port ? 'none' : 'no_flow');
      continue;
    }
    const b = tcp(f.r, f.rp, GW, port!, TCP_SYN | TCP_ACK);
    if (nat.translate('ingress', 0, b, T0 + 60 * S).action === 'translated' && hexOf(b) === hexOf(tcp(f.r, f.rp, f.h, f.p, TCP_SYN | TCP_ACK))) ok++;
  }
  t.is(ok, 1000);
});

// --- rules ----------------------------------------------------------------------------------------------

test('1:1 (floating) NAT: both directions, any protocol, fragments too, no conntrack entry; defloat leaves no trace', (t) => {
  const nat = table();
  nat.addFloat({ vni: VNI, inside: H9, external: FIP });
  expectTranslated(t, nat, 'egress', VNI, tcp(H9, 22, REM, 50000, TCP_SYN | TCP_ACK), tcp(FIP, 22, REM, 50000, TCP_SYN | TCP_ACK), T0);
  expectTranslated(t, nat, 'ingress', 0, tcp(REM, 50000, FIP, 22, TCP_SYN), tcp(REM, 50000, H9, 22, TCP_SYN), T0, VNI);
  expectTranslated(t, nat, 'ingress', 0, echo(REM, FIP, 'echo-request', 1), echo(REM, H9, 'echo-request', 1), T0, VNI);
  expectTranslated(t, nat, 'egress', VNI, echo(H9, REM, 'echo-reply', 1), echo(FIP, REM, 'echo-reply', 1), T0);
  const gre = ip(REM, FIP, 47, text('opaque payload'));
  expectTranslated(t, nat, 'ingress', 0, gre, ip(REM, H9, 47, text('opaque payload')), T0, VNI);
  // An instance's ICMP error about a packet that came in on the floating address.
  const inbound = udp(REM, 5353, H9, 161);
  expectTranslated(t, nat, 'egress', VNI, unreachable(H9, REM, inbound), unreachable(FIP, REM, udp(REM, 5353, FIP, 161)), T0);
  // Fragments: the first carries the UDP header whose checksum covers the whole datagram.
  const whole = udp(H9, 7000, REM, 7001, new Uint8Array(64).fill(0x5a));
  const first = ip(H9, REM, IPPROTO_UDP, whole.subarray(20, 20 + 32), { moreFragments: true, dontFragment: false });
  const later = ip(H9, REM, IPPROTO_UDP, whole.subarray(20 + 32), { fragmentOffset: 32, dontFragment: false });
  const wholeOut = udp(FIP, 7000, REM, 7001, new Uint8Array(64).fill(0x5a));
  expectTranslated(t, nat, 'egress', VNI, first, ip(FIP, REM, IPPROTO_UDP, wholeOut.subarray(20, 52), { moreFragments: true, dontFragment: false }), T0);
  expectTranslated(t, nat, 'egress', VNI, later, ip(FIP, REM, IPPROTO_UDP, wholeOut.subarray(52), { fragmentOffset: 32, dontFragment: false }), T0);
  t.is(nat.stats().entries, 0, '1:1 NAT keeps no flows');
  const rule = nat.rules().floats[0];
  t.deepEqual([rule.vni, rule.inside, rule.external, rule.egressPackets, rule.ingressPackets], [VNI, H9, FIP, 5, 3]);

  t.true(nat.removeFloat(FIP));
  t.false(nat.removeFloat(FIP));
  t.deepEqual(nat.rules().floats, []);
  // After defloat, H9 leaves through the network's SNAT and its floating address is no longer ours.
  expectTranslated(t, nat, 'egress', VNI, udp(H9, 41000, REM, 53), udp(GW, 41000, REM, 53), T0);
  const v = nat.translate('ingress', 0, tcp(REM, 50000, FIP, 22, TCP_SYN), T0);
  t.deepEqual(v, { action: 'passthrough', reason: 'none', vni: 0 } as NatVerdict);
});

test('passthrough: routed addresses and traffic that is not ours are not touched', (t) => {
  const nat = table();
  const routed = A('198.19.0.99'); // a routed address lives in the network without NAT
  for (const [dir, p] of [
    ['egress', udp(routed, 80, REM, 50000)],
    ['egress', udp(A('198.18.11.5'), 80, REM, 50000)], // outside the rule's netblock
    ['ingress', udp(REM, 50000, routed, 80)],
  ] as const) {
    const b = p.slice();
    t.deepEqual(nat.translate(dir, VNI, b, T0), { action: 'passthrough', reason: 'none', vni: dir === 'egress' ? VNI : 0 } as NatVerdict);
    t.is(hexOf(b), hexOf(p));
  }
  // Another network's packets do not match this network's rule, even with the same netblock.
  t.is(nat.translate('egress', VNI + 1, udp(H5, 80, REM, 50000), T0).action, 'passthrough');
  expectDrop(t, nat, 'ingress', udp(REM, 53, GW, 40000), 'no_flow', T0);
  t.deepEqual(nat.stats().passthrough, { egress: 3, ingress: 1 });
});

test('overlapping netblocks on two networks stay apart: each leaves by its own gateway and replies go home', (t) => {
  const nat = table();
  const GW2 = A('198.19.0.11');
  nat.addSnat({ vni: 43, insideNet: NET, prefix: 24, external: GW2 });
  expectTranslated(t, nat, 'egress', VNI, udp(H5, 40000, REM, 53), udp(GW, 40000, REM, 53), T0);
  expectTranslated(t, nat, 'egress', 43, udp(H5, 40000, REM, 53), udp(GW2, 40000, REM, 53), T0);
  expectTranslated(t, nat, 'ingress', 0, udp(REM, 53, GW2, 40000), udp(REM, 53, H5, 40000), T0, 43);
  expectTranslated(t, nat, 'ingress', 0, udp(REM, 53, GW, 40000), udp(REM, 53, H5, 40000), T0, VNI);
  // A longer prefix wins within a network.
  nat.addSnat({ vni: VNI, insideNet: A('198.18.10.0'), prefix: 30, external: A('198.19.0.12') });
  expectTranslated(t, nat, 'egress', VNI, udp(A('198.18.10.2'), 40000, REM, 53), udp(A('198.19.0.12'), 40000, REM, 53), T0);
});

test('removing a SNAT rule flushes its flows; rule conflicts are refused with the field named', (t) => {
  const nat = table();
  nat.translate('egress', VNI, udp(H5, 40000, REM, 53), T0);
  nat.translate('egress', VNI, tcp(H6, 40000, REM, 80, TCP_SYN), T0);
  t.true(nat.removeSnat(VNI, NET, 24));
  t.false(nat.removeSnat(VNI, NET, 24));
  t.is(nat.stats().entries, 0);
  t.is(nat.stats().flowsFlushed, 2);
  t.is(nat.translate('ingress', 0, udp(REM, 53, GW, 40000), T0).action, 'passthrough', 'the gateway address is no longer ours');

  nat.addSnat({ vni: VNI, insideNet: NET, prefix: 24, external: GW });
  t.throws(() => nat.addSnat({ vni: VNI, insideNet: NET, prefix: 24, external: GW }), { instanceOf: RangeError, message: /exists/ });
  t.throws(() => nat.addSnat({ vni: VNI, insideNet: H5, prefix: 24, external: GW }), { instanceOf: RangeError, message: /host bits/ });
  t.throws(() => nat.addSnat({ vni: VNI, insideNet: NET, prefix: 33, external: GW }), { instanceOf: RangeError, message: /prefix/ });
  t.throws(() => nat.addSnat({ vni: 1, insideNet: NET, prefix: 24, external: GW, portMin: 2000, portMax: 1000 }), { instanceOf: RangeError, message: /port range/ });
  t.throws(() => nat.addFloat({ vni: VNI, inside: H9, external: GW }), { instanceOf: RangeError, message: /in use/ });
  nat.addFloat({ vni: VNI, inside: H9, external: FIP });
  t.throws(() => nat.addFloat({ vni: VNI, inside: H9, external: A('198.19.0.78') }), { instanceOf: RangeError, message: /already floated/ });
  t.throws(() => nat.addSnat({ vni: 7, insideNet: NET, prefix: 24, external: FIP }), { instanceOf: RangeError, message: /floating/ });
  t.throws(() => nat.translate('egress', 1 << 24, udp(H5, 1, REM, 2), T0), { instanceOf: RangeError, message: /vni/ });
  t.throws(() => new NatTable({ capacity: 0 }), { instanceOf: RangeError, message: /capacity/ });
});

// --- malformed input ------------------------------------------------------------------------------------

test('malformed packets are dropped with a reason and left untouched', (t) => {
  const nat = table();
  nat.addFloat({ vni: VNI, inside: H9, external: FIP });
  const good = udp(H5, 40000, REM, 53);
  const edit = (p: Uint8Array, f: (b: Uint8Array) => void, len = p.length): Uint8Array => {
    const b = p.slice(0, len);
    f(b);
    return b;
  };
  const cases: Array<[string, 'egress' | 'ingress', Uint8Array, NatDropReason]> = [
    ['19 bytes', 'egress', good.slice(0, 19), 'truncated_ip'],
    ['version 6', 'egress', edit(good, (b) => { b[0] = 0x65; }), 'bad_ip_header'],
    ['IHL 4', 'egress', edit(good, (b) => { b[0] = 0x44; }), 'bad_ip_header'],
    ['IHL beyond the bytes', 'egress', edit(good, (b) => { b[0] = 0x4f; }, 24), 'truncated_ip'],
    ['total length beyond the bytes', 'egress', good.slice(0, good.length - 1), 'truncated_ip'],
    ['total length below IHL', 'egress', edit(good, (b) => { b[2] = 0; b[3] = 19; }), 'bad_ip_header'],
    ['UDP header cut', 'egress', edit(good, (b) => { b[3] = 27; }), 'truncated_l4'],
    ['TCP header cut', 'egress', edit(tcp(H5, 1, REM, 2, TCP_SYN), (b) => { b[3] = 39; }), 'truncated_l4'],
    ['ICMP header cut', 'egress', edit(echo(H5, REM, 'echo-request', 1), (b) => { b[3] = 27; }), 'truncated_l4'],
    ['first fragment (MF)', 'egress', ip(H5, REM, IPPROTO_UDP, good.subarray(20), { moreFragments: true, dontFragment: false }), 'fragment'],
    ['later fragment', 'egress', ip(H5, REM, IPPROTO_UDP, good.subarray(20), { fragmentOffset: 8, dontFragment: false }), 'fragment'],
    ['fragment in', 'ingress', ip(REM, GW, IPPROTO_UDP, good.subarray(20), { fragmentOffset: 8, dontFragment: false }), 'fragment'],
    ['GRE through SNAT', 'egress', ip(H5, REM, 47, text('gre')), 'unsupported'],
    ['ICMP timestamp', 'egress', edit(echo(H5, REM, 'echo-request', 1), (b) => { b[20] = 13; }), 'unsupported'],
    ['UDP header cut, floated', 'ingress', edit(udp(REM, 1, FIP, 2), (b) => { b[3] = 27; }), 'truncated_l4'],
  ];
  for (const [name, dir, p, reason] of cases) {
    const b = p.slice();
    const v = nat.translate(dir, VNI, b, T0);
    t.is(`${name}: ${v.action} ${v.reason}`, `${name}: drop ${reason}`);
    t.is(hexOf(b), hexOf(p), `${name}: untouched`);
  }
  const s = nat.stats();
  t.is(s.drops.truncated_ip, 3);
  t.is(s.drops.bad_ip_header, 3);
  t.is(s.drops.truncated_l4, 4);
  t.is(s.drops.fragment, 3);
  t.is(s.drops.unsupported, 2);
  t.is(s.entries, 0, 'no flow was created by a malformed packet');
  t.deepEqual(Object.keys(s.drops).sort(), [...NAT_DROP_REASONS].sort());
  // Trailing bytes past the total length (Ethernet padding) are not part of the packet.
  const padded = new Uint8Array(good.length + 6);
  padded.set(good);
  const out = padded.slice();
  t.is(nat.translate('egress', VNI, out, T0).action, 'translated');
  t.is(hexOf(out), hexOf(udp(GW, 40000, REM, 53)) + '000000000000');
});

test('seeded random packets: egress and ingress equal the packets built from scratch', (t) => {
  const nat = table(4096, 20000, 29999);
  const rnd = xorshift32(0x85f00d);
  for (let i = 0; i < 400; i++) {
    const h = NET + 1 + (rnd() % 254);
    const p = 1 + (rnd() % 65535);
    const r = REM + (rnd() % 8);
    const rp = 1 + (rnd() % 65535);
    const data = new Uint8Array(rnd() % 300).map(() => rnd() & 0xff);
    const kind = rnd() % 3;
    const withChecksum = (rnd() & 7) !== 0;
    const build = (s: number, sp: number, d: number, dp: number) =>
      kind === 0 ? udp(s, sp, d, dp, data, withChecksum) : kind === 1 ? tcp(s, sp, d, dp, TCP_ACK, data) : echo(s, d, 'echo-request', sp);
    const pkt = build(h, p, r, rp);
    const b = pkt.slice();
    t.is(nat.translate('egress', VNI, b, T0 + i).action, 'translated');
    seen.push(b);
    const ext = kind === 2 ? echoId(b) : sport(b);
    t.true(ext === p || (ext >= 20000 && ext <= 29999), `external port ${ext}`);
    t.is(hexOf(b), hexOf(build(GW, ext, r, rp)));
    t.deepEqual(badChecksums(b), []);
    const reply = [udp(r, rp, GW, ext, data), tcp(r, rp, GW, ext, TCP_ACK, data), echo(r, GW, 'echo-reply', ext)][kind];
    const back = reply.slice();
    t.is(nat.translate('ingress', 0, back, T0 + i).vni, VNI);
    seen.push(back);
    t.is(hexOf(back), hexOf([udp(r, rp, h, p, data), tcp(r, rp, h, p, TCP_ACK, data), echo(r, h, 'echo-reply', p)][kind]));
  }
});

// --- independent judge ------------------------------------------------------------------------------------

test.after.always('tshark validates every checksum of every translated packet', (t) => {
  // ava runs after.always hooks once; failures here fail the run.
  t.true(seen.length > 100, `${seen.length} packets to check`);
  const dir = mkdtempSync(join(tmpdir(), 'appnet-nat-'));
  try {
    const mac = parseMac('02:00:00:00:00:01');
    const file = join(dir, 'nat.pcap');
    const records = seen.map((p, i) => {
      const f = new Uint8Array(14 + p.length);
      emitEthernet({ dst: mac, src: mac, ethertype: ETHERTYPE_IPV4, payload: p }, f);
      return { tsNs: BigInt(i) * 1000n, point: 'nat', data: f, origLen: f.length };
    });
    writeFileSync(file, writeCapture('pcap', records));
    const args = ['-r', file, '-n', '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE',
      '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=,', '-E', 'separator=/t',
      '-e', 'ip.checksum.status', '-e', 'udp.checksum.status', '-e', 'tcp.checksum.status', '-e', 'icmp.checksum.status'];
    const r = spawnSync('tshark', args, { encoding: 'utf8' });
    t.is(r.status, 0, r.stderr);
    const rows = r.stdout.trim().split('\n');
    t.is(rows.length, seen.length);
    const bad = rows.filter((row) => {
      // Status 1 is "Good"; 2 "Unverified" (a zero UDP checksum, a fragment); 0 is "Bad".
      return row.split('\t').some((f) => f.split(',').includes('0'));
    });
    t.deepEqual(bad, []);
    t.true(rows.filter((row) => row.split('\t')[0].split(',').includes('1')).length === seen.length, 'every IP header checked');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

