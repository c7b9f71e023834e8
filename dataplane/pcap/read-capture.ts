/** `readCapture(bytes)`: any capture file we support, recognised by its magic number. */
import type { Capture } from './capture.ts';
import { CaptureFileError } from './errors.ts';
import { hex32, isPcapMagic, readPcap } from './read-pcap.ts';
import { isPcapngMagic, readPcapng } from './read-pcapng.ts';

/**
 * Reads a classic pcap (microsecond or nanosecond) or pcapng file in either byte order. Packet data
 * are views into `bytes`. Throws `CaptureFileError` naming the offset of anything malformed or cut off.
 */
export function readCapture(bytes: Uint8Array): Capture {
  if (bytes.length === 0) throw new CaptureFileError('capture', 0, 'file is empty: no magic number at offset 0');
  if (isPcapngMagic(bytes)) return readPcapng(bytes);
  if (isPcapMagic(bytes)) return readPcap(bytes);
  const magic = bytes.length >= 4
    ? `0x${hex32(new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, false))}`
    : `of only ${bytes.length} bytes`;
  throw new CaptureFileError('capture', 0,
    `unknown magic ${magic} at offset 0 (expected pcap a1b2c3d4, nanosecond pcap a1b23c4d or pcapng 0a0d0d0a, in either byte order)`);
}
