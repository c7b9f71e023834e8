// Everything wave 1 built, on three hosts that share nothing but a three-member etcd cluster and the
// underlay (test/helpers/cluster-net.ts): networks plain and encrypted, DHCP, DNS, NAT with floating and
// routed addresses, application connections, capture and the ping API through any host's API.
import test from 'ava';
import { writeFileSync, chmodSync } from 'node:fs';
import { portName } from '../control/reconcile/plan.ts';
import { apiCall, cliJson, cliRun, startCliCapture, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { buildClusterNet, startClusterDaemon } from './helpers/cluster-net.ts';
import { addOutside, natInstance, OUTSIDE } from './helpers/nat-net.ts';
import { run, runIn, spawnIn } from './helpers/run.ts';
import { tsharkFields, type Host, type TestNet } from './helpers/testnet.ts';
import { until } from './helpers/until.ts';

const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  bound|renew) echo "bound ip=$ip router=$router dns=$dns"; ip addr replace "$ip/$subnet" dev "$interface" ;;
esac
exit 0
`;

/** An instance on `host` in `network`, its namespace placed on that host's machine. */
async function instanceOn(net: TestNet, host: Host, name: string, network: string) {
  const inst = await net.addInstance(name, { host });
  const rec = await cliJson(host.ns, 'instance', 'create', name, '--host', host.name, '--netns', inst.ns, '--network', network);
  const iface = rec.interfaces[0];
  const tap = portName(iface.uuid);
  await until(`${name}'s TAP in its namespace`, async () => ((await run('ip', ['-n', inst.ns, 'link', 'show', 'dev', tap], { reject: false })).code === 0 ? true : undefined));
  return { inst, rec, iface, tap, ns: inst.ns, ipv4: iface.ipv4 as string };
}

test('networks, DHCP, DNS, encrypted links, the ping API and capture work across machines on etcd', async (t) => {
  const { net, daemons } = await buildClusterNet(t);
  const [h1, h2, h3] = net.hosts;

  // Every host sees every other host's record, with an API address it can reach.
  const hosts = await until('three hosts registered', async () => {
    const list = await cliJson(h2.ns, 'host', 'list');
    return list.length === 3 ? list : undefined;
  });
  t.deepEqual(hosts.map((h: any) => h.api).sort(), ['https://198.18.0.11:7878', 'https://198.18.0.12:7878', 'https://198.18.0.13:7878']);
  t.true(hosts.every((h: any) => /BEGIN CERTIFICATE/.test(h.certificate ?? '')), 'every record carries the certificate its peers pin');

  // A DHCP + DNS network with instances on h1 and h3, made through h2's API.
  const svc = await cliJson(h2.ns, 'network', 'create', 'svc', '198.18.140.0/24', '--dns');
  const a = await instanceOn(net, h1, 'a', svc.uuid);
  const b = await instanceOn(net, h3, 'b', svc.uuid);
  for (const [x, host] of [[a, h1], [b, h3]] as const) {
    const script = `/tmp/udhcpc-${x.inst.name}.sh`;
    writeFileSync(net.machinePath(host, script), UDHCPC_SCRIPT);
    chmodSync(net.machinePath(host, script), 0o755);
    const r = await runIn(x.ns, 'udhcpc', ['-i', x.tap, '-f', '-q', '-n', '-t', '5', '-T', '1', '-s', script], { timeoutMs: 30_000, reject: false });
    t.true(r.stdout.includes(`bound ip=${x.ipv4} router=198.18.140.1 dns=198.18.140.1`), `${x.inst.name}: ${r.stdout}${r.stderr}`);
  }
  const ab = await net.ping(a.ns, b.ipv4, { count: 5, interval: 0.1 });
  t.is(ab.received, 5, ab.output);
  const fqdn = `b.${svc.namespace}.appnet.internal`;
  const lookup = await runIn(a.ns, 'busybox', ['nslookup', fqdn, '198.18.140.1'], { reject: false });
  t.true(lookup.stdout.includes(b.ipv4), lookup.stdout + lookup.stderr);

  // The ping API on h2, which has no port on the network: forwarded to h3, which holds b's address.
  const ping = await apiCall(h2.ns, 'GET', `/networks/${svc.uuid}/ping/${b.ipv4}?count=3`, TEST_TOKEN);
  t.is(ping.status, 200, JSON.stringify(ping.body));
  t.true(ping.body.stdout.some((l: string) => /3 packets transmitted, 3 received/.test(l)), ping.body.stdout.join('\n'));

  // An encrypted network between h2 and h3: the underlay carries only link datagrams.
  const sec = await cliJson(h1.ns, 'network', 'create', 'sec', '198.18.141.0/24', '--no-dhcp', '--encrypt');
  const c = await instanceOn(net, h2, 'c', sec.uuid);
  const d = await instanceOn(net, h3, 'd', sec.uuid);
  const wire = await net.capture(h3.ns, 'ul0', { filter: 'udp and host 198.18.0.12' });
  const cd = await until('encrypted ping', async () => {
    const r = await net.ping(c.ns, d.ipv4, { count: 3, interval: 0.2 });
    return r.received === 3 ? r : undefined;
  }, 30);
  t.is(cd.received, 3);
  const ports = new Set(tsharkFields(await wire.stop(), ['udp.dstport']).map((r) => r[0]));
  t.deepEqual([...ports], ['51830'], 'only link datagrams between h2 and h3');

  // Capture through h3's own API, written inside h3's machine: b's side of a ping.
  const file = '/tmp/b.pcapng';
  const cap = await startCliCapture(net, h3.ns, '--network', svc.uuid, '-w', file);
  await net.ping(a.ns, b.ipv4, { count: 4, interval: 0.1 });
  cap.stop();
  const done = await cap.done;
  t.is(done.code, 0, done.stderr);
  const icmp = tsharkFields(net.machinePath(h3, file), ['icmp.type'], 'icmp');
  t.true(icmp.length >= 8, `captured ${icmp.length} ICMP packets`);
  t.is(daemons.length, 3);
});

test('NAT on one host with an uplink serves instances on another machine: SNAT, floating and routed addresses', async (t) => {
  const { net, config } = await buildClusterNet(t, { noDaemons: true });
  const [h1, , h3] = net.hosts;
  const out = await addOutside(net, h1);
  for (const h of net.hosts) await startClusterDaemon(net, h, config, h === h1 ? { uplink: { device: 'anup0' } } : {});

  const network = await cliJson(h3.ns, 'network', 'create', 'natted', '198.18.142.0/24', '--no-dhcp');
  const x = await natInstance(net, h3, 'x', network);
  const fgw = (await until('floating gateway', async () => (await cliJson(h3.ns, 'network', 'show', network.uuid)).floating_gateway ?? undefined)) as string;
  const capOut = await net.capture(out.ns, 'eth0', { filter: 'ip' });
  const p = await until('through the network node', async () => {
    const r = await net.ping(x.ns, OUTSIDE, { count: 3, interval: 0.2 });
    return r.received === 3 ? r : undefined;
  }, 30);
  t.is(p.received, 3);
  t.deepEqual([...new Set(tsharkFields(await capOut.stop(), ['ip.src']).map((r) => r[0]))].sort(), [OUTSIDE, fgw].sort());

  const fip: string = (await cliJson(h3.ns, 'interface', 'float', x.iface.uuid)).floating;
  const inbound = await until('outside reaches the floating address', async () => {
    const r = await net.ping(out.ns, fip, { count: 2, interval: 0.2 });
    return r.received > 0 ? r : undefined;
  }, 20);
  t.true(inbound.received > 0);
  const routed: string = await cliJson(h3.ns, 'network', 'route', network.uuid);
  await runIn(x.ns, 'ip', ['addr', 'add', `${routed}/32`, 'dev', portName(x.iface.uuid)]);
  const viaRoute = await until('outside reaches the routed address', async () => {
    const r = await net.ping(out.ns, routed, { count: 2, interval: 0.2 });
    return r.received > 0 ? r : undefined;
  }, 20);
  t.true(viaRoute.received > 0);
});

test('an application connection between machines lets only its port through, found by name', async (t) => {
  const { net } = await buildClusterNet(t);
  const [h1, , h3] = net.hosts;
  const srcNs = await net.addInstance('src', { host: h1 });
  const sinkNs = await net.addInstance('sink', { host: h3 });
  const sink = await cliJson(h3.ns, 'instance', 'create', 'sink', '--host', 'h3', '--netns', sinkNs.ns, '--inbound', 'in:5201');
  const src = await cliJson(h1.ns, 'instance', 'create', 'src', '--host', 'h1', '--netns', srcNs.ns, '--outbound', 'db');
  await cliRun(h1.ns, 'add', src.uuid, 'db', sink.uuid, 'in');
  const conn = await until('connection established', async () => {
    const list = await cliJson(h3.ns, 'list');
    return list.length === 1 && list[0].status === 'ESTABLISHED' ? list[0] : undefined;
  }, 60);
  const name = `db.${src.uuid.replace(/-/g, '').slice(0, 8)}.appnet`;
  const resolved = (await runIn(srcNs.ns, 'getent', ['hosts', name])).stdout.trim().split(/\s+/)[0];
  t.is(resolved, conn.link.inbound_address);
  const r = await net.tcpTransfer(srcNs.ns, sinkNs.ns, resolved, 256 * 1024, 5201, { timeoutMs: 30_000 });
  t.is(r.receivedSha256, r.sentSha256);
  const listener = net.track(spawnIn(sinkNs.ns, process.execPath, ['-e', "require('net').createServer((s) => s.end()).listen(5202)"]));
  t.teardown(() => { listener.kill('SIGKILL'); });
  const other = await runIn(srcNs.ns, 'timeout', ['2', 'bash', '-c', `exec 3<>/dev/tcp/${resolved}/5202`], { reject: false });
  t.not(other.code, 0, 'port 5202 of the sink must not be reachable through the connection');
  // The name lives in h1's machine only: the sink's machine has no such file.
  t.is((await runIn(h3.ns, 'test', ['-e', `/etc/netns/${srcNs.ns}/hosts`], { reject: false })).code, 1);
});
