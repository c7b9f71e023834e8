// DHCP server core: every message type, the NAK and silence rules, lease events through the store, a
// restart over the same store, strangers, a table of malformed packets each dropped with its reason, and
// replies that both our codec and tshark read with the option values we meant.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BOOTREPLY, BOOTREQUEST, DHCP_FLAG_BROADCAST, DHCP_OPT_CLIENT_ID, DHCP_OPT_DNS, DHCP_OPT_DOMAIN_NAME,
  DHCP_OPT_LEASE_TIME, DHCP_OPT_MESSAGE, DHCP_OPT_MESSAGE_TYPE, DHCP_OPT_MTU, DHCP_OPT_PARAMETER_LIST,
  DHCP_OPT_REQUESTED_IP, DHCP_OPT_ROUTER, DHCP_OPT_SERVER_ID, DHCP_OPT_SUBNET_MASK, DHCP_OPT_BROADCAST,
  DHCP_OPT_RENEWAL_TIME, DHCP_OPT_REBINDING_TIME, DHCPDECLINE, DHCPDISCOVER, DHCPINFORM, DHCPRELEASE,
  DHCPREQUEST, bytesToIpv4, dhcpOption, encodeDhcp, formatIpv4Address, parseDhcp, parseIpv4Address, parseMac,
  emitEthernet, emitIpv4, ETHERTYPE_ARP, ETHERTYPE_IPV4, IPPROTO_ICMP,
} from '../dataplane/wire/index.ts';
import type { DhcpOption, DhcpRepr } from '../dataplane/wire/index.ts';
import { writeCapture } from '../dataplane/pcap/index.ts';
import {
  DhcpServer, MemoryLeaseStore, type DhcpBinding, type DhcpNetwork, type DhcpOutcome,
} from '../control/services/dhcp-server.ts';
import { buildDhcpReplyFrame, buildUdpFrame, readUdpFrame } from '../control/services/dhcp-frames.ts';
import { tsharkFields } from './helpers/testnet.ts';

const NET: DhcpNetwork = {
  cidr: '198.18.4.0/24', gateway: '198.18.4.1', dnsServer: '198.18.4.1', domain: 'ns1.appnet.test', mtu: 1450, leaseSeconds: 3600,
};
const SERVER_MAC = '02:00:00:00:00:01';
const MAC_A = '02:00:00:0a:00:01';
const MAC_B = '02:00:00:0a:00:02';
const STRANGER = '02:00:00:ff:ff:ff';
const IP_A = '198.18.4.10';
const IP_B = '198.18.4.11';
const T0 = 1_700_000_000_000;
const ip4 = parseIpv4Address;

function bindings(): Map<string, DhcpBinding> {
  return new Map([[MAC_A, { ipv4: IP_A, network: NET }], [MAC_B, { ipv4: IP_B, network: NET }]]);
}

function server(leases = new MemoryLeaseStore(), map = bindings()): { s: DhcpServer; leases: MemoryLeaseStore } {
  return { s: new DhcpServer({ serverMac: SERVER_MAC, lookup: (m) => map.get(m), leases }), leases };
}

interface ClientMsg {
  type?: number;
  mac?: string;
  xid?: number;
  flags?: number;
  ciaddr?: string;
  giaddr?: string;
  options?: DhcpOption[];
  /** Defaults: 0.0.0.0 -> 255.255.255.255, or ciaddr -> gateway when ciaddr is set. */
  srcIp?: string;
  dstIp?: string;
  srcMac?: string;
}

function clientRepr(m: ClientMsg): DhcpRepr {
  const options = m.options ?? [];
  return {
    op: BOOTREQUEST, htype: 1, hops: 0, xid: m.xid ?? 0x1234abcd, secs: 0, flags: m.flags ?? 0,
    ciaddr: ip4(m.ciaddr ?? '0.0.0.0'), yiaddr: 0, siaddr: 0, giaddr: ip4(m.giaddr ?? '0.0.0.0'),
    chaddr: parseMac(m.mac ?? MAC_A), sname: '', file: '',
    options: m.type === undefined ? options : [dhcpOption.messageType(m.type), ...options],
  };
}

function udpFrame(m: ClientMsg, payload: Uint8Array, dstPort = 67): Uint8Array {
  const srcIp = m.srcIp ?? m.ciaddr ?? '0.0.0.0';
  const dstIp = m.dstIp ?? (m.ciaddr ? NET.gateway : '255.255.255.255');
  return buildUdpFrame({
    srcMac: m.srcMac ?? m.mac ?? MAC_A, dstMac: m.ciaddr ? SERVER_MAC : 'ff:ff:ff:ff:ff:ff', srcIp, dstIp,
    srcPort: 68, dstPort, payload,
  });
}

function clientFrame(m: ClientMsg): Uint8Array {
  return udpFrame(m, encodeDhcp(clientRepr(m)));
}

const PRL = dhcpOption.codes(DHCP_OPT_PARAMETER_LIST, [DHCP_OPT_SUBNET_MASK, DHCP_OPT_ROUTER, DHCP_OPT_DNS, DHCP_OPT_DOMAIN_NAME, DHCP_OPT_MTU]);
const reqIp = (a: string) => dhcpOption.ip(DHCP_OPT_REQUESTED_IP, ip4(a));
const sid = (a: string) => dhcpOption.ip(DHCP_OPT_SERVER_ID, ip4(a));

type Reply = Extract<DhcpOutcome, { action: 'reply' }>;

function expectReply(t: ExecutionContext, o: DhcpOutcome, type: Reply['type']): Reply {
  if (o.action !== 'reply') {
    t.fail(`expected ${type}, got ${o.action} (${o.reason}: ${o.detail})`);
    throw new Error('unreachable');
  }
  t.is(o.type, type);
  return o;
}

function opt(msg: DhcpRepr, code: number): Uint8Array | undefined {
  return msg.options.find((o) => o.code === code)?.data;
}
const optIp = (msg: DhcpRepr, code: number) => {
  const d = opt(msg, code);
  return d && formatIpv4Address(bytesToIpv4(d));
};
const optU32 = (msg: DhcpRepr, code: number) => {
  const d = opt(msg, code);
  return d && bytesToIpv4(d);
};

// --- message types --------------------------------------------------------------------------------

test('DISCOVER is offered the IPAM address with the requested options in the client\'s order, no lease yet', (t) => {
  const { s, leases } = server();
  const prl = dhcpOption.codes(DHCP_OPT_PARAMETER_LIST, [DHCP_OPT_MTU, DHCP_OPT_ROUTER, DHCP_OPT_SUBNET_MASK, 121, DHCP_OPT_DNS]);
  const o = expectReply(t, s.handleFrame(clientFrame({ type: DHCPDISCOVER, flags: DHCP_FLAG_BROADCAST, options: [prl, reqIp('198.18.4.99')] }), T0), 'OFFER');
  const m = o.message;
  t.is(m.op, BOOTREPLY);
  t.is(m.xid, 0x1234abcd);
  t.is(formatIpv4Address(m.yiaddr), IP_A, 'the IPAM address, not the one the client hinted');
  t.is(m.ciaddr, 0);
  t.deepEqual(m.options.map((x) => x.code), [
    DHCP_OPT_MESSAGE_TYPE, DHCP_OPT_SERVER_ID, DHCP_OPT_LEASE_TIME, DHCP_OPT_RENEWAL_TIME, DHCP_OPT_REBINDING_TIME,
    DHCP_OPT_MTU, DHCP_OPT_ROUTER, DHCP_OPT_SUBNET_MASK, DHCP_OPT_DNS,
  ], 'PRL order, unknown 121 skipped, domain (15) not asked for so not sent');
  t.is(optIp(m, DHCP_OPT_SERVER_ID), '198.18.4.1');
  t.is(optU32(m, DHCP_OPT_LEASE_TIME), 3600);
  t.is(optU32(m, DHCP_OPT_RENEWAL_TIME), 1800);
  t.is(optU32(m, DHCP_OPT_REBINDING_TIME), 3150);
  t.deepEqual([...opt(m, DHCP_OPT_MTU)!], [0x05, 0xaa]);
  t.is(optIp(m, DHCP_OPT_SUBNET_MASK), '255.255.255.0');
  t.deepEqual(o.to, { mac: 'ff:ff:ff:ff:ff:ff', ipv4: '255.255.255.255', port: 68, via: 'broadcast' });
  t.deepEqual(o.from, { mac: SERVER_MAC, ipv4: '198.18.4.1' });
  t.is(o.lease, undefined);
  t.is(leases.get(MAC_A), undefined);
});

test('without a parameter request list every option we have is sent; without the broadcast flag the OFFER is unicast to yiaddr', (t) => {
  const { s } = server();
  const o = expectReply(t, s.handleFrame(clientFrame({ type: DHCPDISCOVER }), T0), 'OFFER');
  t.deepEqual(o.message.options.map((x) => x.code).slice(5), [
    DHCP_OPT_SUBNET_MASK, DHCP_OPT_ROUTER, DHCP_OPT_DNS, DHCP_OPT_DOMAIN_NAME, DHCP_OPT_MTU, DHCP_OPT_BROADCAST,
  ]);
  t.is(new TextDecoder().decode(opt(o.message, DHCP_OPT_DOMAIN_NAME)), 'ns1.appnet.test');
  t.is(optIp(o.message, DHCP_OPT_BROADCAST), '198.18.4.255');
  t.deepEqual(o.to, { mac: MAC_A, ipv4: IP_A, port: 68, via: 'yiaddr' });
});

test('a network without DNS or domain leaves options 6 and 15 out even when asked', (t) => {
  const map = new Map([[MAC_A, { ipv4: IP_A, network: { ...NET, dnsServer: undefined, domain: undefined } }]]);
  const { s } = server(new MemoryLeaseStore(), map);
  const o = expectReply(t, s.handleFrame(clientFrame({ type: DHCPDISCOVER, options: [PRL] }), T0), 'OFFER');
  t.is(opt(o.message, DHCP_OPT_DNS), undefined);
  t.is(opt(o.message, DHCP_OPT_DOMAIN_NAME), undefined);
  t.truthy(opt(o.message, DHCP_OPT_ROUTER));
});

test('REQUEST in SELECTING (our server id + requested address) is ACKed and binds the lease', (t) => {
  const { s, leases } = server();
  const cid = dhcpOption.clientIdMac(parseMac(MAC_A));
  const o = expectReply(t, s.handleFrame(clientFrame({ type: DHCPREQUEST, flags: DHCP_FLAG_BROADCAST, options: [sid('198.18.4.1'), reqIp(IP_A), PRL, cid] }), T0), 'ACK');
  t.is(formatIpv4Address(o.message.yiaddr), IP_A);
  t.deepEqual([...opt(o.message, DHCP_OPT_CLIENT_ID)!], [...cid.data], 'client identifier echoed (RFC 6842)');
  t.deepEqual(o.lease, { type: 'bind', mac: MAC_A, ipv4: IP_A, expiresAt: T0 + 3_600_000 });
  t.deepEqual(leases.get(MAC_A), { mac: MAC_A, ipv4: IP_A, state: 'bound', expiresAt: T0 + 3_600_000 });
  t.is(o.to.via, 'broadcast');
  t.deepEqual(s.counters().leases, { bind: 1, release: 0, decline: 0 });
});

test('REQUEST in RENEWING (ciaddr, unicast) is ACKed to ciaddr and extends the lease', (t) => {
  const { s, leases } = server();
  s.handleFrame(clientFrame({ type: DHCPREQUEST, options: [sid('198.18.4.1'), reqIp(IP_A)] }), T0);
  const later = T0 + 1_800_000;
  const o = expectReply(t, s.handleFrame(clientFrame({ type: DHCPREQUEST, ciaddr: IP_A }), later), 'ACK');
  t.is(formatIpv4Address(o.message.ciaddr), IP_A);
  t.deepEqual(o.to, { mac: MAC_A, ipv4: IP_A, port: 68, via: 'ciaddr' });
  t.is(leases.get(MAC_A)?.expiresAt, later + 3_600_000);
});

test('REQUEST in INIT-REBOOT (requested address, no server id) is ACKed when it is the client\'s address', (t) => {
  const { s } = server();
  const o = expectReply(t, s.handleFrame(clientFrame({ type: DHCPREQUEST, options: [reqIp(IP_A)] }), T0), 'ACK');
  t.is(o.lease?.type, 'bind');
});

// Each NAK rule: the reason is in option 56, the NAK is broadcast, carries no address and binds nothing.
const NAK_CASES: Array<[string, ClientMsg, RegExp]> = [
  ['a requested address that is not the client\'s', { options: [reqIp(IP_B)] }, /requested 198\.18\.4\.11, this client's address is 198\.18\.4\.10/],
  ['a renewing ciaddr that is not the client\'s', { ciaddr: IP_B }, /requested 198\.18\.4\.11/],
  ['a requested address in another network', { options: [sid('198.18.4.1'), reqIp('198.19.0.5')] }, /requested 198\.19\.0\.5/],
  ['a server id in this network that is not ours', { options: [sid('198.18.4.2'), reqIp(IP_A)] }, /server identifier 198\.18\.4\.2 is not this network's server 198\.18\.4\.1/],
  ['neither option 50 nor ciaddr', { options: [sid('198.18.4.1')] }, /names no address/],
];
for (const [name, m, why] of NAK_CASES) {
  test(`REQUEST with ${name} gets a broadcast NAK saying why`, (t) => {
    const { s, leases } = server();
    const o = expectReply(t, s.handleFrame(clientFrame({ type: DHCPREQUEST, ...m }), T0), 'NAK');
    t.regex(new TextDecoder().decode(opt(o.message, DHCP_OPT_MESSAGE)), why);
    t.is(o.message.yiaddr, 0);
    t.is(o.message.ciaddr, 0);
    t.is(opt(o.message, DHCP_OPT_LEASE_TIME), undefined);
    t.is(optIp(o.message, DHCP_OPT_SERVER_ID), '198.18.4.1');
    t.deepEqual(o.to, { mac: 'ff:ff:ff:ff:ff:ff', ipv4: '255.255.255.255', port: 68, via: 'broadcast' });
    t.is(o.lease, undefined);
    t.is(leases.get(MAC_A), undefined);
    t.is(s.counters().sent.NAK, 1);
  });
}

test('REQUEST naming a server outside this network is left to that server: no reply, counted', (t) => {
  const { s, leases } = server();
  const o = s.handleFrame(clientFrame({ type: DHCPREQUEST, options: [sid('198.19.9.9'), reqIp(IP_A)] }), T0);
  t.like(o, { action: 'none', reason: 'other-server' });
  t.is(leases.get(MAC_A), undefined);
  t.is(s.counters().quiet['other-server'], 1);
});

test('RELEASE records the release and is not answered; a mismatched or foreign RELEASE changes nothing', (t) => {
  const { s, leases } = server();
  s.handleFrame(clientFrame({ type: DHCPREQUEST, options: [reqIp(IP_A)] }), T0);
  t.like(s.handleFrame(clientFrame({ type: DHCPRELEASE, ciaddr: IP_B, options: [sid('198.18.4.1')] }), T0 + 1), { action: 'none', reason: 'release-mismatch' });
  t.like(s.handleFrame(clientFrame({ type: DHCPRELEASE, ciaddr: IP_A, options: [sid('198.19.9.9')] }), T0 + 2), { action: 'none', reason: 'other-server' });
  t.is(leases.get(MAC_A)?.state, 'bound');
  const o = s.handleFrame(clientFrame({ type: DHCPRELEASE, ciaddr: IP_A, options: [sid('198.18.4.1')] }), T0 + 3);
  t.like(o, { action: 'none', reason: 'released', lease: { type: 'release', mac: MAC_A, ipv4: IP_A, expiresAt: T0 + 3 } });
  t.deepEqual(leases.get(MAC_A), { mac: MAC_A, ipv4: IP_A, state: 'released', expiresAt: T0 + 3 });
  t.deepEqual(s.counters().leases, { bind: 1, release: 1, decline: 0 });
});

test('DECLINE withholds the address from its client for the hold time, then it is offered again', (t) => {
  const { s, leases } = server();
  t.like(s.handleFrame(clientFrame({ type: DHCPDECLINE, options: [sid('198.18.4.1'), reqIp(IP_B)] }), T0), { action: 'none', reason: 'decline-mismatch' });
  const o = s.handleFrame(clientFrame({ type: DHCPDECLINE, options: [sid('198.18.4.1'), reqIp(IP_A)] }), T0);
  t.like(o, { action: 'none', reason: 'declined', lease: { type: 'decline', mac: MAC_A, ipv4: IP_A, expiresAt: T0 + 600_000 } });
  t.is(leases.get(MAC_A)?.state, 'declined');
  t.like(s.handleFrame(clientFrame({ type: DHCPDISCOVER }), T0 + 10_000), { action: 'none', reason: 'address-declined' });
  const nak = expectReply(t, s.handleFrame(clientFrame({ type: DHCPREQUEST, options: [reqIp(IP_A)] }), T0 + 10_000), 'NAK');
  t.regex(new TextDecoder().decode(opt(nak.message, DHCP_OPT_MESSAGE)), /declined/);
  expectReply(t, s.handleFrame(clientFrame({ type: DHCPDISCOVER, mac: MAC_B }), T0 + 10_000), 'OFFER');
  expectReply(t, s.handleFrame(clientFrame({ type: DHCPDISCOVER }), T0 + 600_000), 'OFFER');
});

test('INFORM gets an ACK with configuration but no address or lease, unicast to ciaddr', (t) => {
  const { s, leases } = server();
  const o = expectReply(t, s.handleFrame(clientFrame({ type: DHCPINFORM, ciaddr: IP_A, options: [PRL] }), T0), 'ACK');
  t.is(o.message.yiaddr, 0);
  t.is(formatIpv4Address(o.message.ciaddr), IP_A);
  for (const code of [DHCP_OPT_LEASE_TIME, DHCP_OPT_RENEWAL_TIME, DHCP_OPT_REBINDING_TIME]) t.is(opt(o.message, code), undefined);
  t.is(optIp(o.message, DHCP_OPT_ROUTER), '198.18.4.1');
  t.deepEqual(o.to, { mac: MAC_A, ipv4: IP_A, port: 68, via: 'ciaddr' });
  t.is(o.lease, undefined);
  t.is(leases.get(MAC_A), undefined);
});

test('a relayed DISCOVER (giaddr set) is answered to the relay on port 67 at the frame\'s source MAC', (t) => {
  const { s } = server();
  const relayMac = '02:00:00:00:77:77';
  const o = expectReply(t, s.handleFrame(clientFrame({ type: DHCPDISCOVER, giaddr: '198.18.4.254', srcMac: relayMac, srcIp: '198.18.4.254', dstIp: '198.18.4.1' }), T0), 'OFFER');
  t.deepEqual(o.to, { mac: relayMac, ipv4: '198.18.4.254', port: 67, via: 'relay' });
  t.is(formatIpv4Address(o.message.giaddr), '198.18.4.254');
  const nak = expectReply(t, s.handleFrame(clientFrame({ type: DHCPREQUEST, giaddr: '198.18.4.254', srcMac: relayMac, options: [reqIp(IP_B)] }), T0), 'NAK');
  t.is(nak.to.via, 'relay', 'a relayed NAK goes back through the relay');
});

test('after a restart over the same lease store the client renews the same address and a decline still holds', (t) => {
  const first = server();
  expectReply(t, first.s.handleFrame(clientFrame({ type: DHCPREQUEST, options: [sid('198.18.4.1'), reqIp(IP_A)] }), T0), 'ACK');
  first.s.handleFrame(clientFrame({ type: DHCPDECLINE, mac: MAC_B, options: [sid('198.18.4.1'), reqIp(IP_B)] }), T0);
  // What the integrator persists and loads again at start.
  const persisted = JSON.parse(JSON.stringify(first.leases.all()));
  const second = server(new MemoryLeaseStore(persisted));
  t.deepEqual(second.leases.get(MAC_A), { mac: MAC_A, ipv4: IP_A, state: 'bound', expiresAt: T0 + 3_600_000 });
  const renew = expectReply(t, second.s.handleFrame(clientFrame({ type: DHCPREQUEST, ciaddr: IP_A }), T0 + 60_000), 'ACK');
  t.is(formatIpv4Address(renew.message.yiaddr), IP_A);
  const reboot = expectReply(t, second.s.handleFrame(clientFrame({ type: DHCPREQUEST, options: [reqIp(IP_A)] }), T0 + 61_000), 'ACK');
  t.is(formatIpv4Address(reboot.message.yiaddr), IP_A);
  t.like(second.s.handleFrame(clientFrame({ type: DHCPDISCOVER, mac: MAC_B }), T0 + 60_000), { action: 'none', reason: 'address-declined' });
});

test('an unknown MAC gets no reply to any message type, and each is counted', (t) => {
  const { s, leases } = server();
  for (const type of [DHCPDISCOVER, DHCPREQUEST, DHCPINFORM, DHCPRELEASE, DHCPDECLINE]) {
    const o = s.handleFrame(clientFrame({ type, mac: STRANGER, options: [reqIp(IP_A)] }), T0);
    t.like(o, { action: 'none', reason: 'unknown-mac' });
  }
  t.is(s.counters().quiet['unknown-mac'], 5);
  t.deepEqual(s.counters().sent, { OFFER: 0, ACK: 0, NAK: 0 });
  t.is(leases.get(STRANGER), undefined);
});

// --- malformed input ------------------------------------------------------------------------------

function withBytes(m: ClientMsg, edit: (b: Uint8Array) => Uint8Array): Uint8Array {
  return udpFrame(m, edit(encodeDhcp(clientRepr(m))));
}

function ipFrame(protocol: number, payload: Uint8Array, fragmentOffset = 0, moreFragments = false): Uint8Array {
  const ip = new Uint8Array(20 + payload.length);
  emitIpv4({ dscp: 0, ecn: 0, id: 1, dontFragment: false, moreFragments, fragmentOffset, ttl: 64, protocol,
    src: 0, dst: 0xffffffff, options: new Uint8Array(0), payload }, ip);
  const f = new Uint8Array(14 + ip.length);
  emitEthernet({ dst: parseMac('ff:ff:ff:ff:ff:ff'), src: parseMac(MAC_A), ethertype: ETHERTYPE_IPV4, payload: ip }, f);
  return f;
}

const DISCOVER: ClientMsg = { type: DHCPDISCOVER };
const MALFORMED: Array<[string, () => Uint8Array, string]> = [
  ['an ARP frame', () => { const f = clientFrame(DISCOVER); f[12] = ETHERTYPE_ARP >> 8; f[13] = ETHERTYPE_ARP & 0xff; return f; }, 'not-ipv4'],
  ['a frame shorter than an Ethernet header', () => new Uint8Array(10), 'not-ipv4'],
  ['a corrupted IPv4 header checksum', () => { const f = clientFrame(DISCOVER); f[14 + 8] ^= 1; return f; }, 'bad-ipv4'],
  ['an IPv4 packet cut short', () => clientFrame(DISCOVER).subarray(0, 14 + 40), 'bad-ipv4'],
  ['a fragment', () => ipFrame(17, new Uint8Array(16), 8), 'fragment'],
  ['ICMP', () => ipFrame(IPPROTO_ICMP, new Uint8Array(16)), 'not-udp'],
  ['a corrupted UDP checksum', () => { const f = clientFrame(DISCOVER); f[14 + 20 + 8 + 4] ^= 1; return f; }, 'bad-udp'],
  ['a datagram to port 68', () => udpFrame(DISCOVER, encodeDhcp(clientRepr(DISCOVER)), 68), 'not-dhcp-port'],
  ['a message shorter than the fixed header', () => withBytes(DISCOVER, (b) => b.subarray(0, 200)), 'truncated'],
  ['a bad magic cookie', () => withBytes(DISCOVER, (b) => { b[236] = 0; return b; }), 'bad-cookie'],
  ['op 3', () => withBytes(DISCOVER, (b) => { b[0] = 3; return b; }), 'wrong-op'],
  ['a BOOTREPLY (another server\'s OFFER)', () => withBytes(DISCOVER, (b) => { b[0] = BOOTREPLY; return b; }), 'wrong-op'],
  ['htype 6 (IEEE 802)', () => withBytes(DISCOVER, (b) => { b[1] = 6; return b; }), 'bad-htype'],
  ['hlen 17', () => withBytes(DISCOVER, (b) => { b[2] = 17; return b; }), 'bad-hlen'],
  ['hlen 8', () => withBytes(DISCOVER, (b) => { b[2] = 8; return b; }), 'bad-hlen'],
  ['an option overrunning the message', () => withBytes(DISCOVER, (b) => { const c = b.slice(0, 244); c[243] = 200; return c; }), 'bad-option'],
  ['an option with no length byte', () => withBytes(DISCOVER, (b) => { const c = b.slice(0, 244); c[243] = 12; return Uint8Array.of(...c, 12); }), 'bad-option'],
  ['a 2-byte message type option', () => udpFrame(DISCOVER, encodeDhcp(clientRepr({ options: [{ code: DHCP_OPT_MESSAGE_TYPE, data: Uint8Array.of(1, 1) }] }))), 'bad-option'],
  ['a 3-byte requested address', () => udpFrame(DISCOVER, encodeDhcp(clientRepr({ type: DHCPREQUEST, options: [{ code: DHCP_OPT_REQUESTED_IP, data: Uint8Array.of(198, 18, 4) }] }))), 'bad-option'],
  ['a 5-byte server id', () => udpFrame(DISCOVER, encodeDhcp(clientRepr({ type: DHCPREQUEST, options: [{ code: DHCP_OPT_SERVER_ID, data: new Uint8Array(5) }] }))), 'bad-option'],
  ['an empty parameter request list', () => udpFrame(DISCOVER, encodeDhcp(clientRepr({ type: DHCPDISCOVER, options: [{ code: DHCP_OPT_PARAMETER_LIST, data: new Uint8Array(0) }] }))), 'bad-option'],
  ['no message type (plain BOOTP)', () => udpFrame(DISCOVER, encodeDhcp(clientRepr({}))), 'no-message-type'],
  ['a client sending OFFER', () => clientFrame({ type: 2 }), 'bad-message-type'],
  ['message type 99', () => clientFrame({ type: 99 }), 'bad-message-type'],
  ['a chaddr that is not the frame\'s source', () => clientFrame({ type: DHCPDISCOVER, mac: MAC_B, srcMac: MAC_A }), 'chaddr-mismatch'],
];

test('malformed packets are each dropped with their reason, nothing throws, and the server keeps answering', (t) => {
  const { s } = server();
  const expected: Record<string, number> = {};
  for (const [name, make, reason] of MALFORMED) {
    let o: DhcpOutcome | undefined;
    t.notThrows(() => { o = s.handleFrame(make(), T0); }, name);
    t.like(o, { action: 'drop', reason }, name);
    t.true(typeof (o as { detail?: string }).detail === 'string' && (o as { detail: string }).detail.length > 0, name);
    expected[reason] = (expected[reason] ?? 0) + 1;
  }
  t.deepEqual(s.counters().dropped, expected);
  t.is(s.counters().received, MALFORMED.length);
  expectReply(t, s.handleFrame(clientFrame(DISCOVER), T0), 'OFFER');
});

test('drop details name the field and byte offset the codec found at fault', (t) => {
  const { s } = server();
  const o = s.handleFrame(withBytes(DISCOVER, (b) => { b[236] = 0; return b; }), T0);
  t.like(o, { action: 'drop', reason: 'bad-cookie' });
  t.regex((o as { detail: string }).detail, /bad magic_cookie at byte offset 236/);
  const short = s.handleFrame(withBytes(DISCOVER, (b) => { const c = b.slice(0, 244); c[243] = 200; return c; }), T0);
  t.regex((short as { detail: string }).detail, /option .* at byte offset \d+/);
});

test('a binding the integrator got wrong is dropped as bad-config, naming the field', (t) => {
  const map = new Map([[MAC_A, { ipv4: '198.19.0.1', network: NET }], [MAC_B, { ipv4: IP_B, network: { ...NET, mtu: 40 } }]]);
  const { s } = server(new MemoryLeaseStore(), map);
  const a = s.handleFrame(clientFrame(DISCOVER), T0);
  t.like(a, { action: 'drop', reason: 'bad-config' });
  t.regex((a as { detail: string }).detail, /198\.19\.0\.1 is outside 198\.18\.4\.0\/24/);
  const b = s.handleFrame(clientFrame({ type: DHCPDISCOVER, mac: MAC_B }), T0);
  t.regex((b as { detail: string }).detail, /mtu 40/);
});

// --- frames on the wire ---------------------------------------------------------------------------

test('reply frames come from the gateway port 67 and parse back with our codec', (t) => {
  const { s } = server();
  const o = expectReply(t, s.handleFrame(clientFrame({ type: DHCPDISCOVER, options: [PRL] }), T0), 'OFFER');
  const r = readUdpFrame(buildDhcpReplyFrame(o));
  if (!r.ok) return t.fail(r.detail);
  t.like(r.frame, { srcMac: SERVER_MAC, dstMac: MAC_A, srcIp: '198.18.4.1', dstIp: IP_A, srcPort: 67, dstPort: 68 });
  const back = parseDhcp(r.frame.payload);
  t.deepEqual({ ...back, options: back.options.map((x) => [x.code, [...x.data]]) },
    { ...o.message, options: o.message.options.map((x) => [x.code, [...x.data]]) });
});

test('tshark reads our OFFER, ACK, NAK and INFORM ACK with the option values we meant', (t) => {
  const { s } = server();
  const frames = [
    s.handleFrame(clientFrame({ type: DHCPDISCOVER, flags: DHCP_FLAG_BROADCAST, options: [PRL] }), T0),
    s.handleFrame(clientFrame({ type: DHCPREQUEST, options: [sid('198.18.4.1'), reqIp(IP_A), PRL] }), T0),
    s.handleFrame(clientFrame({ type: DHCPREQUEST, options: [reqIp(IP_B)] }), T0),
    s.handleFrame(clientFrame({ type: DHCPINFORM, ciaddr: IP_A, options: [PRL] }), T0),
  ].map((o) => buildDhcpReplyFrame(expectReply(t, o, o.action === 'reply' ? o.type : 'ACK')));
  const dir = mkdtempSync(join(tmpdir(), 'appnet-dhcp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'replies.pcap');
  writeFileSync(file, writeCapture('pcap', frames.map((f, i) => ({
    tsNs: BigInt(T0 + i) * 1_000_000n, point: 'port' as const, dir: 'out' as const, port: 1, vni: null, origLen: f.length, data: Buffer.from(f),
  }))));
  const rows = tsharkFields(file, [
    'dhcp.option.dhcp', 'dhcp.ip.your', 'dhcp.ip.client', 'dhcp.option.dhcp_server_id', 'dhcp.option.subnet_mask',
    'dhcp.option.router', 'dhcp.option.domain_name_server', 'dhcp.option.domain_name', 'dhcp.option.interface_mtu',
    'dhcp.option.ip_address_lease_time', 'dhcp.option.message', 'ip.src', 'ip.dst', 'udp.srcport', 'udp.dstport', '_ws.expert',
  ]);
  t.deepEqual(rows, [
    ['2', IP_A, '0.0.0.0', '198.18.4.1', '255.255.255.0', '198.18.4.1', '198.18.4.1', 'ns1.appnet.test', '1450', '3600', '', '198.18.4.1', '255.255.255.255', '67', '68', ''],
    ['5', IP_A, '0.0.0.0', '198.18.4.1', '255.255.255.0', '198.18.4.1', '198.18.4.1', 'ns1.appnet.test', '1450', '3600', '', '198.18.4.1', IP_A, '67', '68', ''],
    ['6', '0.0.0.0', '0.0.0.0', '198.18.4.1', '', '', '', '', '', '', 'requested 198.18.4.11, this client\'s address is 198.18.4.10', '198.18.4.1', '255.255.255.255', '67', '68', ''],
    ['5', '0.0.0.0', IP_A, '198.18.4.1', '255.255.255.0', '198.18.4.1', '198.18.4.1', 'ns1.appnet.test', '1450', '', '', '198.18.4.1', IP_A, '67', '68', ''],
  ]);
});
