// Compaction under a live watcher, on both stores: when the history a watch still needs is compacted, the
// state view re-reads its prefixes and carries on, so nothing is silently missed (deletes included), and the
// reconciler hears of it. Also the compactor's pass: compaction to revision - retain, and on etcd the space
// given back by defragmentation.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { StateView } from '../control/repo/state-view.ts';
import { Compactor, compactionTarget } from '../control/store/compactor.ts';
import { CompactedError, openStore, type Store, type StoreError, type WatchHandler, type WatchOptions, type Watcher } from '../control/store/index.ts';
import { EtcdCluster } from './helpers/etcd-cluster.ts';
import { until } from './helpers/until.ts';
import { NETWORKS_PREFIX } from '../control/repo/keys.ts';

/**
 * The real store, but the test holds back what the view's networks watch delivers and can end it the way
 * the store ends a watch whose history was compacted: with the CompactedError the store itself gives.
 */
function holdingStore(store: Store) {
  let held: { onError?: (e: StoreError) => void; from: number; events: number } | undefined;
  let holding = false;
  const watch = async (prefix: string, options: WatchOptions, handler: WatchHandler): Promise<Watcher> => {
    if (prefix !== NETWORKS_PREFIX) return store.watch(prefix, options, handler);
    const entry = { onError: options.onError, from: options.fromRevision ?? 0, events: 0 };
    held = entry;
    return store.watch(prefix, options, (events) => {
      if (holding) return; // lost on purpose: the view must not depend on seeing these
      entry.events += events.length;
      return handler(events);
    });
  };
  const wrapped = new Proxy(store, {
    get: (target, prop) => {
      if (prop === 'watch') return watch;
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return {
    store: wrapped,
    hold: () => { holding = true; },
    /** Ends the held watch with the error the store gives for watching its first lost revision now. */
    async endCompacted(lostFrom: number): Promise<CompactedError> {
      const err = await store.watch(NETWORKS_PREFIX, { fromRevision: lostFrom }, () => {}).then(
        (w) => { void w.cancel(); throw new Error(`revision ${lostFrom} was not compacted`); },
        (e) => e as CompactedError,
      );
      holding = false;
      held!.onError!(err);
      return err;
    },
  };
}

async function compactUnderWatcher(t: any, store: Store): Promise<void> {
  const h = holdingStore(store);
  const view = new StateView(h.store);
  await view.start();
  t.teardown(() => view.stop());
  let changes = 0;
  view.onChange(() => changes++);
  const rec = (name: string) => JSON.stringify({ uuid: name, name, namespace: 'test' });
  for (const n of ['keep', 'drop', 'change']) await store.put(`${NETWORKS_PREFIX}${n}`, rec(n));
  await view.sync();
  t.deepEqual([...view.networks.keys()].sort(), ['change', 'drop', 'keep']);

  // The view's watch now misses what follows: a delete, a change, a new record; then that history is compacted.
  h.hold();
  const first = await store.put(`${NETWORKS_PREFIX}change`, JSON.stringify({ uuid: 'change', name: 'changed', namespace: 'test' }));
  await store.delete(`${NETWORKS_PREFIX}drop`);
  const last = await store.put(`${NETWORKS_PREFIX}new`, rec('new'));
  await store.compact(last);
  const before = changes;
  const err = await h.endCompacted(first);
  t.true(err instanceof CompactedError, String(err));

  const seen = await until('the view re-read after compaction', async () => (view.networks.has('new') && !view.networks.has('drop') ? [...view.networks.keys()].sort() : undefined), 40);
  t.deepEqual(seen, ['change', 'keep', 'new']);
  t.is((view.networks.get('change') as { name: string }).name, 'changed');
  t.true(changes > before, 'the reconciler is told of the re-read');
  // And it follows again: a write after the re-read arrives.
  await store.put(`${NETWORKS_PREFIX}later`, rec('later'));
  await view.sync();
  t.true(view.networks.has('later'));
}

test('sqlite: compaction under a live watcher; the view re-reads and misses nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-compact-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openStore(`sqlite:${join(dir, 's.db')}`);
  t.teardown(() => store.close());
  await compactUnderWatcher(t, store);
});

test.serial('etcd: compaction under a live watcher; then the compactor keeps the database from growing', async (t) => {
  const etcd = await EtcdCluster.start(t, { members: 3, rootAccess: true });
  const store = await openStore(etcd.rootUrl());
  t.teardown(() => store.close());
  await compactUnderWatcher(t, store);

  // Churn: the same 200 keys rewritten with 4 KB values, 20 times over (16 MB of history).
  const churn = async () => {
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 200; i += 50) {
        await store.txn({ success: Array.from({ length: 50 }, (_, j) => ({ type: 'put' as const, key: `churn/${i + j}`, value: `${round}`.padEnd(4096, '.') })) });
      }
    }
  };
  await churn();
  const grown = await etcd.dbSize();
  const compactor = new Compactor({ store, log: pino({ level: 'silent' }), isCompactor: () => true, settings: { intervalSeconds: 60, retainRevisions: 10, defragFreeBytes: 1024 * 1024 } });
  const pass = await compactor.pass();
  t.true(pass.compactedTo !== undefined);
  t.true(pass.reclaimed.length === 3, JSON.stringify(pass.reclaimed));
  const after = await etcd.dbSize();
  t.log(`etcd DB after churn ${(grown / 2 ** 20).toFixed(1)} MiB, after compaction and defragmentation ${(after / 2 ** 20).toFixed(1)} MiB`);
  t.true(after < grown / 2, `DB ${after} bytes after, ${grown} before`);
  // Churn again and compact: it stays bounded instead of growing by the history each time.
  await churn();
  await compactor.pass();
  t.true((await etcd.dbSize()) < grown, 'a second round of churn and compaction stays under the first peak');
  t.is((await store.get('churn/0'))?.value.slice(0, 2), '19');
});

test('the compaction target keeps `retain` revisions and never goes back', (t) => {
  t.is(compactionTarget(100, 10_000, 0), undefined);
  t.is(compactionTarget(20_000, 10_000, 0), 10_000);
  t.is(compactionTarget(20_000, 10_000, 10_000), undefined);
  t.is(compactionTarget(20_001, 10_000, 10_000), 10_001);
});
