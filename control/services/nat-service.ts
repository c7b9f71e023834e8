// The NAT edge of appnetd (docs/nat.md "Uplink and network node"): opens the uplink, routes the floating
// pool into it, and after every reconcile pass makes the engine's NAT stage match nat-policy.ts:
//
//   reconcile pass --apply(plan)--> planNat(records) --diff--> engine gateways, neighbours, routed
//                                                           --> NatTable SNAT and 1:1 rules
//                                                           --> static FDB gateway MAC -> network node
//   network node: provide_nat network without a floating gateway --> allocate it from the floating pool
//                 deleted network still holding one              --> release it
//
// Idempotent: each pass installs what is missing and removes what is no longer wanted, so a restart or a
// lost race heals on the next pass.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { Engine } from '../../dataplane/engine.ts';
import { InsufficientResources } from '../errors.ts';
import { NatTable } from '../../dataplane/nat.ts';
import type { HostPlan } from '../reconcile/plan.ts';
import type { NetworkRepository } from '../repo/networks.ts';
import { FLOATING_NETWORK_UUID } from '../networks/network.ts';
import type { IpamState } from '../ipam/ipam.ts';
import type { Store, Watcher } from '../store/store.ts';
import { routedByNetwork } from '../api/nat-routes.ts';
import type { StateView } from '../repo/state-view.ts';
import { planNat, type NatPlan } from './nat-policy.ts';
import { IPAM_PREFIX } from '../repo/keys.ts';

const run = promisify(execFile);

export type NatEngine = Pick<Engine, 'setUplink' | 'setNat' | 'setGateway' | 'addNeighbour' | 'removeNeighbour' | 'addRouted' | 'removeRouted' | 'addFdb' | 'removeFdb'
  | 'addVni' | 'removeVni' | 'setFlood'>;

export interface NatServiceOptions {
  engine: NatEngine;
  view: StateView;
  store: Store;
  networks: NetworkRepository;
  host: string;
  log: Logger;
  floatingPool: string;
  /** The uplink TUN; absent: this host does no NAT (it still points gateway MACs at the network node). */
  uplink?: { device: string; mtu?: number };
  capacity?: number;
  /** For the MTU of VNIs the network node holds without a local port (as plan.ts derives it). */
  underlayMtu: number;
}

/** Bytes an encrypted link adds (control/reconcile/plan.ts LINK_OVERHEAD). */
const LINK_OVERHEAD = 32;

/** What is installed, by a key that changes whenever the installed value would. */
interface Installed {
  gateways: Map<number, string>;
  snat: Map<string, { vni: number; insideNet: number; prefix: number }>;
  floats: Map<string, number>;
  neighbours: Map<string, { vni: number; ip: string }>;
  routes: Map<string, string>;
  fdb: Map<string, { vni: number; mac: string }>;
}

export class NatService {
  readonly #o: NatServiceOptions;
  /**
   * Only a host with an uplink translates (it may become the network node), so only it holds a table:
   * `capacity` entries are allocated up front (~6 MB at the default), which every other sidecar would carry
   * for nothing.
   */
  readonly table: NatTable | undefined;
  readonly #in: Installed = { gateways: new Map(), snat: new Map(), floats: new Map(), neighbours: new Map(), routes: new Map(), fdb: new Map() };
  readonly #allocating = new Set<string>();
  /** VNIs the network node holds for NAT, with the hosts it floods to. */
  readonly #held = new Map<number, string[]>();
  /** VNIs the reconciler holds (through shareVnis), with its flood list. */
  readonly #reconciled = new Map<number, string[]>();
  #last: NatPlan | undefined;
  #lastHostPlan: HostPlan | undefined;
  /** Routed addresses by network, from the floating pool (followed). */
  #routed = new Map<string, string[]>();
  #poolWatch: Watcher | undefined;
  #closed = false;
  /** Whether the floating pool is routed into the uplink here: only while this host is the network node. */
  #poolRouted = false;
  #routing: Promise<void> = Promise.resolve();

  constructor(o: NatServiceOptions) {
    this.#o = o;
    this.table = o.uplink ? new NatTable({ capacity: o.capacity }) : undefined;
  }

  get hasUplink(): boolean { return this.#o.uplink !== undefined; }
  get lastPlan(): NatPlan | undefined { return this.#last; }

  /**
   * Opens the uplink and turns forwarding on. The floating pool is routed into the uplink only while this
   * host is the network node (apply): a standby node's kernel then neither forwards to nor proxy-ARPs for
   * addresses another node translates, and when it takes over the route appears with the role.
   */
  async start(): Promise<void> {
    // Routed addresses live in the floating pool, which the reconciler does not follow.
    const key = IPAM_PREFIX + FLOATING_NETWORK_UUID;
    const { kvs, revision } = await this.#o.store.range(key);
    const onPool = (value: string | undefined) => {
      this.#routed = value === undefined ? new Map() : routedByNetwork(JSON.parse(value) as IpamState);
      if (this.#lastHostPlan) this.apply(this.#lastHostPlan);
    };
    onPool(kvs.find((kv) => kv.key === key)?.value);
    this.#poolWatch = await this.#o.store.watch(key, {
      fromRevision: revision + 1,
      onError: (err) => this.#o.log.warn({ err }, 'floating pool watch ended; routed addresses stay as last seen until restart'),
    }, (events) => { for (const e of events) if (e.kv.key === key) onPool(e.type === 'put' ? e.kv.value : undefined); });
    const u = this.#o.uplink;
    if (!u) return;
    this.#o.engine.setUplink(u.device, u.mtu ?? 1500);
    this.#o.engine.setNat(this.table!);
    await run('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    this.#o.log.info({ uplink: u.device, pool: this.#o.floatingPool }, 'uplink ready');
  }

  /**
   * The engine as the reconciler should see it: the network node holds every NAT network's VNI even
   * without a local port, so a VNI is added once whoever asks first, removed when neither holds it,
   * and floods to the union of both lists. Everything else goes straight to the engine.
   */
  shareVnis<T extends NatEngine>(engine: T): T {
    return new Proxy(engine, {
      get: (target, prop) => {
        if (prop === 'addVni') {
          return (vni: number, mtu: number, opts?: { encrypted?: boolean }) => {
            if (!this.#held.has(vni)) target.addVni(vni, mtu, opts);
            this.#reconciled.set(vni, []);
          };
        }
        if (prop === 'setFlood') {
          return (vni: number, remotes: string[]) => {
            this.#reconciled.set(vni, remotes);
            target.setFlood(vni, union(remotes, this.#held.get(vni) ?? []));
          };
        }
        if (prop === 'removeVni') {
          return (vni: number) => {
            this.#reconciled.delete(vni);
            if (!this.#held.has(vni)) target.removeVni(vni);
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  /** After each reconcile pass: `plan.vnis` are the VNIs the reconciler has in the engine. */
  apply(plan: HostPlan): void {
    if (this.#closed) return;
    this.#lastHostPlan = plan;
    const v = this.#o.view;
    const nat = planNat({
      host: this.#o.host,
      hosts: v.hosts.values(),
      networks: v.networks.values(),
      interfaces: v.interfaces.values(),
      routed: this.#routed,
    });
    this.#last = nat;
    const e = this.#o.engine;
    const guard = (what: string, f: () => void) => {
      try { f(); } catch (err) { this.#o.log.warn({ err }, `NAT: ${what} failed; retrying on the next pass`); return false; }
      return true;
    };
    this.#holdVnis(nat, guard);
    const present = new Set([...plan.vnis.map((x) => x.vni), ...this.#held.keys()]);

    const want = {
      gateways: new Map(nat.gateways.filter((g) => present.has(g.vni)).map((g) => [g.vni, g] as const)),
      snat: new Map(nat.snat.map((r) => [`${r.vni}/${r.insideNet}/${r.prefix}/${r.external}` as string, r] as const)),
      floats: new Map(nat.floats.map((r) => [`${r.vni}/${r.inside}/${r.external}` as string, r] as const)),
      neighbours: new Map(nat.neighbours.filter((n) => present.has(n.vni)).map((n) => [`${n.vni}/${n.ip}/${n.mac}` as string, n] as const)),
      routes: new Map(nat.routes.filter((r) => present.has(r.vni)).map((r) => [`${r.vni}/${r.address}` as string, r] as const)),
      fdb: new Map(nat.remoteGateways.filter((g) => present.has(g.vni)).map((g) => [`${g.vni}/${g.mac}/${g.remote}` as string, g] as const)),
    };
    const inst = this.#in;

    // Removals first, so that a changed value (a new external address) is never refused as an overlap.
    for (const [vni, key] of inst.gateways) {
      const g = want.gateways.get(vni);
      if (!g || JSON.stringify(g) !== key) { guard('gateway removal', () => { if (present.has(vni)) e.setGateway(vni, null); }); inst.gateways.delete(vni); }
    }
    for (const [k, r] of inst.snat) if (!want.snat.has(k)) { this.table?.removeSnat(r.vni, r.insideNet, r.prefix); inst.snat.delete(k); }
    for (const [k, external] of inst.floats) if (!want.floats.has(k)) { this.table?.removeFloat(external); inst.floats.delete(k); }
    for (const [k, n] of inst.neighbours) if (!want.neighbours.has(k)) { guard('neighbour removal', () => e.removeNeighbour(n.vni, n.ip)); inst.neighbours.delete(k); }
    for (const [k, address] of inst.routes) if (!want.routes.has(k)) { guard('route removal', () => e.removeRouted(address)); inst.routes.delete(k); }
    for (const [k, f] of inst.fdb) if (!want.fdb.has(k)) { guard('FDB removal', () => e.removeFdb(f.vni, f.mac)); inst.fdb.delete(k); }

    for (const [vni, g] of want.gateways) {
      if (inst.gateways.has(vni)) continue;
      if (guard('gateway', () => e.setGateway(vni, { ip: g.ip, netblock: g.netblock, mac: g.mac, nat: true }))) inst.gateways.set(vni, JSON.stringify(g));
    }
    for (const [k, r] of want.snat) {
      if (inst.snat.has(k)) continue;
      if (this.table && guard('SNAT rule', () => this.table!.addSnat({ vni: r.vni, insideNet: r.insideNet, prefix: r.prefix, external: r.external }))) inst.snat.set(k, r);
    }
    for (const [k, r] of want.floats) {
      if (inst.floats.has(k)) continue;
      if (this.table && guard('1:1 rule', () => this.table!.addFloat({ vni: r.vni, inside: r.inside, external: r.external }))) inst.floats.set(k, r.external);
    }
    for (const [k, n] of want.neighbours) {
      if (inst.neighbours.has(k)) continue;
      if (guard('neighbour', () => e.addNeighbour(n.vni, n.ip, n.mac))) inst.neighbours.set(k, n);
    }
    for (const [k, r] of want.routes) {
      if (inst.routes.has(k)) continue;
      if (guard('routed address', () => e.addRouted(r.vni, r.address))) inst.routes.set(k, r.address);
    }
    for (const [k, f] of want.fdb) {
      if (inst.fdb.has(k)) continue;
      if (guard('gateway FDB entry', () => e.addFdb(f.vni, f.mac, { remote: f.remote }))) inst.fdb.set(k, f);
    }

    if (this.#o.uplink && nat.isNatNode !== this.#poolRouted) this.#routePool(nat.isNatNode);
    if (nat.isNatNode) {
      for (const uuid of nat.needGateway) void this.#allocate(uuid);
      for (const n of v.networks.values()) if (n.state === 'deleted' && n.floatingGateway !== null) void this.#release(n.uuid);
    }
  }

  // The network node holds every NAT network's VNI, flooding to the hosts with ports on it (their
  // instances' replies must find them); a VNI it no longer needs goes unless the reconciler has it.
  #holdVnis(nat: NatPlan, guard: (what: string, f: () => void) => boolean): void {
    const e = this.#o.engine;
    const state = this.#o.view.state();
    const want = new Map<number, string[]>();
    for (const g of nat.gateways) {
      const net = this.#o.view.networks.get(g.network);
      if (!net || net.encrypt) continue;  // encrypted networks: only where the reconciler has them (docs/nat.md)
      const flood: string[] = [];
      for (const h of state.hostsOnNetwork(g.network)) {
        const address = h === this.#o.host ? undefined : this.#o.view.hosts.get(h)?.underlay_address;
        if (address !== undefined) flood.push(address);
      }
      want.set(g.vni, flood.sort());
    }
    for (const [vni] of this.#held) {
      if (want.has(vni)) continue;
      this.#held.delete(vni);
      const rec = this.#reconciled.get(vni);
      guard('VNI release', () => (rec ? e.setFlood(vni, rec) : e.removeVni(vni)));
    }
    for (const [vni, flood] of want) {
      const had = this.#held.get(vni);
      if (had && had.join() === flood.join()) continue;
      const net = nat.gateways.find((g) => g.vni === vni)!;
      const ok = guard('VNI hold', () => {
        if (!had && !this.#reconciled.has(vni)) e.addVni(vni, this.#o.underlayMtu - 50 - (this.#o.view.networks.get(net.network)?.encrypt ? LINK_OVERHEAD : 0));
        e.setFlood(vni, union(this.#reconciled.get(vni) ?? [], flood));
      });
      if (ok) this.#held.set(vni, flood);
    }
  }

  /** Adds or removes the floating pool's route into the uplink, in order, retrying on the next pass on failure. */
  #routePool(on: boolean): void {
    this.#poolRouted = on;
    const { floatingPool: pool, uplink, log } = this.#o;
    this.#routing = this.#routing.then(async () => {
      try {
        await run('ip', ['route', on ? 'replace' : 'del', pool, 'dev', uplink!.device]);
        log.info({ pool, uplink: uplink!.device }, on ? 'network node: floating pool routed into the uplink' : 'no longer the network node: floating pool route removed');
      } catch (err) {
        if (on) this.#poolRouted = false;
        log.warn({ err }, 'floating pool route not changed; retrying on the next pass');
      }
    });
  }

  async #allocate(uuid: string): Promise<void> {
    if (this.#allocating.has(uuid)) return;
    this.#allocating.add(uuid);
    try {
      const address = await this.#o.networks.allocateFloatingGateway(uuid, this.#o.host);
      this.#o.log.info({ network: uuid, floatingGateway: address }, 'floating gateway allocated');
    } catch (err) {
      if (err instanceof InsufficientResources) {
        // The pool is full: no retry will find an address, so the network fails, saying why (DESIGN: a real
        // failure is an error state with its reason, not a wait forever).
        this.#o.log.error({ err, network: uuid }, 'floating gateway cannot be allocated; the network goes to error');
        await this.#o.networks.markError(uuid, `its floating gateway cannot be allocated: ${err.message}`)
          .catch((e) => this.#o.log.warn({ err: e, network: uuid }, 'network not marked error; retrying on the next pass'));
      } else {
        this.#o.log.warn({ err, network: uuid }, 'floating gateway allocation failed; retrying on the next pass');
      }
    } finally {
      this.#allocating.delete(uuid);
    }
  }

  async #release(uuid: string): Promise<void> {
    if (this.#allocating.has(uuid)) return;
    this.#allocating.add(uuid);
    try {
      await this.#o.networks.releaseFloatingGateway(uuid);
    } catch (err) {
      this.#o.log.warn({ err, network: uuid }, 'floating gateway release failed; retrying on the next pass');
    } finally {
      this.#allocating.delete(uuid);
    }
  }

  /** NAT table counters and rules, for the admin API and tests. */
  stats(): { plan: NatPlan | undefined; table: ReturnType<NatTable['stats']> | null; rules: ReturnType<NatTable['rules']> | null; flowList: ReturnType<NatTable['flows']> } {
    const t = this.table;
    return { plan: this.#last, table: t?.stats() ?? null, rules: t?.rules() ?? null, flowList: t?.flows() ?? [] };
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#poolWatch?.cancel();
    await this.#routing;
    const u = this.#o.uplink;
    if (u && this.#poolRouted) await run('ip', ['route', 'del', this.#o.floatingPool, 'dev', u.device]).catch(() => undefined);
  }
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])].sort();
}
