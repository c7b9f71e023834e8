import test from 'ava';
import { unpackCaptureRecords, CaptureRecordsError, PACKED_RECORD_HEADER } from '../dataplane/capture-records.ts';
import { PcapWriter, PcapngWriter, packedToPcapRecords, packedToPcapngBlocks, type PackedRecordScope } from '../dataplane/pcap/index.ts';

/** One record in the engine's packed layout (native/src/capture.h), padded to 8. */
function packed(r: { ts: bigint; origLen: number; vni: number; port: number; point: number; dir: number; data: Buffer }): Buffer {
  const b = Buffer.alloc(PACKED_RECORD_HEADER + ((r.data.length + 7) & ~7));
  b.writeUInt32LE(Number(r.ts / 1_000_000_000n), 0);
  b.writeUInt32LE(Number(r.ts % 1_000_000_000n), 4);
  b.writeUInt32LE(r.origLen, 8);
  b.writeUInt32LE(r.vni, 12);
  b.writeInt32LE(r.port, 16);
  b.writeUInt16LE(r.data.length, 20);
  b[22] = r.point;
  b[23] = r.dir;
  r.data.copy(b, PACKED_RECORD_HEADER);
  return b;
}

test('packed records unpack with their fields, data cut to the captured length, padding skipped', (t) => {
  const a = packed({ ts: 1_700_000_000_123_456_789n, origLen: 1514, vni: 42, port: 3, point: 1, dir: 0, data: Buffer.from('abcde') });
  const b = packed({ ts: 1_700_000_000_200_000_000n, origLen: 90, vni: 0, port: -1, point: 8, dir: 1, data: Buffer.alloc(16, 7) });
  const rs = unpackCaptureRecords(Buffer.concat([a, b]));
  t.is(rs.length, 2);
  t.deepEqual({ ...rs[0], data: rs[0].data.toString() }, { tsNs: 1_700_000_000_123_456_789n, point: 'port', dir: 'in', port: 3, vni: 42, origLen: 1514, data: 'abcde' });
  t.deepEqual({ ...rs[1], data: [...rs[1].data] }, { tsNs: 1_700_000_000_200_000_000n, point: 'wire', dir: 'out', port: null, vni: null, origLen: 90, data: Array(16).fill(7) });
  t.deepEqual(unpackCaptureRecords(Buffer.alloc(0)), []);
});

test('a truncated or corrupt batch fails naming the byte offset', (t) => {
  const a = packed({ ts: 1n, origLen: 60, vni: 1, port: 0, point: 2, dir: 0, data: Buffer.alloc(60) });
  const cases: Array<[Buffer, number, RegExp]> = [
    [a.subarray(0, 10), 0, /header needs 24 bytes, 10 left/],
    [Buffer.concat([a, a.subarray(0, 30)]), a.length + 20, /runs past the end/],
    [(() => { const c = Buffer.from(a); c[22] = 3; return c; })(), 22, /unknown capture point 3/],
  ];
  for (const [buf, offset, message] of cases) {
    const e = t.throws(() => unpackCaptureRecords(buf), { instanceOf: CaptureRecordsError, message });
    t.is(e!.offset, offset);
    t.regex(e!.message, new RegExp(`at byte ${offset}:`));
  }
});

test('packed records convert to pcap and pcap-ns records byte for byte as PcapWriter writes them, cut to the snap length', (t) => {
  // Random records: timestamps across the epoch range pcap holds, lengths around the snap length.
  let seed = 7;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  const records = Array.from({ length: 200 }, (_, i) => {
    const data = Buffer.alloc(rnd(300), i & 0xff);
    return { ts: BigInt(rnd(0x7fffffff)) * 1_000_000_000n + BigInt(rnd(1_000_000_000)), origLen: data.length + rnd(1500), vni: rnd(100), port: rnd(5) - 1, point: [1, 2, 4, 8][rnd(4)], dir: rnd(2), data };
  });
  const packedBatch = Buffer.concat(records.map(packed));
  for (const nanosecond of [false, true]) {
    for (const snaplen of [128, 65535]) {
      const w = new PcapWriter({ nanosecond, snaplen });
      const expected = Buffer.concat(unpackCaptureRecords(packedBatch).map((r) => w.record({ tsNs: r.tsNs, point: r.point, data: r.data, origLen: r.origLen })));
      const got = packedToPcapRecords(packedBatch, { nanosecond, snaplen });
      t.is(got.count, records.length);
      t.true(got.bytes.equals(expected), `nanosecond ${nanosecond}, snaplen ${snaplen}`);
    }
  }
  t.is(packedToPcapRecords(packedBatch, { nanosecond: false, snaplen: 128, max: 5 }).count, 5);
  t.throws(() => packedToPcapRecords(packedBatch.subarray(0, 30), { nanosecond: false, snaplen: 128 }), { instanceOf: CaptureRecordsError, message: /at byte 20: record of \d+ bytes runs past the end/ });
});

test('packed records convert to pcapng blocks byte for byte as PcapngWriter writes them, interfaces declared once per point', (t) => {
  let seed = 11;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  // Timestamps up to 2^32 - 1 s: sec * 1e9 exceeds 2^53 there, where a float split would be off.
  const records = Array.from({ length: 300 }, (_, i) => {
    const data = Buffer.alloc(rnd(200), i & 0xff);
    const sec = i === 0 ? 0xffffffff : rnd(0x7fffffff) * 2 + rnd(2);
    return { ts: BigInt(sec) * 1_000_000_000n + BigInt(i === 0 ? 999_999_999 : rnd(1_000_000_000)), origLen: data.length + rnd(100), vni: rnd(3), port: rnd(3) - 1, point: [1, 2, 4, 8][rnd(4)], dir: rnd(2), data };
  });
  const batch = Buffer.concat(records.map(packed));
  const name = (r: PackedRecordScope) => `${r.point}:${r.dir}:${r.port ?? '-'}:${r.vni ?? '-'}`;
  for (const snaplen of [64, 65535]) {
    const a = new PcapngWriter({ snaplen });
    const b = new PcapngWriter({ snaplen });
    const expected = Buffer.concat([a.header(), ...unpackCaptureRecords(batch).map((r) => a.record({ tsNs: r.tsNs, point: name(r), data: r.data, origLen: r.origLen }))]);
    // Two batches, so that the second reuses interfaces declared in the first.
    const half = packed(records[0]).length + packed(records[1]).length;
    const head = b.header();
    const one = packedToPcapngBlocks(batch.subarray(0, half), b, name);
    const two = packedToPcapngBlocks(batch.subarray(half), b, name);
    t.is(one.count + two.count, records.length);
    const got = Buffer.concat([head, one.bytes, two.bytes]);
    let d = 0; while (d < got.length && got[d] === expected[d]) d++;
    t.true(got.equals(expected), `snaplen ${snaplen}: ${got.length} vs ${expected.length} bytes, first difference at ${d}: ${got.subarray(d - 8, d + 24).toString("hex")} vs ${expected.subarray(d - 8, d + 24).toString("hex")}`);
  }
});
