// Egress NAT through the network node's uplink, end to end (docs/nat.md "Uplink and network node"), on the
// topology of test/helpers/nat-net.ts: h1 is the network node, the outside namespace is reachable only
// through its uplink and knows only the floating pool.
import test from 'ava';
import { portName } from '../control/reconcile/plan.ts';
import { TestNet, tsharkFields } from './helpers/testnet.ts';
import { run, runIn } from './helpers/run.ts';
import { apiCall, cliJson, controlPlaneConfig, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { until } from './helpers/until.ts';
import { addOutside, FLOATING_POOL, natInstance, OUTSIDE } from './helpers/nat-net.ts';

test.serial('an instance on the network node reaches the outside through the uplink, seen only as the floating gateway', async (t) => {
  const net = await TestNet.create(t, { hosts: 1 });
  const [h1] = net.hosts;
  const out = await addOutside(net, h1);
  const d1 = await net.startAppnetd(h1, await controlPlaneConfig(net, { uplink: { device: 'anup0' } }));

  // The daemon opened the uplink and, as the network node, routed the floating pool into it.
  const poolRoute = await until('floating pool routed into the uplink', async () => {
    const r = (await run('ip', ['-n', h1.ns, 'route', 'show', FLOATING_POOL])).stdout;
    return /dev anup0/.test(r) ? r : undefined;
  });
  t.regex(poolRoute, /dev anup0/);

  const network = await cliJson(h1.ns, 'network', 'create', 'natted', '198.18.130.0/24', '--no-dhcp');
  t.is(network.provide_nat, true);
  const a = await natInstance(net, h1, 'a', network);
  const shown = await until('floating gateway allocated', async () => {
    const n = await cliJson(h1.ns, 'network', 'show', network.uuid);
    return n.floating_gateway ? n : undefined;
  });
  const fgw: string = shown.floating_gateway;
  t.regex(fgw, /^198\.19\.0\.\d+$/);
  const events = await cliJson(h1.ns, 'network', 'events', network.uuid);
  t.true(events.some((e: any) => e.message === `floating gateway ${fgw} allocated by network node h1`), JSON.stringify(events));
  const addresses = await cliJson(h1.ns, 'network', 'addresses', 'floating');
  t.true(addresses.some((r: any) => r.address === fgw && r.type === 'gateway'), JSON.stringify(addresses));

  const cap = await net.capture(out.ns, 'eth0', { filter: 'ip' });
  const p = await until('ping through the uplink', async () => {
    const r = await net.ping(a.ns, OUTSIDE, { count: 3, interval: 0.2 });
    return r.received > 0 ? r : undefined;
  }, 20);
  const p2 = await net.ping(a.ns, OUTSIDE, { count: 5, interval: 0.1 });
  t.is(p2.received, 5, p2.output + d1.logTail(20));
  t.true(p.received > 0);
  const transfer = await net.tcpTransfer(a.ns, out.ns, OUTSIDE, 2_000_000);
  t.is(transfer.receivedBytes, 2_000_000);
  t.is(transfer.receivedSha256, transfer.sentSha256);
  const file = await cap.stop();
  const sources = new Set(tsharkFields(file, ['ip.src']).map((r) => r[0]));
  t.deepEqual([...sources].sort(), [OUTSIDE, fgw].sort(), 'the outside sees only the floating gateway');
  t.false(sources.has(a.ipv4));

  // Deleting the network returns its floating gateway to the pool and takes the SNAT rule away.
  await cliJson(h1.ns, 'instance', 'delete', a.iface.instance_uuid);
  t.is((await cliJson(h1.ns, 'network', 'delete', network.uuid)).state, 'deleted');
  const pool = await until('floating gateway released', async () => {
    const rows = await cliJson(h1.ns, 'network', 'addresses', 'floating');
    return rows.some((r: any) => r.address === fgw && r.type === 'gateway') ? undefined : rows;
  });
  t.false(pool.some((r: any) => r.address === fgw && r.type === 'gateway'));
  const nat = await until('SNAT rule removed', async () => {
    const s = (await apiCall(h1.ns, 'GET', '/nat', TEST_TOKEN)).body;
    return s.rules.snat.length === 0 ? s : undefined;
  });
  t.deepEqual(nat.rules.snat, []);
});

/** Two hosts on one store, h1 with the uplink (the network node), and the outside behind h1. */
async function twoHosts(t: any, extra: Record<string, unknown> = {}) {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const out = await addOutside(net, h1);
  const cp = await controlPlaneConfig(net, extra);
  const d1 = await net.startAppnetd(h1, { ...cp, uplink: { device: 'anup0' } });
  const d2 = await net.startAppnetd(h2, cp);
  return { net, h1, h2, out, d1, d2 };
}

async function floatingGateway(ns: string, uuid: string): Promise<string> {
  const n = await until('floating gateway allocated', async () => {
    const r = await cliJson(ns, 'network', 'show', uuid);
    return r.floating_gateway ? r : undefined;
  });
  return n.floating_gateway;
}

test.serial('an instance on another host reaches the outside through the network node, which holds the VNI without a port', async (t) => {
  const { net, h1, h2, out, d1 } = await twoHosts(t);
  const network = await cliJson(h1.ns, 'network', 'create', 'remote', '198.18.131.0/24', '--no-dhcp');
  const b = await natInstance(net, h2, 'b', network);
  const fgw = await floatingGateway(h1.ns, network.uuid);

  const cap = await net.capture(out.ns, 'eth0', { filter: 'ip' });
  const first = await until('ping from h2 through h1', async () => {
    const r = await net.ping(b.ns, OUTSIDE, { count: 3, interval: 0.2 });
    return r.received > 0 ? r : undefined;
  }, 20);
  t.true(first.received > 0);
  const p = await net.ping(b.ns, OUTSIDE, { count: 5, interval: 0.1 });
  t.is(p.received, 5, p.output + d1.logTail(20));
  const transfer = await net.tcpTransfer(b.ns, out.ns, OUTSIDE, 2_000_000);
  t.is(transfer.receivedSha256, transfer.sentSha256);
  const sources = new Set(tsharkFields(await cap.stop(), ['ip.src']).map((r) => r[0]));
  t.deepEqual([...sources].sort(), [OUTSIDE, fgw].sort());
});

const u32 = (ip: string) => ip.split('.').reduce((a, b) => a * 256 + Number(b), 0);

test.serial('float and routed addresses: the outside reaches the instance while they exist, and not after', async (t) => {
  const { net, h1, h2, out, d1 } = await twoHosts(t);
  const network = await cliJson(h1.ns, 'network', 'create', 'fl', '198.18.132.0/24', '--no-dhcp');
  const c = await natInstance(net, h2, 'c', network);
  const fgw = await floatingGateway(h1.ns, network.uuid);
  const nat = async () => (await apiCall(h1.ns, 'GET', '/nat', TEST_TOKEN)).body;

  // Float: the instance answers at its floating address, and leaves from it (1:1 wins over SNAT).
  const floated = await cliJson(h2.ns, 'interface', 'float', c.iface.uuid);
  const fip: string = floated.floating;
  t.regex(fip, /^198\.19\.0\.\d+$/);
  t.not(fip, fgw);
  const pool = await cliJson(h1.ns, 'network', 'addresses', 'floating');
  t.true(pool.some((r: any) => r.address === fip && r.type === 'floating' && r.user?.[1] === c.iface.uuid), JSON.stringify(pool));
  const cap = await net.capture(out.ns, 'eth0', { filter: 'ip' });
  const reached = await until('outside pings the floating address', async () => {
    const r = await net.ping(out.ns, fip, { count: 2, interval: 0.2 });
    return r.received > 0 ? r : undefined;
  }, 20);
  t.true(reached.received > 0, d1.logTail(20));
  const back = await net.tcpTransfer(out.ns, c.ns, fip, 500_000);
  t.is(back.receivedSha256, back.sentSha256);
  const fromInside = await net.ping(c.ns, OUTSIDE, { count: 3, interval: 0.1 });
  t.is(fromInside.received, 3);
  const sources = new Set(tsharkFields(await cap.stop(), ['ip.src']).map((r) => r[0]));
  t.deepEqual([...sources].sort(), [OUTSIDE, fip].sort(), 'a floated instance is seen only at its floating address');
  t.true((await nat()).rules.floats.some((f: any) => f.external === u32(fip)));

  // Defloat: rule, flows and reservation gone; the outside no longer gets in.
  const defloated = await cliJson(h2.ns, 'interface', 'defloat', c.iface.uuid);
  t.is(defloated.floating, null);
  const state = await until('1:1 rule removed', async () => {
    const s = await nat();
    return s.rules.floats.length === 0 ? s : undefined;
  });
  t.deepEqual(state.rules.floats, []);
  const after = await net.ping(out.ns, fip, { count: 3, interval: 0.2 });
  t.is(after.received, 0, after.output);
  const flows = (await nat()).flowList as Array<{ external: number }>;
  t.false(flows.some((f) => f.external === u32(fip)), JSON.stringify(flows));
  const poolAfter = await cliJson(h1.ns, 'network', 'addresses', 'floating');
  t.false(poolAfter.some((r: any) => r.address === fip && r.type === 'floating'), JSON.stringify(poolAfter));

  // Routed: the address enters the network untranslated; the instance that configured it answers.
  const routed: string = await cliJson(h1.ns, 'network', 'route', network.uuid);
  t.regex(routed, /^198\.19\.0\.\d+$/);
  const poolRouted = await cliJson(h1.ns, 'network', 'addresses', 'floating');
  t.true(poolRouted.some((r: any) => r.address === routed && r.type === 'routed' && r.user?.[1] === network.uuid), JSON.stringify(poolRouted));
  await runIn(c.ns, 'ip', ['addr', 'add', `${routed}/32`, 'dev', portName(c.iface.uuid)]);
  const viaRoute = await until('outside pings the routed address', async () => {
    const r = await net.ping(out.ns, routed, { count: 2, interval: 0.2 });
    return r.received > 0 ? r : undefined;
  }, 20);
  t.true(viaRoute.received > 0);
  const other = await cliJson(h1.ns, 'network', 'create', 'other', '198.18.133.0/24', '--no-dhcp');
  const notOurs = await apiCall(h1.ns, 'DELETE', `/networks/${other.uuid}/route/${routed}`, TEST_TOKEN);
  t.deepEqual([notOurs.status, notOurs.body.error], [403, 'address not routed by this network']);
  const notRouted = await apiCall(h1.ns, 'DELETE', `/networks/${network.uuid}/route/${fgw}`, TEST_TOKEN);
  t.deepEqual([notRouted.status, notRouted.body.error], [404, 'address not routed']);
  await cliJson(h1.ns, 'network', 'unroute', network.uuid, routed);
  await until('route removed', async () => ((await nat()).plan.routes.length === 0 ? true : undefined));
  const gone = await net.ping(out.ns, routed, { count: 3, interval: 0.2 });
  t.is(gone.received, 0, gone.output);
});

test.serial('two networks with the same netblock stay apart while both reach the outside, each from its own floating gateway', async (t) => {
  const { net, h1, h2, out } = await twoHosts(t);
  const n1 = await cliJson(h1.ns, 'network', 'create', 'same1', '198.18.140.0/24', '--no-dhcp');
  const n2 = await cliJson(h1.ns, 'network', 'create', 'same2', '198.18.140.0/24', '--no-dhcp');
  t.not(n1.vxlan_id, n2.vxlan_id);
  // One instance of each network on each host: the network node and a remote host both carry both.
  const x1 = await natInstance(net, h1, 'x1', n1);
  const x2 = await natInstance(net, h2, 'x2', n1);
  const y1 = await natInstance(net, h1, 'y1', n2);
  const y2 = await natInstance(net, h2, 'y2', n2);
  const g1 = await floatingGateway(h1.ns, n1.uuid);
  const g2 = await floatingGateway(h1.ns, n2.uuid);
  t.not(g1, g2);

  const cap = await net.capture(out.ns, 'eth0', { filter: 'icmp' });
  for (const inst of [x1, x2, y1, y2]) {
    const r = await until(`${inst.ipv4} pings the outside`, async () => {
      const p = await net.ping(inst.ns, OUTSIDE, { count: 2, interval: 0.2 });
      return p.received === 2 ? p : undefined;
    }, 20);
    t.is(r.received, 2);
  }
  const rows = tsharkFields(await cap.stop(), ['ip.src', 'ip.dst']);
  t.deepEqual(new Set(rows.map((r) => r[0] === OUTSIDE ? r[1] : r[0])), new Set([g1, g2]));
  // Within each network only its own instances answer: x1 reaches x2, never y2 (unless they share the address).
  t.is((await net.ping(x1.ns, x2.ipv4, { count: 2, interval: 0.1 })).received, 2);
  if (y2.ipv4 !== x2.ipv4 && y2.ipv4 !== x1.ipv4) t.is((await net.ping(x1.ns, y2.ipv4, { count: 2, interval: 0.1 })).received, 0);
  if (x2.ipv4 !== y2.ipv4 && x2.ipv4 !== y1.ipv4) t.is((await net.ping(y1.ns, x2.ipv4, { count: 2, interval: 0.1 })).received, 0);
});

test.serial('conntrack full: new flows are dropped and counted, a flow that exists keeps working', async (t) => {
  const net = await TestNet.create(t, { hosts: 1 });
  const [h1] = net.hosts;
  await addOutside(net, h1);
  const d1 = await net.startAppnetd(h1, await controlPlaneConfig(net, { uplink: { device: 'anup0' }, nat: { capacity: 4 } }));
  const network = await cliJson(h1.ns, 'network', 'create', 'small', '198.18.141.0/24', '--no-dhcp');
  const a = await natInstance(net, h1, 'a', network);
  await floatingGateway(h1.ns, network.uuid);
  const nat = async () => (await apiCall(h1.ns, 'GET', '/nat', TEST_TOKEN)).body;
  // One ICMP echo id is one flow: ping -e keeps the id across runs.
  const pingId = (id: number) => runIn(a.ns, 'ping', ['-n', '-e', String(id), '-c', '3', '-i', '0.2', '-W', '2', OUTSIDE], { reject: false });
  const first = await until('the first flow works', async () => ((await pingId(4242)).code === 0 ? true : undefined), 20);
  t.true(first);
  t.is((await nat()).table.capacity, 4);
  // Six more flows (UDP to six ports): three fit, three do not.
  for (let port = 2001; port <= 2006; port++) await runIn(a.ns, 'node', [new URL('./helpers/send-udp.mjs', import.meta.url).pathname, OUTSIDE, String(port), '1', '00']);
  const full = await until('table full', async () => {
    const s = await nat();
    return s.table.drops.conntrack_full >= 3 ? s : undefined;
  }, 20);
  t.is(full.table.entries, 4);
  t.is(full.table.drops.conntrack_full, 3);
  const counters = await d1.get('/engine/counters');
  t.is(counters.vnis[String(network.vxlan_id)].drops.nat, 3);
  // A new flow (another echo id) is refused; the existing one still translates both ways.
  t.not((await pingId(4343)).code, 0);
  const again = await pingId(4242);
  t.is(again.code, 0, again.stdout);
  t.true((await nat()).table.drops.conntrack_full > 3);
});
