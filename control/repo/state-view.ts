// The records of the store in memory, parsed once: networks, instances, interfaces, hosts, the
// claimed VNIs and application connections (and, as text, each network's IPAM and attachments), read with range() and then kept current by one watch per prefix (from that read's
// revision + 1, so no change is missed or applied twice). Two readers share one view per process:
//
//   - the reconciler plans from state() on every change (onChange), instead of re-reading the store;
//   - the API serves its list routes from it, after sync().
//
// sync() is what makes the second one safe: it asks each watch to catch up to the store's current
// revision (Watcher.progress) and applies what it delivers, every prefix side by side. After it
// resolves, the view holds every write committed before the call, by this process or any other on
// the store, so a list never misses a write that was acknowledged before it was asked for. On etcd it
// costs one round trip for every prefix together when nothing changed. Writes never go through the view: they are
// compare-and-swap transactions on the store, which stays the one truth.
//
// The prefixes are followed separately: between syncs, a reader may see an instance's interfaces
// one delivery before the instance itself (planHost ignores interfaces whose instance it does not
// know; the next delivery schedules another pass). A watch that ends (its history was compacted)
// is re-read and followed again, and onChange fires.
//
// Records handed out are the view's own objects: read them, never change them.
import type { InstanceRecord } from '../instances/instance.ts';
import type { InterfaceRecord } from '../instances/interface.ts';
import type { NetworkRecord } from '../networks/network.ts';
import type { ConnectionRecord } from '../connections/model.ts';
import type { DesiredState } from '../reconcile/plan.ts';
import type { KeyValue, Store, StoreError, WatchEvent, Watcher } from '../store/store.ts';
import type { HostRecord } from './hosts.ts';
import { Grouping, HostsOnNetwork, type RecordIndex } from './record-index.ts';
import { ATTACHMENTS_PREFIX, CONNECTIONS_PREFIX, HOSTS_PREFIX, INSTANCES_PREFIX, INTERFACES_PREFIX, IPAM_PREFIX, NETWORKS_PREFIX, VNI_PREFIX } from './keys.ts';

/** One followed prefix: its records by the key's last part (a uuid, a host name, a VNI). */
class Followed<T> {
  readonly records = new Map<string, T>();
  /** Each record's modRevision, for writers that plan from the view and guard their txn with it. */
  readonly revisions = new Map<string, number>();
  /** The revision of the last event applied. */
  applied = 0;
  /** Called after each delivery is applied. */
  onApplied: (() => void) | undefined;
  readonly #indexes: Array<RecordIndex<T>> = [];
  #watcher: Watcher | undefined;
  /** The re-read in progress after the watch ended (or the first read). */
  #starting: Promise<void> | undefined;

  constructor(
    private readonly store: Store,
    readonly prefix: string,
    private readonly parse: (value: string) => T,
    private readonly changed: () => void,
    private readonly ended: (err: StoreError) => void,
  ) {}

  start(): Promise<void> {
    this.#starting ??= this.#read().finally(() => { this.#starting = undefined; });
    return this.#starting;
  }

  async #read(): Promise<void> {
    await this.stop();
    const { kvs, revision } = await this.store.range(this.prefix);
    this.records.clear();
    for (const x of this.#indexes) x.clear();
    this.revisions.clear();
    for (const kv of kvs) this.#set(kv.key.slice(this.prefix.length), this.parse(kv.value), kv.modRevision);
    const apply = (events: WatchEvent[]) => {
      for (const e of events) {
        this.applied = Math.max(this.applied, e.revision);
        const id = e.kv.key.slice(this.prefix.length);
        if (e.type === 'put') this.#set(id, this.parse(e.kv.value), e.kv.modRevision);
        else this.#delete(id);
      }
      this.changed();
      this.onApplied?.();
    };
    const onError = (err: StoreError) => {
      this.#watcher = undefined;
      this.ended(err);
    };
    this.#watcher = await this.store.watch(this.prefix, { fromRevision: revision + 1, onError }, apply);
    this.changed();
  }

  #set(id: string, record: T, modRevision: number): void {
    this.#delete(id);
    this.records.set(id, record);
    this.revisions.set(id, modRevision);
    for (const x of this.#indexes) x.add(id, record);
  }

  #delete(id: string): void {
    const prev = this.records.get(id);
    if (prev === undefined) return;
    this.records.delete(id);
    this.revisions.delete(id);
    for (const x of this.#indexes) x.remove(id, prev);
  }

  /** Keeps `index` told of every record this prefix gains or loses. */
  index<I extends RecordIndex<T>>(index: I): I {
    this.#indexes.push(index);
    return index;
  }

  /** Resolves with a revision R once every change up to R is applied (R is at least the store's at the call). */
  async sync(): Promise<number> {
    if (this.#starting) await this.#starting;
    if (!this.#watcher) await this.start(); // the watch ended: read again
    const watcher = this.#watcher!;
    try {
      return await watcher.progress();
    } catch (err) {
      if (this.#watcher === watcher) throw err;
      return this.sync(); // it ended meanwhile (its history was compacted): read again and catch up
    }
  }

  async stop(): Promise<void> {
    const w = this.#watcher;
    this.#watcher = undefined;
    await w?.cancel();
  }

  get following(): boolean {
    return this.#watcher !== undefined;
  }
}

/** A store error that says the store could not be reached (StoreUnavailableError), as opposed to a bad request. */
export function isUnavailable(err: unknown): boolean {
  return (err as StoreError | undefined)?.code === 'EUNAVAILABLE';
}

/**
 * The record at `key` as a list of none or one, read from the store; while the store is away, what the view
 * last saw of it (`seen`), so that lookups keep answering (headless, DESIGN.md §4).
 */
export async function readOrSeen<T>(store: Store, key: string, view: StateView | undefined, seen: (v: StateView) => T | undefined): Promise<T[]> {
  try {
    const kv = await store.get(key);
    return kv ? [JSON.parse(kv.value) as T] : [];
  } catch (err) {
    if (!view || !isUnavailable(err)) throw err;
    const record = seen(view);
    return record === undefined ? [] : [record];
  }
}

export class StateView {
  readonly #listeners = new Set<() => void>();
  #unavailableUntil = 0;
  readonly #errorListeners = new Set<(err: StoreError) => void>();
  readonly #networks: Followed<NetworkRecord>;
  readonly #instances: Followed<InstanceRecord>;
  readonly #interfaces: Followed<InterfaceRecord>;
  readonly #hosts: Followed<HostRecord>;
  /** VNI claims: only their keys matter. */
  readonly #vnis: Followed<true>;
  /** Connections, so that plans realise them (reconcile/plan.ts). */
  readonly #connections: Followed<ConnectionRecord>;
  readonly #ipams: Followed<string>;
  readonly #attachments: Followed<string>;
  readonly #all: Array<Pick<Followed<unknown>, 'start' | 'stop' | 'sync' | 'applied'>>;
  readonly #instancesOnHost: Grouping<InstanceRecord>;
  readonly #interfacesOfInstance: Grouping<InterfaceRecord>;
  readonly #interfacesOnNetwork: Grouping<InterfaceRecord>;
  readonly #hostsOnNetwork: HostsOnNetwork;
  #stopped = false;

  constructor(store: Store) {
    const changed = () => { for (const l of this.#listeners) l(); };
    const follow = <T>(prefix: string, parse: (value: string) => T, quiet = false): Followed<T> => {
      const f: Followed<T> = new Followed(store, prefix, parse, quiet ? () => {} : changed, (err) => {
        for (const l of this.#errorListeners) l(err);
        // Read it again now, not at the next sync, so the reconciler sees changes meanwhile; while the store
        // is away, every second until it answers.
        const restart = () => { if (!this.#stopped) f.start().catch(() => setTimeout(restart, 1000).unref()); };
        restart();
      });
      return f;
    };
    const json = (value: string) => JSON.parse(value);
    this.#networks = follow<NetworkRecord>(NETWORKS_PREFIX, json);
    this.#instances = follow<InstanceRecord>(INSTANCES_PREFIX, json);
    this.#interfaces = follow<InterfaceRecord>(INTERFACES_PREFIX, json);
    this.#hosts = follow<HostRecord>(HOSTS_PREFIX, json);
    this.#vnis = follow<true>(VNI_PREFIX, () => true);
    this.#connections = follow<ConnectionRecord>(CONNECTIONS_PREFIX, json);
    // Kept as text for writers that plan from the view (InstanceRepository.create); quiet: the interface
    // changes that come with them in one txn are what the reconciler acts on.
    this.#ipams = follow<string>(IPAM_PREFIX, (v) => v, true);
    this.#attachments = follow<string>(ATTACHMENTS_PREFIX, (v) => v, true);
    this.#all = [this.#networks, this.#instances, this.#interfaces, this.#hosts, this.#vnis, this.#connections, this.#ipams, this.#attachments];
    for (const f of [this.#ipams, this.#attachments]) f.onApplied = () => this.#wakePlanWaiters();
    // What a host's plan looks up, so that it costs that host's share of the records, not all of them.
    this.#instancesOnHost = this.#instances.index(new Grouping((i) => i.host));
    this.#interfacesOfInstance = this.#interfaces.index(new Grouping((i) => i.instance_uuid));
    this.#interfacesOnNetwork = this.#interfaces.index(new Grouping((i) => i.network_uuid));
    this.#hostsOnNetwork = new HostsOnNetwork({
      interfaces: this.#interfaces.records,
      instances: this.#instances.records,
      interfacesOnNetwork: (uuid) => this.#interfacesOnNetwork.get(uuid),
      interfacesOfInstance: (uuid) => this.#interfacesOfInstance.get(uuid),
    });
    this.#interfaces.index(this.#hostsOnNetwork.interfaces);
    this.#instances.index(this.#hostsOnNetwork.instances);
  }

  /** Reads every prefix and follows it. */
  async start(): Promise<void> {
    this.#stopped = false;
    for (const f of this.#all) await f.start();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const f of this.#all) await f.stop();
  }

  /** Called after every applied change (several per write are possible: one per prefix). */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Called when a watch ends on its own (the view then reads that prefix again by itself). */
  onWatchError(listener: (err: StoreError) => void): () => void {
    this.#errorListeners.add(listener);
    return () => this.#errorListeners.delete(listener);
  }

  /**
   * Resolves once the view holds every write committed before the call (see the top of this file).
   * Instances are caught up before interfaces, so an instance listed has the interfaces its own
   * transaction wrote.
   */
  async sync(): Promise<this> {
    // Headless: while the store is away the view serves what it last saw (DESIGN.md §4). No write can be
    // acknowledged meanwhile, so no reader misses one of its own; a second's back-off spares every read
    // the wait for a store that just failed.
    if (Date.now() < this.#unavailableUntil) return this;
    try {
      // Side by side (the store answers the checks of every prefix in one round trip). An instance must not be
      // listed without the interfaces its own txn wrote: when the instances went further than the interfaces'
      // revision, the interfaces catch up once more.
      const revisions = await Promise.all(this.#all.map((f) => f.sync()));
      const interfacesAt = revisions[this.#all.indexOf(this.#interfaces)] as number;
      if (this.#instances.applied > interfacesAt) await this.#interfaces.sync();
      this.#synced = Math.max(this.#synced, ...revisions);
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      this.#unavailableUntil = Date.now() + 1000;
    }
    return this;
  }

  /**
   * A network, interface, IPAM or attachments key as the view holds it, with its modRevision, for a writer that plans
   * from the view and guards its txn with that revision (a stale plan is a lost txn, never a wrong write).
   * undefined when the view holds no such key.
   */
  cachedKv(key: string): KeyValue | undefined {
    for (const f of [this.#networks, this.#interfaces, this.#ipams, this.#attachments] as Array<Followed<unknown>>) {
      if (!key.startsWith(f.prefix)) continue;
      const id = key.slice(f.prefix.length);
      const record = f.records.get(id);
      if (record === undefined) return undefined;
      const modRevision = f.revisions.get(id) as number;
      const value = typeof record === 'string' ? record : JSON.stringify(record);
      return { key, value, modRevision, createRevision: 0, version: 0 };
    }
    throw new RangeError(`the state view does not follow ${key}`);
  }

  /**
   * Resolves once the IPAMs and attachments the view holds are at least at `revision` (a txn of this process
   * that wrote them), or after `ms`: a writer planning from the view after its own write then sees it.
   */
  planReady(revision: number, ms = 200): Promise<void> {
    if (this.#planAt() >= revision) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter = { revision, resolve: () => { clearTimeout(timer); this.#planWaiters.delete(waiter); resolve(); } };
      const timer = setTimeout(waiter.resolve, ms);
      this.#planWaiters.add(waiter);
    });
  }
  readonly #planWaiters = new Set<{ revision: number; resolve: () => void }>();
  #planAt(): number { return Math.min(this.#ipams.applied, this.#attachments.applied); }
  #wakePlanWaiters(): void {
    const at = this.#planAt();
    for (const w of [...this.#planWaiters]) if (w.revision <= at) w.resolve();
  }

  /**
   * The highest revision this view has applied or synced to, without asking the store: a recent revision
   * for keys that sort by revision (events), where a little behind the store's is fine.
   */
  get seenRevision(): number {
    return Math.max(this.#synced, ...this.#all.map((f) => f.applied));
  }
  #synced = 0;

  /** True while the last sync found the store unavailable (reads are then served from the view as it is). */
  get stale(): boolean {
    return Date.now() < this.#unavailableUntil;
  }

  get networks(): ReadonlyMap<string, NetworkRecord> { return this.#networks.records; }
  get instances(): ReadonlyMap<string, InstanceRecord> { return this.#instances.records; }
  get interfaces(): ReadonlyMap<string, InterfaceRecord> { return this.#interfaces.records; }
  get hosts(): ReadonlyMap<string, HostRecord> { return this.#hosts.records; }
  get connections(): ReadonlyMap<string, ConnectionRecord> { return this.#connections.records; }

  /** The claimed VXLAN ids. */
  usedVnis(): Set<number> {
    return new Set([...this.#vnis.records.keys()].map(Number));
  }

  /** The reconciler's input: the view itself, current until the next delivery. */
  state(): DesiredState {
    return {
      networks: this.#networks.records,
      instances: this.#instances.records,
      interfaces: this.#interfaces.records,
      hosts: this.#hosts.records,
      instancesOnHost: (host) => this.#instancesOnHost.get(host),
      interfacesOfInstance: (uuid) => this.#interfacesOfInstance.get(uuid),
      hostsOnNetwork: (uuid) => this.#hostsOnNetwork.get(uuid),
      connections: this.#connections.records,
    };
  }
}
