import test from 'ava';
import type { ExecutionContext } from 'ava';
import {
  WireError, parseMac, parseIpv4Address,
  EthernetView, parseEthernet, emitEthernet, ethernetBufferLen,
  ETHERNET_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN,
  ArpView, parseArp, emitArp, arpBufferLen, ARP_PACKET_LEN, ARP_OP_REQUEST,
} from '../dataplane/wire/index.ts';
import type { ArpRepr, EthernetRepr } from '../dataplane/wire/index.ts';
import { randomBytes, xorshift32 } from './helpers/random.ts';
import { hex, throwsWire } from './helpers/wire-assert.ts';

// who-has 198.18.0.1 tell 198.18.0.2, from 02:00:c6:12:00:02 (verified with tshark).
const ARP_REQUEST_FRAME = hex(`
  ffffffffffff 0200c6120002 0806
  0001 0800 06 04 0001
  0200c6120002 c6120002
  000000000000 c6120001`);

// 198.18.0.1 is-at 02:00:c6:12:00:01, the answer to the request above.
const ARP_REPLY_FRAME = hex(`
  0200c6120002 0200c6120001 0806
  0001 0800 06 04 0002
  0200c6120001 c6120001
  0200c6120002 c6120002`);

test('deconstruct an ARP request frame', (t) => {
  t.is(ARP_REQUEST_FRAME.length, 42);
  const eth = new EthernetView(ARP_REQUEST_FRAME);
  t.is(eth.ethertype, ETHERTYPE_ARP);
  t.deepEqual(eth.dst, parseMac('ff:ff:ff:ff:ff:ff'));
  t.deepEqual(eth.src, parseMac('02:00:c6:12:00:02'));
  t.is(eth.payload.length, 28);
  t.is(eth.payload.byteOffset, ARP_REQUEST_FRAME.byteOffset + 14);

  const arp = new ArpView(eth.payload);
  t.is(arp.operation, ARP_OP_REQUEST);
  t.is(arp.senderIp, parseIpv4Address('198.18.0.2'));
  t.is(arp.targetIp, parseIpv4Address('198.18.0.1'));
  t.deepEqual(arp.senderMac, parseMac('02:00:c6:12:00:02'));
  t.deepEqual(arp.targetMac, new Uint8Array(6));

  t.deepEqual(parseArp(eth.payload), {
    operation: 'request',
    senderMac: parseMac('02:00:c6:12:00:02'),
    senderIp: 0xc6120002,
    targetMac: new Uint8Array(6),
    targetIp: 0xc6120001,
  });
});

test('construct the ARP reply frame', (t) => {
  const request = parseArp(parseEthernet(ARP_REQUEST_FRAME).payload);
  const ourMac = parseMac('02:00:c6:12:00:01');
  const reply: ArpRepr = {
    operation: 'reply',
    senderMac: ourMac,
    senderIp: request.targetIp,
    targetMac: request.senderMac,
    targetIp: request.senderIp,
  };
  const buf = new Uint8Array(ETHERNET_HEADER_LEN + arpBufferLen(reply));
  t.is(emitArp(reply, buf, ETHERNET_HEADER_LEN), ARP_PACKET_LEN);
  const eth: EthernetRepr = {
    dst: request.senderMac, src: ourMac, ethertype: ETHERTYPE_ARP, payload: buf.subarray(ETHERNET_HEADER_LEN),
  };
  t.is(ethernetBufferLen(eth), 42);
  t.is(emitEthernet(eth, buf), 42);
  t.deepEqual(buf, ARP_REPLY_FRAME);
});

test('construct the ARP request frame from reprs', (t) => {
  const arp = new Uint8Array(28);
  emitArp({
    operation: 'request', senderMac: parseMac('02:00:c6:12:00:02'), senderIp: parseIpv4Address('198.18.0.2'),
    targetMac: new Uint8Array(6), targetIp: parseIpv4Address('198.18.0.1'),
  }, arp);
  const frame = new Uint8Array(42);
  emitEthernet({
    dst: parseMac('ff:ff:ff:ff:ff:ff'), src: parseMac('02:00:c6:12:00:02'), ethertype: ETHERTYPE_ARP, payload: arp,
  }, frame);
  t.deepEqual(frame, ARP_REQUEST_FRAME);
});

test('Ethernet padding stays in the payload and ARP ignores it', (t) => {
  const padded = new Uint8Array(60);
  padded.set(ARP_REQUEST_FRAME);
  const eth = parseEthernet(padded);
  t.is(eth.payload.length, 46);
  t.is(parseArp(eth.payload).targetIp, 0xc6120001);
});

test('ethertype constants and a VLAN-tagged frame', (t) => {
  t.is(ETHERTYPE_IPV4, 0x0800);
  t.is(ETHERTYPE_ARP, 0x0806);
  t.is(ETHERTYPE_IPV6, 0x86dd);
  t.is(ETHERTYPE_VLAN, 0x8100);
  const tagged = hex('ffffffffffff 0200c6120002 8100 0064 0806');
  const eth = new EthernetView(tagged);
  t.is(eth.ethertype, ETHERTYPE_VLAN);
  t.deepEqual(eth.payload, hex('0064 0806'));
});

test('Ethernet errors name field and offset', (t) => {
  throwsWire(t, () => new EthernetView(new Uint8Array(13)), 'ethernet', 'header', 0);
  throwsWire(t, () => parseEthernet(new Uint8Array(0)), 'ethernet', 'header', 0);
  t.notThrows(() => EthernetView.check(new Uint8Array(14)));
  const good: EthernetRepr = { dst: new Uint8Array(6), src: new Uint8Array(6), ethertype: 0x0800, payload: new Uint8Array(4) };
  throwsWire(t, () => emitEthernet(good, new Uint8Array(17)), 'ethernet', 'buffer', 0);
  throwsWire(t, () => emitEthernet(good, new Uint8Array(40), 30), 'ethernet', 'buffer', 30);
  throwsWire(t, () => emitEthernet({ ...good, dst: new Uint8Array(5) }, new Uint8Array(18)), 'ethernet', 'dst', 0);
  throwsWire(t, () => emitEthernet({ ...good, src: new Uint8Array(7) }, new Uint8Array(28), 10), 'ethernet', 'src', 16);
  throwsWire(t, () => emitEthernet({ ...good, ethertype: 0x10000 }, new Uint8Array(18)), 'ethernet', 'ethertype', 12);
});

test('ARP errors name field and offset', (t) => {
  const arp = ARP_REQUEST_FRAME.slice(14);
  throwsWire(t, () => new ArpView(arp.subarray(0, 27)), 'arp', 'packet', 0);
  const mutate = (at: number, value: number): Uint8Array => { const b = arp.slice(); b[at] = value; return b; };
  throwsWire(t, () => parseArp(mutate(1, 6)), 'arp', 'htype', 0);
  throwsWire(t, () => parseArp(mutate(0, 1)), 'arp', 'htype', 0);
  throwsWire(t, () => parseArp(mutate(2, 0x86)), 'arp', 'ptype', 2);
  throwsWire(t, () => parseArp(mutate(4, 8)), 'arp', 'hlen', 4);
  throwsWire(t, () => parseArp(mutate(5, 16)), 'arp', 'plen', 5);
  throwsWire(t, () => parseArp(mutate(7, 3)), 'arp', 'oper', 6);
  throwsWire(t, () => parseArp(mutate(7, 0)), 'arp', 'oper', 6);
  throwsWire(t, () => parseArp(mutate(6, 1)), 'arp', 'oper', 6);

  const repr = parseArp(arp);
  throwsWire(t, () => emitArp(repr, new Uint8Array(27)), 'arp', 'buffer', 0);
  throwsWire(t, () => emitArp({ ...repr, senderIp: -1 }, new Uint8Array(28)), 'arp', 'spa', 14);
  throwsWire(t, () => emitArp({ ...repr, targetIp: 2 ** 32 }, new Uint8Array(28)), 'arp', 'tpa', 24);
  throwsWire(t, () => emitArp({ ...repr, senderMac: new Uint8Array(4) }, new Uint8Array(28)), 'arp', 'sha', 8);
  throwsWire(t, () => emitArp({ ...repr, targetMac: new Uint8Array(8) }, new Uint8Array(40), 2), 'arp', 'tha', 20);
  throwsWire(t, () => emitArp({ ...repr, operation: 'probe' as 'request' }, new Uint8Array(28)), 'arp', 'oper', 6);
});

test('property: Ethernet and ARP round trips (seeded)', (t) => {
  const rnd = xorshift32(0x5eed0011);
  for (let i = 0; i < 1000; i++) {
    const arp: ArpRepr = {
      operation: rnd() & 1 ? 'request' : 'reply',
      senderMac: randomBytes(rnd, 6), senderIp: rnd(), targetMac: randomBytes(rnd, 6), targetIp: rnd(),
    };
    const eth: EthernetRepr = {
      dst: randomBytes(rnd, 6), src: randomBytes(rnd, 6), ethertype: rnd() & 0xffff,
      payload: randomBytes(rnd, rnd() % 100),
    };
    const offset = rnd() % 8;
    const buf = new Uint8Array(offset + 200);
    t.is(emitArp(arp, buf, offset), 28);
    t.deepEqual(parseArp(buf.subarray(offset)), arp);
    const n = emitEthernet(eth, buf, offset);
    t.is(n, 14 + eth.payload.length);
    t.deepEqual(parseEthernet(buf.subarray(offset, offset + n)), eth);
  }
});

test('property: random bytes parse or throw WireError, never anything else (seeded)', (t) => {
  const rnd = xorshift32(0x5eed1011);
  let parsed = 0;
  for (let i = 0; i < 5000; i++) {
    const b = randomBytes(rnd, rnd() % 40);
    if (b.length >= 8 && rnd() & 1) {
      b.set(hex('0001 0800 06 04 00'), 0);
      b[7] = 1 + (rnd() & 1);
    }
    try {
      const repr = parseArp(b);
      parsed++;
      t.true(repr.operation === 'request' || repr.operation === 'reply');
    } catch (e) {
      t.true(e instanceof WireError, String(e));
    }
  }
  t.true(parsed > 100, `only ${parsed} parsed`);
});
