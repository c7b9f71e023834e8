/**
 * Reader of pcapng files: SHB, IDB, EPB, SPB (and the obsolete PB); other blocks are skipped by their
 * length. Each section has its own byte order and interface list.
 *
 * Strict on structure, like `read-pcap.ts`: a file ending exactly after a block is valid; a block cut
 * off, with a length that is not a multiple of 4, below 12, or whose trailing length differs from the
 * leading one, is a `CaptureFileError` naming the block's offset (with the packets before it in `partial`).
 */
import type { Capture, CapturedPacket, CaptureInterface } from './capture.ts';
import { CaptureFileError } from './errors.ts';
import { plain } from './read-pcap.ts';
import {
  IF_NAME, IF_TSOFFSET, IF_TSRESOL, OPT_COMMENT, OPT_ENDOFOPT, PCAPNG_BYTE_ORDER_MAGIC, PCAPNG_EPB, PCAPNG_IDB,
  PCAPNG_PB_OBSOLETE, PCAPNG_SHB, PCAPNG_SPB, pad4,
} from './pcapng-writer.ts';

const SHB_MIN_LEN = 28;
const BLOCK_MIN_LEN = 12;

interface Iface extends CaptureInterface {
  /** Timestamp units per second, as a numerator/denominator of nanoseconds: ns = ts * mul / div. */
  mul: bigint;
  div: bigint;
  offsetNs: bigint;
}

interface Opt {
  code: number;
  value: Uint8Array;
}

export function isPcapngMagic(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x0a && bytes[1] === 0x0d && bytes[2] === 0x0d && bytes[3] === 0x0a;
}

export function readPcapng(input: Uint8Array): Capture {
  const bytes = plain(input);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const packets: CapturedPacket[] = [];
  const allIfaces: CaptureInterface[] = [];
  let ifaces: Iface[] = [];
  let le = true;
  let comment: string | undefined;
  const capture = (): Capture => ({
    format: 'pcapng',
    linktype: allIfaces[0]?.linktype ?? 1,
    snaplen: allIfaces[0]?.snaplen ?? 0,
    packets,
    interfaces: allIfaces,
    ...(comment !== undefined ? { comment } : {}),
  });
  const fail = (offset: number, detail: string): never => {
    const e = new CaptureFileError('pcapng', offset, detail);
    if (allIfaces.length > 0 || packets.length > 0 || offset > 0) e.partial = capture();
    throw e;
  };
  if (!isPcapngMagic(bytes)) fail(0, `bad magic at offset 0: the file does not start with a section header block`);

  let at = 0;
  while (at < bytes.length) {
    if (bytes.length - at < 8) {
      fail(at, `block at offset ${at} is cut off: its header needs 8 bytes but the file ends at ${bytes.length}`);
    }
    // The SHB type is a byte palindrome, so reading with the current section's order finds the next one.
    const type = dv.getUint32(at, le);
    if (type === PCAPNG_SHB) {
      if (bytes.length - at < 12) {
        fail(at, `section header at offset ${at} is cut off: it needs ${SHB_MIN_LEN} bytes but the file ends at ${bytes.length}`);
      }
      const bom = dv.getUint32(at + 8, true);
      if (bom === PCAPNG_BYTE_ORDER_MAGIC) le = true;
      else if (dv.getUint32(at + 8, false) === PCAPNG_BYTE_ORDER_MAGIC) le = false;
      else fail(at + 8, `section header at offset ${at} has byte-order magic 0x${bom.toString(16)} at offset ${at + 8}, expected 0x1a2b3c4d`);
    } else if (at === 0) {
      fail(0, `bad magic at offset 0: the file does not start with a section header block`);
    }
    const len = dv.getUint32(at + 4, le);
    const minLen = type === PCAPNG_SHB ? SHB_MIN_LEN : BLOCK_MIN_LEN;
    if (len < minLen || len % 4 !== 0) {
      fail(at + 4, `block at offset ${at} claims length ${len}, which is ${len % 4 !== 0 ? 'not a multiple of 4' : `below the minimum ${minLen}`}`);
    }
    if (at + len > bytes.length) {
      fail(at, `block at offset ${at} claims length ${len} but the file ends at ${bytes.length}`);
    }
    const trailer = dv.getUint32(at + len - 4, le);
    if (trailer !== len) {
      fail(at + len - 4, `block at offset ${at}: trailing length ${trailer} at offset ${at + len - 4} does not match the leading length ${len}`);
    }
    const body = at + 8;
    const end = at + len - 4;
    const u16 = (o: number) => dv.getUint16(o, le);
    const u32 = (o: number) => dv.getUint32(o, le);
    const options = (from: number): Opt[] => readOptions(bytes, dv, le, from, end, at, fail);

    switch (type) {
      case PCAPNG_SHB: {
        const major = u16(body + 4);
        if (major !== 1) fail(body + 4, `section header at offset ${at} has version ${major}.${u16(body + 6)}, expected 1.x`);
        ifaces = [];
        for (const o of options(body + 16)) if (o.code === OPT_COMMENT && comment === undefined) comment = utf8(o.value);
        break;
      }
      case PCAPNG_IDB: {
        if (end - body < 8) fail(at, `interface block at offset ${at} is ${len} bytes, too short for its 8-byte body`);
        const iface: Iface = { linktype: u16(body), snaplen: u32(body + 4), mul: 1000n, div: 1n, offsetNs: 0n };
        for (const o of options(body + 8)) {
          if (o.code === IF_NAME) iface.name = utf8(o.value);
          else if (o.code === IF_TSRESOL && o.value.length >= 1) setResolution(iface, o.value[0]);
          else if (o.code === IF_TSOFFSET && o.value.length >= 8) {
            const v = new DataView(o.value.buffer, o.value.byteOffset, 8);
            iface.offsetNs = v.getBigInt64(0, le) * 1_000_000_000n;
          }
        }
        ifaces.push(iface);
        allIfaces.push({ linktype: iface.linktype, snaplen: iface.snaplen, ...(iface.name !== undefined ? { name: iface.name } : {}) });
        break;
      }
      case PCAPNG_EPB:
      case PCAPNG_PB_OBSOLETE: {
        if (end - body < 20) fail(at, `packet block at offset ${at} is ${len} bytes, too short for its 20-byte header`);
        const id = type === PCAPNG_EPB ? u32(body) : u16(body);
        const iface = ifaces[id];
        if (iface === undefined) fail(body, `packet block at offset ${at} names interface ${id}, but the section has ${ifaces.length}`);
        const caplen = u32(body + 12);
        if (body + 20 + caplen > end) {
          fail(body + 12, `packet block at offset ${at} claims ${caplen} captured bytes but the block holds ${end - body - 20}`);
        }
        const ts = (BigInt(u32(body + 4)) << 32n) | BigInt(u32(body + 8));
        const packet: CapturedPacket = {
          tsNs: (ts * iface.mul) / iface.div + iface.offsetNs,
          data: bytes.subarray(body + 20, body + 20 + caplen),
          origLen: u32(body + 16),
        };
        if (iface.name !== undefined) packet.point = iface.name;
        for (const o of options(body + 20 + pad4(caplen))) if (o.code === OPT_COMMENT) packet.comment = utf8(o.value);
        packets.push(packet);
        break;
      }
      case PCAPNG_SPB: {
        if (end - body < 4) fail(at, `simple packet block at offset ${at} is ${len} bytes, too short for its 4-byte header`);
        const iface = ifaces[0];
        if (iface === undefined) fail(at, `simple packet block at offset ${at} precedes any interface block`);
        const origLen = u32(body);
        // SPB has no captured length: it is the original length cut to the snapshot length.
        const caplen = iface.snaplen > 0 ? Math.min(origLen, iface.snaplen) : origLen;
        if (body + 4 + caplen > end) {
          fail(body, `simple packet block at offset ${at} claims ${caplen} bytes but the block holds ${end - body - 4}`);
        }
        const packet: CapturedPacket = { tsNs: 0n, data: bytes.subarray(body + 4, body + 4 + caplen), origLen };
        if (iface.name !== undefined) packet.point = iface.name;
        packets.push(packet);
        break;
      }
      default:
        break; // name resolution, statistics, custom and unknown blocks carry no packets
    }
    at += len;
  }
  return capture();
}

function readOptions(
  bytes: Uint8Array, dv: DataView, le: boolean, from: number, end: number, block: number,
  fail: (offset: number, detail: string) => never,
): Opt[] {
  const out: Opt[] = [];
  let at = from;
  while (at + 4 <= end) {
    const code = dv.getUint16(at, le);
    const len = dv.getUint16(at + 2, le);
    if (code === OPT_ENDOFOPT) break;
    if (at + 4 + len > end) {
      fail(at, `option ${code} at offset ${at} in the block at offset ${block} claims ${len} bytes, past the block's end at ${end}`);
    }
    out.push({ code, value: bytes.subarray(at + 4, at + 4 + len) });
    at += 4 + pad4(len);
  }
  return out;
}

/** if_tsresol: bit 7 clear → 10^-n seconds, set → 2^-n seconds; default 10^-6. */
function setResolution(iface: Iface, v: number): void {
  const n = BigInt(v & 0x7f);
  const perSecond = (v & 0x80) !== 0 ? 1n << n : 10n ** n;
  iface.mul = 1_000_000_000n;
  iface.div = perSecond;
  if (perSecond <= 1_000_000_000n && 1_000_000_000n % perSecond === 0n) {
    iface.mul = 1_000_000_000n / perSecond;
    iface.div = 1n;
  }
}

function utf8(b: Uint8Array): string {
  // Some writers include the terminating NUL in string options.
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8').replace(/\0+$/, '');
}
