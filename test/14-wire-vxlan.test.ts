import test from 'ava';
import type { ExecutionContext } from 'ava';
import {
  WireError, parseMac, parseIpv4Address,
  parseEthernet, emitEthernet, ETHERTYPE_IPV4,
  parseIpv4, emitIpv4, IPPROTO_UDP,
  parseUdp, emitUdp, parseIcmpv4,
  VxlanView, parseVxlan, emitVxlan, vxlanBufferLen, vxlanEncap, vxlanDecap,
  VXLAN_UDP_PORT, VXLAN_HEADER_LEN, VXLAN_IPV4_OVERHEAD,
  flowHash, fnv1a32,
} from '../dataplane/wire/index.ts';
import type { VxlanDecapResult, VxlanRepr } from '../dataplane/wire/index.ts';
import { randomBytes, xorshift32 } from './helpers/random.ts';
import { hex, throwsWire } from './helpers/wire-assert.ts';

// Inner frame: ping 198.18.0.2 -> 198.18.0.1 (id 0x1234, seq 1, "abcdefghijklmnop").
const INNER_FRAME = hex(`
  0200c6120001 0200c6120002 0800
  4500 002c 1c46 4000 4001 9263 c6120002 c6120001
  08 00 a27f 1234 0001 6162636465666768696a6b6c6d6e6f70`);

// The same frame carried from VTEP 198.18.0.10 to 198.18.0.11 in VNI 42, UDP 50010 -> 4789 with a
// zero UDP checksum (RFC 7348 §5); tshark decodes it as VXLAN VNI 42 with all checksums correct.
const OUTER_FRAME = hex(`
  02000000000b 02000000000a 0800
  4500 005e 0001 4000 4011 ae54 c612000a c612000b
  c35a 12b5 004a 0000
  08 000000 00002a 00
  0200c6120001 0200c6120002 0800
  4500 002c 1c46 4000 4001 9263 c6120002 c6120001
  08 00 a27f 1234 0001 6162636465666768696a6b6c6d6e6f70`);

test('deconstruct a VXLAN datagram down to the inner ping', (t) => {
  t.is(OUTER_FRAME.length, 108);
  t.is(VXLAN_IPV4_OVERHEAD, 50);
  t.is(OUTER_FRAME.length - INNER_FRAME.length, VXLAN_IPV4_OVERHEAD);
  const outerIp = parseIpv4(parseEthernet(OUTER_FRAME).payload);
  t.is(outerIp.src, parseIpv4Address('198.18.0.10'));
  t.is(outerIp.protocol, IPPROTO_UDP);
  const udp = parseUdp(outerIp.payload, outerIp);
  t.is(udp.checksum, 'zero');
  t.is(udp.dstPort, VXLAN_UDP_PORT);
  const view = new VxlanView(udp.payload);
  t.is(view.vni, 42);
  t.deepEqual(view.payload, INNER_FRAME);
  t.deepEqual(parseVxlan(udp.payload), { vni: 42, payload: INNER_FRAME });
  const decap = vxlanDecap(udp.payload);
  t.deepEqual(decap, { ok: true, vni: 42, frame: INNER_FRAME });
  const inner = parseEthernet(INNER_FRAME);
  t.deepEqual(inner.dst, parseMac('02:00:c6:12:00:01'));
  const icmp = parseIcmpv4(parseIpv4(inner.payload).payload);
  t.is(icmp.type, 'echo-request');
});

test('construct the VXLAN datagram from the inner frame', (t) => {
  const vx = vxlanEncap(42, INNER_FRAME);
  t.deepEqual(vx.subarray(0, 8), hex('08000000 00002a00'));
  const frame = new Uint8Array(108);
  const udpLen = emitUdp({ srcPort: 50010, dstPort: VXLAN_UDP_PORT, payload: vx }, frame, 34);
  const ipLen = emitIpv4({
    dscp: 0, ecn: 0, id: 1, dontFragment: true, moreFragments: false, fragmentOffset: 0, ttl: 64,
    protocol: IPPROTO_UDP, src: parseIpv4Address('198.18.0.10'), dst: parseIpv4Address('198.18.0.11'),
    options: new Uint8Array(0), payload: frame.subarray(34, 34 + udpLen),
  }, frame, 14);
  emitEthernet({
    dst: parseMac('02:00:00:00:00:0b'), src: parseMac('02:00:00:00:00:0a'), ethertype: ETHERTYPE_IPV4,
    payload: frame.subarray(14, 14 + ipLen),
  }, frame);
  t.deepEqual(frame, OUTER_FRAME);

  const viaRepr = new Uint8Array(vxlanBufferLen({ vni: 42, payload: INNER_FRAME }));
  t.is(emitVxlan({ vni: 42, payload: INNER_FRAME }, viaRepr), 66);
  t.deepEqual(viaRepr, vx);
});

test('vxlanEncap layout and VNI range', (t) => {
  t.deepEqual(vxlanEncap(0xabcdef, Uint8Array.of(1, 2, 3)), hex('08000000 abcdef00 010203'));
  t.deepEqual(vxlanEncap(0, new Uint8Array(0)), hex('08000000 00000000'));
  t.deepEqual(vxlanEncap(0xffffff, Uint8Array.of(9)), hex('08000000 ffffff00 09'));
  for (const vni of [-1, 0x1000000, 1.5, Number.NaN, Infinity]) {
    throwsWire(t, () => vxlanEncap(vni, INNER_FRAME), 'vxlan', 'vni', 4);
  }
  const frame = INNER_FRAME.slice();
  const out = vxlanEncap(7, frame);
  frame[0] = 0xff;
  t.is(out[8], 0x02, 'encap copies the frame');
});

function withInner(inner: Uint8Array, header = '08000000 00002a00'): Uint8Array {
  const d = new Uint8Array(8 + inner.length);
  d.set(hex(header));
  d.set(inner, 8);
  return d;
}

function ipv4Inner(len: number, verIhl: number, totalLength: number): Uint8Array {
  const f = new Uint8Array(len);
  f[12] = 0x08; f[13] = 0x00;
  if (len > 14) f[14] = verIhl;
  if (len > 17) { f[16] = totalLength >> 8; f[17] = totalLength & 0xff; }
  return f;
}

test('vxlanDecap rules in order', (t) => {
  const malformed = (detail: string): VxlanDecapResult => ({ ok: false, reason: 'malformed', detail } as VxlanDecapResult);
  t.deepEqual(vxlanDecap(new Uint8Array(0)), malformed('short'));
  t.deepEqual(vxlanDecap(hex('08000000 000000')), malformed('short'));
  t.deepEqual(vxlanDecap(hex('00000000 00000000')), malformed('flags'));
  t.deepEqual(vxlanDecap(hex('0c000000 00000000')), malformed('flags'));
  t.deepEqual(vxlanDecap(hex('08010000 00000000')), malformed('flags'));
  t.deepEqual(vxlanDecap(hex('08000100 00000000')), malformed('flags'));
  t.deepEqual(vxlanDecap(hex('08000001 00000000')), malformed('flags'));
  t.deepEqual(vxlanDecap(hex('08000000 00000001')), malformed('flags'));
  t.deepEqual(vxlanDecap(withInner(INNER_FRAME, '88000000 00002a00')), malformed('flags'));
  t.deepEqual(vxlanDecap(hex('08000000 00000000')), malformed('inner short'));
  t.deepEqual(vxlanDecap(withInner(INNER_FRAME.subarray(0, 13))), malformed('inner short'));
  t.deepEqual(vxlanDecap(withInner(INNER_FRAME.subarray(0, 33))), malformed('inner ipv4'));
  t.deepEqual(vxlanDecap(withInner(INNER_FRAME.subarray(0, 57))), malformed('inner ipv4'), 'truncated by one byte');
  t.deepEqual(vxlanDecap(withInner(ipv4Inner(34, 0x65, 20))), malformed('inner ipv4'), 'version 6');
  t.deepEqual(vxlanDecap(withInner(ipv4Inner(34, 0x44, 20))), malformed('inner ipv4'), 'IHL 4');
  t.deepEqual(vxlanDecap(withInner(ipv4Inner(40, 0x46, 20))), malformed('inner ipv4'), 'IHL*4 > total length');
  t.deepEqual(vxlanDecap(withInner(ipv4Inner(34, 0x45, 21))), malformed('inner ipv4'), '14 + total length > inner');
  t.deepEqual(vxlanDecap(withInner(ipv4Inner(34, 0x45, 20))), { ok: true, vni: 42, frame: ipv4Inner(34, 0x45, 20) });
  t.deepEqual(vxlanDecap(withInner(ipv4Inner(40, 0x46, 24))), { ok: true, vni: 42, frame: ipv4Inner(40, 0x46, 24) });

  const arp = hex('ffffffffffff 0200c6120002 0806 0001080006040001 0200c6120002 c6120002 000000000000 c6120001');
  t.deepEqual(vxlanDecap(withInner(arp.subarray(0, 41))), malformed('inner arp'));
  t.like(vxlanDecap(withInner(arp)), { ok: true, vni: 42 });
  const other = new Uint8Array(14);
  other[12] = 0x86; other[13] = 0xdd;
  t.like(vxlanDecap(withInner(other)), { ok: true, vni: 42 }, 'other ethertypes only need 14 bytes');
  t.like(vxlanDecap(withInner(other, '08000000 ffffff00')), { ok: true, vni: 0xffffff });
});

test('vxlanDecap keeps padding and shares the buffer', (t) => {
  const padded = new Uint8Array(8 + 60);
  padded.set(withInner(INNER_FRAME));
  const r = vxlanDecap(padded);
  t.true(r.ok);
  if (!r.ok) return;
  t.is(r.frame.length, 60);
  t.is(r.frame.buffer, padded.buffer);
  t.is(r.frame.byteOffset, padded.byteOffset + VXLAN_HEADER_LEN);
  t.deepEqual(r.frame.subarray(0, 58), INNER_FRAME);
});

test('VxlanView and emit errors name field and offset', (t) => {
  throwsWire(t, () => new VxlanView(new Uint8Array(7)), 'vxlan', 'header', 0);
  throwsWire(t, () => parseVxlan(hex('0c000000 00000000')), 'vxlan', 'flags', 0);
  throwsWire(t, () => parseVxlan(hex('08000100 00000000')), 'vxlan', 'reserved', 2);
  throwsWire(t, () => parseVxlan(hex('08000002 00000000')), 'vxlan', 'reserved', 3);
  throwsWire(t, () => parseVxlan(hex('08000000 000000ff')), 'vxlan', 'reserved', 7);
  const repr: VxlanRepr = { vni: 1, payload: new Uint8Array(14) };
  throwsWire(t, () => emitVxlan(repr, new Uint8Array(21)), 'vxlan', 'buffer', 0);
  throwsWire(t, () => emitVxlan({ ...repr, vni: 1 << 24 }, new Uint8Array(40), 3), 'vxlan', 'vni', 7);
});

test('FNV-1a 32-bit test vectors', (t) => {
  const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);
  t.is(fnv1a32(new Uint8Array(0)), 0x811c9dc5);
  t.is(fnv1a32(ascii('a')), 0xe40c292c);
  t.is(fnv1a32(ascii('foobar')), 0xbf9cf968);
  t.is(fnv1a32(ascii('bar'), 0, 3, fnv1a32(ascii('foo'))), 0xbf9cf968, 'continues across ranges');
});

// Expected values computed by an independent Python implementation of the spec.
test('flowHash on literal frames', (t) => {
  const udp = hex(`
    0200c6120001 0200c6120002 0800
    4500 0028 beef 0000 4011 2fae c6120002 c6120001
    9c40 0007 0014 5c11 68656c6c6f206170706e6574`);
  t.is(flowHash(INNER_FRAME), 0x4905dd77, 'ICMP: addresses and protocol');
  t.is(flowHash(INNER_FRAME), fnv1a32(hex('c6120002 c6120001 01')));
  t.is(flowHash(udp), 0x6e75140a, 'UDP: plus ports');
  t.is(flowHash(udp), fnv1a32(hex('c6120002 c6120001 11 9c40 0007')));
  const frag = udp.slice();
  frag[20] = 0x00; frag[21] = 0xb9;
  t.is(flowHash(frag), 0x5905f6a7, 'non-first fragment: no ports');
  const mf = udp.slice();
  mf[20] = 0x20;
  t.is(flowHash(mf), 0x6e75140a, 'first fragment (MF, offset 0) keeps ports');
  const arp = hex('ffffffffffff 0200c6120002 0806 0001080006040001 0200c6120002 c6120002 000000000000 c6120001');
  t.is(flowHash(arp), 0x50109cb5, 'non-IPv4: Ethernet header');
  t.is(flowHash(Uint8Array.of(1, 2, 3, 4, 5)), 0xbfe534e8, 'short: whole frame');
  t.is(flowHash(udp.subarray(0, 37)), fnv1a32(hex('c6120002 c6120001 11')), 'ports cut off');
  const badIhl = udp.slice();
  badIhl[14] = 0x4f;
  t.is(flowHash(badIhl), fnv1a32(udp, 0, 14), 'IHL beyond frame: Ethernet header');
});

/** The spec, written the obvious way: build the key, then hash it. */
function referenceFlowHash(f: Uint8Array): number {
  let key: number[];
  const n = f.length;
  const ihl = n > 14 ? f[14] & 15 : 0;
  if (n >= 34 && f[12] === 8 && f[13] === 0 && f[14] >> 4 === 4 && ihl >= 5 && 14 + ihl * 4 <= n) {
    key = [...f.subarray(26, 34), f[23]];
    const fragField = ((f[20] << 8) | f[21]) & 0x1fff;
    if ((f[23] === 6 || f[23] === 17) && fragField === 0 && 14 + ihl * 4 + 4 <= n) {
      key.push(...f.subarray(14 + ihl * 4, 14 + ihl * 4 + 4));
    }
  } else {
    key = [...f.subarray(0, Math.min(14, n))];
  }
  let h = 0x811c9dc5;
  for (const b of key) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

test('property: flowHash matches the spec, encap/decap round trip, decap never throws (seeded)', (t) => {
  const rnd = xorshift32(0x5eed0014);
  for (let i = 0; i < 3000; i++) {
    const f = randomBytes(rnd, rnd() % 80);
    if (f.length > 23 && rnd() % 4 !== 0) {
      f[12] = 0x08; f[13] = 0x00;
      f[14] = 0x40 | (5 + (rnd() % 4));
      f[23] = [1, 6, 17][rnd() % 3];
      if (rnd() & 1) { f[20] &= 0xe0; f[21] = 0; }
    }
    t.is(flowHash(f), referenceFlowHash(f));

    const vni = rnd() & 0xffffff;
    const datagram = vxlanEncap(vni, f);
    t.deepEqual(parseVxlan(datagram), { vni, payload: f });
    const r = vxlanDecap(datagram);
    if (r.ok) {
      t.is(r.vni, vni);
      t.deepEqual(r.frame, f);
    } else {
      t.true(r.detail.startsWith('inner'), r.detail);
    }

    const noise = randomBytes(rnd, rnd() % 64);
    if (noise.length >= 8 && rnd() & 1) noise.set(hex('08000000'), 0);
    const d = vxlanDecap(noise);
    t.true(d.ok || ['short', 'flags', 'inner short', 'inner ipv4', 'inner arp'].includes(d.detail));
  }
});
