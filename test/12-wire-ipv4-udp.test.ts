import test from 'ava';
import type { ExecutionContext } from 'ava';
import {
  WireError, parseIpv4Address,
  sumBytes, sumWord, sumU32, foldSum, finishChecksum, internetChecksum, ipv4PseudoHeaderSum,
  updateChecksum16, updateChecksum32,
  Ipv4View, parseIpv4, emitIpv4, ipv4BufferLen, IPPROTO_UDP, IPPROTO_ICMP,
  UdpView, parseUdp, emitUdp, udpBufferLen,
} from '../dataplane/wire/index.ts';
import type { Ipv4Repr, UdpRepr } from '../dataplane/wire/index.ts';
import { randomBytes, xorshift32 } from './helpers/random.ts';
import { hex, throwsWire } from './helpers/wire-assert.ts';

/** Straightforward RFC 1071 reference: pad, add 16-bit words, fold, complement. */
function referenceChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) + (i + 1 < bytes.length ? bytes[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return ~sum & 0xffff;
}

// The classic worked example (Wikipedia, "IPv4 header checksum"): checksum 0xb861.
const WIKI_HEADER = hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');

// 198.18.0.2:40000 -> 198.18.0.1:7 UDP "hello appnet", IPv4 id 0xbeef (checksums verified with tshark).
const UDP_FRAME = hex(`
  0200c6120001 0200c6120002 0800
  4500 0028 beef 0000 4011 2fae c6120002 c6120001
  9c40 0007 0014 5c11 68656c6c6f206170706e6574`);

const PSEUDO = { src: 0xc6120002, dst: 0xc6120001 };

test('RFC 1071 checksum on literal data', (t) => {
  // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to 0x2ddf0, fold to 0xddf2.
  const data = hex('0001 f203 f4f5 f6f7');
  t.is(sumBytes(data), 0x2ddf0);
  t.is(foldSum(0x2ddf0), 0xddf2);
  t.is(internetChecksum(data), 0x220d);
  t.is(internetChecksum(hex('01')), 0xfeff, 'odd length pads a zero low byte');
  t.is(internetChecksum(new Uint8Array(0)), 0xffff);
  t.is(internetChecksum(WIKI_HEADER), 0);
  t.is(finishChecksum(sumBytes(WIKI_HEADER, 0, 10) + sumBytes(WIKI_HEADER, 12)), 0xb861);
  t.is(sumWord(1, 0x1ffff), 0x10000);
  t.is(sumU32(0, 0xc0a80001), 0xc0a8 + 0x0001);
  t.is(ipv4PseudoHeaderSum(0xc6120002, 0xc6120001, 17, 20), 0xc612 + 2 + 0xc612 + 1 + 17 + 20);
});

test('checksum: split sums, RFC 1624 updates and the reference agree (seeded)', (t) => {
  const rnd = xorshift32(0x5eed0012);
  for (let i = 0; i < 500; i++) {
    const b = randomBytes(rnd, rnd() % 300);
    t.is(internetChecksum(b), referenceChecksum(b));
    const cut = (rnd() % (b.length + 1)) & ~1;
    t.is(finishChecksum(sumBytes(b, cut, b.length, sumBytes(b, 0, cut))), referenceChecksum(b));
    if (b.length >= 8) {
      // Store a checksum in words 0..1, change the word at 4 and the u32 at 4..8, update incrementally.
      b[0] = 0; b[1] = 0;
      const c = internetChecksum(b);
      b[0] = c >> 8; b[1] = c & 0xff;
      const oldWord = (b[4] << 8) | b[5];
      const newWord = rnd() & 0xffff;
      const c16 = updateChecksum16(c, oldWord, newWord);
      b[4] = newWord >> 8; b[5] = newWord & 0xff;
      b[0] = c16 >> 8; b[1] = c16 & 0xff;
      t.is(internetChecksum(b), 0, 'updated checksum verifies');
      const oldU32 = ((b[4] << 24) | (b[5] << 16) | (b[6] << 8) | b[7]) >>> 0;
      const newU32 = rnd();
      const c32 = updateChecksum32(c16, oldU32, newU32);
      b[4] = newU32 >>> 24; b[5] = (newU32 >>> 16) & 0xff; b[6] = (newU32 >>> 8) & 0xff; b[7] = newU32 & 0xff;
      b[0] = c32 >> 8; b[1] = c32 & 0xff;
      t.is(internetChecksum(b), 0, 'updated u32 checksum verifies');
    }
  }
});

test('deconstruct the Wikipedia IPv4 header', (t) => {
  const packet = new Uint8Array(0x73);
  packet.set(WIKI_HEADER);
  const ip = new Ipv4View(packet);
  t.is(ip.version, 4);
  t.is(ip.headerLen, 20);
  t.is(ip.totalLength, 115);
  t.true(ip.dontFragment);
  t.false(ip.moreFragments);
  t.is(ip.fragmentOffset, 0);
  t.is(ip.ttl, 64);
  t.is(ip.protocol, IPPROTO_UDP);
  t.is(ip.checksum, 0xb861);
  t.true(ip.checksumValid);
  t.is(ip.computeChecksum(), 0xb861);
  t.is(ip.src, parseIpv4Address('192.168.0.1'));
  t.is(ip.dst, parseIpv4Address('192.168.0.199'));
  t.is(ip.payload.length, 95);
  t.is(ip.options.length, 0);
});

test('deconstruct and construct a UDP frame', (t) => {
  const ip = parseIpv4(UDP_FRAME.subarray(14));
  t.deepEqual(ip, {
    dscp: 0, ecn: 0, id: 0xbeef, dontFragment: false, moreFragments: false, fragmentOffset: 0, ttl: 64,
    protocol: IPPROTO_UDP, src: parseIpv4Address('198.18.0.2'), dst: parseIpv4Address('198.18.0.1'),
    options: new Uint8Array(0), payload: UDP_FRAME.subarray(34),
  });
  const udp = parseUdp(ip.payload, ip);
  t.is(udp.srcPort, 40000);
  t.is(udp.dstPort, 7);
  t.is(udp.checksum, 'verified');
  t.is(Buffer.from(udp.payload).toString('latin1'), 'hello appnet');
  t.is(new UdpView(ip.payload).checksum, 0x5c11);

  const frame = UDP_FRAME.slice();
  frame.fill(0, 14);
  const payload = new TextEncoder().encode('hello appnet');
  const udpLen = emitUdp({ srcPort: 40000, dstPort: 7, payload }, frame, 34, PSEUDO);
  t.is(udpLen, 20);
  const ipLen = emitIpv4({ ...ip, payload: frame.subarray(34, 34 + udpLen) }, frame, 14);
  t.is(ipLen, 40);
  t.deepEqual(frame, UDP_FRAME);
});

test('IPv4 payload excludes Ethernet padding; UDP payload excludes bytes past its length', (t) => {
  const padded = new Uint8Array(64);
  padded.set(UDP_FRAME);
  padded.fill(0xee, UDP_FRAME.length);
  const ip = new Ipv4View(padded.subarray(14));
  t.is(ip.totalLength, 40);
  t.is(ip.payload.length, 20);
  t.is(parseUdp(ip.payload, PSEUDO).checksum, 'verified');
  const udp = new UdpView(padded.subarray(34));
  t.is(udp.payload.length, 12);
});

test('IPv4 options, fragments and in-place checksum refresh', (t) => {
  const repr: Ipv4Repr = {
    dscp: 46, ecn: 2, id: 0x1234, dontFragment: false, moreFragments: true, fragmentOffset: 1480, ttl: 1,
    protocol: IPPROTO_UDP, src: 0xc6120001, dst: 0xc6120002, options: hex('94040000'), payload: hex('deadbeef'),
  };
  const buf = new Uint8Array(ipv4BufferLen(repr));
  t.is(buf.length, 28);
  emitIpv4(repr, buf);
  t.deepEqual(buf.subarray(0, 10), hex('46 ba 001c 1234 20b9 01 11'));
  const view = new Ipv4View(buf);
  t.is(view.headerLen, 24);
  t.is(view.dscp, 46);
  t.is(view.ecn, 2);
  t.true(view.moreFragments);
  t.is(view.fragmentOffset, 1480);
  t.deepEqual(view.options, hex('94040000'));
  t.deepEqual(parseIpv4(buf), repr);

  buf[8] = 64; // TTL rewrite invalidates the checksum until refreshed
  t.false(view.checksumValid);
  view.fillChecksum();
  t.true(view.checksumValid);
  t.is(parseIpv4(buf).ttl, 64);
});

test('IPv4 check errors name field and offset', (t) => {
  const packet = UDP_FRAME.slice(14);
  const mutate = (at: number, value: number): Uint8Array => { const b = packet.slice(); b[at] = value; return b; };
  throwsWire(t, () => new Ipv4View(packet.subarray(0, 19)), 'ipv4', 'header', 0);
  throwsWire(t, () => new Ipv4View(mutate(0, 0x65)), 'ipv4', 'version', 0);
  throwsWire(t, () => new Ipv4View(mutate(0, 0x44)), 'ipv4', 'ihl', 0);
  throwsWire(t, () => new Ipv4View(mutate(0, 0x4f)), 'ipv4', 'ihl', 0);
  throwsWire(t, () => new Ipv4View(mutate(3, 19)), 'ipv4', 'total_length', 2);
  throwsWire(t, () => new Ipv4View(mutate(3, 41)), 'ipv4', 'total_length', 2);
  throwsWire(t, () => new Ipv4View(packet.subarray(0, 39)), 'ipv4', 'total_length', 2);
  const err = throwsWire(t, () => parseIpv4(mutate(8, 63)), 'ipv4', 'checksum', 10);
  t.true(err?.message.includes('0x2fae') && err.message.includes('0x30ae'), err?.message);
});

test('IPv4 emit errors name field and offset', (t) => {
  const repr = parseIpv4(UDP_FRAME.subarray(14));
  const buf = new Uint8Array(100);
  throwsWire(t, () => emitIpv4(repr, new Uint8Array(39)), 'ipv4', 'buffer', 0);
  throwsWire(t, () => emitIpv4({ ...repr, options: new Uint8Array(3) }, buf), 'ipv4', 'options', 20);
  throwsWire(t, () => emitIpv4({ ...repr, options: new Uint8Array(44) }, buf, 4), 'ipv4', 'options', 24);
  throwsWire(t, () => emitIpv4({ ...repr, payload: new Uint8Array(65516) }, buf), 'ipv4', 'total_length', 2);
  throwsWire(t, () => emitIpv4({ ...repr, dscp: 64 }, buf), 'ipv4', 'dscp', 1);
  throwsWire(t, () => emitIpv4({ ...repr, ecn: 4 }, buf), 'ipv4', 'ecn', 1);
  throwsWire(t, () => emitIpv4({ ...repr, id: 0x10000 }, buf), 'ipv4', 'id', 4);
  throwsWire(t, () => emitIpv4({ ...repr, fragmentOffset: 7 }, buf), 'ipv4', 'fragment_offset', 6);
  throwsWire(t, () => emitIpv4({ ...repr, fragmentOffset: 65536 }, buf), 'ipv4', 'fragment_offset', 6);
  throwsWire(t, () => emitIpv4({ ...repr, ttl: 256 }, buf), 'ipv4', 'ttl', 8);
  throwsWire(t, () => emitIpv4({ ...repr, protocol: -1 }, buf), 'ipv4', 'protocol', 9);
  throwsWire(t, () => emitIpv4({ ...repr, src: 1.5 }, buf), 'ipv4', 'src', 12);
  throwsWire(t, () => emitIpv4({ ...repr, dst: 2 ** 32 }, buf, 10), 'ipv4', 'dst', 26);
});

test('UDP errors name field and offset', (t) => {
  const datagram = UDP_FRAME.slice(34);
  const mutate = (at: number, value: number): Uint8Array => { const b = datagram.slice(); b[at] = value; return b; };
  throwsWire(t, () => new UdpView(datagram.subarray(0, 7)), 'udp', 'header', 0);
  throwsWire(t, () => new UdpView(mutate(5, 7)), 'udp', 'length', 4);
  throwsWire(t, () => new UdpView(mutate(5, 21)), 'udp', 'length', 4);
  const err = throwsWire(t, () => parseUdp(mutate(19, 0x75), PSEUDO), 'udp', 'checksum', 6);
  t.true(err?.message.includes('0x5c11'), err?.message);
  throwsWire(t, () => parseUdp(datagram, { src: PSEUDO.dst, dst: PSEUDO.dst }), 'udp', 'checksum', 6);

  const repr: UdpRepr = { srcPort: 1, dstPort: 2, payload: new Uint8Array(4) };
  throwsWire(t, () => emitUdp(repr, new Uint8Array(11)), 'udp', 'buffer', 0);
  throwsWire(t, () => emitUdp({ ...repr, srcPort: 65536 }, new Uint8Array(12)), 'udp', 'src_port', 0);
  throwsWire(t, () => emitUdp({ ...repr, dstPort: -1 }, new Uint8Array(20), 8), 'udp', 'dst_port', 10);
  throwsWire(t, () => emitUdp({ ...repr, payload: new Uint8Array(65528) }, new Uint8Array(12)), 'udp', 'length', 4);
});

test('UDP checksum status: verified, zero, unchecked; computed zero is sent as 0xffff', (t) => {
  const datagram = UDP_FRAME.slice(34);
  t.is(parseUdp(datagram).checksum, 'unchecked');
  t.is(parseUdp(datagram, PSEUDO).checksum, 'verified');
  const buf = new Uint8Array(20);
  emitUdp(parseUdp(datagram), buf);
  t.deepEqual(buf.subarray(4, 8), hex('0014 0000'));
  t.is(parseUdp(buf, PSEUDO).checksum, 'zero');

  // Choose the last payload word so the computed checksum is 0: it must go out as 0xffff.
  const payload = new Uint8Array(6);
  emitUdp({ srcPort: 1000, dstPort: 2000, payload }, buf, 0, PSEUDO);
  const c = new UdpView(buf.subarray(0, 14)).checksum;
  payload[4] = c >> 8; payload[5] = c & 0xff;
  emitUdp({ srcPort: 1000, dstPort: 2000, payload }, buf, 0, PSEUDO);
  const view = new UdpView(buf.subarray(0, 14));
  t.is(view.checksum, 0xffff);
  t.true(view.checksumValid(PSEUDO));
  t.is(parseUdp(buf.subarray(0, 14), PSEUDO).checksum, 'verified');
});

test('property: IPv4+UDP round trips and single-bit corruption is detected (seeded)', (t) => {
  const rnd = xorshift32(0x5eed0012);
  for (let i = 0; i < 1000; i++) {
    const udp: UdpRepr = { srcPort: rnd() & 0xffff, dstPort: rnd() & 0xffff, payload: randomBytes(rnd, rnd() % 200) };
    const ip: Ipv4Repr = {
      dscp: rnd() & 0x3f, ecn: rnd() & 3, id: rnd() & 0xffff, dontFragment: (rnd() & 1) === 1,
      moreFragments: (rnd() & 1) === 1, fragmentOffset: (rnd() & 0x1fff) * 8, ttl: rnd() & 0xff,
      protocol: IPPROTO_UDP, src: rnd(), dst: rnd(), options: randomBytes(rnd, 4 * (rnd() % 11)),
      payload: new Uint8Array(0),
    };
    const offset = rnd() % 4;
    const headerLen = 20 + ip.options.length;
    const buf = new Uint8Array(offset + headerLen + udpBufferLen(udp) + (rnd() % 3));
    const udpLen = emitUdp(udp, buf, offset + headerLen, ip);
    const ipRepr = { ...ip, payload: buf.subarray(offset + headerLen, offset + headerLen + udpLen) };
    const total = emitIpv4(ipRepr, buf, offset);
    const packet = buf.subarray(offset, offset + total);

    const parsedIp = parseIpv4(packet);
    t.deepEqual(parsedIp, ipRepr);
    t.deepEqual(parseUdp(parsedIp.payload, parsedIp), { ...udp, checksum: 'verified' });

    const hdrBit = 32 + (rnd() % ((headerLen - 4) * 8)); // any bit from byte 4 to the end of the header
    const bad = packet.slice();
    bad[hdrBit >> 3] ^= 1 << (hdrBit & 7);
    throwsWire(t, () => parseIpv4(bad), 'ipv4', 'checksum', 10);

    const udpBytes = packet.slice(headerLen);
    const skip = [4, 5, 6, 7]; // length and checksum fields fail differently
    let at: number;
    do at = rnd() % udpBytes.length; while (skip.includes(at));
    udpBytes[at] ^= 1 << (rnd() & 7);
    throwsWire(t, () => parseUdp(udpBytes, parsedIp), 'udp', 'checksum', 6);
  }
});

test('property: random bytes parse or throw WireError (seeded)', (t) => {
  const rnd = xorshift32(0x5eed1012);
  let ok = 0;
  for (let i = 0; i < 5000; i++) {
    const b = randomBytes(rnd, rnd() % 80);
    if (b.length >= 20 && rnd() & 1) {
      b[0] = 0x45; b[2] = 0; b[3] = 20 + (rnd() % (b.length - 19));
      new Ipv4View(b).fillChecksum();
    }
    for (const parse of [() => parseIpv4(b), () => parseUdp(b, PSEUDO), () => parseUdp(b)]) {
      try {
        parse();
        ok++;
      } catch (e) {
        t.true(e instanceof WireError, String(e));
      }
    }
  }
  t.true(ok > 500, `only ${ok} parsed`);
});

test('ICMP protocol constant', (t) => {
  t.is(IPPROTO_ICMP, 1);
  t.is(IPPROTO_UDP, 17);
});
