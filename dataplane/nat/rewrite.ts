/**
 * The in-place rewrites of the NAT twin (twin of the helpers at the top of native/src/nat.cc): RFC 1624
 * incremental checksum updates of 16- and 32-bit fields, and the rewrite of the packet an ICMP error
 * quotes. Offsets are from the start of `p`, the IPv4 packet. Pure; nothing allocates but `Sum`s.
 */

/** A checksum field a rewrite keeps correct; a UDP checksum of 0 ("none sent") stays 0. */
export interface Sum {
  at: number;
  udp: boolean;
}

export const rd16 = (p: Uint8Array, at: number): number => (p[at] << 8) | p[at + 1];
export const rd32 = (p: Uint8Array, at: number): number => ((p[at] << 24) | (p[at + 1] << 16) | (p[at + 2] << 8) | p[at + 3]) >>> 0;
function wr16(p: Uint8Array, at: number, v: number): void {
  p[at] = v >> 8;
  p[at + 1] = v;
}

/** RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), for one word changing from `o` to `n`. */
function fix16(p: Uint8Array, s: Sum | null, o: number, n: number): void {
  if (s === null || o === n) return;
  let c = rd16(p, s.at);
  if (s.udp && c === 0) return;
  let x = (~c & 0xffff) + (~o & 0xffff) + n;
  while (x >> 16) x = (x & 0xffff) + (x >> 16);
  c = ~x & 0xffff;
  if (s.udp && c === 0) c = 0xffff; // RFC 768: a computed 0 is sent as all ones
  wr16(p, s.at, c);
}

/** Writes `v` at `field`, updating each checksum that covers it. */
export function put16(p: Uint8Array, field: number, v: number, ...sums: (Sum | null)[]): void {
  const o = rd16(p, field);
  for (const s of sums) fix16(p, s, o, v);
  wr16(p, field, v);
}

export function put32(p: Uint8Array, field: number, v: number, ...sums: (Sum | null)[]): void {
  put16(p, field, v >>> 16, ...sums);
  put16(p, field + 2, v & 0xffff, ...sums);
}

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

/** The checksum of an L4 header at `l4` with `n` bytes, if the header is long enough to hold it. */
export function l4Sum(proto: number, l4: number, n: number): Sum | null {
  if (proto === PROTO_TCP && n >= 18) return { at: l4 + 16, udp: false };
  if (proto === PROTO_UDP && n >= 8) return { at: l4 + 6, udp: true };
  if (proto === PROTO_ICMP && n >= 4) return { at: l4 + 2, udp: false };
  return null;
}

export const ihlOf = (p: Uint8Array, ip: number): number => (p[ip] & 0x0f) * 4;
/** MF set or a non-zero offset. */
export const isFragment = (p: Uint8Array, ip: number): boolean => (rd16(p, ip + 6) & 0x3fff) !== 0;
export const laterFragment = (p: Uint8Array, ip: number): boolean => (rd16(p, ip + 6) & 0x1fff) !== 0;

/**
 * The offset of the packet quoted by the ICMP error at `icmp` (`m` bytes): an IPv4 header and at least
 * 8 bytes of its payload (all RFC 792 guarantees), or -1 if the quote is shorter or not IPv4.
 */
export function quoteOf(p: Uint8Array, icmp: number, m: number): number {
  if (m < 8 + 20) return -1;
  const q = icmp + 8;
  const iihl = ihlOf(p, q);
  if (p[q] >> 4 !== 4 || iihl < 20 || 8 + iihl + 8 > m) return -1;
  return q;
}

/**
 * Rewrites the quote inside an ICMP error: its source (`srcSide`) or destination address to `addr` and,
 * when `port >= 0`, the matching port (or echo id). The quote's IP and L4 checksums and the ICMP
 * checksum, which covers both, stay correct. `icmp` must have a quote (quoteOf).
 */
export function rewriteQuote(p: Uint8Array, icmp: number, m: number, srcSide: boolean, addr: number, port: number): void {
  const q = icmp + 8;
  const iihl = ihlOf(p, q);
  const proto = p[q + 9];
  const il4 = q + iihl;
  const icmpc: Sum = { at: icmp + 2, udp: false };
  const ipc: Sum = { at: q + 10, udp: false };
  const l4c = laterFragment(p, q) ? null : l4Sum(proto, il4, m - 8 - iihl);
  const ipc0 = rd16(p, q + 10);
  const l4c0 = l4c ? rd16(p, l4c.at) : 0;
  put32(p, q + (srcSide ? 12 : 16), addr, ipc, proto === PROTO_ICMP ? null : l4c, icmpc);
  if (port >= 0) put16(p, proto === PROTO_ICMP ? il4 + 4 : il4 + (srcSide ? 0 : 2), port, l4c, icmpc);
  fix16(p, icmpc, ipc0, rd16(p, q + 10));
  if (l4c) fix16(p, icmpc, l4c0, rd16(p, l4c.at));
}
