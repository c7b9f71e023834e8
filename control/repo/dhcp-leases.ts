// DHCP leases kept in the store, one key per client: /appnet/dhcp-leases/<network uuid>/<mac>.
//
// The DHCP core is synchronous (control/services/dhcp-server.ts), so the leases live in memory,
// loaded from the store once at start, and every change the core makes is written through behind
// it. A failed write is logged; the client's next renewal writes the lease again. A restarted
// daemon loads what its predecessor wrote, so a renewing client finds its lease bound.
import type { Logger } from 'pino';
import { MemoryLeaseStore, type Lease, type LeaseChange, type LeaseStore } from '../services/dhcp-server.ts';
import type { Store } from '../store/store.ts';
import { DHCP_LEASES_PREFIX } from './keys.ts';


export function leaseKey(network: string, mac: string): string {
  return `${DHCP_LEASES_PREFIX}${network}/${mac.toLowerCase()}`;
}

export class DhcpLeaseRepository {
  readonly #store: Store;
  readonly #log: Pick<Logger, 'warn'>;
  readonly #byNetwork = new Map<string, MemoryLeaseStore>();
  /** Writes in flight, so close() and tests can wait for them. */
  #writes = new Set<Promise<unknown>>();

  constructor(store: Store, log: Pick<Logger, 'warn'>) {
    this.#store = store;
    this.#log = log;
  }

  /** Reads every lease of every network (once, at start). Records that do not parse are skipped. */
  async load(): Promise<void> {
    const { kvs } = await this.#store.range(DHCP_LEASES_PREFIX);
    const grouped = new Map<string, Lease[]>();
    for (const kv of kvs) {
      const [network, mac] = kv.key.slice(DHCP_LEASES_PREFIX.length).split('/');
      try {
        const l = JSON.parse(kv.value) as Lease;
        if (l.mac !== mac || typeof l.ipv4 !== 'string' || typeof l.expiresAt !== 'number') throw new Error('fields mac, ipv4, expiresAt');
        grouped.set(network, [...(grouped.get(network) ?? []), l]);
      } catch (e) {
        this.#log.warn({ key: kv.key, err: e }, 'DHCP lease record unreadable; ignored');
      }
    }
    this.#byNetwork.clear();
    for (const [network, leases] of grouped) this.#byNetwork.set(network, new MemoryLeaseStore(leases));
  }

  /** The LeaseStore the network's DHCP server uses: the memory copy, written through to the store. */
  forNetwork(network: string): LeaseStore {
    // Looked up per call: release() replaces a network's memory copy.
    return {
      get: (mac) => this.#memory(network).get(mac),
      apply: (change: LeaseChange) => {
        const mem = this.#memory(network);
        mem.apply(change);
        const lease = mem.get(change.mac)!;
        this.#track(this.#store.put(leaseKey(network, change.mac), JSON.stringify(lease)), 'DHCP lease not written; the next renewal writes it', { network, mac: change.mac });
      },
    };
  }

  /** Leases held in memory for a network (MACs of clients that were ever granted, released or declined). */
  leases(network: string): Lease[] {
    return this.#byNetwork.get(network)?.all() ?? [];
  }

  networks(): string[] {
    return [...this.#byNetwork.keys()];
  }

  /** The interface is gone: forget its lease, here and in the store. */
  release(network: string, mac: string): void {
    const mem = this.#byNetwork.get(network);
    if (!mem || !mem.get(mac)) return;
    const rest = mem.all().filter((l) => l.mac !== mac.toLowerCase());
    this.#byNetwork.set(network, new MemoryLeaseStore(rest));
    this.#track(this.#store.delete(leaseKey(network, mac)), 'DHCP lease not deleted', { network, mac });
  }

  /** Resolves when the writes issued so far are done (failed ones included). */
  async flush(): Promise<void> {
    await Promise.all([...this.#writes]);
  }

  #memory(network: string): MemoryLeaseStore {
    let mem = this.#byNetwork.get(network);
    if (!mem) this.#byNetwork.set(network, (mem = new MemoryLeaseStore()));
    return mem;
  }

  #track(p: Promise<unknown>, message: string, extra: Record<string, unknown>): void {
    const w = p.catch((err) => this.#log.warn({ ...extra, err }, message)).finally(() => this.#writes.delete(w));
    this.#writes.add(w);
  }
}
