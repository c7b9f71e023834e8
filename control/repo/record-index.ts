// Indexes over the records a StateView follows, kept exact as records come and go, so that a read
// costs the records it is about rather than a scan of all of them. Pure: no store, no I/O.
import type { InstanceRecord } from '../instances/instance.ts';
import type { InterfaceRecord } from '../instances/interface.ts';

/** Told of every record a followed prefix gains or loses; a changed record is a remove, then an add. */
export interface RecordIndex<T> {
  add(id: string, record: T): void;
  remove(id: string, record: T): void;
  /** The prefix is being read again from scratch. */
  clear(): void;
}

const NONE: ReadonlySet<string> = new Set();

/** Ids of records grouped by one of their fields (instances by host, interfaces by network). */
export class Grouping<T> implements RecordIndex<T> {
  readonly #groups = new Map<string, Set<string>>();

  constructor(private readonly groupOf: (record: T) => string) {}

  add(id: string, record: T): void {
    const g = this.groupOf(record);
    let ids = this.#groups.get(g);
    if (!ids) this.#groups.set(g, (ids = new Set()));
    ids.add(id);
  }

  remove(id: string, record: T): void {
    const g = this.groupOf(record);
    const ids = this.#groups.get(g);
    if (ids?.delete(id) && ids.size === 0) this.#groups.delete(g);
  }

  /** Live: the set changes as records do. */
  get(group: string): ReadonlySet<string> {
    return this.#groups.get(group) ?? NONE;
  }

  clear(): void {
    this.#groups.clear();
  }
}

export interface HostsOnNetworkSource {
  interfaces: ReadonlyMap<string, InterfaceRecord>;
  instances: ReadonlyMap<string, InstanceRecord>;
  interfacesOnNetwork(networkUuid: string): Iterable<string>;
  interfacesOfInstance(instanceUuid: string): Iterable<string>;
}

/**
 * The hosts that hold a live interface (not `deleted`, of a known instance) on each network: what a
 * network floods to. A network's set is computed when asked for and kept until an interface on it,
 * or the instance of one, changes; so a reconcile pass recomputes the networks that changed since
 * the last one, not all of them. Feed `interfaces` and `instances` every change of those records.
 */
export class HostsOnNetwork {
  readonly #cache = new Map<string, ReadonlySet<string>>();
  readonly interfaces: RecordIndex<InterfaceRecord>;
  readonly instances: RecordIndex<InstanceRecord>;

  constructor(private readonly source: HostsOnNetworkSource) {
    this.interfaces = {
      add: (_id, iface) => this.#cache.delete(iface.network_uuid),
      remove: (_id, iface) => this.#cache.delete(iface.network_uuid),
      clear: () => this.#cache.clear(),
    };
    // An instance arriving after (or leaving before) its interfaces changes their networks' hosts.
    const touch = (id: string) => {
      for (const ifaceUuid of source.interfacesOfInstance(id)) {
        const iface = source.interfaces.get(ifaceUuid);
        if (iface) this.#cache.delete(iface.network_uuid);
      }
    };
    this.instances = { add: touch, remove: touch, clear: () => this.#cache.clear() };
  }

  get(networkUuid: string): ReadonlySet<string> {
    let hosts = this.#cache.get(networkUuid);
    if (hosts === undefined) {
      const found = new Set<string>();
      for (const ifaceUuid of this.source.interfacesOnNetwork(networkUuid)) {
        const iface = this.source.interfaces.get(ifaceUuid);
        if (!iface || iface.state === 'deleted') continue;
        const host = this.source.instances.get(iface.instance_uuid)?.host;
        if (host !== undefined) found.add(host);
      }
      this.#cache.set(networkUuid, (hosts = found));
    }
    return hosts;
  }
}
