/**
 * RFC 1071 internet checksum, with the incremental pieces the codecs and NAT rewriting need.
 *
 * A *sum* is an unfolded accumulator (a non-negative integer below 2^53) of big-endian 16-bit words.
 * Sums of separate ranges add up as long as every range except the last has even length: an odd range
 * pads its final byte with a zero low byte, exactly as RFC 1071 pads the whole message.
 * `finishChecksum(sum)` folds and complements a sum into the 16-bit value written on the wire.
 * A received header verifies when the checksum over it (checksum field included) is 0.
 */

/**
 * Adds the big-endian 16-bit words of `bytes[start..end)` to `initial` and returns the unfolded sum.
 * Safe for ranges up to 2^36 bytes.
 */
export function sumBytes(bytes: Uint8Array, start = 0, end = bytes.length, initial = 0): number {
  let sum = initial;
  let i = start;
  const evenEnd = end - ((end - start) & 1);
  for (; i < evenEnd; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (i < end) sum += bytes[i] << 8;
  return sum;
}

/** Adds one 16-bit word to a sum. */
export function sumWord(sum: number, word: number): number {
  return sum + (word & 0xffff);
}

/** Adds a 32-bit value (e.g. an IPv4 address) as two 16-bit words. */
export function sumU32(sum: number, value: number): number {
  return sum + (value >>> 16) + (value & 0xffff);
}

/** Folds a sum into 16 bits with end-around carry (the ones'-complement sum, not yet complemented). */
export function foldSum(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
  return s;
}

/** Folds and complements a sum: the 16-bit checksum to put on the wire. */
export function finishChecksum(sum: number): number {
  return ~foldSum(sum) & 0xffff;
}

/**
 * The internet checksum of `bytes[start..end)`: the value to store in a zeroed checksum field, or 0 when
 * computed over a range that already contains a correct checksum.
 */
export function internetChecksum(bytes: Uint8Array, start = 0, end = bytes.length): number {
  return finishChecksum(sumBytes(bytes, start, end));
}

/**
 * The unfolded sum of the IPv4 pseudo-header used by UDP and TCP (RFC 768, RFC 793): source and
 * destination address (uint32), zero, protocol, and the transport length (header plus payload).
 */
export function ipv4PseudoHeaderSum(src: number, dst: number, protocol: number, length: number): number {
  return sumU32(sumU32(0, src), dst) + (protocol & 0xff) + (length & 0xffff);
}

/**
 * RFC 1624 (eqn. 3) update of a stored checksum when one 16-bit word changes from `oldWord` to `newWord`:
 * HC' = ~(~HC + ~m + m'). Gives the same result as recomputing from scratch except that a recomputation
 * yielding 0xffff may appear here as 0x0000 and vice versa (both verify).
 */
export function updateChecksum16(checksum: number, oldWord: number, newWord: number): number {
  return finishChecksum((~checksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff));
}

/** As `updateChecksum16` for a 32-bit field such as an IPv4 address. */
export function updateChecksum32(checksum: number, oldValue: number, newValue: number): number {
  const sum = (~checksum & 0xffff)
    + (~(oldValue >>> 16) & 0xffff) + (~oldValue & 0xffff)
    + (newValue >>> 16) + (newValue & 0xffff);
  return finishChecksum(sum);
}
