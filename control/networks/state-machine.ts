// The network lifecycle as data, and pure functions that move a record through it.
//
//   from          legal targets
//   (none)        initial
//   initial       created, deleted, error
//   created       delete-wait, deleted, error
//   delete-wait   deleted, error
//   error         deleted, error
//   deleted       (terminal)
//
// This is Shaken Fist's `Network.state_targets`. Setting the state a record already has is a
// no-op (the same object comes back, so the store layer can skip the write). Any other move
// throws InvalidStateTransition (409).
//
// Unlike the reference, the error message is written in the same step as the `error` state
// (`failNetwork`), so there is no window in which one exists without the other (SF sets the
// attribute first, which its own guard then refuses).

import { Conflict, NotReady } from '../errors.ts';

export const NETWORK_STATES = ['initial', 'created', 'delete-wait', 'deleted', 'error'] as const;
export type NetworkState = (typeof NETWORK_STATES)[number];

/** Legal targets from each state. `null` is "no record yet". */
export const NETWORK_TRANSITIONS: Readonly<Record<NetworkState | 'null', readonly NetworkState[]>> = Object.freeze({
  null: Object.freeze(['initial'] as const),
  initial: Object.freeze(['created', 'deleted', 'error'] as const),
  created: Object.freeze(['deleted', 'delete-wait', 'error'] as const),
  'delete-wait': Object.freeze(['deleted', 'error'] as const),
  error: Object.freeze(['deleted', 'error'] as const),
  deleted: Object.freeze([] as const),
});

/** States in which a network still exists for its users (names resolve, it is listed). */
export const ACTIVE_STATES: ReadonlySet<NetworkState> = new Set(['initial', 'created', 'error', 'delete-wait']);
/** States in which a network is on its way out or broken (`is_dead` in the reference). */
export const DEAD_STATES: ReadonlySet<NetworkState> = new Set(['deleted', 'delete-wait', 'error']);

/** What the state machine needs of a record. */
export interface StatefulRecord {
  readonly uuid: string;
  readonly state: NetworkState;
  /** ms since the Unix epoch of the last state change. */
  readonly stateUpdatedAt: number;
  /** Why the record is in `error`; null otherwise. */
  readonly error: string | null;
}

/** Thrown for a transition the table does not allow. */
export class InvalidStateTransition extends Conflict {
  readonly from: NetworkState | null;
  readonly to: NetworkState;

  constructor(uuid: string, from: NetworkState | null, to: NetworkState) {
    const legal = NETWORK_TRANSITIONS[from ?? 'null'];
    const hint = legal.length === 0 ? `${from} is terminal` : `from ${from} it may go to ${legal.join(', ')}`;
    super(`network ${uuid} cannot go from state ${from ?? '(none)'} to ${to}: ${hint}`, {
      reason: 'invalid-state-transition',
    });
    this.name = 'InvalidStateTransition';
    this.from = from;
    this.to = to;
  }
}

/** True when the table allows `from → to`, or when `from === to` (a no-op). */
export function canTransition(from: NetworkState | null, to: NetworkState): boolean {
  if (from === to) return true;
  return NETWORK_TRANSITIONS[from ?? 'null'].includes(to);
}

export function assertTransition(uuid: string, from: NetworkState | null, to: NetworkState): void {
  if (!canTransition(from, to)) throw new InvalidStateTransition(uuid, from, to);
}

/**
 * The record in state `to` as of `now` (ms). Same state: the record itself, unchanged.
 * Going to `error` this way keeps any earlier message; prefer `failNetwork`, which sets it.
 */
export function transition<T extends StatefulRecord>(record: T, to: NetworkState, now: number): T {
  assertTransition(record.uuid, record.state, to);
  if (record.state === to) return record;
  return { ...record, state: to, stateUpdatedAt: now };
}

/** Move to `error` and record why, in one step. From `error` it replaces the message. */
export function failNetwork<T extends StatefulRecord>(record: T, message: string, now: number): T {
  assertTransition(record.uuid, record.state, 'error');
  const stateUpdatedAt = record.state === 'error' ? record.stateUpdatedAt : now;
  return { ...record, state: 'error', stateUpdatedAt, error: message };
}

export function isActive(state: NetworkState): boolean {
  return ACTIVE_STATES.has(state);
}

/** The reference's `is_dead`: deleted, delete-wait or error. */
export function isDead(state: NetworkState): boolean {
  return DEAD_STATES.has(state);
}

/**
 * The reference's `requires_network_active` guard: operations that need the network's data plane
 * (attach an interface, route, ping, DNS) demand `created`; anything else is 406.
 */
export function requireReady(record: StatefulRecord): void {
  if (record.state !== 'created') {
    throw new NotReady(`network ${record.uuid} is not ready (${record.state})`, { reason: 'not-ready' });
  }
}

/**
 * Whether a DELETE request proceeds. `deleted` does not (the API answers 200 null). Deliberately
 * unlike the reference, `error` does: SF answers 404 `network is deleted` there, which leaves a
 * broken network with no way out although its own table allows error→deleted.
 */
export function canDelete(state: NetworkState): boolean {
  return state !== 'deleted';
}

/**
 * True once a deleted record has been deleted for at least `delayMs` (the reference's
 * CLEANER_DELAY): its rows and VNI reservation may then be removed and the VNI reused.
 */
export function isHardDeletable(record: StatefulRecord, now: number, delayMs: number): boolean {
  return record.state === 'deleted' && now - record.stateUpdatedAt >= delayMs;
}

/**
 * True when the state changed less than `settleMs` ago. The reconcile loop leaves such networks
 * alone (the reference skips networks whose state changed in the last 60 s).
 */
export function isSettling(record: StatefulRecord, now: number, settleMs = 60_000): boolean {
  return now - record.stateUpdatedAt < settleMs;
}
