/**
 * Typed face of the native NAT core (native/src/nat.h): source NAT with port translation and a
 * connection-tracking table for a network's egress, 1:1 NAT for floating addresses.
 *
 * Policy (which network gets which external address and port range, which interface is floated)
 * lives in the control module; this class only installs rules, reads counters and, for tests,
 * translates packets. The engine calls the same C++ table on its own threads. Addresses are uint32
 * (`1.2.3.4` is `0x01020304`), times are monotonic milliseconds passed in: the table has no clock.
 * See docs/nat.md.
 */
import { randomBytes } from 'node:crypto';
import { native } from './native.ts';

export type NatDirection = 'egress' | 'ingress';

export const NAT_DROP_REASONS = [
  'truncated_ip', 'bad_ip_header', 'truncated_l4', 'fragment', 'unsupported', 'no_flow', 'conntrack_full',
  'ports_exhausted', 'invalid_tcp',
] as const;
export type NatDropReason = typeof NAT_DROP_REASONS[number];

export type NatVerdict =
  | { action: 'translated'; reason: 'none'; /** egress: the caller's VNI; ingress: the network to deliver to */ vni: number }
  | { action: 'passthrough'; reason: 'none'; vni: number }
  | { action: 'drop'; reason: NatDropReason; vni: number };

/** Idle timeouts in seconds. */
export interface NatTimeouts {
  tcpSynSent: number;
  tcpSynRecv: number;
  tcpEstablished: number;
  tcpFinWait: number;
  tcpLastAck: number;
  tcpTimeWait: number;
  tcpClose: number;
  /** UDP until the remote answers, then `udpAssured`. */
  udp: number;
  udpAssured: number;
  icmp: number;
}

/** Linux's conntrack defaults except TCP established, which is RFC 5382's minimum (2 h 4 min) rather than 5 days. */
export const DEFAULT_NAT_TIMEOUTS: Readonly<NatTimeouts> = Object.freeze({
  tcpSynSent: 120,
  tcpSynRecv: 60,
  tcpEstablished: 7440,
  tcpFinWait: 120,
  tcpLastAck: 30,
  tcpTimeWait: 120,
  tcpClose: 10,
  udp: 30,
  udpAssured: 180,
  icmp: 30,
});

export const DEFAULT_NAT_CAPACITY = 65536;
export const DEFAULT_NAT_PORT_MIN = 1024;
export const DEFAULT_NAT_PORT_MAX = 65535;

export interface SnatRuleSpec {
  vni: number;
  /** The network's netblock (host bits zero) and prefix length. */
  insideNet: number;
  prefix: number;
  /** The network's floating gateway address. */
  external: number;
  /** External ports (and ICMP echo ids) to allocate from; default 1024..65535. */
  portMin?: number;
  portMax?: number;
}

export interface FloatRuleSpec {
  vni: number;
  inside: number;
  external: number;
}

export interface NatRuleCounters {
  egressPackets: number;
  egressBytes: number;
  ingressPackets: number;
  ingressBytes: number;
}

export type NatTcpState = 'none' | 'syn_sent' | 'syn_recv' | 'established' | 'fin_wait' | 'last_ack' | 'time_wait' | 'close';

export interface NatFlow {
  vni: number;
  /** IP protocol number: 1 ICMP, 6 TCP, 17 UDP. */
  proto: number;
  inside: number;
  /** ICMP: the echo id. */
  insidePort: number;
  remote: number;
  remotePort: number;
  external: number;
  externalPort: number;
  tcpState: NatTcpState;
  seenReply: boolean;
  expiresMs: number;
}

export interface NatStats {
  drops: Record<NatDropReason, number>;
  translated: { egress: number; ingress: number };
  passthrough: { egress: number; ingress: number };
  flowsCreated: number;
  flowsExpired: number;
  /** Removed because their rule was removed. */
  flowsFlushed: number;
  entries: number;
  capacity: number;
}

interface NativeNatTable {
  addSnat(vni: number, insideNet: number, prefix: number, external: number, portMin: number, portMax: number): void;
  removeSnat(vni: number, insideNet: number, prefix: number): boolean;
  addFloat(vni: number, inside: number, external: number): void;
  removeFloat(external: number): boolean;
  translate(direction: NatDirection, vni: number, packet: Uint8Array, nowMs: number): NatVerdict;
  sweep(nowMs: number): number;
  stats(): NatStats;
  flows(): NatFlow[];
  rules(): { snat: Array<Required<SnatRuleSpec> & NatRuleCounters>; floats: Array<FloatRuleSpec & NatRuleCounters> };
  benchTranslate(direction: NatDirection, vni: number, packet: Uint8Array, iterations: number, nowMs: number): number;
}

type NativeNatCtor = new (capacity: number, seed: bigint, timeouts: NatTimeouts) => NativeNatTable;

function checkInt(name: string, v: unknown, max: number, min = 0): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer in ${min}..${max}, got ${String(v)}`);
  }
  return v;
}

const U32 = 0xffffffff;
const VNI_MAX = 0xffffff;

export class NatTable {
  private readonly t: NativeNatTable;

  /**
   * `capacity` flows at most (default 65536); beyond it new flows are dropped (`conntrack_full`) and
   * existing ones keep translating. `seed` keys the flow hash (random by default).
   */
  constructor(opts: { capacity?: number; timeouts?: Partial<NatTimeouts>; seed?: bigint } = {}) {
    const capacity = checkInt('capacity', opts.capacity ?? DEFAULT_NAT_CAPACITY, 1 << 24, 1);
    const timeouts = { ...DEFAULT_NAT_TIMEOUTS, ...opts.timeouts };
    for (const [k, v] of Object.entries(timeouts)) checkInt(`timeouts.${k}`, v, 30 * 86400, 1);
    const seed = opts.seed ?? randomBytes(8).readBigUInt64LE();
    const Ctor = (native as unknown as { NatTable: NativeNatCtor }).NatTable;
    this.t = new Ctor(capacity, seed, timeouts);
  }

  /** Source NAT for packets from `insideNet/prefix` on `vni` (longest prefix wins). Throws RangeError on overlap. */
  addSnat(r: SnatRuleSpec): void {
    this.t.addSnat(checkInt('vni', r.vni, VNI_MAX), checkInt('insideNet', r.insideNet, U32),
      checkInt('prefix', r.prefix, 32), checkInt('external', r.external, U32),
      checkInt('portMin', r.portMin ?? DEFAULT_NAT_PORT_MIN, 65535, 1),
      checkInt('portMax', r.portMax ?? DEFAULT_NAT_PORT_MAX, 65535, 1));
  }

  /** Removes the rule and flushes its flows; false when there was none. */
  removeSnat(vni: number, insideNet: number, prefix: number): boolean {
    return this.t.removeSnat(checkInt('vni', vni, VNI_MAX), checkInt('insideNet', insideNet, U32), checkInt('prefix', prefix, 32));
  }

  /** 1:1 NAT between `inside` on `vni` and `external`, both directions. */
  addFloat(r: FloatRuleSpec): void {
    this.t.addFloat(checkInt('vni', r.vni, VNI_MAX), checkInt('inside', r.inside, U32), checkInt('external', r.external, U32));
  }

  /** Defloat: false when `external` was not floated. The rule was stateless, so nothing else remains. */
  removeFloat(external: number): boolean {
    return this.t.removeFloat(checkInt('external', external, U32));
  }

  /**
   * Translates the IPv4 packet in `packet` (the IP header onwards) in place. `vni` is the network an
   * egress packet comes from (ignored for ingress).
   */
  translate(direction: NatDirection, vni: number, packet: Uint8Array, nowMs: number): NatVerdict {
    return this.t.translate(direction, checkInt('vni', vni, VNI_MAX), packet, nowMs);
  }

  /** Removes flows idle past their timeout; returns how many. The integrator calls it about once a second. */
  sweep(nowMs: number): number {
    return this.t.sweep(nowMs);
  }

  stats(): NatStats {
    return this.t.stats();
  }

  flows(): NatFlow[] {
    return this.t.flows();
  }

  rules(): { snat: Array<Required<SnatRuleSpec> & NatRuleCounters>; floats: Array<FloatRuleSpec & NatRuleCounters> } {
    return this.t.rules();
  }

  /** The native object, for Engine.setNat: the engine then translates through this same table. */
  nativeHandle(): object {
    return this.t;
  }

  /** Benchmark only: ns for `iterations` translations of copies of `packet` inside native code. */
  benchTranslate(direction: NatDirection, vni: number, packet: Uint8Array, iterations: number, nowMs: number): number {
    return this.t.benchTranslate(direction, vni, packet, iterations, nowMs);
  }
}
