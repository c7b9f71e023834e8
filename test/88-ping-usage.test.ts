// The ping API and usage events, end to end, with a real appnetd (store mode) and a real instance:
//
//   instance ns <prefix>-a (kernel stack)  <--TAP-->  appnetd h1 --> gateway .1 sends echo requests,
//                                                     the replies come back through its punt rules
//
// The network does not provide DHCP, so the daemon addresses the instance's TAP itself.
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { portName } from '../control/reconcile/plan.ts';
import { type Daemon, TestNet } from './helpers/testnet.ts';
import { run, runIn } from './helpers/run.ts';
import { apiAt, apiCall, cliJson, cliRun, TEST_TOKEN } from './helpers/api-in-ns.ts';

const NETBLOCK = '198.18.124.0/24';
const TENANT_TOKEN = 'tenant-token-0123456789abcdef';

async function until<T>(what: string, fn: () => Promise<T | undefined>, tries = 80): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('the ping API pings an instance from the gateway, reports silence as 0 received, refuses bad input; usage events rise', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-ping-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const net = await TestNet.create(t, { hosts: 1 });
  const [h1] = net.hosts;
  const d1 = await net.startAppnetd(h1, {
    store: `sqlite:${path.join(dir, 'appnet.db')}`,
    tokens: { [TEST_TOKEN]: 'system', [TENANT_TOKEN]: 'tenant' },
    usageIntervalSeconds: 1,
  });
  const a = await net.addInstance('a');
  const network = await cliJson(h1.ns, 'network', 'create', 'pings', NETBLOCK, '--no-dhcp');
  const inst = await cliJson(h1.ns, 'instance', 'create', 'web', '--host', 'h1', '--netns', a.ns, '--network', network.uuid);
  const iface = inst.interfaces[0];
  const tap = portName(iface.uuid);
  await until('instance addressed', async () => {
    const r = await run('ip', ['-n', a.ns, '-o', '-4', 'addr', 'show', 'dev', tap], { reject: false });
    return r.stdout.includes(`inet ${iface.ipv4}/`) ? true : undefined;
  });

  // Ten probes from .1, ten replies, in ping's words.
  const ping = await apiCall(h1.ns, 'GET', `/networks/${network.uuid}/ping/${iface.ipv4}`, TEST_TOKEN);
  t.is(ping.status, 200, JSON.stringify(ping.body) + d1.logTail(20));
  const { stdout, stderr } = ping.body as { stdout: string[]; stderr: string[] };
  t.deepEqual(stderr, []);
  t.is(stdout[0], `PING ${iface.ipv4} (${iface.ipv4}) 56(84) bytes of data.`);
  const replies = stdout.filter((l) => l.startsWith(`64 bytes from ${iface.ipv4}: icmp_seq=`));
  t.deepEqual(replies.map((l) => Number(/icmp_seq=(\d+) ttl=64 time=[0-9.]+ ms$/.exec(l)?.[1])), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], stdout.join('\n'));
  t.true(stdout.includes(`--- ${iface.ipv4} ping statistics ---`));
  t.regex(stdout.join('\n'), /\n10 packets transmitted, 10 received, 0% packet loss, time \d+ms\nrtt min\/avg\/max\/mdev = [0-9.]+\/[0-9.]+\/[0-9.]+\/[0-9.]+ ms$/);

  // An address nobody holds: asked for by ARP, unanswered; still 200, like ping's exit 1 in the reference.
  const nobody = iface.ipv4 === '198.18.124.200' ? '198.18.124.201' : '198.18.124.200';
  const silent = await apiCall(h1.ns, 'GET', `/networks/${network.uuid}/ping/${nobody}?count=3`, TEST_TOKEN);
  t.is(silent.status, 200);
  t.false(silent.body.stdout.some((l: string) => l.includes('bytes from')), silent.body.stdout.join('\n'));
  t.is(silent.body.stdout.filter((l: string) => l === 'From 198.18.124.1 icmp_seq=1 Destination Host Unreachable').length, 1, silent.body.stdout.join('\n'));
  t.true(silent.body.stdout.some((l: string) => l.startsWith('3 packets transmitted, 0 received, +3 errors, 100% packet loss, time ')), silent.body.stdout.join('\n'));

  // The CLI prints the lines; --json gives the object.
  const cli = await cliRun(h1.ns, 'network', 'ping', 'pings', iface.ipv4, '--count', '2');
  t.regex(cli.stdout, /\n2 packets transmitted, 2 received, 0% packet loss/);
  const cliObject = await cliJson(h1.ns, 'network', 'ping', network.uuid, iface.ipv4, '--count', '1');
  t.deepEqual(Object.keys(cliObject).sort(), ['stderr', 'stdout']);

  // Errors as the reference words them.
  const call = (p: string, token = TEST_TOKEN) => apiCall(h1.ns, 'GET', p, token).then((r) => [r.status, r.body.error]);
  t.deepEqual(await call(`/networks/${network.uuid}/ping/not-an-address`), [400, 'invalid address']);
  t.deepEqual(await call(`/networks/${network.uuid}/ping/198.18.99.1`), [400, `address 198.18.99.1 outside network block ${NETBLOCK}`]);
  const missing = randomUUID();
  t.deepEqual(await call(`/networks/${missing}/ping/198.18.124.5`), [404, `network not found: "${missing}"`]);
  t.deepEqual(await call(`/networks/${network.uuid}/ping/${iface.ipv4}`, TENANT_TOKEN), [404, `network not found: "${network.uuid}"`]);
  const gone = await cliJson(h1.ns, 'network', 'create', 'gone', '198.18.125.0/24', '--no-dhcp');
  await cliJson(h1.ns, 'network', 'delete', gone.uuid);
  t.deepEqual(await call(`/networks/${gone.uuid}/ping/198.18.125.5`), [406, `network ${gone.uuid} is not ready (deleted)`]);

  // Usage: one event a second from h1 with the instance port's counters, which the pings made rise.
  const usage = async () => (await apiCall(h1.ns, 'GET', `/networks/${network.uuid}/events?event_type=usage`, TEST_TOKEN)).body as any[];
  const first = await until('a usage event', async () => ((await usage()).length > 0 ? (await usage())[0] : undefined));
  t.like(first, { type: 'usage', message: 'usage', fqdn: 'h1', extra: { host: 'h1', ports: 1 } });
  t.true(first.extra.tx.packets >= 10 && first.extra.rx.packets >= 10, JSON.stringify(first.extra));
  await apiCall(h1.ns, 'GET', `/networks/${network.uuid}/ping/${iface.ipv4}?count=3`, TEST_TOKEN);
  const later = await until('a later usage event with more packets', async () => {
    const e = (await usage())[0];
    return e.timestamp > first.timestamp && e.extra.tx.packets >= first.extra.tx.packets + 3 ? e : undefined;
  }, 40);
  t.true(later.extra.rx.packets >= first.extra.rx.packets + 3, JSON.stringify([first.extra, later.extra]));
  t.true(later.extra.tx.bytes > first.extra.tx.bytes);
  // The CLI filters by type; other events (the create request) are not usage.
  const listed = await cliJson(h1.ns, 'network', 'events', network.uuid, '--type', 'usage', '--limit', '2');
  t.is(listed.length, 2);
  t.true(listed.every((e: any) => e.type === 'usage'));
  t.is((await usage()).length > 1, true);
  // A network without local ports gets none.
  t.deepEqual((await apiCall(h1.ns, 'GET', `/networks/${gone.uuid}/events?event_type=usage`, TEST_TOKEN)).body, []);
});

/** An API call from inside `ns` to the daemon listening at `address` (not only loopback). */
/** h's API on its underlay address: TLS, trusted through the CA its daemon made in its state directory. */
function apiOf(d: Daemon) {
  return (method: string, p: string, body?: unknown) =>
    apiAt(d.host.ns, `https://${d.host.underlayIp}:7878`, method, p, TEST_TOKEN, body, path.join(d.config.stateDir!, 'tls', 'ca.pem'));
}

test('a host without a port on the network forwards the ping to the host that holds the address', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-ping2-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const store = `sqlite:${path.join(dir, 'appnet.db')}`;
  // Each API on the host's underlay address, which its host record advertises to the other.
  // Off loopback the APIs speak TLS only, and h1 forwards to h2 pinning h2's recorded certificate.
  const d1 = await net.startAppnetd(h1, { store, tokens: { [TEST_TOKEN]: 'system' }, api: { address: h1.underlayIp, port: 7878 } });
  await net.startAppnetd(h2, { store, tokens: { [TEST_TOKEN]: 'system' }, api: { address: h2.underlayIp, port: 7878 } });
  const api1 = apiOf(d1);
  const b = await net.addInstance('b');
  const created = await api1('POST', '/networks', { name: 'far', netblock: '198.18.126.0/24', provide_dhcp: false });
  t.is(created.status, 200, JSON.stringify(created.body));
  const network = created.body;
  const inst = await api1('POST', '/instances', { name: 'far', host: 'h2', netns: b.ns, interfaces: [{ network: network.uuid }] });
  t.is(inst.status, 200, JSON.stringify(inst.body));
  const iface = inst.body.interfaces[0];
  await until('instance on h2 addressed', async () => {
    const r = await run('ip', ['-n', b.ns, '-o', '-4', 'addr', 'show', 'dev', portName(iface.uuid)], { reject: false });
    return r.stdout.includes(`inet ${iface.ipv4}/`) ? true : undefined;
  });
  const ping = await api1('GET', `/networks/${network.uuid}/ping/${iface.ipv4}?count=3`);
  t.is(ping.status, 200, JSON.stringify(ping.body));
  t.is(ping.body.stdout.filter((l: string) => l.startsWith(`64 bytes from ${iface.ipv4}:`)).length, 3, ping.body.stdout.join('\n'));
  t.true(ping.body.stdout.some((l: string) => l.startsWith('3 packets transmitted, 3 received, 0% packet loss')), ping.body.stdout.join('\n'));
  // h1 itself never joined the network: it sent nothing and holds no VNI for it.
  const h1Counters = await d1.get('/engine/counters');
  t.deepEqual(h1Counters.ports, []);
});
