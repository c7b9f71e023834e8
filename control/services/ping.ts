/**
 * The ping API's core (GET /networks/{ref}/ping/{address}): echo requests sent from the network's
 * gateway (.1, its gateway MAC) and the replies matched to them, rendered like `ping -c 10` output,
 * as the reference runs ping inside the network's namespace. Pure: frames and millisecond clocks in,
 * frames and text out. The I/O edge (timers, engine inject, punted frames) is network-services.ts.
 *
 * A run, per tick (one every PING_INTERVAL_MS):
 *   target MAC known  -> an echo request (id = the run's id, seq 1..count)
 *   MAC not known yet -> an ARP request for the address; that probe counts as sent and as an error
 *                        ("Destination Host Unreachable"), as ping reports a neighbour that never answered
 *   ARP reply for the address to the gateway -> MAC known for the next tick
 *   echo reply to the gateway with the run's id, from the address -> a reply line (DUP! when repeated)
 */
import {
  ARP_PACKET_LEN, ETHERNET_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, IPPROTO_ICMP, WireError,
  emitArp, emitEthernet, emitIcmpv4, emitIpv4, formatMac, icmpv4BufferLen, parseArp, parseEthernet,
  parseIcmpv4, parseIpv4, parseIpv4Address, parseMac,
} from '../../dataplane/wire/index.ts';
import type { GatewayIdentity } from './gateway.ts';

/** The reference runs `ping -c 10`. */
export const PING_DEFAULT_COUNT = 10;
export const PING_MAX_COUNT = 100;
/** One probe per 0.2 s: ten probes answer within about 2 s, not ping's default 10 s. */
export const PING_INTERVAL_MS = 200;
/** How long a run waits for replies after its last probe (ping -c waits for a linger time too). */
export const PING_LINGER_MS = 1000;
/** ping's default data size (-s 56): 64 bytes of ICMP, 84 of IP. */
export const PING_DATA_LEN = 56;

const BROADCAST = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/** The data of probe `seq`: a recognisable pattern (ping fills with a counter too). */
function probeData(seq: number): Uint8Array {
  const data = new Uint8Array(PING_DATA_LEN);
  for (let i = 0; i < data.length; i++) data[i] = (i + seq) & 0xff;
  return data;
}

/** An ICMP echo request from the gateway to `address` at `mac` (ttl 64, DF clear like ping's default). */
export function buildEchoRequest(gw: GatewayIdentity, address: string, mac: string, id: number, seq: number): Uint8Array {
  const echo = { type: 'echo-request' as const, id, seq, data: probeData(seq) };
  const icmpLen = icmpv4BufferLen(echo);
  const out = new Uint8Array(ETHERNET_HEADER_LEN + 20 + icmpLen);
  const icmp = out.subarray(ETHERNET_HEADER_LEN + 20);
  emitIcmpv4(echo, icmp);
  emitIpv4({
    dscp: 0, ecn: 0, id: seq, dontFragment: false, moreFragments: false, fragmentOffset: 0, ttl: 64,
    protocol: IPPROTO_ICMP, src: parseIpv4Address(gw.ipv4), dst: parseIpv4Address(address), options: new Uint8Array(0), payload: icmp,
  }, out, ETHERNET_HEADER_LEN);
  emitEthernet({ dst: parseMac(mac), src: parseMac(gw.mac), ethertype: ETHERTYPE_IPV4, payload: out.subarray(ETHERNET_HEADER_LEN) }, out);
  return out;
}

/** A broadcast ARP request from the gateway for `address`. */
export function buildArpRequest(gw: GatewayIdentity, address: string): Uint8Array {
  const out = new Uint8Array(ETHERNET_HEADER_LEN + ARP_PACKET_LEN);
  const gwMac = parseMac(gw.mac);
  emitArp({ operation: 'request', senderMac: gwMac, senderIp: parseIpv4Address(gw.ipv4), targetMac: new Uint8Array(6), targetIp: parseIpv4Address(address) }, out, ETHERNET_HEADER_LEN);
  emitEthernet({ dst: BROADCAST, src: gwMac, ethertype: ETHERTYPE_ARP, payload: out.subarray(ETHERNET_HEADER_LEN) }, out);
  return out;
}

export type PingFrame =
  | { kind: 'echo-reply'; from: string; id: number; seq: number; ttl: number; bytes: number }
  | { kind: 'arp-reply'; from: string; mac: string };

/**
 * What a punted frame is to a run of the gateway's pings: an echo reply to the gateway, an ARP
 * reply to the gateway, or nothing (undefined). Never throws for any input bytes.
 */
export function readPingFrame(frame: Uint8Array, gw: GatewayIdentity): PingFrame | undefined {
  try {
    const eth = parseEthernet(frame);
    const gwIp = parseIpv4Address(gw.ipv4);
    if (eth.ethertype === ETHERTYPE_ARP) {
      const arp = parseArp(eth.payload);
      if (arp.operation !== 'reply' || arp.targetIp !== gwIp) return undefined;
      return { kind: 'arp-reply', from: formatIp(arp.senderIp), mac: formatMac(arp.senderMac) };
    }
    if (eth.ethertype !== ETHERTYPE_IPV4) return undefined;
    const ip = parseIpv4(eth.payload);
    if (ip.dst !== gwIp || ip.protocol !== IPPROTO_ICMP || ip.moreFragments || ip.fragmentOffset !== 0) return undefined;
    const icmp = parseIcmpv4(ip.payload);
    if (icmp.type !== 'echo-reply') return undefined;
    return { kind: 'echo-reply', from: formatIp(ip.src), id: icmp.id, seq: icmp.seq, ttl: ip.ttl, bytes: ip.payload.length };
  } catch (e) {
    if (e instanceof WireError) return undefined;
    throw e;
  }
}

function formatIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}

export interface PingReply { seq: number; ttl: number; bytes: number; rttMs: number; dup: boolean }

export interface PingSummary {
  address: string;
  gateway: string;
  transmitted: number;
  replies: PingReply[];
  /** Probes whose target did not answer ARP: ping's "Destination Host Unreachable". */
  unreachable: number[];
  /** From the first probe to the end of the run. */
  elapsedMs: number;
}

export interface PingOutput { stdout: string[]; stderr: string[] }

/** iputils' precision: 3 decimals under 1 ms, 2 under 10, 1 under 100, else none. */
export function formatRtt(ms: number): string {
  if (ms < 1) return ms.toFixed(3);
  if (ms < 10) return ms.toFixed(2);
  if (ms < 100) return ms.toFixed(1);
  return ms.toFixed(0);
}

/** `%g` of a loss percentage: 0, 10, 33.3333, 100. */
function percent(x: number): string {
  return String(Number(x.toPrecision(6)));
}

/** The lines `ping -c N <address>` prints, from its first line to its statistics. */
export function pingOutput(s: PingSummary): PingOutput {
  const stdout = [`PING ${s.address} (${s.address}) ${PING_DATA_LEN}(${PING_DATA_LEN + 28}) bytes of data.`];
  const lines: Array<{ seq: number; text: string }> = [];
  for (const r of s.replies) {
    lines.push({ seq: r.seq, text: `${r.bytes} bytes from ${s.address}: icmp_seq=${r.seq} ttl=${r.ttl} time=${formatRtt(r.rttMs)} ms${r.dup ? ' (DUP!)' : ''}` });
  }
  for (const seq of s.unreachable) lines.push({ seq, text: `From ${s.gateway} icmp_seq=${seq} Destination Host Unreachable` });
  stdout.push(...lines.sort((a, b) => a.seq - b.seq).map((l) => l.text));
  const unique = s.replies.filter((r) => !r.dup);
  const dups = s.replies.length - unique.length;
  const received = unique.length;
  const loss = s.transmitted === 0 ? 0 : ((s.transmitted - received) * 100) / s.transmitted;
  stdout.push('', `--- ${s.address} ping statistics ---`);
  stdout.push(`${s.transmitted} packets transmitted, ${received} received` +
    (dups > 0 ? `, +${dups} duplicates` : '') +
    (s.unreachable.length > 0 ? `, +${s.unreachable.length} errors` : '') +
    `, ${percent(loss)}% packet loss, time ${Math.round(s.elapsedMs)}ms`);
  if (s.replies.length > 0) {
    const t = s.replies.map((r) => r.rttMs);
    const avg = t.reduce((a, b) => a + b, 0) / t.length;
    const mdev = Math.sqrt(Math.max(0, t.reduce((a, b) => a + b * b, 0) / t.length - avg * avg));
    stdout.push(`rtt min/avg/max/mdev = ${[Math.min(...t), avg, Math.max(...t), mdev].map((x) => x.toFixed(3)).join('/')} ms`);
  }
  return { stdout, stderr: [] };
}

export interface PingRunOptions {
  gw: GatewayIdentity;
  address: string;
  /** The target's MAC when known (the interface record); else the run asks by ARP. */
  mac?: string;
  /** Echo identifier, unique among the runs in progress on this host. */
  id: number;
  count: number;
}

export interface PingSend { frame: Uint8Array; broadcast: boolean }

/**
 * One ping run's state: `probe(now)` once per interval until it returns null, `receive(frame, now)`
 * for each punted frame, `output(now)` at the end. The gateway pinging itself answers at once, as the
 * reference's namespace would from its own address.
 */
export class PingRun {
  readonly #o: PingRunOptions;
  #mac: string | undefined;
  #seq = 0;
  #started: number | undefined;
  readonly #sentAt = new Map<number, number>();
  readonly #replies: PingReply[] = [];
  readonly #unreachable: number[] = [];

  constructor(o: PingRunOptions) {
    if (!Number.isInteger(o.count) || o.count < 1 || o.count > PING_MAX_COUNT) throw new RangeError(`count must be an integer in 1..${PING_MAX_COUNT}, got ${o.count}`);
    if (!Number.isInteger(o.id) || o.id < 0 || o.id > 0xffff) throw new RangeError(`id must be an integer in 0..65535, got ${o.id}`);
    this.#o = o;
    this.#mac = o.mac?.toLowerCase();
  }

  get id(): number { return this.#o.id; }

  /** `count` probes went out. */
  get sentAll(): boolean { return this.#seq >= this.#o.count; }

  /** Every probe sent, and each echo answered (or known unanswerable): no need to linger. */
  get complete(): boolean {
    if (this.#seq < this.#o.count) return false;
    const answered = new Set(this.#replies.map((r) => r.seq));
    for (let seq = 1; seq <= this.#o.count; seq++) if (!answered.has(seq) && !this.#unreachable.includes(seq)) return false;
    return true;
  }

  /** The frame of the next probe; null when there is nothing to send (all sent, or the gateway itself). */
  probe(now: number): PingSend | null {
    if (this.#seq >= this.#o.count) return null;
    const seq = ++this.#seq;
    this.#started ??= now;
    if (this.#o.address === this.#o.gw.ipv4) {
      this.#replies.push({ seq, ttl: 64, bytes: PING_DATA_LEN + 8, rttMs: 0, dup: false });
      return null;
    }
    if (this.#mac === undefined) {
      this.#unreachable.push(seq);
      return { frame: buildArpRequest(this.#o.gw, this.#o.address), broadcast: true };
    }
    this.#sentAt.set(seq, now);
    return { frame: buildEchoRequest(this.#o.gw, this.#o.address, this.#mac, this.#o.id, seq), broadcast: false };
  }

  /** Takes a punted frame if it belongs to this run (true), else leaves it to others (false). */
  receive(frame: Uint8Array, now: number): boolean {
    const f = readPingFrame(frame, this.#o.gw);
    if (!f || f.from !== this.#o.address) return false;
    if (f.kind === 'arp-reply') {
      this.#mac ??= f.mac;
      return true;
    }
    const sent = this.#sentAt.get(f.seq);
    if (f.id !== this.#o.id || sent === undefined) return false;
    const dup = this.#replies.some((r) => r.seq === f.seq);
    this.#replies.push({ seq: f.seq, ttl: f.ttl, bytes: f.bytes, rttMs: Math.max(0, now - sent), dup });
    return true;
  }

  output(now: number): PingOutput {
    return pingOutput({
      address: this.#o.address, gateway: this.#o.gw.ipv4, transmitted: this.#seq,
      replies: this.#replies, unreachable: this.#unreachable, elapsedMs: this.#started === undefined ? 0 : now - this.#started,
    });
  }
}
