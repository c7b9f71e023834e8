// Store-backed reads and metadata of network interfaces. Creation and removal happen with their
// instance (repo/instances.ts), in one transaction with the address and MAC claims.
//
// Keys (values are JSON):
//   /appnet/interfaces/<uuid>   InterfaceRecord
//   /appnet/macs/<mac>          {interface_uuid, when}: the MAC's claim, created with createRevision == 0
//   /appnet/attachments/<network-uuid>
//                               {interfaces: [uuid, ...]}: the interfaces on that network, written in the
//                               txn that creates or deletes them. It is the one key that both an
//                               interface create and the network's delete compare-and-swap on, so a
//                               network never goes to `deleted` while an interface is being attached
//                               (repo/networks.ts delete), and counting or listing a network's
//                               interfaces reads one key instead of every interface.

import { Conflict, NotFound, quote } from '../errors.ts';
import type { InterfaceRecord } from '../instances/interface.ts';
import { checkInterfaceVisible } from '../instances/instance.ts';
import type { KeyValue, Store } from '../store/store.ts';
import type { StateView } from './state-view.ts';
import { ATTACHMENTS_PREFIX, INTERFACES_PREFIX, MACS_PREFIX } from './keys.ts';


/** A network's attachments key as read: `kv` undefined when no interface was ever attached. */
export interface Attachments {
  kv: KeyValue | undefined;
  interfaces: string[];
}

export async function readAttachments(store: Pick<Store, 'get'>, networkUuid: string): Promise<Attachments> {
  const kv = await store.get(ATTACHMENTS_PREFIX + networkUuid);
  return { kv, interfaces: kv ? (JSON.parse(kv.value) as { interfaces: string[] }).interfaces : [] };
}
const UPDATE_TRIES = 5;

export class InterfaceRepository {
  /** With a view, a network's interfaces are listed from it after a sync (one round trip, not one per interface). */
  constructor(private readonly store: Store, private readonly view?: StateView) {}

  async all(): Promise<InterfaceRecord[]> {
    const { kvs } = await this.store.range(INTERFACES_PREFIX);
    return kvs.map((kv) => JSON.parse(kv.value) as InterfaceRecord);
  }

  /** Interfaces on a network that are not `deleted` (what blocks the network's deletion). */
  async onNetwork(networkUuid: string): Promise<InterfaceRecord[]> {
    let out: InterfaceRecord[];
    if (this.view) {
      const view = await this.view.sync();
      const attached = await readAttachments({ get: async (key) => view.cachedKv(key) }, networkUuid);
      out = attached.interfaces.map((uuid) => view.interfaces.get(uuid)).filter((i): i is InterfaceRecord => i !== undefined);
    } else {
      const attached = await readAttachments(this.store, networkUuid);
      const kvs = await Promise.all(attached.interfaces.map((uuid) => this.store.get(INTERFACES_PREFIX + uuid)));
      out = kvs.filter((kv): kv is KeyValue => kv !== undefined).map((kv) => JSON.parse(kv.value) as InterfaceRecord);
    }
    return out
      .filter((i) => i.state !== 'deleted')
      .sort((a, b) => a.createdAt - b.createdAt || a.instance_uuid.localeCompare(b.instance_uuid) || a.order - b.order);
  }

  async count(networkUuid: string): Promise<number> {
    return (await readAttachments(this.store, networkUuid)).interfaces.length;
  }

  /** Whether a MAC is claimed (one key read; the create txn's compare makes the claim exact). */
  async macTaken(mac: string): Promise<boolean> {
    return (await this.store.get(MACS_PREFIX + mac)) !== undefined;
  }

  /** 404 `interface not found` if missing or in another namespace (system sees all). */
  async get(uuid: string, namespace: string): Promise<InterfaceRecord> {
    const kv = await this.store.get(INTERFACES_PREFIX + uuid);
    if (kv === undefined) throw new NotFound(`interface not found: ${quote(uuid)}`, { reason: 'not-found' });
    const record = JSON.parse(kv.value) as InterfaceRecord;
    checkInterfaceVisible(record, namespace);
    return record;
  }

  /** 404 as get() for an interface `namespace` may not see. */
  async setMetadata(uuid: string, namespace: string, key: string, value: string): Promise<Record<string, string>> {
    return (await this.update(uuid, (r) => ({ ...r, metadata: { ...r.metadata, [key]: value } }), namespace)).metadata;
  }

  /** 404 if the key is not set. */
  async deleteMetadata(uuid: string, namespace: string, key: string): Promise<Record<string, string>> {
    const record = await this.update(uuid, (r) => {
      if (!Object.hasOwn(r.metadata, key)) {
        throw new NotFound(`metadata key ${quote(key)} not found on interface ${uuid}`, { reason: 'no-key' });
      }
      const metadata = { ...r.metadata };
      delete metadata[key];
      return { ...r, metadata };
    }, namespace);
    return record.metadata;
  }

  /**
   * Read-modify-write under a modRevision compare, retried; 409 after UPDATE_TRIES lost races. With
   * `namespace`, 404 as get() for one it may not see. With a view, the first attempt starts from the view as
   * it is, with no round trip (the txn's compare catches a view that was behind); a refusal (404) and every
   * later attempt are decided on a fresh read.
   */
  async update(uuid: string, change: (record: InterfaceRecord) => InterfaceRecord, namespace?: string): Promise<InterfaceRecord> {
    const key = INTERFACES_PREFIX + uuid;
    for (let attempt = 0; attempt < UPDATE_TRIES; attempt++) {
      const seen = attempt === 0 ? this.view?.cachedKv(key) : undefined;
      let kv: KeyValue | undefined;
      let next: InterfaceRecord;
      if (seen !== undefined) {
        const planned = planFrom(seen, change, namespace);
        if (planned === undefined) continue; // refused or unchanged on the view's copy: decided on the store
        [kv, next] = [seen, planned];
      } else {
        kv = await this.store.get(key);
        if (kv === undefined) throw new NotFound(`interface not found: ${quote(uuid)}`, { reason: 'not-found' });
        const current = JSON.parse(kv.value) as InterfaceRecord;
        if (namespace !== undefined) checkInterfaceVisible(current, namespace);
        next = change(current);
        if (next === current) return current;
      }
      const result = await this.store.txn({
        compare: [{ key, target: 'modRevision', op: '==', value: kv.modRevision }],
        success: [{ type: 'put', key, value: JSON.stringify(next) }],
      });
      if (result.succeeded) return next;
    }
    throw new Conflict(`interface ${uuid} is being changed concurrently; retry the request`, { reason: 'cas' });
  }
}

/** The change planned on the view's copy, or undefined when the store must decide (a refusal, or no change). */
function planFrom(kv: KeyValue, change: (record: InterfaceRecord) => InterfaceRecord, namespace: string | undefined): InterfaceRecord | undefined {
  try {
    const current = JSON.parse(kv.value) as InterfaceRecord;
    if (namespace !== undefined) checkInterfaceVisible(current, namespace);
    const next = change(current);
    return next === current ? undefined : next;
  } catch {
    return undefined;
  }
}
