// Interface hot-plug (Shaken Fist's): POST /instances/{ref}/interfaces adds an interface to a running
// instance, DELETE /interfaces/{uuid} removes one, and the CLI verbs `appnet interface add|delete`.
// First the API contract on a real SQLite store, then on a real host: the device appears in the
// instance's namespace with its address, and goes again.
import test from 'ava';
import { apiFixture } from './helpers/api-fixture.ts';
import { TestNet } from './helpers/testnet.ts';
import { runIn } from './helpers/run.ts';
import { cliJson, controlPlaneConfig } from './helpers/api-in-ns.ts';
import { until } from './helpers/until.ts';

test('API: add an interface to an instance, next NIC index, address from IPAM; delete frees it; bad input', async (t) => {
  const { call } = await apiFixture(t);
  for (const [name, netblock] of [['n1', '198.18.30.0/24'], ['n2', '198.18.31.0/24']]) {
    t.is((await call('POST', '/networks', 'tok-a', { name, netblock })).status, 200);
  }
  const inst = (await call('POST', '/instances', 'tok-a', { name: 'vm', host: 'h1', interfaces: [{ network: 'n1' }] })).body;
  const added = await call('POST', '/instances/vm/interfaces', 'tok-a', { network: 'n2', address: '198.18.31.9', macaddr: '02:00:00:00:31:09' });
  t.is(added.status, 200, JSON.stringify(added.body));
  t.like(added.body, { network_uuid: (await call('GET', '/networks/n2', 'tok-a')).body.uuid, instance_uuid: inst.uuid, ipv4: '198.18.31.9', macaddr: '02:00:00:00:31:09', order: 1, state: 'initial' });
  const shown = (await call('GET', '/instances/vm', 'tok-a')).body;
  t.deepEqual(shown.interfaces.map((i: { order: number }) => i.order), [0, 1]);
  const allocated = await call('POST', `/instances/${inst.uuid}/interfaces`, 'tok-a', { network: 'n2' });
  t.is(allocated.body.order, 2);
  t.regex(allocated.body.ipv4, /^198\.18\.31\.\d+$/);

  // Taken address, unknown field, unknown network, other namespace's instance.
  t.is((await call('POST', '/instances/vm/interfaces', 'tok-a', { network: 'n2', address: '198.18.31.9' })).status, 409);
  const unknown = await call('POST', '/instances/vm/interfaces', 'tok-a', { network: 'n2', colour: 'red' });
  t.is(unknown.status, 400);
  t.regex(unknown.body.error, /unknown parameter "colour"/);
  t.is((await call('POST', '/instances/vm/interfaces', 'tok-a', { network: 'nope' })).status, 404);
  t.is((await call('POST', '/instances/vm/interfaces', 'tok-b', { network: 'n2' })).status, 404);

  // Delete: gone from the instance, address and MAC free for another interface.
  const del = await call('DELETE', `/interfaces/${added.body.uuid}`, 'tok-a');
  t.is(del.status, 200, JSON.stringify(del.body));
  t.is(del.body.state, 'deleted');
  t.is((await call('GET', `/interfaces/${added.body.uuid}`, 'tok-a')).status, 404);
  t.is((await call('GET', '/instances/vm', 'tok-a')).body.interfaces.length, 2);
  const addresses = (await call('GET', '/networks/n2/addresses', 'tok-a')).body as Array<{ address: string; type: string }>;
  t.false(addresses.some((a) => a.address === '198.18.31.9' && a.type === 'instance'));
  t.is((await call('DELETE', `/interfaces/${added.body.uuid}`, 'tok-a')).status, 404);
  t.is((await call('POST', '/instances/vm/interfaces', 'tok-a', { network: 'n2', macaddr: '02:00:00:00:31:09' })).status, 200, 'the MAC is free again');
});

test('on a host: a hot-plugged interface appears in the running instance with its address, and goes', async (t) => {
  const net = await TestNet.create(t, { hosts: 1 });
  const [h1] = net.hosts;
  await net.startAppnetd(h1, await controlPlaneConfig(net));
  await cliJson(h1.ns, 'network', 'create', 'n1', '198.18.32.0/24', '--no-dhcp', '--no-nat');
  await cliJson(h1.ns, 'network', 'create', 'n2', '198.18.33.0/24', '--no-dhcp', '--no-nat');
  const vm = await net.addInstance('vm');
  await cliJson(h1.ns, 'instance', 'create', 'vm', '--host', 'h1', '--netns', vm.ns, '--network', 'n1');
  const iface = await cliJson(h1.ns, 'interface', 'add', 'vm', 'n2', '--address', '198.18.33.7');
  t.is(iface.ipv4, '198.18.33.7');
  const dev = `an${iface.uuid.replace(/-/g, '').slice(0, 8)}`;
  const shown = await until('the device is in the instance', async () => {
    const r = await runIn(vm.ns, 'ip', ['-4', '-o', 'addr', 'show', 'dev', dev], { reject: false });
    return r.code === 0 && r.stdout.includes('198.18.33.7/24') ? r.stdout : undefined;
  }, 80);
  t.regex(shown, /198\.18\.33\.7\/24/);
  const removed = await cliJson(h1.ns, 'interface', 'delete', iface.uuid);
  t.is(removed.state, 'deleted');
  t.true(await until('the device is gone', async () => ((await runIn(vm.ns, 'ip', ['link', 'show', 'dev', dev], { reject: false })).code !== 0) || undefined, 80));
});
