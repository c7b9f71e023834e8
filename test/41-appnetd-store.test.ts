// appnetd in store mode: daemons on two hosts share one SQLite file, register their hosts under
// leases, and serve the REST API on their own loopback.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestNet } from './helpers/testnet.ts';
import { apiCall, TEST_TOKEN } from './helpers/api-in-ns.ts';


test('two daemons share one store: /hosts lists both, a network made on one is seen on the other, kill -9 and restart take over', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = `sqlite:${path.join(dir, 'appnet.db')}`;
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const cp = { store, tokens: { [TEST_TOKEN]: 'system' }, api: { address: '127.0.0.1', port: 7878 }, floatingPool: '198.19.0.0/24', tokenFile: path.join(dir, 'token') };
  await net.startAppnetd(h1, cp);
  const d2 = await net.startAppnetd(h2, cp);

  const hosts = await apiCall(h1.ns, 'GET', '/hosts', TEST_TOKEN);
  t.is(hosts.status, 200);
  t.deepEqual(hosts.body.map((h: any) => [h.name, h.underlay_address]).sort(), [['h1', h1.underlayIp], ['h2', h2.underlayIp]]);
  t.is((await apiCall(h1.ns, 'GET', '/hosts', 'wrong-token')).status, 401);

  const made = await apiCall(h1.ns, 'POST', '/networks', TEST_TOKEN, { name: 'blue', netblock: '198.18.100.0/24', namespace: 'system' });
  t.is(made.status, 200, JSON.stringify(made.body));
  const seen = await apiCall(h2.ns, 'GET', `/networks/${made.body.uuid}`, TEST_TOKEN);
  t.is(seen.body.name, 'blue');
  t.is(seen.body.netblock, '198.18.100.0/24');

  // A crashed daemon's record outlives it until its lease expires; its restart takes it over.
  const oldPid = d2.pid;
  await d2.kill9();
  await d2.restart();
  const after = await apiCall(h1.ns, 'GET', '/hosts', TEST_TOKEN);
  const rec = after.body.find((h: any) => h.name === 'h2');
  t.truthy(rec);
  t.not(rec.pid, oldPid);
  t.is(after.body.length, 2);

  // Killed and not restarted: the host leaves the list once its lease (10 s) runs out.
  await d2.kill9();
  let names: string[] = [];
  for (let i = 0; i < 40; i++) {
    names = (await apiCall(h1.ns, 'GET', '/hosts', TEST_TOKEN)).body.map((h: any) => h.name);
    if (!names.includes('h2')) break;
    await sleep(500);
  }
  t.deepEqual(names, ['h1']);
});
