// The records in memory (StateView) that the API lists from and the reconciler plans from: a sync sees
// every write committed before it, also by another process on the same file; the indexes follow creates
// and deletes; a plan from the view equals a plan from the plain records. And the store pieces under it:
// Watcher.progress, and group commits that leave the event loop in slices.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InstanceRecord } from '../control/instances/instance.ts';
import type { InterfaceRecord } from '../control/instances/interface.ts';
import { desiredState, planHost } from '../control/reconcile/plan.ts';
import { HostRegistry } from '../control/repo/hosts.ts';
import { InstanceRepository } from '../control/repo/instances.ts';
import { NetworkRepository } from '../control/repo/networks.ts';
import { Grouping, HostsOnNetwork } from '../control/repo/record-index.ts';
import { StateView } from '../control/repo/state-view.ts';
import { openStore, type Store, type WatchEvent } from '../control/store/index.ts';

const POOL = '198.19.0.0/24';

/** Two store handles on one file, as two appnetd processes have (the second polls every 10 s, so only progress() can make it see writes in time). */
async function twoStores(t: { teardown: (fn: () => unknown) => void }): Promise<[Store, Store]> {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-view-'));
  const file = join(dir, 'store.db');
  const a = await openStore(file);
  const b = await openStore(file, { sqlite: { pollIntervalMs: 10_000 } });
  t.teardown(async () => {
    await a.close();
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return [a, b];
}

function repos(store: Store, view?: StateView) {
  const networks = new NetworkRepository({ store, floatingPool: POOL, view });
  const instances = new InstanceRepository({ store, networks, view });
  return { networks, instances };
}

test('progress() hands the handler every write committed before it, also by another process', async (t) => {
  const [writer, reader] = await twoStores(t);
  const seen: string[] = [];
  const watcher = await reader.watch('k/', {}, (events: WatchEvent[]) => { for (const e of events) seen.push(e.kv.key); });
  await writer.put('k/1', '1');
  await writer.put('other', 'x');
  await writer.put('k/2', '2');
  const revision = await watcher.progress();
  t.deepEqual(seen, ['k/1', 'k/2']);
  t.is(revision, await writer.revision());
  t.is(await watcher.progress(), revision, 'nothing new: the same revision, no second delivery');
  t.deepEqual(seen, ['k/1', 'k/2']);
  await watcher.cancel();
  await t.throwsAsync(watcher.progress(), { message: /watch of prefix "k\/" was cancelled/ });
});

test('a view synced after another process wrote lists what it wrote, at once', async (t) => {
  const [writer, reader] = await twoStores(t);
  const w = repos(writer);
  await w.networks.init();
  const view = new StateView(reader);
  await view.start();
  t.teardown(() => view.stop());
  const r = repos(reader, view);

  const net = await w.networks.create({ name: 'one', netblock: '198.18.4.0/26' }, 'alpha');
  t.deepEqual((await r.networks.list('alpha')).map((n) => n.uuid), [net.uuid]);
  t.deepEqual(await r.networks.list('beta'), []);
  const { instance } = await w.instances.create({ name: 'vm', host: 'h1', interfaces: [{ network: net.uuid }, { network: net.uuid }] }, 'alpha');
  const listed = await r.instances.listWithInterfaces('alpha');
  t.deepEqual(listed.map((i) => [i.instance.uuid, i.interfaces.map((f) => f.order)]), [[instance.uuid, [0, 1]]]);

  await w.instances.delete(instance);
  t.deepEqual(await r.instances.listWithInterfaces('alpha'), []);
  await w.networks.delete(net);
  t.deepEqual(await r.networks.list('alpha'), [], 'a deleted network leaves the list');
  t.is((await r.networks.list('alpha', true))[0].state, 'deleted');
});

test('the view indexes hosts and flood lists, and plans as the plain records do', async (t) => {
  const [store] = await twoStores(t);
  const { networks, instances } = repos(store);
  await networks.init();
  const hosts = [new HostRegistry(store), new HostRegistry(store), new HostRegistry(store)];
  t.teardown(async () => { for (const h of hosts) await h.close(); });
  for (const [i, h] of hosts.entries()) await h.register({ name: `h${i + 1}`, underlay_address: `198.18.0.${11 + i}` });
  // n1 has static addresses (set by the reconciler), n2 gives them by DHCP (the plan leaves them out).
  const n1 = await networks.create({ name: 'n1', netblock: '198.18.4.0/26', provide_dhcp: false }, 'alpha');
  const n2 = await networks.create({ name: 'n2', netblock: '198.18.4.64/26' }, 'alpha');
  const view = new StateView(store);
  await view.start();
  t.teardown(() => view.stop());

  const a = await instances.create({ name: 'a', host: 'h1', interfaces: [{ network: n1.uuid }, { network: n2.uuid }] }, 'alpha');
  const b = await instances.create({ name: 'b', host: 'h2', interfaces: [{ network: n1.uuid }] }, 'alpha');
  const c = await instances.create({ name: 'c', host: 'h3', interfaces: [{ network: n2.uuid }] }, 'alpha');
  await view.sync();
  const state = view.state();
  t.deepEqual([...state.instancesOnHost('h1')], [a.instance.uuid]);
  t.deepEqual([...state.hostsOnNetwork(n1.uuid)].sort(), ['h1', 'h2']);
  t.deepEqual([...state.hostsOnNetwork(n2.uuid)].sort(), ['h1', 'h3']);

  const plain = () => desiredState({
    networks: [...view.networks.values()], instances: [...view.instances.values()],
    interfaces: [...view.interfaces.values()], hosts: [...view.hosts.values()],
  });
  const plan = planHost('h1', view.state(), 1500);
  t.deepEqual(plan, planHost('h1', plain(), 1500));
  t.deepEqual(plan.vnis.map((v) => [v.vni, v.flood]), [[n1.vxid, ['198.18.0.12']], [n2.vxid, ['198.18.0.13']]].sort((x, y) => Number(x[0]) - Number(y[0])));
  t.deepEqual(plan.ports.map((p) => [p.iface, p.cidr]).sort(), [[a.interfaces[0].uuid, `${a.interfaces[0].ipv4}/26`], [a.interfaces[1].uuid, null]].sort());

  await instances.delete(b.instance);
  await instances.delete(c.instance);
  await view.sync();
  t.deepEqual([...view.state().hostsOnNetwork(n1.uuid)], ['h1'], 'a flood list forgets a host whose last interface went');
  t.deepEqual(planHost('h1', view.state(), 1500).vnis.map((v) => v.flood), [[], []]);
  t.deepEqual(planHost('h1', view.state(), 1500), planHost('h1', plain(), 1500));
});

test('HostsOnNetwork follows interfaces and instances in either order of arrival', (t) => {
  const interfaces = new Map<string, InterfaceRecord>();
  const instances = new Map<string, InstanceRecord>();
  const onNetwork = new Grouping<InterfaceRecord>((i) => i.network_uuid);
  const ofInstance = new Grouping<InterfaceRecord>((i) => i.instance_uuid);
  const hosts = new HostsOnNetwork({
    interfaces, instances, interfacesOnNetwork: (u) => onNetwork.get(u), interfacesOfInstance: (u) => ofInstance.get(u),
  });
  const putIface = (uuid: string, instance: string, state: InterfaceRecord['state'] = 'initial') => {
    const prev = interfaces.get(uuid);
    if (prev) for (const x of [onNetwork, ofInstance, hosts.interfaces]) x.remove(uuid, prev);
    const rec = { uuid, instance_uuid: instance, network_uuid: 'net', state } as InterfaceRecord;
    interfaces.set(uuid, rec);
    for (const x of [onNetwork, ofInstance, hosts.interfaces]) x.add(uuid, rec);
  };
  const putInstance = (uuid: string, host: string) => {
    const rec = { uuid, host } as InstanceRecord;
    instances.set(uuid, rec);
    hosts.instances.add(uuid, rec);
  };
  putIface('if1', 'i1');
  t.deepEqual([...hosts.get('net')], [], 'an interface of an unknown instance floods nowhere yet');
  putInstance('i1', 'h1');
  t.deepEqual([...hosts.get('net')], ['h1'], 'the instance arriving after its interface counts');
  putInstance('i2', 'h2');
  putIface('if2', 'i2');
  t.deepEqual([...hosts.get('net')].sort(), ['h1', 'h2']);
  putIface('if2', 'i2', 'deleted');
  t.deepEqual([...hosts.get('net')], ['h1'], 'a deleted interface does not count');
  hosts.instances.remove('i1', instances.get('i1')!);
  instances.delete('i1');
  t.deepEqual([...hosts.get('net')], []);
});

test('writes issued together all commit in call order, and the event loop runs between their groups', async (t) => {
  const [store] = await twoStores(t);
  const start = await store.revision();
  let turns = 0;
  let lastDone = false;
  const count = () => { if (!lastDone) { turns++; setImmediate(count); } };
  const writes = Array.from({ length: 3000 }, (_, i) => store.txn({ success: [{ type: 'put', key: `w/${i}`, value: 'x'.repeat(200) }] }));
  setImmediate(count);
  const results = await Promise.all(writes);
  lastDone = true;
  t.deepEqual(results.map((r) => r.revision), results.map((_, i) => start + 1 + i));
  t.is((await store.range('w/')).kvs.length, 3000);
  t.true(turns > 1, `the loop turned ${turns} times while 3000 writes committed`);
});
