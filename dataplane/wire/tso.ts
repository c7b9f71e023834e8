/**
 * Segmentation offload in software, the TypeScript twin of native/src/offload.h (the engine runs
 * the native one; the differential test holds them byte-identical).
 *
 * - `finishPartialChecksum`: a frame whose transport checksum was left partial (the field holds
 *   the pseudo-header sum, as a kernel with checksum offload hands it over): the checksum over
 *   [csumStart, end) is stored at csumStart + csumOffset; a UDP (offset 6) zero becomes 0xffff.
 * - `segmentTcp4`: a TCP/IPv4 super-frame (Ethernet + IPv4 + TCP + up to 64 KiB) cut into
 *   segments of at most `mss` payload bytes. Each gets the original headers with its own IPv4
 *   total length, id (original + index) and header checksum, TCP sequence number (original +
 *   offset) and full TCP checksum; FIN and PSH only on the last segment, CWR only on the first.
 */
import { finishChecksum, ipv4PseudoHeaderSum, sumBytes } from './checksum.ts';

const ETH = 14;

/** Returns a copy of `frame` with its partial checksum completed, or null if the offsets do not fit. */
export function finishPartialChecksum(frame: Uint8Array, csumStart: number, csumOffset: number): Uint8Array | null {
  if (csumStart + csumOffset + 2 > frame.length) return null;
  const out = Uint8Array.from(frame);
  let c = finishChecksum(sumBytes(out, csumStart));
  if (c === 0 && csumOffset === 6) c = 0xffff;
  out[csumStart + csumOffset] = c >> 8;
  out[csumStart + csumOffset + 1] = c & 0xff;
  return out;
}

const u16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const u32 = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
function put16(b: Uint8Array, o: number, v: number): void { b[o] = (v >> 8) & 0xff; b[o + 1] = v & 0xff; }
function put32(b: Uint8Array, o: number, v: number): void { put16(b, o, v >>> 16); put16(b, o + 2, v & 0xffff); }

/** The smallest segment size a super-frame may ask for (Linux's TCP_MIN_MSS; native/src/offload.h kMinGsoMss). */
export const MIN_GSO_MSS = 88;

/** The segments of a TCP/IPv4 super-frame, or null if it is not one (see the file comment) or its mss is below MIN_GSO_MSS. */
export function segmentTcp4(frame: Uint8Array, mss: number): Uint8Array[] | null {
  if (!(mss >= MIN_GSO_MSS) || frame.length < ETH + 40 || u16(frame, 12) !== 0x0800) return null;
  const ihl = (frame[ETH] & 0x0f) * 4;
  if (frame[ETH] >> 4 !== 4 || ihl < 20 || frame[ETH + 9] !== 6 || ETH + ihl + 20 > frame.length) return null;
  const thl = (frame[ETH + ihl + 12] >> 4) * 4;
  const hlen = ETH + ihl + thl;
  if (thl < 20 || hlen > frame.length) return null;
  const payload = frame.length - hlen;
  const count = payload === 0 ? 1 : Math.ceil(payload / mss);
  const id = u16(frame, ETH + 4);
  const seq = u32(frame, ETH + ihl + 4);
  const src = u32(frame, ETH + 12);
  const dst = u32(frame, ETH + 16);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const off = i * mss;
    const chunk = Math.min(mss, payload - off);
    const s = new Uint8Array(hlen + chunk);
    s.set(frame.subarray(0, hlen));
    s.set(frame.subarray(hlen + off, hlen + off + chunk), hlen);
    put16(s, ETH + 2, ihl + thl + chunk);
    put16(s, ETH + 4, (id + i) & 0xffff);
    put16(s, ETH + 10, 0);
    put16(s, ETH + 10, finishChecksum(sumBytes(s, ETH, ETH + ihl)));
    const t = ETH + ihl;
    put32(s, t + 4, (seq + off) >>> 0);
    let flags = s[t + 13];
    if (i + 1 < count) flags &= ~0x09;
    if (i > 0) flags &= ~0x80;
    s[t + 13] = flags;
    put16(s, t + 16, 0);
    const l4 = thl + chunk;
    put16(s, t + 16, finishChecksum(sumBytes(s, t, t + l4, ipv4PseudoHeaderSum(src, dst, 6, l4))));
    out.push(s);
  }
  return out;
}

/**
 * The datagrams of a UDP/IPv4 super-frame (Ethernet + 20-byte IPv4 + UDP), `size` payload bytes each (the last
 * may be shorter), as the kernel's UDP segmentation makes them (native/src/offload.h udp4_gso_segment): each
 * gets its own IPv4 total length, id (original + index) and header checksum, UDP length and full checksum.
 * Null if the frame is not one or `size` is not positive.
 */
export function segmentUdp4(frame: Uint8Array, size: number): Uint8Array[] | null {
  const hlen = ETH + 28;
  if (!(size >= 1) || frame.length <= hlen || u16(frame, 12) !== 0x0800 || frame[ETH] !== 0x45 || frame[ETH + 9] !== 17) return null;
  const payload = frame.length - hlen;
  const id = u16(frame, ETH + 4);
  const src = u32(frame, ETH + 12);
  const dst = u32(frame, ETH + 16);
  const out: Uint8Array[] = [];
  for (let off = 0, i = 0; off < payload; off += size, i++) {
    const chunk = Math.min(size, payload - off);
    const s = new Uint8Array(hlen + chunk);
    s.set(frame.subarray(0, hlen));
    s.set(frame.subarray(hlen + off, hlen + off + chunk), hlen);
    put16(s, ETH + 2, 28 + chunk);
    put16(s, ETH + 4, (id + i) & 0xffff);
    put16(s, ETH + 10, 0);
    put16(s, ETH + 10, finishChecksum(sumBytes(s, ETH, ETH + 20)));
    const u = ETH + 20;
    put16(s, u + 4, 8 + chunk);
    put16(s, u + 6, 0);
    const c = finishChecksum(sumBytes(s, u, s.length, ipv4PseudoHeaderSum(src, dst, 17, 8 + chunk)));
    put16(s, u + 6, c === 0 ? 0xffff : c);
    out.push(s);
  }
  return out;
}
