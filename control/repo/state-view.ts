// The records of the store in memory, parsed once: networks, instances, interfaces, hosts, the
// claimed VNIs and application connections, read with range() and then kept current by one watch per prefix (from that read's
// revision + 1, so no change is missed or applied twice). Two readers share one view per process:
//
//   - the reconciler plans from state() on every change (onChange), instead of re-reading the store;
//   - the API serves its list routes from it, after sync().
//
// sync() is what makes the second one safe: it asks each watch to catch up to the store's current
// revision (Watcher.progress, etcd's progress request) and applies what it delivers. After it
// resolves, the view holds every write committed before the call, by this process or any other on
// the store, so a list never misses a write that was acknowledged before it was asked for. It costs
// a revision read per prefix when nothing changed. Writes never go through the view: they are
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
import type { Store, StoreError, WatchEvent, Watcher } from '../store/store.ts';
import { HOSTS_PREFIX, type HostRecord } from './hosts.ts';
import { Grouping, HostsOnNetwork, type RecordIndex } from './record-index.ts';
import { INSTANCES_PREFIX } from './instances.ts';
import { INTERFACES_PREFIX } from './interfaces.ts';
import { NETWORKS_PREFIX, VNI_PREFIX } from './networks.ts';
import { CONNECTIONS_PREFIX } from './connections.ts';

/** One followed prefix: its records by the key's last part (a uuid, a host name, a VNI). */
class Followed<T> {
  readonly records = new Map<string, T>();
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
    for (const kv of kvs) this.#set(kv.key.slice(this.prefix.length), this.parse(kv.value));
    const apply = (events: WatchEvent[]) => {
      for (const e of events) {
        const id = e.kv.key.slice(this.prefix.length);
        if (e.type === 'put') this.#set(id, this.parse(e.kv.value));
        else this.#delete(id);
      }
      this.changed();
    };
    const onError = (err: StoreError) => {
      this.#watcher = undefined;
      this.ended(err);
    };
    this.#watcher = await this.store.watch(this.prefix, { fromRevision: revision + 1, onError }, apply);
    this.changed();
  }

  #set(id: string, record: T): void {
    this.#delete(id);
    this.records.set(id, record);
    for (const x of this.#indexes) x.add(id, record);
  }

  #delete(id: string): void {
    const prev = this.records.get(id);
    if (prev === undefined) return;
    this.records.delete(id);
    for (const x of this.#indexes) x.remove(id, prev);
  }

  /** Keeps `index` told of every record this prefix gains or loses. */
  index<I extends RecordIndex<T>>(index: I): I {
    this.#indexes.push(index);
    return index;
  }

  async sync(): Promise<void> {
    if (this.#starting) await this.#starting;
    if (!this.#watcher) await this.start(); // the watch ended: read again
    const watcher = this.#watcher!;
    try {
      await watcher.progress();
    } catch (err) {
      if (this.#watcher === watcher) throw err;
      await this.sync(); // it ended meanwhile (its history was compacted): read again and catch up
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
  readonly #all: Array<Pick<Followed<unknown>, 'start' | 'stop' | 'sync'>>;
  readonly #instancesOnHost: Grouping<InstanceRecord>;
  readonly #interfacesOfInstance: Grouping<InterfaceRecord>;
  readonly #interfacesOnNetwork: Grouping<InterfaceRecord>;
  readonly #hostsOnNetwork: HostsOnNetwork;
  #stopped = false;

  constructor(store: Store) {
    const changed = () => { for (const l of this.#listeners) l(); };
    const follow = <T>(prefix: string, parse: (value: string) => T): Followed<T> => {
      const f: Followed<T> = new Followed(store, prefix, parse, changed, (err) => {
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
    this.#all = [this.#networks, this.#instances, this.#interfaces, this.#hosts, this.#vnis, this.#connections];
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
      for (const f of this.#all) await f.sync();
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      this.#unavailableUntil = Date.now() + 1000;
    }
    return this;
  }

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
