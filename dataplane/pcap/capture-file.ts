/**
 * The file edge of the capture writers: creates the file with the header, then appends records as they
 * arrive, one record or one batch per write: what a reader sees is always whole records and at most one
 * partial record at the end. A live capture writes a poll's batch at once (one syscall, not one per packet).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { CaptureFormat, CaptureRecord, CaptureWriter, CaptureWriterOptions } from './capture.ts';
import { PcapWriter } from './pcap-writer.ts';
import { PcapngWriter } from './pcapng-writer.ts';
import { unpackCaptureRecords } from '../capture-records.ts';
import { packedToPcapngBlocks, packedToPcapRecords, type PackedRecordScope } from './packed-to-pcap.ts';

export function createCaptureWriter(format: CaptureFormat, opts: CaptureWriterOptions = {}): CaptureWriter {
  switch (format) {
    case 'pcap': return new PcapWriter(opts);
    case 'pcap-ns': return new PcapWriter({ ...opts, nanosecond: true });
    case 'pcapng': return new PcapngWriter(opts);
    default: throw new RangeError(`unknown capture format ${String(format)} (pcap, pcap-ns, pcapng)`);
  }
}

/** Writes a whole capture to bytes (tests and tools; live captures use `CaptureFile`). */
export function writeCapture(format: CaptureFormat, records: Iterable<CaptureRecord>, opts: CaptureWriterOptions = {}): Buffer {
  const w = createCaptureWriter(format, opts);
  const parts = [w.header()];
  for (const r of records) parts.push(w.record(r));
  return Buffer.concat(parts);
}

export class CaptureFile {
  private fd: number | null;
  private readonly writer: CaptureWriter;
  private readonly littleEndian: boolean;

  /** Creates (truncates) `path` and writes the file header. */
  /** Bytes written to the file so far, headers included. */
  bytesWritten = 0;

  constructor(readonly path: string, readonly format: CaptureFormat, opts: CaptureWriterOptions = {}) {
    this.writer = createCaptureWriter(format, opts);
    this.littleEndian = (opts.byteOrder ?? 'le') === 'le';
    this.fd = openSync(path, 'w');
    this.bytesWritten += writeSync(this.fd, this.writer.header());
  }

  write(record: CaptureRecord): void {
    if (this.fd === null) throw new Error(`capture file ${this.path} is closed`);
    this.bytesWritten += writeSync(this.fd, this.writer.record(record));
  }

  /**
   * Appends a batch of the engine's packed records (dataplane/capture-records.ts), at most `max`, with one
   * write; `name` names a record's pcapng interface. Returns how many were written.
   */
  writePacked(packed: Buffer, name: (r: PackedRecordScope) => string, max = Infinity): number {
    if (this.fd === null) throw new Error(`capture file ${this.path} is closed`);
    let out: { bytes: Buffer; count: number };
    if (!this.littleEndian) {
      const records = unpackCaptureRecords(packed).slice(0, max);
      out = { bytes: Buffer.concat(records.map((r) => this.writer.record({ tsNs: r.tsNs, point: name(r), data: r.data, origLen: r.origLen }))), count: records.length };
    } else if (this.writer instanceof PcapngWriter) {
      out = packedToPcapngBlocks(packed, this.writer, name, { max });
    } else {
      out = packedToPcapRecords(packed, { nanosecond: this.format === 'pcap-ns', snaplen: this.writer.snaplen, max });
    }
    if (out.bytes.length) this.bytesWritten += writeSync(this.fd, out.bytes);
    return out.count;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
