// The engine cuts TSO super-frames from TAP ports into segments and completes partial
// checksums natively; dataplane/wire/tso.ts does the same in TypeScript. Both must agree byte
// for byte, and every segment must be a valid TCP/IPv4 packet carrying its slice of the payload.
import test from 'ava';
import { native } from '../dataplane/native.ts';
import { finishPartialChecksum, segmentTcp4 } from '../dataplane/wire/tso.ts';
import { parseIpv4 } from '../dataplane/wire/ipv4.ts';
import { ipv4PseudoHeaderSum, sumBytes, finishChecksum } from '../dataplane/wire/checksum.ts';
import { randomBytes, xorshift32 } from './helpers/random.ts';

/** A TCP/IPv4 super-frame with random options, flags and payload, valid headers. */
function superFrame(rnd: () => number, payloadLen: number): Buffer {
  const ipOpts = (rnd() % 3 === 0 ? rnd() % 4 : 0) * 4;
  const tcpOpts = (rnd() % 4) * 4;
  const ihl = 20 + ipOpts;
  const thl = 20 + tcpOpts;
  const f = Buffer.from(randomBytes(rnd, 14 + ihl + thl + payloadLen));
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x40 | (ihl / 4);
  f.writeUInt16BE(Math.min(0xffff, ihl + thl + payloadLen), 16); // a GSO frame's length may be anything
  f[14 + 6] = 0x40; f[14 + 7] = 0; // DF, no fragment
  f[14 + 8] = 64;
  f[14 + 9] = 6;
  f[14 + ihl + 12] = (thl / 4) << 4;
  f[14 + ihl + 13] = rnd() & 0xff; // any flags, FIN/PSH/CWR included
  return f;
}

test('TCP segmentation agrees with the TypeScript twin on 2,000 random super-frames', (t) => {
  const rnd = xorshift32(0x7150);
  let segments = 0;
  for (let i = 0; i < 2000; i++) {
    const payload = rnd() % 5 === 0 ? rnd() % 200 : rnd() % 65000;
    const mss = 500 + (rnd() % 1000);
    const f = superFrame(rnd, payload);
    const n = native.tcp4Segment(f, mss);
    const ts = segmentTcp4(f, mss);
    if (!n || !ts) return t.fail(`frame ${i} was not accepted (native ${!!n}, ts ${!!ts})`);
    if (n.length !== ts.length) return t.fail(`frame ${i}: ${n.length} native segments, ${ts.length} ts`);
    for (let s = 0; s < n.length; s++) {
      if (!n[s].equals(Buffer.from(ts[s]))) return t.fail(`frame ${i} segment ${s} differs`);
    }
    segments += n.length;
  }
  t.true(segments > 20_000, `only ${segments} segments were compared`);
});

test('segments are valid TCP/IPv4: checksums verify, sequence numbers and payload line up, flags placed', (t) => {
  const rnd = xorshift32(42);
  const f = superFrame(rnd, 10_000);
  const ihl = (f[14] & 0x0f) * 4;
  const thl = (f[14 + ihl + 12] >> 4) * 4;
  const hlen = 14 + ihl + thl;
  f[14 + ihl + 13] = 0x80 | 0x18 | 0x01; // CWR, ACK, PSH, FIN
  const seq = f.readUInt32BE(14 + ihl + 4);
  const segs = native.tcp4Segment(f, 1448)!;
  t.is(segs.length, Math.ceil(10_000 / 1448));
  let offset = 0;
  for (const [i, s] of segs.entries()) {
    const ip = parseIpv4(s.subarray(14)); // throws on a bad header checksum
    t.is(ip.id, (f.readUInt16BE(18) + i) & 0xffff);
    t.true(ip.dontFragment);
    const tcp = s.subarray(14 + ihl);
    t.is(tcp.readUInt32BE(4), (seq + offset) >>> 0);
    const pseudo = ipv4PseudoHeaderSum(ip.src, ip.dst, 6, tcp.length);
    t.is(finishChecksum(sumBytes(tcp, 0, tcp.length, pseudo)), 0, `segment ${i} TCP checksum`);
    t.true(s.subarray(hlen).equals(f.subarray(hlen + offset, hlen + offset + s.length - hlen)));
    const last = i === segs.length - 1;
    t.is(Boolean(tcp[13] & 0x01), last, 'FIN only on the last');
    t.is(Boolean(tcp[13] & 0x08), last, 'PSH only on the last');
    t.is(Boolean(tcp[13] & 0x80), i === 0, 'CWR only on the first');
    t.true(Boolean(tcp[13] & 0x10), 'ACK on all');
    offset += s.length - hlen;
  }
  t.is(offset, 10_000);
});

test('partial checksum completion agrees with the twin and verifies, UDP zero becomes 0xffff', (t) => {
  const rnd = xorshift32(9);
  for (let i = 0; i < 2000; i++) {
    const len = 14 + 20 + 8 + (rnd() % 1400);
    const f = Buffer.from(randomBytes(rnd, len));
    const start = 34;
    const off = rnd() % 2 ? 16 : 6;
    if (start + off + 2 > len) continue;
    const n = native.finishChecksum(f, start, off);
    const ts = finishPartialChecksum(f, start, off);
    if (!n || !ts || !n.equals(Buffer.from(ts))) return t.fail(`frame ${i} differs`);
    // The field held the pseudo-header sum; with it added back, the completed checksum verifies.
    const pseudo = f.readUInt16BE(start + off);
    if (finishChecksum(sumBytes(n, start, n.length, pseudo)) !== 0) return t.fail(`frame ${i} does not verify`);
  }
  // A frame whose checksum comes out as 0: as UDP it is sent as 0xffff, as TCP as 0.
  const z = Buffer.alloc(14 + 20 + 8 + 2);
  z.writeUInt16BE(0xffff, 42);
  t.is(native.finishChecksum(z, 34, 6)!.readUInt16BE(40), 0xffff);
  t.is(native.finishChecksum(z, 34, 16), null, 'offsets beyond the frame are refused');
  t.is(finishPartialChecksum(z, 34, 16), null);
});

test('non-TCP or broken super-frames, and an mss below 88, are refused by both', (t) => {
  const f = superFrame(xorshift32(1), 3000);
  const udp = Buffer.from(f); udp[23] = 17;
  const v6 = Buffer.from(f); v6[14] = 0x65;
  for (const bad of [udp, v6, f.subarray(0, 40)]) {
    t.is(native.tcp4Segment(bad, 1448), null);
    t.is(segmentTcp4(bad, 1448), null);
  }
  t.is(native.tcp4Segment(f, 0), null);
  // Below Linux's minimum MSS a super-frame is refused, not cut into thousands of segments (a fuzzer finding:
  // mss 1 stalled the TX thread); at the minimum both still cut it alike.
  for (const mss of [1, 87]) {
    t.is(native.tcp4Segment(f, mss), null, `mss ${mss}`);
    t.is(segmentTcp4(f, mss), null, `mss ${mss}`);
  }
  t.deepEqual(native.tcp4Segment(f, 88)!.map((s) => Buffer.from(s).toString('hex')), segmentTcp4(f, 88)!.map((s) => Buffer.from(s).toString('hex')));
});
