/**
 * Receive-side coalescing (GRO) in software, the TypeScript twin of native/src/gro.h (the engine
 * runs the native one; the differential test holds them byte-identical).
 *
 * `coalesce(frames)` takes the frames one RX batch delivers to one TAP port, in order, and returns
 * the writes the engine makes: runs of consecutive TCP/IPv4 segments of one flow become one
 * super-frame (the first segment's headers, then every payload; IPv4 total length and header checksum
 * fixed; the TCP checksum field holding the pseudo-header sum) with a GSO TCPv4 virtio_net_hdr; runs
 * of UDP/IPv4 datagrams of one flow become one with a GSO UDP_L4 header (UDP length fixed too); every
 * other frame is written as it came, after whatever was pending.
 *
 * A frame may be in a super-frame at all when it is Ethernet + IPv4 without options, not a fragment,
 * with an IP total length equal to the frame's, TCP flags ACK or ACK|PSH, a payload, and valid IPv4
 * header and TCP checksums (the super-frame's checksum goes up marked partial, which the receiving
 * kernel trusts). It may follow the super-frame so far when the Ethernet header, addresses and ports
 * match; TOS, TTL and IP flags match and, without DF, its IP id is one past the previous segment's;
 * ack, window, TCP header length and option bytes match; its seq is the next byte; the last segment so
 * far had no PSH and was not shorter than the first (gso_size); it is no larger than gso_size; and the
 * whole stays within 65535 IP bytes. A UDP datagram may be in one when the same Ethernet and IPv4 rules
 * hold, its UDP length is the IP payload's, it has a payload and a checksum that is not zero and
 * verifies; it follows when protocol, flow and IP fields match, none before it was shorter than the
 * first, it is no larger, and the whole stays within 65535 IP bytes and 64 datagrams.
 * `steps[i]` says what became of frame i, with the rule's name.
 */
import { finishChecksum, foldSum, ipv4PseudoHeaderSum, sumBytes } from './checksum.ts';

const ETH = 14;
const IP_MAX = 65535;
const ACK = 0x10;
const PSH = 0x08;
const UDP_MAX_SEGS = 64;

/** Why a frame did not join the super-frame before it (names shared with native/src/gro.h). */
export type GroRule =
  | 'not_ipv4' | 'ip_options' | 'fragment' | 'not_tcp_udp' | 'bad_length' | 'tcp_flags' | 'no_payload' | 'bad_checksum' | 'no_checksum'
  | 'flow' | 'ip_fields' | 'tcp_header' | 'seq' | 'psh_ended' | 'short_ended' | 'larger' | 'too_big' | 'too_many';
/** Rules that keep a frame out of any super-frame; the others end the one before it. */
export const GRO_CANDIDATE_RULES: readonly GroRule[] = ['not_ipv4', 'ip_options', 'fragment', 'not_tcp_udp', 'bad_length', 'tcp_flags', 'no_payload', 'bad_checksum', 'no_checksum'];
/** 'merged': joined the super-frame before it; 'first': started one with nothing pending. */
export type GroStep = 'merged' | 'first' | GroRule;

/** struct virtio_net_hdr as the engine writes it before a frame. */
export interface VnetHeader { flags: number; gsoType: number; hdrLen: number; gsoSize: number; csumStart: number; csumOffset: number }
export const VNET_NEEDS_CSUM = 1;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_UDP_L4 = 5;
const PLAIN: VnetHeader = { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };

export interface GroWrite { frame: Uint8Array; vnet: VnetHeader; segments: number }
export interface GroResult { writes: GroWrite[]; steps: GroStep[] }

const u16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const u32 = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
function put16(b: Uint8Array, o: number, v: number): void { b[o] = (v >> 8) & 0xff; b[o + 1] = v & 0xff; }
function same(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

interface Segment { f: Uint8Array; proto: 6 | 17; thl: number; payload: number; seq: number; psh: boolean }

function udpCandidate(f: Uint8Array): Segment | GroRule {
  if (u16(f, ETH + 2) !== f.length - ETH || f.length < ETH + 28) return 'bad_length';
  const u = ETH + 20;
  const l4 = f.length - u;
  if (u16(f, u + 4) !== l4) return 'bad_length';
  if (l4 === 8) return 'no_payload';
  if (u16(f, u + 6) === 0) return 'no_checksum';
  const pseudo = ipv4PseudoHeaderSum(u32(f, ETH + 12), u32(f, ETH + 16), 17, l4);
  if (finishChecksum(sumBytes(f, ETH, u)) !== 0 || finishChecksum(sumBytes(f, u, f.length, pseudo)) !== 0) return 'bad_checksum';
  return { f, proto: 17, thl: 8, payload: l4 - 8, seq: 0, psh: false };
}

/** The segment, or the rule that keeps it out of any super-frame. */
export function groCandidate(f: Uint8Array): Segment | GroRule {
  if (f.length < ETH + 20 || u16(f, 12) !== 0x0800 || f[ETH] >> 4 !== 4) return 'not_ipv4';
  if ((f[ETH] & 0x0f) !== 5) return 'ip_options';
  if ((u16(f, ETH + 6) & 0x3fff) !== 0) return 'fragment';
  if (f[ETH + 9] === 17) return udpCandidate(f);
  if (f[ETH + 9] !== 6) return 'not_tcp_udp';
  if (u16(f, ETH + 2) !== f.length - ETH || f.length < ETH + 40) return 'bad_length';
  const t = ETH + 20;
  const thl = (f[t + 12] >> 4) * 4;
  if (thl < 20 || t + thl > f.length) return 'bad_length';
  if ((f[t + 13] !== ACK && f[t + 13] !== (ACK | PSH)) || (f[t + 12] & 0x0f) !== 0) return 'tcp_flags';
  const l4 = f.length - t;
  if (l4 === thl) return 'no_payload';
  const pseudo = ipv4PseudoHeaderSum(u32(f, ETH + 12), u32(f, ETH + 16), 6, l4);
  if (finishChecksum(sumBytes(f, ETH, t)) !== 0 || finishChecksum(sumBytes(f, t, f.length, pseudo)) !== 0) return 'bad_checksum';
  return { f, proto: 6, thl, payload: l4 - thl, seq: u32(f, t + 4), psh: (f[t + 13] & PSH) !== 0 };
}

/** A super-frame under construction (see native GroFrame). */
class SuperFrame {
  readonly head: Uint8Array;
  readonly payloads: Uint8Array[] = [];
  len: number;
  readonly gsoSize: number;
  nextSeq: number;
  lastId: number;
  ended: GroRule | null;
  readonly hlen: number;
  readonly proto: 6 | 17;

  constructor(s: Segment) {
    this.proto = s.proto;
    this.head = Uint8Array.from(s.f.subarray(0, s.f.length - s.payload));
    this.hlen = this.head.length;
    this.payloads.push(s.f.subarray(this.hlen));
    this.len = s.f.length;
    this.gsoSize = s.payload;
    this.nextSeq = (s.seq + s.payload) >>> 0;
    this.lastId = u16(s.f, ETH + 4);
    this.ended = s.psh ? 'psh_ended' : null;
  }

  check(s: Segment): GroRule | null {
    const h = this.head;
    const f = s.f;
    if (!same(h, 0, f, 0, ETH) || h[ETH + 9] !== f[ETH + 9] || !same(h, ETH + 12, f, ETH + 12, 8) || !same(h, ETH + 20, f, ETH + 20, 4)) return 'flow';
    const df = (f[ETH + 6] & 0x40) !== 0;
    if (h[ETH + 1] !== f[ETH + 1] || h[ETH + 8] !== f[ETH + 8] || h[ETH + 6] !== f[ETH + 6] ||
      (!df && u16(f, ETH + 4) !== ((this.lastId + 1) & 0xffff))) return 'ip_fields';
    if (this.proto === 6) {
      const t = ETH + 20;
      if (t + s.thl !== this.hlen || !same(h, t + 8, f, t + 8, 5) || !same(h, t + 14, f, t + 14, 2) ||
        !same(h, t + 20, f, t + 20, s.thl - 20)) return 'tcp_header';
      if (s.seq !== this.nextSeq) return 'seq';
    }
    if (this.ended) return this.ended;
    if (s.payload > this.gsoSize) return 'larger';
    if (this.len - ETH + s.payload > IP_MAX) return 'too_big';
    if (this.proto === 17 && this.payloads.length >= UDP_MAX_SEGS) return 'too_many';
    return null;
  }

  append(s: Segment): void {
    this.payloads.push(s.f.subarray(s.f.length - s.payload));
    this.len += s.payload;
    this.nextSeq = (this.nextSeq + s.payload) >>> 0;
    this.lastId = u16(s.f, ETH + 4);
    if (this.proto === 6 && s.psh) {
      this.head[ETH + 20 + 13] |= PSH;
      this.ended = 'psh_ended';
    } else if (s.payload < this.gsoSize) {
      this.ended = 'short_ended';
    }
  }

  finish(): GroWrite {
    const out = new Uint8Array(this.len);
    out.set(this.head);
    let o = this.hlen;
    for (const p of this.payloads) { out.set(p, o); o += p.length; }
    const segments = this.payloads.length;
    if (segments < 2) return { frame: out, vnet: PLAIN, segments };
    put16(out, ETH + 2, this.len - ETH);
    put16(out, ETH + 10, 0);
    put16(out, ETH + 10, finishChecksum(sumBytes(out, ETH, ETH + 20)));
    const l4 = this.len - ETH - 20;
    if (this.proto === 17) put16(out, ETH + 20 + 4, l4);
    const pseudo = ipv4PseudoHeaderSum(u32(out, ETH + 12), u32(out, ETH + 16), this.proto, l4);
    // The uncomplemented, folded pseudo-header sum: the kernel adds the rest and complements.
    const csumOffset = this.proto === 17 ? 6 : 16;
    put16(out, ETH + 20 + csumOffset, foldSum(pseudo));
    const gsoType = this.proto === 17 ? VNET_GSO_UDP_L4 : VNET_GSO_TCPV4;
    const vnet = { flags: VNET_NEEDS_CSUM, gsoType, hdrLen: this.hlen, gsoSize: this.gsoSize, csumStart: ETH + 20, csumOffset };
    return { frame: out, vnet, segments };
  }
}

/** The writes one RX batch of `frames` to one TAP port becomes (see the file comment). */
export function coalesce(frames: readonly Uint8Array[]): GroResult {
  const writes: GroWrite[] = [];
  const steps: GroStep[] = [];
  let pending: SuperFrame | null = null;
  const flush = () => {
    if (pending) writes.push(pending.finish());
    pending = null;
  };
  for (const f of frames) {
    const s = groCandidate(f);
    if (typeof s === 'string') {
      flush();
      writes.push({ frame: Uint8Array.from(f), vnet: PLAIN, segments: 1 });
      steps.push(s);
      continue;
    }
    let step: GroStep = 'first';
    if (pending) {
      const why = (pending as SuperFrame).check(s);
      if (!why) {
        (pending as SuperFrame).append(s);
        steps.push('merged');
        continue;
      }
      step = why;
      flush();
    }
    pending = new SuperFrame(s);
    steps.push(step);
  }
  flush();
  return { writes, steps };
}
