/**
 * Reader of classic pcap files, microsecond and nanosecond, either byte order.
 *
 * Policy on truncation (strict): a file that ends exactly after a whole record is valid (a live capture
 * read while it is written); one that ends inside the global header or inside a record is a
 * `CaptureFileError` naming the record's offset, with the whole packets before it in `partial`.
 * Microsecond files are decoded by `pcap-parser` after our own walk has validated the framing, because
 * pcap-parser cannot say where a file is broken (see pcap-parser-adapter.ts).
 */
import type { Capture, CapturedPacket, CaptureFormat } from './capture.ts';
import { CaptureFileError } from './errors.ts';
import { parseWithPcapParser } from './pcap-parser-adapter.ts';
import { PCAP_GLOBAL_HEADER_LEN, PCAP_MAGIC_NS, PCAP_MAGIC_US, PCAP_RECORD_HEADER_LEN } from './pcap-writer.ts';

/** libpcap's largest accepted record (MAXIMUM_SNAPLEN); a bigger incl_len means a corrupt header. */
export const PCAP_MAX_RECORD_LEN = 262144;

interface Framing {
  format: 'pcap' | 'pcap-ns';
  le: boolean;
  snaplen: number;
  linktype: number;
}

/** True when the first four bytes are a classic pcap magic in either byte order. */
export function isPcapMagic(bytes: Uint8Array): boolean {
  if (bytes.length < 4) return false;
  const dv = view(bytes);
  const le = dv.getUint32(0, true);
  const be = dv.getUint32(0, false);
  return [PCAP_MAGIC_US, PCAP_MAGIC_NS].some((m) => m === le || m === be);
}

export function readPcap(input: Uint8Array): Capture {
  const bytes = plain(input);
  const f = readGlobalHeader(bytes);
  const packets: CapturedPacket[] = [];
  const dv = view(bytes);
  const u32 = (at: number) => dv.getUint32(at, f.le);
  let at = PCAP_GLOBAL_HEADER_LEN;
  let fault: CaptureFileError | undefined;
  while (at < bytes.length) {
    if (bytes.length - at < PCAP_RECORD_HEADER_LEN) {
      fault = new CaptureFileError(f.format, at,
        `record ${packets.length + 1} at offset ${at} is cut off: its header needs ${PCAP_RECORD_HEADER_LEN} bytes but the file ends at ${bytes.length}`);
      break;
    }
    const incl = u32(at + 8);
    if (incl > PCAP_MAX_RECORD_LEN) {
      fault = new CaptureFileError(f.format, at + 8,
        `record ${packets.length + 1} at offset ${at} claims ${incl} captured bytes, above the ${PCAP_MAX_RECORD_LEN}-byte maximum (corrupt header)`);
      break;
    }
    const end = at + PCAP_RECORD_HEADER_LEN + incl;
    if (end > bytes.length) {
      fault = new CaptureFileError(f.format, at,
        `record ${packets.length + 1} at offset ${at} claims ${incl} captured bytes but the file ends at ${bytes.length} (needs ${end})`);
      break;
    }
    const frac = BigInt(u32(at + 4));
    packets.push({
      tsNs: BigInt(u32(at)) * 1_000_000_000n + (f.format === 'pcap-ns' ? frac : frac * 1000n),
      data: bytes.subarray(at + PCAP_RECORD_HEADER_LEN, end),
      origLen: u32(at + 12),
    });
    at = end;
  }
  const capture: Capture = {
    format: f.format,
    linktype: f.linktype,
    snaplen: f.snaplen,
    packets: f.format === 'pcap' ? viaPcapParser(bytes.subarray(0, at), packets) : packets,
  };
  if (fault !== undefined) {
    fault.partial = capture;
    throw fault;
  }
  return capture;
}

/** Re-reads the validated prefix with pcap-parser and insists that it sees what our walk saw. */
function viaPcapParser(valid: Uint8Array, walked: CapturedPacket[]): CapturedPacket[] {
  const r = parseWithPcapParser(valid);
  if (r.error !== undefined || r.records.length !== walked.length) {
    // Our walk accepted the framing, so this is a disagreement between two readers: a bug, not bad input.
    throw new Error(`pcap-parser disagrees with the framing walk: ${r.error ?? `${r.records.length} records, expected ${walked.length}`}`);
  }
  return r.records.map((p) => ({
    tsNs: BigInt(p.tsSec) * 1_000_000_000n + BigInt(p.tsUsec) * 1000n,
    data: new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength),
    origLen: p.originalLength,
  }));
}

function readGlobalHeader(bytes: Uint8Array): Framing {
  if (bytes.length < 4) {
    throw new CaptureFileError('capture', 0, `file ends at offset ${bytes.length}, before the end of the 4-byte magic number`);
  }
  const dv = view(bytes);
  let format: CaptureFormat | undefined;
  let le = true;
  for (const [magic, fmt] of [[PCAP_MAGIC_US, 'pcap'], [PCAP_MAGIC_NS, 'pcap-ns']] as const) {
    if (dv.getUint32(0, true) === magic) [format, le] = [fmt, true];
    else if (dv.getUint32(0, false) === magic) [format, le] = [fmt, false];
  }
  if (format === undefined || format === 'pcapng') {
    throw new CaptureFileError('pcap', 0, `bad magic 0x${hex32(dv.getUint32(0, false))} at offset 0`);
  }
  if (bytes.length < PCAP_GLOBAL_HEADER_LEN) {
    throw new CaptureFileError(format, 0,
      `global header at offset 0 is cut off: it needs ${PCAP_GLOBAL_HEADER_LEN} bytes but the file ends at ${bytes.length}`);
  }
  const major = dv.getUint16(4, le);
  const minor = dv.getUint16(6, le);
  if (major !== 2) {
    throw new CaptureFileError(format, 4, `version ${major}.${minor} at offset 4 is not supported (expected 2.x)`);
  }
  return { format, le, snaplen: dv.getUint32(16, le), linktype: dv.getUint32(20, le) };
}

/** Packet data are plain Uint8Array views even when the caller passes a Buffer. */
export function plain(bytes: Uint8Array): Uint8Array {
  return Buffer.isBuffer(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function hex32(v: number): string {
  return v.toString(16).padStart(8, '0');
}
