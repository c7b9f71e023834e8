import test from 'ava';
import type { ExecutionContext } from 'ava';
import {
  WireError, parseMac,
  parseEthernet, emitEthernet, ETHERTYPE_IPV4,
  parseIpv4, emitIpv4, IPPROTO_ICMP,
  Icmpv4View, parseIcmpv4, emitIcmpv4, icmpv4BufferLen, quoteOriginalDatagram,
  ICMPV4_ECHO_REQUEST, ICMPV4_ECHO_REPLY, ICMPV4_UNREACH_FRAG_NEEDED, ICMPV4_MAX_QUOTE_LEN,
} from '../dataplane/wire/index.ts';
import type { Icmpv4Repr } from '../dataplane/wire/index.ts';
import { randomBytes, xorshift32 } from './helpers/random.ts';
import { hex, throwsWire } from './helpers/wire-assert.ts';

/** Sets the checksum of an ICMP message built by hand (for the error-path cases). */
function withChecksum(bytes: Uint8Array): Uint8Array {
  new Icmpv4View(bytes).fillChecksum();
  return bytes;
}

// ping 198.18.0.2 -> 198.18.0.1, id 0x1234 seq 1, data "abcdefghijklmnop", DF (verified with tshark).
const ECHO_REQUEST_PACKET = hex(`
  4500 002c 1c46 4000 4001 9263 c6120002 c6120001
  08 00 a27f 1234 0001 6162636465666768696a6b6c6d6e6f70`);
const ECHO_REPLY_MESSAGE = hex('00 00 aa7f 1234 0001 6162636465666768696a6b6c6d6e6f70');

// 198.18.0.1 tells 198.18.0.2 the next hop MTU is 1450 for the ping above, quoting header + 8 bytes
// (DSCP CS6; verified with tshark).
const FRAG_NEEDED_FRAME = hex(`
  0200c6120002 0200c6120001 0800
  45c0 0038 0002 0000 4001 eddb c6120001 c6120002
  03 04 3a9d 0000 05aa
  4500 002c 1c46 4000 4001 9263 c6120002 c6120001 08 00 a27f 1234 0001`);

const TIME_EXCEEDED_MESSAGE = hex(`
  0b 00 384b 00000000
  4500 002c 1c46 4000 4001 9263 c6120002 c6120001 08 00 a27f 1234 0001`);

const DATA = new TextEncoder().encode('abcdefghijklmnop');

test('deconstruct and construct an echo request', (t) => {
  const ip = parseIpv4(ECHO_REQUEST_PACKET);
  t.is(ip.protocol, IPPROTO_ICMP);
  const view = new Icmpv4View(ip.payload);
  t.is(view.type, ICMPV4_ECHO_REQUEST);
  t.is(view.code, 0);
  t.is(view.checksum, 0xa27f);
  t.true(view.checksumValid);
  t.is(view.echoId, 0x1234);
  t.is(view.echoSeq, 1);
  t.deepEqual(parseIcmpv4(ip.payload), { type: 'echo-request', id: 0x1234, seq: 1, data: DATA });

  const packet = new Uint8Array(44);
  const repr: Icmpv4Repr = { type: 'echo-request', id: 0x1234, seq: 1, data: DATA };
  t.is(icmpv4BufferLen(repr), 24);
  t.is(emitIcmpv4(repr, packet, 20), 24);
  emitIpv4({ ...ip, payload: packet.subarray(20) }, packet);
  t.deepEqual(packet, ECHO_REQUEST_PACKET);
});

test('echo reply: construct from repr, and turn a request around in place', (t) => {
  const out = new Uint8Array(24);
  emitIcmpv4({ type: 'echo-reply', id: 0x1234, seq: 1, data: DATA }, out);
  t.deepEqual(out, ECHO_REPLY_MESSAGE);
  t.deepEqual(parseIcmpv4(ECHO_REPLY_MESSAGE), { type: 'echo-reply', id: 0x1234, seq: 1, data: DATA });

  const message = ECHO_REQUEST_PACKET.slice(20);
  message[0] = ICMPV4_ECHO_REPLY;
  const view = new Icmpv4View(message);
  t.false(view.checksumValid);
  view.fillChecksum();
  t.deepEqual(message, ECHO_REPLY_MESSAGE);
});

test('deconstruct and construct "fragmentation needed" (RFC 1191)', (t) => {
  const eth = parseEthernet(FRAG_NEEDED_FRAME);
  const ip = parseIpv4(eth.payload);
  t.is(ip.dscp, 48);
  const icmp = parseIcmpv4(ip.payload);
  t.deepEqual(icmp, {
    type: 'dest-unreachable', code: ICMPV4_UNREACH_FRAG_NEEDED, nextHopMtu: 1450,
    original: ECHO_REQUEST_PACKET.subarray(0, 28),
  });
  t.is(new Icmpv4View(ip.payload).nextHopMtu, 1450);

  const frame = new Uint8Array(FRAG_NEEDED_FRAME.length);
  const original = quoteOriginalDatagram(ECHO_REQUEST_PACKET, 28);
  t.is(original.length, 28);
  const icmpLen = emitIcmpv4({ type: 'dest-unreachable', code: 4, nextHopMtu: 1450, original }, frame, 34);
  t.is(icmpLen, 36);
  const ipLen = emitIpv4({
    dscp: 48, ecn: 0, id: 2, dontFragment: false, moreFragments: false, fragmentOffset: 0, ttl: 64,
    protocol: IPPROTO_ICMP, src: 0xc6120001, dst: 0xc6120002, options: new Uint8Array(0),
    payload: frame.subarray(34, 34 + icmpLen),
  }, frame, 14);
  emitEthernet({
    dst: parseMac('02:00:c6:12:00:02'), src: parseMac('02:00:c6:12:00:01'), ethertype: ETHERTYPE_IPV4,
    payload: frame.subarray(14, 14 + ipLen),
  }, frame);
  t.deepEqual(frame, FRAG_NEEDED_FRAME);
});

test('deconstruct and construct time exceeded', (t) => {
  const repr = parseIcmpv4(TIME_EXCEEDED_MESSAGE);
  t.deepEqual(repr, { type: 'time-exceeded', code: 0, original: ECHO_REQUEST_PACKET.subarray(0, 28) });
  const out = new Uint8Array(TIME_EXCEEDED_MESSAGE.length);
  emitIcmpv4(repr, out);
  t.deepEqual(out, TIME_EXCEEDED_MESSAGE);
});

test('quoteOriginalDatagram limits and padding', (t) => {
  t.deepEqual(quoteOriginalDatagram(ECHO_REQUEST_PACKET), ECHO_REQUEST_PACKET);
  const padded = new Uint8Array(60);
  padded.set(ECHO_REQUEST_PACKET);
  t.is(quoteOriginalDatagram(padded).length, 44, 'stops at total length');
  t.is(quoteOriginalDatagram(ECHO_REQUEST_PACKET, 10).length, 28, 'never less than header + 8');
  const big = new Uint8Array(1500);
  big.set(hex('4500 05dc 0000 4000 4011 0000 c6120002 c6120001'));
  t.is(ICMPV4_MAX_QUOTE_LEN, 548);
  t.is(quoteOriginalDatagram(big).length, 548);
  t.is(quoteOriginalDatagram(big).buffer, big.buffer);
  throwsWire(t, () => quoteOriginalDatagram(new Uint8Array(19)), 'ipv4', 'header', 0);
});

test('ICMPv4 parse errors name field and offset', (t) => {
  throwsWire(t, () => new Icmpv4View(new Uint8Array(7)), 'icmpv4', 'header', 0);
  const bad = ECHO_REPLY_MESSAGE.slice();
  bad[10] ^= 0x01;
  const err = throwsWire(t, () => parseIcmpv4(bad), 'icmpv4', 'checksum', 2);
  t.true(err?.message.includes('0xaa7f'), err?.message);
  throwsWire(t, () => parseIcmpv4(withChecksum(hex('0d00 0000 00000000'))), 'icmpv4', 'type', 0); // timestamp
  throwsWire(t, () => parseIcmpv4(withChecksum(hex('0801 0000 12340001'))), 'icmpv4', 'code', 1);
  throwsWire(t, () => parseIcmpv4(withChecksum(hex('0310 0000 00000000'))), 'icmpv4', 'code', 1);
  throwsWire(t, () => parseIcmpv4(withChecksum(hex('0b02 0000 00000000'))), 'icmpv4', 'code', 1);
  // Unused bytes of other unreachable codes are not reported as an MTU.
  t.deepEqual(parseIcmpv4(withChecksum(hex('0303 0000 000005aa'))),
    { type: 'dest-unreachable', code: 3, nextHopMtu: 0, original: new Uint8Array(0) });
});

test('ICMPv4 emit errors name field and offset', (t) => {
  const buf = new Uint8Array(64);
  const echo: Icmpv4Repr = { type: 'echo-request', id: 1, seq: 2, data: new Uint8Array(8) };
  throwsWire(t, () => emitIcmpv4(echo, new Uint8Array(15)), 'icmpv4', 'buffer', 0);
  throwsWire(t, () => emitIcmpv4({ ...echo, id: 70000 }, buf), 'icmpv4', 'id', 4);
  throwsWire(t, () => emitIcmpv4({ ...echo, seq: -1 }, buf, 8), 'icmpv4', 'seq', 14);
  const unreach: Icmpv4Repr = { type: 'dest-unreachable', code: 3, nextHopMtu: 0, original: new Uint8Array(28) };
  throwsWire(t, () => emitIcmpv4({ ...unreach, nextHopMtu: 1400 }, buf), 'icmpv4', 'next_hop_mtu', 6);
  throwsWire(t, () => emitIcmpv4({ ...unreach, code: 4, nextHopMtu: 65536 }, buf), 'icmpv4', 'next_hop_mtu', 6);
  throwsWire(t, () => emitIcmpv4({ ...unreach, code: 16 }, buf), 'icmpv4', 'code', 1);
  throwsWire(t, () => emitIcmpv4({ type: 'time-exceeded', code: 2, original: new Uint8Array(0) }, buf), 'icmpv4', 'code', 1);
  throwsWire(t, () => emitIcmpv4({ type: 'redirect' } as unknown as Icmpv4Repr, buf), 'icmpv4', 'type', 0);
});

function randomRepr(rnd: () => number): Icmpv4Repr {
  switch (rnd() % 4) {
    case 0: return { type: 'echo-request', id: rnd() & 0xffff, seq: rnd() & 0xffff, data: randomBytes(rnd, rnd() % 100) };
    case 1: return { type: 'echo-reply', id: rnd() & 0xffff, seq: rnd() & 0xffff, data: randomBytes(rnd, rnd() % 100) };
    case 2: {
      const code = rnd() % 16;
      return {
        type: 'dest-unreachable', code, nextHopMtu: code === 4 ? rnd() & 0xffff : 0,
        original: randomBytes(rnd, rnd() % 100),
      };
    }
    default: return { type: 'time-exceeded', code: rnd() & 1, original: randomBytes(rnd, rnd() % 100) };
  }
}

test('property: round trips, checksum verification and bit flips (seeded)', (t) => {
  const rnd = xorshift32(0x5eed0013);
  for (let i = 0; i < 2000; i++) {
    const repr = randomRepr(rnd);
    const offset = rnd() % 4;
    const buf = new Uint8Array(offset + icmpv4BufferLen(repr));
    const n = emitIcmpv4(repr, buf, offset);
    const message = buf.subarray(offset, offset + n);
    t.true(new Icmpv4View(message).checksumValid);
    t.deepEqual(parseIcmpv4(message), repr);
    const bad = message.slice();
    const bit = rnd() % (bad.length * 8);
    bad[bit >> 3] ^= 1 << (bit & 7);
    throwsWire(t, () => parseIcmpv4(bad), 'icmpv4', 'checksum', 2);
  }
});

test('property: random bytes parse or throw WireError (seeded)', (t) => {
  const rnd = xorshift32(0x5eed1013);
  let ok = 0;
  for (let i = 0; i < 5000; i++) {
    const b = randomBytes(rnd, rnd() % 40);
    if (b.length >= 8) {
      b[0] = [0, 3, 8, 11, 13][rnd() % 5];
      b[1] = rnd() % 17;
      if (rnd() & 1) withChecksum(b);
    }
    try {
      parseIcmpv4(b);
      ok++;
    } catch (e) {
      t.true(e instanceof WireError, String(e));
    }
  }
  t.true(ok > 200, `only ${ok} parsed`);
});
