// The etcd cluster the multi-machine tests stand on: three real members in their own namespaces, a leader,
// a new leader after kill -9 of the old one, and nothing left behind.
import test from 'ava';
import { EtcdCluster } from './helpers/etcd-cluster.ts';
import { run } from './helpers/run.ts';

test('three members elect a leader, elect another after kill -9, and leave nothing behind', async (t) => {
  const etcd = await EtcdCluster.start(t, { members: 3, rootAccess: true });
  await etcd.etcdctl(['put', 'k', 'v1']);
  t.regex(await etcd.etcdctl(['get', 'k']), /^k\nv1$/m);
  const first = await etcd.leader();
  await etcd.kill9(first);
  const second = await etcd.leader();
  t.not(second.name, first.name);
  t.regex(await etcd.etcdctl(['get', 'k']), /v1/);
  await etcd.start(first);
  t.true(first.running);
  t.true((await etcd.dbSize()) > 0);
  t.regex(etcd.rootUrl(), /^etcd:\/\/198\.18\.\d+\.11:2379,/);

  const owned = etcd.members.map((m) => m.ns);
  await etcd.destroy();
  const left = (await run('ip', ['netns', 'list'])).stdout;
  for (const ns of owned) t.false(left.includes(ns), `${ns} left behind`);
});
