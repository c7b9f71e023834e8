// Seed inputs for every target from captured traffic (pure: pcap bytes in, corpus files out). fuzz/record-seeds.ts
// makes the captures on real daemons; the framing of each seed is the one its target reads (fuzz/targets/*.cc).
import { createHash } from 'node:crypto';
import { readCapture } from '../dataplane/pcap/read-capture.ts';

export type Seeds = Map<string, Uint8Array[]>;

const VXLAN_PORT = 4789;
const LINK_PORT = 51830;
const ETH = 14;

const cat = (...parts: Array<Uint8Array | number[]>): Uint8Array => Buffer.concat(parts.map((p) => Buffer.from(p)));
const record = (b: Uint8Array): Uint8Array => cat([b.length >> 8, b.length & 0xff], b);
const virtioNone = (): number[] => new Array(10).fill(0);
/** virtio_net_hdr for a TCPv4 super-frame: needs-checksum, GSO TCPv4 at `mss`, checksum at the TCP header. */
function virtioTso(frame: Uint8Array, mss: number): number[] {
  const ihl = (frame[ETH] & 0x0f) * 4;
  const thl = (frame[ETH + ihl + 12] >> 4) * 4;
  const hdrLen = ETH + ihl + thl;
  const csumStart = ETH + ihl;
  const le = (v: number) => [v & 0xff, v >> 8];
  return [1, 1, ...le(hdrLen), ...le(mss), ...le(csumStart), ...le(16)];
}

interface Udp { src: number; dst: number; sport: number; dport: number; payload: Uint8Array }
function udpOf(frame: Uint8Array): Udp | undefined {
  if (frame.length < ETH + 28 || frame[12] !== 0x08 || frame[13] !== 0x00 || frame[ETH + 9] !== 17) return undefined;
  const ihl = (frame[ETH] & 0x0f) * 4;
  const u = ETH + ihl;
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  return { src: v.getUint32(ETH + 12), dst: v.getUint32(ETH + 16), sport: v.getUint16(u), dport: v.getUint16(u + 2), payload: frame.subarray(u + 8) };
}

/**
 * Seeds from one capture. `side`: 'underlay' (datagrams between hosts: VXLAN and link messages) or 'instance'
 * (Ethernet frames as an instance's TAP carried them; `gateway` marks frames to the NAT gateway's MAC).
 */
export function seedsFromCapture(bytes: Uint8Array, side: 'underlay' | 'instance', into: Seeds = new Map()): Seeds {
  const add = (target: string, b: Uint8Array) => {
    if (!into.has(target)) into.set(target, []);
    into.get(target)!.push(b);
  };
  const tcpRun: Uint8Array[] = [];
  for (const p of readCapture(bytes).packets) {
    const f = p.data;
    if (side === 'underlay') {
      const u = udpOf(f);
      if (!u) continue;
      if (u.dport === VXLAN_PORT) {
        add('underlay_rx', cat([0], u.payload));
        add('capture_bpf', cat([1], u.payload));
        const inner = u.payload.subarray(8);
        add('tun_port', cat([1], inner));
        add('punt', record(cat([1], inner)));
        if (inner.length > ETH && inner[12] === 0x08 && inner[13] === 0 && inner[ETH + 9] === 6) tcpRun.push(inner.subarray(ETH));
      } else if (u.dport === LINK_PORT || u.sport === LINK_PORT) {
        add('link_rx', record(cat([0], u.payload)));
        add('punt', record(cat([2, u.src & 0xff], u.payload)));
      }
      continue;
    }
    if (f.length < ETH) continue;
    const isIpv4 = f[12] === 0x08 && f[13] === 0x00;
    const tcp = isIpv4 && f.length > ETH + 20 && f[ETH + 9] === 6;
    const big = f.length > 1514;
    add('tap_tx', cat([0], tcp && big ? virtioTso(f, 1398) : virtioNone(), f));
    add('capture_bpf', cat([0], virtioNone(), f));
    if (!big) add('punt', record(cat([0], f)));
    if (isIpv4 && !big) {
      const ip = f.subarray(ETH);
      add('nat', record(cat([0], ip)));
      add('uplink_ingress', ip);
      add('tun_port', cat([0], ip));
    }
  }
  // Runs of TCP segments as they came off the wire, in the order they came: what GRO merges.
  for (let i = 0; i < tcpRun.length; i += 8) add('gro', cat(...tcpRun.slice(i, i + 8).map(record)));
  // A sealed-by-the-harness data message around each VXLAN datagram (link_rx's odd first byte, counter 1).
  for (const b of (into.get('underlay_rx') ?? []).slice(0, 64)) add('link_rx', record(cat([1, 0, 1], b.subarray(1))));
  return into;
}

/** Distinct seeds, named by content (as libFuzzer names corpus files), at most `max` per target. */
export function distinct(seeds: Seeds, max: number): Map<string, Map<string, Uint8Array>> {
  const out = new Map<string, Map<string, Uint8Array>>();
  for (const [target, list] of seeds) {
    const m = new Map<string, Uint8Array>();
    for (const b of list) {
      if (m.size >= max) break;
      m.set(createHash('sha1').update(b).digest('hex'), b);
    }
    out.set(target, m);
  }
  return out;
}
