// The network interface record, its states, its API view and validation of an interface request
// (a "netdesc"). Pure: the store layer resolves networks, allocates addresses and claims MACs.
//
// States (the reference's `NetworkInterface.state_targets`):
//   (none) → initial;  initial → created | deleted | error;  created → deleted | error;
//   error → deleted | error;  deleted is terminal. Re-setting the same state is a no-op.
// An interface is `initial` when the API creates it; the host agent marks it `created`.

import { BadRequest, Conflict, quote } from '../errors.ts';
import { parseIpv4, formatIpv4 } from '../net/ipv4-cidr.ts';
import { parseMac } from './mac.ts';

export const INTERFACE_RECORD_VERSION = 1;
export const INTERFACE_STATES = ['initial', 'created', 'deleted', 'error'] as const;
export type InterfaceState = (typeof INTERFACE_STATES)[number];

export const INTERFACE_TRANSITIONS: Readonly<Record<InterfaceState | 'null', readonly InterfaceState[]>> = Object.freeze({
  null: ['initial'],
  initial: ['created', 'deleted', 'error'],
  created: ['deleted', 'error'],
  error: ['deleted', 'error'],
  deleted: [],
});

export interface InterfaceRecord {
  uuid: string;
  network_uuid: string;
  instance_uuid: string;
  /** The instance's namespace, kept here so that a lookup by UUID can check visibility. */
  namespace: string;
  macaddr: string;
  /** null when the request said `address: "none"`. */
  ipv4: string | null;
  /** 0-based NIC index within the instance. */
  order: number;
  /** The device's name in the instance's namespace when the request chose one (CNI_IFNAME), else absent. */
  device?: string;
  state: InterfaceState;
  stateUpdatedAt: number;
  metadata: Record<string, string>;
  /** The floating address mapped 1:1 to this interface (POST /interfaces/{uuid}/float, api/nat-routes.ts), or null. */
  floating: string | null;
  createdAt: number;
  version: number;
}

export interface InterfaceView {
  uuid: string;
  network_uuid: string;
  instance_uuid: string;
  macaddr: string;
  ipv4: string | null;
  order: number;
  /** The device's name in the instance's namespace. */
  device: string;
  state: InterfaceState;
  floating: string | null;
  metadata: Record<string, string>;
  version: number;
  /** The NIC model the reference records for its VMs; appnet ports are always `virtio` (a TAP with vnet headers). */
  model: string;
}

export function interfaceView(record: InterfaceRecord): InterfaceView {
  return {
    uuid: record.uuid,
    network_uuid: record.network_uuid,
    instance_uuid: record.instance_uuid,
    macaddr: record.macaddr,
    ipv4: record.ipv4,
    order: record.order,
    device: deviceName(record),
    state: record.state,
    floating: record.floating,
    metadata: { ...record.metadata },
    version: record.version,
    model: 'virtio',
  };
}

export function canInterfaceTransition(from: InterfaceState | null, to: InterfaceState): boolean {
  return from === to || INTERFACE_TRANSITIONS[from ?? 'null'].includes(to);
}

/** The record in state `to`; the same object for a no-op; 409 for a move the table forbids. */
export function transitionInterface(record: InterfaceRecord, to: InterfaceState, now: number): InterfaceRecord {
  if (!canInterfaceTransition(record.state, to)) {
    const legal = INTERFACE_TRANSITIONS[record.state];
    throw new Conflict(
      `interface ${record.uuid} cannot go from state ${record.state} to ${to}` +
        (legal.length === 0 ? `: ${record.state} is terminal` : `: from ${record.state} it may go to ${legal.join(', ')}`),
      { reason: 'invalid-state-transition' },
    );
  }
  if (record.state === to) return record;
  return { ...record, state: to, stateUpdatedAt: now };
}

/** One validated interface request. */
export interface InterfaceSpec {
  /** Network UUID or name, resolved by the store layer. */
  network: string;
  /** `undefined`: allocate; `null`: no address (`"none"`); else a dotted quad to reserve. */
  address: string | null | undefined;
  /** A canonical user-given MAC, or undefined to allocate one. */
  macaddr: string | undefined;
  /** The device name in the instance's namespace, or undefined for the default (deviceName). */
  device?: string;
}

const NETDESC_FIELDS = new Set(['network', 'address', 'macaddr', 'device']);
/** A Linux interface name: 1-15 bytes, no '/', ':' or whitespace, not '.' or '..'. */
const DEVICE_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.@+-]{1,15}$/;

/** The device's name in the instance: the one the request chose, else `an` + 8 hex digits of the uuid. */
export function deviceName(record: Pick<InterfaceRecord, 'uuid' | 'device'>): string {
  return record.device ?? `an${record.uuid.replace(/-/g, '').slice(0, 8)}`;
}

/** Validate `interfaces[index]` of a request; messages name `interfaces.<index>.<field>`. */
export function validateInterfaceSpec(value: unknown, index: number): InterfaceSpec {
  const at = `interfaces.${index}`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadRequest(`${at} must be an object like {"network": "<uuid or name>"}`, { reason: 'netdesc' });
  }
  const fields = value as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((k) => !NETDESC_FIELDS.has(k));
  if (unknown.length > 0) {
    throw new BadRequest(`unknown parameter ${quote(unknown[0])} in ${at}; accepted: ${[...NETDESC_FIELDS].join(', ')}`, {
      reason: 'unknown-parameter',
    });
  }
  if (typeof fields.network !== 'string' || fields.network === '') {
    throw new BadRequest(`${at}.network is required: a network UUID or name`, { reason: 'network' });
  }
  let address: string | null | undefined;
  if (fields.address === undefined) address = undefined;
  else if (fields.address === null || fields.address === 'none') address = null;
  else address = formatIpv4(parseIpv4(fields.address, `${at}.address`));
  const macaddr = fields.macaddr === undefined ? undefined : parseMac(fields.macaddr, `${at}.macaddr`);
  if (fields.device !== undefined && (typeof fields.device !== 'string' || !DEVICE_NAME.test(fields.device))) {
    throw new BadRequest(`${at}.device must be a Linux interface name (1-15 of A-Z a-z 0-9 _ . @ + -), got ${quote(String(fields.device))}`, { reason: 'device' });
  }
  return { network: fields.network, address, macaddr, ...(fields.device !== undefined ? { device: fields.device as string } : {}) };
}

export function newInterfaceRecord(fields: {
  uuid: string;
  network_uuid: string;
  instance_uuid: string;
  namespace: string;
  macaddr: string;
  ipv4: string | null;
  order: number;
  device?: string;
  now: number;
}): InterfaceRecord {
  const { now, device, ...rest } = fields;
  return {
    ...rest,
    ...(device !== undefined ? { device } : {}),
    state: 'initial',
    stateUpdatedAt: now,
    metadata: {},
    floating: null,
    createdAt: now,
    version: INTERFACE_RECORD_VERSION,
  };
}
