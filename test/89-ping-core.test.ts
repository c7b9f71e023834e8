// The ping API's pure core (control/services/ping.ts) and the usage sums (control/services/usage.ts).
import test from 'ava';
import {
  ETHERTYPE_ARP, ETHERTYPE_IPV4, IPPROTO_ICMP, emitArp, emitEthernet, emitIcmpv4, emitIpv4, icmpv4BufferLen,
  parseArp, parseEthernet, parseIcmpv4, parseIpv4, parseIpv4Address, parseMac, formatMac,
} from '../dataplane/wire/index.ts';
import { DROP_REASONS, type DropReason, type PortCounters } from '../dataplane/engine.ts';
import { answerGateway } from '../control/services/gateway.ts';
import { PingRun, buildArpRequest, buildEchoRequest, formatRtt, pingOutput, readPingFrame } from '../control/services/ping.ts';
import { usageByNetwork, usageEvent } from '../control/services/usage.ts';
import { parseDaemonConfig } from '../control/daemon/config.ts';

const GW = { ipv4: '198.18.130.1', mac: '02:61:6e:00:00:2a' };
const TARGET = '198.18.130.5';
const TARGET_MAC = '02:00:00:aa:bb:cc';

/** What the instance at TARGET sends back: an echo reply to the gateway for a request frame. */
function instanceReply(request: Uint8Array, opts: { ttl?: number; id?: number; from?: string } = {}): Uint8Array {
  const eth = parseEthernet(request);
  const ip = parseIpv4(eth.payload);
  const echo = parseIcmpv4(ip.payload);
  if (echo.type !== 'echo-request') throw new Error('not a request');
  const reply = { type: 'echo-reply' as const, id: opts.id ?? echo.id, seq: echo.seq, data: echo.data };
  const out = new Uint8Array(14 + 20 + icmpv4BufferLen(reply));
  emitIcmpv4(reply, out.subarray(34));
  emitIpv4({ dscp: 0, ecn: 0, id: 7, dontFragment: true, moreFragments: false, fragmentOffset: 0, ttl: opts.ttl ?? 64, protocol: IPPROTO_ICMP,
    src: parseIpv4Address(opts.from ?? TARGET), dst: ip.src, options: new Uint8Array(0), payload: out.subarray(34) }, out, 14);
  emitEthernet({ dst: eth.src, src: parseMac(TARGET_MAC), ethertype: ETHERTYPE_IPV4, payload: out.subarray(14) }, out);
  return out;
}

function arpReply(from: string, mac: string, to = GW.ipv4): Uint8Array {
  const out = new Uint8Array(14 + 28);
  emitArp({ operation: 'reply', senderMac: parseMac(mac), senderIp: parseIpv4Address(from), targetMac: parseMac(GW.mac), targetIp: parseIpv4Address(to) }, out, 14);
  emitEthernet({ dst: parseMac(GW.mac), src: parseMac(mac), ethertype: ETHERTYPE_ARP, payload: out.subarray(14) }, out);
  return out;
}

test('an echo request leaves from the gateway address and MAC, 56 bytes of data, and a real gateway answers it', (t) => {
  const frame = buildEchoRequest(GW, TARGET, TARGET_MAC, 0x1234, 3);
  const eth = parseEthernet(frame);
  t.is(formatMac(eth.src), GW.mac);
  t.is(formatMac(eth.dst), TARGET_MAC);
  const ip = parseIpv4(eth.payload);
  t.is(ip.src, parseIpv4Address(GW.ipv4));
  t.is(ip.dst, parseIpv4Address(TARGET));
  t.is(ip.ttl, 64);
  const echo = parseIcmpv4(ip.payload);
  t.like(echo, { type: 'echo-request', id: 0x1234, seq: 3 });
  t.is(ip.payload.length, 64);
  // Checksums are complete: another stack (here our own gateway core, as the instance) accepts it.
  const answer = answerGateway(frame, { ipv4: TARGET, mac: TARGET_MAC });
  t.is(answer.action, 'reply');
});

test('the ARP request is a broadcast from the gateway asking for the address', (t) => {
  const eth = parseEthernet(buildArpRequest(GW, TARGET));
  t.is(formatMac(eth.dst), 'ff:ff:ff:ff:ff:ff');
  const arp = parseArp(eth.payload);
  t.like(arp, { operation: 'request', senderIp: parseIpv4Address(GW.ipv4), targetIp: parseIpv4Address(TARGET) });
});

test('readPingFrame: echo replies and ARP replies to the gateway, nothing else, never a throw', (t) => {
  const reply = instanceReply(buildEchoRequest(GW, TARGET, TARGET_MAC, 9, 1), { ttl: 63 });
  t.deepEqual(readPingFrame(reply, GW), { kind: 'echo-reply', from: TARGET, id: 9, seq: 1, ttl: 63, bytes: 64 });
  t.deepEqual(readPingFrame(arpReply(TARGET, TARGET_MAC), GW), { kind: 'arp-reply', from: TARGET, mac: TARGET_MAC });
  t.is(readPingFrame(arpReply(TARGET, TARGET_MAC, '198.18.130.9'), GW), undefined, 'ARP reply to someone else');
  t.is(readPingFrame(buildEchoRequest(GW, TARGET, TARGET_MAC, 9, 1), GW), undefined, 'a request, not a reply');
  const corrupt = Uint8Array.from(reply);
  corrupt[corrupt.length - 1] ^= 0xff;
  t.is(readPingFrame(corrupt, GW), undefined, 'bad ICMP checksum');
  t.is(readPingFrame(reply.subarray(0, 20), GW), undefined, 'truncated');
});

test('a run with a known MAC: probes 1..count, replies matched by id and address, a repeat is DUP!', (t) => {
  const run = new PingRun({ gw: GW, address: TARGET, mac: TARGET_MAC, id: 77, count: 3 });
  const sent: Uint8Array[] = [];
  for (let now = 0, p = run.probe(now); p; now += 200, p = run.probe(now)) {
    t.false(p.broadcast);
    sent.push(p.frame);
  }
  t.is(sent.length, 3);
  t.false(run.complete);
  t.false(run.receive(instanceReply(sent[0], { id: 78 }), 1), 'another run\'s id');
  t.false(run.receive(instanceReply(sent[0], { from: '198.18.130.6' }), 1), 'another address');
  t.true(run.receive(instanceReply(sent[0]), 1.5));
  t.true(run.receive(instanceReply(sent[1]), 201.25));
  t.false(run.complete);
  t.true(run.receive(instanceReply(sent[2]), 430));
  t.true(run.complete);
  t.true(run.receive(instanceReply(sent[2]), 431), 'a duplicate is still ours');
  const out = run.output(500);
  t.deepEqual(out.stderr, []);
  t.deepEqual(out.stdout.slice(0, 5), [
    `PING ${TARGET} (${TARGET}) 56(84) bytes of data.`,
    `64 bytes from ${TARGET}: icmp_seq=1 ttl=64 time=1.50 ms`,
    `64 bytes from ${TARGET}: icmp_seq=2 ttl=64 time=1.25 ms`,
    `64 bytes from ${TARGET}: icmp_seq=3 ttl=64 time=30.0 ms`,
    `64 bytes from ${TARGET}: icmp_seq=3 ttl=64 time=31.0 ms (DUP!)`,
  ]);
  t.is(out.stdout[6], `--- ${TARGET} ping statistics ---`);
  t.is(out.stdout[7], '3 packets transmitted, 3 received, +1 duplicates, 0% packet loss, time 500ms');
  t.regex(out.stdout[8], /^rtt min\/avg\/max\/mdev = 1\.250\/15\.938\/31\.000\/[0-9.]+ ms$/);
});

test('a run without a MAC asks by ARP; unanswered probes are errors; an ARP reply lets the next probes through', (t) => {
  const run = new PingRun({ gw: GW, address: TARGET, id: 5, count: 4 });
  const first = run.probe(0)!;
  t.true(first.broadcast);
  t.is(parseEthernet(first.frame).ethertype, ETHERTYPE_ARP);
  t.true(run.probe(200)!.broadcast);
  t.true(run.receive(arpReply(TARGET, TARGET_MAC), 250));
  const third = run.probe(400)!;
  t.false(third.broadcast);
  t.is(formatMac(parseEthernet(third.frame).dst), TARGET_MAC);
  t.true(run.receive(instanceReply(third.frame), 400.5));
  run.probe(600);
  t.is(run.probe(800), null);
  t.false(run.complete, 'probe 4 is still unanswered');
  const out = run.output(1600);
  t.deepEqual(out.stdout.slice(1, 4), [
    `From ${GW.ipv4} icmp_seq=1 Destination Host Unreachable`,
    `From ${GW.ipv4} icmp_seq=2 Destination Host Unreachable`,
    `64 bytes from ${TARGET}: icmp_seq=3 ttl=64 time=0.500 ms`,
  ]);
  t.true(out.stdout.includes('4 packets transmitted, 1 received, +2 errors, 75% packet loss, time 1600ms'), out.stdout.join('\n'));
});

test('nobody answers: 100% loss and no rtt line, as ping prints it', (t) => {
  const out = pingOutput({ address: TARGET, gateway: GW.ipv4, transmitted: 10, replies: [], unreachable: [], elapsedMs: 2812.4 });
  t.deepEqual(out.stdout, [
    `PING ${TARGET} (${TARGET}) 56(84) bytes of data.`,
    '',
    `--- ${TARGET} ping statistics ---`,
    '10 packets transmitted, 0 received, 100% packet loss, time 2812ms',
  ]);
  t.is(pingOutput({ address: TARGET, gateway: GW.ipv4, transmitted: 3, replies: [{ seq: 1, ttl: 64, bytes: 64, rttMs: 2, dup: false }], unreachable: [], elapsedMs: 0 }).stdout[4],
    '3 packets transmitted, 1 received, 66.6667% packet loss, time 0ms');
});

test('formatRtt keeps ping\'s precision by magnitude', (t) => {
  t.deepEqual([0.0456, 3.14159, 42.42, 1234.5].map(formatRtt), ['0.046', '3.14', '42.4', '1235']);
});

test('the gateway pinging itself answers at once; bad counts and ids are refused naming the field', (t) => {
  const run = new PingRun({ gw: GW, address: GW.ipv4, id: 1, count: 2 });
  t.is(run.probe(0), null);
  t.is(run.probe(0), null);
  t.true(run.complete);
  t.true(run.output(0).stdout.includes('2 packets transmitted, 2 received, 0% packet loss, time 0ms'));
  t.throws(() => new PingRun({ gw: GW, address: TARGET, id: 1, count: 0 }), { message: /^count must be/ });
  t.throws(() => new PingRun({ gw: GW, address: TARGET, id: 70000, count: 1 }), { message: /^id must be/ });
});

function port(id: number, rx: number, tx: number, dropped = 0): PortCounters {
  return {
    id, name: `p${id}`, vni: 1, rx_packets: rx, rx_bytes: rx * 100, tx_packets: tx, tx_bytes: tx * 1000,
    drops: { ...Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>, malformed: dropped },
    gro_merged: 0, gro_writes: 0,
  };
}

test('usage sums the counters of each network\'s own ports; a vanished port counts nothing', (t) => {
  const u = usageByNetwork([port(1, 3, 4), port(2, 5, 6, 2), port(3, 100, 100)], new Map([['net-a', [1, 2]], ['net-b', [9]]]));
  t.deepEqual(u.get('net-a'), { ports: 2, rx: { packets: 8, bytes: 800, dropped: 2 }, tx: { packets: 10, bytes: 10000 } });
  t.deepEqual(u.get('net-b'), { ports: 0, rx: { packets: 0, bytes: 0, dropped: 0 }, tx: { packets: 0, bytes: 0 } });
  t.deepEqual(usageEvent('h1', u.get('net-a')!, 1_700_000_000_500), {
    timestamp: 1_700_000_000.5, fqdn: 'h1', duration: null, message: 'usage', type: 'usage',
    extra: { host: 'h1', ports: 2, rx: { packets: 8, bytes: 800, dropped: 2 }, tx: { packets: 10, bytes: 10000 } },
  });
});

test('usageIntervalSeconds: 60 by default, 0 turns usage events off, anything else outside 0..86400 is refused by name', (t) => {
  const base = { underlay: { address: '198.18.0.10' } };
  t.is(parseDaemonConfig(base).usageIntervalSeconds, 60);
  t.is(parseDaemonConfig({ ...base, usageIntervalSeconds: 0 }).usageIntervalSeconds, 0);
  t.throws(() => parseDaemonConfig({ ...base, usageIntervalSeconds: 1.5 }), { message: 'config: usageIntervalSeconds: must be an integer in 0..86400, got 1.5' });
});
