// kill -9 of a daemon during traffic, then a restart: the store still has the networks,
// interfaces and addresses; the restarted daemon rebuilds its TAP with the same MAC and address,
// exactly once, and traffic resumes.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestNet } from './helpers/testnet.ts';
import { runIn } from './helpers/run.ts';
import { cliJson, controlPlaneConfig } from './helpers/api-in-ns.ts';



async function taps(ns: string): Promise<string[]> {
  const out = (await runIn(ns, 'ip', ['-o', 'link', 'show'])).stdout;
  return [...out.matchAll(/\d+: (an[0-9a-f]{8})[:@]/g)].map((m) => m[1]);
}

test('kill -9 during traffic and restart: state intact, one TAP with the same MAC and address, traffic resumes', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const cp = await controlPlaneConfig(net);
  await net.startAppnetd(h1, cp);
  const d2 = await net.startAppnetd(h2, cp);
  const a = await net.addInstance('a');
  const b = await net.addInstance('b');
  const network = await cliJson(h1.ns, 'network', 'create', 'blue', '198.18.101.0/24', '--no-dhcp');
  const ia = await cliJson(h1.ns, 'instance', 'create', 'a', '--host', 'h1', '--netns', a.ns, '--network', network.uuid);
  const ib = await cliJson(h1.ns, 'instance', 'create', 'b', '--host', 'h2', '--netns', b.ns, '--network', network.uuid);
  const addrB = ib.interfaces[0].ipv4;
  let first;
  for (let i = 0; i < 40; i++) {
    first = await net.ping(a.ns, addrB, { count: 1, interval: 0.2, timeoutS: 2 });
    if (first.received === 1) break;
    await sleep(250);
  }
  t.is(first!.received, 1, 'the overlay never came up');
  const before = { interfaces: await cliJson(h1.ns, 'network', 'interfaces', network.uuid), addresses: await cliJson(h1.ns, 'network', 'addresses', network.uuid) };

  // Traffic runs while h2's daemon dies; its TAP disappears with it.
  const during = net.ping(a.ns, addrB, { count: 60, interval: 0.1, timeoutS: 20 });
  await sleep(1000);
  await d2.kill9();
  await sleep(500);
  t.deepEqual(await taps(b.ns), [], 'the TAP outlived its daemon');
  await d2.restart();
  const p = await during;
  t.true(p.received > 0 && p.received < 60, `ping across the crash: ${p.received}/60`);

  // After the restart: same state in the store, one TAP with the same MAC and address, traffic.
  const after = { interfaces: await cliJson(h1.ns, 'network', 'interfaces', network.uuid), addresses: await cliJson(h1.ns, 'network', 'addresses', network.uuid) };
  t.deepEqual(after.addresses, before.addresses);
  t.deepEqual(after.interfaces.map((i: any) => [i.uuid, i.macaddr, i.ipv4]), before.interfaces.map((i: any) => [i.uuid, i.macaddr, i.ipv4]));
  const tapsB = await taps(b.ns);
  t.is(tapsB.length, 1, `expected one TAP, found ${tapsB.join(', ')}`);
  const link = (await runIn(b.ns, 'ip', ['-o', 'addr', 'show', 'dev', tapsB[0]])).stdout;
  t.true(link.includes(`${addrB}/24`), link);
  const mac = (await runIn(b.ns, 'cat', [`/sys/class/net/${tapsB[0]}/address`])).stdout.trim();
  t.is(mac, ib.interfaces[0].macaddr);
  const resumed = await net.ping(a.ns, addrB, { count: 5, interval: 0.1 });
  t.is(resumed.received, 5, resumed.output);
  t.is((await cliJson(h1.ns, 'host', 'list')).length, 2);
  void ia;
});
