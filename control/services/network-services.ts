// The network services appnetd serves for its local ports: the gateway (.1: ARP and ping), DHCP when
// the network provides it, DNS when it provides DNS. The cores are pure (gateway.ts, dhcp-server.ts,
// dns-responder.ts); this class is their I/O edge:
//
//   reconcile pass --apply(plan, ports)--> punt rules per VNI (installed / removed), DHCP bindings
//   engine punt batch --onPunts(frames)--> core per rule kind --> engine.injectToPort(frame's port)
//   DNS names not ours --UDP socket--> upstream --answer--> injectToPort (original id restored)
//
// Only frames from local ports are answered (the gateway is distributed: every host answers its own
// ports, docs/services.md). Frames of a rule that arrive from the wire are counted and ignored.
import { NAME_SUFFIX, outboundHostname } from '../connections/env.ts';
import { isRealisable } from '../connections/realise.ts';
import type { ConnectionRecord } from '../connections/model.ts';
import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Engine, PuntedFrame } from '../../dataplane/engine.ts';
import { ETHERTYPE_ARP, IPPROTO_ICMP, IPPROTO_UDP } from '../../dataplane/wire/index.ts';
import type { InterfaceRecord } from '../instances/interface.ts';
import type { NetworkRecord } from '../networks/network.ts';
import type { HostPlan } from '../reconcile/plan.ts';
import { DhcpLeaseRepository } from '../repo/dhcp-leases.ts';
import type { StateView } from '../repo/state-view.ts';
import type { Store, Watcher } from '../store/store.ts';
import { buildDhcpReplyFrame, type UdpFrame } from './dhcp-frames.ts';
import { DhcpServer, type DhcpBinding, type DhcpCounters } from './dhcp-server.ts';
import { DnsResponder, buildDnsReplyFrame, staticRecordSource, type DnsCounters, type DnsEntry } from './dns-responder.ts';
import { answerGateway, gatewayAddress, gatewayMac, type GatewayIdentity } from './gateway.ts';
import { PING_INTERVAL_MS, PING_LINGER_MS, PingRun, type PingOutput } from './ping.ts';

/** Extra DNS entries: /appnet/dns/<network uuid>/<name> = {name, address} (control/api/dns-route.ts). */
export const DNS_ENTRIES_PREFIX = '/appnet/dns/';
export const DEFAULT_DNS_ZONE = 'appnet.internal';
/** Option 51, like the reference's dnsmasq (1h). */
const LEASE_SECONDS = 3600;
/** An upstream answer later than this is dropped (the client has retried or given up by then). */
const FORWARD_TIMEOUT_MS = 5000;

type RuleKind = 'arp' | 'icmp' | 'dhcp' | 'dns';

export interface NetworkServicesOptions {
  /** injectToVni: the ping API's probes to addresses no local port holds (absent: they are not sent). */
  engine: Pick<Engine, 'addPuntRule' | 'removePuntRule' | 'injectToPort'> & Partial<Pick<Engine, 'injectToVni'>>;
  store: Store;
  view: StateView;
  host: string;
  log: Logger;
  /** `<instance>.<namespace>.<zone>`; default appnet.internal. */
  dnsZone?: string;
  /** `a.b.c.d[:port]` for names outside the zone; without it they are REFUSED. */
  dnsUpstream?: string;
  /** ms since the epoch (tests). */
  now?: () => number;
}

interface LocalPort { id: number; iface: string; mtu: number }

/** One network served on this host. */
interface Served {
  network: string;
  vni: number;
  /** What the rules and cores were built from; a change rebuilds them. */
  key: string;
  gw: GatewayIdentity;
  rules: number[];
  dhcp?: DhcpServer;
  dns?: DnsResponder;
  dnsDirty: boolean;
  /** Local ports on the network by MAC (DHCP serves only these, and only from their own port). */
  ports: Map<string, LocalPort>;
  /** The port of the DHCP frame being handled (the core's lookup is synchronous, within handleFrame). */
  framePort: number;
}

interface Pending { port: number; request: UdpFrame; id: number; upstream: string; timer: NodeJS.Timeout }

export interface ServiceStats {
  gateway: { arp: number; echo: number; quiet: Record<string, number>; dropped: Record<string, number> };
  dhcp: DhcpCounters;
  dns: DnsCounters & { upstream: { answered: number; timedOut: number; failed: number } };
  /** Frames of our rules that came from another host (answered there, not here). */
  fromWire: number;
  /** Answers the engine refused (the port went away meanwhile). */
  injectFailed: number;
}

export class NetworkServices {
  readonly #o: NetworkServicesOptions;
  readonly #zone: string;
  readonly #leases: DhcpLeaseRepository;
  readonly #served = new Map<number, Served>();
  readonly #rules = new Map<number, { vni: number; kind: RuleKind }>();
  /** Extra DNS entries by network, then by name. */
  readonly #entries = new Map<string, Map<string, string>>();
  /** Local interfaces of the last pass: a removed one releases its lease. */
  #local = new Map<string, { network: string; mac: string }>();
  #entriesWatch: Watcher | undefined;
  #socket: dgram.Socket | undefined;
  readonly #pending = new Map<number, Pending>();
  #stats: ServiceStats = emptyStats();
  /** Counters of cores already discarded (their network left this host). */
  #retired: { dhcp: DhcpCounters[]; dns: DnsCounters[] } = { dhcp: [], dns: [] };
  /** Ping API runs in progress, by echo id (replies come back through the ICMP and ARP rules). */
  readonly #runs = new Map<number, { vni: number; run: PingRun }>();
  #closed = false;

  constructor(o: NetworkServicesOptions) {
    this.#o = o;
    this.#zone = o.dnsZone ?? DEFAULT_DNS_ZONE;
    this.#leases = new DhcpLeaseRepository(o.store, o.log);
  }

  /** Loads leases and extra DNS entries (and follows the entries). Call after the view has started. */
  async start(): Promise<void> {
    await this.#leases.load();
    // Leases of interfaces removed while no daemon was looking.
    const live = new Set<string>();
    for (const i of this.#o.view.interfaces.values()) if (i.state !== 'deleted') live.add(`${i.network_uuid}/${i.macaddr.toLowerCase()}`);
    for (const network of this.#leases.networks()) {
      for (const l of this.#leases.leases(network)) if (!live.has(`${network}/${l.mac}`)) this.#leases.release(network, l.mac);
    }
    const { kvs, revision } = await this.#o.store.range(DNS_ENTRIES_PREFIX);
    for (const kv of kvs) this.#entry('put', kv.key, kv.value);
    this.#entriesWatch = await this.#o.store.watch(DNS_ENTRIES_PREFIX, {
      fromRevision: revision + 1,
      onError: (err) => this.#o.log.warn({ err }, 'DNS entries watch ended; entries stay as last seen until restart'),
    }, (events) => { for (const e of events) this.#entry(e.type, e.kv.key, e.kv.value); });
  }

  /**
   * After each reconcile pass: serve every network with a local port, stop serving the others, and
   * release the leases of local interfaces that were removed.
   */
  apply(plan: HostPlan, portIdByIface: ReadonlyMap<string, number>): void {
    if (this.#closed) return;
    const want = new Map<number, NetworkRecord>();
    for (const v of plan.vnis) {
      const net = this.#o.view.networks.get(v.network);
      if (net) want.set(v.vni, net);
    }
    for (const [vni, s] of this.#served) {
      const net = want.get(vni);
      if (!net || keyOf(net) !== s.key) this.#stop(s);
    }
    for (const [vni, net] of want) if (!this.#served.has(vni)) this.#serve(vni, net);
    for (const s of this.#served.values()) { s.ports.clear(); s.dnsDirty = true; }
    const local = new Map<string, { network: string; mac: string }>();
    for (const p of plan.ports) {
      if (p.connection) continue; // an application connection's port: no network, no services
      const mac = p.mac.toLowerCase();
      local.set(p.iface, { network: p.network, mac });
      const id = portIdByIface.get(p.iface);
      if (id !== undefined) this.#served.get(p.vni)?.ports.set(mac, { id, iface: p.iface, mtu: p.mtu });
    }
    for (const [iface, was] of this.#local) {
      if (local.has(iface)) continue;
      const rec = this.#o.view.interfaces.get(iface);
      if (!rec || rec.state === 'deleted') this.#leases.release(was.network, was.mac);
    }
    this.#local = local;
  }

  /** A batch from the engine: frames of other rules (link handshakes, NAT) are not ours and are skipped. */
  onPunts(frames: PuntedFrame[]): void {
    for (const f of frames) {
      const rule = this.#rules.get(f.rule);
      if (!rule) continue;
      // A ping run's replies: echo replies from local ports, ARP replies from anywhere on the VNI.
      if ((rule.kind === 'icmp' || rule.kind === 'arp') && this.#runs.size > 0 && this.#toRuns(rule.vni, f.frame) && rule.kind === 'icmp') continue;
      if (f.port === null) { this.#stats.fromWire++; continue; }
      const s = this.#served.get(rule.vni);
      if (!s) continue;
      if (rule.kind === 'dhcp') this.#dhcp(s, f.port, f.frame);
      else if (rule.kind === 'dns') this.#dns(s, f.port, f.frame);
      else this.#gateway(s, f.port, f.frame);
    }
  }

  stats(): ServiceStats {
    const out = structuredClone(this.#stats);
    const dhcps = [...this.#retired.dhcp, ...[...this.#served.values()].flatMap((s) => (s.dhcp ? [s.dhcp.counters()] : []))];
    const dnss = [...this.#retired.dns, ...[...this.#served.values()].flatMap((s) => (s.dns ? [s.dns.counters()] : []))];
    for (const c of dhcps) addInto(out.dhcp, c);
    for (const c of dnss) addInto(out.dns, c);
    return out;
  }

  /** Bound, unexpired DHCP leases of the networks this host serves (the metrics' leases in use). */
  leasesInUse(now = Date.now()): number {
    let n = 0;
    for (const s of this.#served.values()) for (const l of this.#leases.leases(s.network)) if (l.state === 'bound' && l.expiresAt > now) n++;
    return n;
  }

  /** Leases this host holds in memory for a network (what the store has, plus writes in flight). */
  leases(network: string) {
    return this.#leases.leases(network);
  }

  /** Whether this host serves the network (it has a local port on it). */
  serves(network: string): boolean {
    for (const s of this.#served.values()) if (s.network === network) return true;
    return false;
  }

  /** The engine port ids of each served network's local ports (for usage events). */
  localPorts(): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const s of this.#served.values()) out.set(s.network, [...s.ports.values()].map((p) => p.id));
    return out;
  }

  /**
   * Pings `address` from the network's gateway, one probe per PING_INTERVAL_MS, and waits for the
   * last replies up to PING_LINGER_MS. undefined when this host does not serve the network. A local
   * port holding the address gets the probes directly; anything else is asked for by ARP on the VNI.
   */
  async ping(network: string, address: string, count: number): Promise<PingOutput | undefined> {
    const s = [...this.#served.values()].find((x) => x.network === network);
    if (!s) return undefined;
    let local: LocalPort | undefined;
    let mac: string | undefined;
    for (const [m, p] of s.ports) {
      if (this.#o.view.interfaces.get(p.iface)?.ipv4 === address) { local = p; mac = m; }
    }
    let id = randomInt(0x10000);
    for (let tries = 0; this.#runs.has(id) && tries < 64; tries++) id = randomInt(0x10000);
    if (this.#runs.has(id)) throw new Error('no free echo identifier: too many pings in progress');
    const run = new PingRun({ gw: s.gw, address, mac, id, count });
    this.#runs.set(id, { vni: s.vni, run });
    const now = () => performance.now();
    try {
      for (let first = true; !run.sentAll; first = false) {
        if (!first) await sleep(PING_INTERVAL_MS);
        const sent = run.probe(now());
        if (!sent) continue;
        try {
          if (local && !sent.broadcast) this.#o.engine.injectToPort(local.id, sent.frame);
          else if (this.#o.engine.injectToVni) this.#o.engine.injectToVni(s.vni, sent.frame);
          else this.#stats.injectFailed++;
        } catch (err) {
          this.#stats.injectFailed++;
          this.#o.log.debug({ err, network, address }, 'ping probe not injected');
        }
      }
      for (let waited = 0; !run.complete && waited < PING_LINGER_MS && !this.#closed; waited += 20) await sleep(20);
      return run.output(now());
    } finally {
      this.#runs.delete(id);
    }
  }

  #toRuns(vni: number, frame: Buffer): boolean {
    const t = performance.now();
    for (const r of this.#runs.values()) if (r.vni === vni && r.run.receive(frame, t)) return true;
    return false;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const s of [...this.#served.values()]) this.#stop(s);
    for (const p of this.#pending.values()) clearTimeout(p.timer);
    this.#pending.clear();
    this.#socket?.close();
    await this.#entriesWatch?.cancel().catch(() => undefined);
    await this.#leases.flush();
  }

  #serve(vni: number, net: NetworkRecord): void {
    const gw = { ipv4: gatewayAddress(net.netblock), mac: gatewayMac(vni) };
    const s: Served = { network: net.uuid, vni, key: keyOf(net), gw, rules: [], dnsDirty: true, ports: new Map(), framePort: -1 };
    const { engine } = this.#o;
    const add = (kind: RuleKind, rule: Parameters<Engine['addPuntRule']>[0]) => {
      const id = engine.addPuntRule({ ...rule, vni });
      s.rules.push(id);
      this.#rules.set(id, { vni, kind });
    };
    // ARP is copied, not consumed: instances ARP for each other through the same VNI.
    add('arp', { ethertype: ETHERTYPE_ARP, consume: false });
    add('icmp', { ipProto: IPPROTO_ICMP, dstIp: gw.ipv4 });
    if (net.provideDhcp) {
      add('dhcp', { ipProto: IPPROTO_UDP, dstPort: 67 });
      s.dhcp = new DhcpServer({ serverMac: gw.mac, lookup: (mac) => this.#binding(s, mac), leases: this.#leases.forNetwork(net.uuid) });
    }
    if (net.provideDns) {
      add('dns', { ipProto: IPPROTO_UDP, dstPort: 53, dstIp: gw.ipv4 });
      s.dns = this.#responder(s);
    }
    this.#served.set(vni, s);
    this.#o.log.info({ network: net.uuid, vni, gateway: gw.ipv4, dhcp: net.provideDhcp, dns: net.provideDns }, 'network services on');
  }

  #stop(s: Served): void {
    for (const id of s.rules) {
      this.#o.engine.removePuntRule(id);
      this.#rules.delete(id);
    }
    if (s.dhcp) this.#retired.dhcp.push(s.dhcp.counters());
    if (s.dns) this.#retired.dns.push(s.dns.counters());
    this.#served.delete(s.vni);
    this.#o.log.info({ network: s.network, vni: s.vni }, 'network services off');
  }

  #gateway(s: Served, port: number, frame: Buffer): void {
    const o = answerGateway(frame, s.gw);
    const g = this.#stats.gateway;
    if (o.action === 'reply') {
      g[o.kind]++;
      this.#inject(port, o.frame);
    } else if (o.action === 'none') {
      g.quiet[o.reason] = (g.quiet[o.reason] ?? 0) + 1;
    } else {
      g.dropped[o.reason] = (g.dropped[o.reason] ?? 0) + 1;
    }
  }

  #dhcp(s: Served, port: number, frame: Buffer): void {
    if (!s.dhcp) return;
    s.framePort = port;
    const o = s.dhcp.handleFrame(frame, (this.#o.now ?? Date.now)());
    if (o.action === 'reply') this.#inject(port, buildDhcpReplyFrame(o));
  }

  /**
   * The DHCP binding of `mac` on `s`, only when it is the MAC of the port the frame came from: one
   * instance cannot obtain or release another's lease by sending its MAC.
   */
  #binding(s: Served, mac: string): DhcpBinding | undefined {
    const p = s.ports.get(mac);
    const net = this.#o.view.networks.get(s.network);
    const ipv4 = p && p.id === s.framePort ? this.#o.view.interfaces.get(p.iface)?.ipv4 : undefined;
    if (!p || !ipv4 || !net) return undefined;
    return {
      ipv4,
      network: {
        cidr: net.netblock, gateway: s.gw.ipv4, mtu: p.mtu, leaseSeconds: LEASE_SECONDS,
        ...(net.provideDns ? { dnsServer: s.gw.ipv4 } : {}),
        ...(net.namespace ? { domain: `${net.namespace}.${this.#zone}` } : {}),
      },
    };
  }

  #dns(s: Served, port: number, frame: Buffer): void {
    if (!s.dns) return;
    if (s.dnsDirty) { s.dns = this.#responder(s, s.dns); s.dnsDirty = false; }
    const o = s.dns.handleFrame(frame);
    if (o.action === 'reply') this.#inject(port, buildDnsReplyFrame(o.request!, o.payload));
    else if (o.action === 'forward') this.#forward(port, o.request!, o.query, `${o.upstream.ipv4}:${o.upstream.port}`, o.upstream);
  }

  /** A responder over the current records; `prev`'s counters are carried into the retired totals. */
  #responder(s: Served, prev?: DnsResponder): DnsResponder {
    if (prev) this.#retired.dns.push(prev.counters());
    const entries: DnsEntry[] = [];
    const { view } = this.#o;
    const onNetwork = new Set<string>();
    for (const i of view.interfaces.values() as Iterable<InterfaceRecord>) {
      if (i.network_uuid !== s.network || i.state === 'deleted' || !i.ipv4) continue;
      const inst = view.instances.get(i.instance_uuid);
      if (inst) entries.push({ name: `${inst.name}.${inst.namespace}.${this.#zone}`, ipv4: i.ipv4 });
      onNetwork.add(i.instance_uuid);
    }
    // The outbound names of this network's instances (APPNET_OUTBOUND_*), as their hosts files have them: a
    // container, whose hosts file is its runtime's, resolves them here.
    for (const c of (view.connections as ReadonlyMap<string, ConnectionRecord> | undefined)?.values() ?? []) {
      if (!isRealisable(c) || !onNetwork.has(c.source_instance_id)) continue;
      entries.push({ name: outboundHostname(c.source_instance_id, c.outbound_name), ipv4: c.link.inbound_address });
    }
    const net = view.networks.get(s.network);
    const domain = `${net?.namespace ?? 'system'}.${this.#zone}`;
    for (const [name, ipv4] of this.#entries.get(s.network) ?? []) entries.push({ name, ipv4 });
    // One bad name (an instance named with a character DNS cannot carry) must not silence the rest.
    const usable = entries.filter((e) => {
      try { staticRecordSource(domain, [e]); return true; } catch { return false; }
    });
    return new DnsResponder({ zone: this.#zone, extraZones: [NAME_SUFFIX], cidr: net?.netblock ?? '0.0.0.0/32', records: staticRecordSource(domain, usable), upstream: this.#o.dnsUpstream });
  }

  #forward(port: number, request: UdpFrame, query: Uint8Array, upstream: string, to: { ipv4: string; port: number }): void {
    const socket = this.#upstreamSocket();
    let id = randomInt(0x10000);
    for (let tries = 0; this.#pending.has(id) && tries < 16; tries++) id = randomInt(0x10000);
    if (this.#pending.has(id)) { this.#stats.dns.upstream.failed++; return; }
    const copy = Buffer.from(query);
    const original = copy.readUInt16BE(0);
    copy.writeUInt16BE(id, 0);
    const timer = setTimeout(() => {
      if (this.#pending.delete(id)) this.#stats.dns.upstream.timedOut++;
    }, FORWARD_TIMEOUT_MS);
    timer.unref();
    this.#pending.set(id, { port, request, id: original, upstream, timer });
    socket.send(copy, to.port, to.ipv4, (err) => {
      if (!err) return;
      clearTimeout(timer);
      if (this.#pending.delete(id)) this.#stats.dns.upstream.failed++;
    });
  }

  #upstreamSocket(): dgram.Socket {
    if (this.#socket) return this.#socket;
    const socket = dgram.createSocket('udp4');
    socket.on('error', (err) => this.#o.log.warn({ err }, 'DNS upstream socket error'));
    socket.on('message', (msg, rinfo) => {
      if (msg.length < 12) return;
      const p = this.#pending.get(msg.readUInt16BE(0));
      // Only the upstream we asked may answer (a stray datagram must not become a reply).
      if (!p || p.upstream !== `${rinfo.address}:${rinfo.port}`) return;
      this.#pending.delete(msg.readUInt16BE(0));
      clearTimeout(p.timer);
      const answer = Buffer.from(msg);
      answer.writeUInt16BE(p.id, 0);
      this.#stats.dns.upstream.answered++;
      this.#inject(p.port, buildDnsReplyFrame(p.request, answer));
    });
    socket.unref();
    this.#socket = socket;
    return socket;
  }

  #inject(port: number, frame: Uint8Array): void {
    try {
      this.#o.engine.injectToPort(port, frame);
    } catch (err) {
      this.#stats.injectFailed++;
      this.#o.log.debug({ err, port }, 'service answer not injected');
    }
  }

  #entry(type: 'put' | 'delete', key: string, value: string): void {
    const [network, name] = key.slice(DNS_ENTRIES_PREFIX.length).split('/');
    if (!network || !name) return;
    const m = this.#entries.get(network) ?? new Map<string, string>();
    if (type === 'delete') m.delete(name);
    else {
      try {
        m.set(name, (JSON.parse(value) as { address: string }).address);
      } catch (err) {
        this.#o.log.warn({ key, err }, 'DNS entry record unreadable; ignored');
      }
    }
    this.#entries.set(network, m);
    for (const s of this.#served.values()) if (s.network === network) s.dnsDirty = true;
  }
}

function keyOf(n: NetworkRecord): string {
  return `${n.netblock} ${n.provideDhcp} ${n.provideDns} ${n.namespace}`;
}

function emptyStats(): ServiceStats {
  return {
    gateway: { arp: 0, echo: 0, quiet: {}, dropped: {} },
    dhcp: { received: 0, sent: { OFFER: 0, ACK: 0, NAK: 0 }, dropped: {}, quiet: {}, leases: { bind: 0, release: 0, decline: 0 } },
    dns: { received: 0, replies: {}, forwarded: 0, dropped: {}, upstream: { answered: 0, timedOut: 0, failed: 0 } },
    fromWire: 0,
    injectFailed: 0,
  };
}

/** Adds every number of `from` into `into`, key by key (counters of the same shape, sparse maps allowed). */
function addInto(into: any, from: any): void {
  for (const [k, v] of Object.entries(from)) {
    if (typeof v === 'number') into[k] = (into[k] ?? 0) + v;
    else if (v && typeof v === 'object') addInto((into[k] ??= {}), v);
  }
}
