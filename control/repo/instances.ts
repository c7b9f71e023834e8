// The store-backed repository of instances and their interfaces.
//
// Keys (values are JSON):
//   /appnet/instances/<uuid>    InstanceRecord
//   /appnet/interfaces/<uuid>   InterfaceRecord            (repo/interfaces.ts)
//   /appnet/macs/<mac>          {interface_uuid, when}     (repo/interfaces.ts)
//   /appnet/ipam/<network>      IpamState, owned by repo/networks.ts; interface addresses are
//                               reservations of type `instance`, holder {kind: 'interface', id}
//
// Contracts:
//   - create writes the instance, every interface, every MAC claim and every touched IPAM in ONE
//     txn, guarded by createRevision == 0 on the new keys and MAC claims and modRevision == read
//     on each IPAM and network record. A lost race re-reads and re-plans (CREATE_TRIES), so two
//     processes never hand out one address or MAC twice. A user-given address or MAC that is
//     taken is 409 (decided on the fresh read), a full network 507.
//   - a network must be `initial` or `created` to take an interface, else 406 `network <uuid> is
//     not ready (<state>)`. Deliberately looser than the reference (which wants `created`): here
//     networks stay `initial` until the network node reports them deployed, and an instance may
//     be defined before that; its interfaces are `initial` until the host plugs them anyway.
//   - a network must be in the instance's namespace (system instances see all networks), else 404.
//   - create and delete also rewrite each touched network's attachments key (repo/interfaces.ts)
//     under a modRevision compare; network delete compares the same key, so an attach and a
//     delete of one network are ordered: the attach wins (the delete then goes to delete-wait) or
//     the delete wins (the attach re-plans and gets 406, the network is no longer ready).
//   - MAC uniqueness is checked per candidate key, not against a read of every claim.
//   - delete removes the instance, its interfaces and MAC claims and releases the addresses into
//     hold-back, in one txn; then each touched network in delete-wait with no interfaces left is
//     finished to `deleted` (through NetworkRepository.delete, whose audit event records it).

import { randomUUID } from 'node:crypto';
import { BadRequest, Conflict, NotFound, NotReady, isApiError } from '../errors.ts';
import { KeyedTurns } from './keyed-turns.ts';
import { type InstanceRecord, MAX_INTERFACES, listInstances, newInstanceRecord, resolveInstanceRef, validateInstanceCreate } from '../instances/instance.ts';
import { type InterfaceRecord, type InterfaceSpec, deviceName, newInterfaceRecord, validateInterfaceSpec } from '../instances/interface.ts';
import { allocateMac, checkRequestedMac, parseMac } from '../instances/mac.ts';
import { type IpamState, allocate, release, reserve } from '../ipam/ipam.ts';
import { type NetworkRecord, isUuid, resolveNetworkRef } from '../networks/network.ts';
import type { Compare, KeyValue, Store, TxnOp } from '../store/store.ts';
import { type Attachments, InterfaceRepository, readAttachments } from './interfaces.ts';
import type { NetworkRepository } from './networks.ts';
import { readOrSeen, type StateView } from './state-view.ts';
import { ATTACHMENTS_PREFIX, INSTANCES_PREFIX, INTERFACES_PREFIX, IPAM_PREFIX, MACS_PREFIX, NETWORKS_PREFIX } from './keys.ts';

const CREATE_TRIES = 8;
const DELETE_TRIES = 5;

export interface InstanceRepoOptions {
  store: Store;
  networks: NetworkRepository;
  interfaces?: InterfaceRepository;
  now?: () => number;
  random?: () => number;
  newUuid?: () => string;
  /** Serve lists from this view after its sync() (see NetworkRepoOptions.view). */
  view?: StateView;
}

/** Where planInterfaces reads networks, IPAMs and attachments: the store, or the view as it is. */
interface PlanReads {
  get(key: string): Promise<KeyValue | undefined>;
  resolveName(ref: string, namespace: string): Promise<NetworkRecord>;
  /** Check random MACs against the claims before the txn (else only its compares do). */
  checkMacs: boolean;
}

export interface InstanceWithInterfaces {
  instance: InstanceRecord;
  interfaces: InterfaceRecord[];
}

export class InstanceRepository {
  readonly store: Store;
  readonly networks: NetworkRepository;
  readonly interfaces: InterfaceRepository;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly newUuid: () => string;
  private readonly view: StateView | undefined;
  private readonly turns = new KeyedTurns();

  constructor(options: InstanceRepoOptions) {
    this.store = options.store;
    this.networks = options.networks;
    this.interfaces = options.interfaces ?? new InterfaceRepository(options.store, options.view);
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.newUuid = options.newUuid ?? randomUUID;
    this.view = options.view;
  }

  // ---- reads -----------------------------------------------------------------------------

  /** Every instance record (the view's own objects when there is a view: do not change them). */
  async allRecords(): Promise<InstanceRecord[]> {
    if (this.view) return [...(await this.view.sync()).instances.values()];
    const { kvs } = await this.store.range(INSTANCES_PREFIX);
    return kvs.map((kv) => JSON.parse(kv.value) as InstanceRecord);
  }

  async resolve(ref: string, namespace: string): Promise<InstanceRecord> {
    // Names are never UUID-shaped, so a UUID is one key read, not a scan of every instance.
    if (isUuid(ref)) {
      return resolveInstanceRef(ref, namespace, await readOrSeen<InstanceRecord>(this.store, INSTANCES_PREFIX + ref, this.view, (v) => v.instances.get(ref)));
    }
    return resolveInstanceRef(ref, namespace, await this.allRecords());
  }

  async list(namespace: string): Promise<InstanceRecord[]> {
    return listInstances(await this.allRecords(), namespace);
  }

  /** GET /instances: the namespace's instances, each with its interfaces in NIC order. */
  async listWithInterfaces(namespace: string): Promise<InstanceWithInterfaces[]> {
    if (!this.view) {
      const out: InstanceWithInterfaces[] = [];
      for (const instance of await this.list(namespace)) out.push({ instance, interfaces: await this.interfacesOf(instance) });
      return out;
    }
    // One sync for the whole list: instances and interfaces then come from the same caught-up view.
    const view = await this.view.sync();
    return listInstances(view.instances.values(), namespace).map((instance) => ({ instance, interfaces: interfacesInView(view, instance) }));
  }

  /**
   * GET /instances/{ref}: the instance with its interfaces in NIC order. With a view, one sync (a round shared
   * with the other requests in flight) and then memory, where reading the store takes two round trips in a row
   * (the instance, then its interfaces).
   */
  async getWithInterfaces(ref: string, namespace: string): Promise<InstanceWithInterfaces> {
    if (!this.view) {
      const instance = await this.resolve(ref, namespace);
      return { instance, interfaces: await this.interfacesOf(instance) };
    }
    const view = await this.view.sync();
    const byUuid = isUuid(ref) ? view.instances.get(ref) : undefined;
    const instance = resolveInstanceRef(ref, namespace, isUuid(ref) ? (byUuid ? [byUuid] : []) : [...view.instances.values()]);
    return { instance, interfaces: interfacesInView(view, instance) };
  }

  /** The instance's interfaces in NIC order (missing ones skipped), read from the store. */
  async interfacesOf(instance: InstanceRecord): Promise<InterfaceRecord[]> {
    const kvs = await Promise.all(instance.interfaces.map((uuid) => this.store.get(INTERFACES_PREFIX + uuid)));
    const out = kvs.filter((kv): kv is KeyValue => kv !== undefined).map((kv) => JSON.parse(kv.value) as InterfaceRecord);
    return out.sort((a, b) => a.order - b.order);
  }

  // ---- writes ----------------------------------------------------------------------------

  /** POST /instances: 400/401/404 (validation, networks), 406 (network state), 409, 507. */
  async create(body: unknown, callerNamespace: string, namespaces?: ReadonlySet<string>): Promise<InstanceWithInterfaces> {
    const spec = validateInstanceCreate(body, { callerNamespace, namespaces });
    const uuid = this.newUuid();
    const ifaceUuids = spec.interfaces.map(() => this.newUuid());
    // Creates of this process that share a network take turns: they would only make each other's txn fail.
    const networkRefs = spec.interfaces.map((i) => i.network);
    return this.turns.run(networkRefs, async () => {
      // The view first catches up with this process's last create on these networks (it came just before).
      const wrote = Math.max(0, ...networkRefs.map((ref) => this.lastWrite.get(ref) ?? 0));
      if (this.view && wrote > 0) await this.view.planReady(wrote);
      for (let attempt = 0; attempt < CREATE_TRIES; attempt++) {
        // The first plan is made from the view, with no round trip: its txn's compares catch whatever the view
        // had not seen yet. Any refusal (404, 406, 409, 507) and every later attempt are decided on the store.
        const fromView = attempt === 0 && this.view !== undefined && spec.interfaces.every((i) => i.macaddr === undefined);
        const now = this.now();
        const compare: Compare[] = [{ key: INSTANCES_PREFIX + uuid, target: 'createRevision', op: '==', value: 0 }];
        const success: TxnOp[] = [];
        const ids = { uuids: ifaceUuids, instance: uuid, namespace: spec.namespace, firstOrder: 0, now };
        let records: InterfaceRecord[];
        try {
          records = await this.planInterfaces(spec.interfaces, ids, compare, success, fromView ? this.viewReads() : this.storeReads());
        } catch (err) {
          if (fromView && isApiError(err)) continue;
          throw err;
        }
        const instance = newInstanceRecord(spec, { uuid, interfaces: ifaceUuids, now });
        success.push({ type: 'put', key: INSTANCES_PREFIX + uuid, value: JSON.stringify(instance) });
        const result = await this.store.txn({ compare, success });
        if (result.succeeded) {
          this.#noteWrite(networkRefs, result.revision);
          return { instance, interfaces: records };
        }
      }
      throw new Conflict(`could not create instance: its networks kept changing concurrently (${CREATE_TRIES} attempts); retry`, {
        reason: 'cas',
      });
    });
  }

  /** Per network reference, the revision of this process's last create on it (bounded: old entries go). */
  private readonly lastWrite = new Map<string, number>();
  #noteWrite(refs: string[], revision: number): void {
    for (const ref of refs) {
      this.lastWrite.delete(ref);
      this.lastWrite.set(ref, revision);
    }
    for (const ref of this.lastWrite.keys()) {
      if (this.lastWrite.size <= 4096) break;
      this.lastWrite.delete(ref);
    }
  }

  /** Plan reads from the store: a fresh read of each key (every refusal is decided on these). */
  private storeReads(): PlanReads {
    return {
      get: (key) => this.store.get(key),
      resolveName: (ref, namespace) => this.networks.resolve(ref, namespace),
      checkMacs: true,
    };
  }

  /** Plan reads from the view as it is (no sync): possibly behind; the txn's compares are the guard. */
  private viewReads(): PlanReads {
    const view = this.view as StateView;
    return {
      get: async (key) => view.cachedKv(key),
      resolveName: async (ref, namespace) => resolveNetworkRef(ref, namespace, [...view.networks.values()]),
      checkMacs: false,
    };
  }

  /**
   * DELETE /instances/{ref} on a resolved record: removes it with its interfaces, MAC claims and
   * addresses (into hold-back), then finishes delete-wait networks left without interfaces.
   * Returns the interfaces as they were, in state `deleted`.
   */
  async delete(resolved: InstanceRecord): Promise<InstanceWithInterfaces> {
    const key = INSTANCES_PREFIX + resolved.uuid;
    for (let attempt = 0; attempt < DELETE_TRIES; attempt++) {
      const now = this.now();
      const kv = await this.store.get(key);
      if (kv === undefined) return { instance: resolved, interfaces: [] };
      const instance = JSON.parse(kv.value) as InstanceRecord;
      const compare: Compare[] = [{ key, target: 'modRevision', op: '==', value: kv.modRevision }];
      const success: TxnOp[] = [{ type: 'delete', key }];
      const removed = await this.planRemoval(instance.interfaces, now, compare, success);
      const result = await this.store.txn({ compare, success });
      if (!result.succeeded) continue;
      await this.finishDeleteWait(new Set(removed.map((i) => i.network_uuid)));
      return { instance, interfaces: removed.sort((a, b) => a.order - b.order) };
    }
    throw new Conflict(`instance ${resolved.uuid} is being changed concurrently; retry the request`, { reason: 'cas' });
  }

  /**
   * POST /instances/{ref}/interfaces (hot-plug): one more interface on a live instance, the next NIC
   * index, under the same rules as at create (404, 406, 409, 507); 400 past MAX_INTERFACES.
   */
  async addInterface(resolved: InstanceRecord, body: unknown): Promise<InterfaceRecord> {
    const want = validateInterfaceSpec(body, resolved.interfaces.length);
    const ifaceUuid = this.newUuid();
    const key = INSTANCES_PREFIX + resolved.uuid;
    for (let attempt = 0; attempt < CREATE_TRIES; attempt++) {
      const kv = await this.store.get(key);
      if (kv === undefined) throw new NotFound(`instance ${resolved.uuid} was deleted`, { reason: 'instance' });
      const instance = JSON.parse(kv.value) as InstanceRecord;
      if (instance.interfaces.length >= MAX_INTERFACES) {
        throw new BadRequest(`instance ${instance.name} already has ${MAX_INTERFACES} interfaces, the most allowed`, { reason: 'interfaces' });
      }
      const existing = await this.interfacesOf(instance);
      const orders = existing.map((i) => i.order);
      if (want.device !== undefined && existing.some((i) => deviceName(i) === want.device)) {
        throw new Conflict(`instance ${instance.name} already has a device named ${want.device}`, { reason: 'device' });
      }
      const now = this.now();
      const compare: Compare[] = [{ key, target: 'modRevision', op: '==', value: kv.modRevision }];
      const success: TxnOp[] = [];
      const [record] = await this.planInterfaces([want], { uuids: [ifaceUuid], instance: instance.uuid, namespace: instance.namespace, firstOrder: Math.max(-1, ...orders) + 1, now }, compare, success);
      success.push({ type: 'put', key, value: JSON.stringify({ ...instance, interfaces: [...instance.interfaces, ifaceUuid] }) });
      if ((await this.store.txn({ compare, success })).succeeded) return record as InterfaceRecord;
    }
    throw new Conflict(`instance ${resolved.uuid} or its network is being changed concurrently; retry the request`, { reason: 'cas' });
  }

  /** DELETE /interfaces/{uuid} (hot-unplug): the interface goes, its address and MAC are freed. */
  async removeInterface(iface: InterfaceRecord): Promise<InterfaceRecord> {
    const key = INSTANCES_PREFIX + iface.instance_uuid;
    for (let attempt = 0; attempt < DELETE_TRIES; attempt++) {
      const kv = await this.store.get(key);
      if (kv === undefined) throw new NotFound(`interface ${iface.uuid} does not exist`, { reason: 'interface' });
      const instance = JSON.parse(kv.value) as InstanceRecord;
      const compare: Compare[] = [{ key, target: 'modRevision', op: '==', value: kv.modRevision }];
      const success: TxnOp[] = [{ type: 'put', key, value: JSON.stringify({ ...instance, interfaces: instance.interfaces.filter((u) => u !== iface.uuid) }) }];
      const [removed] = await this.planRemoval([iface.uuid], this.now(), compare, success);
      if (removed === undefined) throw new NotFound(`interface ${iface.uuid} does not exist`, { reason: 'interface' });
      if (!(await this.store.txn({ compare, success })).succeeded) continue;
      await this.finishDeleteWait([removed.network_uuid]);
      return removed;
    }
    throw new Conflict(`interface ${iface.uuid} is being changed concurrently; retry the request`, { reason: 'cas' });
  }

  /**
   * Plans new interfaces of instance `ids.instance` (create and hot-plug): resolves their networks
   * (404, 406 not ready), picks MACs and addresses (409 taken, 507 full) against a fresh read, and adds
   * to `compare`/`success` the guards and writes of the interfaces, MAC claims, IPAMs and attachments.
   */
  private async planInterfaces(
    specs: InterfaceSpec[],
    ids: { uuids: string[]; instance: string; namespace: string; firstOrder: number; now: number },
    compare: Compare[],
    success: TxnOp[],
    reads: PlanReads = this.storeReads(),
  ): Promise<InterfaceRecord[]> {
    const now = ids.now;

    // Resolve each network once (404 / 400 ambiguous), with the revisions the txn guards. The networks are
    // read side by side: on etcd each read is a round trip, and the longer this phase, the likelier a
    // concurrent create changes an IPAM key in between and the txn has to start again.
    const networkByRef = new Map<string, NetworkRecord>();
    const ipams = new Map<string, { kv: KeyValue; state: IpamState }>();
    const attachments = new Map<string, Attachments>();
    const firstIndex = new Map<string, number>();
    for (const [index, want] of specs.entries()) if (!firstIndex.has(want.network)) firstIndex.set(want.network, index);
    const found = await Promise.all([...firstIndex].map(async ([ref, index]) => {
      // The record is read from the store (not the view) for the modRevision the txn compares: by UUID
      // that one read also resolves the reference, by name it follows the resolution.
      let kv: KeyValue | undefined;
      let network: NetworkRecord;
      if (isUuid(ref)) {
        kv = await reads.get(NETWORKS_PREFIX + ref);
        network = resolveNetworkRef(ref, ids.namespace, kv ? [JSON.parse(kv.value) as NetworkRecord] : []);
      } else {
        const resolved = await reads.resolveName(ref, ids.namespace);
        kv = await reads.get(NETWORKS_PREFIX + resolved.uuid);
        network = kv ? (JSON.parse(kv.value) as NetworkRecord) : resolved;
      }
      if (network.state !== 'initial' && network.state !== 'created') {
        throw new NotReady(`network ${network.uuid} is not ready (${network.state}); interfaces.${index} cannot attach to it`, {
          reason: 'not-ready',
        });
      }
      const [ipamKv, att] = await Promise.all([reads.get(IPAM_PREFIX + network.uuid), readAttachments(reads, network.uuid)]);
      if (ipamKv === undefined) {
        await this.networks.getIpam(network.uuid); // throws 404 naming it
        throw new NotFound(`network ${network.uuid} has no address plan yet`, { reason: 'not-found' }); // the view is behind
      }
      return { ref, kv, network, ipamKv: ipamKv as KeyValue, att };
    }));
    for (const { ref, kv, network, ipamKv, att } of found) {
      networkByRef.set(ref, network);
      if (ipams.has(network.uuid)) continue;
      compare.push({ key: NETWORKS_PREFIX + network.uuid, target: 'modRevision', op: '==', value: kv?.modRevision ?? 0 });
      ipams.set(network.uuid, { kv: ipamKv, state: JSON.parse(ipamKv.value) as IpamState });
      attachments.set(network.uuid, att);
    }

    // MACs and addresses, planned against what was just read.
    const used = new Set<string>(); // claimed MACs this attempt has seen, and its own picks
    const records: InterfaceRecord[] = [];
    for (const [index, want] of specs.entries()) {
      const ifaceUuid = ids.uuids[index] as string;
      const order = ids.firstOrder + index;
      const field = `interfaces.${index}.macaddr`;
      let macaddr: string;
      if (want.macaddr !== undefined) {
        const mac = parseMac(want.macaddr, field);
        if (await this.interfaces.macTaken(mac)) used.add(mac);
        macaddr = checkRequestedMac(want.macaddr, used, field);
      } else {
        // A random MAC is checked against the claims unless the plan comes from the view: then a taken one (one
        // chance in millions) only loses the txn, whose next attempt checks.
        macaddr = allocateMac(used, this.random);
        while (reads.checkMacs && (await this.interfaces.macTaken(macaddr))) {
          used.add(macaddr);
          macaddr = allocateMac(used, this.random);
        }
      }
      used.add(macaddr);
      const network = networkByRef.get(want.network) as NetworkRecord;
      const ipam = ipams.get(network.uuid) as { kv: KeyValue; state: IpamState };
      let ipv4: string | null = null;
      const reservation = { type: 'instance' as const, holder: { kind: 'interface', id: ifaceUuid }, now, comment: `instance ${ids.instance}` };
      if (want.address === undefined) {
        const got = allocate(ipam.state, { ...reservation, random: this.random });
        ipam.state = got.state;
        ipv4 = got.address;
      } else if (want.address !== null) {
        ipam.state = reserve(ipam.state, want.address, reservation);
        ipv4 = want.address;
      }
      records.push(
        newInterfaceRecord({
          uuid: ifaceUuid, network_uuid: network.uuid, instance_uuid: ids.instance, namespace: ids.namespace, macaddr, ipv4, order, now,
          ...(want.device !== undefined ? { device: want.device } : {}),
        }),
      );
      compare.push({ key: INTERFACES_PREFIX + ifaceUuid, target: 'createRevision', op: '==', value: 0 });
      compare.push({ key: MACS_PREFIX + macaddr, target: 'createRevision', op: '==', value: 0 });
      success.push({ type: 'put', key: INTERFACES_PREFIX + ifaceUuid, value: JSON.stringify(records[index]) });
      success.push({ type: 'put', key: MACS_PREFIX + macaddr, value: JSON.stringify({ interface_uuid: ifaceUuid, when: now }) });
      attachments.get(network.uuid)!.interfaces.push(ifaceUuid);
    }
    for (const [networkUuid, ipam] of ipams) {
      compare.push({ key: IPAM_PREFIX + networkUuid, target: 'modRevision', op: '==', value: ipam.kv.modRevision });
      success.push({ type: 'put', key: IPAM_PREFIX + networkUuid, value: JSON.stringify(ipam.state) });
    }
    for (const [networkUuid, att] of attachments) this.putAttachments(networkUuid, att, compare, success);
    return records;
  }


  /**
   * Plans the removal of interfaces (instance delete and hot-unplug): each record and its MAC claim go,
   * its address is released into hold-back, its network's attachments lose it; all guarded by the
   * modRevisions read. Returns the interfaces as they were, in state `deleted`.
   */
  private async planRemoval(ifaceUuids: readonly string[], now: number, compare: Compare[], success: TxnOp[]): Promise<InterfaceRecord[]> {
    const removed: InterfaceRecord[] = [];
    const ipams = new Map<string, { kv: KeyValue; state: IpamState }>();
    const attachments = new Map<string, Attachments>();
    for (const ifaceUuid of ifaceUuids) {
      const ikv = await this.store.get(INTERFACES_PREFIX + ifaceUuid);
      if (ikv === undefined) continue;
      const iface = JSON.parse(ikv.value) as InterfaceRecord;
      let att = attachments.get(iface.network_uuid);
      if (att === undefined) attachments.set(iface.network_uuid, (att = await readAttachments(this.store, iface.network_uuid)));
      att.interfaces = att.interfaces.filter((u) => u !== iface.uuid);
      removed.push({ ...iface, state: 'deleted', stateUpdatedAt: now });
      compare.push({ key: ikv.key, target: 'modRevision', op: '==', value: ikv.modRevision });
      success.push({ type: 'delete', key: ikv.key });
      const macKv = await this.store.get(MACS_PREFIX + iface.macaddr);
      if (macKv !== undefined && (JSON.parse(macKv.value) as { interface_uuid: string }).interface_uuid === iface.uuid) {
        success.push({ type: 'delete', key: macKv.key });
      }
      if (iface.ipv4 === null) continue;
      let ipam = ipams.get(iface.network_uuid);
      if (ipam === undefined) {
        const pkv = await this.store.get(IPAM_PREFIX + iface.network_uuid);
        if (pkv === undefined) continue;
        ipam = { kv: pkv, state: JSON.parse(pkv.value) as IpamState };
        ipams.set(iface.network_uuid, ipam);
      }
      const holder = ipam.state.reservations[iface.ipv4]?.holder;
      if (holder?.kind === 'interface' && holder.id === iface.uuid) ipam.state = release(ipam.state, iface.ipv4, now);
    }

    for (const [networkUuid, ipam] of ipams) {
      compare.push({ key: IPAM_PREFIX + networkUuid, target: 'modRevision', op: '==', value: ipam.kv.modRevision });
      success.push({ type: 'put', key: IPAM_PREFIX + networkUuid, value: JSON.stringify(ipam.state) });
    }
    for (const [networkUuid, att] of attachments) this.putAttachments(networkUuid, att, compare, success);
    return removed;
  }

  /** Adds the compare-and-swap of a network's attachments key (read as `att.kv`) and its new list. */
  private putAttachments(networkUuid: string, att: Attachments, compare: Compare[], success: TxnOp[]): void {
    const key = ATTACHMENTS_PREFIX + networkUuid;
    compare.push({ key, target: 'modRevision', op: '==', value: att.kv?.modRevision ?? 0 });
    success.push({ type: 'put', key, value: JSON.stringify({ interfaces: att.interfaces }) });
  }

  /** Networks in delete-wait with no interfaces left go to `deleted`. */
  async finishDeleteWait(networkUuids: Iterable<string>): Promise<void> {
    for (const uuid of networkUuids) {
      const kv = await this.store.get(NETWORKS_PREFIX + uuid);
      if (kv === undefined) continue;
      const network = JSON.parse(kv.value) as NetworkRecord;
      if (network.state !== 'delete-wait') continue;
      if ((await this.interfaces.count(uuid)) > 0) continue;
      await this.networks.delete(network);
    }
  }
}

/** An instance's interfaces as a caught-up view holds them, in NIC order (missing ones skipped). */
function interfacesInView(view: StateView, instance: InstanceRecord): InterfaceRecord[] {
  return instance.interfaces
    .map((uuid) => view.interfaces.get(uuid))
    .filter((i): i is InterfaceRecord => i !== undefined)
    .sort((a, b) => a.order - b.order);
}
