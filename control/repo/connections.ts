// The store-backed repository of application connections (control/connections/ has the pure
// cores: model, validate, status, link-pool, env).
//
// Keys (values are JSON):
//   /appnet/connections/<id>                               ConnectionRecord
//   /appnet/connection-claims/outbound/<source uuid>/<outbound>   {connection_id}
//   /appnet/connection-claims/link/<pair index:8>          {connection_id}: a /31 of the link pool
//   /appnet/vni/<vni>                                      {connection_id, when}: shares the networks'
//                                                          VNI space, so a link's VNI never equals a network's
//   /appnet/connection-events/<id>/<rev:15>-<ms:15>-<seq:6>  ConnectionEvent, one per status change
//   /appnet/config/link-pool                               {netblock}: the pool every process must agree on
//
// Contracts:
//   - add writes the record, its claims and its events in ONE txn, guarded by createRevision == 0
//     on every new key and modRevision == read on both instances. The outbound claim makes "one
//     connection per outbound" hold across processes; a lost race re-reads and re-validates, so the
//     loser gets the same 409 as a sequential second add. An instance deleted meanwhile changes its
//     modRevision, so the add re-reads it and answers 404.
//   - add is accepted at once (202): the record is WAITING, or ERROR with its reason when no link
//     address or VNI is free. The data plane then reports through markEstablished / markWaiting /
//     markError, and finishes a removal with finishTermination, which deletes the record and frees
//     its claims in one txn. Until then a TERMINATED connection keeps its outbound and addresses,
//     so nothing is reused while a link may still carry traffic.
//   - every status change is a txn guarded by modRevision == read that writes the record and its
//     event together; the hooks return null for a connection that no longer exists, because the
//     data plane's reports race removals.
//   - deleting an instance terminates its connections before and again after the instance's own
//     delete: a connection added between the two passes is caught by the second.

import { randomUUID } from 'node:crypto';
import { Conflict, InsufficientResources, NotFound, isApiError, quote } from '../errors.ts';
import type { InstanceRecord } from '../instances/instance.ts';
import type { Cidr } from '../net/ipv4-cidr.ts';
import { SYSTEM_NAMESPACE } from '../networks/network.ts';
import { allocateVni } from '../networks/vni-allocator.ts';
import type { Compare, KeyValue, Store, TxnOp } from '../store/store.ts';
import { type EnvEntry, instanceEnv } from '../connections/env.ts';
import { DEFAULT_LINK_POOL, allocateLinkPair, exhaustedReason, pairIndexOf, parseLinkPool } from '../connections/link-pool.ts';
import {
  CONNECTION_RECORD_VERSION,
  type ConnectionEvent,
  type ConnectionRecord,
  connectionVisibleTo,
  describeConnection,
} from '../connections/model.ts';
import { type StatusInput, applyStatus, statusEvent } from '../connections/status.ts';
import { checkAdd, checkInstanceDelete, checkRemove, unknownInstance, validateConnectionRequest } from '../connections/validate.ts';
import type { InstanceRepository, InstanceWithInterfaces } from './instances.ts';
import { CONNECTIONS_PREFIX, CONNECTION_EVENTS_PREFIX, INSTANCES_PREFIX, LINK_CLAIMS_PREFIX, OUTBOUND_CLAIMS_PREFIX, VNI_PREFIX } from './keys.ts';

export const LINK_POOL_KEY = '/appnet/config/link-pool';
const TRIES = 8;

export interface ConnectionRepoOptions {
  store: Store;
  instances: InstanceRepository;
  /** The link address pool; every process sharing the store must be given the same one. */
  linkPool?: Cidr | string;
  now?: () => number;
  random?: () => number;
  newUuid?: () => string;
}

/** One connection by id as `namespace` sees it; 404 when absent or not visible (no instance lookups). */
export async function getConnection(store: Store, id: string, namespace: string): Promise<ConnectionRecord> {
  const kv = await store.get(CONNECTIONS_PREFIX + id);
  const record = kv === undefined ? undefined : (JSON.parse(kv.value) as ConnectionRecord);
  if (record === undefined || !connectionVisibleTo(record, namespace, SYSTEM_NAMESPACE)) {
    throw new NotFound(`connection not found: ${quote(id)}`, { reason: 'not-found' });
  }
  return record;
}

export interface InboundRow {
  instance_id: string;
  instance_name: string;
  inbound_name: string;
  port: number;
  protocol: string;
}

export interface OutboundRow {
  instance_id: string;
  instance_name: string;
  outbound_name: string;
  required: boolean;
}

const claimKeyOf = (sourceUuid: string, outbound: string) => `${OUTBOUND_CLAIMS_PREFIX}${sourceUuid}/${outbound}`;
const linkKeyOf = (index: number) => LINK_CLAIMS_PREFIX + String(index).padStart(8, '0');

export class ConnectionRepository {
  readonly store: Store;
  readonly instances: InstanceRepository;
  readonly linkPool: Cidr;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly newUuid: () => string;
  private eventSeq = 0;

  constructor(options: ConnectionRepoOptions) {
    this.store = options.store;
    this.instances = options.instances;
    const pool = options.linkPool ?? DEFAULT_LINK_POOL;
    this.linkPool = typeof pool === 'string' ? parseLinkPool(pool) : pool;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.newUuid = options.newUuid ?? randomUUID;
  }

  /** Records the link pool once; throws if the store holds another (its claims would be stranded). */
  async init(): Promise<void> {
    const result = await this.store.txn({
      compare: [{ key: LINK_POOL_KEY, target: 'createRevision', op: '==', value: 0 }],
      success: [{ type: 'put', key: LINK_POOL_KEY, value: JSON.stringify({ netblock: this.linkPool.text }) }],
      failure: [{ type: 'get', key: LINK_POOL_KEY }],
    });
    if (result.succeeded) return;
    const got = result.results[0];
    const stored = got?.type === 'get' ? got.kvs[0] : undefined;
    const netblock = stored ? (JSON.parse(stored.value) as { netblock: string }).netblock : undefined;
    if (netblock !== this.linkPool.text) {
      throw new Error(
        `the store's link pool is ${netblock} but this process was configured with ${this.linkPool.text}; ` +
          'configure the same pool on every process (changing it needs a migration of the connections)',
      );
    }
  }

  // ---- reads -----------------------------------------------------------------------------

  async allRecords(): Promise<ConnectionRecord[]> {
    const { kvs } = await this.store.range(CONNECTIONS_PREFIX);
    return kvs.map((kv) => JSON.parse(kv.value) as ConnectionRecord);
  }

  /**
   * The caller's connections (either endpoint in its namespace; system: all) in the order they
   * were added: by the store revision that created them, which two adds in one millisecond
   * cannot share.
   */
  async list(namespace: string): Promise<ConnectionRecord[]> {
    const { kvs } = await this.store.range(CONNECTIONS_PREFIX);
    return kvs
      .sort((a, b) => a.createRevision - b.createRevision)
      .map((kv) => JSON.parse(kv.value) as ConnectionRecord)
      .filter((c) => connectionVisibleTo(c, namespace, SYSTEM_NAMESPACE));
  }

  /** One connection by id; 404 when absent or not visible. */
  async get(id: string, namespace: string): Promise<ConnectionRecord> {
    return getConnection(this.store, id, namespace);
  }

  /** The connection named by the reference's four fields; 404 naming what does not exist. */
  async find(body: unknown, namespace: string): Promise<ConnectionRecord> {
    const request = validateConnectionRequest(body);
    const source = await this.resolveInstance('source_instance_id', request.source_instance_id, namespace);
    const target = await this.resolveInstance('target_instance_id', request.target_instance_id, namespace);
    const record = (await this.allRecords()).find(
      (c) =>
        c.source_instance_id === source.uuid &&
        c.outbound_name === request.outbound_name &&
        c.target_instance_id === target.uuid &&
        c.inbound_name === request.inbound_name,
    );
    if (record === undefined) {
      const what = describeConnection({
        source_instance_name: source.name, outbound_name: request.outbound_name, target_instance_name: target.name, inbound_name: request.inbound_name,
      });
      throw new NotFound(`connection does not exist: ${what}`, { reason: 'not-found' });
    }
    return record;
  }

  /** Status events of a connection, oldest first; they outlive the record. */
  async events(id: string, namespace: string): Promise<ConnectionEvent[]> {
    const { kvs } = await this.store.range(`${CONNECTION_EVENTS_PREFIX}${id}/`);
    const events = kvs.map((kv) => JSON.parse(kv.value) as ConnectionEvent).filter((e) => connectionVisibleTo(e, namespace, SYSTEM_NAMESPACE));
    if (events.length === 0) await this.get(id, namespace); // 404 unless it exists without events
    return events;
  }

  /** Every inbound of the caller's instances: an inbound takes any number of connections. */
  async availableInbounds(namespace: string): Promise<InboundRow[]> {
    return (await this.instances.list(namespace)).flatMap((i) =>
      (i.inbounds ?? []).map((b) => ({ instance_id: i.uuid, instance_name: i.name, inbound_name: b.name, port: b.port, protocol: b.protocol })),
    );
  }

  /** The outbounds of the caller's instances that no connection holds (any status). */
  async availableOutbounds(namespace: string): Promise<OutboundRow[]> {
    const held = new Set((await this.allRecords()).map((c) => claimKeyOf(c.source_instance_id, c.outbound_name)));
    return (await this.instances.list(namespace)).flatMap((i) =>
      (i.outbounds ?? [])
        .filter((o) => !held.has(claimKeyOf(i.uuid, o.name)))
        .map((o) => ({ instance_id: i.uuid, instance_name: i.name, outbound_name: o.name, required: o.required })),
    );
  }

  /** `appnet instance env`: the instance's APPNET_OUTBOUND_* variables and what they resolve to. */
  async env(ref: string, namespace: string): Promise<EnvEntry[]> {
    const instance = await this.instances.resolve(ref, namespace);
    const mine = (await this.allRecords()).filter((c) => c.source_instance_id === instance.uuid);
    return instanceEnv(instance, mine);
  }

  // ---- writes ----------------------------------------------------------------------------

  /** POST /connections: 400/404/409 from validate.ts, else the new record (WAITING, or ERROR). */
  async add(body: unknown, namespace: string): Promise<ConnectionRecord> {
    const request = validateConnectionRequest(body);
    const source = await this.resolveInstance('source_instance_id', request.source_instance_id, namespace);
    const target = await this.resolveInstance('target_instance_id', request.target_instance_id, namespace);
    for (let attempt = 0; attempt < TRIES; attempt++) {
      const sourceKv = await this.store.get(INSTANCES_PREFIX + source.uuid);
      if (sourceKv === undefined) throw unknownInstance('source_instance_id', request.source_instance_id);
      const targetKv = await this.store.get(INSTANCES_PREFIX + target.uuid);
      if (targetKv === undefined) throw unknownInstance('target_instance_id', request.target_instance_id);
      const claimKey = claimKeyOf(source.uuid, request.outbound_name);
      const claim = await this.store.get(claimKey);
      const holder = claim === undefined ? undefined : await this.read((JSON.parse(claim.value) as { connection_id: string }).connection_id);
      const src = JSON.parse(sourceKv.value) as InstanceRecord;
      const tgt = JSON.parse(targetKv.value) as InstanceRecord;
      const { outbound, inbound } = checkAdd({ request, source: src, target: tgt, holder });

      const now = this.now();
      const id = this.newUuid();
      const pair = allocateLinkPair(this.linkPool, await this.usedPairs());
      const vni = await this.freeVni();
      let record: ConnectionRecord = {
        connection_id: id,
        namespace: src.namespace,
        target_namespace: tgt.namespace,
        source_instance_id: src.uuid,
        source_instance_name: src.name,
        outbound_name: outbound.name,
        outbound_required: outbound.required,
        target_instance_id: tgt.uuid,
        target_instance_name: tgt.name,
        inbound_name: inbound.name,
        inbound_port: inbound.port,
        inbound_protocol: inbound.protocol,
        status: 'WAITING',
        reason: null,
        link: pair === null ? null : { outbound_address: pair.outbound_address, inbound_address: pair.inbound_address, prefix_len: pair.prefix_len },
        vni,
        created_at: now,
        status_updated_at: now,
        version: CONNECTION_RECORD_VERSION,
      };
      const events = [statusEvent(record, null, 'WAITING', null, now)];
      const failure = pair === null ? exhaustedReason(this.linkPool) : vni === null ? 'no free VNI for the link: every VXLAN id is in use' : null;
      if (failure !== null) {
        const outcome = applyStatus(record, { type: 'setup-failed', reason: failure }, now);
        if (outcome.kind === 'changed') {
          record = outcome.record;
          events.push(outcome.event);
        }
      }
      const key = CONNECTIONS_PREFIX + id;
      const compare: Compare[] = [
        { key: INSTANCES_PREFIX + src.uuid, target: 'modRevision', op: '==', value: sourceKv.modRevision },
        { key: INSTANCES_PREFIX + tgt.uuid, target: 'modRevision', op: '==', value: targetKv.modRevision },
        { key: claimKey, target: 'createRevision', op: '==', value: 0 },
        { key, target: 'createRevision', op: '==', value: 0 },
      ];
      const owner = JSON.stringify({ connection_id: id });
      const success: TxnOp[] = [
        { type: 'put', key, value: JSON.stringify(record) },
        { type: 'put', key: claimKey, value: owner },
      ];
      if (pair !== null) {
        compare.push({ key: linkKeyOf(pair.index), target: 'createRevision', op: '==', value: 0 });
        success.push({ type: 'put', key: linkKeyOf(pair.index), value: owner });
      }
      if (vni !== null) {
        compare.push({ key: VNI_PREFIX + vni, target: 'createRevision', op: '==', value: 0 });
        success.push({ type: 'put', key: VNI_PREFIX + vni, value: JSON.stringify({ connection_id: id, when: now }) });
      }
      for (const event of events) success.push(await this.eventOp(event));
      if ((await this.store.txn({ compare, success })).succeeded) return record;
    }
    throw new Conflict(`could not add the connection: its instances or claims kept changing concurrently (${TRIES} attempts); retry`, {
      reason: 'cas',
    });
  }

  /**
   * Removal of a resolved connection: 403 for a required outbound without force, else the record
   * in TERMINATED (at once if it already was). The data plane then calls finishTermination.
   */
  async remove(record: ConnectionRecord, force: boolean, reason = 'removed by request'): Promise<ConnectionRecord> {
    checkRemove(record, force);
    const after = await this.apply(record.connection_id, { type: 'remove', reason });
    if (after === null) throw new NotFound(`connection not found: ${quote(record.connection_id)} (its removal has finished)`, { reason: 'not-found' });
    return after;
  }

  /** The data plane reports the link up: WAITING → ESTABLISHED. null if the connection is gone. */
  markEstablished(id: string): Promise<ConnectionRecord | null> {
    return this.apply(id, { type: 'link-up' });
  }

  /** An endpoint went away (host, daemon or instance): ESTABLISHED → WAITING with the reason. */
  markWaiting(id: string, reason: string): Promise<ConnectionRecord | null> {
    return this.apply(id, { type: 'link-down', reason });
  }

  /** The connection cannot be set up: → ERROR with the reason (final short of removal). */
  markError(id: string, reason: string): Promise<ConnectionRecord | null> {
    return this.apply(id, { type: 'setup-failed', reason });
  }

  /** The data plane has torn the link down: the TERMINATED record and its claims are deleted. */
  async finishTermination(id: string): Promise<void> {
    await this.apply(id, { type: 'torn-down' });
  }

  /**
   * DELETE /instances/{ref}: 403 when other instances are connected to its inbounds and `force`
   * is not given; else every connection of the instance is terminated and the instance deleted.
   */
  async deleteInstance(instance: InstanceRecord, force: boolean): Promise<InstanceWithInterfaces> {
    await this.terminateConnectionsOf(instance, force);
    const deleted = await this.instances.delete(instance);
    await this.terminateConnectionsOf(instance, true);
    return deleted;
  }

  // ---- internals -------------------------------------------------------------------------

  private async terminateConnectionsOf(instance: InstanceRecord, force: boolean): Promise<void> {
    const mine = (await this.list(SYSTEM_NAMESPACE)).filter((c) => c.source_instance_id === instance.uuid || c.target_instance_id === instance.uuid);
    checkInstanceDelete(instance, mine, force);
    for (const c of mine) {
      if (c.status !== 'TERMINATED') await this.apply(c.connection_id, { type: 'remove', reason: `instance ${instance.name} deleted` });
    }
  }

  private async read(id: string): Promise<ConnectionRecord | undefined> {
    const kv = await this.store.get(CONNECTIONS_PREFIX + id);
    return kv === undefined ? undefined : (JSON.parse(kv.value) as ConnectionRecord);
  }

  private async resolveInstance(field: 'source_instance_id' | 'target_instance_id', ref: string, namespace: string): Promise<InstanceRecord> {
    try {
      return await this.instances.resolve(ref, namespace);
    } catch (err) {
      if (isApiError(err) && err.status === 404) throw unknownInstance(field, ref);
      throw err;
    }
  }

  private async usedPairs(): Promise<Set<number>> {
    const { kvs } = await this.store.range(LINK_CLAIMS_PREFIX);
    return new Set(kvs.map((kv) => Number(kv.key.slice(LINK_CLAIMS_PREFIX.length))));
  }

  private async freeVni(): Promise<number | null> {
    const { kvs } = await this.store.range(VNI_PREFIX);
    try {
      return allocateVni(new Set(kvs.map((kv) => Number(kv.key.slice(VNI_PREFIX.length)))), { random: this.random });
    } catch (err) {
      if (err instanceof InsufficientResources) return null;
      throw err;
    }
  }

  /** One status input under compare-and-swap; null when the record does not exist. */
  private async apply(id: string, input: StatusInput): Promise<ConnectionRecord | null> {
    const key = CONNECTIONS_PREFIX + id;
    for (let attempt = 0; attempt < TRIES; attempt++) {
      const kv = await this.store.get(key);
      if (kv === undefined) return null;
      const current = JSON.parse(kv.value) as ConnectionRecord;
      const outcome = applyStatus(current, input, this.now());
      if (outcome.kind === 'unchanged') return current;
      const compare: Compare[] = [{ key, target: 'modRevision', op: '==', value: kv.modRevision }];
      let success: TxnOp[];
      if (outcome.kind === 'deleted') {
        success = [{ type: 'delete', key }, ...(await this.releaseClaims(current)), await this.eventOp(outcome.event)];
      } else {
        success = [{ type: 'put', key, value: JSON.stringify(outcome.record) }];
        if (outcome.kind === 'changed') success.push(await this.eventOp(outcome.event));
      }
      if ((await this.store.txn({ compare, success })).succeeded) return outcome.kind === 'deleted' ? null : outcome.record;
    }
    throw new Conflict(`connection ${id} is being changed concurrently; retry`, { reason: 'cas' });
  }

  /** Deletes of the claims that name this connection (a claim never belongs to another, but check). */
  private async releaseClaims(record: ConnectionRecord): Promise<TxnOp[]> {
    const keys = [claimKeyOf(record.source_instance_id, record.outbound_name)];
    if (record.link !== null) {
      const index = pairIndexOf(this.linkPool, record.link.outbound_address);
      if (index >= 0) keys.push(linkKeyOf(index));
    }
    if (record.vni !== null) keys.push(VNI_PREFIX + record.vni);
    const ops: TxnOp[] = [];
    for (const key of keys) {
      const kv: KeyValue | undefined = await this.store.get(key);
      if (kv !== undefined && (JSON.parse(kv.value) as { connection_id?: string }).connection_id === record.connection_id) {
        ops.push({ type: 'delete', key });
      }
    }
    return ops;
  }

  private async eventOp(event: ConnectionEvent): Promise<TxnOp> {
    const revision = await this.store.revision();
    this.eventSeq = (this.eventSeq + 1) % 1_000_000;
    const ms = Math.round(event.timestamp * 1000);
    const key =
      `${CONNECTION_EVENTS_PREFIX}${event.connection_id}/${String(revision).padStart(15, '0')}-` +
      `${String(ms).padStart(15, '0')}-${String(this.eventSeq).padStart(6, '0')}`;
    return { type: 'put', key, value: JSON.stringify(event) };
  }
}

