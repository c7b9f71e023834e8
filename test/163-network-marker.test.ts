// Which daemon marks a new network `created` (control/reconcile/marker.ts): the first live host by name at once,
// the others only after the grace, so that a dead first host delays a network by the grace at most.
import test from 'ava';
import { MARK_GRACE_MS, marksNetwork } from '../control/reconcile/marker.ts';

const hosts = new Map([['h2', {}], ['h10', {}], ['h3', {}]]);
const now = 1_000_000;

test('the first host by name marks a new network at once; the others wait', (t) => {
  const fresh = { stateUpdatedAt: now - 10 };
  t.true(marksNetwork('h10', hosts, fresh, now), "'h10' sorts before 'h2'");
  t.false(marksNetwork('h2', hosts, fresh, now));
  t.false(marksNetwork('h3', hosts, fresh, now));
});

test('after the grace every host marks a network still initial', (t) => {
  const stale = { stateUpdatedAt: now - MARK_GRACE_MS };
  t.true(marksNetwork('h2', hosts, stale, now));
  t.true(marksNetwork('h3', hosts, stale, now));
  t.false(marksNetwork('h3', hosts, { stateUpdatedAt: now - MARK_GRACE_MS + 1 }, now));
});

test('a daemon that sees no host records marks at once (nobody else is known to)', (t) => {
  t.true(marksNetwork('h1', new Map(), { stateUpdatedAt: now }, now));
});
