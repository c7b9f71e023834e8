/**
 * The file edge of the capture writers: creates the file with the header, then appends records as they
 * arrive, one record or one batch per write: what a reader sees is always whole records and at most one
 * partial record at the end. A live capture writes a poll's batch at once (one syscall, not one per packet).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { CaptureFormat, CaptureRecord, CaptureWriter, CaptureWriterOptions } from './capture.ts';
import { PcapWriter } from './pcap-writer.ts';
import { PcapngWriter } from './pcapng-writer.ts';

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

  /** Creates (truncates) `path` and writes the file header. */
  constructor(readonly path: string, readonly format: CaptureFormat, opts: CaptureWriterOptions = {}) {
    this.writer = createCaptureWriter(format, opts);
    this.fd = openSync(path, 'w');
    writeSync(this.fd, this.writer.header());
  }

  write(record: CaptureRecord): void {
    if (this.fd === null) throw new Error(`capture file ${this.path} is closed`);
    writeSync(this.fd, this.writer.record(record));
  }

  /** Appends a batch of records with one write. */
  writeAll(records: Iterable<CaptureRecord>): void {
    if (this.fd === null) throw new Error(`capture file ${this.path} is closed`);
    const parts: Buffer[] = [];
    for (const r of records) parts.push(this.writer.record(r));
    if (parts.length) writeSync(this.fd, parts.length === 1 ? parts[0] : Buffer.concat(parts));
  }

  /** Appends records already in this file's format (e.g. from packedToPcapRecords), with one write. */
  writeEncoded(records: Buffer): void {
    if (this.fd === null) throw new Error(`capture file ${this.path} is closed`);
    if (records.length) writeSync(this.fd, records);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
