// The punt channel: JS installs classifiers, gets matching frames in batches, and answers by
// injecting frames. A tiny gateway at 198.18.42.254 answers ARP and ping from JS alone.
// The engine runs in this process on loopback; its TAP lives in an instance namespace.
import test from 'ava';
import dgram from 'node:dgram';
import { Engine, type PuntedFrame } from '../dataplane/engine.ts';
import { parseArp, emitArp, ARP_PACKET_LEN } from '../dataplane/wire/arp.ts';
import { parseEthernet, emitEthernet, ETHERTYPE_ARP, ETHERTYPE_IPV4 } from '../dataplane/wire/ethernet.ts';
import { parseIpv4, emitIpv4, ipv4BufferLen, IPPROTO_ICMP } from '../dataplane/wire/ipv4.ts';
import { parseIcmpv4, emitIcmpv4, icmpv4BufferLen } from '../dataplane/wire/icmpv4.ts';
import { parseIpv4Address, parseMac } from '../dataplane/wire/address.ts';
import { TestNet } from './helpers/testnet.ts';

const GW_IP = parseIpv4Address('198.18.42.254');
const GW_MAC = parseMac('02:00:00:00:fe:fe');

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The gateway's answer to a punted frame, or null. Pure: frame in, frame out. */
function answer(frame: Uint8Array): Uint8Array | null {
  const eth = parseEthernet(frame);
  if (eth.ethertype === ETHERTYPE_ARP) {
    const arp = parseArp(eth.payload);
    if (arp.operation !== 'request' || arp.targetIp !== GW_IP) return null;
    const out = new Uint8Array(14 + ARP_PACKET_LEN);
    const n = emitEthernet({ dst: arp.senderMac, src: GW_MAC, ethertype: ETHERTYPE_ARP, payload: new Uint8Array(ARP_PACKET_LEN) }, out);
    emitArp({ operation: 'reply', senderMac: GW_MAC, senderIp: GW_IP, targetMac: arp.senderMac, targetIp: arp.senderIp }, out, 14);
    return out.subarray(0, n);
  }
  if (eth.ethertype === ETHERTYPE_IPV4) {
    const ip = parseIpv4(eth.payload);
    const icmp = parseIcmpv4(ip.payload);
    if (icmp.type !== 'echo-request') return null;
    const reply = { ...icmp, type: 'echo-reply' as const };
    const icmpBytes = new Uint8Array(icmpv4BufferLen(reply));
    emitIcmpv4(reply, icmpBytes);
    const ipRepr = { ...ip, src: ip.dst, dst: ip.src, ttl: 64, payload: icmpBytes };
    const out = new Uint8Array(14 + ipv4BufferLen(ipRepr));
    emitEthernet({ dst: eth.src, src: GW_MAC, ethertype: ETHERTYPE_IPV4, payload: new Uint8Array(0) }, out);
    emitIpv4(ipRepr, out, 14);
    return out;
  }
  return null;
}

test.serial('a JS gateway answers ARP and ping through punt and inject, in batches', async (t) => {
  const net = await TestNet.create(t, { hosts: 1 });
  const inst = await net.addInstance('a');
  const batches: PuntedFrame[][] = [];
  let portId = -1;
  let injected = 0;
  const engine: Engine = new Engine({
    underlayAddress: '127.0.0.1',
    underlayPort: await freeUdpPort(),
    onPunt: (frames) => {
      batches.push(frames);
      for (const f of frames) {
        const out = answer(f.frame);
        if (out) { engine.injectToPort(portId, out); injected++; }
      }
    },
  });
  t.teardown(() => engine.stop());
  engine.addVni(42, 1450);
  const tapName = `pt${process.pid % 100000}`;
  portId = engine.addPort({ name: tapName, kind: 'tap', vni: 42, mac: '02:00:00:00:00:01', mtu: 1450, netns: inst.ns });
  engine.addPuntRule({ ethertype: ETHERTYPE_ARP });
  engine.addPuntRule({ ipProto: IPPROTO_ICMP, dstIp: '198.18.42.254' });
  engine.start();
  await net.configureInstance(inst, tapName, '198.18.42.1/24');

  const p = await net.ping(inst.ns, '198.18.42.254', { count: 5, interval: 0.05 });
  t.is(p.received, 5, p.output);
  const frames = batches.flat();
  t.true(frames.some((f) => parseEthernet(f.frame).ethertype === ETHERTYPE_ARP));
  t.is(frames.filter((f) => parseEthernet(f.frame).ethertype === ETHERTYPE_IPV4).length, 5);
  t.true(frames.every((f) => f.port === portId && f.vni === 42 && f.remote === null));
  const c = engine.counters();
  t.is(c.punt.punted, frames.length);
  t.is(c.punt.dropped, 0);
  // Every answer was delivered to the instance, and nothing else was (consumed frames go no further).
  t.true(injected >= 6, `expected an ARP reply and 5 echo replies, injected ${injected}`);
  t.is(c.ports[0].tx_packets, injected);

  // The classifier reads IPv4 through the one checked view: a header with IHL 4 (16 bytes) matches no IP rule.
  const frame = (verIhl: number) => Buffer.from(
    'ffffffffffff' + '020000000001' + '0800' +
    verIhl.toString(16) + '00001c000040004001' + '0000' + 'c6122a01' + 'c6122afe' + '0800f7ff00000000', 'hex');
  const before = engine.counters().punt.punted;
  engine.injectFromPort(portId, frame(0x44));
  t.is(engine.counters().punt.punted, before, 'IHL 4 is not IPv4 to the classifier');
  engine.injectFromPort(portId, frame(0x45));
  t.is(engine.counters().punt.punted, before + 1, 'the same packet with IHL 5 is punted');
});

test.serial('sendDatagram sends from the engine socket, and remove/re-add of rules takes effect', async (t) => {
  const rx = dgram.createSocket('udp4');
  await new Promise<void>((r) => rx.bind(0, '127.0.0.1', r));
  t.teardown(() => rx.close());
  const enginePort = await freeUdpPort();
  const engine = new Engine({ underlayAddress: '127.0.0.1', underlayPort: enginePort });
  t.teardown(() => engine.stop());
  engine.start();
  const got = new Promise<{ msg: Buffer; port: number }>((r) => rx.once('message', (msg, info) => r({ msg, port: info.port })));
  engine.sendDatagram('127.0.0.1', rx.address().port, Buffer.from('hello'));
  const { msg, port } = await got;
  t.is(msg.toString(), 'hello');
  t.is(port, enginePort);

  engine.addVni(7, 1450);
  const id = engine.addPuntRule({ ethertype: ETHERTYPE_ARP, vni: 7 });
  t.true(engine.removePuntRule(id));
  t.false(engine.removePuntRule(id));
  t.throws(() => engine.addPort({ name: 'x', kind: 'tap', vni: 8, mac: '02:00:00:00:00:09', mtu: 1450 }), { message: /VNI 8 does not exist/ });
  t.throws(() => engine.addVni(0x1000000, 1450), { message: /vni must be an integer in 0..16777215/ });
  t.throws(() => engine.addPort({ name: 'this-name-is-too-long', kind: 'tap', vni: 7, mac: '02:00:00:00:00:09', mtu: 1450 }), { message: /1-15 characters/ });
  // A frame handed in must hold at least an Ethernet header: later stages read it unchecked.
  t.throws(() => engine.injectToVni(7, new Uint8Array(13)), { message: /frame of 13 bytes: an injected frame is 14 to 65535 bytes/ });
  t.notThrows(() => engine.injectToVni(7, new Uint8Array(14)));
});
