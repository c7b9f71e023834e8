// Receive-side coalescing: the engine merges consecutive TCP segments (and UDP datagrams) of one flow, on
// their way into a TAP port, into one super-frame (native/src/gro.h); dataplane/wire/gro.ts does the same in
// TypeScript.
// Both must agree byte for byte and step for step; a super-frame must be what the instance's kernel
// can take (valid IPv4 header, partial TCP or UDP checksum, GSO header) and cut back into exactly the
// segments it was made of; and every rule that keeps segments apart must keep them apart.
import test, { type ExecutionContext } from 'ava';
import { native } from '../dataplane/native.ts';
import { coalesce, GRO_CANDIDATE_RULES, type GroResult, type GroStep, type VnetHeader } from '../dataplane/wire/gro.ts';
import { finishPartialChecksum, segmentTcp4, segmentUdp4 } from '../dataplane/wire/tso.ts';
import { parseIpv4 } from '../dataplane/wire/ipv4.ts';
import { finishChecksum, foldSum, ipv4PseudoHeaderSum, sumBytes } from '../dataplane/wire/checksum.ts';
import { xorshift32 } from './helpers/random.ts';

// The addon export is declared here rather than in dataplane/native.ts (outside this change).
const groCoalesce = (native as unknown as {
  groCoalesce(frames: Buffer[]): { writes: Array<{ frame: Buffer; vnet: VnetHeader; segments: number }>; steps: GroStep[] };
}).groCoalesce;

const ACK = 0x10;
const PSH = 0x08;
const TS_OPTS = Uint8Array.from([1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78]); // NOP NOP timestamps

interface Seg {
  seq: number;
  len: number;
  flags?: number;
  id?: number;
  df?: boolean;
  tos?: number;
  ttl?: number;
  ack?: number;
  window?: number;
  options?: Uint8Array;
  srcIp?: number;
  dstIp?: number;
  sport?: number;
  dport?: number;
  srcMac?: number;
}

/** A valid TCP/IPv4 segment in an Ethernet frame; the payload is a function of the sequence number. */
function segment(o: Seg): Buffer {
  const opts = o.options ?? TS_OPTS;
  const thl = 20 + opts.length;
  const f = Buffer.alloc(14 + 20 + thl + o.len);
  f.set([0x02, 0, 0, 0, 0, 0xbb, 0x02, 0, 0, 0, 0, o.srcMac ?? 0xaa]);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f[15] = o.tos ?? 0;
  f.writeUInt16BE(20 + thl + o.len, 16);
  f.writeUInt16BE(o.id ?? 0, 18);
  f[20] = o.df === false ? 0 : 0x40;
  f[22] = o.ttl ?? 64;
  f[23] = 6;
  f.writeUInt32BE(o.srcIp ?? 0xc6126e02, 26); // 198.18.110.2
  f.writeUInt32BE(o.dstIp ?? 0xc6126e03, 30);
  f.writeUInt16BE(finishChecksum(sumBytes(f, 14, 34)), 24);
  const t = 34;
  f.writeUInt16BE(o.sport ?? 40000, t);
  f.writeUInt16BE(o.dport ?? 5201, t + 2);
  f.writeUInt32BE(o.seq >>> 0, t + 4);
  f.writeUInt32BE(o.ack ?? 0x1000, t + 8);
  f[t + 12] = (thl / 4) << 4;
  f[t + 13] = o.flags ?? ACK;
  f.writeUInt16BE(o.window ?? 502, t + 14);
  f.set(opts, t + 20);
  for (let i = 0; i < o.len; i++) f[t + thl + i] = Math.imul((o.seq + i) >>> 0, 2654435761) >>> 24;
  const pseudo = ipv4PseudoHeaderSum(f.readUInt32BE(26), f.readUInt32BE(30), 6, f.length - t);
  f.writeUInt16BE(finishChecksum(sumBytes(f, t, f.length, pseudo)), t + 16);
  return f;
}

interface Dgram { len: number; id?: number; df?: boolean; ttl?: number; sport?: number; dport?: number; noChecksum?: boolean; fill?: number }

/** A valid UDP/IPv4 datagram in an Ethernet frame (the same addresses as segment()); payload bytes from `fill`. */
function datagram(o: Dgram): Buffer {
  const f = Buffer.alloc(14 + 28 + o.len);
  f.set([0x02, 0, 0, 0, 0, 0xbb, 0x02, 0, 0, 0, 0, 0xaa]);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(28 + o.len, 16);
  f.writeUInt16BE(o.id ?? 0, 18);
  f[20] = o.df === false ? 0 : 0x40;
  f[22] = o.ttl ?? 64;
  f[23] = 17;
  f.writeUInt32BE(0xc6126e02, 26);
  f.writeUInt32BE(0xc6126e03, 30);
  f.writeUInt16BE(finishChecksum(sumBytes(f, 14, 34)), 24);
  f.writeUInt16BE(o.sport ?? 40000, 34);
  f.writeUInt16BE(o.dport ?? 5201, 36);
  f.writeUInt16BE(8 + o.len, 38);
  for (let i = 0; i < o.len; i++) f[42 + i] = Math.imul((o.fill ?? 0) + i, 2654435761) >>> 24;
  if (!o.noChecksum) {
    const c = finishChecksum(sumBytes(f, 34, f.length, ipv4PseudoHeaderSum(0xc6126e02, 0xc6126e03, 17, 8 + o.len)));
    f.writeUInt16BE(c === 0 ? 0xffff : c, 40);
  }
  return f;
}

/** `n` datagrams of one flow, `size` bytes each (the last `last`), ids counting up. */
function udpRun(n: number, size: number, o: Partial<Dgram> & { last?: number; id0?: number } = {}): Buffer[] {
  return Array.from({ length: n }, (_, i) => datagram({ ...o, len: i === n - 1 && o.last !== undefined ? o.last : size, id: ((o.id0 ?? 300) + i) & 0xffff, fill: i * 7 }));
}

/** `n` back-to-back segments of one flow, `mss` bytes each (the last `last` bytes), ids counting up. */
function run(n: number, mss: number, o: Partial<Seg> & { last?: number; seq0?: number; id0?: number } = {}): Buffer[] {
  const out: Buffer[] = [];
  let seq = o.seq0 ?? 1_000_000;
  for (let i = 0; i < n; i++) {
    const len = i === n - 1 && o.last !== undefined ? o.last : mss;
    out.push(segment({ ...o, seq, len, id: ((o.id0 ?? 100) + i) & 0xffff }));
    seq += len;
  }
  return out;
}

/** Runs both implementations and requires identical writes and steps; returns the native result. */
function both(t: ExecutionContext, frames: Buffer[], what: string): GroResult {
  const n = groCoalesce(frames);
  const ts = coalesce(frames);
  t.deepEqual(n.steps, ts.steps, `${what}: steps`);
  t.is(n.writes.length, ts.writes.length, `${what}: number of writes`);
  for (let i = 0; i < Math.min(n.writes.length, ts.writes.length); i++) {
    t.deepEqual(n.writes[i].vnet, ts.writes[i].vnet, `${what}: write ${i} vnet header`);
    t.is(n.writes[i].segments, ts.writes[i].segments, `${what}: write ${i} segments`);
    t.true(n.writes[i].frame.equals(Buffer.from(ts.writes[i].frame)), `${what}: write ${i} bytes differ`);
  }
  return n;
}

/** Groups the inputs as the writes hold them: a group starts at every step but 'merged'. */
function groups(frames: Buffer[], steps: GroStep[]): Buffer[][] {
  const out: Buffer[][] = [];
  frames.forEach((f, i) => (steps[i] === 'merged' ? out[out.length - 1].push(f) : out.push([f])));
  return out;
}

/** Each write is its group: a plain write is the frame itself; a super-frame cuts back into the group. */
function assertRoundTrip(t: ExecutionContext, frames: Buffer[], r: GroResult, what: string): void {
  const g = groups(frames, r.steps);
  t.is(r.writes.length, g.length, `${what}: writes vs groups`);
  for (const [k, w] of r.writes.entries()) {
    const frame = Buffer.from(w.frame);
    if (w.segments === 1) {
      t.deepEqual(w.vnet, { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });
      t.true(frame.equals(g[k][0]), `${what}: write ${k} is not the frame as it came`);
      continue;
    }
    const back = (w.vnet.gsoType === 5 ? segmentUdp4(frame, w.vnet.gsoSize) : segmentTcp4(frame, w.vnet.gsoSize))!;
    t.is(back.length, g[k].length, `${what}: write ${k} resegments into ${back.length}, made of ${g[k].length}`);
    back.forEach((s, i) => t.true(Buffer.from(s).equals(g[k][i]), `${what}: write ${k} segment ${i} differs`));
  }
}

test('a run of one flow becomes one super-frame the kernel can take and cut back into the same segments', (t) => {
  const frames = run(10, 1366, { last: 700 });
  frames[9][34 + 13] = ACK | PSH; // PSH on the last segment is allowed
  frames[9].writeUInt16BE(0, 34 + 16);
  frames[9].writeUInt16BE(finishChecksum(sumBytes(frames[9], 34, frames[9].length, ipv4PseudoHeaderSum(0xc6126e02, 0xc6126e03, 6, frames[9].length - 34))), 34 + 16);
  const r = both(t, frames, 'run');
  t.deepEqual(r.steps, ['first', ...Array(9).fill('merged')]);
  t.is(r.writes.length, 1);
  const w = r.writes[0];
  t.is(w.segments, 10);
  t.deepEqual(w.vnet, { flags: 1, gsoType: 1, hdrLen: 14 + 20 + 32, gsoSize: 1366, csumStart: 34, csumOffset: 16 });
  const f = Buffer.from(w.frame);
  t.is(f.length, 14 + 20 + 32 + 9 * 1366 + 700);
  const ip = parseIpv4(f.subarray(14)); // throws on a bad header checksum or length
  t.is(f.readUInt16BE(16), f.length - 14);
  t.is(ip.id, 100, 'the first segment\'s id');
  t.is(f.readUInt32BE(34 + 4), 1_000_000, 'the first segment\'s seq');
  t.is(f[34 + 13], ACK | PSH, 'PSH travels with the last byte');
  // The TCP checksum field holds the pseudo-header sum; completed, the checksum verifies.
  const l4 = f.length - 34;
  t.is(f.readUInt16BE(34 + 16), foldSum(ipv4PseudoHeaderSum(0xc6126e02, 0xc6126e03, 6, l4)));
  const done = finishPartialChecksum(f, w.vnet.csumStart, w.vnet.csumOffset)!;
  t.is(finishChecksum(sumBytes(done, 34, done.length, ipv4PseudoHeaderSum(0xc6126e02, 0xc6126e03, 6, l4))), 0);
  assertRoundTrip(t, frames, r, 'run');
});

test('a run of UDP datagrams of one flow becomes one UDP_L4 super-frame the kernel cuts back into the same datagrams', (t) => {
  const frames = udpRun(20, 1400, { last: 333 });
  const r = both(t, frames, 'udp run');
  t.deepEqual(r.steps, ['first', ...Array(19).fill('merged')]);
  t.is(r.writes.length, 1);
  const w = r.writes[0];
  t.is(w.segments, 20);
  t.deepEqual(w.vnet, { flags: 1, gsoType: 5, hdrLen: 14 + 28, gsoSize: 1400, csumStart: 34, csumOffset: 6 });
  const f = Buffer.from(w.frame);
  t.is(f.length, 14 + 28 + 19 * 1400 + 333);
  parseIpv4(f.subarray(14));
  t.is(f.readUInt16BE(38), f.length - 34, 'the UDP length covers every payload');
  t.is(f.readUInt16BE(18), 300, 'the first datagram\'s id');
  const l4 = f.length - 34;
  t.is(f.readUInt16BE(40), foldSum(ipv4PseudoHeaderSum(0xc6126e02, 0xc6126e03, 17, l4)));
  const done = finishPartialChecksum(f, w.vnet.csumStart, w.vnet.csumOffset)!;
  t.is(finishChecksum(sumBytes(done, 34, done.length, ipv4PseudoHeaderSum(0xc6126e02, 0xc6126e03, 17, l4))), 0);
  assertRoundTrip(t, frames, r, 'udp run');
  // 64-byte datagrams (iperf3 -l 64): at most 64 in one super-frame.
  const small = both(t, udpRun(130, 64), 'udp 64 B');
  t.deepEqual(small.writes.map((x) => x.segments), [64, 64, 2]);
  assertRoundTrip(t, udpRun(130, 64), small, 'udp 64 B');
});

test('a super-frame stops at 65535 IP bytes and the next one starts there', (t) => {
  const frames = run(50, 1448);
  const r = both(t, frames, 'long run');
  t.is(r.steps.indexOf('too_big'), 45, '45 segments of 1448 + 52 header bytes fit in 65535, 46 do not');
  t.deepEqual(r.writes.map((w) => w.segments), [45, 5]);
  t.true(r.writes[0].frame.length - 14 <= 65535);
  assertRoundTrip(t, frames, r, 'long run');
});

test('without DF the ids must count up; with DF they need not', (t) => {
  const noDf = run(4, 1000, { df: false });
  t.deepEqual(both(t, noDf, 'no DF, ids counting').steps, ['first', 'merged', 'merged', 'merged']);
  const skipped = run(4, 1000, { df: false });
  skipped[2] = segment({ seq: 1_002_000, len: 1000, df: false, id: 500 });
  skipped[3] = segment({ seq: 1_003_000, len: 1000, df: false, id: 501 });
  t.deepEqual(both(t, skipped, 'no DF, id jumps').steps, ['first', 'merged', 'ip_fields', 'merged']);
  const dfRandom = [0, 1, 2].map((i) => segment({ seq: 1_000_000 + i * 1000, len: 1000, id: [7, 60000, 3][i] }));
  const r = both(t, dfRandom, 'DF, ids at random');
  t.deepEqual(r.steps, ['first', 'merged', 'merged']);
  t.is(Buffer.from(r.writes[0].frame).readUInt16BE(18), 7);
});

// Every rule that keeps a segment out: [name, the frames, the step expected for the last frame].
const base = () => run(2, 1000);
const second = (o: Partial<Seg>) => [base()[0], segment({ seq: 1_001_000, len: 1000, id: 101, ...o })];
function mutate(f: Buffer, fn: (f: Buffer) => void): Buffer { const c = Buffer.from(f); fn(c); return c; }
const RULES: Array<[string, Buffer[], GroStep]> = [
  // A frame that cannot be in any super-frame (and flushes the one before it).
  ['ARP', [base()[0], mutate(base()[1], (f) => f.writeUInt16BE(0x0806, 12))], 'not_ipv4'],
  ['IPv6 version', [base()[0], mutate(base()[1], (f) => (f[14] = 0x65))], 'not_ipv4'],
  ['IP options', [base()[0], mutate(base()[1], (f) => (f[14] = 0x46))], 'ip_options'],
  ['MF', [base()[0], mutate(base()[1], (f) => { f[20] |= 0x20; fixIp(f); })], 'fragment'],
  ['fragment offset', [base()[0], mutate(base()[1], (f) => { f[21] = 1; fixIp(f); })], 'fragment'],
  ['ICMP', [base()[0], mutate(base()[1], (f) => { f[23] = 1; fixIp(f); })], 'not_tcp_udp'],
  ['Ethernet padding', [base()[0], Buffer.concat([base()[1], Buffer.alloc(4)])], 'bad_length'],
  ['IP length short of the frame', [base()[0], mutate(base()[1], (f) => { f.writeUInt16BE(f.length - 14 - 1, 16); fixIp(f); })], 'bad_length'],
  ['TCP header past the end', [base()[0], mutate(segment({ seq: 1_001_000, len: 0, id: 101, options: new Uint8Array(0) }), (f) => (f[34 + 12] = 0xf0))], 'bad_length'],
  ['SYN', [base()[0], second({ flags: ACK | 0x02 })[1]], 'tcp_flags'],
  ['FIN', [base()[0], second({ flags: ACK | 0x01 })[1]], 'tcp_flags'],
  ['RST', [base()[0], second({ flags: ACK | 0x04 })[1]], 'tcp_flags'],
  ['URG', [base()[0], second({ flags: ACK | 0x20 })[1]], 'tcp_flags'],
  ['ECE', [base()[0], second({ flags: ACK | 0x40 })[1]], 'tcp_flags'],
  ['CWR', [base()[0], second({ flags: ACK | 0x80 })[1]], 'tcp_flags'],
  ['no ACK', [base()[0], second({ flags: PSH })[1]], 'tcp_flags'],
  ['pure ACK', [base()[0], second({ len: 0 })[1]], 'no_payload'],
  ['corrupt payload', [base()[0], mutate(base()[1], (f) => (f[f.length - 1] ^= 1))], 'bad_checksum'],
  ['corrupt IP header checksum', [base()[0], mutate(base()[1], (f) => (f[24] ^= 1))], 'bad_checksum'],
  // A segment that cannot follow the super-frame so far (and starts the next one).
  ['other destination port', second({ dport: 5202 }), 'flow'],
  ['other source address', second({ srcIp: 0xc6126e09 }), 'flow'],
  ['other source MAC', second({ srcMac: 0xab }), 'flow'],
  ['other TOS', second({ tos: 0x02 }), 'ip_fields'],
  ['other TTL', second({ ttl: 63 }), 'ip_fields'],
  ['DF cleared', second({ df: false }), 'ip_fields'],
  ['other ack', second({ ack: 0x2000 }), 'tcp_header'],
  ['other window', second({ window: 503 }), 'tcp_header'],
  ['other timestamp', second({ options: Uint8Array.from([1, 1, 8, 10, 0, 0, 0x12, 0x35, 0, 0, 0x56, 0x78]) }), 'tcp_header'],
  ['other header length', second({ options: new Uint8Array(0) }), 'tcp_header'],
  ['a gap in sequence', second({ seq: 1_001_001 }), 'seq'],
  ['a retransmission', second({ seq: 1_000_000 }), 'seq'],
  ['after PSH', [segment({ seq: 1_000_000, len: 1000, id: 100, flags: ACK | PSH }), segment({ seq: 1_001_000, len: 1000, id: 101 })], 'psh_ended'],
  ['after a short segment', [...run(2, 1000, { last: 999 }), segment({ seq: 1_001_999, len: 1000, id: 102 })], 'short_ended'],
  ['larger than the first', second({ len: 1001 }), 'larger'],
  ['UDP after TCP of the same addresses and ports', [base()[0], datagram({ len: 1000 })], 'flow'],
  // UDP: the same rules, and its own.
  ['UDP without a checksum', [...udpRun(1, 500), datagram({ len: 500, id: 301, noChecksum: true })], 'no_checksum'],
  ['UDP corrupt payload', [...udpRun(1, 500), mutate(datagram({ len: 500, id: 301 }), (f) => (f[f.length - 1] ^= 1))], 'bad_checksum'],
  ['UDP length short of the IP payload', [...udpRun(1, 500), mutate(datagram({ len: 500, id: 301 }), (f) => f.writeUInt16BE(507, 38))], 'bad_length'],
  ['UDP without payload', [...udpRun(1, 500), datagram({ len: 0, id: 301 })], 'no_payload'],
  ['UDP other destination port', [...udpRun(1, 500), datagram({ len: 500, id: 301, dport: 5202 })], 'flow'],
  ['TCP after UDP', [...udpRun(1, 500), segment({ seq: 1, len: 500, id: 301, sport: 40000, dport: 5201 })], 'flow'],
  ['UDP other TTL', [...udpRun(1, 500), datagram({ len: 500, id: 301, ttl: 1 })], 'ip_fields'],
  ['UDP without DF, an id jump', [...udpRun(1, 500, { df: false }), datagram({ len: 500, id: 9, df: false })], 'ip_fields'],
  ['UDP larger than the first', [...udpRun(2, 500), datagram({ len: 501, id: 302 })], 'larger'],
  ['UDP after a shorter one', [...udpRun(2, 500, { last: 100 }), datagram({ len: 500, id: 302 })], 'short_ended'],
  ['UDP 65th datagram of 64 bytes', udpRun(65, 64), 'too_many'],
  ['UDP past 65535 IP bytes', udpRun(47, 1400), 'too_big'],
];

function fixIp(f: Buffer): void {
  f.writeUInt16BE(0, 24);
  f.writeUInt16BE(finishChecksum(sumBytes(f, 14, 34)), 24);
}

for (const [name, frames, step] of RULES) {
  test(`must not merge: ${name} (${step})`, (t) => {
    const r = both(t, frames, name);
    t.is(r.steps[r.steps.length - 1], step);
    // The offender changes nothing before it and ends up in a write of its own.
    t.deepEqual(r.steps.slice(0, -1), coalesce(frames.slice(0, -1)).steps);
    const last = r.writes[r.writes.length - 1];
    t.is(last.segments, 1);
    t.true(Buffer.from(last.frame).equals(frames[frames.length - 1]));
    assertRoundTrip(t, frames, r, name);
    // The same segment is fine where the rule does not apply: alone, it starts a super-frame or passes.
    const alone = both(t, [frames[frames.length - 1]], `${name} alone`);
    t.is(alone.steps[0], GRO_CANDIDATE_RULES.includes(step as never) ? step : 'first');
  });
}

test('agrees with the TypeScript twin on 1,500 random batches, and every write cuts back into its frames', (t) => {
  const rnd = xorshift32(0x6e0);
  let merged = 0;
  let passed = 0;
  let udpSuper = 0;
  for (let b = 0; b < 1500; b++) {
    // Up to three flows interleaved in runs, with occasional rule-breaking segments.
    const flows = [0, 1, 2].map((k) => ({ seq: rnd(), id: rnd() & 0xffff, dport: 5201 + k, mss: 500 + (rnd() % 1000), df: rnd() % 4 !== 0, udp: rnd() % 3 === 0 }));
    const frames: Buffer[] = [];
    const n = 1 + (rnd() % 60);
    while (frames.length < n) {
      const fl = flows[rnd() % (rnd() % 5 === 0 ? 3 : 1)];
      const len = rnd() % 8 === 0 ? rnd() % (fl.mss + 50) : fl.mss;
      const o: Seg = { seq: fl.seq, len, id: fl.id, dport: fl.dport, df: fl.df };
      const r = rnd() % 40;
      if (r === 0) o.flags = ACK | PSH;
      else if (r === 1) o.flags = ACK | 0x01;
      else if (r === 2) o.seq = (o.seq + 1) >>> 0;
      else if (r === 3) o.ack = 7;
      else if (r === 4) o.ttl = 1;
      let f = fl.udp ? datagram({ len, id: fl.id, dport: fl.dport, df: fl.df, ttl: r === 4 ? 1 : undefined, noChecksum: r === 1, fill: fl.seq }) : segment(o);
      if (r === 5) f = mutate(f, (g) => (g[g.length - 1] ^= 0x80));
      frames.push(f);
      fl.seq = (fl.seq + len) >>> 0;
      fl.id = (fl.id + 1) & 0xffff;
    }
    const res = both(t, frames, `batch ${b}`);
    assertRoundTrip(t, frames, res, `batch ${b}`);
    merged += res.steps.filter((s) => s === 'merged').length;
    udpSuper += res.writes.filter((w) => w.vnet.gsoType === 5).length;
    passed += res.steps.filter((s) => GRO_CANDIDATE_RULES.includes(s as never)).length;
  }
  t.true(merged > 10_000, `only ${merged} merges`);
  t.true(passed > 500, `only ${passed} frames passed by`);
  t.true(udpSuper > 200, `only ${udpSuper} UDP super-frames`);
});
