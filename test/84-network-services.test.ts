// The gateway's pure answers (ARP, ping) with literal frames, and NetworkServices over a fake engine and a
// real SQLite store: punt rules follow the plan, DHCP answers only a known MAC from its own port, wire frames
// are ignored, leases are written to and released from the store, DNS entries from the store are served.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import {
  DHCPDISCOVER, DHCPREQUEST, DHCP_OPT_REQUESTED_IP, DHCP_OPT_SERVER_ID, BOOTREQUEST,
  ETHERTYPE_ARP, ETHERTYPE_IPV4, IPPROTO_ICMP, dhcpOption, emitArp, emitEthernet, emitIcmpv4, emitIpv4,
  encodeDhcp, encodeDns, parseArp, parseDhcp, parseDns, parseEthernet, parseIcmpv4, parseIpv4, parseIpv4Address,
  parseMac, DNS_CLASS_IN, DNS_TYPE_A, DNS_TYPE_PTR, reverseDnsName,
} from '../dataplane/wire/index.ts';
import type { PuntRule, PuntedFrame } from '../dataplane/engine.ts';
import type { DhcpOption } from '../dataplane/wire/index.ts';
import { answerGateway, gatewayAddress, gatewayMac } from '../control/services/gateway.ts';
import { NetworkServices, DNS_ENTRIES_PREFIX } from '../control/services/network-services.ts';
import { buildUdpFrame, readUdpFrame } from '../control/services/dhcp-frames.ts';
import { leaseKey } from '../control/repo/dhcp-leases.ts';
import { desiredState, planHost } from '../control/reconcile/plan.ts';
import type { StateView } from '../control/repo/state-view.ts';
import { parseDaemonConfig } from '../control/daemon/config.ts';
import { SqliteStore } from '../control/store/index.ts';

const GW = { ipv4: '198.18.4.1', mac: '02:61:6e:00:00:2a' };
const CLIENT_MAC = '02:00:00:0a:00:01';
const CLIENT_IP = '198.18.4.10';

function arpFrame(op: 'request' | 'reply', targetIp: string): Uint8Array {
  const out = new Uint8Array(42);
  emitArp({ operation: op, senderMac: parseMac(CLIENT_MAC), senderIp: parseIpv4Address(CLIENT_IP), targetMac: new Uint8Array(6), targetIp: parseIpv4Address(targetIp) }, out, 14);
  emitEthernet({ dst: parseMac('ff:ff:ff:ff:ff:ff'), src: parseMac(CLIENT_MAC), ethertype: ETHERTYPE_ARP, payload: out.subarray(14) }, out);
  return out;
}

function echoFrame(dst: string, data = Uint8Array.of(1, 2, 3, 4)): Uint8Array {
  const icmp = new Uint8Array(8 + data.length);
  emitIcmpv4({ type: 'echo-request', id: 0x1234, seq: 7, data }, icmp);
  const out = new Uint8Array(14 + 20 + icmp.length);
  emitIpv4({ dscp: 0, ecn: 0, id: 99, dontFragment: true, moreFragments: false, fragmentOffset: 0, ttl: 64, protocol: IPPROTO_ICMP, src: parseIpv4Address(CLIENT_IP), dst: parseIpv4Address(dst), options: new Uint8Array(0), payload: icmp }, out, 14);
  emitEthernet({ dst: parseMac(GW.mac), src: parseMac(CLIENT_MAC), ethertype: ETHERTYPE_IPV4, payload: out.subarray(14) }, out);
  return out;
}

test('gateway MAC and address: 02:61:6e + VNI, index 1 of the netblock', (t) => {
  t.is(gatewayMac(42), '02:61:6e:00:00:2a');
  t.is(gatewayMac(0xabcdef), '02:61:6e:ab:cd:ef');
  t.throws(() => gatewayMac(0), { message: /vni must be an integer in 1..16777215, got 0/ });
  t.is(gatewayAddress('198.18.4.0/24'), '198.18.4.1');
  t.is(gatewayAddress('198.18.8.8/29'), '198.18.8.9');
});

test('gateway answers an ARP request for its address with its MAC, and nothing else of ARP', (t) => {
  const o = answerGateway(arpFrame('request', GW.ipv4), GW);
  if (o.action !== 'reply') return t.fail(JSON.stringify(o));
  t.is(o.kind, 'arp');
  const eth = parseEthernet(o.frame);
  t.deepEqual([...eth.dst], [...parseMac(CLIENT_MAC)]);
  t.deepEqual([...eth.src], [...parseMac(GW.mac)]);
  const arp = parseArp(eth.payload);
  t.is(arp.operation, 'reply');
  t.is(arp.senderIp, parseIpv4Address(GW.ipv4));
  t.deepEqual([...arp.senderMac], [...parseMac(GW.mac)]);
  t.is(arp.targetIp, parseIpv4Address(CLIENT_IP));
  t.deepEqual(answerGateway(arpFrame('request', '198.18.4.11'), GW), { action: 'none', reason: 'not-for-gateway' });
  t.deepEqual(answerGateway(arpFrame('reply', GW.ipv4), GW), { action: 'none', reason: 'not-request' });
  t.like(answerGateway(arpFrame('request', GW.ipv4).subarray(0, 30), GW), { action: 'drop', reason: 'bad-arp' });
});

test('gateway answers ping with the same id, sequence and data; bad checksums and other hosts are not answered', (t) => {
  const o = answerGateway(echoFrame(GW.ipv4), GW);
  if (o.action !== 'reply') return t.fail(JSON.stringify(o));
  t.is(o.kind, 'echo');
  const ip = parseIpv4(parseEthernet(o.frame).payload);
  t.is(ip.src, parseIpv4Address(GW.ipv4));
  t.is(ip.dst, parseIpv4Address(CLIENT_IP));
  t.deepEqual(parseIcmpv4(ip.payload), { type: 'echo-reply', id: 0x1234, seq: 7, data: Uint8Array.of(1, 2, 3, 4) });
  t.deepEqual(answerGateway(echoFrame('198.18.4.11'), GW), { action: 'none', reason: 'not-for-gateway' });
  const bad = echoFrame(GW.ipv4);
  bad[14 + 20 + 2] ^= 0xff; // ICMP checksum
  const dropped = answerGateway(bad, GW);
  t.like(dropped, { action: 'drop', reason: 'bad-icmp' });
  t.regex(dropped.action === 'drop' ? dropped.detail : '', /checksum at byte offset 2/);
  t.like(answerGateway(Uint8Array.of(1, 2, 3), GW), { action: 'drop', reason: 'bad-ethernet' });
});

test('daemon config: dnsZone defaults to appnet.internal; dnsZone and dnsUpstream are validated by name', (t) => {
  const base = { underlay: { address: '198.18.0.11' }, link: { enabled: false } };
  t.is(parseDaemonConfig(base).dnsZone, 'appnet.internal');
  t.is(parseDaemonConfig({ ...base, dnsUpstream: '127.0.0.1:5353' }).dnsUpstream, '127.0.0.1:5353');
  t.throws(() => parseDaemonConfig({ ...base, dnsZone: 'bad zone' }), { message: /config: dnsZone: must be a DNS name/ });
  t.throws(() => parseDaemonConfig({ ...base, dnsUpstream: '1.2.3' }), { message: /config: dnsUpstream: must be IPV4 or IPV4:PORT/ });
  t.throws(() => parseDaemonConfig({ ...base, dnsUpstream: '1.2.3.4:70000' }), { message: /dnsUpstream port/ });
});

// --- NetworkServices over a fake engine -----------------------------------------------------------

const NETWORK = {
  uuid: '11111111-1111-4111-8111-111111111111', name: 'n', namespace: 'alpha', netblock: '198.18.4.0/24', vxid: 42,
  provideDhcp: true, provideNat: false, provideDns: true, state: 'created', stateUpdatedAt: 0, error: null, metadata: {},
  floatingGateway: null, createdAt: 0, version: 1,
} as const;
const INSTANCE = { uuid: 'i1', name: 'web', namespace: 'alpha', host: 'h1', netns: 'ns-web', interfaces: ['f1'], metadata: {}, createdAt: 0, version: 1 };
const IFACE = {
  uuid: 'ffffffff-0000-4000-8000-000000000001', network_uuid: NETWORK.uuid, instance_uuid: 'i1', namespace: 'alpha', macaddr: CLIENT_MAC,
  ipv4: CLIENT_IP, order: 0, state: 'created', stateUpdatedAt: 0, metadata: {}, floating: null, createdAt: 0, version: 1,
} as const;

class FakeEngine {
  rules = new Map<number, PuntRule>();
  injected: Array<{ port: number; frame: Uint8Array }> = [];
  #next = 1;
  addPuntRule(r: PuntRule): number { this.rules.set(this.#next, r); return this.#next++; }
  removePuntRule(id: number): boolean { return this.rules.delete(id); }
  injectToPort(port: number, frame: Uint8Array): void { this.injected.push({ port, frame }); }
  ruleId(pred: (r: PuntRule) => boolean): number { return [...this.rules].find(([, r]) => pred(r))![0]; }
}

async function fixture(t: import('ava').ExecutionContext) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-svc84-'));
  const store = new SqliteStore(path.join(dir, 'store.db'));
  t.teardown(async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); });
  const records = { networks: [{ ...NETWORK }], instances: [{ ...INSTANCE, interfaces: [IFACE.uuid] }], interfaces: [{ ...IFACE }], hosts: [] as never[] };
  const state = () => desiredState(records as never);
  const view = {
    get networks() { return state().networks; },
    get instances() { return state().instances; },
    get interfaces() { return state().interfaces; },
  } as unknown as StateView;
  const engine = new FakeEngine();
  const services = new NetworkServices({ engine, store, view, host: 'h1', log: pino({ level: 'silent' }), now: () => 1_700_000_000_000 });
  t.teardown(() => services.close());
  await services.start();
  const plan = () => planHost('h1', state(), 1500);
  return { store, records, engine, services, plan };
}

function dhcpFrame(type: number, mac = CLIENT_MAC, extra: DhcpOption[] = []): Uint8Array {
  const payload = encodeDhcp({
    op: BOOTREQUEST, htype: 1, hops: 0, xid: 0x01020304, secs: 0, flags: 0x8000, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0,
    chaddr: parseMac(mac), sname: '', file: '',
    options: [dhcpOption.messageType(type), ...extra],
  });
  return buildUdpFrame({ srcMac: mac, dstMac: 'ff:ff:ff:ff:ff:ff', srcIp: '0.0.0.0', dstIp: '255.255.255.255', srcPort: 68, dstPort: 67, payload });
}

function punt(rule: number, frame: Uint8Array, port: number | null): PuntedFrame {
  return { rule, port, vni: 42, remote: port === null ? '198.18.0.12' : null, remotePort: 0, frame: Buffer.from(frame) };
}

test('services follow the plan: rules per VNI, DHCP for the port\'s own MAC only, wire frames ignored, leases stored and released', async (t) => {
  const { store, records, engine, services, plan } = await fixture(t);
  const p = plan();
  t.is(p.ports[0].cidr, null, 'a DHCP network: the reconciler leaves the address to DHCP');
  services.apply(p, new Map([[IFACE.uuid, 5]]));
  const rules = [...engine.rules.values()];
  t.deepEqual(rules.map((r) => r.vni), [42, 42, 42, 42]);
  t.like(rules.find((r) => r.ethertype === ETHERTYPE_ARP), { consume: false });
  t.truthy(rules.find((r) => r.ipProto === IPPROTO_ICMP && r.dstIp === '198.18.4.1'));
  t.truthy(rules.find((r) => r.dstPort === 67));
  t.truthy(rules.find((r) => r.dstPort === 53 && r.dstIp === '198.18.4.1'));
  const dhcpRule = engine.ruleId((r) => r.dstPort === 67);

  // From the wire, and from another port with this MAC: no answer.
  services.onPunts([punt(dhcpRule, dhcpFrame(DHCPDISCOVER), null), punt(dhcpRule, dhcpFrame(DHCPDISCOVER), 6)]);
  t.is(engine.injected.length, 0);
  t.is(services.stats().fromWire, 1);
  t.is(services.stats().dhcp.quiet['unknown-mac'], 1);

  services.onPunts([punt(dhcpRule, dhcpFrame(DHCPDISCOVER), 5)]);
  t.is(engine.injected.length, 1);
  const offer = readUdpFrame(engine.injected[0].frame);
  if (!offer.ok) return t.fail(offer.detail);
  t.is(offer.frame.srcMac, gatewayMac(42));
  t.is(parseDhcp(offer.frame.payload).yiaddr, parseIpv4Address(CLIENT_IP));
  services.onPunts([punt(dhcpRule, dhcpFrame(DHCPREQUEST, CLIENT_MAC, [
    dhcpOption.ip(DHCP_OPT_REQUESTED_IP, parseIpv4Address(CLIENT_IP)),
    dhcpOption.ip(DHCP_OPT_SERVER_ID, parseIpv4Address('198.18.4.1')),
  ]), 5)]);
  t.like(services.stats().dhcp, { sent: { OFFER: 1, ACK: 1, NAK: 0 }, leases: { bind: 1 } });
  await services.close().then(() => undefined, () => undefined); // flushes the lease write
  const kv = await store.get(leaseKey(NETWORK.uuid, CLIENT_MAC));
  t.like(JSON.parse(kv!.value), { ipv4: CLIENT_IP, state: 'bound' });
  t.is(engine.rules.size, 0, 'close removes every rule');

  // A new services object (a restart) loads the lease; the interface's removal releases it.
  const again = new NetworkServices({ engine, store, view: (await fixtureView(records)), host: 'h1', log: pino({ level: 'silent' }) });
  await again.start();
  again.apply(plan(), new Map([[IFACE.uuid, 5]]));
  t.deepEqual(again.leases(NETWORK.uuid).map((l) => l.ipv4), [CLIENT_IP]);
  records.interfaces = [];
  records.instances = [];
  again.apply(plan(), new Map());
  t.is(engine.rules.size, 0, 'no local port on the network: no rules');
  await again.close();
  t.is(await store.get(leaseKey(NETWORK.uuid, CLIENT_MAC)), undefined);
});

async function fixtureView(records: { networks: unknown[]; instances: unknown[]; interfaces: unknown[]; hosts: unknown[] }): Promise<StateView> {
  const state = () => desiredState(records as never);
  return {
    get networks() { return state().networks; },
    get instances() { return state().instances; },
    get interfaces() { return state().interfaces; },
  } as unknown as StateView;
}

function dnsQuery(name: string, type: number): Uint8Array {
  const payload = encodeDns({
    id: 0x4242, qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, z: false, ad: false, cd: false, rcode: 0,
    questions: [{ name, type, class: DNS_CLASS_IN }], answers: [], authorities: [], additionals: [],
  });
  return buildUdpFrame({ srcMac: CLIENT_MAC, dstMac: GW.mac, srcIp: CLIENT_IP, dstIp: '198.18.4.1', srcPort: 40000, dstPort: 53, payload });
}

test('DNS answers the instance name, its PTR and a stored extra entry; garbage is dropped and counted', async (t) => {
  const { store, engine, services, plan } = await fixture(t);
  await store.put(`${DNS_ENTRIES_PREFIX}${NETWORK.uuid}/db`, JSON.stringify({ name: 'db', address: '198.18.4.200' }));
  services.apply(plan(), new Map([[IFACE.uuid, 5]]));
  const dnsRule = engine.ruleId((r) => r.dstPort === 53);
  const ask = (name: string, type: number) => {
    engine.injected = [];
    services.onPunts([punt(dnsRule, dnsQuery(name, type), 5)]);
    const r = readUdpFrame(engine.injected[0].frame);
    if (!r.ok) throw new Error(r.detail);
    t.is(r.frame.dstPort, 40000);
    return parseDns(r.frame.payload);
  };
  t.like(ask('web.alpha.appnet.internal', DNS_TYPE_A).answers[0], { data: { kind: 'a', address: parseIpv4Address(CLIENT_IP) } });
  t.like(ask(reverseDnsName(parseIpv4Address(CLIENT_IP)), DNS_TYPE_PTR).answers[0], { data: { kind: 'name', name: 'web.alpha.appnet.internal' } });
  // The entry arrives through the store's watch.
  for (let i = 0; i < 50 && ask('db.alpha.appnet.internal', DNS_TYPE_A).answers.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.like(ask('db.alpha.appnet.internal', DNS_TYPE_A).answers[0], { data: { kind: 'a', address: parseIpv4Address('198.18.4.200') } });
  t.is(ask('nobody.alpha.appnet.internal', DNS_TYPE_A).rcode, 3);
  t.is(ask('example.test', DNS_TYPE_A).rcode, 5, 'no upstream configured: REFUSED');

  engine.injected = [];
  const garbage = buildUdpFrame({ srcMac: CLIENT_MAC, dstMac: GW.mac, srcIp: CLIENT_IP, dstIp: '198.18.4.1', srcPort: 40000, dstPort: 53, payload: Uint8Array.of(0xff) });
  services.onPunts([punt(dnsRule, garbage, 5)]);
  t.is(engine.injected.length, 0);
  t.is(services.stats().dns.dropped.truncated, 1);
  t.is(ask('web.alpha.appnet.internal', DNS_TYPE_A).answers.length, 1, 'still answering');
});
