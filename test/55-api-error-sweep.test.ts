// Error cases of the reference (shakenfist-networks.md §2 and §4) not covered by test/50 and test/51:
// name lookup of deleted and duplicate networks, 406 on a deleted network, 404s of instances and of
// unknown routes, each in the `{error, status}` shape.
import test from 'ava';
import { apiFixture } from './helpers/api-fixture.ts';

test('a name matches only active networks; a UUID still resolves once deleted; the name can be reused', async (t) => {
  const { call } = await apiFixture(t);
  const blue = (await call('POST', '/networks', 'tok-a', { name: 'blue', netblock: '198.18.4.0/24' })).body;
  t.is((await call('DELETE', '/networks/blue', 'tok-a')).body.state, 'deleted');
  t.deepEqual((await call('GET', '/networks/blue', 'tok-a')).body, { error: 'network not found: "blue"', status: 404 });
  t.is((await call('GET', `/networks/${blue.uuid}`, 'tok-a')).body.state, 'deleted');
  const again = await call('POST', '/networks', 'tok-a', { name: 'blue', netblock: '198.18.5.0/24' });
  t.is(again.status, 200, JSON.stringify(again.body));
  t.is((await call('GET', '/networks/blue', 'tok-a')).body.uuid, again.body.uuid);
});

test('a name shared across namespaces: 400 for system (use a UUID), each owner gets its own', async (t) => {
  const { call } = await apiFixture(t);
  const a = (await call('POST', '/networks', 'tok-a', { name: 'dup', netblock: '198.18.4.0/24' })).body;
  const b = (await call('POST', '/networks', 'tok-b', { name: 'dup', netblock: '198.18.5.0/24' })).body;
  const ambiguous = await call('GET', '/networks/dup', 'tok-sys');
  t.is(ambiguous.status, 400);
  t.regex(ambiguous.body.error, /^multiple networks have the name "dup" .*; use a UUID$/);
  t.is((await call('GET', '/networks/dup', 'tok-a')).body.uuid, a.uuid);
  t.is((await call('GET', '/networks/dup', 'tok-b')).body.uuid, b.uuid);
});

test('406 attaching to a deleted network, 404 to an unknown one, naming it', async (t) => {
  const { call } = await apiFixture(t);
  const net = (await call('POST', '/networks', 'tok-a', { name: 'gone', netblock: '198.18.4.0/24' })).body;
  await call('DELETE', `/networks/${net.uuid}`, 'tok-a');
  const refused = await call('POST', '/instances', 'tok-a', { name: 'vm', host: 'h1', interfaces: [{ network: net.uuid }] });
  t.is(refused.status, 406);
  t.is(refused.body.error, `network ${net.uuid} is not ready (deleted); interfaces.0 cannot attach to it`);
  const unknown = await call('POST', '/instances', 'tok-a', { name: 'vm', host: 'h1', interfaces: [{ network: 'nosuch' }] });
  t.deepEqual(unknown.body, { error: 'network not found: "nosuch"', status: 404 });
  t.deepEqual((await call('GET', '/instances', 'tok-a')).body, [], 'nothing was created');
});

test('404s: unknown instance (show, delete, interfaces), unknown route', async (t) => {
  const { call } = await apiFixture(t);
  for (const [method, url] of [['GET', '/instances/nope'], ['DELETE', '/instances/nope'], ['GET', '/instances/nope/interfaces']]) {
    t.deepEqual((await call(method, url, 'tok-a')).body, { error: 'instance not found: "nope"', status: 404 }, `${method} ${url}`);
  }
  t.deepEqual((await call('GET', '/nope', 'tok-a')).body, { error: 'no route GET /nope', status: 404 });
});
