// An in-memory copy of the desired state a reconciler plans from (networks, instances, interfaces,
// hosts), read once and then kept current by the store's watch, so a reconcile pass costs a plan
// over memory instead of re-reading and re-parsing every record of the store.
//
// Each prefix is read with range() and watched from that read's revision + 1, so no change is
// missed or applied twice. The prefixes are watched separately: a pass may see an instance's
// interfaces one watch delivery before the instance itself; planHost ignores interfaces whose
// instance it does not know, and the next delivery schedules another pass.
import type { InstanceRecord } from '../instances/instance.ts';
import type { InterfaceRecord } from '../instances/interface.ts';
import type { NetworkRecord } from '../networks/network.ts';
import { HOSTS_PREFIX, type HostRecord } from '../repo/hosts.ts';
import { INSTANCES_PREFIX } from '../repo/instances.ts';
import { INTERFACES_PREFIX } from '../repo/interfaces.ts';
import { NETWORKS_PREFIX } from '../repo/networks.ts';
import type { Store, StoreError, WatchEvent, Watcher } from '../store/store.ts';
import type { DesiredState } from './plan.ts';

type Kind = 'networks' | 'instances' | 'interfaces' | 'hosts';
const PREFIXES: Record<Kind, string> = {
  networks: NETWORKS_PREFIX, instances: INSTANCES_PREFIX, interfaces: INTERFACES_PREFIX, hosts: HOSTS_PREFIX,
};

export class DesiredView {
  readonly #maps: Record<Kind, Map<string, unknown>> = {
    networks: new Map(), instances: new Map(), interfaces: new Map(), hosts: new Map(),
  };
  #watchers: Watcher[] = [];

  constructor(private readonly store: Store) {}

  /**
   * Reads every prefix and follows it. `onChange` runs after each applied delivery; `onError` if a
   * watch ends (its history was compacted, the store closed): call start() again to re-read.
   */
  async start(onChange: () => void, onError: (err: StoreError) => void): Promise<void> {
    await this.stop();
    for (const kind of Object.keys(PREFIXES) as Kind[]) {
      const prefix = PREFIXES[kind];
      const map = this.#maps[kind];
      const { kvs, revision } = await this.store.range(prefix);
      map.clear();
      for (const kv of kvs) map.set(kv.key, JSON.parse(kv.value));
      const apply = (events: WatchEvent[]) => {
        for (const e of events) {
          if (e.type === 'put') map.set(e.kv.key, JSON.parse(e.kv.value));
          else map.delete(e.kv.key);
        }
        onChange();
      };
      this.#watchers.push(await this.store.watch(prefix, { fromRevision: revision + 1, onError }, apply));
    }
  }

  async stop(): Promise<void> {
    const watchers = this.#watchers;
    this.#watchers = [];
    for (const w of watchers) await w.cancel();
  }

  state(): DesiredState {
    const values = <T>(kind: Kind) => [...this.#maps[kind].values()] as T[];
    return {
      networks: values<NetworkRecord>('networks'),
      instances: values<InstanceRecord>('instances'),
      interfaces: values<InterfaceRecord>('interfaces'),
      hosts: values<HostRecord>('hosts'),
    };
  }
}
