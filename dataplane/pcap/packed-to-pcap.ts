/**
 * The engine's packed capture records (dataplane/capture-records.ts) straight into file records, in one
 * pass over the batch into one buffer: what `appnet capture -w` does. At a few hundred thousand records a
 * second, the general writers' object and buffers per record were most of what a capture cost (the CLI
 * fell behind and the engine's ring overflowed). Byte-for-byte what PcapWriter and PcapngWriter
 * (little-endian) write for the same records; test 71 holds them equal.
 */
import { PACKED_RECORD_HEADER, packedRecordAt, packedRecordPoint, type CapturePointName } from '../capture-records.ts';
import { PCAP_RECORD_HEADER_LEN } from './pcap-writer.ts';
import { PCAPNG_EPB, type PcapngWriter } from './pcapng-writer.ts';

/** What names a record's pcapng interface (the fields of capture-records.ts's CaptureRecord it may use). */
export interface PackedRecordScope { point: CapturePointName; dir: 'in' | 'out'; port: number | null; vni: number | null }

/** pcap records (no file header) for every record of `packed`, cut to `snaplen`. */
export function packedToPcapRecords(packed: Buffer, opts: { nanosecond: boolean; snaplen: number; max?: number }): { bytes: Buffer; count: number } {
  // Records only shrink (24-byte header and padding -> 16-byte header), so the input size bounds the output.
  const out = Buffer.allocUnsafe(packed.length);
  let at = 0;
  let o = 0;
  let count = 0;
  const max = opts.max ?? Infinity;
  while (at < packed.length && count < max) {
    const { capLen, start, next } = packedRecordAt(packed, at);
    const incl = Math.min(capLen, opts.snaplen);
    const nsec = packed.readUInt32LE(at + 4);
    out.writeUInt32LE(packed.readUInt32LE(at), o);
    out.writeUInt32LE(opts.nanosecond ? nsec : Math.floor(nsec / 1000), o + 4);
    out.writeUInt32LE(incl, o + 8);
    out.writeUInt32LE(Math.max(packed.readUInt32LE(at + 8), incl), o + 12);
    packed.copy(out, o + PCAP_RECORD_HEADER_LEN, start, start + incl);
    o += PCAP_RECORD_HEADER_LEN + incl;
    at = next;
    count++;
  }
  return { bytes: out.subarray(0, o), count };
}

/**
 * pcapng Enhanced Packet Blocks for every record of `packed`, with the Interface Description Block of each
 * point `writer` has not seen yet just before its first packet (the writer keeps the point -> id map, so
 * this and writer.record() can be mixed). `name` gives the interface name of a record's point.
 */
export function packedToPcapngBlocks(packed: Buffer, writer: PcapngWriter, name: (r: PackedRecordScope) => string, opts: { max?: number } = {}): { bytes: Buffer; count: number } {
  const parts: Buffer[] = [];
  // EPBs are 32 bytes + data padded to 4 (the packed record is 24 + data padded to 8): at most 8 more per record.
  const out = Buffer.allocUnsafe(packed.length + Math.ceil(packed.length / PACKED_RECORD_HEADER) * 8);
  // (vni, point, dir) -> port -> interface id: `name` is asked once per batch and interface.
  const ids = new Map<number, Map<number, number>>();
  let at = 0;
  let o = 0;
  let count = 0;
  const max = opts.max ?? Infinity;
  while (at < packed.length && count < max) {
    const { capLen, start, next } = packedRecordAt(packed, at);
    const point = packedRecordPoint(packed, at);
    const pointCode = packed[at + 22];
    const port = packed.readInt32LE(at + 16);
    const vni = packed.readUInt32LE(at + 12);
    const dir = packed[at + 23];
    const key = (vni * 16 + pointCode) * 2 + dir; // < 2^29
    let byPort = ids.get(key);
    if (byPort === undefined) ids.set(key, (byPort = new Map()));
    let id = byPort.get(port);
    if (id === undefined) {
      const r = writer.interfaceFor(name({ point, dir: dir === 0 ? 'in' : 'out', port: port >= 0 ? port : null, vni: vni || null }));
      id = r.id;
      byPort.set(port, id);
      if (r.block) {
        parts.push(Buffer.from(out.subarray(0, o)), r.block);
        o = 0;
      }
    }
    const incl = Math.min(capLen, writer.snaplen);
    const total = 32 + ((incl + 3) & ~3);
    // ts in ns = sec * 1e9 + nsec, as two u32 halves, exactly (sec * 1e9 alone can exceed 2^53).
    const sec = packed.readUInt32LE(at);
    const a = Math.floor(sec / 65536) * 1e9;
    const c = (a % 65536) * 65536 + (sec % 65536) * 1e9 + packed.readUInt32LE(at + 4);
    out.writeUInt32LE(PCAPNG_EPB, o);
    out.writeUInt32LE(total, o + 4);
    out.writeUInt32LE(id, o + 8);
    out.writeUInt32LE(Math.floor(a / 65536) + Math.floor(c / 0x100000000), o + 12);
    out.writeUInt32LE(c % 0x100000000, o + 16);
    out.writeUInt32LE(incl, o + 20);
    out.writeUInt32LE(Math.max(packed.readUInt32LE(at + 8), incl), o + 24);
    packed.copy(out, o + 28, start, start + incl);
    out.fill(0, o + 28 + incl, o + total - 4);
    out.writeUInt32LE(total, o + total - 4);
    o += total;
    at = next;
    count++;
  }
  parts.push(out.subarray(0, o));
  return { bytes: parts.length === 1 ? parts[0] : Buffer.concat(parts), count };
}
