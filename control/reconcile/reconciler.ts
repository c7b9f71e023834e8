// Converges this host's engine and devices to the store's desired state, and writes observed
// state back. Runs on every change of the desired state (coalesced: one pass at a time, another
// right after if something changed meanwhile) and on a periodic resync, so a restarted daemon
// rebuilds everything from the store without duplicating anything.
//
//   store --watch--> StateView (memory) --planHost()--diff--> engine ports/VNIs/flood
//                                                         \--> instance addresses (one `ip -batch` per netns)
//                                                         \--> interface state created|error, network created
//
// Costs that keep a restart of a host with 1,000 interfaces within seconds: a pass plans from
// memory (no store read); new ports are created namespace by namespace, a few namespaces at a
// time, with one `ip` process per namespace for all its addresses (the engine brings devices up);
// the state writes of a pass are issued together, so the store commits them as one group.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { Engine } from '../../dataplane/engine.ts';
import type { InterfaceRecord, InterfaceState } from '../instances/interface.ts';
import { NetworkRepository } from '../repo/networks.ts';
import type { StateView } from '../repo/state-view.ts';
import type { Compare, Store, TxnOp } from '../store/store.ts';
import { isNetnsPath } from '../instances/instance.ts';
import { planHost, type DesiredLinkPeer, type DesiredPort, type DesiredVni, type HostPlan } from './plan.ts';
import { INTERFACES_PREFIX } from '../repo/keys.ts';
import { marksNetwork } from './marker.ts';

const run = promisify(execFile);

const RESYNC_MS = 5000;
/** How long a change waits for others before the pass that applies them (see start()). */
const PASS_GATHER_MS = 20;
/** Namespaces configured at once: `ip` processes overlap, the engine calls stay serial (synchronous). */
const NETNS_PARALLEL = 4;
/**
 * State writes issued together per group (each is its own compare-and-swap), committed by the store
 * in one or two group commits. Small enough that an API write issued meanwhile waits for one group,
 * not for a thousand writes queued ahead of it.
 */
const STATE_WRITE_GROUP = 50;
/** Networks marked created in one txn: a compare and two ops (record, event) each, within MAX_TXN_OPS. */
const NETWORK_WRITE_GROUP = 40;

/**
 * `/appnet/observed/<host>`: what this host's daemon last observed of itself ({pid, ports, pending, vnis}),
 * written when it changes, so an operator or a benchmark can tell a restarted daemon has caught up.
 */
export const OBSERVED_PREFIX = '/appnet/observed/';

export interface ReconcilerOptions {
  store: Store;
  engine: Engine;
  networks: NetworkRepository;
  /** The desired state in memory, started by the caller (appnetd shares it with its API). */
  view: StateView;
  host: string;
  underlayMtu: number;
  log: Logger;
  /** Called when the set of link peers changes (before VNIs that need them are added). */
  onLinkPeers?: (peers: DesiredLinkPeer[]) => void;
  /** Called after each pass has converged the engine: the plan and the engine port of each interface. */
  onApplied?: (plan: HostPlan, portIdByIface: ReadonlyMap<string, number>) => void;
  /**
   * Awaited after every applied pass, with its plan (connection endpoint reports, netns hosts files):
   * what depends on the devices being there runs after they are.
   */
  afterPass?: (plan: HostPlan) => Promise<void>;
  /** How long each completed pass took (seconds), for the metrics. */
  onPassTimed?: (seconds: number) => void;
}

export class Reconciler {
  readonly #o: ReconcilerOptions;
  readonly #ports = new Map<string, { id: number; spec: DesiredPort }>(); // by interface uuid
  readonly #vnis = new Map<number, DesiredVni>();
  readonly #netnsMade = new Set<string>();
  readonly #view: StateView;
  /** Interface (or connection side) -> why its port could not be made, while it is wanted and missing. */
  readonly #portErrors = new Map<string, string>();
  #unfollow: Array<() => void> = [];
  #linkPeers = '';
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #again = false;
  #closed = false;
  #idle: Promise<void> = Promise.resolve();
  #soon = false;
  /** The last port creation: one at a time, each started in its own turn of the event loop (see #createPorts). */
  #portTurn: Promise<void> = Promise.resolve();
  #observed = '';

  constructor(o: ReconcilerOptions) {
    this.#o = o;
    this.#view = o.view;
  }

  /**
   * Follows the view and schedules the first pass without waiting for it: with 1,000 ports that
   * pass takes seconds, and the daemon answers its APIs meanwhile. `idle()` waits for it;
   * /appnet/observed/<host> says when it is done.
   */
  async start(): Promise<void> {
    this.#unfollow = [
      // One write can touch several prefixes, each its own delivery: plan once for all of them.
      this.#view.onChange(() => {
        if (this.#soon) return;
        this.#soon = true;
        // A short delay gathers a burst of writes (an API client with requests in flight) into one pass: each
        // pass plans the whole host, ~1,000 ports on a busy one, and a pass per write took the event loop
        // from the API's own requests.
        setTimeout(() => { this.#soon = false; this.schedule(); }, PASS_GATHER_MS);
      }),
      this.#view.onWatchError((err) => this.#o.log.warn({ err }, 'desired-state watch ended; reading the store again')),
    ];
    this.#timer = setInterval(() => this.schedule(), RESYNC_MS);
    this.schedule();
  }

  /** This host's engine port for an interface (by uuid, or by its device name), if it exists. */
  port(ref: string): { id: number; name: string; iface: string; vni: number } | undefined {
    for (const [iface, p] of this.#ports) {
      if (iface === ref || p.spec.name === ref) return { id: p.id, name: p.spec.name, iface, vni: p.spec.vni };
    }
    return undefined;
  }

  /** Whether this host's engine holds the port of `iface` (an interface uuid or `<connection id>/<side>`). */
  #knownVteps: string | undefined;

  /** Ports of the last pass's plan not made (yet). */
  pendingPorts = 0;

  /** Why the last attempt to make the port of `iface` failed (undefined once made, or never tried). */
  portError(iface: string): string | undefined {
    return this.#portErrors.get(iface);
  }

  hasPort(iface: string): boolean {
    return this.#ports.has(iface);
  }

  /** Runs a pass now, or right after the one in progress. */
  schedule(): void {
    if (this.#closed) return;
    if (this.#running) { this.#again = true; return; }
    this.#running = true;
    this.#idle = (async () => {
      do {
        this.#again = false;
        const started = performance.now();
        try {
          await this.#pass();
          this.#o.onPassTimed?.((performance.now() - started) / 1000);
        } catch (e) {
          this.#o.log.error({ err: e }, 'reconcile pass failed; retrying on the next change or resync');
        }
      } while (this.#again && !this.#closed);
      this.#running = false;
    })();
  }

  /** Waits for the pass in progress (tests and shutdown). */
  idle(): Promise<void> { return this.#idle; }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    for (const unfollow of this.#unfollow) unfollow();
    await this.#idle;
    for (const ns of this.#netnsMade) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }

  async #pass(): Promise<void> {
    const state = this.#view.state();
    const plan = planHost(this.#o.host, state, this.#o.underlayMtu);
    // Clear VXLAN is accepted only from registered hosts (docs/security.md); set before the plan's floods.
    const vteps = [...state.hosts.values()].map((h) => h.underlay_address).sort();
    if (vteps.join() !== this.#knownVteps) {
      this.#o.engine.setKnownVteps(vteps);
      this.#knownVteps = vteps.join();
    }
    await this.#apply(plan);
    if (this.#o.onApplied) {
      try {
        this.#o.onApplied(plan, new Map([...this.#ports].map(([iface, p]) => [iface, p.id])));
      } catch (e) {
        this.#o.log.error({ err: e }, 'onApplied failed');
      }
    }
    await this.#writeObserved(plan);
    await this.#o.afterPass?.(plan).catch((e) => this.#o.log.error({ err: e }, 'post-pass step failed; retrying on the next pass'));
    // A network is ready once the store has it. One daemon marks it `created` (marker.ts), the others stand by;
    // compare-and-swap makes it happen once if two try. Issued together, so the store commits them as one group.
    // A lost txn (the view was behind) is not retried here: the change that beat it reaches the view and
    // schedules the next pass, which plans again from what the view then holds.
    const now = Date.now();
    const initial = [...state.networks.values()].filter((n) => n.state === 'initial' && marksNetwork(this.#o.host, state.hosts, n, now));
    for (let i = 0; i < initial.length; i += NETWORK_WRITE_GROUP) {
      await this.#o.networks.markCreatedTogether(initial.slice(i, i + NETWORK_WRITE_GROUP).map((n) => n.uuid)).catch(() => false);
    }
  }

  async #apply(plan: HostPlan): Promise<void> {
    const { engine, log } = this.#o;
    const want = new Map(plan.ports.map((p) => [p.iface, p]));
    for (const iface of [...this.#portErrors.keys()]) if (!want.has(iface)) this.#portErrors.delete(iface);
    for (const [iface, have] of this.#ports) {
      const p = want.get(iface);
      if (p && p.vni === have.spec.vni && p.mac === have.spec.mac && p.netns === have.spec.netns && p.cidr === have.spec.cidr) continue;
      engine.removePort(have.id);
      this.#ports.delete(iface);
      log.info({ port: have.spec.name, iface }, 'port removed');
    }
    const peersKey = JSON.stringify(plan.linkPeers);
    if (peersKey !== this.#linkPeers) {
      this.#o.onLinkPeers?.(plan.linkPeers);
      this.#linkPeers = peersKey;
    }
    const wantVnis = new Map(plan.vnis.map((v) => [v.vni, v]));
    for (const v of plan.vnis) {
      const have = this.#vnis.get(v.vni);
      if (!have) engine.addVni(v.vni, v.mtu, { encrypted: v.encrypted });
      if (!have || have.flood.join() !== v.flood.join()) engine.setFlood(v.vni, v.flood);
      this.#vnis.set(v.vni, v);
    }
    const byNetns = new Map<string, DesiredPort[]>();
    for (const p of plan.ports) {
      if (this.#ports.has(p.iface)) continue;
      if (!byNetns.has(p.netns)) byNetns.set(p.netns, []);
      byNetns.get(p.netns)!.push(p);
    }
    const states = new Map<string, InterfaceState>();
    const groups = [...byNetns];
    await Promise.all(Array.from({ length: Math.min(NETNS_PARALLEL, groups.length) }, async () => {
      for (let g = groups.shift(); g !== undefined; g = groups.shift()) await this.#createPorts(g[0], g[1], states);
    }));
    // Connection ports have no interface record: their state is the endpoint report.
    const writes = [...states].filter(([iface]) => !want.get(iface)?.connection);
    for (let i = 0; i < writes.length; i += STATE_WRITE_GROUP) {
      const group = writes.slice(i, i + STATE_WRITE_GROUP);
      // One txn for the group, planned from the view; if any record moved meanwhile, one by one from the store.
      if (await this.#setInterfaceStates(group).catch(() => false)) continue;
      await Promise.all(group.map(([iface, state]) =>
        this.#setInterfaceState(iface, state).catch((e) => log.error({ err: e, iface }, 'interface state not written')),
      ));
    }
    for (const vni of [...this.#vnis.keys()]) {
      if (wantVnis.has(vni)) continue;
      engine.removeVni(vni);
      this.#vnis.delete(vni);
    }
    // Namespaces this daemon made for instances that no longer have ports here.
    const used = new Set(plan.ports.map((p) => p.netns));
    for (const ns of [...this.#netnsMade]) {
      if (used.has(ns)) continue;
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
      this.#netnsMade.delete(ns);
    }
  }

  /**
   * One namespace's new ports, each made by the engine with its address set and up. The engine sets the
   * address over netlink from the thread that creates the device in the namespace: an `ip` process per
   * namespace forked this daemon (~100 MB) and blocked its event loop for 4-20 ms, each time.
   */
  async #createPorts(netns: string, ports: DesiredPort[], states: Map<string, InterfaceState>): Promise<void> {
    const { engine, log } = this.#o;
    try {
      await this.#ensureNetns(netns);
    } catch (e) {
      log.error({ err: e, netns }, 'instance namespace could not be created');
      for (const p of ports) {
        states.set(p.iface, 'error');
        this.#portErrors.set(p.iface, `namespace ${netns}: ${(e as Error).message}`);
      }
      return;
    }
    for (const p of ports) {
      // The device is made on a pool thread (addPortAsync: its RTNL waits, 1-80 ms, never block the loop).
      // Still one port at a time, whichever namespace it is for, each started in its own turn of the event
      // loop: one pool thread for ports at most, so the store's WAL syncs (also on the pool) never queue
      // behind NETNS_PARALLEL device creations.
      const addresses = p.cidr ? [p.cidr] : undefined;
      const spec = { name: p.name, kind: 'tap' as const, vni: p.vni, mac: p.mac, mtu: p.mtu, netns: p.netns, addresses, ...(p.filter ? { filter: p.filter } : {}) };
      const created = this.#portTurn
        .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
        .then(() => engine.addPortAsync(spec));
      this.#portTurn = created.then(() => undefined, () => undefined);
      try {
        const id = await created;
        this.#ports.set(p.iface, { id, spec: p });
        this.#portErrors.delete(p.iface);
        if (p.defaultVia) await this.#defaultRoute(p).catch((e) => log.error({ err: e, port: p.name }, 'default route not set'));
        states.set(p.iface, 'created');
        log.info({ port: p.name, iface: p.iface, netns, cidr: p.cidr, vni: p.vni }, 'port created');
      } catch (e) {
        // Also an address the kernel refused: no port then, and the next pass tries again.
        log.error({ err: e, iface: p.iface, cidr: p.cidr }, 'port could not be created');
        states.set(p.iface, 'error');
        this.#portErrors.set(p.iface, (e as Error).message);
      }
    }
  }

  async #writeObserved(plan: HostPlan): Promise<void> {
    const observed = { pid: process.pid, ports: this.#ports.size, pending: plan.ports.filter((p) => !this.#ports.has(p.iface)).length, vnis: this.#vnis.size };
    this.pendingPorts = observed.pending;
    const text = JSON.stringify(observed);
    if (text === this.#observed) return;
    await this.#o.store.put(OBSERVED_PREFIX + this.#o.host, JSON.stringify({ ...observed, at: new Date().toISOString() }));
    this.#observed = text;
  }

  /**
   * A container's default route through the network's gateway (plan.ts: defaultVia). One process per
   * container port: these namespaces are few next to the daemon's own, and the engine sets addresses only.
   */
  async #defaultRoute(p: DesiredPort): Promise<void> {
    await run('nsenter', [`--net=${p.netns}`, 'ip', 'route', 'replace', 'default', 'via', p.defaultVia!, 'dev', p.name]);
  }

  async #ensureNetns(ns: string): Promise<void> {
    // A runtime's namespace (a path) is its own: never made or deleted here. Gone means the container is.
    if (isNetnsPath(ns)) {
      if (!existsSync(ns)) throw new Error(`network namespace ${ns} does not exist`);
      return;
    }
    if (existsSync(`/run/netns/${ns}`)) return;
    await run('ip', ['netns', 'add', ns]);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    this.#netnsMade.add(ns);
  }

  /**
   * The states of a group of interfaces in one txn, each guarded by the modRevision the view holds: false
   * when one of them changed since (the caller then writes them one by one).
   */
  async #setInterfaceStates(group: Array<[string, InterfaceState]>): Promise<boolean> {
    const compare: Compare[] = [];
    const success: TxnOp[] = [];
    for (const [uuid, state] of group) {
      const kv = this.#view.cachedKv(INTERFACES_PREFIX + uuid);
      if (!kv) return false;
      const rec = JSON.parse(kv.value) as InterfaceRecord;
      if (rec.state === state || rec.state === 'deleted') continue;
      compare.push({ key: kv.key, target: 'modRevision', op: '==', value: kv.modRevision });
      success.push({ type: 'put', key: kv.key, value: JSON.stringify({ ...rec, state, stateUpdatedAt: Date.now() }) });
    }
    if (success.length === 0) return true;
    return (await this.#o.store.txn({ compare, success })).succeeded;
  }

  async #setInterfaceState(uuid: string, state: InterfaceState): Promise<void> {
    const key = INTERFACES_PREFIX + uuid;
    for (let attempt = 0; attempt < 5; attempt++) {
      const kv = await this.#o.store.get(key);
      if (!kv) return;
      const rec = JSON.parse(kv.value) as InterfaceRecord;
      if (rec.state === state || rec.state === 'deleted') return;
      const next = { ...rec, state, stateUpdatedAt: Date.now() };
      const r = await this.#o.store.txn({
        compare: [{ key, target: 'modRevision', op: '==', value: kv.modRevision }],
        success: [{ type: 'put', key, value: JSON.stringify(next) }],
      });
      if (r.succeeded) return;
    }
  }
}
