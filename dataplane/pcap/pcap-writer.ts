/**
 * Classic libpcap files: microsecond (magic a1b2c3d4) and nanosecond (magic a1b23c4d) timestamps.
 *
 * ```
 * global header (24 B): magic u32 | major 2 u16 | minor 4 u16 | thiszone i32 0 | sigfigs u32 0 |
 *                       snaplen u32 | linktype u32
 * record header (16 B): ts_sec u32 | ts_usec or ts_nsec u32 | incl_len u32 | orig_len u32, then incl_len bytes
 * ```
 * Pure: each call returns the bytes to append. A file cut after any whole record is a valid capture,
 * which is what lets a live capture be read (`tcpdump -r`) while it is being written.
 */
import type { CaptureRecord, CaptureWriter, CaptureWriterOptions } from './capture.ts';
import { DEFAULT_SNAPLEN, LINKTYPE_ETHERNET } from './capture.ts';
import { CaptureFileError } from './errors.ts';

export const PCAP_MAGIC_US = 0xa1b2c3d4;
export const PCAP_MAGIC_NS = 0xa1b23c4d;
export const PCAP_GLOBAL_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;

const NS_PER_S = 1_000_000_000n;

export class PcapWriter implements CaptureWriter {
  readonly format: 'pcap' | 'pcap-ns';
  readonly snaplen: number;
  readonly linktype: number;
  private readonly le: boolean;

  constructor(opts: CaptureWriterOptions & { nanosecond?: boolean } = {}) {
    this.format = opts.nanosecond ? 'pcap-ns' : 'pcap';
    this.snaplen = opts.snaplen ?? DEFAULT_SNAPLEN;
    this.linktype = opts.linktype ?? LINKTYPE_ETHERNET;
    this.le = (opts.byteOrder ?? 'le') === 'le';
    checkU32(this.format, 'snaplen', this.snaplen);
    checkU32(this.format, 'linktype', this.linktype);
  }

  header(): Buffer {
    const b = Buffer.alloc(PCAP_GLOBAL_HEADER_LEN);
    this.u32(b, 0, this.format === 'pcap-ns' ? PCAP_MAGIC_NS : PCAP_MAGIC_US);
    this.u16(b, 4, 2);
    this.u16(b, 6, 4);
    this.u32(b, 16, this.snaplen);
    this.u32(b, 20, this.linktype);
    return b;
  }

  record(r: CaptureRecord): Buffer {
    const incl = Math.min(r.data.length, this.snaplen);
    if (r.tsNs < 0n || r.tsNs / NS_PER_S > 0xffffffffn) {
      throw new CaptureFileError(this.format, 0, `timestamp ${r.tsNs} ns does not fit a 32-bit seconds field`);
    }
    checkU32(this.format, 'orig_len', r.origLen);
    const b = Buffer.alloc(PCAP_RECORD_HEADER_LEN + incl);
    const frac = r.tsNs % NS_PER_S;
    this.u32(b, 0, Number(r.tsNs / NS_PER_S));
    this.u32(b, 4, Number(this.format === 'pcap-ns' ? frac : frac / 1000n));
    this.u32(b, 8, incl);
    this.u32(b, 12, Math.max(r.origLen, incl));
    b.set(r.data.subarray(0, incl), PCAP_RECORD_HEADER_LEN);
    return b;
  }

  private u16(b: Buffer, at: number, v: number): void {
    if (this.le) b.writeUInt16LE(v, at);
    else b.writeUInt16BE(v, at);
  }

  private u32(b: Buffer, at: number, v: number): void {
    if (this.le) b.writeUInt32LE(v, at);
    else b.writeUInt32BE(v, at);
  }
}

function checkU32(format: string, field: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new RangeError(`${format}: ${field} ${v} is not an integer in 0..0xffffffff`);
  }
}
