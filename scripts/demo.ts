// The README's demo: three test hosts (network namespaces on a bridged underlay), appnetd on each
// sharing one SQLite store, two networks and four instances made with the `appnet` CLI, the CLI's
// tables, and a ping matrix: instances on the same network reach each other, across networks not.
// Everything it makes is removed at the end, whatever happens.
//
// `--etcd`: the same on hosts that share nothing (each its own network, mount and UTS namespaces, as
// separate machines) but a three-member etcd cluster on their underlay (test/helpers/cluster-net.ts).
import type { ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestNet, type Host, type Instance } from '../test/helpers/testnet.ts';
import { runIn } from '../test/helpers/run.ts';
import { EtcdCluster } from '../test/helpers/etcd-cluster.ts';
import { clusterConfig, startClusterDaemon } from '../test/helpers/cluster-net.ts';

const APPNET = fileURLToPath(new URL('../bin/appnet.js', import.meta.url));
const TOKEN = `demo-${Math.random().toString(36).slice(2)}-token`;
const ETCD = process.argv.includes('--etcd');

const cleanups: Array<() => unknown> = [];
let failed = false;
// TestNet was made for ava; this stands in for a test's context.
const ctx = {
  teardown: (fn: () => unknown) => cleanups.push(fn),
  get passed() { return !failed; },
} as unknown as ExecutionContext;

async function appnet(host: Host, ...args: string[]): Promise<string> {
  const r = await runIn(host.ns, 'env', ['APPNET_API=http://127.0.0.1:7878', `APPNET_TOKEN=${TOKEN}`, 'node', APPNET, ...args]);
  return r.stdout;
}

function show(title: string, text: string): void {
  console.log(`\n$ appnet ${title}`);
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

try {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-demo-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  let cp;
  let net: TestNet;
  if (ETCD) {
    console.log('demo: three hosts as separate machines (own network, mount and UTS namespaces) on a bridged underlay, 198.18.0.0/24,');
    console.log('      sharing nothing but a three-member etcd cluster on that underlay (198.18.0.201-203)');
    net = await TestNet.create(ctx, { hosts: 3, machines: true });
    const etcd = await EtcdCluster.start(ctx, { members: 3, attach: { ns: net.underlayNs, bridge: 'br0', subnet: '198.18.0', firstHost: 201 } });
    cp = clusterConfig(etcd, { tokens: { [TOKEN]: 'system' } });
  } else {
    console.log('demo: three hosts (network namespaces on a bridged underlay, 198.18.0.0/24), one SQLite store');
    net = await TestNet.create(ctx, { hosts: 3 });
    cp = { store: `sqlite:${path.join(dir, 'appnet.db')}`, tokens: { [TOKEN]: 'system' } };
  }
  const [h1, h2, h3] = net.hosts;
  for (const h of net.hosts) await (ETCD ? startClusterDaemon(net, h, cp) : net.startAppnetd(h, cp));

  const red = JSON.parse(await appnet(h1, 'network', 'create', 'red', '198.18.110.0/24', '--no-dhcp', '--json'));
  const blue = JSON.parse(await appnet(h1, 'network', 'create', 'blue', '198.18.111.0/24', '--no-dhcp', '--json'));
  const placement: Array<[string, Host, string]> = [['red-1', h1, red.uuid], ['red-2', h2, red.uuid], ['blue-1', h2, blue.uuid], ['blue-2', h3, blue.uuid]];
  const instances: Array<{ name: string; inst: Instance; addr: string; network: string; port: string }> = [];
  for (const [name, host, network] of placement) {
    const inst = await net.addInstance(name, { host });
    const made = JSON.parse(await appnet(h1, 'instance', 'create', name, '--host', host.name, '--netns', inst.ns, '--network', network, '--json'));
    const port = `an${made.interfaces[0].uuid.replace(/-/g, '').slice(0, 8)}`;
    instances.push({ name, inst, addr: made.interfaces[0].ipv4, network: network === red.uuid ? 'red' : 'blue', port });
  }
  // Wait until every daemon has built its ports.
  for (let i = 0; i < 80; i++) {
    const ifaces = [...JSON.parse(await appnet(h1, 'network', 'interfaces', 'red', '--json')), ...JSON.parse(await appnet(h1, 'network', 'interfaces', 'blue', '--json'))];
    if (ifaces.length === 4 && ifaces.every((x: { state: string }) => x.state === 'created')) break;
    await sleep(250);
  }

  // No gateway yet: give every instance an on-link route to the other network, so that a ping
  // across networks really leaves the instance (ARP into its own VNI) and the overlay must drop it.
  for (const d of instances) {
    const other = d.network === 'red' ? '198.18.111.0/24' : '198.18.110.0/24';
    await runIn(d.inst.ns, 'ip', ['route', 'add', other, 'dev', d.port]);
  }

  show('host list', await appnet(h1, 'host', 'list'));
  show('network list', await appnet(h1, 'network', 'list'));
  show('instance list', await appnet(h1, 'instance', 'list'));
  show('network addresses red', await appnet(h1, 'network', 'addresses', 'red'));

  console.log('\nping matrix (row pings column; expected: reach within a network, none across)');
  const w = 16;
  console.log(''.padEnd(w) + instances.map((d) => `${d.name} ${d.addr}`.padEnd(w + 8)).join(''));
  for (const from of instances) {
    let row = `${from.name}`.padEnd(w);
    for (const to of instances) {
      if (to === from) { row += '-'.padEnd(w + 8); continue; }
      const p = await net.ping(from.inst.ns, to.addr, { count: 2, interval: 0.1, timeoutS: 3 });
      const reach = p.received > 0;
      const expected = from.network === to.network;
      if (reach !== expected) failed = true;
      row += `${reach ? 'reach' : 'no reach'}${reach === expected ? '' : ' (WRONG)'}`.padEnd(w + 8);
    }
    console.log(row);
  }
  console.log(failed ? '\ndemo: FAILED, the matrix is not as expected' : '\ndemo: OK, same network reaches, different networks do not');
} catch (e) {
  failed = true;
  console.error(`demo: ${(e as Error).message}`);
} finally {
  for (const fn of cleanups.reverse()) await fn();
  console.log('demo: cleaned up (no namespaces, devices or daemons left)');
}
process.exit(failed ? 1 : 0);
