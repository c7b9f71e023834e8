// Pruning of append-only events (networks, connections, hosts) by age and count, on a real SQLite store.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { EventPruner, eventTimeMs, eventsToPrune } from '../control/repo/event-pruner.ts';
import { SqliteStore } from '../control/store/index.ts';

const pad = (n: number, w: number) => String(n).padStart(w, '0');
const netEvent = (uuid: string, rev: number, ms: number) => `/appnet/events/${uuid}/${pad(rev, 15)}-${pad(ms, 15)}-${pad(0, 6)}`;
const DAY = 86400_000;

test('event times come from both key forms; other keys are never dated', (t) => {
  t.is(eventTimeMs(netEvent('n1', 7, 1234)), 1234);
  t.is(eventTimeMs(`/appnet/host-events/h1/${pad(99, 15)}`), 99);
  t.is(eventTimeMs('/appnet/events/n1/garbage'), undefined);
  t.is(eventTimeMs('/appnet/events/n1/'), undefined);
});

test('eventsToPrune drops the too old and the oldest beyond the count, keeps undated keys', (t) => {
  const now = 100 * DAY;
  const keys = [netEvent('n', 1, now - 10 * DAY), netEvent('n', 2, now - 2 * DAY), netEvent('n', 3, now - DAY), netEvent('n', 4, now), '/appnet/events/n/odd'];
  t.deepEqual(eventsToPrune(keys, now, { maxAgeSeconds: 7 * 86400, maxPerObject: 100 }), [keys[0]]);
  t.deepEqual(eventsToPrune(keys, now, { maxAgeSeconds: 30 * 86400, maxPerObject: 2 }), [keys[0], keys[1]]);
  t.deepEqual(eventsToPrune(keys, now, { maxAgeSeconds: 30 * 86400, maxPerObject: 10 }), []);
});

test('a pass prunes every object of every prefix in bounded txns and leaves the rest', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-prune-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new SqliteStore(join(dir, 's.db'));
  t.teardown(() => store.close());
  const now = 1000 * DAY;
  // n1: 450 fresh events (over the count of 300); n2: 5 old and 5 fresh; a connection and a host: old ones.
  for (let i = 0; i < 450; i += 50) {
    await store.txn({ success: Array.from({ length: 50 }, (_, j) => ({ type: 'put' as const, key: netEvent('n1', i + j + 1, now - 1000 + i + j), value: '{}' })) });
  }
  for (let i = 0; i < 10; i++) await store.put(netEvent('n2', 1000 + i, i < 5 ? now - 8 * DAY : now), '{}');
  await store.put(`/appnet/connection-events/c1/${pad(5, 15)}-${pad(now - 9 * DAY, 15)}-${pad(0, 6)}`, '{}');
  await store.put(`/appnet/host-events/h1/${pad(now - 9 * DAY, 15)}`, '{}');
  await store.put(`/appnet/host-events/h1/${pad(now, 15)}`, '{}');
  await store.put('/appnet/networks/n1', '{}'); // not an event

  const pruner = new EventPruner({ store, limits: { maxAgeSeconds: 7 * 86400, maxPerObject: 300 }, intervalSeconds: 60, isPruner: () => true, log: pino({ level: 'silent' }), now: () => now });
  t.is(await pruner.prune(), 150 + 5 + 1 + 1);
  const n1 = (await store.range('/appnet/events/n1/')).kvs.map((kv) => kv.key);
  t.is(n1.length, 300);
  t.is(n1[0], netEvent('n1', 151, now - 1000 + 150)); // the newest 300 stay
  t.is((await store.range('/appnet/events/n2/')).kvs.length, 5);
  t.is((await store.range('/appnet/connection-events/')).kvs.length, 0);
  t.is((await store.range('/appnet/host-events/')).kvs.length, 1);
  t.truthy(await store.get('/appnet/networks/n1'));
  t.is(await pruner.prune(), 0); // a second pass finds nothing
});
