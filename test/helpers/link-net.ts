// Two test hosts in store mode with one encrypted network (created with the CLI) and one instance
// on each host: the set-up every encrypted-link test starts from.
import type { ExecutionContext } from 'ava';
import { TestNet, type Daemon, type DaemonConfigInput, type Host, type Instance } from './testnet.ts';
import { cliJson, controlPlaneConfig } from './api-in-ns.ts';
import { until } from './until.ts';
export { until } from './until.ts';

export interface LinkNet {
  net: TestNet;
  h1: Host;
  h2: Host;
  d1: Daemon;
  d2: Daemon;
  a: Instance;
  b: Instance;
  addrA: string;
  addrB: string;
  network: { uuid: string; vxlan_id: number };
  store: string;
  /** Interface uuids of a's and b's ports. */
  ifaceA: string;
  ifaceB: string;
}


/** Both daemons report a current session with each other. */
export async function linkUp(d1: Daemon, d2: Daemon): Promise<void> {
  await until('link sessions on both hosts', async () => {
    const [l1, l2] = await Promise.all([d1.get('/engine/links'), d2.get('/engine/links')]);
    const ok = (l: any) => l.peers.length > 0 && l.peers.every((p: any) => p.current !== null);
    return ok(l1) && ok(l2) ? true : undefined;
  });
}

export async function buildLinkNet(t: ExecutionContext, opts: { daemon?: DaemonConfigInput; hosts?: number; encrypt?: boolean; onlyH1?: DaemonConfigInput } = {}): Promise<LinkNet> {
  const net = await TestNet.create(t, { hosts: opts.hosts ?? 2 });
  const [h1, h2] = net.hosts;
  const cp = await controlPlaneConfig(net, opts.daemon);
  const store = cp.store!;
  const d1 = await net.startAppnetd(h1, { ...cp, ...opts.onlyH1 });
  const d2 = await net.startAppnetd(h2, cp);
  const a = await net.addInstance('a');
  const b = await net.addInstance('b');
  const network = await cliJson(h1.ns, 'network', 'create', 'secret', '198.18.110.0/24', '--no-dhcp', ...(opts.encrypt === false ? [] : ['--encrypt']));
  const ia = await cliJson(h1.ns, 'instance', 'create', 'a', '--host', 'h1', '--netns', a.ns, '--network', network.uuid);
  const ib = await cliJson(h2.ns, 'instance', 'create', 'b', '--host', 'h2', '--netns', b.ns, '--network', network.uuid);
  await until('interfaces created', async () => {
    const list = await cliJson(h1.ns, 'network', 'interfaces', network.uuid);
    return list.length === 2 && list.every((i: any) => i.state === 'created') ? list : undefined;
  });
  if (opts.encrypt !== false) await linkUp(d1, d2);
  return {
    net, h1, h2, d1, d2, a, b, addrA: ia.interfaces[0].ipv4, addrB: ib.interfaces[0].ipv4, network, store,
    ifaceA: ia.interfaces[0].uuid, ifaceB: ib.interfaces[0].uuid,
  };
}
