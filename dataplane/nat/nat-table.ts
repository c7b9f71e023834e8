/**
 * TypeScript twin of the native NAT core (native/src/nat.{h,cc}): the same source NAT with port
 * translation, 1:1 NAT and conntrack, the same in-place rewrites and checksum updates, the same verdicts,
 * drop reasons, flow states, timers, port choices and counters. It exists so that test/132 can require
 * identical output from both for the same packets (DESIGN.md: every native per-packet transform has a
 * TypeScript twin); it is not on any packet path.
 *
 * What the twin does not copy is how flows are indexed (the native table's linear-probing index): flows
 * live in two Maps here, so `flows()` lists them in creation order rather than by table slot; compare
 * listings sorted. The public surface matches dataplane/nat.ts's NatTable, whose types it shares.
 */
import type {
  FloatRuleSpec, NatDirection, NatDropReason, NatFlow, NatRuleCounters, NatStats, NatTcpState, NatTimeouts, NatVerdict,
  SnatRuleSpec,
} from '../nat.ts';
import { ihlOf, isFragment, l4Sum, laterFragment, PROTO_ICMP, PROTO_TCP, PROTO_UDP, put16, put32, quoteOf, rd16, rd32, rewriteQuote } from './rewrite.ts';

const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;
const ECHO_REPLY = 0;
const ECHO_REQUEST = 8;
/** External ports tried for one new flow before giving up (kMaxProbes). */
const MAX_PROBES = 256;
const MAX_VNI = 0xffffff;
const TCP_STATES: readonly NatTcpState[] = ['none', 'syn_sent', 'syn_recv', 'established', 'fin_wait', 'last_ack', 'time_wait', 'close'];
const [NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, LAST_ACK, TIME_WAIT, CLOSE] = [0, 1, 2, 3, 4, 5, 6, 7];

const isIcmpError = (type: number): boolean => type === 3 || type === 11 || type === 12;
const maskOf = (prefix: number): number => (prefix ? (~0 << (32 - prefix)) >>> 0 : 0);

const M64 = (1n << 64n) - 1n;
/** murmur3's 64-bit finaliser, as the native table mixes its seed into port choices. */
function mix(x: bigint): bigint {
  x ^= x >> 33n;
  x = (x * 0xff51afd7ed558ccdn) & M64;
  x ^= x >> 33n;
  x = (x * 0xc4ceb9fe1a85ec53n) & M64;
  return x ^ (x >> 33n);
}

interface Flow {
  vni: number; proto: number; inside: number; insidePort: number; remote: number; remotePort: number;
  external: number; externalPort: number; tcpState: number; fins: number; seenReply: boolean; expiresMs: number;
  /** TCP: the inside's last acknowledgment number, once it sent one (NatTable::touch's RST window). */
  ackOut: number; ackKnown: boolean;
}
const RST_WINDOW_AHEAD = 2 ** 20;
const RST_WINDOW_BEHIND = 2 ** 16;
interface Snat { r: Required<SnatRuleSpec>; c: NatRuleCounters }
interface Float { r: FloatRuleSpec; c: NatRuleCounters }

const counters = (): NatRuleCounters => ({ egressPackets: 0, egressBytes: 0, ingressPackets: 0, ingressBytes: 0 });
const egressKey = (vni: number, proto: number, inside: number, inPort: number, remote: number, remPort: number): string =>
  `${vni}/${proto}/${inside}/${inPort}/${remote}/${remPort}`;
const ingressKey = (proto: number, external: number, extPort: number, remote: number, remPort: number): string =>
  `${proto}/${external}/${extPort}/${remote}/${remPort}`;

export class NatTableTwin {
  private readonly egressIdx = new Map<string, Flow>();
  private readonly ingressIdx = new Map<string, Flow>();
  private readonly snat = new Map<number, Snat[]>();
  private readonly snatExternal = new Map<number, number>();
  private readonly floats = new Map<number, Float>();
  private readonly floatByInside = new Map<string, number>();
  private readonly s: NatStats;

  constructor(private readonly capacity: number, private readonly t: NatTimeouts, private readonly seed: bigint) {
    if (capacity < 1 || capacity > 1 << 24) throw new RangeError('capacity must be in 1..16777216 flows');
    const drops = Object.fromEntries(['truncated_ip', 'bad_ip_header', 'truncated_l4', 'fragment', 'unsupported', 'no_flow',
      'conntrack_full', 'ports_exhausted', 'invalid_tcp'].map((r) => [r, 0])) as Record<NatDropReason, number>;
    this.s = { drops, translated: { egress: 0, ingress: 0 }, passthrough: { egress: 0, ingress: 0 }, flowsCreated: 0,
      flowsExpired: 0, flowsFlushed: 0, entries: 0, capacity };
  }

  // ---- rules (same checks and messages as NatTable::add_snat / add_float) ----

  addSnat(spec: SnatRuleSpec): void {
    const r = { portMin: 1024, portMax: 65535, ...spec };
    if (r.vni > MAX_VNI) throw new RangeError(`snat vni ${r.vni} exceeds 24 bits`);
    if (r.prefix > 32) throw new RangeError(`snat prefix ${r.prefix} is not in 0..32`);
    if ((r.insideNet & ~maskOf(r.prefix)) !== 0) throw new RangeError('snat inside network has host bits set');
    if (r.external === 0) throw new RangeError('snat external address must not be 0.0.0.0');
    if (r.portMin === 0 || r.portMin > r.portMax) {
      throw new RangeError(`snat port range ${r.portMin}..${r.portMax} must be non-empty and start at 1 or above`);
    }
    if (this.floats.has(r.external)) throw new RangeError('snat external address is a floating address');
    const list = this.snat.get(r.vni) ?? [];
    if (list.some((s) => s.r.insideNet === r.insideNet && s.r.prefix === r.prefix)) {
      throw new RangeError('snat rule for this vni and inside network exists; remove it first');
    }
    list.push({ r, c: counters() });
    this.snat.set(r.vni, list);
    this.snatExternal.set(r.external, (this.snatExternal.get(r.external) ?? 0) + 1);
  }

  removeSnat(vni: number, insideNet: number, prefix: number): boolean {
    const list = this.snat.get(vni);
    const i = list?.findIndex((s) => s.r.insideNet === insideNet && s.r.prefix === prefix) ?? -1;
    if (!list || i < 0) return false;
    const ext = list[i].r.external;
    const m = maskOf(prefix);
    for (const f of this.egressIdx.values()) {
      if (f.vni === vni && f.external === ext && ((f.inside & m) >>> 0) === insideNet) {
        this.remove(f);
        this.s.flowsFlushed++;
      }
    }
    list.splice(i, 1);
    if (list.length === 0) this.snat.delete(vni);
    const users = (this.snatExternal.get(ext) ?? 1) - 1;
    if (users === 0) this.snatExternal.delete(ext);
    else this.snatExternal.set(ext, users);
    return true;
  }

  addFloat(r: FloatRuleSpec): void {
    if (r.vni > MAX_VNI) throw new RangeError(`float vni ${r.vni} exceeds 24 bits`);
    if (r.external === 0 || r.inside === 0) throw new RangeError('float addresses must not be 0.0.0.0');
    if (this.floats.has(r.external) || this.snatExternal.has(r.external)) {
      throw new RangeError('float external address is already in use by a float or a snat rule');
    }
    if (this.floatByInside.has(`${r.vni}/${r.inside}`)) throw new RangeError('float inside address is already floated on this vni');
    this.floats.set(r.external, { r: { ...r }, c: counters() });
    this.floatByInside.set(`${r.vni}/${r.inside}`, r.external);
  }

  removeFloat(external: number): boolean {
    const f = this.floats.get(external);
    if (!f) return false;
    this.floatByInside.delete(`${f.r.vni}/${f.r.inside}`);
    this.floats.delete(external);
    return true;
  }

  // ---- flows ----

  private remove(f: Flow): void {
    this.egressIdx.delete(egressKey(f.vni, f.proto, f.inside, f.insidePort, f.remote, f.remotePort));
    this.ingressIdx.delete(ingressKey(f.proto, f.external, f.externalPort, f.remote, f.remotePort));
    this.s.entries--;
  }

  /** A flow idle past its timeout is gone, even if not swept yet. */
  private live(f: Flow | undefined, now: number): Flow | undefined {
    if (f && now >= f.expiresMs) {
      this.remove(f);
      this.s.flowsExpired++;
      return undefined;
    }
    return f;
  }

  private findEgress(vni: number, proto: number, inside: number, inPort: number, remote: number, remPort: number, now: number): Flow | undefined {
    return this.live(this.egressIdx.get(egressKey(vni, proto, inside, inPort, remote, remPort)), now);
  }

  private findIngress(proto: number, external: number, extPort: number, remote: number, remPort: number, now: number): Flow | undefined {
    return this.live(this.ingressIdx.get(ingressKey(proto, external, extPort, remote, remPort)), now);
  }

  /** A new flow, keeping the inside port when it is free towards the remote, else probing from a seeded start. */
  private create(s: Snat, vni: number, proto: number, inside: number, inPort: number, remote: number, remPort: number, now: number): Flow | NatDropReason {
    if (this.s.entries >= this.capacity) return 'conntrack_full';
    const r = s.r;
    const range = r.portMax - r.portMin + 1;
    const isFree = (p: number): boolean => this.findIngress(proto, r.external, p, remote, remPort, now) === undefined;
    let port = -1;
    if (inPort >= r.portMin && inPort <= r.portMax && isFree(inPort)) {
      port = inPort;
    } else {
      const key = this.seed ^ ((BigInt(inside) << 32n) | BigInt(remote)) ^ ((BigInt(inPort) << 48n) | BigInt(remPort));
      const start = Number(mix(key) % BigInt(range));
      const tries = Math.min(range, MAX_PROBES);
      for (let i = 0; i < tries && port < 0; i++) {
        const p = r.portMin + ((start + i) % range);
        if (isFree(p)) port = p;
      }
    }
    if (port < 0) return 'ports_exhausted';
    const f: Flow = { vni, proto, inside, insidePort: inPort, remote, remotePort: remPort, external: r.external, externalPort: port,
      tcpState: NONE, fins: 0, seenReply: false, expiresMs: now, ackOut: 0, ackKnown: false };
    this.egressIdx.set(egressKey(vni, proto, inside, inPort, remote, remPort), f);
    this.ingressIdx.set(ingressKey(proto, r.external, port, remote, remPort), f);
    this.s.entries++;
    this.s.flowsCreated++;
    return f;
  }

  sweep(now: number): number {
    let n = 0;
    for (const f of [...this.egressIdx.values()]) {
      if (now >= f.expiresMs) {
        this.remove(f);
        n++;
      }
    }
    this.s.flowsExpired += n;
    return n;
  }

  private timeoutS(f: Flow): number {
    if (f.proto === PROTO_UDP) return f.seenReply ? this.t.udpAssured : this.t.udp;
    if (f.proto === PROTO_ICMP) return this.t.icmp;
    const t = this.t;
    return [t.tcpClose, t.tcpSynSent, t.tcpSynRecv, t.tcpEstablished, t.tcpFinWait, t.tcpLastAck, t.tcpTimeWait, t.tcpClose][f.tcpState];
  }

  /** Linux's TCP conntrack transitions without its window tracking, an ingress RST only near the inside's last ACK (NatTable::touch), then the timer. */
  private touch(f: Flow, dir: NatDirection, p: Uint8Array, l4: number, now: number): void {
    const flags = p[l4 + 13]!;
    if (dir === 'ingress') f.seenReply = true;
    if (f.proto === PROTO_TCP) {
      const s = f.tcpState;
      const rd32 = (at: number) => ((p[at]! << 24) | (p[at + 1]! << 16) | (p[at + 2]! << 8) | p[at + 3]!) >>> 0;
      if (dir === 'egress' && (flags & ACK)) {
        f.ackOut = rd32(l4 + 8);
        f.ackKnown = true;
      }
      if (flags & RST) {
        const seq = rd32(l4 + 4);
        const near = !f.ackKnown || ((seq - f.ackOut) >>> 0) < RST_WINDOW_AHEAD || ((f.ackOut - seq) >>> 0) < RST_WINDOW_BEHIND;
        if (dir === 'egress' || near) f.tcpState = CLOSE;
      } else if ((flags & SYN) && !(flags & ACK)) {
        if (dir === 'egress' && (s === NONE || s === TIME_WAIT || s === CLOSE)) {
          f.tcpState = SYN_SENT;
          f.fins = 0;
        }
      } else if (flags & SYN) {
        if (dir === 'ingress' && s === SYN_SENT) f.tcpState = SYN_RECV;
      } else if (flags & FIN) {
        f.fins |= dir === 'egress' ? 1 : 2;
        const next = f.fins === 3 ? LAST_ACK : FIN_WAIT;
        if (s < next) f.tcpState = next;
      } else if (flags & ACK) {
        if (s === NONE) f.tcpState = ESTABLISHED;
        else if (s === SYN_RECV && dir === 'egress') f.tcpState = ESTABLISHED;
        else if (s === LAST_ACK) f.tcpState = TIME_WAIT;
      }
    }
    f.expiresMs = now + this.timeoutS(f) * 1000;
  }

  private snatFor(vni: number, src: number): Snat | undefined {
    let best: Snat | undefined;
    for (const s of this.snat.get(vni) ?? []) {
      if (((src & maskOf(s.r.prefix)) >>> 0) === s.r.insideNet && (!best || s.r.prefix > best.r.prefix)) best = s;
    }
    return best;
  }

  private countSnat(vni: number, external: number, dir: NatDirection, bytes: number): void {
    const s = this.snat.get(vni)?.find((x) => x.r.external === external);
    if (!s) return;
    if (dir === 'egress') s.c.egressPackets++, s.c.egressBytes += bytes;
    else s.c.ingressPackets++, s.c.ingressBytes += bytes;
  }

  private drop(reason: NatDropReason): NatVerdict {
    this.s.drops[reason]++;
    return { action: 'drop', reason, vni: 0 };
  }

  // ---- translation ----

  /** Translates the IPv4 packet in `p` in place; `vni` is the network an egress packet comes from. */
  translate(dir: NatDirection, vni: number, p: Uint8Array, now: number): NatVerdict {
    if (p.length < 20) return this.drop('truncated_ip');
    const ihl = ihlOf(p, 0);
    if (p[0] >> 4 !== 4 || ihl < 20) return this.drop('bad_ip_header');
    if (ihl > p.length) return this.drop('truncated_ip');
    const total = rd16(p, 2);
    if (total < ihl) return this.drop('bad_ip_header');
    if (total > p.length) return this.drop('truncated_ip');
    const v = dir === 'egress' ? this.egress(vni, p, total, now) : this.ingress(p, total, now);
    if (v.action === 'translated') this.s.translated[dir]++;
    if (v.action === 'passthrough') this.s.passthrough[dir]++;
    return v;
  }

  private egress(vni: number, p: Uint8Array, n: number, now: number): NatVerdict {
    const src = rd32(p, 12);
    const dst = rd32(p, 16);
    const floated = this.floatByInside.get(`${vni}/${src}`);
    if (floated !== undefined) return this.floated('egress', this.floats.get(floated)!, p, n);
    const s = this.snatFor(vni, src);
    if (!s) return { action: 'passthrough', reason: 'none', vni };
    if (isFragment(p, 0)) return this.drop('fragment');
    const proto = p[9];
    const l4 = ihlOf(p, 0);
    const m = n - l4;
    let inPort = 0;
    let remPort = 0;
    if (proto === PROTO_TCP || proto === PROTO_UDP) {
      if (m < (proto === PROTO_TCP ? 20 : 8)) return this.drop('truncated_l4');
      inPort = rd16(p, l4);
      remPort = rd16(p, l4 + 2);
    } else if (proto === PROTO_ICMP) {
      if (m < 8) return this.drop('truncated_l4');
      if (isIcmpError(p[l4])) return this.icmpError('egress', vni, p, n, now);
      if (p[l4] !== ECHO_REQUEST) return this.drop('unsupported');
      inPort = rd16(p, l4 + 4);
    } else {
      return this.drop('unsupported');
    }
    let f = this.findEgress(vni, proto, src, inPort, dst, remPort, now);
    if (!f) {
      if (proto === PROTO_TCP && ((p[l4 + 13] & RST) || !(p[l4 + 13] & (SYN | ACK)))) return this.drop('invalid_tcp');
      const made = this.create(s, vni, proto, src, inPort, dst, remPort, now);
      if (typeof made === 'string') return this.drop(made);
      f = made;
    }
    this.touch(f, 'egress', p, l4, now);
    const l4c = l4Sum(proto, l4, m);
    put32(p, 12, f.external, { at: 10, udp: false }, proto === PROTO_ICMP ? null : l4c);
    put16(p, proto === PROTO_ICMP ? l4 + 4 : l4, f.externalPort, l4c);
    s.c.egressPackets++;
    s.c.egressBytes += n;
    return { action: 'translated', reason: 'none', vni };
  }

  private ingress(p: Uint8Array, n: number, now: number): NatVerdict {
    const src = rd32(p, 12);
    const dst = rd32(p, 16);
    const fl = this.floats.get(dst);
    if (fl) return this.floated('ingress', fl, p, n);
    if (!this.snatExternal.has(dst)) return { action: 'passthrough', reason: 'none', vni: 0 };
    if (isFragment(p, 0)) return this.drop('fragment');
    const proto = p[9];
    const l4 = ihlOf(p, 0);
    const m = n - l4;
    let extPort = 0;
    let remPort = 0;
    if (proto === PROTO_TCP || proto === PROTO_UDP) {
      if (m < (proto === PROTO_TCP ? 20 : 8)) return this.drop('truncated_l4');
      remPort = rd16(p, l4);
      extPort = rd16(p, l4 + 2);
    } else if (proto === PROTO_ICMP) {
      if (m < 8) return this.drop('truncated_l4');
      if (isIcmpError(p[l4])) return this.icmpError('ingress', 0, p, n, now);
      if (p[l4] !== ECHO_REPLY) return this.drop('no_flow');
      extPort = rd16(p, l4 + 4);
    } else {
      return this.drop('unsupported');
    }
    const f = this.findIngress(proto, dst, extPort, src, remPort, now);
    if (!f) return this.drop('no_flow');
    this.touch(f, 'ingress', p, l4, now);
    const l4c = l4Sum(proto, l4, m);
    put32(p, 16, f.inside, { at: 10, udp: false }, proto === PROTO_ICMP ? null : l4c);
    put16(p, proto === PROTO_ICMP ? l4 + 4 : l4 + 2, f.insidePort, l4c);
    this.countSnat(f.vni, dst, 'ingress', n);
    return { action: 'translated', reason: 'none', vni: f.vni };
  }

  /** An ICMP error quoting a packet of a tracked flow: outer address and quote translated, timer untouched. */
  private icmpError(dir: NatDirection, vni: number, p: Uint8Array, n: number, now: number): NatVerdict {
    const icmp = ihlOf(p, 0);
    const m = n - icmp;
    const q = quoteOf(p, icmp, m);
    if (q < 0) return this.drop('truncated_l4');
    const proto = p[q + 9];
    const il4 = q + ihlOf(p, q);
    if (laterFragment(p, q)) return this.drop('no_flow');
    const isrc = rd32(p, q + 12);
    const idst = rd32(p, q + 16);
    let sport: number;
    let dport: number;
    if (proto === PROTO_TCP || proto === PROTO_UDP) {
      sport = rd16(p, il4);
      dport = rd16(p, il4 + 2);
    } else if (proto === PROTO_ICMP && (p[il4] === ECHO_REQUEST || p[il4] === ECHO_REPLY)) {
      sport = dport = rd16(p, il4 + 4); // the echo id stands for the port on both sides
    } else {
      return this.drop('no_flow');
    }
    const inbound = dir === 'ingress';
    let f: Flow | undefined;
    if (inbound) {
      if (isrc !== rd32(p, 16)) return this.drop('no_flow');
      f = this.findIngress(proto, isrc, sport, idst, proto === PROTO_ICMP ? 0 : dport, now);
    } else {
      f = this.findEgress(vni, proto, idst, dport, isrc, proto === PROTO_ICMP ? 0 : sport, now);
    }
    if (!f) return this.drop('no_flow');
    const addr = inbound ? f.inside : f.external;
    put32(p, inbound ? 16 : 12, addr, { at: 10, udp: false });
    rewriteQuote(p, icmp, m, inbound, addr, inbound ? f.insidePort : f.externalPort);
    this.countSnat(f.vni, f.external, dir, n);
    return { action: 'translated', reason: 'none', vni: f.vni };
  }

  /** 1:1 NAT: only the address changes, so fragments translate too; an ICMP error's quote follows. */
  private floated(dir: NatDirection, fl: Float, p: Uint8Array, n: number): NatVerdict {
    const out = dir === 'egress';
    const to = out ? fl.r.external : fl.r.inside;
    const proto = p[9];
    const l4 = ihlOf(p, 0);
    const m = n - l4;
    let l4c = null;
    if (!laterFragment(p, 0)) {
      if ((proto === PROTO_TCP && m < 18) || (proto === PROTO_UDP && m < 8) || (proto === PROTO_ICMP && m < 8)) return this.drop('truncated_l4');
      if (proto === PROTO_TCP || proto === PROTO_UDP) l4c = l4Sum(proto, l4, m);
      if (proto === PROTO_ICMP && isIcmpError(p[l4]) && !isFragment(p, 0)) {
        const q = quoteOf(p, l4, m);
        const from = out ? fl.r.inside : fl.r.external;
        if (q >= 0 && rd32(p, q + (out ? 16 : 12)) === from) rewriteQuote(p, l4, m, !out, to, -1);
      }
    }
    put32(p, out ? 12 : 16, to, { at: 10, udp: false }, l4c);
    if (out) fl.c.egressPackets++, fl.c.egressBytes += n;
    else fl.c.ingressPackets++, fl.c.ingressBytes += n;
    return { action: 'translated', reason: 'none', vni: fl.r.vni };
  }

  // ---- snapshots (the shapes dataplane/nat.ts's NatTable returns) ----

  stats(): NatStats {
    return structuredClone(this.s);
  }

  flows(): NatFlow[] {
    return [...this.egressIdx.values()].map((f) => ({
      vni: f.vni, proto: f.proto, inside: f.inside, insidePort: f.insidePort, remote: f.remote, remotePort: f.remotePort,
      external: f.external, externalPort: f.externalPort, tcpState: TCP_STATES[f.tcpState], seenReply: f.seenReply, expiresMs: f.expiresMs,
    }));
  }

  rules(): { snat: Array<Required<SnatRuleSpec> & NatRuleCounters>; floats: Array<FloatRuleSpec & NatRuleCounters> } {
    return {
      snat: [...this.snat.values()].flat().map((s) => ({ ...s.c, ...s.r })),
      floats: [...this.floats.values()].map((f) => ({ ...f.c, ...f.r })),
    };
  }
}
