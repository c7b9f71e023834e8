/**
 * DNS responder core for one network: punted queries in, a reply, a forward decision or a drop out.
 * Sans-I/O: the integrator sends forwards to the upstream from its own socket and relays the answer back
 * with `buildDnsReplyFrame`, so this core never holds sockets, timers or pending-query state.
 *
 * Per query:
 *   1. frame -> Ethernet/IPv4/UDP to port 53 (dhcp-frames.ts); else dropped by reason
 *   2. fewer than 12 bytes, or a response (QR set): dropped, never answered (no reply loops)
 *   3. the rest of the message unreadable, not exactly one question, two OPT records: FORMERR
 *   4. opcode other than QUERY: NOTIMP; EDNS version above 0: BADVERS (RFC 6891)
 *   5. names in `zone` (or `extraZones`): A from the record source (NXDOMAIN when unknown, NODATA for other types);
 *      in-addr.arpa names of the network's addresses: PTR likewise
 *   6. anything else: forwarded to `upstream` as it came, or REFUSED without one
 * Replies are authoritative (AA) for 5, copy RD, and set RA only when there is an upstream.
 */
import {
  DNS_CLASS_ANY, DNS_CLASS_IN, DNS_MAX_UDP_LEN, DNS_OPCODE_QUERY, DNS_PORT, DNS_RCODE_FORMERR, DNS_RCODE_NOERROR,
  DNS_RCODE_NOTIMP, DNS_RCODE_NXDOMAIN, DNS_RCODE_REFUSED, DNS_TYPE_A, DNS_TYPE_ANY, DNS_TYPE_OPT, DNS_TYPE_PTR,
  WireError, canonicalDnsName, encodeDns, formatIpv4Address, parseDns, parseDnsHeader, parseIpv4Address,
  parseReverseDnsName,
} from '../../dataplane/wire/index.ts';
import type { DnsHeader, DnsMessage, DnsQuestion, DnsRecord } from '../../dataplane/wire/index.ts';
import { contains, parseCidr } from '../net/ipv4-cidr.ts';
import type { Cidr } from '../net/ipv4-cidr.ts';
import { buildUdpFrame, readUdpFrame } from './dhcp-frames.ts';
import type { FrameDropReason, UdpFrame } from './dhcp-frames.ts';

/** Names and addresses the responder answers from. Names are canonical: lower case, no final dot. */
export interface DnsRecordSource {
  /** IPv4 addresses of a fully qualified name; empty when the name does not exist. */
  lookup(name: string): readonly string[];
  /** Fully qualified names of an address (PTR); empty when there are none. */
  reverse(ipv4: string): readonly string[];
}

export interface DnsEntry {
  /** A single label is taken as relative to the domain (`web1` -> `web1.<domain>`), like dnsmasq's expand-hosts. */
  name: string;
  ipv4: string;
}

/** A record source over a fixed list: instances (`<instance>` under `<namespace>.<zone>`) plus extra entries. */
export function staticRecordSource(domain: string, entries: Iterable<DnsEntry>): DnsRecordSource {
  const forward = new Map<string, string[]>();
  const reverse = new Map<string, string[]>();
  const d = canonicalDnsName(domain);
  for (const e of entries) {
    const name = canonicalDnsName(e.name.includes('.') ? e.name : `${e.name}.${d}`);
    const ip = formatIpv4Address(parseIpv4Address(e.ipv4));
    push(forward, name, ip);
    push(reverse, ip, name);
  }
  return { lookup: (n) => forward.get(n) ?? [], reverse: (ip) => reverse.get(ip) ?? [] };
}

function push(m: Map<string, string[]>, k: string, v: string): void {
  const list = m.get(k) ?? [];
  if (!list.includes(v)) list.push(v);
  m.set(k, list);
}

export interface DnsResponderOptions {
  /** Names at or under this zone are answered here or get NXDOMAIN; they never leak upstream. */
  zone: string;
  /** More zones answered the same way (the `appnet` names of application connections' outbounds). */
  extraZones?: readonly string[];
  /** The network's block: the in-addr.arpa names of its addresses are answered here. */
  cidr: string;
  records: DnsRecordSource;
  /** `a.b.c.d` or `a.b.c.d:port`; without it, names outside our zones are REFUSED. */
  upstream?: string;
  /** TTL of our answers. Default 0, dnsmasq's default for local names: instances see changes at once. */
  ttl?: number;
}

/** Unreadable input: no reply. */
export type DnsDropReason = FrameDropReason | 'not-dns-port' | 'truncated' | 'response';

export type DnsOutcome =
  | { action: 'reply'; rcode: number; message: DnsMessage; payload: Uint8Array }
  | { action: 'forward'; upstream: { ipv4: string; port: number }; query: Uint8Array }
  | { action: 'drop'; reason: DnsDropReason; detail: string };

/** `handleFrame` also returns the query's addressing, which the reply (or a relayed upstream answer) reverses. */
export type DnsFrameOutcome = DnsOutcome & { request?: UdpFrame };

export interface DnsCounters {
  received: number;
  /** Replies by RCODE name (BADVERS included). */
  replies: Record<string, number>;
  forwarded: number;
  dropped: Partial<Record<DnsDropReason, number>>;
}

const RCODE_NAMES: Record<number, string> = { 0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED', 16: 'BADVERS' };
const RCODE_BADVERS = 16;
/** What we tell EDNS clients we accept and send (the DNS flag day 2020 default). */
const EDNS_PAYLOAD = 1232;

export class DnsResponder {
  readonly #opts: DnsResponderOptions;
  readonly #zones: readonly string[];
  readonly #cidr: Cidr;
  readonly #upstream: { ipv4: string; port: number } | undefined;
  readonly #ttl: number;
  readonly #counters: DnsCounters = { received: 0, replies: {}, forwarded: 0, dropped: {} };

  /** Throws (naming the option) when the options are unusable: that is the integrator's bug, not input. */
  constructor(opts: DnsResponderOptions) {
    this.#opts = opts;
    this.#zones = [opts.zone, ...(opts.extraZones ?? [])].map(canonicalDnsName);
    this.#cidr = parseCidr(opts.cidr, 'cidr');
    this.#upstream = opts.upstream === undefined ? undefined : parseUpstream(opts.upstream);
    this.#ttl = opts.ttl ?? 0;
  }

  counters(): DnsCounters {
    return structuredClone(this.#counters);
  }

  /** A punted Ethernet frame sent to UDP port 53. */
  handleFrame(frame: Uint8Array): DnsFrameOutcome {
    this.#counters.received++;
    const r = readUdpFrame(frame);
    if (!r.ok) return this.#count({ action: 'drop', reason: r.reason, detail: r.detail });
    if (r.frame.dstPort !== DNS_PORT) return this.#count({ action: 'drop', reason: 'not-dns-port', detail: `UDP port ${r.frame.dstPort}` });
    return { ...this.#count(this.#answer(r.frame.payload)), request: r.frame };
  }

  /** A query already taken out of its datagram. */
  handleQuery(payload: Uint8Array): DnsOutcome {
    this.#counters.received++;
    return this.#count(this.#answer(payload));
  }

  #count(o: DnsOutcome): DnsOutcome {
    const c = this.#counters;
    if (o.action === 'reply') {
      const name = RCODE_NAMES[o.rcode] ?? `RCODE${o.rcode}`;
      c.replies[name] = (c.replies[name] ?? 0) + 1;
    } else if (o.action === 'forward') {
      c.forwarded++;
    } else {
      c.dropped[o.reason] = (c.dropped[o.reason] ?? 0) + 1;
    }
    return o;
  }

  #answer(payload: Uint8Array): DnsOutcome {
    let header: DnsHeader;
    try {
      header = parseDnsHeader(payload);
    } catch (e) {
      return { action: 'drop', reason: 'truncated', detail: (e as WireError).message };
    }
    if (header.qr) return { action: 'drop', reason: 'response', detail: `message ${header.id} is a response, not a query` };
    let query: DnsMessage;
    try {
      query = parseDns(payload);
    } catch (e) {
      if (!(e instanceof WireError)) throw e;
      return this.#reply(header, [], DNS_RCODE_FORMERR);
    }
    const opts = query.additionals.filter((r) => r.type === DNS_TYPE_OPT);
    if (query.questions.length !== 1 || opts.length > 1 || (opts.length === 1 && opts[0].name !== '')) {
      return this.#reply(header, [], DNS_RCODE_FORMERR);
    }
    const q = query.questions[0];
    const edns = opts.length === 1 ? opts[0] : undefined;
    if (edns && ((edns.ttl >>> 16) & 0xff) > 0) return this.#reply(header, [q], RCODE_BADVERS, [], false, edns);
    if (query.opcode !== DNS_OPCODE_QUERY) return this.#reply(header, [q], DNS_RCODE_NOTIMP, [], false, edns);

    const name = canonicalDnsName(q.name);
    const inet = q.class === DNS_CLASS_IN || q.class === DNS_CLASS_ANY;
    const zone = inet ? this.#zones.find((z) => name === z || name.endsWith(`.${z}`)) : undefined;
    if (zone !== undefined) {
      const addresses = this.#opts.records.lookup(name);
      if (addresses.length === 0 && name !== zone) return this.#reply(header, [q], DNS_RCODE_NXDOMAIN, [], true, edns);
      const wanted = q.type === DNS_TYPE_A || q.type === DNS_TYPE_ANY;
      const answers = wanted ? addresses.map((a) => this.#record(q.name, DNS_TYPE_A, { kind: 'a', address: parseIpv4Address(a) })) : [];
      return this.#reply(header, [q], DNS_RCODE_NOERROR, answers, true, edns);
    }
    const address = inet ? parseReverseDnsName(name) : undefined;
    if (address !== undefined && contains(this.#cidr, address)) {
      const names = this.#opts.records.reverse(formatIpv4Address(address));
      if (names.length === 0) return this.#reply(header, [q], DNS_RCODE_NXDOMAIN, [], true, edns);
      const wanted = q.type === DNS_TYPE_PTR || q.type === DNS_TYPE_ANY;
      const answers = wanted ? names.map((n) => this.#record(q.name, DNS_TYPE_PTR, { kind: 'name', name: n })) : [];
      return this.#reply(header, [q], DNS_RCODE_NOERROR, answers, true, edns);
    }
    if (this.#upstream) return { action: 'forward', upstream: { ...this.#upstream }, query: payload };
    return this.#reply(header, [q], DNS_RCODE_REFUSED, [], false, edns);
  }

  #record(name: string, type: number, data: DnsRecord['data']): DnsRecord {
    return { name, type, class: DNS_CLASS_IN, ttl: this.#ttl, data };
  }

  /**
   * The reply to `h`: its id, opcode and RD; with an OPT record when the query had one. A reply larger
   * than the client takes (512 bytes, or its EDNS size up to ours) goes out without answers and with TC.
   */
  #reply(h: DnsHeader, questions: DnsQuestion[], rcode: number, answers: DnsRecord[] = [], aa = false, edns?: DnsRecord): DnsOutcome {
    const additionals: DnsRecord[] = edns
      ? [{ name: '', type: DNS_TYPE_OPT, class: EDNS_PAYLOAD, ttl: (rcode >> 4) << 24, data: { kind: 'opaque', bytes: new Uint8Array(0) } }]
      : [];
    const message: DnsMessage = {
      id: h.id, qr: true, opcode: h.opcode, aa, tc: false, rd: h.rd, ra: this.#upstream !== undefined, z: false,
      ad: false, cd: h.cd, rcode: rcode & 0xf, questions, answers, authorities: [], additionals,
    };
    const limit = edns ? Math.min(Math.max(edns.class, DNS_MAX_UDP_LEN), EDNS_PAYLOAD) : DNS_MAX_UDP_LEN;
    let payload = encodeDns(message);
    if (payload.length > limit) {
      message.answers = [];
      message.tc = true;
      payload = encodeDns(message);
    }
    return { action: 'reply', rcode, message, payload };
  }
}

/**
 * The frame answering `request` (what `handleFrame` returned with the outcome): from the address and MAC
 * the query was sent to, port 53, back to the client. Also for relaying an upstream answer.
 */
export function buildDnsReplyFrame(request: Pick<UdpFrame, 'srcMac' | 'dstMac' | 'srcIp' | 'dstIp' | 'srcPort' | 'dstPort'>, payload: Uint8Array): Uint8Array {
  return buildUdpFrame({
    srcMac: request.dstMac, dstMac: request.srcMac, srcIp: request.dstIp, dstIp: request.srcIp,
    srcPort: request.dstPort, dstPort: request.srcPort, payload,
  });
}

function parseUpstream(text: string): { ipv4: string; port: number } {
  const m = /^([0-9.]+)(?::(\d{1,5}))?$/.exec(text);
  const port = m?.[2] === undefined ? DNS_PORT : Number(m[2]);
  if (!m || port < 1 || port > 0xffff) throw new RangeError(`upstream ${JSON.stringify(text)} is not a.b.c.d or a.b.c.d:port`);
  return { ipv4: formatIpv4Address(parseIpv4Address(m[1])), port };
}
