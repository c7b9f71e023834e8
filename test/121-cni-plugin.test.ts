// The `appnet` CNI plugin run as a runtime runs it (minimal environment, netconf on stdin) against the
// appnetd of its host, two hosts on one SQLite store. The containers' namespaces are made by the test at
// a path, as a runtime makes them; the daemon never creates or deletes them. Shown: ADD gives a result
// with the address, gateway, route and DNS, and the two containers reach each other by address and by
// DNS name; a container on another network cannot; CHECK passes, and fails for an unknown container;
// DEL frees the addresses and is idempotent (also with appnetd gone); a failed ADD leaves no instance;
// a restart of appnetd keeps the containers' networking; kill -9 of appnetd during ADD leaks nothing
// once the runtime's DEL follows.
import test from 'ava';
import { TestNet, type Daemon } from './helpers/testnet.ts';
import { runIn } from './helpers/run.ts';
import { apiCall, cliJson, controlPlaneConfig, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { until } from './helpers/until.ts';

const PLUGIN = new URL('../bin/appnet-cni.js', import.meta.url).pathname;

interface Cni { code: number | null; out: any; stderr: string }

/** One plugin run in host namespace `hostNs`, with only the CNI_* variables, as a runtime runs it. */
async function cni(hostNs: string, command: string, containerId: string, netnsPath: string, conf: Record<string, unknown>): Promise<Cni> {
  const env = [`CNI_COMMAND=${command}`, `CNI_CONTAINERID=${containerId}`, `CNI_NETNS=${netnsPath}`, 'CNI_IFNAME=eth0', 'CNI_PATH=/opt/cni/bin',
    `CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=${containerId};K8S_POD_NAMESPACE=${containerId}`];
  const r = await runIn(hostNs, 'env', ['-i', ...env, process.execPath, PLUGIN], { input: JSON.stringify(conf), reject: false });
  return { code: r.code, out: r.stdout.trim() === '' ? null : JSON.parse(r.stdout), stderr: r.stderr };
}

/** A network-level command (STATUS, GC): only CNI_COMMAND and CNI_PATH in the environment, as the spec says. */
async function cniNet(hostNs: string, command: string, conf: Record<string, unknown>): Promise<Cni> {
  const r = await runIn(hostNs, 'env', ['-i', `CNI_COMMAND=${command}`, 'CNI_PATH=/opt/cni/bin', process.execPath, PLUGIN], { input: JSON.stringify(conf), reject: false });
  return { code: r.code, out: r.stdout.trim() === '' ? null : JSON.parse(r.stdout), stderr: r.stderr };
}

const pings = async (ns: string, addr: string) => (await runIn(ns, 'ping', ['-c', '1', '-W', '1', addr], { reject: false })).code === 0;

async function usedAddresses(ns: string, network: string): Promise<string[]> {
  const r = await apiCall(ns, 'GET', `/networks/${network}/addresses`, TEST_TOKEN);
  return (r.body as Array<{ address: string; type: string }>).filter((a) => a.type === 'instance').map((a) => a.address);
}

test('containers on two hosts through the CNI plugin: reach by address and name, isolation, CHECK, DEL, restart, kill during ADD', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const cp = await controlPlaneConfig(net);
  // h1's API also listens on its underlay address, with TLS (its own CA, in its state directory).
  const d1: Daemon = await net.startAppnetd(h1, { ...cp, api: { address: h1.underlayIp, port: 7878 } });
  const d2: Daemon = await net.startAppnetd(h2, cp);
  await cliJson(h1.ns, 'network', 'create', 'blue', '198.18.120.0/24', '--dns', '--no-nat');
  await cliJson(h1.ns, 'network', 'create', 'red', '198.18.121.0/24', '--no-nat');
  const conf = (network: string, host: string) => ({ cniVersion: '1.0.0', name: `appnet-${network}`, type: 'appnet', network, host, token: TEST_TOKEN });

  const a = await net.addInstance('ca');
  const b = await net.addInstance('cb');
  const c = await net.addInstance('cc');
  const path = (ns: string) => `/run/netns/${ns}`;

  const addA = await cni(h1.ns, 'ADD', 'ca', path(a.ns), conf('blue', 'h1'));
  t.is(addA.code, 0, JSON.stringify(addA.out) + addA.stderr);
  t.is(addA.out.cniVersion, '1.0.0');
  t.is(addA.out.interfaces[0].sandbox, path(a.ns));
  t.regex(addA.out.ips[0].address, /^198\.18\.120\.\d+\/24$/);
  t.is(addA.out.ips[0].gateway, '198.18.120.1');
  t.deepEqual(addA.out.routes, [{ dst: '0.0.0.0/0', gw: '198.18.120.1' }]);
  t.deepEqual(addA.out.dns.nameservers, ['198.18.120.1']);
  const addB = await cni(h2.ns, 'ADD', 'cb', path(b.ns), conf('blue', 'h2'));
  t.is(addB.code, 0, JSON.stringify(addB.out));
  const addC = await cni(h2.ns, 'ADD', 'cc', path(c.ns), conf('red', 'h2'));
  t.is(addC.code, 0, JSON.stringify(addC.out));
  const ipA = addA.out.ips[0].address.split('/')[0];
  const ipB = addB.out.ips[0].address.split('/')[0];
  const ipC = addC.out.ips[0].address.split('/')[0];

  // The device is named as the runtime asked (CNI_IFNAME), with its address and default route, in the
  // container's namespace.
  t.is(addA.out.interfaces[0].name, 'eth0');
  const shown = await runIn(a.ns, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0']);
  t.true(shown.stdout.includes(addA.out.ips[0].address), shown.stdout);
  const route = await runIn(a.ns, 'ip', ['route', 'show', 'default']);
  t.regex(route.stdout, new RegExp(`default via 198\\.18\\.120\\.1 dev ${addA.out.interfaces[0].name}`));
  t.true(await until('a reaches b across hosts', async () => (await pings(a.ns, ipB)) || undefined, 80));
  // By name: the network's DNS answers the instance's name in the result's domain.
  const lookup = await runIn(a.ns, 'busybox', ['nslookup', `cb.${addA.out.dns.domain}`, '198.18.120.1'], { reject: false });
  t.regex(lookup.stdout, new RegExp(ipB.replace(/\./g, '\\.')), lookup.stdout + lookup.stderr);
  // Another network: no route from a to c (nothing answers for it on blue).
  t.false(await pings(a.ns, ipC));
  t.false(await pings(c.ns, ipA));

  // A repeated ADD adopts (same address); CHECK passes; CHECK of an unknown container is code 3.
  const again = await cni(h1.ns, 'ADD', 'ca', path(a.ns), conf('blue', 'h1'));
  t.is(again.out.ips[0].address, addA.out.ips[0].address);
  const check = await cni(h1.ns, 'CHECK', 'ca', path(a.ns), { ...conf('blue', 'h1'), prevResult: addA.out });
  t.is(check.code, 0, JSON.stringify(check.out));
  // The same over TLS, trusting only the daemon's CA (netconf ca); an unreadable ca is a config error (7).
  const tls = { ...conf('blue', 'h1'), api: `https://${h1.underlayIp}:7878`, ca: `${d1.config.stateDir}/tls/ca.pem`, prevResult: addA.out };
  const checkTls = await cni(h1.ns, 'CHECK', 'ca', path(a.ns), tls);
  t.is(checkTls.code, 0, JSON.stringify(checkTls.out));
  const noCa = await cni(h1.ns, 'CHECK', 'ca', path(a.ns), { ...tls, ca: '/nonexistent/ca.pem' });
  t.like(noCa.out, { code: 7 });
  t.regex(noCa.out.msg, /ca: cannot read \/nonexistent\/ca\.pem/);
  const unknown = await cni(h1.ns, 'CHECK', 'nobody', path(a.ns), { ...conf('blue', 'h1'), prevResult: addA.out });
  t.is(unknown.code, 1);
  t.like(unknown.out, { cniVersion: '1.0.0', code: 3 });

  // A failed ADD (no such network) is an error object and leaves no instance.
  const bad = await cni(h1.ns, 'ADD', 'cx', path(c.ns), conf('green', 'h1'));
  t.is(bad.code, 1);
  t.is(bad.out.code, 100);
  t.regex(bad.out.msg, /green/);
  t.is((await apiCall(h1.ns, 'GET', '/instances/cx', TEST_TOKEN)).status, 404);

  // A restart of appnetd: the containers' ports are made again, with address and route.
  await d1.stop();
  await d1.start();
  t.true(await until('a reaches b after the restart', async () => (await pings(a.ns, ipB)) || undefined, 120));

  // STATUS (1.1.0): ready for a network that exists; code 50 naming the cause otherwise, or with appnetd gone.
  const v11 = (network: string, host: string) => ({ ...conf(network, host), cniVersion: '1.1.0' });
  t.is((await cniNet(h2.ns, 'STATUS', v11('blue', 'h2'))).code, 0);
  const noNet = await cniNet(h2.ns, 'STATUS', v11('green', 'h2'));
  t.like(noNet.out, { cniVersion: '1.1.0', code: 50 });
  t.regex(noNet.out.msg, /network green/);
  // GC (1.1.0) of red on h2 with no valid attachment: cc (red, h2) goes and its address is freed; cb (blue,
  // h2) and ca (h1) stay. A GC that lists cc keeps it.
  t.is((await cniNet(h2.ns, 'GC', { ...v11('red', 'h2'), 'cni.dev/valid-attachments': [{ containerID: 'cc', ifname: 'eth0' }] })).code, 0);
  t.is((await apiCall(h1.ns, 'GET', '/instances/cc', TEST_TOKEN)).status, 200);
  const gcRed = await cniNet(h2.ns, 'GC', { ...v11('red', 'h2'), 'cni.dev/valid-attachments': [] });
  t.is(gcRed.code, 0, JSON.stringify(gcRed.out));
  t.is(gcRed.out, null);
  t.is((await apiCall(h1.ns, 'GET', '/instances/cc', TEST_TOKEN)).status, 404);
  t.false((await usedAddresses(h1.ns, 'red')).includes(ipC));
  t.is((await apiCall(h1.ns, 'GET', '/instances/cb', TEST_TOKEN)).status, 200);
  t.is((await apiCall(h1.ns, 'GET', '/instances/ca', TEST_TOKEN)).status, 200);

  // DEL frees the address; DEL again, and DEL with appnetd gone, succeed.
  const delB = await cni(h2.ns, 'DEL', 'cb', path(b.ns), conf('blue', 'h2'));
  t.is(delB.code, 0, JSON.stringify(delB.out));
  t.false((await usedAddresses(h1.ns, 'blue')).includes(ipB));
  t.is((await cni(h2.ns, 'DEL', 'cb', path(b.ns), conf('blue', 'h2'))).code, 0);
  t.is((await cni(h2.ns, 'DEL', 'cb', '', conf('blue', 'h2'))).code, 0);

  // kill -9 of appnetd while ADD waits for the interface: ADD fails with "try again later" (11); once
  // appnetd is back, the runtime's DEL removes what ADD had begun, and no address is left. The container
  // is placed on h2 while h2's daemon is down, so that ADD is surely still waiting when h1's dies.
  const d = await net.addInstance('cd');
  const before = await usedAddresses(h1.ns, 'blue');
  await d2.stop();
  const pending = cni(h1.ns, 'ADD', 'cd', path(d.ns), conf('blue', 'h2'));
  await until('the instance of cd exists', async () => (await apiCall(h1.ns, 'GET', '/instances/cd', TEST_TOKEN)).status === 200 || undefined, 80);
  await d1.kill9();
  const failed = await pending;
  t.is(failed.code, 1);
  t.is(failed.out.code, 11, JSON.stringify(failed.out));
  await d2.start();
  await d1.start();
  t.is((await cni(h1.ns, 'DEL', 'cd', path(d.ns), conf('blue', 'h1'))).code, 0);
  t.deepEqual((await usedAddresses(h1.ns, 'blue')).sort(), before.sort());
  t.is((await apiCall(h1.ns, 'GET', '/instances/cd', TEST_TOKEN)).status, 404);
});
