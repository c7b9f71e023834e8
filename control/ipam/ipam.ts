// IP address management for one network (or for the floating pool), as pure functions over a
// JSON-serialisable state. The store layer loads the state, calls one function, and writes the
// result back with compare-and-swap; nothing here reads a clock or does I/O. Every function
// returns a new state and leaves its input untouched.
//
// Layout of a block (Shaken Fist's `IPAM.new`): index 0 is the network address, the last index
// the broadcast, index 1 the gateway. All three are reserved at creation with the network as
// holder, and allocation starts at index 2 (SF's dhcp_start).
//
// In the floating pool (a pseudo-network, holder `{kind: 'network', id: 'floating'}`) index 1 is
// the upstream gateway of the floating segment: the address the network node puts on the egress
// bridge, which every network's NAT floating gateway uses as its default route. Each network's
// own floating gateway is then a `gateway` reservation elsewhere in the pool, held by that network.
//
// Release and hold-back (SF's "deletion halo"): releasing an address rewrites its reservation as
// type `deletion-halo` with no holder and `releasedAt`, so stale ARP caches and DHCP leases on the
// old holder age out before the address means something else.
//   - `allocate` does not hand out an address for `holdBackMs` (default 300 s) after its release,
//     unless every other address is taken: then, like SF's congestion fallback, it takes the
//     longest-released address that has been held for at least `congestedHoldBackMs` (default
//     30 s). Set both to the same value for a strict hold-back.
//   - `reserve` of an address still held back is refused with 409, as in SF (the halo counts as in
//     use), and the message says when it frees up.
//   - A hold-back older than `holdBackMs` counts as free and is dropped by the next mutation.
//
// Times are ms since the Unix epoch, passed in by the caller.

import { BadRequest, Conflict, InsufficientResources, NotFound, quote } from '../errors.ts';
import { type Cidr, addressAt, formatIpv4, indexOf, parseCidr, parseIpv4 } from '../net/ipv4-cidr.ts';

// prettier-ignore
export const RESERVATION_TYPES = [
  'network', 'broadcast', 'gateway', 'instance', 'floating', 'routed', 'deletion-halo', 'unknown',
] as const;
export type ReservationType = (typeof RESERVATION_TYPES)[number];

/** Types a caller may allocate or reserve; the others are written by this module only. */
export const HOLDER_TYPES = ['gateway', 'instance', 'floating', 'routed', 'unknown'] as const;
export type HolderType = (typeof HOLDER_TYPES)[number];

/** Who holds an address, e.g. `{kind: 'network', id: <uuid>}` or `{kind: 'interface', id: <uuid>}`. */
export interface Holder {
  kind: string;
  id: string;
}

export interface Reservation {
  type: ReservationType;
  /** null for hold-backs, and optionally for `unknown`. */
  holder: Holder | null;
  /** When this entry was written (ms). */
  since: number;
  comment?: string;
  /** Hold-backs only: when the address was released (ms). */
  releasedAt?: number;
  /** Hold-backs only: what held the address before its release, for forensics. */
  previous?: { type: ReservationType; holder: Holder | null };
}

export interface IpamState {
  /** Canonical CIDR text. */
  netblock: string;
  /** The reserved gateway (index 1), or null when created without one. */
  gateway: string | null;
  holdBackMs: number;
  congestedHoldBackMs: number;
  /** Keyed by dotted-quad address. */
  reservations: Record<string, Reservation>;
}

export const DEFAULT_HOLD_BACK_MS = 300_000;
export const DEFAULT_CONGESTED_HOLD_BACK_MS = 30_000;
/** Random picks before the linear scan (SF uses five). */
export const RANDOM_TRIES = 5;

export interface CreateIpamOptions {
  now: number;
  /** Holder of the network, broadcast and gateway entries, e.g. `{kind: 'network', id: uuid}`. */
  holder?: Holder | null;
  /** Reserve index 1 as the gateway (default true). Without it allocation starts at index 1. */
  reserveGateway?: boolean;
  holdBackMs?: number;
  congestedHoldBackMs?: number;
}

export interface ListedReservation extends Reservation {
  address: string;
}

interface Block {
  cidr: Cidr;
  /** First and last allocatable index. */
  first: number;
  last: number;
}

function blockOf(state: IpamState): Block {
  const cidr = parseCidr(state.netblock);
  return { cidr, first: state.gateway === null ? 1 : 2, last: cidr.size - 2 };
}

function checkDuration(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a duration >= 0 ms, got ${value}`);
}

function checkHolderType(type: unknown): asserts type is HolderType {
  if (!(HOLDER_TYPES as readonly unknown[]).includes(type)) {
    throw new BadRequest(`reservation type ${quote(type)} is invalid; use one of ${HOLDER_TYPES.join(', ')}`, {
      reason: 'reservation-type',
    });
  }
}

/** An IPAM for `netblock` with network, broadcast and (by default) gateway reserved. */
export function createIpam(netblock: Cidr | string, options: CreateIpamOptions): IpamState {
  const cidr = typeof netblock === 'string' ? parseCidr(netblock) : netblock;
  if (cidr.prefixLen > 30) {
    throw new BadRequest(`netblock ${cidr.text} is too small for IPAM: it needs at least a /30`, { reason: 'size' });
  }
  const holdBackMs = options.holdBackMs ?? DEFAULT_HOLD_BACK_MS;
  const congestedHoldBackMs = Math.min(options.congestedHoldBackMs ?? DEFAULT_CONGESTED_HOLD_BACK_MS, holdBackMs);
  checkDuration('holdBackMs', holdBackMs);
  checkDuration('congestedHoldBackMs', congestedHoldBackMs);
  const holder = options.holder ?? null;
  const since = options.now;
  const reservations: Record<string, Reservation> = {
    [formatIpv4(cidr.network)]: { type: 'network', holder, since },
    [formatIpv4(cidr.broadcast)]: { type: 'broadcast', holder, since },
  };
  let gateway: string | null = null;
  if (options.reserveGateway ?? true) {
    gateway = formatIpv4(addressAt(cidr, 1));
    reservations[gateway] = { type: 'gateway', holder, since };
  }
  return { netblock: cidr.text, gateway, holdBackMs, congestedHoldBackMs, reservations };
}

/** Age of a hold-back at `now`, or null if the entry is a live reservation. */
function heldFor(entry: Reservation, now: number): number | null {
  if (entry.type !== 'deletion-halo') return null;
  return now - (entry.releasedAt ?? entry.since);
}

/** True when the entry still blocks its address (a live reservation, or a hold-back not yet expired). */
function blocks(state: IpamState, entry: Reservation | undefined, now: number): boolean {
  if (entry === undefined) return false;
  const age = heldFor(entry, now);
  return age === null || age < state.holdBackMs;
}

/**
 * Drop hold-backs at least `olderThanMs` old (default: the hold-back period), making those
 * addresses free. With 0 it frees every hold-back (SF's `release_haloed(0)`).
 */
export function purgeHeld(state: IpamState, now: number, olderThanMs = state.holdBackMs): IpamState {
  let changed = false;
  const reservations: Record<string, Reservation> = {};
  for (const [address, entry] of Object.entries(state.reservations)) {
    const age = heldFor(entry, now);
    if (age !== null && age >= olderThanMs) changed = true;
    else reservations[address] = entry;
  }
  return changed ? { ...state, reservations } : state;
}

export interface AllocateOptions {
  type: HolderType;
  holder: Holder | null;
  now: number;
  /** Uniform in [0, 1). Default Math.random. */
  random?: () => number;
  comment?: string;
}

/**
 * Reserve a free address for `holder`: a few random picks first (spreading addresses so a
 * recently freed one is unlikely to be reused), then a linear scan from index 2, then the
 * congestion fallback described at the top. Throws InsufficientResources (507) when nothing is
 * allocatable.
 */
export function allocate(state: IpamState, options: AllocateOptions): { state: IpamState; address: string } {
  checkHolderType(options.type);
  const { now } = options;
  const random = options.random ?? Math.random;
  const current = purgeHeld(state, now);
  const { cidr, first, last } = blockOf(current);
  const span = last - first + 1;
  const isFree = (index: number): boolean => current.reservations[formatIpv4(cidr.network + index)] === undefined;

  let chosen = -1;
  for (let i = 0; i < RANDOM_TRIES && chosen < 0; i++) {
    const index = first + Math.min(span - 1, Math.floor(random() * span));
    if (isFree(index)) chosen = index;
  }
  for (let index = first; index <= last && chosen < 0; index++) {
    if (isFree(index)) chosen = index;
  }
  if (chosen < 0) chosen = congestedFallback(current, cidr, first, last, now);
  if (chosen < 0) {
    const held = Object.values(current.reservations).filter((entry) => entry.type === 'deletion-halo').length;
    throw new InsufficientResources(
      `network ${cidr.text} has no free addresses: ${span - held} of ${span} allocatable addresses are reserved and ` +
        `${held} were released less than ${Math.round(current.congestedHoldBackMs / 1000)} s ago; ` +
        'release addresses or use a larger netblock',
      { reason: 'congested' },
    );
  }
  const address = formatIpv4(cidr.network + chosen);
  return { state: put(current, address, entry(options)), address };
}

/** Index of the longest-released hold-back that is at least `congestedHoldBackMs` old, or -1. */
function congestedFallback(state: IpamState, cidr: Cidr, first: number, last: number, now: number): number {
  let best = -1;
  let bestReleased = Infinity;
  for (const [address, entry] of Object.entries(state.reservations)) {
    const age = heldFor(entry, now);
    if (age === null || age < state.congestedHoldBackMs) continue;
    const index = indexOf(cidr, parseIpv4(address));
    if (index < first || index > last) continue;
    const released = entry.releasedAt ?? entry.since;
    if (released < bestReleased || (released === bestReleased && index < best)) {
      best = index;
      bestReleased = released;
    }
  }
  return best;
}

function entry(options: { type: HolderType; holder: Holder | null; now: number; comment?: string }): Reservation {
  const reservation: Reservation = { type: options.type, holder: options.holder, since: options.now };
  if (options.comment !== undefined) reservation.comment = options.comment;
  return reservation;
}

function put(state: IpamState, address: string, reservation: Reservation): IpamState {
  return { ...state, reservations: { ...state.reservations, [address]: reservation } };
}

function describe(reservation: Reservation): string {
  const holder = reservation.holder ? ` by ${reservation.holder.kind} ${reservation.holder.id}` : '';
  return `${reservation.type}${holder}`;
}

/**
 * Check `address` (a dotted quad) against the block: 400 for a malformed address, one outside
 * the block, or the network/broadcast address. Returns its canonical text and index.
 */
function locate(state: IpamState, address: unknown): { text: string; index: number; cidr: Cidr } {
  const cidr = parseCidr(state.netblock);
  const value = parseIpv4(address, 'address');
  const text = formatIpv4(value);
  const index = indexOf(cidr, value);
  if (index < 0) {
    throw new BadRequest(`address ${text} is outside network block ${cidr.text}`, { reason: 'outside-block' });
  }
  if (index === 0 || index === cidr.size - 1) {
    const what = index === 0 ? 'network' : 'broadcast';
    throw new BadRequest(`address ${text} is the ${what} address of ${cidr.text} and cannot be used`, {
      reason: what,
    });
  }
  return { text, index, cidr };
}

export interface ReserveOptions {
  type: HolderType;
  holder: Holder | null;
  now: number;
  comment?: string;
}

/**
 * Reserve a specific address (a requested IP, a routed address). 400 if it is malformed,
 * outside the block, or the network or broadcast address; 409 if it is reserved or still held
 * back after a release.
 */
export function reserve(state: IpamState, address: unknown, options: ReserveOptions): IpamState {
  checkHolderType(options.type);
  const { now } = options;
  const { text, cidr } = locate(state, address);
  const current = purgeHeld(state, now);
  const existing = current.reservations[text];
  if (existing !== undefined) {
    const age = heldFor(existing, now);
    if (age === null) {
      throw new Conflict(`address ${text} in ${cidr.text} is already in use (${describe(existing)})`, {
        reason: 'in-use',
      });
    }
    const wait = Math.ceil((current.holdBackMs - age) / 1000);
    throw new Conflict(
      `address ${text} in ${cidr.text} was released ${Math.floor(age / 1000)} s ago and is held back for ` +
        `${Math.round(current.holdBackMs / 1000)} s after release; retry in ${wait} s or choose another address`,
      { reason: 'held-back' },
    );
  }
  return put(current, text, entry(options));
}

/**
 * Release an address into hold-back. Idempotent: releasing an address that is free or already
 * held back returns the state unchanged (so a retried reconcile step is harmless). 400 for the
 * network, broadcast or gateway address, or one outside the block.
 */
export function release(state: IpamState, address: unknown, now: number): IpamState {
  const { text } = locate(state, address);
  if (text === state.gateway) {
    throw new BadRequest(`address ${text} is the gateway of ${state.netblock} and cannot be released`, {
      reason: 'gateway',
    });
  }
  const existing = state.reservations[text];
  if (existing === undefined || existing.type === 'deletion-halo') return state;
  return put(state, text, {
    type: 'deletion-halo',
    holder: null,
    since: now,
    releasedAt: now,
    previous: { type: existing.type, holder: existing.holder },
  });
}

/**
 * The entry that currently blocks `address` (a live reservation or an unexpired hold-back), or
 * null if the address is free at `now`. 400 for a malformed address or one outside the block.
 */
export function getReservation(state: IpamState, address: unknown, now: number): Reservation | null {
  const cidr = parseCidr(state.netblock);
  const value = parseIpv4(address, 'address');
  if (indexOf(cidr, value) < 0) {
    throw new BadRequest(`address ${formatIpv4(value)} is outside network block ${cidr.text}`, {
      reason: 'outside-block',
    });
  }
  const found = state.reservations[formatIpv4(value)];
  return found !== undefined && blocks(state, found, now) ? found : null;
}

/**
 * Like getReservation, but 404 unless the address holds a live reservation of `type` (and, if
 * given, by `holder`) — e.g. the `address not routed` check before unrouting.
 */
export function requireReservation(
  state: IpamState,
  address: unknown,
  now: number,
  expect: { type: ReservationType; holder?: Holder },
): Reservation {
  const found = getReservation(state, address, now);
  const matches =
    found !== null &&
    found.type === expect.type &&
    (expect.holder === undefined ||
      (found.holder !== null && found.holder.kind === expect.holder.kind && found.holder.id === expect.holder.id));
  if (!matches) {
    throw new NotFound(`address ${String(address)} is not reserved as ${expect.type} here`, { reason: 'not-reserved' });
  }
  return found;
}

/** Every entry that blocks an address at `now`, sorted by address. Expired hold-backs are left out. */
export function listReservations(state: IpamState, now?: number): ListedReservation[] {
  const rows: Array<[number, ListedReservation]> = [];
  for (const [address, reservation] of Object.entries(state.reservations)) {
    if (now !== undefined && !blocks(state, reservation, now)) continue;
    rows.push([parseIpv4(address), { address, ...reservation }]);
  }
  return rows.sort((a, b) => a[0] - b[0]).map(([, row]) => row);
}

/**
 * One row of `GET /networks/{ref}/addresses` in the reference's shape:
 * `{address, user: [kind, id] | null, when, type, comment}`, `when` in seconds since the epoch.
 */
export function addressView(row: ListedReservation): {
  address: string;
  user: [string, string] | null;
  when: number;
  type: ReservationType;
  comment: string | null;
} {
  return {
    address: row.address,
    user: row.holder ? [row.holder.kind, row.holder.id] : null,
    when: row.since / 1000,
    type: row.type,
    comment: row.comment ?? null,
  };
}

/** Counts at `now`: block size, live reservations, unexpired hold-backs, and free addresses. */
export function usage(state: IpamState, now: number): { size: number; reserved: number; held: number; free: number } {
  const { cidr } = blockOf(state);
  let reserved = 0;
  let held = 0;
  for (const entry of Object.values(state.reservations)) {
    if (entry.type !== 'deletion-halo') reserved++;
    else if (blocks(state, entry, now)) held++;
  }
  return { size: cidr.size, reserved, held, free: cidr.size - reserved - held };
}
