/**
 * The engine's packed capture records (dataplane/capture-records.ts) straight into classic pcap records, in
 * one pass over the batch into one buffer: what `appnet capture -w` does for pcap and pcap-ns, where a
 * record needs no per-point interface (pcapng goes through the general writer). At a few hundred thousand
 * records a second, the general path's object and buffer per record is most of what a capture costs.
 * Byte-for-byte what PcapWriter (little-endian) writes for the same records; test 71 holds them equal.
 */
import { CaptureRecordsError, PACKED_RECORD_HEADER } from '../capture-records.ts';
import { PCAP_RECORD_HEADER_LEN } from './pcap-writer.ts';

/** pcap records (no file header) for every record of `packed`, cut to `snaplen`. */
export function packedToPcapRecords(packed: Buffer, opts: { nanosecond: boolean; snaplen: number; max?: number }): { bytes: Buffer; count: number } {
  // Records only shrink (24-byte header and padding -> 16-byte header), so the input size bounds the output.
  const out = Buffer.allocUnsafe(packed.length);
  let at = 0;
  let o = 0;
  let count = 0;
  const max = opts.max ?? Infinity;
  while (at < packed.length && count < max) {
    if (packed.length - at < PACKED_RECORD_HEADER) throw new CaptureRecordsError(at, `a record header needs ${PACKED_RECORD_HEADER} bytes, ${packed.length - at} left`);
    const capLen = packed.readUInt16LE(at + 20);
    const start = at + PACKED_RECORD_HEADER;
    if (start + capLen > packed.length) throw new CaptureRecordsError(at + 20, `record of ${capLen} bytes runs past the end (${packed.length - start} left)`);
    const incl = Math.min(capLen, opts.snaplen);
    const nsec = packed.readUInt32LE(at + 4);
    out.writeUInt32LE(packed.readUInt32LE(at), o);
    out.writeUInt32LE(opts.nanosecond ? nsec : Math.floor(nsec / 1000), o + 4);
    out.writeUInt32LE(incl, o + 8);
    out.writeUInt32LE(Math.max(packed.readUInt32LE(at + 8), incl), o + 12);
    packed.copy(out, o + PCAP_RECORD_HEADER_LEN, start, start + incl);
    o += PCAP_RECORD_HEADER_LEN + incl;
    at = start + ((capLen + 7) & ~7);
    count++;
  }
  return { bytes: out.subarray(0, o), count };
}
