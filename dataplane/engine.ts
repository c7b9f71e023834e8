// The typed face of the native packet engine. Validates arguments with messages that name the
// field and the expected form, converts addresses, and hands punted frames to JS in batches.
import type { NatTable } from './nat.ts';
import { native, type NativeCounterBlock, type NativeEngine, type NativePortSpec } from './native.ts';
import { formatIpv4Address, formatMac, parseIpv4Address, parseMac } from './wire/address.ts';
import { compilePortFilter } from './wire/port-filter.ts';
import { CAPTURE_POINTS, unpackCaptureRecords } from './capture-records.ts';
export { CAPTURE_POINTS, type CaptureRecord, type CapturePointName } from './capture-records.ts';
export type { PortFilter } from './wire/port-filter.ts';
import { DROP_REASONS, LINK_PUNT_RULE, type PortKind, type DropReason, type LinkDropReason, type CounterBlock, type PortCounters, type EngineCounters, type GatewaySpec, type LinkCounters, type LinkSessionInfo, type LinkPeerInfo, type LinkSessionKeys, type EngineOptions, type Offloads, type PortSpec, type PuntRule, type PuntedFrame, type CaptureSpec, type CaptureBatch, type PackedCaptureBatch, type FdbEntry } from './engine-types.ts';
export { DROP_REASONS, LINK_PUNT_RULE, type PortKind, type DropReason, type LinkDropReason, type CounterBlock, type PortCounters, type EngineCounters, type GatewaySpec, type LinkCounters, type LinkSessionInfo, type LinkPeerInfo, type LinkSessionKeys, type EngineOptions, type Offloads, type PortSpec, type PuntRule, type PuntedFrame, type CaptureSpec, type CaptureBatch, type PackedCaptureBatch, type FdbEntry } from './engine-types.ts';

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

function check(cond: boolean, message: string): asserts cond {
  if (!cond) throw new RangeError(message);
}
function checkVni(vni: number, field = 'vni'): void {
  check(Number.isInteger(vni) && vni >= 0 && vni <= 0xffffff, `${field} must be an integer in 0..16777215, got ${vni}`);
}
/** An interface address `a.b.c.d/len` as [address, prefix length]; host bits are allowed (it is an address). */
function parseInterfaceCidr(text: string, field: string): [number, number] {
  const m = typeof text === 'string' ? /^([0-9.]+)\/([0-9]{1,2})$/.exec(text) : null;
  check(m !== null && Number(m[2]) <= 32, `${field} must be an IPv4 CIDR such as 198.18.4.2/26, got ${JSON.stringify(text)}`);
  let address: number;
  try {
    address = parseIpv4Address(m![1]);
  } catch (e) {
    throw new RangeError(`${field}: ${(e as Error).message}`);
  }
  return [address, Number(m![2])];
}

function checkMtu(mtu: number): void {
  check(Number.isInteger(mtu) && mtu >= 68 && mtu <= 9000, `mtu must be an integer in 68..9000, got ${mtu}`);
}

export class Engine {
  readonly #native: NativeEngine;
  readonly #floods = new Map<number, string[]>();
  #stopped = false;

  constructor(opts: EngineOptions) {
    const port = opts.underlayPort ?? 4789;
    check(Number.isInteger(port) && port > 0 && port < 65536, `underlayPort must be 1..65535, got ${port}`);
    const ageing = opts.ageingSeconds ?? 300;
    check(ageing > 0 && ageing <= 86400, `ageingSeconds must be in (0, 86400], got ${ageing}`);
    const fdbLimit = opts.fdbLimit ?? 16384;
    check(Number.isInteger(fdbLimit) && fdbLimit >= 1 && fdbLimit <= 1_000_000, `fdbLimit must be 1..1000000, got ${fdbLimit}`);
    const onPunt = opts.onPunt;
    const linkPort = opts.linkPort ?? 0;
    check(Number.isInteger(linkPort) && linkPort >= 0 && linkPort < 65536 && linkPort !== port, `linkPort must be 0..65535 and differ from underlayPort, got ${linkPort}`);
    const threads = opts.threads ?? 1;
    check(Number.isInteger(threads) && threads >= 1 && threads <= 16, `threads must be 1..16, got ${threads}`);
    const cpus = opts.cpus ?? [];
    check(cpus.every((c) => Number.isInteger(c) && c >= 0 && c < 1024), `cpus must be CPU numbers 0..1023, got ${JSON.stringify(cpus)}`);
    let self: Engine | undefined;
    this.#native = new native.Engine(
      { underlayAddress: parseIpv4Address(opts.underlayAddress), underlayPort: port, ageingMs: Math.round(ageing * 1000), fdbLimit, linkPort, threads, cpus, ...opts.offloads },
      onPunt ? () => { if (self) onPunt(self.drainPunts()); } : undefined,
    );
    self = this;
  }

  start(): void { this.#native.start(); }

  /** Stops the threads and closes every device; the devices disappear. Idempotent. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#native.stop();
  }

  /** `encrypted`: the VNI travels only on encrypted links (needs linkPort). */
  addVni(vni: number, mtu: number, opts: { encrypted?: boolean } = {}): void {
    checkVni(vni);
    checkMtu(mtu);
    this.#native.addVni(vni, mtu, opts.encrypted === true);
  }
  removeVni(vni: number): void {
    this.#native.removeVni(vni);
    this.#floods.delete(vni);
  }

  /** Remote VTEPs (underlay IPv4) that receive this VNI's broadcast and unknown unicast. */
  setFlood(vni: number, remotes: string[]): void {
    checkVni(vni);
    this.#native.setFlood(vni, remotes.map((r) => parseIpv4Address(r)));
    this.#floods.set(vni, [...remotes].sort());
  }

  /**
   * The VTEPs clear VXLAN is accepted from; until the first call, any. Datagrams from other addresses are
   * dropped as `unknown_vtep` before any lookup or learning, and a link peer's datagrams for a VNI whose flood
   * list does not hold it as `vni_not_shared`. The control plane gives the registered hosts; static mode its
   * flood lists and link peers.
   */
  setKnownVteps(addresses: Iterable<string>): void {
    const list = [...new Set(addresses)].sort();
    this.#native.setKnownVteps(list.map((a) => parseIpv4Address(a)));
    this.#knownVteps = list;
  }
  #knownVteps: string[] | null = null;
  /** The known VTEPs as last set; null: not enforced. */
  knownVteps(): readonly string[] | null {
    return this.#knownVteps;
  }

  /** Each VNI's flood list as last set (for operators: which hosts a VNI's mesh holds now). */
  floods(): Array<{ vni: number; flood: string[] }> {
    return [...this.#floods].map(([vni, flood]) => ({ vni, flood })).sort((a, b) => a.vni - b.vni);
  }

  /** Creates the device (in spec.netns if given), configures it and registers it; blocks this thread meanwhile. */
  addPort(spec: PortSpec): number {
    return this.#native.addPort(nativePortSpec(spec));
  }

  /**
   * addPort with the device created and configured on a libuv pool thread, so the kernel's RTNL lock
   * (1-80 ms per device under load) never blocks the event loop. Rejects with addPort's errors.
   */
  addPortAsync(spec: PortSpec): Promise<number> {
    try {
      return this.#native.addPortAsync(nativePortSpec(spec));
    } catch (err) {
      return Promise.reject(err);
    }
  }
  removePort(id: number): void { this.#native.removePort(id); }

  /** A static entry: `to` is a local port id or a remote VTEP's underlay address. */
  addFdb(vni: number, mac: string, to: { port: number } | { remote: string }): void {
    checkVni(vni);
    const m = Buffer.from(parseMac(mac));
    if ('port' in to) this.#native.addFdb(vni, m, to.port, 0);
    else this.#native.addFdb(vni, m, -1, parseIpv4Address(to.remote));
  }
  removeFdb(vni: number, mac: string): boolean { return this.#native.removeFdb(vni, Buffer.from(parseMac(mac))); }

  fdb(vni: number): FdbEntry[] {
    return this.#native.fdb(vni).map((e) => ({
      mac: formatMac(e.mac),
      port: e.port >= 0 ? e.port : null,
      remote: e.port >= 0 ? null : formatIpv4Address(e.remote),
      ageMs: e.ageMs,
      static: e.static,
    }));
  }

  counters(): EngineCounters {
    return this.#native.counters() as unknown as EngineCounters;
  }

  addPuntRule(rule: PuntRule): number {
    if (rule.vni !== undefined) checkVni(rule.vni, 'rule.vni');
    return this.#native.addPuntRule({ ...rule, dstIp: rule.dstIp === undefined ? undefined : parseIpv4Address(rule.dstIp) });
  }
  removePuntRule(id: number): boolean { return this.#native.removePuntRule(id); }

  drainPunts(): PuntedFrame[] {
    return this.#native.drainPunts().map((p) => ({
      rule: p.rule,
      port: p.port >= 0 ? p.port : null,
      vni: p.vni,
      remote: p.port >= 0 ? null : formatIpv4Address(p.remote),
      remotePort: p.remotePort,
      frame: p.frame,
    }));
  }

  /** Delivers a frame to a local port's device, as if the overlay had sent it. */
  injectToPort(port: number, frame: Uint8Array): void { this.#native.injectToPort(port, Buffer.from(frame)); }
  /** Switches a frame within a VNI as if a station on this host had sent it. */
  injectToVni(vni: number, frame: Uint8Array): void { this.#native.injectToVni(vni, Buffer.from(frame)); }
  /** Sends a UDP datagram from the underlay socket. */
  sendDatagram(address: string, port: number, payload: Uint8Array): void {
    this.#native.sendDatagram(parseIpv4Address(address), port, Buffer.from(payload));
  }
  /** The outer UDP source ports the flow hash spreads flows over. */
  txSourcePorts(): number[] { return this.#native.txSourcePorts(); }

  /** As if the port's instance had sent the frame (replaying a capture). */
  injectFromPort(port: number, frame: Uint8Array): void { this.#native.injectFromPort(port, Buffer.from(frame)); }

  /** Starts a capture session; throws RangeError naming `filter` when the expression does not compile. */
  captureStart(spec: CaptureSpec): number {
    check(spec.points.length > 0, 'points must name at least one of port, vni_encap, vni_decap, wire');
    let mask = 0;
    for (const p of spec.points) {
      check(p in CAPTURE_POINTS, `points: unknown point '${p}'; known: ${Object.keys(CAPTURE_POINTS).join(', ')}`);
      mask |= CAPTURE_POINTS[p];
    }
    if (spec.vni !== undefined) checkVni(spec.vni);
    const snaplen = spec.snaplen ?? 65535;
    check(Number.isInteger(snaplen) && snaplen >= 14 && snaplen <= 65535, `snaplen must be an integer in 14..65535, got ${snaplen}`);
    const ring = spec.ring ?? 4096;
    check(Number.isInteger(ring) && ring >= 1 && ring <= 1_000_000, `ring must be an integer in 1..1000000, got ${ring}`);
    return this.#native.captureStart({ points: mask, vni: spec.vni, port: spec.port, snaplen, ring, filter: spec.filter });
  }
  /** The records copied since the last drain, unpacked (one object per record: for tests and JSON clients). */
  captureDrain(id: number): CaptureBatch {
    const { records, count: _count, ...totals } = this.#native.captureDrain(id);
    return { ...totals, records: unpackCaptureRecords(records) };
  }
  /** The same batch packed as the engine holds it, one buffer whatever the record count. */
  captureDrainPacked(id: number): PackedCaptureBatch {
    return this.#native.captureDrain(id);
  }
  captureStop(id: number): boolean { return this.#native.captureStop(id); }

  // The uplink and the NAT stage (native/src/uplink.cc).

  /** Opens the uplink TUN `name` in this process's namespace (null closes it). */
  setUplink(name: string | null, mtu = 1500): void {
    if (name !== null) check(IFNAME.test(name), `uplink name must be 1-15 characters of [A-Za-z0-9_.-], got '${name}'`);
    checkMtu(mtu);
    this.#native.setUplink(name, mtu);
  }
  /** An in-memory uplink in place of the TUN: the test is the outside, through memorySend/memoryReceive('uplink'). */
  setUplinkMemory(mtu = 1500): void {
    checkMtu(mtu);
    this.#native.setUplinkMemory(mtu);
  }
  /** As the instance behind memory port `port` (or the outside of a memory uplink): one frame in; false when its queue is full. */
  memorySend(port: number | 'uplink', frame: Buffer): boolean { return this.#native.memorySend(port, frame); }
  /** What the engine wrote to memory port `port` (or a memory uplink) since the last call, oldest first. */
  memoryReceive(port: number | 'uplink'): Buffer[] { return this.#native.memoryReceive(port); }
  /** The table the NAT stage translates through (shared: rules added to it apply at once); null: none. */
  setNat(table: NatTable | null): void { this.#native.setNat(table === null ? null : table.nativeHandle()); }
  /** The gateway of a NAT network on this host, or null to take the VNI out of the NAT stage. */
  setGateway(vni: number, g: GatewaySpec | null): void {
    checkVni(vni);
    if (g === null) {
      this.#native.setGateway(vni, null);
      return;
    }
    const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(g.netblock);
    check(m !== null && Number(m[2]) <= 32, `gateway.netblock must be a.b.c.d/prefix, got '${g.netblock}'`);
    const prefix = Number(m![2]);
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    const net = parseIpv4Address(m![1]);
    check(((net & ~mask) >>> 0) === 0, `gateway.netblock ${g.netblock} has host bits set`);
    this.#native.setGateway(vni, { ip: parseIpv4Address(g.ip), net, mask, mac: Buffer.from(parseMac(g.mac)), nat: g.nat });
  }
  /** Where packets from the uplink to `ip` go in the VNI. */
  addNeighbour(vni: number, ip: string, mac: string): void {
    checkVni(vni);
    this.#native.addNeighbour(vni, parseIpv4Address(ip), Buffer.from(parseMac(mac)));
  }
  removeNeighbour(vni: number, ip: string): boolean { return this.#native.removeNeighbour(vni, parseIpv4Address(ip)); }
  /** A routed address: packets from the uplink to it enter `vni` untranslated. */
  addRouted(vni: number, ip: string): void {
    checkVni(vni);
    this.#native.addRouted(vni, parseIpv4Address(ip));
  }
  removeRouted(ip: string): boolean { return this.#native.removeRouted(parseIpv4Address(ip)); }

  // Encrypted links. A peer is another host, named by its registered underlay address.

  /** The bound link port (0: links disabled). */
  linkPort(): number { return this.#native.linkPort(); }
  linkAddPeer(vtep: string, endpoint: { address: string; port: number }): void {
    check(Number.isInteger(endpoint.port) && endpoint.port > 0 && endpoint.port < 65536, `endpoint.port must be 1..65535, got ${endpoint.port}`);
    this.#native.linkAddPeer(parseIpv4Address(vtep), parseIpv4Address(endpoint.address), endpoint.port);
  }
  linkRemovePeer(vtep: string): boolean { return this.#native.linkRemovePeer(parseIpv4Address(vtep)); }
  /** Installs a session from a completed handshake: an initiator's is used at once, a responder's once confirmed. */
  linkInstall(vtep: string, s: LinkSessionKeys): void {
    check(s.sendKey.length === 32 && s.recvKey.length === 32, 'session keys must be 32 bytes');
    this.#native.linkInstall(parseIpv4Address(vtep), {
      localIndex: s.localIndex >>> 0,
      remoteIndex: s.remoteIndex >>> 0,
      sendKey: Buffer.from(s.sendKey),
      recvKey: Buffer.from(s.recvKey),
      initiator: s.initiator,
    });
  }
  /** Forgets sessions older than the reject-after time. */
  linkExpire(): void { this.#native.linkExpire(); }
  /** Sends an empty data message on the peer's current session; false if it has none. */
  linkKeepalive(vtep: string): boolean { return this.#native.linkKeepalive(parseIpv4Address(vtep)); }
  /** Sends a handshake message from the link socket. */
  linkSend(address: string, port: number, data: Uint8Array): void {
    this.#native.linkSend(parseIpv4Address(address), port, Buffer.from(data));
  }
  /** Peers with their sessions and counters; keys only when `withKeys` (operator key export). */
  linkPeers(withKeys = false): LinkPeerInfo[] {
    return this.#native.linkPeers(withKeys).map(({ endpointIp, endpointPort, ...p }) => ({
      ...p,
      vtep: formatIpv4Address(p.vtep),
      endpoint: { address: formatIpv4Address(endpointIp), port: endpointPort },
      lastTxAgoMs: p.lastTxAgoMs < 0 ? null : p.lastTxAgoMs,
      lastRxAgoMs: p.lastRxAgoMs < 0 ? null : p.lastRxAgoMs,
      drops: p.drops as Record<LinkDropReason, number>,
    }));
  }
}

export type { NativeCounterBlock };

/** Validates a port spec and converts it to the addon's form. */
function nativePortSpec(spec: PortSpec): NativePortSpec {
  check(IFNAME.test(spec.name), `port name must be 1-15 characters of [A-Za-z0-9_.-], got '${spec.name}'`);
  check(spec.kind === 'tap' || spec.kind === 'tun', `port kind must be 'tap' or 'tun', got '${spec.kind}'`);
  checkVni(spec.vni);
  checkMtu(spec.mtu);
  if (spec.kind === 'tun') check(spec.ipv4 !== undefined, `tun port ${spec.name} needs ipv4 (the address the engine answers ARP for)`);
  const filter = spec.filter === undefined ? undefined : compilePortFilter(spec.filter, `port ${spec.name}: filter`);
  return {
    name: spec.name,
    kind: spec.kind,
    vni: spec.vni,
    mac: Buffer.from(parseMac(spec.mac)),
    mtu: spec.mtu,
    ipv4: spec.ipv4 === undefined ? undefined : parseIpv4Address(spec.ipv4),
    netns: spec.netns,
    filter,
    addresses: spec.addresses?.map((a, i) => parseInterfaceCidr(a, `port ${spec.name} addresses.${i}`)),
    memory: spec.memory === true,
  };
}
