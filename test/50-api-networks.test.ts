// Contract tests of the /networks REST API against a real SQLite store file.
import test from 'ava';
import { NetworkRepository } from '../control/repo/networks.ts';
import { apiFixture, POOL } from './helpers/api-fixture.ts';

async function setup(t: { teardown: (fn: () => Promise<void> | void) => void }, interfaces = 0) {
  let count = interfaces;
  const f = await apiFixture(t, { interfaceCount: () => count });
  return { ...f, setInterfaces: (n: number) => (count = n) };
}

test('create, get by uuid and name, list, delete', async (t) => {
  const { call } = await setup(t);
  const created = await call('POST', '/networks', 'tok-a', { netblock: '198.18.4.0/24', name: 'net1' });
  t.is(created.status, 200);
  t.like(created.body, {
    state: 'initial',
    name: 'net1',
    namespace: 'alpha',
    netblock: '198.18.4.0/24',
    provide_dhcp: true,
    provide_nat: true,
    provide_dns: false,
    floating_gateway: null,
    metadata: {},
  });
  t.true(created.body.vxlan_id >= 1 && created.body.vxlan_id <= 0xffffff);
  const uuid = created.body.uuid as string;

  t.deepEqual((await call('GET', `/networks/${uuid}`, 'tok-a')).body, created.body);
  t.is((await call('GET', '/networks/net1', 'tok-a')).body.uuid, uuid);
  const list = await call('GET', '/networks', 'tok-a');
  t.deepEqual(list.body.map((n: { uuid: string }) => n.uuid), [uuid]);

  const del = await call('DELETE', `/networks/${uuid}`, 'tok-a');
  t.is(del.status, 200);
  t.is(del.body.state, 'deleted');
  t.deepEqual((await call('GET', '/networks', 'tok-a')).body, []);
  t.is((await call('GET', '/networks?all=true', 'tok-a')).body.length, 1);
  // A UUID still resolves once deleted; deleting again answers null.
  t.is((await call('GET', `/networks/${uuid}`, 'tok-a')).body.state, 'deleted');
  const again = await call('DELETE', `/networks/${uuid}`, 'tok-a');
  t.is(again.status, 200);
  t.is(again.body, null);
  // A name resolves only while active.
  t.is((await call('GET', '/networks/net1', 'tok-a')).status, 404);
});

test('explicit false flags are respected; VNIs are unique', async (t) => {
  const { call, store } = await setup(t);
  const a = await call('POST', '/networks', 'tok-a', {
    netblock: '198.18.8.0/29', name: 'small', provide_dhcp: false, provide_nat: false, provide_dns: true,
  });
  t.is(a.status, 200);
  t.like(a.body, { provide_dhcp: false, provide_nat: false, provide_dns: true });
  const b = await call('POST', '/networks', 'tok-a', { netblock: '198.18.8.0/29', name: 'small2' });
  t.not(a.body.vxlan_id, b.body.vxlan_id);
  const vni = await store.get(`/appnet/vni/${a.body.vxlan_id}`);
  t.is(JSON.parse(vni!.value).network_uuid, a.body.uuid);
});

test('400: parse, host bits, size, overlap with the floating pool, unknown and mistyped fields', async (t) => {
  const { call } = await setup(t);
  const cases: Array<[unknown, RegExp]> = [
    [{ netblock: 'banana', name: 'x' }, /^cannot parse netblock: "banana"/],
    [{ netblock: '198.18.4.0', name: 'x' }, /^cannot parse netblock: .*no prefix length/],
    [{ netblock: '198.18.4.1/24', name: 'x' }, /^cannot parse netblock: .*host bits set.*198\.18\.4\.0\/24/],
    [{ netblock: '198.18.4.0/30', name: 'x' }, /^network is below minimum size of \/29/],
    [{ netblock: '198.18.4.0/32', name: 'x' }, /^network is below minimum size of \/29/],
    [{ netblock: '198.19.0.128/25', name: 'x' }, /overlaps the floating pool 198\.19\.0\.0\/24/],
    [{ netblock: 'fd00::/64', name: 'x' }, /only IPv4/],
    [{ name: 'x' }, /^netblock is required/],
    [{ netblock: '198.18.4.0/24' }, /^name is required/],
    [{ netblock: '198.18.4.0/24', name: 'x', colour: 'red' }, /^unknown parameter "colour".*accepted: netblock/],
    [{ netblock: '198.18.4.0/24', name: 'x', provide_dhcp: 'maybe' }, /^provide_dhcp must be boolean/],
    [{ netblock: 42, name: 'x' }, /^netblock must be string/],
    [{ netblock: '198.18.4.0/24', name: 'bad name!' }, /^name "bad name!" is invalid/],
  ];
  for (const [body, pattern] of cases) {
    const res = await call('POST', '/networks', 'tok-a', body);
    t.is(res.status, 400, JSON.stringify(body));
    t.is(res.body.status, 400);
    t.regex(res.body.error, pattern, JSON.stringify(body));
  }
  t.deepEqual((await call('GET', '/networks', 'tok-a')).body, []);
});

test('401 without or with a bad token, and for a foreign namespace; 404 unknown namespace', async (t) => {
  const { call } = await setup(t);
  const none = await call('GET', '/networks', null);
  t.deepEqual(none, { status: 401, body: { error: 'no bearer token: send "Authorization: Bearer <token>"', status: 401 } });
  const bad = await call('GET', '/networks', 'nope');
  t.deepEqual(bad.body, { error: 'the bearer token is not valid: it is neither a configured token nor a JWT', status: 401 });
  const foreign = await call('POST', '/networks', 'tok-a', { netblock: '198.18.4.0/24', name: 'x', namespace: 'beta' });
  t.is(foreign.status, 401);
  t.regex(foreign.body.error, /may not create networks in namespace "beta"/);
  const sys = await call('POST', '/networks', 'tok-sys', { netblock: '198.18.4.0/24', name: 'x', namespace: 'beta' });
  t.is(sys.status, 200);
  t.is(sys.body.namespace, 'beta');
  const missing = await call('POST', '/networks', 'tok-sys', { netblock: '198.18.4.0/24', name: 'x', namespace: 'gamma' });
  t.deepEqual(missing.body, { error: 'namespace "gamma" not found', status: 404 });
});

test('namespace isolation: another namespace sees 404, system sees all', async (t) => {
  const { call } = await setup(t);
  const a = (await call('POST', '/networks', 'tok-a', { netblock: '198.18.4.0/24', name: 'shared' })).body;
  const b = (await call('POST', '/networks', 'tok-b', { netblock: '198.18.4.0/24', name: 'shared' })).body;
  for (const path of ['', '/events', '/addresses', '/metadata']) {
    const res = await call('GET', `/networks/${a.uuid}${path}`, 'tok-b');
    t.is(res.status, 404, path);
    t.deepEqual(res.body, { error: `network not found: "${a.uuid}"`, status: 404 });
  }
  t.is((await call('DELETE', `/networks/${a.uuid}`, 'tok-b')).status, 404);
  t.is((await call('PUT', `/networks/${a.uuid}/metadata/k`, 'tok-b', { value: 'v' })).status, 404);
  t.is((await call('GET', '/networks/shared', 'tok-b')).body.uuid, b.uuid);
  t.deepEqual((await call('GET', '/networks', 'tok-b')).body.map((n: { uuid: string }) => n.uuid), [b.uuid]);
  const all = (await call('GET', '/networks', 'tok-sys')).body.map((n: { uuid: string }) => n.uuid);
  t.deepEqual(all, [a.uuid, b.uuid]);
  // The same name in two namespaces is ambiguous for system.
  const ambiguous = await call('GET', '/networks/shared', 'tok-sys');
  t.is(ambiguous.status, 400);
  t.regex(ambiguous.body.error, /^multiple networks have the name "shared"/);
  // DELETE with a namespace the network is not in.
  const wrongNs = await call('DELETE', `/networks/${a.uuid}`, 'tok-sys', { namespace: 'beta' });
  t.deepEqual(wrongNs.body, { error: 'network not in namespace "beta"', status: 404 });
});

test('403 deleting the floating network; 409 for a taken vxlan_id; 403 vxlan_id for non-system', async (t) => {
  const { call } = await setup(t);
  const floating = await call('DELETE', '/networks/floating', 'tok-sys');
  t.deepEqual(floating.body, { error: 'the floating network cannot be deleted', status: 403 });
  t.is((await call('GET', '/networks/floating', 'tok-a')).status, 404);
  t.is((await call('POST', '/networks', 'tok-sys', { netblock: '198.18.4.0/24', name: 'v', namespace: 'alpha', vxlan_id: 4242 })).body.vxlan_id, 4242);
  const taken = await call('POST', '/networks', 'tok-sys', { netblock: '198.18.5.0/24', name: 'w', namespace: 'alpha', vxlan_id: 4242 });
  t.is(taken.status, 409);
  t.regex(taken.body.error, /vxlan_id 4242 is already used/);
  const notAllowed = await call('POST', '/networks', 'tok-a', { netblock: '198.18.5.0/24', name: 'w', vxlan_id: 7 });
  t.is(notAllowed.status, 403);
});

test('delete with interfaces goes to delete-wait; delete-all rules and 403 {deleted, unable}', async (t) => {
  const { call, repo, setInterfaces } = await setup(t);
  const n1 = (await call('POST', '/networks', 'tok-a', { netblock: '198.18.4.0/24', name: 'n1' })).body;
  const n2 = (await call('POST', '/networks', 'tok-a', { netblock: '198.18.5.0/24', name: 'n2' })).body;
  await repo.markCreated(n1.uuid);
  t.is((await call('GET', `/networks/${n1.uuid}`, 'tok-a')).body.state, 'created');

  t.deepEqual((await call('DELETE', '/networks', 'tok-a', { confirm: false })).body.status, 400);
  t.regex((await call('DELETE', '/networks', 'tok-a', {})).body.error, /^confirm is required/);
  t.regex((await call('DELETE', '/networks', 'tok-sys', { confirm: true })).body.error, /must name the namespace/);
  t.is((await call('DELETE', '/networks', 'tok-a', { confirm: true, namespace: 'beta' })).status, 401);

  setInterfaces(1);
  const busy = await call('DELETE', '/networks', 'tok-a', { confirm: true });
  t.is(busy.status, 403);
  t.deepEqual(busy.body, { error: { deleted: [], unable: [n1.uuid, n2.uuid] }, status: 403 });
  const wait = await call('DELETE', `/networks/${n1.uuid}`, 'tok-a');
  t.is(wait.body.state, 'delete-wait');

  setInterfaces(0);
  const done = await call('DELETE', '/networks', 'tok-sys', { confirm: true, namespace: 'alpha' });
  t.is(done.status, 200);
  t.deepEqual(done.body, [n1.uuid, n2.uuid]);
  t.deepEqual((await call('DELETE', '/networks', 'tok-a', { confirm: true })).body, []);
});

test('metadata round trips', async (t) => {
  const { call } = await setup(t);
  const n = (await call('POST', '/networks', 'tok-a', { netblock: '198.18.4.0/24', name: 'meta' })).body;
  const base = `/networks/${n.uuid}/metadata`;
  t.deepEqual((await call('GET', base, 'tok-a')).body, {});
  t.deepEqual((await call('POST', base, 'tok-a', { key: 'owner', value: 'ops' })).body, { owner: 'ops' });
  t.deepEqual((await call('PUT', `${base}/tier`, 'tok-a', { value: 'gold' })).body, { owner: 'ops', tier: 'gold' });
  t.deepEqual((await call('PUT', `/networks/meta/metadata/tier`, 'tok-a', { value: 'silver' })).body, { owner: 'ops', tier: 'silver' });
  t.deepEqual((await call('DELETE', `${base}/owner`, 'tok-a')).body, { tier: 'silver' });
  t.deepEqual((await call('GET', `/networks/${n.uuid}`, 'tok-a')).body.metadata, { tier: 'silver' });
  t.is((await call('DELETE', `${base}/owner`, 'tok-a')).status, 404);
  const noKey = await call('POST', base, 'tok-a', { value: 'x' });
  t.deepEqual(noKey.body, { error: 'key is required in the request body', status: 400 });
  const noValue = await call('PUT', `${base}/k`, 'tok-a', {});
  t.deepEqual(noValue.body, { error: 'value is required in the request body', status: 400 });
});

test('events: newest first, filter by type, limit', async (t) => {
  const { call, repo } = await setup(t);
  const n = (await call('POST', '/networks', 'tok-a', { netblock: '198.18.4.0/24', name: 'ev' })).body;
  for (const v of ['1', '2', '3']) await call('PUT', `/networks/${n.uuid}/metadata/k${v}`, 'tok-a', { value: v });
  await repo.markCreated(n.uuid);
  const all = (await call('GET', `/networks/${n.uuid}/events`, 'tok-a')).body;
  t.deepEqual(all.map((e: { message: string }) => e.message), [
    'state changed to created',
    'set metadata key "k3"',
    'set metadata key "k2"',
    'set metadata key "k1"',
    'create request from REST API',
  ]);
  t.like(all[4], { type: 'audit', duration: null, extra: { vxlan_id: n.vxlan_id, netblock: '198.18.4.0/24' } });
  const limited = (await call('GET', `/networks/${n.uuid}/events?limit=2`, 'tok-a')).body;
  t.deepEqual(limited.map((e: { message: string }) => e.message), ['state changed to created', 'set metadata key "k3"']);
  const mutate = (await call('GET', `/networks/${n.uuid}/events?event_type=mutate`, 'tok-a')).body;
  t.deepEqual(mutate.map((e: { type: string }) => e.type), ['mutate']);
  const bad = await call('GET', `/networks/${n.uuid}/events?limit=0`, 'tok-a');
  t.deepEqual(bad.body, { error: 'limit must be an integer 1..10000, got "0"', status: 400 });
});

test('addresses lists network, gateway and broadcast reservations', async (t) => {
  const { call } = await setup(t);
  const n = (await call('POST', '/networks', 'tok-a', { netblock: '198.18.4.0/29', name: 'addr' })).body;
  const rows = (await call('GET', `/networks/${n.uuid}/addresses`, 'tok-a')).body;
  t.deepEqual(
    rows.map((r: { address: string; type: string; user: unknown; comment: unknown }) => [r.address, r.type, r.user, r.comment]),
    [
      ['198.18.4.0', 'network', ['network', n.uuid], null],
      ['198.18.4.1', 'gateway', ['network', n.uuid], null],
      ['198.18.4.7', 'broadcast', ['network', n.uuid], null],
    ],
  );
  t.is(typeof rows[0].when, 'number');
});

test('openapi.json lists every route the app serves and needs no token', async (t) => {
  const { call } = await setup(t);
  const res = await call('GET', '/openapi.json', null);
  t.is(res.status, 200);
  const paths = res.body.paths as Record<string, Record<string, unknown>>;
  const ops = Object.entries(paths).flatMap(([p, m]) => Object.keys(m).map((verb) => `${verb.toUpperCase()} ${p}`)).sort();
  t.deepEqual(ops, [
    'DELETE /auth/namespaces/{ns}',
    'DELETE /auth/namespaces/{ns}/keys/{key}',
    'DELETE /auth/signing-keys',
    'DELETE /connections',
    'DELETE /connections/{id}',
    'DELETE /instances/{ref}',
    'DELETE /interfaces/{uuid}',
    'DELETE /interfaces/{uuid}/metadata/{key}',
    'DELETE /networks',
    'DELETE /networks/{ref}',
    'DELETE /networks/{ref}/metadata/{key}',
    'GET /',
    'GET /auth/namespaces',
    'GET /auth/namespaces/{ns}',
    'GET /auth/namespaces/{ns}/keys',
    'GET /connections',
    'GET /connections/{id}',
    'GET /connections/{id}/events',
    'GET /inbounds/available',
    'GET /instances',
    'GET /instances/{ref}',
    'GET /instances/{ref}/env',
    'GET /instances/{ref}/interfaces',
    'GET /interfaces/{uuid}',
    'GET /interfaces/{uuid}/metadata',
    'GET /networks',
    'GET /networks/{ref}',
    'GET /networks/{ref}/addresses',
    'GET /networks/{ref}/events',
    'GET /networks/{ref}/interfaces',
    'GET /networks/{ref}/metadata',
    'GET /outbounds/available',
    'GET /ui',
    'GET /ui/*',
    'POST /auth',
    'POST /auth/namespaces',
    'POST /auth/namespaces/{ns}/keys',
    'POST /connections',
    'POST /instances',
    'POST /instances/{ref}/interfaces',
    'POST /interfaces/{uuid}/metadata',
    'POST /networks',
    'POST /networks/{ref}/metadata',
    'PUT /auth/namespaces/{ns}/keys',
    'PUT /interfaces/{uuid}/metadata/{key}',
    'PUT /networks/{ref}/metadata/{key}',
  ]);
  const post = paths['/networks'].post as { requestBody: { content: { 'application/json': { schema: { required: string[] } } } } };
  t.deepEqual(post.requestBody.content['application/json'].schema.required, ['netblock', 'name']);
});

test('malformed JSON is a 400 in the error format', async (t) => {
  const { app } = await setup(t);
  const res = await app.inject({
    method: 'POST', url: '/networks', payload: '{"netblock":', headers: { authorization: 'Bearer tok-a', 'content-type': 'application/json' },
  });
  t.is(res.statusCode, 400);
  t.is(res.json().status, 400);
  t.is(typeof res.json().error, 'string');
});

test('concurrent metadata writes through two repositories both land (compare-and-swap retry)', async (t) => {
  const { call, store } = await setup(t);
  const n = (await call('POST', '/networks', 'tok-a', { netblock: '198.18.4.0/24', name: 'cas' })).body;
  const other = new NetworkRepository({ store, floatingPool: POOL });
  const mine = new NetworkRepository({ store, floatingPool: POOL });
  await Promise.all([other.setMetadata(n.uuid, 'a', '1'), mine.setMetadata(n.uuid, 'b', '2'), other.setMetadata(n.uuid, 'c', '3')]);
  t.deepEqual((await call('GET', `/networks/${n.uuid}/metadata`, 'tok-a')).body, { a: '1', b: '2', c: '3' });
});

test('cached lists never lag a write: networks and instances appear, change and go at once, per namespace', async (t) => {
  const { call } = await setup(t);
  const names = async (url: string, token: string) => (await call('GET', url, token)).body.map((x: any) => `${x.name}:${x.state}`).sort();
  t.deepEqual(await names('/networks', 'tok-a'), []);
  const n1 = (await call('POST', '/networks', 'tok-a', { netblock: '198.18.4.0/24', name: 'one' })).body;
  t.deepEqual(await names('/networks', 'tok-a'), ['one:initial']);
  t.deepEqual(await names('/networks', 'tok-b'), [], 'another namespace does not get alpha\'s cached list');
  t.deepEqual(await names('/networks?all', 'tok-sys'), ['one:initial']);
  await call('POST', '/networks', 'tok-b', { netblock: '198.18.5.0/24', name: 'two' });
  t.deepEqual(await names('/networks?all', 'tok-sys'), ['one:initial', 'two:initial']);
  await call('DELETE', `/networks/${n1.uuid}`, 'tok-a');
  t.deepEqual(await names('/networks', 'tok-a'), [], 'the deleted network is not served from the cache');

  t.deepEqual(await names('/instances', 'tok-a'), []);
  await call('POST', '/instances', 'tok-a', { name: 'vm1', host: 'h1' });
  t.deepEqual((await names('/instances', 'tok-a')).map((s: string) => s.split(':')[0]), ['vm1']);
  await call('DELETE', '/instances/vm1', 'tok-a');
  t.deepEqual(await names('/instances', 'tok-a'), []);
});
