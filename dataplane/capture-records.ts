// The engine's packed capture records (native/src/capture.h PackedRecordHeader), read without copying: a
// drained batch arrives as one buffer, is sent over the API as it is, and is unpacked only by whoever
// prints or writes the records (the CLI), never per packet in the daemon.
//
//   u32 ts_sec | u32 ts_nsec | u32 orig_len | u32 vni (0: unknown) | i32 port (-1: none) | u16 cap_len | u8 point |
//   u8 dir | bytes, padded to 8
// Little-endian (the engine's byte order on every platform we build for).

export type CapturePointName = 'port' | 'vni_encap' | 'vni_decap' | 'wire';
export const CAPTURE_POINTS: Record<CapturePointName, number> = { port: 1, vni_encap: 2, vni_decap: 4, wire: 8 };
const POINT_NAMES = Object.fromEntries(Object.entries(CAPTURE_POINTS).map(([k, v]) => [v, k])) as Record<number, CapturePointName>;

export const PACKED_RECORD_HEADER = 24;

export interface CaptureRecord {
  /** Wall-clock ns since the epoch. */
  tsNs: bigint;
  point: CapturePointName;
  /** in: read from a port / received from the wire; out: written to a port / sent. */
  dir: 'in' | 'out';
  port: number | null;
  vni: number | null;
  origLen: number;
  /** A full Ethernet frame (wire records carry synthesised outer headers), cut to the snap length. */
  data: Buffer;
}

export class CaptureRecordsError extends Error {
  constructor(readonly offset: number, message: string) {
    super(`capture records at byte ${offset}: ${message}`);
  }
}

/** Where the record at `at` keeps its bytes and where the next one starts; throws naming the offset if it is cut short. */
export function packedRecordAt(buf: Buffer, at: number): { capLen: number; start: number; next: number } {
  if (buf.length - at < PACKED_RECORD_HEADER) throw new CaptureRecordsError(at, `a record header needs ${PACKED_RECORD_HEADER} bytes, ${buf.length - at} left`);
  const capLen = buf.readUInt16LE(at + 20);
  const start = at + PACKED_RECORD_HEADER;
  if (start + capLen > buf.length) throw new CaptureRecordsError(at + 20, `record of ${capLen} bytes runs past the end (${buf.length - start} left)`);
  return { capLen, start, next: start + ((capLen + 7) & ~7) };
}

/** The capture point of the record at `at`; throws naming the offset for an unknown one. */
export function packedRecordPoint(buf: Buffer, at: number): CapturePointName {
  const point = POINT_NAMES[buf[at + 22]];
  if (point === undefined) throw new CaptureRecordsError(at + 22, `unknown capture point ${buf[at + 22]}`);
  return point;
}

/** Unpacks a batch; `data` of each record is a view into `buf`. Throws CaptureRecordsError naming the offset. */
export function unpackCaptureRecords(buf: Buffer): CaptureRecord[] {
  const out: CaptureRecord[] = [];
  let at = 0;
  while (at < buf.length) {
    const { capLen, start, next } = packedRecordAt(buf, at);
    const point = packedRecordPoint(buf, at);
    const port = buf.readInt32LE(at + 16);
    const vni = buf.readUInt32LE(at + 12);
    out.push({
      tsNs: BigInt(buf.readUInt32LE(at)) * 1_000_000_000n + BigInt(buf.readUInt32LE(at + 4)),
      point,
      dir: buf[at + 23] === 0 ? 'in' : 'out',
      port: port >= 0 ? port : null,
      vni: vni || null,
      origLen: buf.readUInt32LE(at + 8),
      data: buf.subarray(start, start + capLen),
    });
    at = next;
  }
  return out;
}
