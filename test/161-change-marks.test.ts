// EtcdStore's change marks (control/store/change-marks.ts): which writes move which mark, which watches are
// checked by one; and, on a real cluster, that the marks never show through the Store: not in a range of
// everything, not in a watch of everything, not in a txn's results.
import test from 'ava';
import { GLOBAL_MARK, directoryOf, isMark, markOf, marksFor, watchMark } from '../control/store/change-marks.ts';
import { openStore } from '../control/store/index.ts';
import type { WatchEvent } from '../control/store/index.ts';
import { EtcdCluster } from './helpers/etcd-cluster.ts';

test('a key\'s directory is its prefix up to the third slash; shorter keys have none', (t) => {
  t.is(directoryOf('/appnet/interfaces/6f1c'), '/appnet/interfaces/');
  t.is(directoryOf('/appnet/interfaces/'), '/appnet/interfaces/');
  t.is(directoryOf('/appnet/connection-claims/outbound/x'), '/appnet/connection-claims/');
  t.is(directoryOf('/appnet/interfaces'), undefined);
  t.is(directoryOf('conformance/x'), undefined);
  t.is(directoryOf('a/b/c'), undefined);
  t.is(directoryOf('a/b/c/'), 'a/b/c/');
});

test('only a watch of exactly a directory is checked by a mark', (t) => {
  t.is(watchMark('/appnet/interfaces/'), markOf('/appnet/interfaces/'));
  t.is(watchMark('/appnet/connection-claims/outbound/'), undefined, 'deeper: siblings would move its mark');
  t.is(watchMark('/appnet/'), undefined, 'shallower: spans directories');
  t.is(watchMark(''), undefined);
});

test('writes move their directories\' marks once each; a delete of a prefix that spans directories moves the global one', (t) => {
  t.deepEqual(marksFor([
    { type: 'put', key: '/appnet/interfaces/a', value: '1' },
    { type: 'put', key: '/appnet/interfaces/b', value: '1' },
    { type: 'delete', key: '/appnet/macs/02:00:00:00:00:01' },
    { type: 'get', key: '/appnet/networks/', prefix: true },
    { type: 'put', key: 'short/key', value: '1' },
  ]), [markOf('/appnet/interfaces/'), markOf('/appnet/macs/')]);
  t.deepEqual(marksFor([{ type: 'delete', key: '/appnet/', prefix: true }]), [GLOBAL_MARK]);
  t.deepEqual(marksFor([{ type: 'delete', key: '/appnet/events/n1/', prefix: true }]), [markOf('/appnet/events/')]);
  t.deepEqual(marksFor([{ type: 'get', key: '/appnet/interfaces/a' }]), []);
  t.true(isMark(markOf('/appnet/interfaces/')) && isMark(GLOBAL_MARK) && !isMark('/appnet/interfaces/a'));
});

test('on etcd, marks stay out of sight: a range and a watch of everything, and txn results, hold only the callers\' keys', async (t) => {
  const c = await EtcdCluster.start(t, { members: 3, rootAccess: true });
  const store = await openStore(c.rootUrl());
  t.teardown(() => store.close());
  const events: WatchEvent[] = [];
  const w = await store.watch('', {}, (batch) => { events.push(...batch); });
  await store.put('/t/dir/a', '1');
  await store.txn({ success: [{ type: 'put', key: '/t/dir/b', value: '2' }, { type: 'put', key: '/t/other/c', value: '3' }] });
  const all = await store.range('');
  t.deepEqual(all.kvs.map((kv) => kv.key), ['/t/dir/a', '/t/dir/b', '/t/other/c']);
  t.false(all.more);
  const first = await store.range('', { limit: 1 });
  t.deepEqual(first.kvs.map((kv) => kv.key), ['/t/dir/a']);
  t.true(first.more);
  const got = await store.txn({ success: [{ type: 'get', key: '', prefix: true }, { type: 'delete', key: '/t/', prefix: true }] });
  t.deepEqual((got.results[0] as { kvs: Array<{ key: string }> }).kvs.map((kv) => kv.key), ['/t/dir/a', '/t/dir/b', '/t/other/c']);
  t.like(got.results[1], { deleted: 3 });
  await w.progress();
  t.deepEqual(events.map((e) => `${e.type} ${e.kv.key}`), ['put /t/dir/a', 'put /t/dir/b', 'put /t/other/c', 'delete /t/dir/a', 'delete /t/dir/b', 'delete /t/other/c']);
  t.is(await store.delete('/t/dir/missing').then((d) => d.deleted), 0);
  await w.cancel();

  // A write made around the store (etcdctl, a daemon without marks) moves no mark: progress() may answer
  // before its event arrives, but the event still arrives, late, and is handed over. Here the watch starts
  // at that write's revision, so its event comes from etcd's history loop (every 100 ms), after the check.
  const { Etcd3 } = await import('etcd3');
  const raw = new Etcd3({ hosts: c.members.map((m) => `http://${m.rootIp ?? m.ip}:2379`) });
  t.teardown(() => raw.close());
  const at = Number((await raw.put('/t/dir/unmarked').value('1').exec()).header.revision);
  const late: string[] = [];
  const lw = await store.watch('/t/dir/', { fromRevision: at }, (batch) => { for (const e of batch) late.push(`${e.type} ${e.kv.key}`); });
  await lw.progress();
  for (const until = Date.now() + 30_000; late.length === 0 && Date.now() < until;) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(late, ['put /t/dir/unmarked']);
  await lw.cancel();
});
