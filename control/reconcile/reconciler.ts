// Converges this host's engine and devices to the store's desired state, and writes observed
// state back. Runs on every change under /appnet/ (debounced) and on a periodic resync, so a
// restarted daemon rebuilds everything from the store without duplicating anything.
//
//   store (desired) --watch--> planHost() --diff--> engine ports/VNIs/flood, instance addresses
//                                            \--> interface state created|error, network created
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { Engine } from '../../dataplane/engine.ts';
import type { NetworkRecord } from '../networks/network.ts';
import type { InstanceRecord } from '../instances/instance.ts';
import type { InterfaceRecord, InterfaceState } from '../instances/interface.ts';
import { HOSTS_PREFIX, type HostRecord } from '../repo/hosts.ts';
import { INSTANCES_PREFIX } from '../repo/instances.ts';
import { INTERFACES_PREFIX } from '../repo/interfaces.ts';
import { NETWORKS_PREFIX, NetworkRepository } from '../repo/networks.ts';
import type { Store, Watcher } from '../store/store.ts';
import { planHost, type DesiredLinkPeer, type DesiredPort, type DesiredState, type DesiredVni, type HostPlan } from './plan.ts';

const run = promisify(execFile);

const RESYNC_MS = 5000;

export interface ReconcilerOptions {
  store: Store;
  engine: Engine;
  networks: NetworkRepository;
  host: string;
  underlayMtu: number;
  log: Logger;
  /** Called when the set of link peers changes (before VNIs that need them are added). */
  onLinkPeers?: (peers: DesiredLinkPeer[]) => void;
}

export class Reconciler {
  readonly #o: ReconcilerOptions;
  readonly #ports = new Map<string, { id: number; spec: DesiredPort }>(); // by interface uuid
  readonly #vnis = new Map<number, DesiredVni>();
  readonly #netnsMade = new Set<string>();
  #linkPeers = '';
  #watcher: Watcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #again = false;
  #closed = false;
  #idle: Promise<void> = Promise.resolve();

  constructor(o: ReconcilerOptions) {
    this.#o = o;
  }

  async start(): Promise<void> {
    const from = (await this.#o.store.revision()) + 1;
    this.#watcher = await this.#o.store.watch('/appnet/', { fromRevision: from }, () => this.schedule());
    this.#timer = setInterval(() => this.schedule(), RESYNC_MS);
    this.schedule();
    await this.#idle;
  }

  /** This host's engine port for an interface (by uuid, or by its device name), if it exists. */
  port(ref: string): { id: number; name: string; iface: string; vni: number } | undefined {
    for (const [iface, p] of this.#ports) {
      if (iface === ref || p.spec.name === ref) return { id: p.id, name: p.spec.name, iface, vni: p.spec.vni };
    }
    return undefined;
  }

  /** Runs a pass now, or right after the one in progress. */
  schedule(): void {
    if (this.#closed) return;
    if (this.#running) { this.#again = true; return; }
    this.#running = true;
    this.#idle = (async () => {
      do {
        this.#again = false;
        try {
          await this.#pass();
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
    await this.#watcher?.cancel();
    await this.#idle;
    for (const ns of this.#netnsMade) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }

  async #read(): Promise<DesiredState> {
    const all = async <T>(prefix: string): Promise<T[]> =>
      (await this.#o.store.range(prefix)).kvs.map((kv) => JSON.parse(kv.value) as T);
    return {
      networks: await all<NetworkRecord>(NETWORKS_PREFIX),
      instances: await all<InstanceRecord>(INSTANCES_PREFIX),
      interfaces: await all<InterfaceRecord>(INTERFACES_PREFIX),
      hosts: await all<HostRecord>(HOSTS_PREFIX),
    };
  }

  async #pass(): Promise<void> {
    const state = await this.#read();
    const plan = planHost(this.#o.host, state, this.#o.underlayMtu);
    await this.#apply(plan);
    // A network is ready once the store has it: every daemon may mark it, compare-and-swap
    // makes that happen once.
    for (const n of state.networks) {
      if (n.state === 'initial') await this.#o.networks.markCreated(n.uuid).catch(() => undefined);
    }
  }

  async #apply(plan: HostPlan): Promise<void> {
    const { engine, log } = this.#o;
    const want = new Map(plan.ports.map((p) => [p.iface, p]));
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
    for (const p of plan.ports) {
      if (this.#ports.has(p.iface)) continue;
      try {
        await this.#ensureNetns(p.netns);
        const id = engine.addPort({ name: p.name, kind: 'tap', vni: p.vni, mac: p.mac, mtu: p.mtu, netns: p.netns });
        this.#ports.set(p.iface, { id, spec: p });
        if (p.cidr) await run('ip', ['-n', p.netns, 'addr', 'replace', p.cidr, 'dev', p.name]);
        await run('ip', ['-n', p.netns, 'link', 'set', p.name, 'up']);
        log.info({ port: p.name, iface: p.iface, netns: p.netns, cidr: p.cidr, vni: p.vni }, 'port created');
        await this.#setInterfaceState(p.iface, 'created');
      } catch (e) {
        log.error({ err: e, iface: p.iface }, 'port could not be created');
        await this.#setInterfaceState(p.iface, 'error').catch(() => undefined);
      }
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

  async #ensureNetns(ns: string): Promise<void> {
    if (existsSync(`/run/netns/${ns}`)) return;
    await run('ip', ['netns', 'add', ns]);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    this.#netnsMade.add(ns);
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
