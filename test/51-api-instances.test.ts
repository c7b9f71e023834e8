// Contract tests of the /instances and /interfaces REST API against a real SQLite store file.
import test from 'ava';
import { apiFixture, POOL } from './helpers/api-fixture.ts';
import { allocateMac, checkRequestedMac, parseMac } from '../control/instances/mac.ts';
import { defaultNetns } from '../control/instances/instance.ts';
import { transitionInterface, newInterfaceRecord } from '../control/instances/interface.ts';
import { NetworkRepository } from '../control/repo/networks.ts';


async function setup(t: { teardown: (fn: () => Promise<void> | void) => void }) {
  const { app, store, repo, call } = await apiFixture(t);
  const network = async (name: string, netblock: string, token = 'tok-a') => {
    const res = await call('POST', '/networks', token, { name, netblock });
    if (res.status !== 200) throw new Error(JSON.stringify(res.body));
    return res.body as { uuid: string; name: string };
  };
  return { store, repo, call, network };
}

const lastOctet = (ip: string) => Number(ip.split('.')[3]);

test('pure cores: MACs, default netns, interface states', (t) => {
  const used = new Set(['02:00:00:00:00:00']);
  let n = 0;
  const seq = [0, 0, 0.5];
  const mac = allocateMac(used, () => seq[n++]);
  t.is(mac, '02:00:00:80:00:00');
  t.regex(allocateMac(new Set()), /^02:00:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$/);
  t.is(parseMac('02-AB-00-00-00-01'), '02:ab:00:00:00:01');
  t.throws(() => parseMac('01:00:00:00:00:01'), { message: /multicast/ });
  t.throws(() => parseMac('nope'), { message: /macaddr "nope" is not a MAC/ });
  t.throws(() => checkRequestedMac('02:00:00:00:00:00', used), { message: /already used/ });
  t.is(defaultNetns('1234abcd-0000-4000-8000-000000000000'), 'inst-1234abcd');
  const rec = newInterfaceRecord({
    uuid: 'i', network_uuid: 'n', instance_uuid: 's', namespace: 'alpha', macaddr: mac, ipv4: null, order: 0, now: 1,
  });
  t.is(rec.state, 'initial');
  const created = transitionInterface(rec, 'created', 2);
  t.is(created.state, 'created');
  t.is(transitionInterface(created, 'created', 3), created);
  const deleted = transitionInterface(created, 'deleted', 4);
  t.throws(() => transitionInterface(deleted, 'created', 5), { message: /deleted is terminal/ });
  t.throws(() => transitionInterface(created, 'initial', 5), { message: /cannot go from state created to initial/ });
});

test('create an instance with two interfaces on two networks; addresses are in IPAM', async (t) => {
  const { call, network, repo } = await setup(t);
  const n1 = await network('n1', '198.18.4.0/24');
  const n2 = await network('n2', '198.18.5.0/24');
  await repo.markCreated(n1.uuid);
  const res = await call('POST', '/instances', 'tok-a', {
    name: 'vm1', host: 'hv1.example', interfaces: [{ network: n1.uuid }, { network: 'n2' }],
  });
  t.is(res.status, 200, JSON.stringify(res.body));
  const inst = res.body;
  t.like(inst, { name: 'vm1', namespace: 'alpha', host: 'hv1.example', metadata: {} });
  t.is(inst.netns, `inst-${inst.uuid.replace(/-/g, '').slice(0, 8)}`);
  t.is(inst.interfaces.length, 2);
  const [i0, i1] = inst.interfaces;
  t.like(i0, { network_uuid: n1.uuid, instance_uuid: inst.uuid, order: 0, state: 'initial', floating: null, metadata: {} });
  t.like(i1, { network_uuid: n2.uuid, order: 1 });
  t.regex(i0.ipv4, /^198\.18\.4\./);
  t.regex(i1.ipv4, /^198\.18\.5\./);
  for (const i of [i0, i1]) {
    t.true(lastOctet(i.ipv4) >= 2 && lastOctet(i.ipv4) <= 254);
    t.regex(i.macaddr, /^02:00:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$/);
  }
  t.not(i0.macaddr, i1.macaddr);

  const rows = (await call('GET', `/networks/${n1.uuid}/addresses`, 'tok-a')).body;
  const row = rows.find((r: { address: string }) => r.address === i0.ipv4);
  t.like(row, { type: 'instance', user: ['interface', i0.uuid] });

  t.deepEqual((await call('GET', `/instances/${inst.uuid}`, 'tok-a')).body, inst);
  t.deepEqual((await call('GET', '/instances/vm1', 'tok-a')).body.uuid, inst.uuid);
  t.deepEqual((await call('GET', '/instances', 'tok-a')).body.map((i: { uuid: string }) => i.uuid), [inst.uuid]);
  t.deepEqual((await call('GET', '/instances/vm1/interfaces', 'tok-a')).body, [i0, i1]);
  t.deepEqual((await call('GET', `/networks/n2/interfaces`, 'tok-a')).body, [i1]);
  t.deepEqual((await call('GET', `/interfaces/${i0.uuid}`, 'tok-a')).body, i0);

  // A requested address, a given MAC, a custom netns and an unaddressed NIC.
  const two = await call('POST', '/instances', 'tok-a', {
    name: 'vm2', host: 'hv2', netns: 'custom-ns',
    interfaces: [{ network: 'n1', address: '198.18.4.200', macaddr: '02:AA:BB:CC:DD:EE' }, { network: 'n1', address: 'none' }],
  });
  t.is(two.status, 200, JSON.stringify(two.body));
  t.like(two.body, { netns: 'custom-ns' });
  t.like(two.body.interfaces[0], { ipv4: '198.18.4.200', macaddr: '02:aa:bb:cc:dd:ee' });
  t.is(two.body.interfaces[1].ipv4, null);
  t.is((await call('GET', `/networks/n1/interfaces`, 'tok-a')).body.length, 3);
});

test('409 for a taken address or MAC; 507 when a /29 is full; nothing half-created', async (t) => {
  const { call, network } = await setup(t);
  const n = await network('small', '198.18.8.0/29');
  const first = await call('POST', '/instances', 'tok-a', {
    name: 'a', host: 'h', interfaces: [{ network: 'small', address: '198.18.8.2', macaddr: '02:00:00:00:00:01' }],
  });
  t.is(first.status, 200);
  const taken = await call('POST', '/instances', 'tok-a', { name: 'b', host: 'h', interfaces: [{ network: 'small', address: '198.18.8.2' }] });
  t.is(taken.status, 409);
  t.regex(taken.body.error, /address 198\.18\.8\.2 in 198\.18\.8\.0\/29 is already in use \(instance by interface /);
  const mac = await call('POST', '/instances', 'tok-a', {
    name: 'b', host: 'h', interfaces: [{ network: 'small', macaddr: '02:00:00:00:00:01' }],
  });
  t.is(mac.status, 409);
  t.regex(mac.body.error, /^interfaces\.0\.macaddr 02:00:00:00:00:01 is already used/);
  const twice = await call('POST', '/instances', 'tok-a', {
    name: 'b', host: 'h', interfaces: [{ network: 'small', macaddr: '02:00:00:00:00:09' }, { network: 'small', macaddr: '02:00:00:00:00:09' }],
  });
  t.is(twice.status, 409);
  t.regex(twice.body.error, /^interfaces\.1\.macaddr/);
  // .3 .. .6 remain: four more fit, the fifth is 507 and leaves nothing behind.
  const fill = await call('POST', '/instances', 'tok-a', { name: 'c', host: 'h', interfaces: Array(4).fill({ network: n.uuid }) });
  t.is(fill.status, 200);
  const full = await call('POST', '/instances', 'tok-a', { name: 'd', host: 'h', interfaces: [{ network: n.uuid }] });
  t.is(full.status, 507);
  t.regex(full.body.error, /^network 198\.18\.8\.0\/29 has no free addresses/);
  t.deepEqual((await call('GET', '/instances', 'tok-a')).body.map((i: { name: string }) => i.name), ['a', 'c']);
  t.is((await call('GET', `/networks/${n.uuid}/interfaces`, 'tok-a')).body.length, 5);
});

test('400 names the field', async (t) => {
  const { call, network } = await setup(t);
  await network('n', '198.18.4.0/24');
  const cases: Array<[unknown, RegExp]> = [
    [{ host: 'h' }, /^name is required in the request body/],
    [{ name: 'x' }, /^host is required in the request body/],
    [{ name: 'bad name', host: 'h' }, /^name "bad name" is invalid/],
    [{ name: 'x', host: 'bad host!' }, /^host "bad host!" is not a valid host name/],
    [{ name: 'x', host: 'h', netns: '../etc' }, /^netns "..\/etc" is invalid/],
    [{ name: 'x', host: 'h', colour: 1 }, /^unknown parameter "colour"/],
    [{ name: 'x', host: 'h', interfaces: {} }, /^interfaces must be array/],
    [{ name: 'x', host: 'h', interfaces: [{}] }, /^interfaces\.0\.network is required/],
    [{ name: 'x', host: 'h', interfaces: [{ network: 'n', extra: 1 }] }, /^unknown parameter "extra"/],
    [{ name: 'x', host: 'h', interfaces: [{ network: 'n', address: '1.2.3' }] }, /^cannot parse interfaces\.0\.address/],
    [{ name: 'x', host: 'h', interfaces: [{ network: 'n', address: '198.18.5.9' }] }, /outside network block 198\.18\.4\.0\/24/],
    [{ name: 'x', host: 'h', interfaces: [{ network: 'n', macaddr: 'zz' }] }, /^interfaces\.0\.macaddr "zz" is not a MAC/],
    [{ name: 'x', host: 'h', interfaces: [{ network: 'n', macaddr: '03:00:00:00:00:01' }] }, /multicast/],
  ];
  for (const [body, pattern] of cases) {
    const res = await call('POST', '/instances', 'tok-a', body);
    t.is(res.status, 400, JSON.stringify(body));
    t.regex(res.body.error, pattern, JSON.stringify(body));
  }
  t.deepEqual((await call('GET', '/instances', 'tok-a')).body, []);
});

test('namespace isolation: 404 for other namespaces, system sees all', async (t) => {
  const { call, network } = await setup(t);
  const na = await network('na', '198.18.4.0/24');
  await network('nb', '198.18.4.0/24', 'tok-b');
  const a = (await call('POST', '/instances', 'tok-a', { name: 'vm', host: 'h', interfaces: [{ network: 'na' }] })).body;
  const iface = a.interfaces[0].uuid;
  // beta cannot attach to alpha's network, by uuid or name.
  for (const ref of [na.uuid, 'na']) {
    const res = await call('POST', '/instances', 'tok-b', { name: 'x', host: 'h', interfaces: [{ network: ref }] });
    t.is(res.status, 404, ref);
    t.regex(res.body.error, /^network not found/);
  }
  for (const url of [`/instances/${a.uuid}`, '/instances/vm', `/instances/${a.uuid}/interfaces`, `/interfaces/${iface}`, `/interfaces/${iface}/metadata`]) {
    const res = await call('GET', url, 'tok-b');
    t.is(res.status, 404, url);
  }
  t.is((await call('DELETE', `/instances/${a.uuid}`, 'tok-b')).status, 404);
  t.is((await call('PUT', `/interfaces/${iface}/metadata/k`, 'tok-b', { value: 'v' })).status, 404);
  t.is((await call('GET', `/networks/${na.uuid}/interfaces`, 'tok-b')).status, 404);
  t.deepEqual((await call('GET', '/instances', 'tok-b')).body, []);
  t.deepEqual((await call('GET', '/instances', 'tok-sys')).body.map((i: { uuid: string }) => i.uuid), [a.uuid]);
  t.is((await call('GET', `/interfaces/${iface}`, 'tok-sys')).status, 200);
  t.deepEqual((await call('GET', '/interfaces/nope', 'tok-a')).body, { error: 'interface not found: "nope"', status: 404 });
  // 401 creating in another namespace as non-system.
  t.is((await call('POST', '/instances', 'tok-a', { name: 'x', host: 'h', namespace: 'beta' })).status, 401);
});

test('delete network with interfaces: delete-wait, then deleted when the instance goes; addresses held back', async (t) => {
  const { call, network, repo, store } = await setup(t);
  const n = await network('busy', '198.18.4.0/24');
  await repo.markCreated(n.uuid);
  const inst = (await call('POST', '/instances', 'tok-a', { name: 'vm', host: 'h', interfaces: [{ network: 'busy' }] })).body;
  const { ipv4, macaddr, uuid: iface } = inst.interfaces[0];

  const wait = await call('DELETE', `/networks/${n.uuid}`, 'tok-a');
  t.is(wait.body.state, 'delete-wait');
  // A network in delete-wait takes no new interfaces.
  const refused = await call('POST', '/instances', 'tok-a', { name: 'late', host: 'h', interfaces: [{ network: n.uuid }] });
  t.is(refused.status, 406);
  t.regex(refused.body.error, new RegExp(`^network ${n.uuid} is not ready \\(delete-wait\\)`));
  const busyAll = await call('DELETE', '/networks', 'tok-a', { confirm: true });
  t.deepEqual(busyAll.body, { error: { deleted: [], unable: [n.uuid] }, status: 403 });

  const gone = await call('DELETE', '/instances/vm', 'tok-a');
  t.is(gone.status, 200);
  t.is(gone.body.interfaces[0].state, 'deleted');
  t.is((await call('GET', `/networks/${n.uuid}`, 'tok-a')).body.state, 'deleted');
  t.is((await call('GET', `/instances/${inst.uuid}`, 'tok-a')).status, 404);
  t.is((await call('GET', `/interfaces/${iface}`, 'tok-a')).status, 404);
  t.deepEqual((await call('GET', `/networks/${n.uuid}/interfaces`, 'tok-a')).body, []);
  t.is(await store.get(`/appnet/macs/${macaddr}`), undefined);
  const row = (await call('GET', `/networks/${n.uuid}/addresses`, 'tok-a')).body.find((r: { address: string }) => r.address === ipv4);
  t.like(row, { type: 'deletion-halo', user: null });
});

test('deleting an instance on a live network releases its address into hold-back and frees the MAC', async (t) => {
  const { call, network } = await setup(t);
  await network('live', '198.18.4.0/24');
  const a = (await call('POST', '/instances', 'tok-a', {
    name: 'a', host: 'h', interfaces: [{ network: 'live', address: '198.18.4.9', macaddr: '02:00:00:00:00:42' }],
  })).body;
  t.is((await call('DELETE', `/instances/${a.uuid}`, 'tok-a')).status, 200);
  const again = await call('POST', '/instances', 'tok-a', { name: 'b', host: 'h', interfaces: [{ network: 'live', address: '198.18.4.9' }] });
  t.is(again.status, 409);
  t.regex(again.body.error, /held back/);
  const mac = await call('POST', '/instances', 'tok-a', { name: 'b', host: 'h', interfaces: [{ network: 'live', macaddr: '02:00:00:00:00:42' }] });
  t.is(mac.status, 200);
  t.is((await call('GET', `/networks/live`, 'tok-a')).body.state, 'initial');
});

test('interface metadata round trips', async (t) => {
  const { call, network } = await setup(t);
  await network('m', '198.18.4.0/24');
  const inst = (await call('POST', '/instances', 'tok-a', { name: 'vm', host: 'h', interfaces: [{ network: 'm' }] })).body;
  const base = `/interfaces/${inst.interfaces[0].uuid}/metadata`;
  t.deepEqual((await call('GET', base, 'tok-a')).body, {});
  t.deepEqual((await call('POST', base, 'tok-a', { key: 'role', value: 'web' })).body, { role: 'web' });
  t.deepEqual((await call('PUT', `${base}/tier`, 'tok-a', { value: 'gold' })).body, { role: 'web', tier: 'gold' });
  t.deepEqual((await call('DELETE', `${base}/role`, 'tok-a')).body, { tier: 'gold' });
  t.deepEqual((await call('GET', `/interfaces/${inst.interfaces[0].uuid}`, 'tok-a')).body.metadata, { tier: 'gold' });
  t.is((await call('DELETE', `${base}/role`, 'tok-a')).status, 404);
  t.deepEqual((await call('POST', base, 'tok-a', { value: 'x' })).body, { error: 'key is required in the request body', status: 400 });
  t.deepEqual((await call('PUT', `${base}/k`, 'tok-a', {})).body, { error: 'value is required in the request body', status: 400 });
});

test('concurrent creates through two repositories never share an address or MAC (CAS retry)', async (t) => {
  const { call, network, store } = await setup(t);
  const { InstanceRepository } = await import('../control/repo/instances.ts');
  const n = await network('race', '198.18.4.0/28');
  const mk = () => new InstanceRepository({ store, networks: new NetworkRepository({ store, floatingPool: POOL }) });
  const [r1, r2] = [mk(), mk()];
  const results = await Promise.allSettled(
    Array.from({ length: 6 }, (_, i) => (i % 2 ? r1 : r2).create({ name: `c${i}`, host: 'h', interfaces: [{ network: n.uuid }, { network: n.uuid }] }, 'alpha')),
  );
  const ok = results.filter((r) => r.status === 'fulfilled');
  t.true(ok.length >= 1);
  const ifaces = (await call('GET', `/networks/${n.uuid}/interfaces`, 'tok-a')).body as Array<{ ipv4: string; macaddr: string }>;
  t.is(ifaces.length, ok.length * 2);
  t.is(new Set(ifaces.map((i) => i.ipv4)).size, ifaces.length);
  t.is(new Set(ifaces.map((i) => i.macaddr)).size, ifaces.length);
  const held = (await call('GET', `/networks/${n.uuid}/addresses`, 'tok-a')).body.filter((r: { type: string }) => r.type === 'instance');
  t.is(held.length, ifaces.length);
});
