/**
 * `flowHash(frame)`: a uint32 identifying the flow of an Ethernet frame, used to pick the outer UDP
 * source port (RFC 7348 §5) and engine queues. The native engine implements the same function and the
 * differential tests compare both byte for byte, so this is the contract:
 *
 * FNV-1a 32-bit (h = 0x811c9dc5; per byte: h ^= b; h = Math.imul(h, 0x01000193) >>> 0) over a key:
 * - if frame.length >= 34 and ethertype (frame[12..14)) == 0x0800 and version (frame[14] >> 4) == 4
 *   and IHL (frame[14] & 0xf) >= 5 and 14 + IHL*4 <= frame.length:
 *   key = src ip (frame[26..30)), dst ip (frame[30..34)), protocol (frame[23]);
 *   and if protocol is 6 or 17 and (fragment offset field (frame[20..22) big-endian) & 0x1fff) == 0
 *   and 14 + IHL*4 + 4 <= frame.length, append the 4 port bytes frame[14+IHL*4 .. 14+IHL*4+4).
 * - otherwise key = frame[0..14) if frame.length >= 14, else the whole frame.
 *
 * The IPv4 total length and checksum are deliberately not consulted. Never throws.
 */

export const FNV1A32_OFFSET_BASIS = 0x811c9dc5;
export const FNV1A32_PRIME = 0x01000193;

/** Continues an FNV-1a 32-bit hash `h` over `bytes[start..end)`. */
export function fnv1a32(bytes: Uint8Array, start = 0, end = bytes.length, h = FNV1A32_OFFSET_BASIS): number {
  let x = h;
  for (let i = start; i < end; i++) {
    x ^= bytes[i];
    x = Math.imul(x, FNV1A32_PRIME) >>> 0;
  }
  return x;
}

export function flowHash(frame: Uint8Array): number {
  const n = frame.length;
  if (n >= 34 && frame[12] === 0x08 && frame[13] === 0x00 && frame[14] >> 4 === 4) {
    const ihl = frame[14] & 0x0f;
    const l4 = 14 + ihl * 4;
    if (ihl >= 5 && l4 <= n) {
      let h = fnv1a32(frame, 26, 34);
      h = fnv1a32(frame, 23, 24, h);
      const protocol = frame[23];
      const fragField = ((frame[20] << 8) | frame[21]) & 0x1fff;
      if ((protocol === 6 || protocol === 17) && fragField === 0 && l4 + 4 <= n) {
        h = fnv1a32(frame, l4, l4 + 4, h);
      }
      return h;
    }
  }
  return fnv1a32(frame, 0, n >= 14 ? 14 : n);
}
