// Shaken Fist wire compatibility (issue 13 item 3): a Python script (Debian python3-requests) makes
// the same HTTP exchanges as Shaken Fist's client and runs every example of the reference's
// networks page against a real appnetd in store mode, authenticating with a namespace key:
//
//   python3 (in h1's namespace) --HTTP 127.0.0.1:7878--> appnetd h1 --TAP--> instance ns (kernel stack)
//
// The examples' own netblock (10.0.0.0/24) is only an address plan in the store: nothing is sent to
// it. The ping goes to an instance on 198.18.112.0/24 inside the test's namespaces.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { portName } from '../control/reconcile/plan.ts';
import { TestNet } from './helpers/testnet.ts';
import { run, runIn } from './helpers/run.ts';
import { apiCall, controlPlaneConfig, TEST_TOKEN } from './helpers/api-in-ns.ts';

const SCRIPT = new URL('./helpers/sf-client-examples.py', import.meta.url).pathname;
const KEY = 'sf-client-key-0123';

test("Shaken Fist's client exchanges: every example of the networks page runs as written", async (t) => {
  const net = await TestNet.create(t, { hosts: 1 });
  const [h1] = net.hosts;
  const daemon = await net.startAppnetd(h1, await controlPlaneConfig(net));
  const made = await apiCall(h1.ns, 'POST', '/auth/namespaces', TEST_TOKEN, { namespace: 'sfclient', key_name: 'ci', key: KEY });
  t.is(made.status, 200, JSON.stringify(made.body));

  // A network with an instance in the client's namespace, for the interface and ping examples.
  const a = await net.addInstance('a');
  const pingNet = await apiCall(h1.ns, 'POST', '/networks', TEST_TOKEN, { netblock: '198.18.112.0/24', name: 'pings', provide_dhcp: false, namespace: 'sfclient' });
  t.is(pingNet.status, 200, JSON.stringify(pingNet.body));
  for (let i = 0; i < 80 && (await apiCall(h1.ns, 'GET', `/networks/${pingNet.body.uuid}`, TEST_TOKEN)).body.state !== 'created'; i++) await sleep(250);
  const inst = await apiCall(h1.ns, 'POST', '/instances', TEST_TOKEN, {
    name: 'web', host: h1.name, netns: a.ns, interfaces: [{ network: pingNet.body.uuid }], namespace: 'sfclient',
  });
  t.is(inst.status, 200, JSON.stringify(inst.body));
  const iface = inst.body.interfaces[0];
  for (let i = 0; i < 80; i++) {
    const r = await run('ip', ['-n', a.ns, '-o', '-4', 'addr', 'show', 'dev', portName(iface.uuid)], { reject: false });
    if (r.stdout.includes(`inet ${iface.ipv4}/`)) break;
    await sleep(250);
  }

  const r = await runIn(h1.ns, '/usr/bin/python3', [SCRIPT, 'http://127.0.0.1:7878', 'sfclient', KEY, pingNet.body.uuid, iface.ipv4], { reject: false, timeoutMs: 240_000 });
  t.is(r.code, 0, `${r.stderr}\n${daemon.logTail(20)}`);
  const out = JSON.parse(r.stdout);

  t.deepEqual(out.capabilities, ['list-addresses', 'route-addresses', 'get-network-namespace', 'provide-dns', 'extra-dns-entries', 'interface-metadata']);
  // The first example: created, in the caller's namespace (namespace: null), with vxid.
  t.like(out.create, { name: 'example', namespace: 'sfclient', netblock: '10.0.0.0/24', provide_dhcp: true, provide_nat: true, state: 'created', metadata: {} });
  t.is(out.create.vxid, out.create.vxlan_id);
  t.is(out.create.floating_gateway, null, 'no host here has an uplink, so no floating gateway (docs/nat.md)');
  t.is(out.delete.state, 'deleted');
  t.deepEqual(out.get, out.create);
  t.deepEqual(out.get_in_namespace, out.create);
  t.deepEqual(out.list.map((n: { uuid: string }) => n.uuid).sort(), [out.create.uuid, pingNet.body.uuid].sort(), 'GET with {"all": false} leaves the deleted one out');
  t.true(Array.isArray(out.events) && out.events.length > 0);
  t.like(out.interfaces[0], { uuid: iface.uuid, ipv4: iface.ipv4, model: 'virtio', order: 0, network_uuid: pingNet.body.uuid });
  t.true(out.ping.stdout.includes(`--- ${iface.ipv4} ping statistics ---`), out.ping.stdout.join('\n'));
  t.regex(out.ping.stdout.join('\n'), /10 packets transmitted, 10 received, 0% packet loss/);
  t.is(out.addresses[0], 'address,type,user,comment');
  t.true(out.addresses.some((l: string) => l.startsWith('10.0.0.1,gateway,network ')), out.addresses.join('\n'));
  t.regex(out.routed, /^198\.19\.0\.\d+$/);
  t.is(out.unrouted, null);
  t.deepEqual(out.metadata, { foo: 'bar' });
  t.deepEqual(out.metadata_after_delete, {});
  t.deepEqual(out.dns_added, { name: 'db', address: '10.0.1.20' });
  t.deepEqual(out.dns_deleted, { name: 'db', address: '10.0.1.20' });
  t.is(out.missing, 'ResourceNotFound');
  t.true(Array.isArray(out.delete_all));
  // The exchanges in order: public page and probe, then /auth once, then only 200s.
  t.deepEqual(out.exchanges.slice(0, 2), [['GET', '', 200], ['POST', '/auth', 200]]);
  t.deepEqual(out.exchanges.filter((e: [string, string, number]) => e[2] !== 200), [['GET', '/networks/no-such-network', 404]]);
});

