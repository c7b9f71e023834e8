// The switching pipelines without devices, namespaces or root: engines in this process on loopback addresses,
// instances as in-memory ports (test/helpers/memory-engines.ts). What needs the kernel (TAP offloads, real IP
// stacks, DHCP clients) stays in the namespace tests; what is the engine's own logic is checked here.
import test from 'ava';
import { createSocket } from 'node:dgram';
import { formatMac, parseArp, parseEthernet, parseIpv4, parseIcmpv4, vxlanEncap, parseIpv4Address } from '../dataplane/wire/index.ts';
import { arpRequest, drain, memoryEngines, received, udpFrame, vtep } from './helpers/memory-engines.ts';
import { until } from './helpers/until.ts';

const A = '02:00:00:00:00:0a';
const B = '02:00:00:00:00:0b';
const payload = (s: string) => new TextEncoder().encode(s);

async function twoHosts(t: Parameters<typeof memoryEngines>[0], opts: Parameters<typeof memoryEngines>[2] = {}) {
  const { engines: [e0, e1], underlayPort } = await memoryEngines(t, 2, opts);
  for (const vni of [42, 43]) {
    e0.addVni(vni, 1450);
    e1.addVni(vni, 1450);
    e0.setFlood(vni, [vtep(1)]);
    e1.setFlood(vni, [vtep(0)]);
  }
  const a = e0.addPort({ name: 'a', kind: 'tap', vni: 42, mac: A, mtu: 1450, memory: true });
  const b = e1.addPort({ name: 'b', kind: 'tap', vni: 42, mac: B, mtu: 1450, memory: true });
  // Same MAC as a, other VNI, on the other host: it must never see VNI 42's traffic.
  const c = e1.addPort({ name: 'c', kind: 'tap', vni: 43, mac: A, mtu: 1450, memory: true });
  return { e0, e1, a, b, c, underlayPort };
}

test('floods unknown and broadcast frames to the other host, learns both ends, then delivers unicast to one port only; VNIs stay apart', async (t) => {
  const { e0, e1, a, b, c } = await twoHosts(t);
  const req = arpRequest(A, '198.18.0.1', '198.18.0.2');
  t.true(e0.memorySend(a, req));
  const [got] = await received(e1, b, 1, 'b gets the broadcast');
  t.deepEqual(got, req);
  t.deepEqual(e1.fdb(42).map((e) => [e.mac, e.remote]), [[A, vtep(0)]]);

  const reply = udpFrame({ dstMac: A, srcMac: B, src: '198.18.0.2', dst: '198.18.0.1', payload: payload('pong') });
  e1.memorySend(b, reply);
  t.deepEqual((await received(e0, a, 1, 'a gets the reply'))[0], reply);
  t.deepEqual(e0.fdb(42).find((e) => e.mac === B)?.remote, vtep(1));

  for (let i = 0; i < 20; i++) e0.memorySend(a, udpFrame({ dstMac: B, srcMac: A, src: '198.18.0.1', dst: '198.18.0.2', payload: payload(`m${i}`) }));
  const unicast = await received(e1, b, 20, 'b gets 20 unicast frames');
  t.deepEqual(unicast.map((f) => new TextDecoder().decode(parseIpv4(parseEthernet(f).payload).payload.subarray(8))), Array.from({ length: 20 }, (_, i) => `m${i}`));
  t.deepEqual(await drain(e1, b), []);
  t.deepEqual(await drain(e1, c), [], 'VNI 43 saw nothing of VNI 42');
  t.is(e1.counters().ports.find((p) => p.name === 'c')!.tx_packets, 0);
});

test('learned entries expire after ageingSeconds of silence and come back with traffic; static entries stay', async (t) => {
  const { e0, e1, a, b } = await twoHosts(t, { ageingSeconds: 1 });
  e1.addFdb(42, '02:00:00:00:00:99', { remote: vtep(0) });
  e0.memorySend(a, udpFrame({ dstMac: B, srcMac: A, src: '198.18.0.1', dst: '198.18.0.2', payload: payload('x') }));
  await received(e1, b, 1, 'b gets the flood');
  t.truthy(e1.fdb(42).find((e) => e.mac === A && !e.static));
  // The TX thread sweeps once a second: the learnt entry goes, the static one stays.
  const left = await until('the learnt entry ages out', async () => {
    const f = e1.fdb(42);
    return f.some((e) => e.mac === A) ? undefined : f;
  }, 40);
  t.deepEqual(left.map((e) => [e.mac, e.static]), [['02:00:00:00:00:99', true]]);
  e0.memorySend(a, udpFrame({ dstMac: B, srcMac: A, src: '198.18.0.1', dst: '198.18.0.2', payload: payload('y') }));
  await received(e1, b, 1, 'b gets the second frame');
  t.is(e1.fdb(42).find((e) => e.mac === A)?.remote, vtep(0));
});

test('a full FDB takes a new MAC as soon as old entries have aged out, not a sweep later', async (t) => {
  // Entries past the ageing time are gone from every lookup at once; the sweep that erases them runs once a
  // second. A table at its limit must not refuse a new MAC in between (it reclaims the expired ones itself).
  const { e0, e1, a } = await twoHosts(t, { ageingSeconds: 1, fdbLimit: 4 });
  const from = (i: number) => `02:00:00:00:01:${String(i).padStart(2, '0')}`;
  const frame = (i: number) => udpFrame({ dstMac: '02:00:00:00:00:77', srcMac: from(i), src: '198.18.0.1', dst: '198.18.0.2', payload: payload(`f${i}`) });
  const fdbFull = () => e1.counters().vnis['42']?.drops.fdb_full ?? 0;
  for (let i = 0; i < 6; i++) e0.memorySend(a, frame(i));
  await until('e1 counts two fdb_full', async () => (fdbFull() === 2 ? true : undefined));
  t.deepEqual(e1.fdb(42).map((e) => e.mac).sort(), [0, 1, 2, 3].map(from));
  await until('the four entries have aged out', async () => (e1.fdb(42).length === 0 ? true : undefined), 40);
  e0.memorySend(a, frame(9));
  await until('the new MAC is learnt', async () => (e1.fdb(42).some((e) => e.mac === from(9)) ? true : undefined));
  t.is(fdbFull(), 2, 'no fdb_full for it');
});

test('malformed and unknown-VNI datagrams are dropped and counted; the traffic around them arrives whole', async (t) => {
  const { e0, e1, a, b, underlayPort } = await twoHosts(t);
  e1.addFdb(42, A, { remote: vtep(0) });
  const junk = createSocket('udp4');
  t.teardown(() => junk.close());
  await new Promise<void>((r) => junk.bind(0, vtep(0), r));
  const sendJunk = (d: Uint8Array) => new Promise<void>((r) => junk.send(d, underlayPort, vtep(1), () => r()));
  for (let i = 0; i < 50; i++) {
    e0.memorySend(a, udpFrame({ dstMac: B, srcMac: A, src: '198.18.0.1', dst: '198.18.0.2', payload: payload(`ok${i}`) }));
    await sendJunk(Uint8Array.of(8, 0, 0));  // 3 bytes: no VXLAN header
    await sendJunk(vxlanEncap(99, udpFrame({ dstMac: B, srcMac: A, src: '198.18.0.1', dst: '198.18.0.2', payload: payload('no') })));
  }
  const got = await received(e1, b, 50, 'b gets the 50 good frames');
  t.is(got.length, 50);
  const w = await until('the drops are counted', async () => {
    const c = e1.counters().wire.drops;
    return c.malformed >= 50 && c.unknown_vni >= 50 ? c : undefined;
  }, 40);
  t.is(w.malformed, 50);
  t.is(w.unknown_vni, 50);
});

test('a TUN port: the engine answers ARP for its address, strips Ethernet towards it, and frames its packets to the learnt neighbour', async (t) => {
  const { e0, e1, a } = await twoHosts(t);
  const tun = e1.addPort({ name: 't', kind: 'tun', vni: 42, mac: '02:00:00:00:00:0c', mtu: 1450, ipv4: '198.18.0.3', memory: true });
  e0.memorySend(a, arpRequest(A, '198.18.0.1', '198.18.0.3'));
  const arp = (await received(e0, a, 1, 'a gets an ARP reply')).map((f) => parseEthernet(f)).find((f) => f.ethertype === 0x0806)!;
  const r = parseArp(arp.payload);
  t.is(r.operation, 'reply');
  t.is(formatMac(r.senderMac), '02:00:00:00:00:0c');
  t.is(r.senderIp, parseIpv4Address('198.18.0.3'));

  const frame = udpFrame({ dstMac: '02:00:00:00:00:0c', srcMac: A, src: '198.18.0.1', dst: '198.18.0.3', payload: payload('to tun') });
  e0.memorySend(a, frame);
  const [ip] = await received(e1, tun, 1, 'the TUN gets an IPv4 packet');
  t.deepEqual(ip, frame.subarray(14), 'the device sees the packet without its Ethernet header');

  const back = udpFrame({ dstMac: A, srcMac: '02:00:00:00:00:0c', src: '198.18.0.3', dst: '198.18.0.1', payload: payload('from tun') });
  e1.memorySend(tun, back.subarray(14));
  const [f] = await received(e0, a, 1, 'a gets the TUN\'s packet as a frame');
  t.deepEqual(f, back, 'framed from the TUN\'s MAC to the neighbour it learnt');
});

test('a DF frame above the VNI MTU is dropped as oversize and answered with ICMP "fragmentation needed"', async (t) => {
  const { e0, a } = await twoHosts(t);
  const big = udpFrame({ dstMac: B, srcMac: A, src: '198.18.0.1', dst: '198.18.0.2', payload: new Uint8Array(1600) });
  e0.memorySend(a, big);
  const [icmp] = await received(e0, a, 1, 'a gets the ICMP error');
  const ip = parseIpv4(parseEthernet(icmp).payload);
  t.is(ip.dst, parseIpv4Address('198.18.0.1'));
  const m = parseIcmpv4(ip.payload);
  t.like(m, { type: 'dest-unreachable', code: 4, nextHopMtu: 1450 });
  t.is(e0.counters().ports.find((p) => p.name === 'a')!.drops.oversize, 1);
});
