// Real podman (CNI backend, runc) on two TestNet hosts, with the `appnet` CNI plugin talking to each
// host's appnetd. Podman runs inside the host's namespace (so the plugin reaches that host's API on
// its loopback) and makes the containers' namespaces itself. The image is busybox-static imported
// with `podman import`: no registry. Every podman gets a private root, runroot, tmp dir, CNI config
// dir and plugin dir under the test's temp dir; the machine-specific flags (runc, cgroupfs, ulimits,
// NET_RAW for busybox ping) are here, not in the product.
//
// Shown: two containers on two hosts on one network reach each other by address and by DNS name; a
// container on another network cannot; an application connection between two containers lets only the
// inbound's port through; `podman rm` frees the addresses; a restart of appnetd keeps the networking.
import test from 'ava';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TestNet, type Daemon } from './helpers/testnet.ts';
import { spawn } from 'node:child_process';
import { run, runIn, type RunResult } from './helpers/run.ts';
import { apiCall, cliJson, cliRun, controlPlaneConfig, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { until } from './helpers/until.ts';

const PLUGIN = new URL('../bin/appnet-cni.js', import.meta.url).pathname;
const IMAGE = 'localhost/appnet-busybox:test';
const BUSYBOX_TOOLS = ['sh', 'ping', 'nslookup', 'sleep', 'ip', 'nc', 'echo'];

/** A podman of its own for host `hostNs` (name `host` in appnet), with one CNI network per appnet network. */
function podmanFor(dir: string, hostNs: string, host: string, networks: Record<string, Record<string, unknown>>) {
  for (const d of ['cni', 'plugins', 'tmp']) mkdirSync(path.join(dir, d), { recursive: true });
  writeFileSync(path.join(dir, 'plugins', 'appnet'), `#!/bin/sh\nexec ${process.execPath} ${PLUGIN} "$@"\n`);
  chmodSync(path.join(dir, 'plugins', 'appnet'), 0o755);
  for (const [name, extra] of Object.entries(networks)) {
    const plugin = { type: 'appnet', network: extra.network ?? name, host, token: TEST_TOKEN, ...extra };
    writeFileSync(path.join(dir, 'cni', `${name}.conflist`), JSON.stringify({ cniVersion: '1.0.0', name, plugins: [plugin] }));
  }
  writeFileSync(path.join(dir, 'containers.conf'), [
    '[engine]', 'cgroup_manager = "cgroupfs"', 'runtime = "runc"', 'events_logger = "file"', `tmp_dir = "${dir}/tmp"`,
    '[network]', 'network_backend = "cni"', `cni_plugin_dirs = ["${dir}/plugins", "/usr/lib/cni"]`, `network_config_dir = "${dir}/cni"`, '',
  ].join('\n'));
  const base = ['env', `CONTAINERS_CONF=${dir}/containers.conf`, 'podman', '--root', `${dir}/root`, '--runroot', `${dir}/runroot`, '--storage-driver', 'vfs'];
  // nsenter, not `ip netns exec`: that one gives podman a private mount namespace, where the bind mount
  // of the container's namespace file under /run/netns would be invisible to appnetd.
  const argv = (args: string[]) => [`--net=/run/netns/${hostNs}`, ...base, ...args];
  return Object.assign((args: string[], reject = true): Promise<RunResult> => run('nsenter', argv(args), { reject }), {
    spawn: (args: string[]) => spawn('nsenter', argv(args), { detached: true, stdio: 'ignore' }),
  });
}

const RUN_FLAGS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--cap-add', 'NET_RAW'];

test('podman containers on appnet networks across two hosts: address, name, isolation, connection, rm, restart', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const cp = await controlPlaneConfig(net);
  const d1: Daemon = await net.startAppnetd(h1, cp);
  await net.startAppnetd(h2, cp);
  await cliJson(h1.ns, 'network', 'create', 'blue', '198.18.122.0/24', '--dns', '--no-nat');
  await cliJson(h1.ns, 'network', 'create', 'red', '198.18.123.0/24', '--no-nat');

  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-122-'));
  const podmen: Array<ReturnType<typeof podmanFor>> = [];
  t.teardown(async () => {
    // Containers first (their CNI DEL needs the daemons, which the TestNet stops after this), then storage.
    for (const p of podmen) await p(['rm', '-af', '-t', '0'], false).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  const rootfs = path.join(dir, 'rootfs');
  mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const tool of BUSYBOX_TOOLS) symlinkSync('busybox', path.join(rootfs, 'bin', tool));
  await runIn(h1.ns, 'tar', ['-C', rootfs, '-cf', path.join(dir, 'rootfs.tar'), '.']);

  const networks = { blue: {}, red: {}, 'blue-sink': { network: 'blue', inbounds: [{ name: 'in', port: 5201 }] }, 'blue-src': { network: 'blue', outbounds: [{ name: 'db' }] } };
  const p1 = podmanFor(path.join(dir, 'h1'), h1.ns, 'h1', networks);
  const p2 = podmanFor(path.join(dir, 'h2'), h2.ns, 'h2', networks);
  podmen.push(p1, p2);
  for (const p of podmen) await p(['import', path.join(dir, 'rootfs.tar'), IMAGE]);
  const start = (p: typeof p1, name: string, network: string) => p(['run', '-d', '--name', name, '--network', network, ...RUN_FLAGS, IMAGE, 'sleep', '3600']);

  await start(p1, 'ca', 'blue');
  await start(p2, 'cb', 'blue');
  await start(p2, 'cc', 'red');
  const inst = async (name: string) => (await apiCall(h1.ns, 'GET', `/instances/${name}`, TEST_TOKEN)).body;
  const ipOf = async (name: string) => (await inst(name)).interfaces[0].ipv4 as string;
  const [ipA, ipB, ipC] = [await ipOf('ca'), await ipOf('cb'), await ipOf('cc')];
  const pings = async (p: typeof p1, from: string, to: string) => (await p(['exec', from, 'ping', '-c', '1', '-W', '1', to], false)).code === 0;

  t.true(await until('ca reaches cb across hosts', async () => (await pings(p1, 'ca', ipB)) || undefined, 80));
  const b = await inst('cb');
  const blue = (await apiCall(h1.ns, 'GET', '/networks/blue', TEST_TOKEN)).body;
  const lookup = await p1(['exec', 'ca', 'nslookup', `cb.${blue.namespace ?? b.namespace}.appnet.internal`, '198.18.122.1'], false);
  t.true(lookup.stdout.includes(ipB), lookup.stdout + lookup.stderr);
  t.false(await pings(p1, 'ca', ipC));
  t.false(await pings(p2, 'cc', ipA));

  // An application connection: only the inbound's port of the sink passes.
  await start(p2, 'sink', 'blue-sink');
  await start(p1, 'src', 'blue-src');
  await cliJson(h1.ns, 'add', 'src', 'db', 'sink', 'in');
  const conn = await until('the connection is ESTABLISHED', async () => {
    const list = await cliJson(h1.ns, 'list');
    return list.length === 1 && list[0].status === 'ESTABLISHED' ? list[0] : undefined;
  }, 120);
  for (const port of [5201, 5202]) net.track(p2.spawn(['exec', 'sink', 'nc', '-ll', '-p', String(port), '-e', 'echo', `hello from ${port}`]));
  const reaches = async (port: number) => {
    const r = await p1(['exec', 'src', 'sh', '-c', `nc -w 2 ${conn.link.inbound_address} ${port} </dev/null`], false);
    return r.stdout.includes(`hello from ${port}`);
  };
  t.true(await until('src reaches sink:5201 over the connection', async () => (await reaches(5201)) || undefined, 40));
  // The outbound's name (APPNET_OUTBOUND_DB, from `appnet instance env src --format env`, as podman's
  // --env-file reads it) resolves in the container through the network's DNS, to the inbound's address.
  const env = await cliRun(h1.ns, 'instance', 'env', 'src', '--format', 'env');
  const outboundName = /^APPNET_OUTBOUND_DB=(\S+)$/m.exec(env.stdout)?.[1];
  t.truthy(outboundName, env.stdout);
  const resolved = await p1(['exec', 'src', 'nslookup', outboundName!, '198.18.122.1'], false);
  t.true(resolved.stdout.includes(conn.link.inbound_address), resolved.stdout + resolved.stderr);
  t.false(await reaches(5202), 'another port of the sink passed');

  // A restart of appnetd on h1: ca's port comes back and still reaches cb.
  await d1.stop();
  await d1.start();
  t.true(await until('ca reaches cb after the restart', async () => (await pings(p1, 'ca', ipB)) || undefined, 120));

  // podman rm: the instances go and their addresses are free.
  await p1(['rm', '-f', '-t', '0', 'ca']);
  await p2(['rm', '-f', '-t', '0', 'cb']);
  t.is((await apiCall(h1.ns, 'GET', '/instances/ca', TEST_TOKEN)).status, 404);
  const used = (await apiCall(h1.ns, 'GET', '/networks/blue/addresses', TEST_TOKEN)).body as Array<{ address: string; type: string }>;
  t.false(used.some((a) => a.type === 'instance' && (a.address === ipA || a.address === ipB)), JSON.stringify(used));
});
