// One host cut off from etcd only (its underlay and data plane still up): its lease expires, the other hosts
// take it out of their flood lists, and the connections to its instances go WAITING with a reason. On heal it
// registers again and everything returns, ESTABLISHED, without a restart.
import test from 'ava';
import { apiCall, cliJson, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { buildClusterNet } from './helpers/cluster-net.ts';
import { runIn } from './helpers/run.ts';
import { until } from './helpers/until.ts';

const ETCD_RULE = ['OUTPUT', '-p', 'tcp', '--dport', '2379', '-j', 'DROP'];

test('a host cut off from etcd leaves the meshes and its connections wait; on heal all returns', async (t) => {
  const { net, daemons } = await buildClusterNet(t);
  const [h1, h2, h3] = net.hosts;
  const [d1, , d3] = daemons;

  // A plain network with an instance on every host: each host floods its VNI to the two others.
  const network = await cliJson(h1.ns, 'network', 'create', 'mesh', '198.18.170.0/24', '--no-dhcp');
  for (const h of net.hosts) {
    const inst = await net.addInstance(`m${h.index}`, { host: h });
    await cliJson(h.ns, 'instance', 'create', `m${h.index}`, '--host', h.name, '--netns', inst.ns, '--network', network.uuid);
  }
  const flood = async () => ((await d1.get('/engine/vnis')) as Array<{ vni: number; flood: string[] }>).find((v) => v.vni === network.vxlan_id)?.flood;
  t.deepEqual(await until('h1 floods to h2 and h3', async () => ((await flood())?.length === 2 ? flood() : undefined)), ['198.18.0.12', '198.18.0.13']);

  // A connection from an instance on h1 to one on h3.
  const srcNs = await net.addInstance('src', { host: h1 });
  const sinkNs = await net.addInstance('sink', { host: h3 });
  const sink = await cliJson(h3.ns, 'instance', 'create', 'sink', '--host', 'h3', '--netns', sinkNs.ns, '--inbound', 'in:5201');
  const src = await cliJson(h1.ns, 'instance', 'create', 'src', '--host', 'h1', '--netns', srcNs.ns, '--outbound', 'db');
  await cliJson(h1.ns, 'add', src.uuid, 'db', sink.uuid, 'in');
  const status = async () => (await apiCall(h2.ns, 'GET', '/connections', TEST_TOKEN)).body[0];
  await until('connection established', async () => ((await status())?.status === 'ESTABLISHED' ? true : undefined), 60);
  const pid3 = d3.pid;

  // Cut h3 from etcd only: its API still answers, its data plane still runs, its lease runs out.
  await runIn(h3.ns, 'iptables', ['-A', ...ETCD_RULE]);
  t.teardown(() => runIn(h3.ns, 'iptables', ['-D', ...ETCD_RULE], { reject: false }).then(() => undefined));
  const gone = await until('h3 out of the host list', async () => {
    const hosts = await cliJson(h1.ns, 'host', 'list');
    return hosts.some((h: any) => h.name === 'h3') ? undefined : hosts;
  }, 60);
  t.deepEqual(gone.map((h: any) => h.name).sort(), ['h1', 'h2']);
  t.deepEqual(await until('h1 stops flooding to h3', async () => ((await flood())?.length === 1 ? flood() : undefined), 30), ['198.18.0.12']);
  const waiting = await until('connection waiting', async () => {
    const c = await status();
    return c?.status === 'WAITING' ? c : undefined;
  }, 30);
  t.regex(waiting.reason ?? '', /h3/, JSON.stringify(waiting));
  t.true((await d3.request('GET', '/healthz')).status === 200, "h3's daemon keeps running");

  // Heal: h3 registers again by itself; the mesh and the connection come back.
  await runIn(h3.ns, 'iptables', ['-D', ...ETCD_RULE]);
  await until('h3 back in the host list', async () => ((await cliJson(h1.ns, 'host', 'list')).some((h: any) => h.name === 'h3') ? true : undefined), 60);
  t.deepEqual(await until('h1 floods to h3 again', async () => ((await flood())?.length === 2 ? flood() : undefined), 30), ['198.18.0.12', '198.18.0.13']);
  const back = await until('connection established again', async () => {
    const c = await status();
    return c?.status === 'ESTABLISHED' ? c : undefined;
  }, 60);
  t.is(back.status, 'ESTABLISHED');
  t.is(d3.pid, pid3, 'h3 was not restarted');
});
