// The Store on etcd: the conformance suite in full on a real three-member cluster (Debian etcd-server, each
// member in its own network namespace), with other processes as peers, plus what only a cluster has: a
// member dying, the whole cluster going away and coming back, and the store URL forms.
import test from 'ava';
import { EtcdStore, InvalidArgumentError, StoreUnavailableError, openStore, parseStoreUrl } from '../control/store/index.ts';
import type { WatchEvent } from '../control/store/index.ts';
import { EtcdCluster } from './helpers/etcd-cluster.ts';
import { storeConformance } from './helpers/store-conformance.ts';
import { spawnStorePeer } from './helpers/store-peer.ts';

let cluster: Promise<EtcdCluster> | undefined;
const shared = () => (cluster ??= EtcdCluster.start(undefined, { members: 3, rootAccess: true }));
test.after.always(async () => { if (cluster) await (await cluster).destroy(); });

storeConformance('etcd', async () => {
  const c = await shared();
  const store = await openStore(c.rootUrl());
  return { store, spawnPeer: () => spawnStorePeer(c.rootUrl()), cleanup: () => store.close() };
});

test('store URLs: etcd:// and etcds:// list every member; malformed ones are refused naming the part', async (t) => {
  t.deepEqual(parseStoreUrl('etcd://198.18.0.201:2379,198.18.0.202:2379'), { kind: 'etcd', endpoints: ['198.18.0.201:2379', '198.18.0.202:2379'], tls: false });
  t.deepEqual(parseStoreUrl('etcds://e1.example:2379'), { kind: 'etcd', endpoints: ['e1.example:2379'], tls: true });
  t.throws(() => parseStoreUrl('etcd://198.18.0.201'), { instanceOf: InvalidArgumentError, message: /endpoint "198.18.0.201" is not host:port/ });
  t.throws(() => parseStoreUrl('etcd:198.18.0.201:2379'), { instanceOf: InvalidArgumentError, message: /write etcd:\/\// });
  await t.throwsAsync(openStore('etcd://198.18.0.201:2379', { etcd: { ca: '/ca.pem' } }), { instanceOf: InvalidArgumentError, message: /etcds:\/\// });
  await t.throwsAsync(openStore('etcd://198.18.0.201:2379', { etcd: { username: 'u' } }), { instanceOf: InvalidArgumentError, message: /both/ });
  const store = await openStore('etcd://198.18.0.201:2379');
  t.true(store instanceof EtcdStore);
  await store.close();
});

test.serial('a member dies under writes: the store moves on; a watch misses nothing', async (t) => {
  const c = await shared();
  const store = await openStore(c.rootUrl());
  t.teardown(() => store.close());
  const p = `member-death/${Date.now()}/`;
  const seen: WatchEvent[] = [];
  const w = await store.watch(p, {}, (events) => { seen.push(...events); });
  const acked: string[] = [];
  const unavailable: string[] = [];
  const leader = await c.leader();
  const writes = (async () => {
    for (let i = 0; i < 60; i++) {
      try {
        await store.put(`${p}${String(i).padStart(3, '0')}`, String(i));
        acked.push(String(i));
      } catch (e) {
        if (!(e instanceof StoreUnavailableError)) throw e;
        unavailable.push(String(i));
      }
      if (i === 20) await c.kill9(leader);
    }
  })();
  await writes;
  t.true(acked.length >= 40, `only ${acked.length} of 60 writes acknowledged (${unavailable.length} unavailable)`);
  await w.progress();
  const values = new Set(seen.map((e) => e.kv.value));
  for (const v of acked) t.true(values.has(v), `acknowledged write ${v} never reached the watch`);
  t.deepEqual(seen.map((e) => e.revision), [...seen.map((e) => e.revision)].sort((a, b) => a - b), 'events in revision order');
  await c.start(leader);
  await w.cancel();
});

test.serial('all members down: calls fail fast with StoreUnavailableError; back up, the same store and its watch carry on', async (t) => {
  const c = await shared();
  const store = await openStore(c.rootUrl());
  t.teardown(() => store.close());
  const p = `outage/${Date.now()}/`;
  const seen: WatchEvent[] = [];
  const w = await store.watch(p, {}, (events) => { seen.push(...events); });
  await store.put(`${p}before`, '1');
  await c.stopAll();
  const started = Date.now();
  const err = await t.throwsAsync(store.put(`${p}during`, '2'), { instanceOf: StoreUnavailableError });
  t.regex(err!.message, /^store unavailable: /);
  await t.throwsAsync(store.get(`${p}before`), { instanceOf: StoreUnavailableError });
  await t.throwsAsync(w.progress(), { instanceOf: StoreUnavailableError });
  t.log(`failed within ${Date.now() - started} ms of the cluster going away`);
  await c.startAll();
  let after = 0;
  for (let i = 0; i < 100 && after === 0; i++) {
    after = await store.put(`${p}after`, '3').catch(() => 0);
    if (after === 0) await new Promise((r) => setTimeout(r, 200));
  }
  t.true(after > 0, 'writes work again without reopening the store');
  await w.progress();
  t.deepEqual(seen.map((e) => e.kv.key), [`${p}before`, `${p}after`], 'the watch resumed and missed nothing');
  await w.cancel();
});

test('a range larger than gRPC\'s default 4 MiB message arrives whole', async (t) => {
  const c = await shared();
  const store = await openStore(c.rootUrl());
  t.teardown(() => store.close());
  const p = `big/${Date.now()}/`;
  const value = 'v'.repeat(500_000);
  for (let i = 0; i < 12; i++) await store.put(`${p}${String(i).padStart(2, '0')}`, value);
  const { kvs } = await store.range(p);
  t.is(kvs.length, 12);
  t.is(kvs.reduce((n, kv) => n + kv.value.length, 0), 6_000_000);
});
