// Network services served by appnetd itself, end to end, with Debian's clients in the instance:
//
//   instance ns <prefix>-a                    host ns <prefix>h1
//   udhcpc, ping, busybox nslookup  --TAP-->  appnetd (store mode, sqlite) --punt--> gateway/DHCP/DNS
//                                             stub upstream DNS on 127.0.0.1:5353 (names outside the zone)
//
// The network provides DHCP and DNS, so the daemon leaves the TAP unaddressed and the instance asks.
import test from 'ava';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { portName } from '../control/reconcile/plan.ts';
import { leaseKey } from '../control/repo/dhcp-leases.ts';
import { gatewayMac } from '../control/services/gateway.ts';
import { openStore } from '../control/store/index.ts';
import { TestNet } from './helpers/testnet.ts';
import { run, runIn, spawnIn, stopProcess } from './helpers/run.ts';
import { apiCall, cliJson, cliRun, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { until } from './helpers/until.ts';

const NETBLOCK = '198.18.120.0/24';
const GATEWAY = '198.18.120.1';
const SEND_UDP = new URL('./helpers/send-udp.mjs', import.meta.url).pathname;

// udhcpc runs this on each event: print what it got and apply the address, so the instance can ping.
const SCRIPT = `#!/bin/sh
case "$1" in
  bound|renew) echo "bound ip=$ip subnet=$subnet router=$router dns=$dns domain=$domain mtu=$mtu lease=$lease serverid=$serverid"
         ip addr replace "$ip/$subnet" dev "$interface" ;;
esac
exit 0
`;

// A stand-in upstream resolver: answers every A query with 198.18.77.77 (same id, the question echoed).
const UPSTREAM = `
import dgram from 'node:dgram';
const s = dgram.createSocket('udp4');
s.on('message', (q, r) => {
  let end = 12;
  while (q[end] !== 0) end += q[end] + 1;
  end += 5;
  const head = Buffer.from([q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
  const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 77, 77]);
  s.send(Buffer.concat([head, q.subarray(12, end), answer]), r.port, r.address);
});
s.bind(5353, '127.0.0.1', () => console.log('listening'));
`;


test('appnetd serves DHCP, gateway and DNS to an instance; leases survive a restart; strangers and garbage get nothing', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-svc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const net = await TestNet.create(t, { hosts: 1 });
  const [h1] = net.hosts;
  const dbFile = path.join(dir, 'appnet.db');
  const upstream = net.track(spawnIn(h1.ns, 'node', ['--input-type=module', '-e', UPSTREAM]));
  t.teardown(() => stopProcess(upstream).then(() => undefined));
  const d1 = await net.startAppnetd(h1, { store: `sqlite:${dbFile}`, tokens: { [TEST_TOKEN]: 'system' }, dnsUpstream: '127.0.0.1:5353' });
  const a = await net.addInstance('a');

  const network = await cliJson(h1.ns, 'network', 'create', 'svc', NETBLOCK, '--dns');
  t.like(network, { provide_dhcp: true, provide_dns: true });
  const inst = await cliJson(h1.ns, 'instance', 'create', 'web', '--host', 'h1', '--netns', a.ns, '--network', network.uuid);
  const iface = inst.interfaces[0];
  const tap = portName(iface.uuid);
  await until('interface created', async () => {
    const list = await cliJson(h1.ns, 'network', 'interfaces', network.uuid);
    return list[0]?.state === 'created' ? list : undefined;
  });
  const hasTap = async () => ((await run('ip', ['-n', a.ns, 'link', 'show', 'dev', tap], { reject: false })).code === 0 ? true : undefined);
  await until('TAP in the instance', hasTap);
  // DHCP networks: the daemon does not address the TAP; the instance asks for it.
  t.notRegex((await runIn(a.ns, 'ip', ['-o', '-4', 'addr', 'show', 'dev', tap])).stdout, /inet /);

  const script = path.join(dir, 'script.sh');
  writeFileSync(script, SCRIPT);
  chmodSync(script, 0o755);
  const udhcpc = (extra: string[] = []) => runIn(a.ns, 'udhcpc', ['-i', tap, '-f', '-q', '-n', '-t', '5', '-T', '1', '-O', 'mtu', '-s', script, ...extra],
    { timeoutMs: 30_000, reject: false });
  const mtu = (await runIn(a.ns, 'cat', [`/sys/class/net/${tap}/mtu`])).stdout.trim();
  const expected = `bound ip=${iface.ipv4} subnet=255.255.255.0 router=${GATEWAY} dns=${GATEWAY} domain=${network.namespace}.appnet.internal mtu=${mtu} lease=3600 serverid=${GATEWAY}`;

  const first = await udhcpc();
  t.is(first.code, 0, first.stderr + d1.logTail(20));
  t.true(first.stdout.includes(expected), first.stdout);

  // The gateway answers ARP (with the MAC derived from the VNI) and ping, from this host.
  const p = await net.ping(a.ns, GATEWAY, { count: 3, interval: 0.1 });
  t.is(p.received, 3, p.output);
  const neigh = (await runIn(a.ns, 'ip', ['neigh', 'show', GATEWAY, 'dev', tap])).stdout;
  t.true(neigh.includes(gatewayMac(network.vxlan_id)), neigh);

  // The lease is in the store, where a restarted daemon finds it.
  const store = await openStore(`sqlite:${dbFile}`);
  t.teardown(() => store.close());
  const lease = await until('lease written', async () => (await store.get(leaseKey(network.uuid, iface.macaddr))) ?? undefined);
  t.like(JSON.parse(lease.value), { mac: iface.macaddr, ipv4: iface.ipv4, state: 'bound' });

  // DNS: the instance's name and its address, an extra entry, and a name forwarded upstream.
  const fqdn = `web.${network.namespace}.appnet.internal`;
  const forward = await runIn(a.ns, 'busybox', ['nslookup', fqdn, GATEWAY], { reject: false });
  t.true(forward.stdout.includes(iface.ipv4), forward.stdout + forward.stderr);
  const reverse = await runIn(a.ns, 'busybox', ['nslookup', iface.ipv4, GATEWAY], { reject: false });
  t.true(reverse.stdout.includes(fqdn), reverse.stdout + reverse.stderr);
  await cliRun(h1.ns, 'network', 'dns', 'add', network.uuid, 'db', '198.18.120.200');
  t.deepEqual(await cliJson(h1.ns, 'network', 'dns', 'list', network.uuid), [{ name: 'db', address: '198.18.120.200' }]);
  const extra = await until('extra entry served', async () => {
    const r = await runIn(a.ns, 'busybox', ['nslookup', `db.${network.namespace}.appnet.internal`, GATEWAY], { reject: false });
    return r.stdout.includes('198.18.120.200') ? r : undefined;
  }, 20);
  t.truthy(extra);
  t.deepEqual(await cliJson(h1.ns, 'network', 'dns', 'remove', network.uuid, 'db'), { name: 'db', address: '198.18.120.200' });
  t.deepEqual(await cliJson(h1.ns, 'network', 'dns', 'list', network.uuid), []);
  const badName = await apiCall(h1.ns, 'POST', `/networks/${network.uuid}/dns`, TEST_TOKEN, { name: 'no spaces', address: '198.18.120.9' });
  t.deepEqual([badName.status, badName.body.error], [406, 'invalid DNS name "no spaces": labels of 1-63 letters, digits, \'-\' or \'_\', at most 253 characters']);
  const quiet = await cliJson(h1.ns, 'network', 'create', 'quiet', '198.18.121.0/24');
  const noDns = await apiCall(h1.ns, 'POST', `/networks/${quiet.uuid}/dns`, TEST_TOKEN, { name: 'db', address: '198.18.121.9' });
  t.deepEqual([noDns.status, noDns.body.error], [406, 'network does not provide DNS']);
  const outside = await runIn(a.ns, 'busybox', ['nslookup', 'example.test', GATEWAY], { reject: false });
  t.true(outside.stdout.includes('198.18.77.77'), outside.stdout + outside.stderr);

  // Garbage to the DHCP and DNS ports is dropped and counted; the next good query is answered.
  const before = await d1.get('/services/stats');
  await runIn(a.ns, 'node', [SEND_UDP, GATEWAY, '67', '1', 'deadbeef']);
  await runIn(a.ns, 'node', [SEND_UDP, GATEWAY, '53', '1', 'ff', '123481800001000000000000']);
  const after = await until('garbage counted', async () => {
    const s = await d1.get('/services/stats');
    return s.dhcp.dropped.truncated > (before.dhcp.dropped.truncated ?? 0) && s.dns.dropped.truncated > (before.dns.dropped.truncated ?? 0)
      && s.dns.dropped.response > (before.dns.dropped.response ?? 0) ? s : undefined;
  }, 20);
  t.truthy(after);
  const again = await runIn(a.ns, 'busybox', ['nslookup', fqdn, GATEWAY], { reject: false });
  t.true(again.stdout.includes(iface.ipv4), again.stdout);

  // Restart (SIGTERM, start): the TAP comes back unaddressed; asking again gets the same address, ACKed.
  await d1.restart();
  await until('TAP back after restart', hasTap);
  const renewed = await udhcpc(['-r', iface.ipv4]);
  t.is(renewed.code, 0, renewed.stderr + d1.logTail(20));
  t.true(renewed.stdout.includes(expected), renewed.stdout);
  const stats = await d1.get('/services/stats');
  t.is(stats.dhcp.sent.NAK, 0);
  t.true(stats.dhcp.sent.ACK >= 1);

  // A MAC the daemon does not know on this port gets nothing.
  await runIn(a.ns, 'ip', ['link', 'set', 'dev', tap, 'address', '02:00:00:ff:ff:fe']);
  const stranger = await udhcpc(['-t', '2']);
  t.not(stranger.code, 0);
  t.false(stranger.stdout.includes('bound'), stranger.stdout);
  t.true(((await d1.get('/services/stats')).dhcp.quiet['unknown-mac'] ?? 0) >= 2);

  // Removing the interface (its instance) releases the lease.
  await cliJson(h1.ns, 'instance', 'delete', inst.uuid);
  await until('lease released', async () => ((await store.get(leaseKey(network.uuid, iface.macaddr))) === undefined ? true : undefined));
  t.pass();
});
