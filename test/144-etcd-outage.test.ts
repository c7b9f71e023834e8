// Every etcd member stopped for 30 s under three hosts: forwarding goes on (a ping between instances on two
// machines loses nothing), the API refuses writes with 503 and serves reads from its view, and when etcd
// returns every daemon re-converges without a restart, with nothing lost or invented.
import test from 'ava';
import { apiCall, cliJson, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { buildClusterNet } from './helpers/cluster-net.ts';
import { run } from './helpers/run.ts';
import { until } from './helpers/until.ts';
import { portName } from '../control/reconcile/plan.ts';
import type { Host, TestNet } from './helpers/testnet.ts';

async function placed(net: TestNet, host: Host, name: string, network: string) {
  const inst = await net.addInstance(name, { host });
  const rec = await cliJson(host.ns, 'instance', 'create', name, '--host', host.name, '--netns', inst.ns, '--network', network);
  const iface = rec.interfaces[0];
  await until(`${name} addressed`, async () => {
    const r = await run('ip', ['-n', inst.ns, '-o', '-4', 'addr', 'show', 'dev', portName(iface.uuid)], { reject: false });
    return r.stdout.includes(iface.ipv4) ? true : undefined;
  });
  return { ns: inst.ns, uuid: rec.uuid as string, ipv4: iface.ipv4 as string };
}

const names = (list: Array<{ uuid: string }>) => list.map((x) => x.uuid).sort();

test('all etcd members down for 30 s: forwarding goes on, writes get 503, reads are served; all re-converges after', async (t) => {
  const { net, etcd, daemons } = await buildClusterNet(t);
  const [h1, h2, h3] = net.hosts;
  const network = await cliJson(h1.ns, 'network', 'create', 'steady', '198.18.160.0/24', '--no-dhcp');
  const a = await placed(net, h1, 'a', network.uuid);
  const b = await placed(net, h2, 'b', network.uuid);
  const warm = await net.ping(a.ns, b.ipv4, { count: 3, interval: 0.1 });
  t.is(warm.received, 3, warm.output);
  const pids = daemons.map((d) => d.pid);
  const before = {
    networks: names((await apiCall(h3.ns, 'GET', '/networks?all=1', TEST_TOKEN)).body),
    instances: names((await apiCall(h3.ns, 'GET', '/instances?all=1', TEST_TOKEN)).body),
  };

  // 40 s of ping (400 probes) across the outage.
  const pinging = net.ping(a.ns, b.ipv4, { count: 400, interval: 0.1, timeoutS: 90 });
  await new Promise((r) => setTimeout(r, 3000));
  await etcd.stopAll();
  const downAt = Date.now();

  // While etcd is away: writes are refused with a reason, reads answer from the view.
  const write = await until('a write refused with 503', async () => {
    const r = await apiCall(h2.ns, 'POST', '/networks', TEST_TOKEN, { name: 'during', netblock: '198.18.161.0/24', provide_dhcp: false, provide_nat: false });
    return r.status === 503 ? r : undefined;
  }, 30);
  t.regex(write.body.error, /^store unavailable: /);
  const read = await apiCall(h3.ns, 'GET', '/networks?all=1', TEST_TOKEN);
  t.is(read.status, 200, JSON.stringify(read.body));
  t.deepEqual(names(read.body), before.networks);
  const show = await apiCall(h1.ns, 'GET', `/networks/${network.uuid}`, TEST_TOKEN);
  t.is(show.status, 200, JSON.stringify(show.body));

  await new Promise((r) => setTimeout(r, Math.max(0, 30_000 - (Date.now() - downAt))));
  await etcd.startAll();
  const upAt = Date.now();

  // Back: a write through each host works, and the new instance converges, with the same daemons.
  const created = await until('writes accepted again', async () => {
    const r = await apiCall(h3.ns, 'POST', '/networks', TEST_TOKEN, { name: 'after', netblock: '198.18.162.0/24', provide_dhcp: false, provide_nat: false });
    return r.status === 200 || r.status === 201 ? r.body : undefined;
  }, 60);
  const c = await placed(net, h3, 'c', network.uuid);
  const ac = await until('the new instance reachable', async () => {
    const r = await net.ping(a.ns, c.ipv4, { count: 2, interval: 0.1 });
    return r.received === 2 ? r : undefined;
  }, 30);
  t.is(ac.received, 2);
  t.log(`etcd back to converged (a new network, a new instance on h3, reached from h1): ${((Date.now() - upAt) / 1000).toFixed(1)} s`);
  t.deepEqual(daemons.map((d) => d.pid), pids, 'no daemon restarted');

  const p = await pinging;
  t.is(p.received, p.transmitted, `lost ${p.transmitted - p.received} of ${p.transmitted} during the outage\n${p.output.slice(-400)}`);

  // Nothing lost or invented: every host lists what was there, plus exactly what was made after.
  for (const h of net.hosts) {
    const nets = names((await apiCall(h.ns, 'GET', '/networks?all=1', TEST_TOKEN)).body);
    t.deepEqual(nets, [...before.networks, created.uuid].sort(), `networks seen by ${h.name}`);
    const insts = names((await apiCall(h.ns, 'GET', '/instances?all=1', TEST_TOKEN)).body);
    t.deepEqual(insts, [...before.instances, c.uuid].sort(), `instances seen by ${h.name}`);
  }
});
