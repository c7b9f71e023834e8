/**
 * pcapng files (draft-ietf-opsawg-pcapng): a Section Header Block, one Interface Description Block per
 * capture point (if_name = the point, if_tsresol = 9, i.e. nanoseconds), then Enhanced Packet Blocks.
 *
 * ```
 * every block: type u32 | total length u32 | body | options (code u16, len u16, value padded to 4) |
 *              total length u32
 * EPB body:    interface id u32 | ts high u32 | ts low u32 | captured len u32 | original len u32 | data
 * ```
 * Pure and streamable: an IDB is emitted just before the first packet of its point (the format allows
 * IDBs anywhere in the section before use), so the file is valid after every returned buffer.
 */
import type { CaptureRecord, CaptureWriter, CaptureWriterOptions } from './capture.ts';
import { DEFAULT_SNAPLEN, LINKTYPE_ETHERNET } from './capture.ts';

export const PCAPNG_SHB = 0x0a0d0d0a;
export const PCAPNG_IDB = 0x00000001;
export const PCAPNG_PB_OBSOLETE = 0x00000002;
export const PCAPNG_SPB = 0x00000003;
export const PCAPNG_EPB = 0x00000006;
export const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;

export const OPT_ENDOFOPT = 0;
export const OPT_COMMENT = 1;
export const SHB_USERAPPL = 4;
export const IF_NAME = 2;
export const IF_TSRESOL = 9;
export const IF_TSOFFSET = 14;

interface Option {
  code: number;
  value: Uint8Array;
}

export class PcapngWriter implements CaptureWriter {
  readonly format = 'pcapng' as const;
  readonly snaplen: number;
  readonly linktype: number;
  private readonly le: boolean;
  private readonly comment?: string;
  private readonly declared: readonly string[];
  /** Capture point → interface id, in order of first appearance. */
  private readonly interfaces = new Map<string, number>();

  constructor(opts: CaptureWriterOptions = {}) {
    this.snaplen = opts.snaplen ?? DEFAULT_SNAPLEN;
    this.linktype = opts.linktype ?? LINKTYPE_ETHERNET;
    this.le = (opts.byteOrder ?? 'le') === 'le';
    this.comment = opts.comment;
    this.declared = opts.points ?? [];
    if (!Number.isInteger(this.linktype) || this.linktype < 0 || this.linktype > 0xffff) {
      throw new RangeError(`pcapng: linktype ${this.linktype} is not an integer in 0..65535`);
    }
  }

  /**
   * Section Header Block (byte-order magic, version 1.0, section length unknown: -1), then one interface
   * block per declared point. Starts a new section: interface ids restart at 0.
   */
  header(): Buffer {
    const body = Buffer.alloc(16);
    this.u32(body, 0, PCAPNG_BYTE_ORDER_MAGIC);
    this.u16(body, 4, 1);
    this.u16(body, 6, 0);
    body.fill(0xff, 8, 16);
    const options: Option[] = [];
    if (this.comment !== undefined) options.push(text(OPT_COMMENT, this.comment));
    options.push(text(SHB_USERAPPL, 'appnet'));
    this.interfaces.clear();
    const parts = [this.block(PCAPNG_SHB, body, options)];
    for (const point of this.declared) {
      if (this.interfaces.has(point)) continue;
      this.interfaces.set(point, this.interfaces.size);
      parts.push(this.interfaceBlock(point));
    }
    return Buffer.concat(parts);
  }

  /** The interface id of `point`, and its Interface Description Block to write first when it is new. */
  interfaceFor(point: string): { id: number; block?: Buffer } {
    const id = this.interfaces.get(point);
    if (id !== undefined) return { id };
    this.interfaces.set(point, this.interfaces.size);
    return { id: this.interfaces.size - 1, block: this.interfaceBlock(point) };
  }

  record(r: CaptureRecord): Buffer {
    const parts: Buffer[] = [];
    const { id, block } = this.interfaceFor(r.point);
    if (block) parts.push(block);
    const incl = Math.min(r.data.length, this.snaplen);
    if (r.tsNs < 0n || r.tsNs > 0xffffffffffffffffn) throw new RangeError(`pcapng: timestamp ${r.tsNs} ns out of range`);
    const body = Buffer.alloc(20 + pad4(incl));
    this.u32(body, 0, id);
    this.u32(body, 4, Number(r.tsNs >> 32n));
    this.u32(body, 8, Number(r.tsNs & 0xffffffffn));
    this.u32(body, 12, incl);
    this.u32(body, 16, Math.max(r.origLen, incl));
    body.set(r.data.subarray(0, incl), 20);
    parts.push(this.block(PCAPNG_EPB, body, r.comment !== undefined ? [text(OPT_COMMENT, r.comment)] : []));
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  private interfaceBlock(point: string): Buffer {
    const body = Buffer.alloc(8);
    this.u16(body, 0, this.linktype);
    this.u32(body, 4, this.snaplen);
    return this.block(PCAPNG_IDB, body, [text(IF_NAME, point), { code: IF_TSRESOL, value: Uint8Array.of(9) }]);
  }

  private block(type: number, body: Buffer, options: Option[]): Buffer {
    let optLen = 0;
    for (const o of options) optLen += 4 + pad4(o.value.length);
    if (options.length > 0) optLen += 4; // opt_endofopt
    const total = 8 + body.length + optLen + 4;
    const b = Buffer.alloc(total);
    this.u32(b, 0, type);
    this.u32(b, 4, total);
    b.set(body, 8);
    let at = 8 + body.length;
    for (const o of options) {
      if (o.value.length > 0xffff) throw new RangeError(`pcapng: option ${o.code} is ${o.value.length} bytes, max 65535`);
      this.u16(b, at, o.code);
      this.u16(b, at + 2, o.value.length);
      b.set(o.value, at + 4);
      at += 4 + pad4(o.value.length);
    }
    // opt_endofopt is all zeros, already there.
    this.u32(b, total - 4, total);
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

function text(code: number, value: string): Option {
  return { code, value: Buffer.from(value, 'utf8') };
}

export function pad4(n: number): number {
  return (n + 3) & ~3;
}
