// End to end through the control plane: daemons on two hosts share one SQLite file; the CLI
// creates a network and an instance on each host; appnetd converges its engine to the store,
// and the instances ping each other. Deleting the network waits for the interfaces to go.
import test from 'ava';
import { TestNet } from './helpers/testnet.ts';
import { runIn } from './helpers/run.ts';
import { cliJson, controlPlaneConfig } from './helpers/api-in-ns.ts';
import { until } from './helpers/until.ts';

test('a network made with the CLI carries ping between instances on two hosts; delete waits for interfaces', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const cp = await controlPlaneConfig(net);
  await net.startAppnetd(h1, cp);
  await net.startAppnetd(h2, cp);
  const a = await net.addInstance('a');
  const b = await net.addInstance('b');

  const network = await cliJson(h1.ns, 'network', 'create', 'blue', '198.18.100.0/24', '--no-dhcp');
  const ia = await cliJson(h1.ns, 'instance', 'create', 'a', '--host', 'h1', '--netns', a.ns, '--network', network.uuid);
  const ib = await cliJson(h2.ns, 'instance', 'create', 'b', '--host', 'h2', '--netns', b.ns, '--network', network.uuid);
  const addrA = ia.interfaces[0].ipv4;
  const addrB = ib.interfaces[0].ipv4;
  t.regex(addrA, /^198\.18\.100\.\d+$/);

  // Each daemon creates its instance's TAP, addresses it, and reports the interface created.
  await until('interfaces created', async () => {
    const list = await cliJson(h1.ns, 'network', 'interfaces', network.uuid);
    return list.length === 2 && list.every((i: any) => i.state === 'created') ? list : undefined;
  });
  t.is((await cliJson(h2.ns, 'network', 'show', network.uuid)).state, 'created');
  const p = await net.ping(a.ns, addrB, { count: 5, interval: 0.1 });
  t.is(p.received, 5, p.output);
  const q = await net.ping(b.ns, addrA, { count: 5, interval: 0.1 });
  t.is(q.received, 5, q.output);

  // Delete while interfaces exist: delete-wait. Remove the instances: deleted, devices gone.
  const del = await cliJson(h1.ns, 'network', 'delete', network.uuid);
  t.is(del.state, 'delete-wait');
  await cliJson(h1.ns, 'instance', 'delete', ia.uuid);
  await cliJson(h2.ns, 'instance', 'delete', ib.uuid);
  t.is((await cliJson(h1.ns, 'network', 'show', network.uuid)).state, 'deleted');
  for (const [ns, inst] of [[a.ns, 'a'], [b.ns, 'b']]) {
    const links = await until(`no TAP left in instance ${inst}`, async () => {
      const out = (await runIn(ns, 'ip', ['-o', 'link', 'show'])).stdout;
      return /\ban[0-9a-f]{8}\b/.test(out) ? undefined : out;
    });
    t.notRegex(links, /\ban[0-9a-f]{8}\b/);
  }
});
