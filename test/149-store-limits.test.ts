// etcd's request limits hold on every store (control/store/store.ts MAX_TXN_OPS, MAX_REQUEST_BYTES), so a
// write that would fail on etcd fails on SQLite too, in tests; and the API's largest writes fit in them.
import test from 'ava';
import { MAX_INTERFACES } from '../control/instances/instance.ts';
import { InvalidArgumentError, MAX_REQUEST_BYTES, MAX_TXN_OPS } from '../control/store/index.ts';
import { apiFixture } from './helpers/api-fixture.ts';

test('every store refuses a txn over 127 operations or compares, and a request over 1.5 MiB, naming the limit', async (t) => {
  const { store } = await apiFixture(t);
  const ops = (n: number) => Array.from({ length: n }, (_, i) => ({ type: 'put' as const, key: `limits/${i}`, value: '1' }));
  t.is((await store.txn({ success: ops(MAX_TXN_OPS) })).succeeded, true);
  const tooMany = await t.throwsAsync(store.txn({ success: ops(MAX_TXN_OPS + 1) }), { instanceOf: InvalidArgumentError });
  t.regex(tooMany!.message, /128 operations in one branch; the store takes at most 127/);
  const compares = Array.from({ length: MAX_TXN_OPS + 1 }, (_, i) => ({ key: `limits/${i}`, target: 'version' as const, op: '>' as const, value: 0 }));
  await t.throwsAsync(store.txn({ compare: compares, success: [] }), { instanceOf: InvalidArgumentError, message: /128 compares/ });
  const big = 'x'.repeat(MAX_REQUEST_BYTES);
  await t.throwsAsync(store.put('limits/big', big), { instanceOf: InvalidArgumentError, message: /exceeds the store's limit of 1572864 bytes/ });
  await t.throwsAsync(store.txn({ success: [{ type: 'put', key: 'limits/a', value: big.slice(0, 800_000) }, { type: 'put', key: 'limits/b', value: big.slice(0, 800_000) }] }),
    { instanceOf: InvalidArgumentError, message: /split it into several txns/ });
});

test('the widest instance (one network per interface) is one txn within the limits; a wider one is a 400 naming interfaces', async (t) => {
  const { call } = await apiFixture(t);
  const networks: string[] = [];
  for (let i = 0; i < MAX_INTERFACES; i++) {
    const r = await call('POST', '/networks', 'tok-a', { name: `n${i}`, netblock: `198.18.${100 + i}.0/24`, provide_dhcp: false, provide_nat: false });
    t.is(r.status, 200, JSON.stringify(r.body));
    networks.push(r.body.uuid);
  }
  const wide = await call('POST', '/instances', 'tok-a', { name: 'wide', host: 'h1', interfaces: networks.map((network) => ({ network })) });
  t.is(wide.status, 200, JSON.stringify(wide.body));
  t.is(wide.body.interfaces.length, MAX_INTERFACES);
  t.is((await call('DELETE', `/instances/${wide.body.uuid}`, 'tok-a')).status, 200);

  const thousand = await call('POST', '/instances', 'tok-a', { name: 'huge', host: 'h1', interfaces: Array.from({ length: 1000 }, () => ({ network: networks[0] })) });
  t.is(thousand.status, 400);
  t.regex(thousand.body.error, /interfaces has 1000 entries; an instance may have at most 25/);
});

test('deleting every network of a namespace goes network by network, whatever their number', async (t) => {
  const { call } = await apiFixture(t);
  for (let i = 0; i < 200; i++) {
    t.is((await call('POST', '/networks', 'tok-b', { name: `d${i}`, netblock: '198.18.200.0/24', provide_dhcp: false, provide_nat: false })).status, 200);
  }
  const del = await call('DELETE', '/networks', 'tok-b', { confirm: true });
  t.is(del.status, 200, JSON.stringify(del.body));
  t.is(del.body.length, 200);
  t.deepEqual((await call('GET', '/networks', 'tok-b')).body.filter((n: any) => n.state !== 'deleted'), []);
});
