// The pieces of a NAT topology the NAT tests and the NAT benchmark share (docs/nat.md "Uplink and network node"):
//
//   instance ns --TAP--> appnetd on the network node (uplink anup0) --NAT--> anup0
//                        node's kernel: FLOATING_POOL dev anup0, forwarding on
//                        up0 198.18.250.1 <--veth--> eth0 OUTSIDE in <prefix>-out
//
// The outside namespace knows only the floating pool (via the node): a reply reaches an instance only if
// the engine translated its source to a floating address, and back.
import { portName } from '../../control/reconcile/plan.ts';
import { cliJson } from './api-in-ns.ts';
import { run, runIn } from './run.ts';
import type { Host, Instance, TestNet } from './testnet.ts';
import { until } from './until.ts';

export const OUTSIDE = '198.18.250.2';
export const FLOATING_POOL = '198.19.0.0/24';

/** The outside world: a namespace reachable from `node` only, which routes the floating pool back to it. */
export async function addOutside(net: TestNet, node: Host): Promise<Instance> {
  const out = await net.addInstance('out');
  await run('ip', ['-n', node.ns, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', out.ns]);
  await run('ip', ['-n', node.ns, 'addr', 'add', '198.18.250.1/24', 'dev', 'up0']);
  await run('ip', ['-n', node.ns, 'link', 'set', 'up0', 'up']);
  await run('ip', ['-n', out.ns, 'addr', 'add', `${OUTSIDE}/24`, 'dev', 'eth0']);
  await run('ip', ['-n', out.ns, 'link', 'set', 'eth0', 'up']);
  await run('ip', ['-n', out.ns, 'route', 'add', FLOATING_POOL, 'via', '198.18.250.1']);
  return out;
}

/** Creates an instance on `host` in the network (with the CLI) and gives it a default route via the gateway. */
export async function natInstance(net: TestNet, host: Host, name: string, network: any): Promise<{ ns: string; ipv4: string; iface: any }> {
  const inst = await net.addInstance(name, { host });
  const created = await cliJson(host.ns, 'instance', 'create', name, '--host', host.name, '--netns', inst.ns, '--network', network.uuid);
  const iface = created.interfaces[0];
  const tap = portName(iface.uuid);
  await until(`${name}'s TAP addressed`, async () => {
    const r = await run('ip', ['-n', inst.ns, '-o', '-4', 'addr', 'show', 'dev', tap], { reject: false });
    return r.stdout.includes(iface.ipv4) ? true : undefined;
  });
  const gw = network.netblock.replace(/\.0\/\d+$/, '.1');
  await runIn(inst.ns, 'ip', ['route', 'replace', 'default', 'via', gw]);
  return { ns: inst.ns, ipv4: iface.ipv4, iface };
}

/**
 * The outside world behind two or more network-node candidates, as an upstream router on one segment sees
 * them: a bridge in the outside namespace (OUTSIDE on it), one veth from each node (198.18.250.(10 + i)),
 * proxy ARP on the node side, and the floating pool on-link. Whichever node routes the pool into its uplink
 * answers ARP for its addresses, so a new network node is found by ARP, as a router finds a moved address.
 * The outside's neighbour timers are short, so a dead node's entry is probed and replaced within seconds.
 */
export async function addSharedOutside(net: TestNet, nodes: Host[]): Promise<Instance> {
  const out = await net.addInstance('out');
  await run('ip', ['-n', out.ns, 'link', 'add', 'br0', 'type', 'bridge']);
  await run('ip', ['-n', out.ns, 'addr', 'add', `${OUTSIDE}/24`, 'dev', 'br0']);
  await run('ip', ['-n', out.ns, 'link', 'set', 'br0', 'up']);
  for (const [i, node] of nodes.entries()) {
    const peer = `n${i}`;
    await run('ip', ['-n', node.ns, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', peer, 'netns', out.ns]);
    await run('ip', ['-n', node.ns, 'addr', 'add', `198.18.250.${10 + i}/24`, 'dev', 'up0']);
    await run('ip', ['netns', 'exec', node.ns, 'sysctl', '-q', '-w', 'net.ipv4.conf.up0.proxy_arp=1', 'net.ipv4.neigh.up0.proxy_delay=0']);
    await run('ip', ['-n', node.ns, 'link', 'set', 'up0', 'up']);
    await run('ip', ['-n', out.ns, 'link', 'set', peer, 'master', 'br0', 'up']);
  }
  await run('ip', ['netns', 'exec', out.ns, 'sysctl', '-q', '-w',
    'net.ipv4.neigh.br0.base_reachable_time_ms=1000', 'net.ipv4.neigh.br0.delay_first_probe_time=1', 'net.ipv4.neigh.br0.retrans_time_ms=300']);
  await run('ip', ['-n', out.ns, 'route', 'add', FLOATING_POOL, 'dev', 'br0']);
  return out;
}
