// The connection status machine (reference A3), as data and one pure function.
//
//   (none) --create-----------> WAITING
//   WAITING --link-up----------> ESTABLISHED     both endpoints attached, link handshake complete
//   ESTABLISHED --link-down----> WAITING         an endpoint (host, daemon, instance) went away
//   WAITING|ESTABLISHED --setup-failed--> ERROR  cannot be set up (e.g. no free link address)
//   WAITING|ESTABLISHED|ERROR --remove--> TERMINATED
//   TERMINATED --torn-down-----> (deleted)       the data plane has removed the link
//
// Every status change is a ConnectionEvent. Reports that arrive late are not errors, because the
// data plane reports asynchronously and may race a removal: a TERMINATED connection ignores
// link-up, link-down and setup-failed (as Nalej's ignores "running" events once terminating), an
// ERROR one ignores link-down and setup-failed, and a report of the status a connection already
// has changes at most its reason. ERROR is final short of removal (the docs: "cannot be reversed
// or retried"): link-up on it is a 409, as is torn-down on anything not TERMINATED.

import { Conflict } from '../errors.ts';
import type { ConnectionEvent, ConnectionRecord, ConnectionStatus } from './model.ts';

export type StatusInput =
  | { type: 'link-up' }
  | { type: 'link-down'; reason: string }
  | { type: 'setup-failed'; reason: string }
  | { type: 'remove'; reason: string }
  | { type: 'torn-down' };

type Rule = ConnectionStatus | 'deleted' | 'ignore' | 'illegal';

/** The transition table: the next status for each (status, input). */
export const STATUS_TABLE: Readonly<Record<ConnectionStatus, Readonly<Record<StatusInput['type'], Rule>>>> = Object.freeze({
  WAITING: { 'link-up': 'ESTABLISHED', 'link-down': 'WAITING', 'setup-failed': 'ERROR', remove: 'TERMINATED', 'torn-down': 'illegal' },
  ESTABLISHED: { 'link-up': 'ESTABLISHED', 'link-down': 'WAITING', 'setup-failed': 'ERROR', remove: 'TERMINATED', 'torn-down': 'illegal' },
  ERROR: { 'link-up': 'illegal', 'link-down': 'ignore', 'setup-failed': 'ignore', remove: 'TERMINATED', 'torn-down': 'illegal' },
  TERMINATED: { 'link-up': 'ignore', 'link-down': 'ignore', 'setup-failed': 'ignore', remove: 'TERMINATED', 'torn-down': 'deleted' },
});

export type StatusOutcome =
  /** The record to write and the event that records the change. */
  | { kind: 'changed'; record: ConnectionRecord; event: ConnectionEvent }
  /** Only the reason changed (same status): write the record, no event. */
  | { kind: 'reason'; record: ConnectionRecord }
  /** Nothing to write. */
  | { kind: 'unchanged'; record: ConnectionRecord }
  /** Delete the record; the event records it. */
  | { kind: 'deleted'; event: ConnectionEvent };

/** Thrown for an input the table does not allow from the record's status (409). */
export class InvalidConnectionTransition extends Conflict {
  constructor(record: ConnectionRecord, input: StatusInput['type']) {
    const why =
      input === 'torn-down'
        ? 'only a TERMINATED connection can be finished; remove it first'
        : 'an ERROR connection cannot be established; remove it and add it again';
    super(`connection ${record.connection_id} is ${record.status}: ${input} is not allowed (${why})`, {
      reason: 'invalid-status-transition',
    });
    this.name = 'InvalidConnectionTransition';
  }
}

function reasonOf(input: StatusInput): string | null {
  return 'reason' in input ? input.reason : null;
}

function messageOf(to: ConnectionStatus | null, reason: string | null): string {
  const what = to === null ? 'deleted' : `status changed to ${to}`;
  return reason === null ? what : `${what}: ${reason}`;
}

/** The event of a change from `from` to `to` (null: created / deleted). */
export function statusEvent(
  record: ConnectionRecord,
  from: ConnectionStatus | null,
  to: ConnectionStatus | null,
  reason: string | null,
  now: number,
): ConnectionEvent {
  return {
    timestamp: now / 1000,
    connection_id: record.connection_id,
    namespace: record.namespace,
    target_namespace: record.target_namespace,
    from,
    to,
    reason,
    message: from === null ? messageOf(to, reason).replace('status changed to', 'created in') : messageOf(to, reason),
  };
}

/** Applies one input to a record; pure. Throws InvalidConnectionTransition for an illegal one. */
export function applyStatus(record: ConnectionRecord, input: StatusInput, now: number): StatusOutcome {
  const rule = STATUS_TABLE[record.status][input.type];
  if (rule === 'illegal') throw new InvalidConnectionTransition(record, input.type);
  if (rule === 'ignore') return { kind: 'unchanged', record };
  if (rule === 'deleted') return { kind: 'deleted', event: statusEvent(record, record.status, null, null, now) };
  // ESTABLISHED clears the reason: it described why the connection was not up.
  const reason = rule === 'ESTABLISHED' ? null : reasonOf(input);
  if (rule === record.status) {
    // A repeated report; `remove` of a TERMINATED connection keeps the first reason.
    if (reason === record.reason || input.type === 'remove') return { kind: 'unchanged', record };
    return { kind: 'reason', record: { ...record, reason } };
  }
  const next: ConnectionRecord = { ...record, status: rule, reason, status_updated_at: now };
  if (rule === 'ESTABLISHED' && next.established_at === undefined) next.established_at = now;
  return { kind: 'changed', record: next, event: statusEvent(record, record.status, rule, reason, now) };
}
