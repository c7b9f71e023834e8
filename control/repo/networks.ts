// The store-backed repository of networks: records, their IPAM, VNI reservations, events and
// metadata. It turns the pure cores (network.ts, state-machine.ts, vni-allocator.ts, ipam.ts) into
// durable state with compare-and-swap transactions, so several API processes sharing one store
// never lose an update or hand out one VNI twice.
//
// Keys (values are JSON):
//   /appnet/networks/<uuid>                  NetworkRecord (the floating pseudo-network is `floating`)
//   /appnet/ipam/<uuid>                      IpamState of that network
//   /appnet/vni/<vni>                        {network_uuid, when}: the VNI's owner, claimed by create-if-absent
//   /appnet/events/<uuid>/<rev:15>-<ms:15>-<seq:6>
//                                            EventRecord; <rev> is the latest store revision the writer
//                                            has seen (its view's, else one read just before the write),
//                                            so an event written by a process that saw another one (its
//                                            own, or one its watch delivered) sorts after it
//   /appnet/config/floating-pool             {netblock}: the pool every process must agree on
//
// Contracts:
//   - create writes record, IPAM, VNI claim and the first event in one txn, guarded by
//     createRevision == 0 on the VNI key: a lost race re-reads the used VNIs and tries again.
//   - every later change of a record is a txn guarded by modRevision == what was read, retried
//     UPDATE_TRIES times, then 409.
//   - delete decides delete-wait or deleted from the network's attachments key
//     (repo/interfaces.ts) and compares it in the same txn as the record, so an interface attached
//     meanwhile makes the delete re-read and go to delete-wait instead of `deleted`.
//   - deleting only moves the state (delete-wait or deleted); rows and the VNI stay until a hard
//     delete (not done here), so a UUID keeps resolving and the VNI is not reused too early.

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Conflict, NotFound, quote } from '../errors.ts';
import type { Cidr } from '../net/ipv4-cidr.ts';
import {
  type NetworkRecord,
  FLOATING_NETWORK_UUID,
  floatingNetworkRecord,
  isUuid,
  listNetworks,
  newNetworkRecord,
  parseFloatingPool,
  planDelete,
  resolveNetworkRef,
  validateNetworkCreate,
} from '../networks/network.ts';
import { failNetwork, transition } from '../networks/state-machine.ts';
import { allocateVni, checkRequestedVni } from '../networks/vni-allocator.ts';
import { type IpamState, addressView, allocate, createIpam, listReservations, release } from '../ipam/ipam.ts';
import { readAttachments } from './interfaces.ts';
import type { Compare, KeyValue, Store, TxnOp } from '../store/store.ts';
import { readOrSeen, type StateView } from './state-view.ts';
import { withFloatingPool } from './floating-pool.ts';
import { ATTACHMENTS_PREFIX, EVENTS_PREFIX, IPAM_PREFIX, NETWORKS_PREFIX, VNI_PREFIX } from './keys.ts';

export const FLOATING_POOL_KEY = '/appnet/config/floating-pool';

/** Attempts of a compare-and-swap before giving up with 409. */
const UPDATE_TRIES = 5;
/** Attempts to claim a VNI before giving up with 409. */
const VNI_TRIES = 8;
export const DEFAULT_EVENT_LIMIT = 100;

/** One row of GET /networks/{ref}/events, in the reference's shape. */
export interface EventRecord {
  /** Seconds since the epoch (fractional). */
  timestamp: number;
  fqdn: string;
  duration: number | null;
  message: string;
  /** `audit` (an API request), `mutate` (a state change), `usage`, ... */
  type: string;
  extra: Record<string, unknown> | null;
}

export interface NetworkRepoOptions {
  store: Store;
  /** The floating pool (FLOATING_NETWORK); networks may not overlap it. */
  floatingPool: Cidr | string;
  /**
   * Replaces the count of a network's interfaces (tests of delete-wait without instances). By
   * default the network's attachments key is counted, inside delete's compare-and-swap.
   */
  interfaceCount?: (networkUuid: string) => number | Promise<number>;
  now?: () => number;
  random?: () => number;
  newUuid?: () => string;
  /** Written into events (the reference's `fqdn`). Default: this host's name. */
  fqdn?: string;
  /**
   * Serve whole-collection reads (lists, names, used VNIs) from this view after its sync(),
   * instead of reading and parsing every record from the store. Writes always go to the store.
   */
  view?: StateView;
}

export interface EventQuery {
  type?: string;
  limit?: number;
}

export type AddressRow = ReturnType<typeof addressView>;

export interface DeleteAllResult {
  deleted: string[];
  unable: string[];
}

export class NetworkRepository {
  readonly store: Store;
  readonly floatingPool: Cidr;
  private readonly interfaceCount: ((uuid: string) => number | Promise<number>) | undefined;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly newUuid: () => string;
  private readonly fqdn: string;
  private readonly view: StateView | undefined;
  private eventSeq = 0;

  constructor(options: NetworkRepoOptions) {
    this.store = options.store;
    this.floatingPool =
      typeof options.floatingPool === 'string' ? parseFloatingPool(options.floatingPool) : options.floatingPool;
    this.interfaceCount = options.interfaceCount;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.newUuid = options.newUuid ?? randomUUID;
    this.fqdn = options.fqdn ?? hostname();
    this.view = options.view;
  }

  /**
   * Record the floating pool and create the floating pseudo-network and its IPAM, once. Throws
   * if the store already holds a different pool: changing it under existing reservations would
   * strand NAT gateways and floating addresses.
   */
  async init(): Promise<void> {
    const now = this.now();
    const pool = this.floatingPool;
    const result = await this.store.txn({
      compare: [{ key: FLOATING_POOL_KEY, target: 'createRevision', op: '==', value: 0 }],
      success: [
        { type: 'put', key: FLOATING_POOL_KEY, value: JSON.stringify({ netblock: pool.text }) },
        { type: 'put', key: NETWORKS_PREFIX + FLOATING_NETWORK_UUID, value: JSON.stringify(floatingNetworkRecord(pool, now)) },
        {
          type: 'put',
          key: IPAM_PREFIX + FLOATING_NETWORK_UUID,
          value: JSON.stringify(createIpam(pool, { now, holder: { kind: 'network', id: FLOATING_NETWORK_UUID } })),
        },
      ],
      failure: [{ type: 'get', key: FLOATING_POOL_KEY }],
    });
    if (result.succeeded) return;
    const got = result.results[0];
    const stored = got?.type === 'get' ? got.kvs[0] : undefined;
    const netblock = stored ? (JSON.parse(stored.value) as { netblock: string }).netblock : undefined;
    if (netblock !== pool.text) {
      throw new Error(
        `the store's floating pool is ${netblock} but this process was configured with ${pool.text}; ` +
          'configure the same pool on every process (changing it needs a migration of its reservations)',
      );
    }
  }

  // ---- reads -----------------------------------------------------------------------------

  /** Every network record (the view's own objects when there is a view: do not change them). */
  async allRecords(): Promise<NetworkRecord[]> {
    if (this.view) return [...(await this.view.sync()).networks.values()];
    const { kvs } = await this.store.range(NETWORKS_PREFIX);
    return kvs.map((kv) => JSON.parse(kv.value) as NetworkRecord);
  }

  /** By UUID or by a name unique among the namespace's active networks (404/400 as the reference). */
  async resolve(ref: string, namespace: string): Promise<NetworkRecord> {
    // Names are never UUID-shaped, so a UUID is one key read, not a scan of every network.
    if (isUuid(ref)) {
      return resolveNetworkRef(ref, namespace, await readOrSeen<NetworkRecord>(this.store, NETWORKS_PREFIX + ref, this.view, (v) => v.networks.get(ref)));
    }
    return resolveNetworkRef(ref, namespace, await this.allRecords());
  }

  async list(namespace: string, all = false): Promise<NetworkRecord[]> {
    const records = listNetworks(await this.allRecords(), namespace, all);
    return records.sort((a, b) => a.createdAt - b.createdAt || a.uuid.localeCompare(b.uuid));
  }

  async getIpam(uuid: string): Promise<IpamState> {
    return ipamOf(uuid, await this.store.get(IPAM_PREFIX + uuid));
  }

  /**
   * GET /networks/{ref}/addresses: blocking reservations sorted by address. With a view, the network and its
   * IPAM come from it after one sync (a round shared with the requests in flight) instead of two store reads
   * in a row.
   */
  async addresses(ref: string, namespace: string): Promise<AddressRow[]> {
    if (!this.view) return listReservations(await this.getIpam((await this.resolve(ref, namespace)).uuid), this.now()).map(addressView);
    const view = await this.view.sync();
    const byUuid = isUuid(ref) ? view.networks.get(ref) : undefined;
    const network = resolveNetworkRef(ref, namespace, isUuid(ref) ? (byUuid ? [byUuid] : []) : [...view.networks.values()]);
    return listReservations(ipamOf(network.uuid, view.cachedKv(IPAM_PREFIX + network.uuid)), this.now()).map(addressView);
  }

  /** GET /networks/{ref}/events: by UUID, the network and its events are read side by side. */
  async eventsOf(ref: string, namespace: string, query: EventQuery = {}): Promise<EventRecord[]> {
    if (!isUuid(ref)) return this.events((await this.resolve(ref, namespace)).uuid, query);
    const [, events] = await Promise.all([this.resolve(ref, namespace), this.events(ref, query)]);
    return events;
  }

  /** Newest first, optionally only one `type`, at most `limit` (default 100). */
  async events(uuid: string, query: EventQuery = {}): Promise<EventRecord[]> {
    const limit = query.limit ?? DEFAULT_EVENT_LIMIT;
    const { kvs } = await this.store.range(`${EVENTS_PREFIX}${uuid}/`);
    const out: EventRecord[] = [];
    for (let i = kvs.length - 1; i >= 0 && out.length < limit; i--) {
      const event = JSON.parse(kvs[i].value) as EventRecord;
      if (query.type === undefined || event.type === query.type) out.push(event);
    }
    return out;
  }

  // ---- writes ----------------------------------------------------------------------------

  /**
   * POST /networks: validate (400/401/403/404), claim a VNI (409 if a requested one is taken,
   * 507 if none is free), and write the network in state `initial`.
   */
  async create(body: unknown, callerNamespace: string, namespaces?: ReadonlySet<string>): Promise<NetworkRecord> {
    const spec = validateNetworkCreate(body, { floatingPool: this.floatingPool, callerNamespace, namespaces });
    const uuid = this.newUuid();
    for (let attempt = 0; attempt < VNI_TRIES; attempt++) {
      const used = await this.usedVnis();
      const vxid =
        spec.vxlanId !== null ? checkRequestedVni(spec.vxlanId, used) : allocateVni(used, { random: this.random });
      const now = this.now();
      const record = newNetworkRecord(spec, { uuid, vxid, now });
      const ipam = createIpam(spec.netblock, { now, holder: { kind: 'network', id: uuid } });
      const result = await this.store.txn({
        compare: [
          { key: VNI_PREFIX + vxid, target: 'createRevision', op: '==', value: 0 },
          { key: NETWORKS_PREFIX + uuid, target: 'createRevision', op: '==', value: 0 },
        ],
        success: [
          { type: 'put', key: VNI_PREFIX + vxid, value: JSON.stringify({ network_uuid: uuid, when: now }) },
          { type: 'put', key: NETWORKS_PREFIX + uuid, value: JSON.stringify(record) },
          { type: 'put', key: IPAM_PREFIX + uuid, value: JSON.stringify(ipam) },
          await this.eventOp(uuid, 'audit', 'create request from REST API', { vxlan_id: vxid, netblock: spec.netblock }),
        ],
      });
      if (result.succeeded) return record;
      if (spec.vxlanId !== null) {
        throw new Conflict(`vxlan_id ${vxid} was just taken by another network; omit it to have one allocated`, {
          reason: 'vni-taken',
        });
      }
    }
    throw new Conflict(`could not claim a free VXLAN id after ${VNI_TRIES} attempts; retry the request`, {
      reason: 'vni-race',
    });
  }

  /**
   * markCreated for several networks in one txn, planned from the view (each guarded by the modRevision the
   * view holds): true when written (or nothing to write), false when the view had no such network or one
   * changed since; the caller then marks them one by one. Without a view, always false.
   */
  async markCreatedTogether(uuids: readonly string[]): Promise<boolean> {
    if (!this.view) return false;
    const compare: Compare[] = [];
    const success: TxnOp[] = [];
    for (const uuid of uuids) {
      const kv = this.view.cachedKv(NETWORKS_PREFIX + uuid);
      if (kv === undefined) return false;
      const current = JSON.parse(kv.value) as NetworkRecord;
      if (current.state !== 'initial') continue;
      compare.push({ key: kv.key, target: 'modRevision', op: '==', value: kv.modRevision });
      success.push({ type: 'put', key: kv.key, value: JSON.stringify(transition(current, 'created', this.now())) });
      success.push(await this.eventOp(uuid, 'mutate', 'state changed to created', null));
    }
    if (success.length === 0) return true;
    return (await this.store.txn({ compare, success })).succeeded;
  }

  /** Its realisation failed in a way that will not fix itself: → error with the message (and an event). */
  async markError(uuid: string, message: string): Promise<NetworkRecord> {
    return this.update(uuid, (r) => (r.state === 'error' && r.error === message ? r : failNetwork(r, message, this.now())), {
      type: 'mutate', message: `state changed to error: ${message}`,
    });
  }

  /** The daemon reports the network deployed: initial → created. */
  async markCreated(uuid: string): Promise<NetworkRecord> {
    return this.update(uuid, (r) => transition(r, 'created', this.now()), { type: 'mutate', message: 'state changed to created' });
  }

  /**
   * DELETE /networks/{ref} on a resolved record: null if already deleted, else the record in
   * delete-wait (interfaces remain) or deleted. 403 for the floating network.
   */
  async delete(record: NetworkRecord): Promise<NetworkRecord | null> {
    const key = NETWORKS_PREFIX + record.uuid;
    for (let attempt = 0; attempt < UPDATE_TRIES; attempt++) {
      const kv = await this.store.get(key);
      if (kv === undefined) throw new NotFound(`network not found: ${quote(record.uuid)}`, { reason: 'not-found' });
      const current = JSON.parse(kv.value) as NetworkRecord;
      const attached = await readAttachments(this.store, record.uuid);
      const count = this.interfaceCount ? await this.interfaceCount(record.uuid) : attached.interfaces.length;
      const plan = planDelete(current, count);
      if (plan.action === 'none') return null;
      const to = plan.action === 'delete-wait' ? 'delete-wait' : 'deleted';
      const from = to === 'delete-wait' && current.state === 'initial' ? transition(current, 'created', this.now()) : current;
      const next = transition(from, to, this.now());
      if (next === current) return current;
      const result = await this.store.txn({
        compare: [
          { key, target: 'modRevision', op: '==', value: kv.modRevision },
          { key: ATTACHMENTS_PREFIX + record.uuid, target: 'modRevision', op: '==', value: attached.kv?.modRevision ?? 0 },
        ],
        success: [
          { type: 'put', key, value: JSON.stringify(next) },
          await this.eventOp(record.uuid, 'audit', `delete request from REST API (state ${to})`, null),
        ],
      });
      if (result.succeeded) return next;
    }
    throw new Conflict(`network ${record.uuid} is being changed concurrently; retry the request`, { reason: 'cas' });
  }

  /**
   * DELETE /networks: every non-deleted network of `namespace`. A network with interfaces is
   * `unable` unless `cleanWait`, in which case it goes to delete-wait.
   */
  async deleteAll(namespace: string, cleanWait: boolean): Promise<DeleteAllResult> {
    const out: DeleteAllResult = { deleted: [], unable: [] };
    for (const record of await this.list(namespace)) {
      if (record.namespace !== namespace) continue;
      const count = this.interfaceCount ? await this.interfaceCount(record.uuid) : (await readAttachments(this.store, record.uuid)).interfaces.length;
      if (!cleanWait && count > 0) {
        out.unable.push(record.uuid);
        continue;
      }
      if ((await this.delete(record)) !== null) out.deleted.push(record.uuid);
    }
    return out;
  }

  async setMetadata(uuid: string, key: string, value: string): Promise<Record<string, string>> {
    const record = await this.update(uuid, (r) => ({ ...r, metadata: { ...r.metadata, [key]: value } }), {
      type: 'audit',
      message: `set metadata key ${quote(key)}`,
    });
    return record.metadata;
  }

  /** 404 if the key is not set. */
  async deleteMetadata(uuid: string, key: string): Promise<Record<string, string>> {
    const record = await this.update(
      uuid,
      (r) => {
        if (!Object.hasOwn(r.metadata, key)) {
          throw new NotFound(`metadata key ${quote(key)} not found on network ${uuid}`, { reason: 'no-key' });
        }
        const metadata = { ...r.metadata };
        delete metadata[key];
        return { ...r, metadata };
      },
      { type: 'audit', message: `delete metadata key ${quote(key)}` },
    );
    return record.metadata;
  }

  /**
   * The network node's part (control/services/nat-service.ts): reserve a floating-pool address held by
   * the network, typed `floating`, and record it as the network's floating gateway, in one transaction.
   * Returns the address (the existing one if another node got there first).
   */
  async allocateFloatingGateway(uuid: string, node: string): Promise<string> {
    const key = NETWORKS_PREFIX + uuid;
    return withFloatingPool(this.store, key, async (pool, value) => {
      if (value === undefined) throw new NotFound(`network not found: ${quote(uuid)}`, { reason: 'not-found' });
      const current = JSON.parse(value) as NetworkRecord;
      if (current.floatingGateway !== null) return { result: current.floatingGateway };
      const { state, address } = allocate(pool, { type: 'gateway', holder: { kind: 'network', id: uuid }, now: this.now(), comment: 'floating gateway' });
      return {
        pool: state,
        ops: [
          { type: 'put', key, value: JSON.stringify({ ...current, floatingGateway: address }) },
          await this.eventOp(uuid, 'audit', `floating gateway ${address} allocated by network node ${node}`, { floating_gateway: address, node }),
        ],
        result: address,
      };
    });
  }

  /** Returns a deleted network's floating gateway to the pool (with the usual hold-back). False if it had none. */
  async releaseFloatingGateway(uuid: string): Promise<boolean> {
    const key = NETWORKS_PREFIX + uuid;
    return withFloatingPool(this.store, key, async (pool, value) => {
      const current = value === undefined ? undefined : (JSON.parse(value) as NetworkRecord);
      if (current === undefined || current.floatingGateway === null) return { result: false };
      return {
        pool: release(pool, current.floatingGateway, this.now()),
        ops: [
          { type: 'put', key, value: JSON.stringify({ ...current, floatingGateway: null }) },
          await this.eventOp(uuid, 'audit', `floating gateway ${current.floatingGateway} released`, null),
        ],
        result: true,
      };
    });
  }

  // ---- internals -------------------------------------------------------------------------

  private async usedVnis(): Promise<Set<number>> {
    // Only a candidate: the create txn's compare on the VNI key is what makes a claim exact, so the view as it
    // is will do (no sync): a VNI claimed since is a lost txn and another pick.
    if (this.view) return this.view.usedVnis();
    const { kvs } = await this.store.range(VNI_PREFIX);
    return new Set(kvs.map((kv) => Number(kv.key.slice(VNI_PREFIX.length))));
  }

  /**
   * Read-modify-write of one record under modRevision compare. `change` may throw (it is re-run
   * on the fresh record after a lost race); returning the same object skips the write.
   */
  private async update(
    uuid: string,
    change: (record: NetworkRecord) => NetworkRecord,
    event?: { type: string; message: string },
  ): Promise<NetworkRecord> {
    const key = NETWORKS_PREFIX + uuid;
    for (let attempt = 0; attempt < UPDATE_TRIES; attempt++) {
      const kv: KeyValue | undefined = await this.store.get(key);
      if (kv === undefined) throw new NotFound(`network not found: ${quote(uuid)}`, { reason: 'not-found' });
      const current = JSON.parse(kv.value) as NetworkRecord;
      const next = change(current);
      if (next === current) return current;
      const success: TxnOp[] = [{ type: 'put', key, value: JSON.stringify(next) }];
      if (event) success.push(await this.eventOp(uuid, event.type, event.message, null));
      const result = await this.store.txn({
        compare: [{ key, target: 'modRevision', op: '==', value: kv.modRevision }],
        success,
      });
      if (result.succeeded) return next;
    }
    throw new Conflict(`network ${uuid} is being changed concurrently; retry the request`, { reason: 'cas' });
  }

  private async eventOp(uuid: string, type: string, message: string, extra: Record<string, unknown> | null): Promise<TxnOp> {
    // The revision orders a network's events across writers; the one the view has seen is close enough and
    // costs no round trip.
    const revision = this.view?.seenRevision || (await this.store.revision());
    const now = this.now();
    this.eventSeq = (this.eventSeq + 1) % 1_000_000;
    const event: EventRecord = { timestamp: now / 1000, fqdn: this.fqdn, duration: null, message, type, extra };
    const key = `${EVENTS_PREFIX}${uuid}/${String(revision).padStart(15, '0')}-${String(now).padStart(15, '0')}-${String(this.eventSeq).padStart(6, '0')}`;
    return { type: 'put', key, value: JSON.stringify(event) };
  }
}

/** A network's IPAM from its key, or 404 naming the network when it has none. */
function ipamOf(uuid: string, kv: KeyValue | undefined): IpamState {
  if (kv === undefined) throw new NotFound(`network ${uuid} has no address management state`, { reason: 'no-ipam' });
  return JSON.parse(kv.value) as IpamState;
}
