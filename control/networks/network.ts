// The network record, its API view, validation of POST /networks, and lookup by reference.
//
// Pure: the store layer supplies what exists (records, namespaces, the floating pool, VNIs in
// use) and persists what comes back. Creation is two steps so that the VNI can be made durable
// by its own compare-and-swap between them:
//   spec   = validateNetworkCreate(body, ctx)            // 400/401/404, nothing allocated
//   vxid   = spec.vxlanId ?? allocateVni(used, …)         // vni-allocator.ts; CAS `vxlan/<vxid>`
//   record = newNetworkRecord(spec, {uuid, vxid, now})    // state `initial`
//
// Deliberate differences from Shaken Fist (see the reference notes): explicit `false` for
// provide_dhcp/provide_nat is respected (SF turns it into true); IPv6 netblocks are rejected
// (SF lets them through); netblocks overlapping the floating pool are rejected (#323); and a
// network in `error` can be deleted (SF answers 404 `network is deleted`, stranding it).

import { BadRequest, Forbidden, NotFound, Unauthenticated, quote } from '../errors.ts';
import { type Cidr, formatIpv4, overlaps, parseCidr } from '../net/ipv4-cidr.ts';
import { type NetworkState, assertTransition, canDelete, canTransition, isActive } from './state-machine.ts';
import { isValidVni, VNI_MAX, VNI_MIN } from './vni-allocator.ts';

/** Schema version of NetworkRecord (not a store revision); bump with an upgrade step. */
export const NETWORK_RECORD_VERSION = 1;
/** The admin namespace: may act on every namespace and sees every network. */
export const SYSTEM_NAMESPACE = 'system';
/** UUID of the floating pseudo-network, whose IPAM is the pool of NAT, floating and routed addresses. */
export const FLOATING_NETWORK_UUID = 'floating';
/** Minimum size of a network: a /29 (8 addresses: network, gateway, broadcast and 5 for hosts). */
export const MIN_PREFIX_LEN = 29;
/** Blocks that can never be a unicast overlay: "this" network, loopback, multicast and reserved. */
const UNUSABLE_BLOCKS: readonly Cidr[] = ['0.0.0.0/8', '127.0.0.0/8', '224.0.0.0/3'].map((t) => parseCidr(t));

export interface NetworkRecord {
  uuid: string;
  name: string;
  /** null only for the floating pseudo-network. */
  namespace: string | null;
  /** Canonical IPv4 CIDR, e.g. "198.18.4.0/24". */
  netblock: string;
  /** VXLAN network identifier; 0 for the floating pseudo-network. */
  vxid: number;
  provideDhcp: boolean;
  provideNat: boolean;
  provideDns: boolean;
  /** The VXLAN mesh runs on encrypted links (absent in records written before links existed). */
  encrypt?: boolean;
  state: NetworkState;
  /** ms since the Unix epoch of the last state change. */
  stateUpdatedAt: number;
  /** Why the network is in `error`; null otherwise. */
  error: string | null;
  metadata: Record<string, string>;
  /** This network's NAT address in the floating pool, once the network node has allocated it. */
  floatingGateway: string | null;
  createdAt: number;
  version: number;
}

/** The JSON of GET /networks/{ref}, field for field as the reference emits it. */
export interface NetworkView {
  uuid: string;
  state: NetworkState;
  metadata: Record<string, string>;
  version: number;
  name: string;
  namespace: string | null;
  netblock: string;
  provide_dhcp: boolean;
  provide_nat: boolean;
  provide_dns: boolean;
  encrypt: boolean;
  floating_gateway: string | null;
  vxlan_id: number;
  /** The same VNI under the name the reference's docs and older clients use. */
  vxid: number;
  /** Why, in state `error` only (ours: the reference keeps it in events). */
  error?: string;
}

export function externalView(record: NetworkRecord): NetworkView {
  return {
    uuid: record.uuid,
    state: record.state,
    metadata: { ...record.metadata },
    version: record.version,
    name: record.name,
    namespace: record.namespace,
    netblock: record.netblock,
    provide_dhcp: record.provideDhcp,
    provide_nat: record.provideNat,
    provide_dns: record.provideDns,
    encrypt: record.encrypt === true,
    floating_gateway: record.floatingGateway,
    vxlan_id: record.vxid,
    vxid: record.vxid,
    ...(record.state === 'error' && record.error ? { error: record.error } : {}),
  };
}

/** What POST /networks asked for, validated and with defaults applied. */
export interface NetworkCreateSpec {
  name: string;
  namespace: string;
  netblock: string;
  provideDhcp: boolean;
  provideNat: boolean;
  provideDns: boolean;
  encrypt: boolean;
  /** A VNI the system namespace asked for (range-checked here; uniqueness via checkRequestedVni). */
  vxlanId: number | null;
}

export interface NetworkCreateContext {
  /** The floating pool's netblock; a new network may not overlap it. */
  floatingPool: Cidr;
  /** The namespace of the authenticated caller. */
  callerNamespace: string;
  /** Namespaces that exist; when given, an unknown target namespace is 404. */
  namespaces?: ReadonlySet<string>;
}

const CREATE_FIELDS = new Set(['netblock', 'name', 'provide_dhcp', 'provide_nat', 'provide_dns', 'encrypt', 'namespace', 'vxlan_id']);
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

function flag(body: Record<string, unknown>, field: string, fallback: boolean): boolean {
  const value = body[field];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') {
    throw new BadRequest(`${field} must be true or false, got ${quote(value)}`, { reason: 'flag' });
  }
  return value;
}

/** Name rules: 1..63 of [A-Za-z0-9._-], starting alphanumeric, not UUID-shaped, not `floating`. */
export function validateNetworkName(value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    throw new BadRequest(`name is required and must be a non-empty string, got ${quote(value)}`, { reason: 'name' });
  }
  if (!NAME.test(value)) {
    throw new BadRequest(
      `name ${quote(value)} is invalid: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
      { reason: 'name' },
    );
  }
  if (isUuid(value) || value === FLOATING_NETWORK_UUID) {
    throw new BadRequest(`name ${quote(value)} is invalid: it would be taken for a network UUID`, { reason: 'name' });
  }
  return value;
}

/**
 * Validate a netblock for a network: strict IPv4 CIDR without host bits (400 `cannot parse
 * netblock: …`), at least a /29 (400 `network is below minimum size of /29`), a usable unicast
 * range, and no overlap with the floating pool. Returns the parsed block.
 */
export function validateNetblock(value: unknown, floatingPool: Cidr): Cidr {
  const cidr = parseCidr(value, 'netblock');
  if (cidr.prefixLen > MIN_PREFIX_LEN) {
    throw new BadRequest(
      `network is below minimum size of /${MIN_PREFIX_LEN}: ${cidr.text} has ${cidr.size} addresses, ` +
        `a network needs at least ${2 ** (32 - MIN_PREFIX_LEN)}`,
      { reason: 'size' },
    );
  }
  const unusable = UNUSABLE_BLOCKS.find((block) => overlaps(block, cidr));
  if (unusable !== undefined) {
    throw new BadRequest(`netblock ${cidr.text} overlaps ${unusable.text}, which is not unicast address space`, {
      reason: 'unusable',
    });
  }
  if (overlaps(cidr, floatingPool)) {
    throw new BadRequest(
      `netblock ${cidr.text} overlaps the floating pool ${floatingPool.text}; choose a block outside it`,
      { reason: 'overlap' },
    );
  }
  return cidr;
}

/**
 * Validate a POST /networks body. Throws 400 for an unknown parameter, a bad name, netblock
 * or flag; 401 when a non-system caller names another namespace; 404 when the namespace does not
 * exist. Defaults: provide_dhcp true, provide_nat true, provide_dns false; explicit values win.
 */
export function validateNetworkCreate(body: unknown, ctx: NetworkCreateContext): NetworkCreateSpec {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BadRequest('request body must be a JSON object', { reason: 'body' });
  }
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((key) => !CREATE_FIELDS.has(key));
  if (unknown.length > 0) {
    throw new BadRequest(
      `unknown parameter${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => quote(k)).join(', ')}; ` +
        `accepted: ${[...CREATE_FIELDS].join(', ')}`,
      { reason: 'unknown-parameter' },
    );
  }
  if (fields.netblock === undefined) {
    throw new BadRequest('netblock is required, e.g. "198.18.4.0/24"', { reason: 'parse' });
  }
  const name = validateNetworkName(fields.name);
  const cidr = validateNetblock(fields.netblock, ctx.floatingPool);

  let namespace = ctx.callerNamespace;
  if (fields.namespace !== undefined && fields.namespace !== null) {
    if (typeof fields.namespace !== 'string' || fields.namespace === '') {
      throw new BadRequest(`namespace must be a non-empty string, got ${quote(fields.namespace)}`, {
        reason: 'namespace',
      });
    }
    namespace = fields.namespace;
  }
  if (namespace !== ctx.callerNamespace && ctx.callerNamespace !== SYSTEM_NAMESPACE) {
    throw new Unauthenticated(
      `namespace ${quote(ctx.callerNamespace)} may not create networks in namespace ${quote(namespace)}`,
      { reason: 'namespace' },
    );
  }
  if (ctx.namespaces !== undefined && !ctx.namespaces.has(namespace)) {
    throw new NotFound(`namespace ${quote(namespace)} not found`, { reason: 'namespace' });
  }

  let vxlanId: number | null = null;
  if (fields.vxlan_id !== undefined && fields.vxlan_id !== null) {
    if (!isValidVni(fields.vxlan_id)) {
      throw new BadRequest(`vxlan_id ${quote(fields.vxlan_id)} is invalid: it must be an integer ${VNI_MIN}..${VNI_MAX}`, {
        reason: 'vni-range',
      });
    }
    if (ctx.callerNamespace !== SYSTEM_NAMESPACE) {
      throw new Forbidden(`only the ${SYSTEM_NAMESPACE} namespace may choose vxlan_id; omit it to have one allocated`, {
        reason: 'vni-not-allowed',
      });
    }
    vxlanId = fields.vxlan_id;
  }

  return {
    name,
    namespace,
    netblock: cidr.text,
    provideDhcp: flag(fields, 'provide_dhcp', true),
    provideNat: flag(fields, 'provide_nat', true),
    provideDns: flag(fields, 'provide_dns', false),
    encrypt: flag(fields, 'encrypt', false),
    vxlanId,
  };
}

/** A new record in state `initial` (the first legal state). */
export function newNetworkRecord(spec: NetworkCreateSpec, ids: { uuid: string; vxid: number; now: number }): NetworkRecord {
  assertTransition(ids.uuid, null, 'initial');
  return {
    uuid: ids.uuid,
    name: spec.name,
    namespace: spec.namespace,
    netblock: spec.netblock,
    vxid: ids.vxid,
    provideDhcp: spec.provideDhcp,
    provideNat: spec.provideNat,
    provideDns: spec.provideDns,
    encrypt: spec.encrypt,
    state: 'initial',
    stateUpdatedAt: ids.now,
    error: null,
    metadata: {},
    floatingGateway: null,
    createdAt: ids.now,
    version: NETWORK_RECORD_VERSION,
  };
}

/**
 * The floating pseudo-network: no namespace, VNI 0, no services, always `created`. Its IPAM
 * (`createIpam(pool, {holder: {kind: 'network', id: 'floating'}})`) is the address pool.
 */
export function floatingNetworkRecord(pool: Cidr, now: number): NetworkRecord {
  return {
    uuid: FLOATING_NETWORK_UUID,
    name: FLOATING_NETWORK_UUID,
    namespace: null,
    netblock: pool.text,
    vxid: 0,
    provideDhcp: false,
    provideNat: false,
    provideDns: false,
    state: 'created',
    stateUpdatedAt: now,
    error: null,
    metadata: {},
    floatingGateway: null,
    createdAt: now,
    version: NETWORK_RECORD_VERSION,
  };
}

/**
 * Validate the configured floating pool (FLOATING_NETWORK): a strict, whole IPv4 CIDR (#1406) of
 * at least a /29.
 */
export function parseFloatingPool(value: unknown): Cidr {
  const cidr = parseCidr(value, 'floating pool');
  if (cidr.prefixLen > MIN_PREFIX_LEN) {
    throw new BadRequest(`floating pool ${cidr.text} is below minimum size of /${MIN_PREFIX_LEN}`, { reason: 'size' });
  }
  return cidr;
}

function visibleTo(record: NetworkRecord, namespace: string): boolean {
  return namespace === SYSTEM_NAMESPACE || record.namespace === namespace;
}

/**
 * Resolve a `network_ref` as the reference does. A UUID resolves even when deleted; a name
 * matches only active networks in the caller's namespace (system sees all namespaces). Not
 * found, or owned by another namespace: 404 `network not found`. A name shared by several
 * active networks: 400 `multiple networks have the name …`.
 */
export function resolveNetworkRef(ref: string, namespace: string, records: Iterable<NetworkRecord>): NetworkRecord {
  const all = [...records];
  const byUuid = all.find((record) => record.uuid === ref);
  if (byUuid !== undefined) {
    if (visibleTo(byUuid, namespace)) return byUuid;
    throw new NotFound(`network not found: ${quote(ref)}`, { reason: 'not-found' });
  }
  const byName = all.filter((r) => r.name === ref && isActive(r.state) && visibleTo(r, namespace));
  if (byName.length === 1) return byName[0];
  if (byName.length > 1) {
    throw new BadRequest(
      `multiple networks have the name ${quote(ref)} (${byName.map((r) => r.uuid).join(', ')}); use a UUID`,
      { reason: 'ambiguous' },
    );
  }
  throw new NotFound(`network not found: ${quote(ref)}`, { reason: 'not-found' });
}

/**
 * GET /networks: the caller's networks (system: all), leaving out deleted ones unless `all`.
 * The floating pseudo-network is never listed.
 */
export function listNetworks(records: Iterable<NetworkRecord>, namespace: string, all = false): NetworkRecord[] {
  const out: NetworkRecord[] = [];
  for (const record of records) {
    if (record.uuid === FLOATING_NETWORK_UUID || !visibleTo(record, namespace)) continue;
    if (all || record.state !== 'deleted') out.push(record);
  }
  return out;
}

export type DeletePlan =
  /** Already deleted: answer 200 with null. */
  | { action: 'none' }
  /** Interfaces remain: move to delete-wait; the reconciler destroys it when they are gone. */
  | { action: 'delete-wait' }
  /** Tear down now (the destroy step ends in `deleted`). */
  | { action: 'destroy' };

/**
 * What DELETE /networks/{ref} does. 403 for the floating network. A `created` network with
 * interfaces goes to delete-wait; otherwise it is destroyed (one in `error` or `delete-wait` is
 * destroyed once its interfaces are gone, which the destroy step checks).
 */
export function planDelete(record: NetworkRecord, interfaceCount: number): DeletePlan {
  if (record.uuid === FLOATING_NETWORK_UUID) {
    throw new Forbidden('the floating network cannot be deleted', { reason: 'floating' });
  }
  if (!canDelete(record.state)) return { action: 'none' };
  // An `initial` network may already carry interfaces (this API lets them attach before the
  // network is deployed): it waits too, by way of `created` (initial -> delete-wait is no transition).
  if (interfaceCount > 0 && (record.state === 'initial' || canTransition(record.state, 'delete-wait'))) return { action: 'delete-wait' };
  return { action: 'destroy' };
}

/** The derived addresses of a network (not exposed in the view). */
export function networkAddresses(record: NetworkRecord): {
  router: string;
  dhcpStart: string;
  netmask: string;
  broadcast: string;
  network: string;
} {
  const cidr = parseCidr(record.netblock);
  return {
    router: formatIpv4(cidr.network + 1),
    dhcpStart: formatIpv4(cidr.network + 2),
    netmask: formatIpv4(cidr.mask),
    broadcast: formatIpv4(cidr.broadcast),
    network: formatIpv4(cidr.network),
  };
}
