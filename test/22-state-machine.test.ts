import test from 'ava';

import { ApiError } from '../control/errors.ts';
import {
  InvalidStateTransition,
  NETWORK_STATES,
  NETWORK_TRANSITIONS,
  type NetworkState,
  type StatefulRecord,
  assertTransition,
  canDelete,
  canTransition,
  failNetwork,
  isActive,
  isDead,
  isHardDeletable,
  isSettling,
  requireReady,
  transition,
} from '../control/networks/state-machine.ts';

// The reference's table, written out independently of the module's constant.
const LEGAL: ReadonlyArray<[NetworkState | null, NetworkState]> = [
  [null, 'initial'],
  ['initial', 'created'],
  ['initial', 'deleted'],
  ['initial', 'error'],
  ['created', 'deleted'],
  ['created', 'delete-wait'],
  ['created', 'error'],
  ['delete-wait', 'deleted'],
  ['delete-wait', 'error'],
  ['error', 'deleted'],
  ['error', 'error'],
];

function isLegal(from: NetworkState | null, to: NetworkState): boolean {
  return from === to || LEGAL.some(([f, t2]) => f === from && t2 === to);
}

function record(state: NetworkState, stateUpdatedAt = 1_000): StatefulRecord & { name: string } {
  return { uuid: 'net-1', name: 'n', state, stateUpdatedAt, error: null };
}

const FROM: Array<NetworkState | null> = [null, ...NETWORK_STATES];

test('the full from×to matrix matches the reference table', (t) => {
  let legal = 0;
  let illegal = 0;
  for (const from of FROM) {
    for (const to of NETWORK_STATES) {
      const expected = isLegal(from, to);
      t.is(canTransition(from, to), expected, `${from} -> ${to}`);
      if (expected) {
        t.notThrows(() => assertTransition('net-1', from, to), `${from} -> ${to}`);
        legal++;
      } else {
        const err = t.throws(() => assertTransition('net-1', from, to), { instanceOf: InvalidStateTransition });
        t.is(err?.status, 409);
        t.is(err?.from, from);
        t.is(err?.to, to);
        illegal++;
      }
    }
  }
  // 6 sources × 5 targets; 11 table entries plus 4 same-state no-ops not already in the table.
  t.is(legal + illegal, 30);
  t.is(legal, 15);
});

test('transition() applies every legal move and rejects every illegal one on records', (t) => {
  for (const from of NETWORK_STATES) {
    for (const to of NETWORK_STATES) {
      const before = record(from);
      const frozen = Object.freeze({ ...before });
      if (isLegal(from, to)) {
        const after = transition(frozen, to, 5_000);
        t.is(after.state, to);
        t.is(after.name, 'n', 'other fields are kept');
        if (from === to) {
          t.is(after, frozen, `${from} -> ${to} is a no-op returning the same object`);
        } else {
          t.is(after.stateUpdatedAt, 5_000);
          t.is(frozen.state, from, 'input not mutated');
        }
      } else {
        const err = t.throws(() => transition(frozen, to, 5_000), { instanceOf: ApiError });
        t.is(err?.status, 409, `${from} -> ${to}`);
        t.regex(err?.message ?? '', new RegExp(`network net-1 cannot go from state ${from} to ${to}`));
      }
    }
  }
});

test('the exported table is the reference table', (t) => {
  for (const from of FROM) {
    const targets = NETWORK_TRANSITIONS[from ?? 'null'];
    for (const to of NETWORK_STATES) {
      t.is(targets.includes(to), LEGAL.some(([f, t2]) => f === from && t2 === to), `${from} -> ${to}`);
    }
  }
  t.true(Object.isFrozen(NETWORK_TRANSITIONS));
});

test('reference unit cases: created→initial fails, error→deleted works, deleted→created fails', (t) => {
  t.throws(() => transition(record('created'), 'initial', 1), { instanceOf: InvalidStateTransition });
  t.is(transition(record('error'), 'deleted', 1).state, 'deleted');
  const err = t.throws(() => transition(record('deleted'), 'created', 1), { instanceOf: InvalidStateTransition });
  t.regex(err?.message ?? '', /deleted is terminal/);
});

test('illegal-transition messages list the legal targets', (t) => {
  const err = t.throws(() => transition(record('delete-wait'), 'created', 1));
  t.regex(err?.message ?? '', /from delete-wait it may go to deleted, error/);
});

test('deleted is terminal: nothing leaves it, re-setting it is a no-op', (t) => {
  const gone = record('deleted');
  for (const to of NETWORK_STATES) {
    if (to === 'deleted') t.is(transition(gone, to, 2), gone);
    else t.throws(() => transition(gone, to, 2), { instanceOf: InvalidStateTransition });
  }
});

test('failNetwork sets state and message together', (t) => {
  const failed = failNetwork(record('initial'), 'no floating gateway could be allocated', 7);
  t.is(failed.state, 'error');
  t.is(failed.error, 'no floating gateway could be allocated');
  t.is(failed.stateUpdatedAt, 7);
  const again = failNetwork(failed, 'second failure', 9);
  t.is(again.error, 'second failure');
  t.is(again.stateUpdatedAt, 7, 'error→error keeps the time the error began');
  t.throws(() => failNetwork(record('deleted'), 'x', 1), { instanceOf: InvalidStateTransition });
  for (const from of ['initial', 'created', 'delete-wait'] as const) {
    t.is(failNetwork(record(from), 'x', 1).state, 'error');
  }
});

test('isActive, isDead and canDelete', (t) => {
  const expectations: Record<NetworkState, [boolean, boolean, boolean]> = {
    initial: [true, false, true],
    created: [true, false, true],
    'delete-wait': [true, true, true],
    error: [true, true, true],
    deleted: [false, true, false],
  };
  for (const state of NETWORK_STATES) {
    t.deepEqual([isActive(state), isDead(state), canDelete(state)], expectations[state], state);
  }
});

test('requireReady: 406 unless created', (t) => {
  t.notThrows(() => requireReady(record('created')));
  for (const state of NETWORK_STATES.filter((s) => s !== 'created')) {
    const err = t.throws(() => requireReady(record(state)), { instanceOf: ApiError });
    t.is(err?.status, 406);
    t.is(err?.message, `network net-1 is not ready (${state})`);
  }
});

test('hard delete only after the cleaner delay, and settling', (t) => {
  const gone = record('deleted', 10_000);
  t.false(isHardDeletable(gone, 10_000 + 59_999, 60_000));
  t.true(isHardDeletable(gone, 10_000 + 60_000, 60_000));
  t.false(isHardDeletable(record('error', 0), 1e12, 60_000));
  t.true(isSettling(record('created', 10_000), 69_999));
  t.false(isSettling(record('created', 10_000), 70_000));
});
