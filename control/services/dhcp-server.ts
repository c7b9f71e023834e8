/**
 * DHCP server core (RFC 2131, options RFC 2132): punted client frames in, reply decisions and lease
 * changes out. Sans-I/O: no sockets, no clock, no store; the caller passes `now` and injects replies.
 *
 * Addresses are fixed by IPAM: a client's address is whatever `lookup(chaddr)` says, so there is no
 * pool and no allocation. A MAC that `lookup` does not know gets nothing. The lease store records
 * what was granted (bind), given back (release) or refused by the client as already in use (decline:
 * the address is withheld from that client for `declineHoldSeconds`, as dnsmasq does).
 *
 * Per message:
 *   1. frame -> Ethernet/IPv4/UDP to port 67 (dhcp-frames.ts); else dropped by reason
 *   2. UDP payload -> BOOTP/DHCP message (dataplane/wire/dhcp.ts), client fields and options checked
 *   3. chaddr -> binding (IPAM address + network); unknown MAC: ignored
 *   4. message type -> decision (OFFER, ACK, NAK, silence) + lease change through the LeaseStore
 *   5. reply destination per RFC 2131 §4.1 (relay, ciaddr, broadcast, yiaddr)
 * Nothing in 1-5 throws for any input bytes; every outcome is counted.
 */
import {
  BOOTREPLY, BOOTREQUEST, DHCP_FLAG_BROADCAST, DHCP_OPT_BROADCAST, DHCP_OPT_CLIENT_ID, DHCP_OPT_DNS,
  DHCP_OPT_DOMAIN_NAME, DHCP_OPT_LEASE_TIME, DHCP_OPT_MAX_MESSAGE_SIZE, DHCP_OPT_MESSAGE, DHCP_OPT_MESSAGE_TYPE,
  DHCP_OPT_MTU, DHCP_OPT_PARAMETER_LIST, DHCP_OPT_REBINDING_TIME, DHCP_OPT_RENEWAL_TIME, DHCP_OPT_REQUESTED_IP,
  DHCP_OPT_ROUTER, DHCP_OPT_SERVER_ID, DHCP_OPT_SUBNET_MASK, DHCP_SERVER_PORT, DHCP_CLIENT_PORT, DHCPACK,
  DHCPDECLINE, DHCPDISCOVER, DHCPINFORM, DHCPNAK, DHCPOFFER, DHCPRELEASE, DHCPREQUEST, WireError,
  bytesToIpv4, dhcpOption, findDhcpOption, formatIpv4Address, formatMac, parseDhcp,
} from '../../dataplane/wire/index.ts';
import type { DhcpOption, DhcpRepr } from '../../dataplane/wire/index.ts';
import { contains, parseCidr, parseIpv4 } from '../net/ipv4-cidr.ts';
import type { Cidr } from '../net/ipv4-cidr.ts';
import { readUdpFrame } from './dhcp-frames.ts';
import type { DhcpDestination, DhcpReplyDecision, FrameDropReason } from './dhcp-frames.ts';

// --- what the integrator provides ---------------------------------------------------------------------

/** The network a client's interface is on, as DHCP advertises it. Addresses are dotted quads. */
export interface DhcpNetwork {
  /** Netblock, e.g. `198.18.4.0/24` (option 1 and 28 derive from it). */
  cidr: string;
  /** Router (option 3), and the server identifier (option 54) and source of every reply. */
  gateway: string;
  /** Option 6; omitted when the network offers no resolver. */
  dnsServer?: string | readonly string[];
  /** Option 15, e.g. `<namespace>.<zone>`. */
  domain?: string;
  /** Option 26: the overlay MTU (underlay MTU minus encapsulation). */
  mtu: number;
  /** Option 51; T1 (58) and T2 (59) are 1/2 and 7/8 of it (RFC 2131 §4.4.5). */
  leaseSeconds: number;
}

export interface DhcpBinding {
  /** The interface's IPAM address. */
  ipv4: string;
  network: DhcpNetwork;
}

/** MAC (lower-case `aa:bb:cc:dd:ee:ff`) of a known interface -> its binding; undefined for strangers. */
export type DhcpLookup = (mac: string) => DhcpBinding | undefined;

export type LeaseChangeType = 'bind' | 'release' | 'decline';

export interface LeaseChange {
  type: LeaseChangeType;
  mac: string;
  ipv4: string;
  /** ms since the epoch: end of the lease (bind), `now` (release), end of the hold (decline). */
  expiresAt: number;
}

export interface Lease {
  mac: string;
  ipv4: string;
  state: 'bound' | 'released' | 'declined';
  expiresAt: number;
}

/**
 * Leases as the server sees them. Synchronous on purpose: the integrator keeps an in-memory copy
 * loaded from the store at start and writes each change through to the store behind the server.
 */
export interface LeaseStore {
  get(mac: string): Lease | undefined;
  apply(change: LeaseChange): void;
}

/** A LeaseStore in memory: for tests, and as the cache an integrator's store-backed one wraps. */
export class MemoryLeaseStore implements LeaseStore {
  readonly #leases = new Map<string, Lease>();

  constructor(initial: Iterable<Lease> = []) {
    for (const l of initial) this.#leases.set(l.mac, { ...l });
  }

  get(mac: string): Lease | undefined {
    const l = this.#leases.get(mac);
    return l && { ...l };
  }

  apply(change: LeaseChange): void {
    this.#leases.set(change.mac, { mac: change.mac, ipv4: change.ipv4, state: LEASE_STATE[change.type], expiresAt: change.expiresAt });
  }

  /** Every lease, for persisting or listing. */
  all(): Lease[] {
    return [...this.#leases.values()].map((l) => ({ ...l }));
  }
}

const LEASE_STATE = { bind: 'bound', release: 'released', decline: 'declined' } as const;

export interface DhcpServerOptions {
  /** Source MAC of every reply: the gateway's MAC. */
  serverMac: string;
  lookup: DhcpLookup;
  leases: LeaseStore;
  /** How long a declined address is withheld from its client. Default 600 s. */
  declineHoldSeconds?: number;
}

// --- what the server returns --------------------------------------------------------------------------

/** Malformed input: no reply. */
export type DhcpDropReason =
  | FrameDropReason | 'not-dhcp-port' | 'truncated' | 'wrong-op' | 'bad-cookie' | 'bad-htype' | 'bad-hlen'
  | 'bad-option' | 'no-message-type' | 'bad-message-type' | 'chaddr-mismatch' | 'bad-config';

/** Well-formed input that gets no reply, by design. */
export type DhcpQuietReason =
  | 'unknown-mac' | 'other-server' | 'address-declined' | 'released' | 'declined' | 'release-mismatch'
  | 'decline-mismatch';

export type DhcpReplyType = 'OFFER' | 'ACK' | 'NAK';

export type DhcpOutcome =
  | ({ action: 'reply'; type: DhcpReplyType; lease?: LeaseChange } & DhcpReplyDecision)
  | { action: 'none'; reason: DhcpQuietReason; detail: string; lease?: LeaseChange }
  | { action: 'drop'; reason: DhcpDropReason; detail: string };

export interface DhcpCounters {
  received: number;
  sent: Record<DhcpReplyType, number>;
  dropped: Partial<Record<DhcpDropReason, number>>;
  quiet: Partial<Record<DhcpQuietReason, number>>;
  leases: Record<LeaseChangeType, number>;
}

// --- the server ---------------------------------------------------------------------------------------

const BROADCAST_IP = '255.255.255.255';
const BROADCAST_MAC = 'ff:ff:ff:ff:ff:ff';
const HTYPE_ETHERNET = 1;
const ETHERNET_HLEN = 6;

/** Exact option lengths a client may send (RFC 2132); anything else is a malformed message. */
const OPTION_LEN: Readonly<Record<number, [min: number, max: number]>> = {
  [DHCP_OPT_MESSAGE_TYPE]: [1, 1],
  [DHCP_OPT_REQUESTED_IP]: [4, 4],
  [DHCP_OPT_SERVER_ID]: [4, 4],
  [DHCP_OPT_PARAMETER_LIST]: [1, 255],
  [DHCP_OPT_MAX_MESSAGE_SIZE]: [2, 2],
  [DHCP_OPT_CLIENT_ID]: [2, 255],
  [DHCP_OPT_LEASE_TIME]: [4, 4],
};

/** Options offered when the client sends no parameter request list, in this order. */
const DEFAULT_PARAMS = [DHCP_OPT_SUBNET_MASK, DHCP_OPT_ROUTER, DHCP_OPT_DNS, DHCP_OPT_DOMAIN_NAME, DHCP_OPT_MTU, DHCP_OPT_BROADCAST];

interface Request {
  msg: DhcpRepr;
  srcMac: string;
  type: number;
  mac: string;
  binding: DhcpBinding;
  net: ParsedNetwork;
  ip: number;
}

interface ParsedNetwork {
  cidr: Cidr;
  gateway: number;
}

export class DhcpServer {
  readonly #opts: Required<DhcpServerOptions>;
  readonly #counters: DhcpCounters = {
    received: 0, sent: { OFFER: 0, ACK: 0, NAK: 0 }, dropped: {}, quiet: {}, leases: { bind: 0, release: 0, decline: 0 },
  };

  constructor(opts: DhcpServerOptions) {
    this.#opts = { declineHoldSeconds: 600, ...opts, serverMac: opts.serverMac.toLowerCase() };
  }

  /** A copy of the counters. */
  counters(): DhcpCounters {
    return structuredClone(this.#counters);
  }

  /** A punted Ethernet frame (sent to UDP port 67). `now`: ms since the epoch. */
  handleFrame(frame: Uint8Array, now: number): DhcpOutcome {
    this.#counters.received++;
    const r = readUdpFrame(frame);
    if (!r.ok) return this.#drop(r.reason, r.detail);
    if (r.frame.dstPort !== DHCP_SERVER_PORT) return this.#drop('not-dhcp-port', `UDP port ${r.frame.dstPort}`);
    return this.#count(this.#message(r.frame.payload, r.frame.srcMac, now));
  }

  /** A DHCP message already taken out of its datagram; `srcMac` is the frame's Ethernet source. */
  handleMessage(payload: Uint8Array, srcMac: string, now: number): DhcpOutcome {
    this.#counters.received++;
    return this.#count(this.#message(payload, srcMac.toLowerCase(), now));
  }

  #drop(reason: DhcpDropReason, detail: string): DhcpOutcome {
    return this.#count({ action: 'drop', reason, detail });
  }

  #count(o: DhcpOutcome): DhcpOutcome {
    const c = this.#counters;
    if (o.action === 'reply') c.sent[o.type]++;
    else if (o.action === 'drop') c.dropped[o.reason] = (c.dropped[o.reason] ?? 0) + 1;
    else c.quiet[o.reason] = (c.quiet[o.reason] ?? 0) + 1;
    const lease = o.action === 'drop' ? undefined : o.lease;
    if (lease) {
      this.#opts.leases.apply(lease);
      c.leases[lease.type]++;
    }
    return o;
  }

  #message(payload: Uint8Array, srcMac: string, now: number): DhcpOutcome {
    let msg: DhcpRepr;
    try {
      msg = parseDhcp(payload);
    } catch (e) {
      if (!(e instanceof WireError)) throw e;
      return { action: 'drop', reason: wireReason(e), detail: e.message };
    }
    if (msg.op !== BOOTREQUEST) return { action: 'drop', reason: 'wrong-op', detail: `op ${msg.op} is a reply, servers take requests (1)` };
    if (msg.htype !== HTYPE_ETHERNET) return { action: 'drop', reason: 'bad-htype', detail: `htype ${msg.htype}, only Ethernet (1) is served` };
    if (msg.chaddr.length !== ETHERNET_HLEN) return { action: 'drop', reason: 'bad-hlen', detail: `hlen ${msg.chaddr.length}, Ethernet needs 6` };
    const bad = checkOptionLengths(msg.options);
    if (bad) return { action: 'drop', reason: 'bad-option', detail: bad };
    const typeOpt = findDhcpOption(msg, DHCP_OPT_MESSAGE_TYPE);
    if (typeOpt === undefined) return { action: 'drop', reason: 'no-message-type', detail: 'no option 53: plain BOOTP is not served' };
    const type = typeOpt[0];
    if (![DHCPDISCOVER, DHCPREQUEST, DHCPDECLINE, DHCPRELEASE, DHCPINFORM].includes(type)) {
      return { action: 'drop', reason: 'bad-message-type', detail: `message type ${type} is not one a client sends` };
    }
    const mac = formatMac(msg.chaddr);
    // Without a relay the frame's source is the client itself; a different chaddr is someone asking
    // for (or releasing) another interface's lease.
    if (msg.giaddr === 0 && mac !== srcMac) {
      return { action: 'drop', reason: 'chaddr-mismatch', detail: `chaddr ${mac} sent from ${srcMac}` };
    }
    const binding = this.#opts.lookup(mac);
    if (binding === undefined) return { action: 'none', reason: 'unknown-mac', detail: `no interface has MAC ${mac}` };
    let net: ParsedNetwork;
    let ip: number;
    try {
      net = parseNetwork(binding);
      ip = parseIpv4(binding.ipv4, 'ipv4');
      if (!contains(net.cidr, ip)) throw new Error(`address ${binding.ipv4} is outside ${net.cidr.text}`);
    } catch (e) {
      return { action: 'drop', reason: 'bad-config', detail: `binding for ${mac}: ${(e as Error).message}` };
    }
    const req: Request = { msg, srcMac, type, mac, binding, net, ip };
    switch (type) {
      case DHCPDISCOVER: return this.#discover(req, now);
      case DHCPREQUEST: return this.#request(req, now);
      case DHCPRELEASE: return this.#release(req, now);
      case DHCPDECLINE: return this.#decline(req, now);
      default: return this.#reply(req, 'ACK', undefined);
    }
  }

  #discover(r: Request, now: number): DhcpOutcome {
    if (this.#declined(r, now)) return { action: 'none', reason: 'address-declined', detail: `${r.binding.ipv4} was declined by ${r.mac}` };
    return this.#reply(r, 'OFFER', undefined);
  }

  /** RFC 2131 §4.3.2: SELECTING (server id + requested), INIT-REBOOT (requested), RENEWING/REBINDING (ciaddr). */
  #request(r: Request, now: number): DhcpOutcome {
    const sid = ipOption(r.msg, DHCP_OPT_SERVER_ID);
    if (sid !== undefined && sid !== r.net.gateway) {
      // The client chose another server. In our own netblock no other server exists, so an id there is
      // stale (say, from before a gateway change) and the client must restart; outside it, stay quiet.
      if (!contains(r.net.cidr, sid)) return { action: 'none', reason: 'other-server', detail: `REQUEST names server ${formatIpv4Address(sid)}` };
      return this.#reply(r, 'NAK', `server identifier ${formatIpv4Address(sid)} is not this network's server ${formatIpv4Address(r.net.gateway)}`);
    }
    const asked = ipOption(r.msg, DHCP_OPT_REQUESTED_IP) ?? (r.msg.ciaddr || undefined);
    if (asked === undefined) return this.#reply(r, 'NAK', 'REQUEST names no address (neither option 50 nor ciaddr)');
    if (asked !== r.ip) return this.#reply(r, 'NAK', `requested ${formatIpv4Address(asked)}, this client's address is ${r.binding.ipv4}`);
    if (this.#declined(r, now)) return this.#reply(r, 'NAK', `${r.binding.ipv4} was declined by this client`);
    const lease: LeaseChange = { type: 'bind', mac: r.mac, ipv4: r.binding.ipv4, expiresAt: now + r.binding.network.leaseSeconds * 1000 };
    return this.#reply(r, 'ACK', undefined, lease);
  }

  #release(r: Request, now: number): DhcpOutcome {
    const quiet = this.#notOurs(r);
    if (quiet) return quiet;
    if (r.msg.ciaddr !== r.ip) {
      return { action: 'none', reason: 'release-mismatch', detail: `RELEASE of ${formatIpv4Address(r.msg.ciaddr)}, ${r.mac} holds ${r.binding.ipv4}` };
    }
    return { action: 'none', reason: 'released', detail: `${r.mac} released ${r.binding.ipv4}`, lease: { type: 'release', mac: r.mac, ipv4: r.binding.ipv4, expiresAt: now } };
  }

  #decline(r: Request, now: number): DhcpOutcome {
    const quiet = this.#notOurs(r);
    if (quiet) return quiet;
    const asked = ipOption(r.msg, DHCP_OPT_REQUESTED_IP);
    if (asked !== r.ip) {
      const what = asked === undefined ? 'no option 50' : formatIpv4Address(asked);
      return { action: 'none', reason: 'decline-mismatch', detail: `DECLINE of ${what}, ${r.mac} holds ${r.binding.ipv4}` };
    }
    const lease: LeaseChange = { type: 'decline', mac: r.mac, ipv4: r.binding.ipv4, expiresAt: now + this.#opts.declineHoldSeconds * 1000 };
    return { action: 'none', reason: 'declined', detail: `${r.mac} found ${r.binding.ipv4} in use`, lease };
  }

  /** RELEASE and DECLINE are addressed to one server (option 54); another server's are not ours to act on. */
  #notOurs(r: Request): DhcpOutcome | undefined {
    const sid = ipOption(r.msg, DHCP_OPT_SERVER_ID);
    if (sid === undefined || sid === r.net.gateway) return undefined;
    return { action: 'none', reason: 'other-server', detail: `${r.type === DHCPRELEASE ? 'RELEASE' : 'DECLINE'} names server ${formatIpv4Address(sid)}` };
  }

  #declined(r: Request, now: number): boolean {
    const l = this.#opts.leases.get(r.mac);
    return l !== undefined && l.state === 'declined' && l.ipv4 === r.binding.ipv4 && l.expiresAt > now;
  }

  #reply(r: Request, type: DhcpReplyType, nakMessage: string | undefined, lease?: LeaseChange): DhcpOutcome {
    const { msg, net } = r;
    const inform = r.type === DHCPINFORM;
    const nak = type === 'NAK';
    const options: DhcpOption[] = [
      dhcpOption.messageType(type === 'OFFER' ? DHCPOFFER : nak ? DHCPNAK : DHCPACK),
      dhcpOption.ip(DHCP_OPT_SERVER_ID, net.gateway),
    ];
    if (nak) {
      options.push(dhcpOption.text(DHCP_OPT_MESSAGE, nakMessage ?? 'refused'));
    } else {
      if (!inform) options.push(...leaseTimes(r.binding.network.leaseSeconds));
      options.push(...configOptions(r, requestedParams(msg)));
    }
    // RFC 6842: a client identifier the client sent comes back unchanged.
    const clientId = findDhcpOption(msg, DHCP_OPT_CLIENT_ID);
    if (clientId) options.push({ code: DHCP_OPT_CLIENT_ID, data: clientId });
    const message: DhcpRepr = {
      op: BOOTREPLY, htype: msg.htype, hops: 0, xid: msg.xid, secs: 0, flags: msg.flags,
      ciaddr: nak || type === 'OFFER' ? 0 : msg.ciaddr,
      yiaddr: nak || inform ? 0 : r.ip,
      siaddr: 0, giaddr: msg.giaddr, chaddr: msg.chaddr, sname: '', file: '', options,
    };
    return {
      action: 'reply', type, message, to: destination(msg, message, r.mac, r.srcMac, nak),
      from: { mac: this.#opts.serverMac, ipv4: formatIpv4Address(net.gateway) }, lease,
    };
  }
}

/**
 * RFC 2131 §4.1: via the relay when giaddr is set (to the frame's source, which is the relay); else a
 * NAK is broadcast; else unicast to a client that has an address (ciaddr: renewing, INFORM); else
 * broadcast if the client asked (it cannot take unicast before it is configured) or there is no
 * address to send to; else unicast to the offered address at the client's MAC.
 */
export function destination(req: DhcpRepr, reply: DhcpRepr, clientMac: string, srcMac: string, nak: boolean): DhcpDestination {
  if (req.giaddr !== 0) return { mac: srcMac, ipv4: formatIpv4Address(req.giaddr), port: DHCP_SERVER_PORT, via: 'relay' };
  if (!nak && req.ciaddr !== 0) return { mac: clientMac, ipv4: formatIpv4Address(req.ciaddr), port: DHCP_CLIENT_PORT, via: 'ciaddr' };
  if (nak || (req.flags & DHCP_FLAG_BROADCAST) !== 0 || reply.yiaddr === 0) {
    return { mac: BROADCAST_MAC, ipv4: BROADCAST_IP, port: DHCP_CLIENT_PORT, via: 'broadcast' };
  }
  return { mac: clientMac, ipv4: formatIpv4Address(reply.yiaddr), port: DHCP_CLIENT_PORT, via: 'yiaddr' };
}

function leaseTimes(seconds: number): DhcpOption[] {
  return [
    dhcpOption.u32(DHCP_OPT_LEASE_TIME, seconds),
    dhcpOption.u32(DHCP_OPT_RENEWAL_TIME, Math.floor(seconds / 2)),
    dhcpOption.u32(DHCP_OPT_REBINDING_TIME, Math.floor((seconds * 7) / 8)),
  ];
}

/** The client's parameter request list in its order (duplicates removed), or our defaults without one. */
function requestedParams(msg: DhcpRepr): number[] {
  const prl = findDhcpOption(msg, DHCP_OPT_PARAMETER_LIST);
  return prl ? [...new Set(prl)] : DEFAULT_PARAMS;
}

/** The configuration options we have, for the codes asked for, in the order asked. */
function configOptions(r: Request, codes: number[]): DhcpOption[] {
  const n = r.binding.network;
  const out: DhcpOption[] = [];
  for (const code of codes) {
    switch (code) {
      case DHCP_OPT_SUBNET_MASK: out.push(dhcpOption.ip(code, r.net.cidr.mask)); break;
      case DHCP_OPT_ROUTER: out.push(dhcpOption.ip(code, r.net.gateway)); break;
      case DHCP_OPT_BROADCAST: out.push(dhcpOption.ip(code, r.net.cidr.broadcast)); break;
      case DHCP_OPT_MTU: out.push(dhcpOption.u16(code, n.mtu)); break;
      case DHCP_OPT_DNS: {
        const servers = n.dnsServer === undefined ? [] : typeof n.dnsServer === 'string' ? [n.dnsServer] : n.dnsServer;
        if (servers.length > 0) out.push(dhcpOption.ip(code, ...servers.map((s) => parseIpv4(s, 'dnsServer'))));
        break;
      }
      case DHCP_OPT_DOMAIN_NAME: if (n.domain) out.push(dhcpOption.text(code, n.domain)); break;
      default: break;
    }
  }
  return out;
}

/** Parses and checks the network once per message; throws with the field at fault. */
function parseNetwork(b: DhcpBinding): ParsedNetwork {
  const n = b.network;
  const cidr = parseCidr(n.cidr, 'cidr');
  const gateway = parseIpv4(n.gateway, 'gateway');
  if (!contains(cidr, gateway)) throw new Error(`gateway ${n.gateway} is outside ${cidr.text}`);
  if (!Number.isInteger(n.mtu) || n.mtu < 68 || n.mtu > 0xffff) throw new Error(`mtu ${n.mtu} is not an integer in 68..65535`);
  if (!Number.isInteger(n.leaseSeconds) || n.leaseSeconds < 1 || n.leaseSeconds > 0xfffffffe) {
    throw new Error(`leaseSeconds ${n.leaseSeconds} is not an integer in 1..4294967294`);
  }
  if (n.domain !== undefined && (!/^[\x21-\x7e]{1,253}$/.test(n.domain))) throw new Error(`domain ${JSON.stringify(n.domain)} is not 1..253 printable ASCII characters`);
  const dns = n.dnsServer === undefined ? [] : typeof n.dnsServer === 'string' ? [n.dnsServer] : n.dnsServer;
  for (const s of dns) parseIpv4(s, 'dnsServer');
  return { cidr, gateway };
}

/** The first option whose length is outside RFC 2132's, described; undefined when all fit. */
function checkOptionLengths(options: DhcpOption[]): string | undefined {
  for (const o of options) {
    const range = OPTION_LEN[o.code];
    if (range && (o.data.length < range[0] || o.data.length > range[1])) {
      const want = range[0] === range[1] ? `${range[0]}` : `${range[0]}..${range[1]}`;
      return `option ${o.code} is ${o.data.length} bytes, expected ${want}`;
    }
  }
  return undefined;
}

function ipOption(msg: DhcpRepr, code: number): number | undefined {
  const d = findDhcpOption(msg, code);
  return d === undefined ? undefined : bytesToIpv4(d);
}

function wireReason(e: WireError): DhcpDropReason {
  switch (e.field) {
    case 'header': return 'truncated';
    case 'op': return 'wrong-op';
    case 'hlen': return 'bad-hlen';
    case 'magic_cookie': return 'bad-cookie';
    default: return 'bad-option';
  }
}
