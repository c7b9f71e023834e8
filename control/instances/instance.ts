// The instance record (something with network interfaces: a VM or container on a host, living
// in a network namespace), validation of POST /instances, its view and lookup by reference.
//
// Pure: the store layer supplies records and persists what comes back.
//
// Rules:
//   name   1..63 of [A-Za-z0-9._-], starting alphanumeric, not UUID-shaped (as network names)
//   host   required: an RFC 1123 host name (labels of [A-Za-z0-9-], dots between, <= 253)
//   netns  optional: 1..63 of [A-Za-z0-9._-], starting alphanumeric; default `inst-<first 8 hex of uuid>`;
//          or an absolute path to a namespace a container runtime made (CNI_NETNS, control/cni/): the
//          daemon then never creates or deletes it, and sets the address and default route itself
//          (nothing in a container runs our DHCP client), see reconcile/plan.ts
//   interfaces  an array (may be empty) of netdescs, validated by interface.ts
//   inbounds, outbounds  application-network interfaces (may be absent), validated by
//               appnet-interfaces.ts; records written before they existed have neither (= none)

import { BadRequest, NotFound, Unauthenticated, quote } from '../errors.ts';
import { SYSTEM_NAMESPACE, isUuid } from '../networks/network.ts';
import { type InboundSpec, type OutboundSpec, validateAppnetInterfaces } from './appnet-interfaces.ts';
import { type InterfaceSpec, type InterfaceView, validateInterfaceSpec } from './interface.ts';

export const INSTANCE_RECORD_VERSION = 1;
/**
 * Most interfaces one instance may have. An instance is created (and deleted) in one store transaction that
 * compares up to five keys per interface (its record, its MAC claim, its network, the network's IPAM and
 * attachments) and the instance: 25 keeps that within the 127 compares the store takes in a txn (store.ts
 * MAX_TXN_OPS), so an instance is never half made.
 */
export const MAX_INTERFACES = 25;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const HOST_LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export interface InstanceRecord {
  uuid: string;
  name: string;
  namespace: string;
  host: string;
  netns: string;
  /** Interface UUIDs in NIC order. */
  interfaces: string[];
  /** Absent in records written before application networking: no inbounds. */
  inbounds?: InboundSpec[];
  /** Absent in records written before application networking: no outbounds. */
  outbounds?: OutboundSpec[];
  metadata: Record<string, string>;
  createdAt: number;
  version: number;
}

export interface InstanceView {
  uuid: string;
  name: string;
  namespace: string;
  host: string;
  netns: string;
  interfaces: InterfaceView[];
  inbounds: InboundSpec[];
  outbounds: OutboundSpec[];
  metadata: Record<string, string>;
  version: number;
}

export function instanceView(record: InstanceRecord, interfaces: InterfaceView[]): InstanceView {
  return {
    uuid: record.uuid,
    name: record.name,
    namespace: record.namespace,
    host: record.host,
    netns: record.netns,
    interfaces,
    inbounds: (record.inbounds ?? []).map((i) => ({ ...i })),
    outbounds: (record.outbounds ?? []).map((o) => ({ ...o })),
    metadata: { ...record.metadata },
    version: record.version,
  };
}

export interface InstanceCreateSpec {
  name: string;
  namespace: string;
  host: string;
  /** null: default from the UUID once it is known. */
  netns: string | null;
  interfaces: InterfaceSpec[];
  inbounds: InboundSpec[];
  outbounds: OutboundSpec[];
}

const CREATE_FIELDS = new Set(['name', 'host', 'netns', 'interfaces', 'namespace', 'inbounds', 'outbounds']);

export function validateInstanceName(value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    throw new BadRequest(`name is required and must be a non-empty string, got ${quote(value)}`, { reason: 'name' });
  }
  if (!NAME.test(value) || isUuid(value)) {
    throw new BadRequest(
      `name ${quote(value)} is invalid: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit, not a UUID`,
      { reason: 'name' },
    );
  }
  return value;
}

export function validateHost(value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    throw new BadRequest(`host is required: the name of the host the instance runs on, got ${quote(value)}`, {
      reason: 'host',
    });
  }
  if (value.length > 253 || !value.split('.').every((label) => HOST_LABEL.test(label))) {
    throw new BadRequest(`host ${quote(value)} is not a valid host name (dot-separated labels of letters, digits and '-')`, {
      reason: 'host',
    });
  }
  return value.toLowerCase();
}

/** An absolute path without `.`/`..` segments, of the characters runtimes use (`/run/netns/cni-1234-...`). */
const NETNS_PATH = /^(?:\/[A-Za-z0-9_][A-Za-z0-9._:-]{0,254}){1,16}$/;

/** A namespace given by path (a container runtime's), not by name under /run/netns. */
export function isNetnsPath(netns: string): boolean {
  return netns.startsWith('/');
}

export function validateNetns(value: unknown): string {
  if (typeof value !== 'string' || !(NAME.test(value) || (NETNS_PATH.test(value) && value.length <= 1024))) {
    throw new BadRequest(
      `netns ${quote(value)} is invalid: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit, ` +
        'or an absolute path to a namespace file',
      { reason: 'netns' },
    );
  }
  return value;
}

/** The default network namespace of an instance: `inst-<first 8 hex digits of its uuid>`. */
export function defaultNetns(uuid: string): string {
  return `inst-${uuid.replace(/-/g, '').slice(0, 8)}`;
}

/**
 * Validate a POST /instances body: 400 naming the field; 401 when a non-system caller names
 * another namespace; 404 for an unknown namespace (when `namespaces` is given).
 */
export function validateInstanceCreate(
  body: unknown,
  ctx: { callerNamespace: string; namespaces?: ReadonlySet<string> },
): InstanceCreateSpec {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BadRequest('request body must be a JSON object', { reason: 'body' });
  }
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((k) => !CREATE_FIELDS.has(k));
  if (unknown.length > 0) {
    throw new BadRequest(`unknown parameter ${quote(unknown[0])}; accepted: ${[...CREATE_FIELDS].join(', ')}`, {
      reason: 'unknown-parameter',
    });
  }
  const name = validateInstanceName(fields.name);
  const host = validateHost(fields.host);
  const netns = fields.netns === undefined || fields.netns === null ? null : validateNetns(fields.netns);
  const list = fields.interfaces ?? [];
  if (!Array.isArray(list)) throw new BadRequest('interfaces must be an array of {network, address?, macaddr?}', { reason: 'interfaces' });
  if (list.length > MAX_INTERFACES) {
    throw new BadRequest(`interfaces has ${list.length} entries; an instance may have at most ${MAX_INTERFACES}`, {
      reason: 'interfaces',
    });
  }
  const interfaces = list.map((item, index) => validateInterfaceSpec(item, index));
  const devices = new Map<string, number>();
  for (const [index, spec] of interfaces.entries()) {
    if (spec.device === undefined) continue;
    const first = devices.get(spec.device);
    if (first !== undefined) throw new BadRequest(`interfaces.${index}.device ${quote(spec.device)} is already interfaces.${first}.device`, { reason: 'device' });
    devices.set(spec.device, index);
  }
  const { inbounds, outbounds } = validateAppnetInterfaces(fields.inbounds, fields.outbounds);
  let namespace = ctx.callerNamespace;
  if (fields.namespace !== undefined && fields.namespace !== null) {
    if (typeof fields.namespace !== 'string' || fields.namespace === '') {
      throw new BadRequest(`namespace must be a non-empty string, got ${quote(fields.namespace)}`, { reason: 'namespace' });
    }
    namespace = fields.namespace;
  }
  if (namespace !== ctx.callerNamespace && ctx.callerNamespace !== SYSTEM_NAMESPACE) {
    throw new Unauthenticated(
      `namespace ${quote(ctx.callerNamespace)} may not create instances in namespace ${quote(namespace)}`,
      { reason: 'namespace' },
    );
  }
  if (ctx.namespaces !== undefined && !ctx.namespaces.has(namespace)) {
    throw new NotFound(`namespace ${quote(namespace)} not found`, { reason: 'namespace' });
  }
  return { name, namespace, host, netns, interfaces, inbounds, outbounds };
}

export function newInstanceRecord(
  spec: InstanceCreateSpec,
  ids: { uuid: string; interfaces: string[]; now: number },
): InstanceRecord {
  return {
    uuid: ids.uuid,
    name: spec.name,
    namespace: spec.namespace,
    host: spec.host,
    netns: spec.netns ?? defaultNetns(ids.uuid),
    interfaces: [...ids.interfaces],
    inbounds: spec.inbounds.map((i) => ({ ...i })),
    outbounds: spec.outbounds.map((o) => ({ ...o })),
    metadata: {},
    createdAt: ids.now,
    version: INSTANCE_RECORD_VERSION,
  };
}

function visibleTo(record: { namespace: string }, namespace: string): boolean {
  return namespace === SYSTEM_NAMESPACE || record.namespace === namespace;
}

/** By UUID, or by a name unique among the caller's instances (system: all). 404 / 400 ambiguous. */
export function resolveInstanceRef(ref: string, namespace: string, records: Iterable<InstanceRecord>): InstanceRecord {
  const all = [...records];
  const byUuid = all.find((r) => r.uuid === ref);
  if (byUuid !== undefined) {
    if (visibleTo(byUuid, namespace)) return byUuid;
    throw new NotFound(`instance not found: ${quote(ref)}`, { reason: 'not-found' });
  }
  const byName = all.filter((r) => r.name === ref && visibleTo(r, namespace));
  if (byName.length === 1) return byName[0];
  if (byName.length > 1) {
    throw new BadRequest(`multiple instances have the name ${quote(ref)} (${byName.map((r) => r.uuid).join(', ')}); use a UUID`, {
      reason: 'ambiguous',
    });
  }
  throw new NotFound(`instance not found: ${quote(ref)}`, { reason: 'not-found' });
}

export function listInstances(records: Iterable<InstanceRecord>, namespace: string): InstanceRecord[] {
  return [...records].filter((r) => visibleTo(r, namespace)).sort((a, b) => a.createdAt - b.createdAt || a.uuid.localeCompare(b.uuid));
}

/** An interface is visible to its instance's namespace and to system; otherwise 404. */
export function checkInterfaceVisible(record: { uuid: string; namespace: string }, namespace: string): void {
  if (!visibleTo(record, namespace)) throw new NotFound(`interface not found: ${quote(record.uuid)}`, { reason: 'not-found' });
}
