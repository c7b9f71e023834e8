// Port filters (docs/port-filter.md): an application connection's port carries ARP between the link's two
// addresses and one TCP or UDP conversation with the inbound's port, and nothing else, in both directions.
//  1. The TypeScript twin and the engine's check give the same verdict on a table of frames, on every
//     truncation of them and on mutated copies; the table also pins the verdict the rules call for.
//  2. Frames injected from JS obey the filter like frames from the device.
//  3. Real devices, two hosts, VNI 77 (clear VXLAN) with the outbound side on h1 and the inbound side on h2:
//
//     h1: out  198.18.77.0/31 (filtered, outbound)      h2: in  198.18.77.1/31 (filtered, inbound, tcp 5201)
//         rogue 198.18.77.9/24 (unfiltered, VNI 77)
//         a42  198.18.42.1/24 (VNI 42, unfiltered)          b42 198.18.42.2/24 (VNI 42, unfiltered)
import test from 'ava';
import dgram from 'node:dgram';
import { Engine } from '../dataplane/engine.ts';
import { native } from '../dataplane/native.ts';
import { parseIpv4Address } from '../dataplane/wire/address.ts';
import { checkPortFilter, compilePortFilter, type CompiledPortFilter, type FilterDirection, type FilterVerdict, type PortFilter } from '../dataplane/wire/port-filter.ts';
import { counters, port } from './helpers/overlay.ts';
import { runIn } from './helpers/run.ts';
import { TestNet, tsharkFields } from './helpers/testnet.ts';

const A = '198.18.77.0';
const B = '198.18.77.1';
const SVC = 5201;
const MAC_OUT = '02:00:00:4d:00:01';
const MAC_IN = '02:00:00:4d:00:02';

const OUT: PortFilter = { localAddress: A, peerAddress: B, protocol: 'tcp', port: SVC, side: 'outbound' };
const IN: PortFilter = { localAddress: B, peerAddress: A, protocol: 'tcp', port: SVC, side: 'inbound' };
const OUT_UDP: PortFilter = { ...OUT, protocol: 'udp', port: 53 };
const IN_UDP: PortFilter = { ...IN, protocol: 'udp', port: 53 };

// ---- frame builders (raw bytes, so that malformed frames are as easy as good ones) ----

function be16(v: number): number[] { return [(v >> 8) & 0xff, v & 0xff]; }
function ip4(a: string): number[] { const v = parseIpv4Address(a); return [v >>> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff]; }

function eth(ethertype: number, payload: number[]): Uint8Array {
  return Uint8Array.from([2, 0, 0, 0x4d, 0, 2, 2, 0, 0, 0x4d, 0, 1, ...be16(ethertype), ...payload]);
}
function l4(proto: number, sport: number, dport: number): number[] {
  if (proto === 6) return [...be16(sport), ...be16(dport), 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0];
  if (proto === 17) return [...be16(sport), ...be16(dport), 0, 12, 0, 0, 1, 2, 3, 4];
  return [8, 0, 0, 0, 0, 1, 0, 1]; // ICMP echo request
}
interface IpOpts { src: string; dst: string; proto?: number; sport?: number; dport?: number; frag?: number; ihl?: number; version?: number; total?: number }
function ipv4(o: IpOpts): Uint8Array {
  const proto = o.proto ?? 6;
  const ihl = o.ihl ?? 5;
  const body = l4(proto, o.sport ?? 40000, o.dport ?? SVC);
  const opts = new Array<number>((ihl - 5) * 4 > 0 ? (ihl - 5) * 4 : 0).fill(1); // NOPs
  const total = o.total ?? 20 + opts.length + body.length;
  const hdr = [((o.version ?? 4) << 4) | ihl, 0, ...be16(total), 0, 1, ...be16(o.frag ?? 0x4000), 64, proto, 0, 0, ...ip4(o.src), ...ip4(o.dst)];
  return eth(0x0800, [...hdr, ...opts, ...body]);
}
function arp(op: number, spa: string, tpa: string, over: { htype?: number; ptype?: number } = {}): Uint8Array {
  return eth(0x0806, [...be16(over.htype ?? 1), ...be16(over.ptype ?? 0x0800), 6, 4, ...be16(op),
    2, 0, 0, 0x4d, 0, 1, ...ip4(spa), 0, 0, 0, 0, 0, 0, ...ip4(tpa)]);
}

type Row = [name: string, filter: PortFilter, dir: FilterDirection, frame: Uint8Array, want: FilterVerdict];

const TABLE: Row[] = [
  // The conversation itself, seen from each side in each direction.
  ['outbound sends to the inbound port', OUT, 'send', ipv4({ src: A, dst: B, sport: 40000, dport: SVC }), 'allowed'],
  ['outbound receives from the inbound port', OUT, 'receive', ipv4({ src: B, dst: A, sport: SVC, dport: 40000 }), 'allowed'],
  ['inbound receives on its port', IN, 'receive', ipv4({ src: A, dst: B, sport: 40000, dport: SVC }), 'allowed'],
  ['inbound answers from its port', IN, 'send', ipv4({ src: B, dst: A, sport: SVC, dport: 40000 }), 'allowed'],
  ['udp: outbound sends', OUT_UDP, 'send', ipv4({ src: A, dst: B, proto: 17, dport: 53 }), 'allowed'],
  ['udp: inbound answers', IN_UDP, 'send', ipv4({ src: B, dst: A, proto: 17, sport: 53 }), 'allowed'],
  ['IPv4 options are read past', OUT, 'send', ipv4({ src: A, dst: B, ihl: 7 }), 'allowed'],
  ['a first fragment carries the ports', OUT, 'send', ipv4({ src: A, dst: B, frag: 0x2000 }), 'allowed'],
  // Other ports.
  ['outbound to another port', OUT, 'send', ipv4({ src: A, dst: B, dport: 5202 }), 'port'],
  ['outbound from the port but to another', OUT, 'send', ipv4({ src: A, dst: B, sport: SVC, dport: 22 }), 'port'],
  ['outbound receives from another port', OUT, 'receive', ipv4({ src: B, dst: A, sport: 22, dport: 40000 }), 'port'],
  ['inbound receives on another port', IN, 'receive', ipv4({ src: A, dst: B, dport: 22 }), 'port'],
  ['inbound sends from another port', IN, 'send', ipv4({ src: B, dst: A, sport: 22, dport: SVC }), 'port'],
  // Other addresses.
  ['spoofed source', OUT, 'send', ipv4({ src: '198.18.77.2', dst: B }), 'address'],
  ['another destination', OUT, 'send', ipv4({ src: A, dst: '198.18.42.2' }), 'address'],
  ['sending the peer its own direction', OUT, 'send', ipv4({ src: B, dst: A }), 'address'],
  ['a third party to the inbound', IN, 'receive', ipv4({ src: '198.18.77.9', dst: B }), 'address'],
  ['broadcast', OUT, 'send', ipv4({ src: A, dst: '255.255.255.255' }), 'address'],
  // Other protocols.
  ['ICMP echo', OUT, 'send', ipv4({ src: A, dst: B, proto: 1 }), 'protocol'],
  ['UDP on a TCP filter', OUT, 'send', ipv4({ src: A, dst: B, proto: 17 }), 'protocol'],
  ['TCP on a UDP filter', OUT_UDP, 'send', ipv4({ src: A, dst: B, proto: 6, dport: 53 }), 'protocol'],
  ['IPv6', OUT, 'send', eth(0x86dd, new Array(60).fill(0x60)), 'ethertype'],
  ['a VLAN tag', OUT, 'send', eth(0x8100, [0, 77, 8, 0, ...ipv4({ src: A, dst: B }).subarray(14)]), 'ethertype'],
  ['a non-first fragment', OUT, 'send', ipv4({ src: A, dst: B, frag: 0x00b9 }), 'fragment'],
  // Broken headers.
  ['IPv4 ethertype with version 6', OUT, 'send', ipv4({ src: A, dst: B, version: 6 }), 'ip_header'],
  ['IHL below 5', OUT, 'send', ipv4({ src: A, dst: B, ihl: 4 }), 'ip_header'],
  ['total length below the headers', OUT, 'send', ipv4({ src: A, dst: B, total: 30 }), 'ip_header'],
  ['total length below IHL', OUT, 'send', ipv4({ src: A, dst: B, total: 12 }), 'ip_header'],
  ['IHL beyond the frame', OUT, 'send', ipv4({ src: A, dst: B, ihl: 15, total: 60 }).subarray(0, 60), 'truncated'],
  ['runt', OUT, 'send', new Uint8Array(13), 'truncated'],
  // ARP.
  ['ARP request for the peer', OUT, 'send', arp(1, A, B), 'allowed'],
  ['ARP reply from the peer', OUT, 'receive', arp(2, B, A), 'allowed'],
  ['ARP request from the peer', IN, 'receive', arp(1, A, B), 'allowed'],
  ['ARP for a third address', OUT, 'send', arp(1, A, '198.18.77.9'), 'arp_address'],
  ['ARP from a third address', IN, 'receive', arp(1, '198.18.77.9', B), 'arp_address'],
  ['gratuitous ARP', OUT, 'send', arp(1, A, A), 'arp_address'],
  ['ARP probe (sender 0.0.0.0)', OUT, 'send', arp(1, '0.0.0.0', B), 'arp_address'],
  ['ARP of another hardware type', OUT, 'send', arp(1, A, B, { htype: 6 }), 'arp_format'],
  ['ARP of another protocol type', OUT, 'send', arp(1, A, B, { ptype: 0x86dd }), 'arp_format'],
  ['truncated ARP', OUT, 'send', arp(1, A, B).subarray(0, 40), 'truncated'],
];

function nativeVerdict(f: CompiledPortFilter, frame: Uint8Array, dir: FilterDirection): FilterVerdict {
  return native.portFilterCheck(f, Buffer.from(frame), dir === 'send' ? 0 : 1);
}

test('the TypeScript twin and the engine agree on the table, and give the verdict the rules call for', (t) => {
  for (const [name, filter, dir, frame, want] of TABLE) {
    const f = compilePortFilter(filter);
    t.is(checkPortFilter(f, frame, dir), want, `${name} (TypeScript)`);
    t.is(nativeVerdict(f, frame, dir), want, `${name} (native)`);
  }
});

test('every truncation of an allowed frame is refused (truncated once the IPv4 header is whole), padding is not, and both implementations say why alike', (t) => {
  let refused = 0;
  for (const [name, filter, dir, frame, want] of TABLE.filter((r) => r[4] === 'allowed')) {
    const f = compilePortFilter(filter);
    // An IPv4 packet cut anywhere before its total length is truncated (native's shared IPv4 view); ARP is
    // read up to its 28 bytes. Padding after the packet does not matter.
    const ipv4 = frame[12] === 0x08 && frame[13] === 0;
    const end = ipv4 ? 14 + ((frame[16] << 8) | frame[17]) : 14 + 28;
    for (let n = 0; n < frame.length; n++) {
      const cut = frame.subarray(0, n);
      const ts = checkPortFilter(f, cut, dir);
      t.is(nativeVerdict(f, cut, dir), ts, `${name}, first ${n} bytes`);
      if (n < end) {
        t.not(ts, 'allowed', `${name}, first ${n} bytes (the packet ends at ${end})`);
        if (n >= 34 && ipv4) t.is(ts, 'truncated', `${name}, first ${n} bytes`);
        refused++;
      } else {
        t.is(ts, want, `${name}, first ${n} bytes`);
      }
    }
    const padded = Buffer.concat([frame, Buffer.alloc(18)]);
    t.is(checkPortFilter(f, padded, dir), want, `${name} with Ethernet padding`);
    t.is(nativeVerdict(f, padded, dir), want, `${name} with Ethernet padding (native)`);
  }
  t.true(refused > 100);
});

test('both implementations agree on 20,000 mutated frames', (t) => {
  let s = 0x9e3779b9;
  const rnd = (n: number): number => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s % n;
  };
  const seen = new Set<FilterVerdict>();
  for (let i = 0; i < 20_000; i++) {
    const [, filter, dir, base] = TABLE[rnd(TABLE.length)];
    const f = compilePortFilter(filter);
    const frame = Uint8Array.from(base);
    // Mutate one to three header bytes (the ones a verdict is made of), sometimes the length too.
    for (let k = 0; k <= rnd(3); k++) if (frame.length) frame[rnd(Math.min(frame.length, 60))] = rnd(256);
    const cut = rnd(4) === 0 ? frame.subarray(0, rnd(frame.length + 1)) : frame;
    const d: FilterDirection = rnd(2) ? dir : dir === 'send' ? 'receive' : 'send';
    const ts = checkPortFilter(f, cut, d);
    seen.add(ts);
    if (nativeVerdict(f, cut, d) !== ts) {
      t.fail(`disagree on ${Buffer.from(cut).toString('hex')} (${d}): ts ${ts}, native ${nativeVerdict(f, cut, d)}`);
      return;
    }
  }
  // The mutations reached every rule.
  t.deepEqual([...seen].sort(), ['address', 'allowed', 'arp_address', 'arp_format', 'ethertype', 'fragment', 'ip_header', 'port', 'protocol', 'truncated']);
});

test('a filter that does not validate is refused with the field named', (t) => {
  const bad: Array<[Partial<PortFilter>, RegExp]> = [
    [{ localAddress: '198.18.77' }, /filter\.localAddress must be an IPv4 address/],
    [{ peerAddress: A }, /filter\.peerAddress must be another address than localAddress/],
    [{ protocol: 'icmp' as 'tcp' }, /filter\.protocol must be 'tcp' or 'udp'/],
    [{ port: 0 }, /filter\.port must be an integer in 1\.\.65535, got 0/],
    [{ port: 65536 }, /filter\.port must be an integer in 1\.\.65535/],
    [{ side: 'both' as 'inbound' }, /filter\.side must be 'outbound' or 'inbound'/],
  ];
  for (const [over, re] of bad) t.throws(() => compilePortFilter({ ...OUT, ...over }), { instanceOf: RangeError, message: re });
});

async function freeUdpPort(): Promise<number> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const { port: p } = sock.address();
  await new Promise<void>((r) => sock.close(() => r()));
  return p;
}

test.serial('frames injected from JS obey the filter in both directions', async (t) => {
  const net = await TestNet.create(t, { hosts: 1 });
  const inst = await net.addInstance('out');
  const engine = new Engine({ underlayAddress: '127.0.0.1', underlayPort: await freeUdpPort() });
  t.teardown(() => engine.stop());
  engine.addVni(77, 1450);
  const tap = `pf${process.pid % 100000}`;
  t.throws(() => engine.addPort({ name: tap, kind: 'tap', vni: 77, mac: MAC_OUT, mtu: 1450, filter: { ...OUT, side: 'sideways' as 'inbound' } }),
    { message: new RegExp(`port ${tap}: filter\\.side must be`) });
  const id = engine.addPort({ name: tap, kind: 'tap', vni: 77, mac: MAC_OUT, mtu: 1450, netns: inst.ns, filter: OUT });
  engine.start();
  await net.configureInstance(inst, tap, `${A}/31`);
  const snap = () => {
    const c = engine.counters();
    const p = c.ports.find((x) => x.id === id)!;
    return { filtered: p.drops.filtered, tx: p.tx_packets, rx: p.rx_packets, vni: c.vnis['77'].drops.filtered };
  };
  const before = snap();

  // To the port: what the peer may send passes, the rest is counted.
  engine.injectToPort(id, ipv4({ src: B, dst: A, sport: SVC, dport: 40000 }));
  engine.injectToPort(id, ipv4({ src: B, dst: A, proto: 1 }));
  engine.injectToPort(id, ipv4({ src: '198.18.77.9', dst: A, sport: SVC }));
  const afterTo = snap();
  t.is(afterTo.tx - before.tx, 1, 'the allowed frame was delivered');
  t.is(afterTo.filtered - before.filtered, 2);
  t.is(afterTo.vni - before.vni, 2, 'counted on the VNI too');

  // From the port: refused before it is switched.
  engine.injectFromPort(id, ipv4({ src: A, dst: B, dport: 22 }));
  engine.injectFromPort(id, arp(1, A, '198.18.77.9'));
  engine.injectFromPort(id, ipv4({ src: A, dst: B, dport: SVC }));
  const afterFrom = snap();
  t.is(afterFrom.rx - afterTo.rx, 3);
  t.is(afterFrom.filtered - afterTo.filtered, 2);
  t.is(afterFrom.vni - afterTo.vni, 2);
});

test.serial('two hosts: the outbound reaches the inbound port and nothing else; other VNIs carry on', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const out = await net.addInstance('out');
  const inb = await net.addInstance('in');
  const rogue = await net.addInstance('rogue');
  const a42 = await net.addInstance('a42');
  const b42 = await net.addInstance('b42');
  const d1 = await net.startAppnetd(h1, {
    vnis: [{ vni: 77, flood: [h2.underlayIp] }, { vni: 42, flood: [h2.underlayIp] }],
    ports: [
      { name: 'tap77', kind: 'tap', vni: 77, mac: MAC_OUT, netns: out.ns, filter: OUT },
      { name: 'tap77r', kind: 'tap', vni: 77, mac: '02:00:00:4d:00:09', netns: rogue.ns },
      { name: 'tap42', kind: 'tap', vni: 42, mac: '02:00:00:2a:00:01', netns: a42.ns },
    ],
  });
  const d2 = await net.startAppnetd(h2, {
    vnis: [{ vni: 77, flood: [h1.underlayIp] }, { vni: 42, flood: [h1.underlayIp] }],
    ports: [
      { name: 'tap77', kind: 'tap', vni: 77, mac: MAC_IN, netns: inb.ns, filter: IN },
      { name: 'tap42', kind: 'tap', vni: 42, mac: '02:00:00:2a:00:02', netns: b42.ns },
    ],
  });
  await net.configureInstance(out, 'tap77', `${A}/31`);
  await net.configureInstance(inb, 'tap77', `${B}/31`);
  await net.configureInstance(rogue, 'tap77r', '198.18.77.9/24');
  await net.configureInstance(a42, 'tap42', '198.18.42.1/24');
  await net.configureInstance(b42, 'tap42', '198.18.42.2/24');

  // The one conversation: TCP to B:5201, large enough for TSO super-frames from out's TAP and GRO into in's.
  const x = await net.tcpTransfer(out.ns, inb.ns, B, 8 * 1024 * 1024, SVC);
  t.is(x.receivedBytes, 8 * 1024 * 1024);
  t.is(x.receivedSha256, x.sentSha256);
  const c1 = await counters(d1);
  const c2 = await counters(d2);
  t.true(port(c2, 'tap77').gro_merged > 0, 'segments were still coalesced into the filtered TAP');
  t.true(port(c1, 'tap77').rx_bytes > 8 * 1024 * 1024);

  // Another port, ping, and a spoofed source from out's instance: none of it leaves h1.
  await t.throwsAsync(net.tcpTransfer(out.ns, inb.ns, B, 1024, 5202, { timeoutMs: 3000 }), { message: /tcp-transfer client/ });
  const ping = await net.ping(out.ns, B, { count: 3, interval: 0.2 });
  t.is(ping.received, 0, ping.output);
  await runIn(out.ns, 'ip', ['addr', 'add', '198.18.77.2/32', 'dev', 'tap77']);
  const cap = await net.capture(inb.ns, 'tap77', { filter: 'host 198.18.77.2 or (ip and not tcp port 5201)' });
  const spoof = await runIn(out.ns, process.execPath, ['-e', `
    const s = require('node:net').connect({ host: '${B}', port: ${SVC}, localAddress: '198.18.77.2' });
    s.on('connect', () => { console.log('connected'); process.exit(0); });
    s.on('error', (e) => { console.log(e.code); process.exit(1); });
    setTimeout(() => { console.log('no answer'); process.exit(2); }, 3000);`], { reject: false });
  t.is(spoof.stdout.trim(), 'no answer');
  const file = await cap.stop();
  t.deepEqual(tsharkFields(file, ['ip.src', 'ip.dst']), [], 'nothing but the conversation reached the inbound instance');
  const f1 = await counters(d1);
  // 5202 (SYN and its retries), 3 pings, the spoofed SYN and its retries.
  t.true(port(f1, 'tap77').drops.filtered >= 3 + 2 + 2, JSON.stringify(port(f1, 'tap77').drops));
  t.true(f1.vnis['77'].drops.filtered >= port(f1, 'tap77').drops.filtered, JSON.stringify(f1.vnis['77'].drops));

  // A station on the VNI that is not an endpoint (unfiltered, as a compromised peer would be): the
  // inbound side refuses it on delivery, ARP and TCP to the very port alike.
  const before2 = port(await counters(d2), 'tap77').drops.filtered;
  await runIn(rogue.ns, 'ip', ['neigh', 'replace', B, 'lladdr', MAC_IN, 'dev', 'tap77r']);
  const rp = await net.ping(rogue.ns, B, { count: 3, interval: 0.2 });
  t.is(rp.received, 0, rp.output);
  await t.throwsAsync(net.tcpTransfer(rogue.ns, inb.ns, B, 1024, SVC, { timeoutMs: 3000 }), { message: /tcp-transfer client/ });
  const f2 = await counters(d2);
  t.true(port(f2, 'tap77').drops.filtered >= before2 + 3 + 2, JSON.stringify(port(f2, 'tap77').drops));
  t.true(f2.vnis['77'].drops.filtered >= port(f2, 'tap77').drops.filtered);

  // Meanwhile the unfiltered VNI 42 carries ping both ways, and nothing on it was filtered.
  const p42 = await net.ping(a42.ns, '198.18.42.2', { count: 5, interval: 0.1 });
  t.is(p42.received, 5, p42.output);
  const back = await net.ping(b42.ns, '198.18.42.1', { count: 5, interval: 0.1 });
  t.is(back.received, 5, back.output);
  const [g1, g2] = [await counters(d1), await counters(d2)];
  t.is(port(g1, 'tap42').drops.filtered + port(g2, 'tap42').drops.filtered, 0);
  t.is(port(g1, 'tap77r').drops.filtered, 0, 'an unfiltered port on the same VNI filters nothing');
  t.is(g1.vnis['42'].drops.filtered + g2.vnis['42'].drops.filtered, 0);
});
