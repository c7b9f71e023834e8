// kill -9 of the NAT network node: another host with an uplink takes over the network's floating gateway and
// new outbound flows work again (docs/nat.md "When the network node changes"). Three machines on etcd: h1 and
// h2 have uplinks onto one outside segment, the instance lives on h3.
import test from 'ava';
import { cliJson } from './helpers/api-in-ns.ts';
import { buildClusterNet, startClusterDaemon } from './helpers/cluster-net.ts';
import { addSharedOutside, natInstance, OUTSIDE } from './helpers/nat-net.ts';
import { run } from './helpers/run.ts';
import { tsharkFields } from './helpers/testnet.ts';
import { until } from './helpers/until.ts';

test('kill -9 of the network node: the next host with an uplink takes over, new flows leave from the same floating gateway', async (t) => {
  const { net, config } = await buildClusterNet(t, { noDaemons: true });
  const [h1, h2, h3] = net.hosts;
  const out = await addSharedOutside(net, [h1, h2]);
  const daemons = [];
  for (const h of net.hosts) daemons.push(await startClusterDaemon(net, h, config, h !== h3 ? { uplink: { device: 'anup0' } } : {}));
  const [d1] = daemons;

  const network = await cliJson(h3.ns, 'network', 'create', 'failover', '198.18.180.0/24', '--no-dhcp');
  const x = await natInstance(net, h3, 'x', network);
  const fgw = (await until('floating gateway', async () => (await cliJson(h3.ns, 'network', 'show', network.uuid)).floating_gateway ?? undefined)) as string;
  const before = await until('out through h1', async () => {
    const r = await net.ping(x.ns, OUTSIDE, { count: 3, interval: 0.2 });
    return r.received === 3 ? r : undefined;
  }, 30);
  t.is(before.received, 3);
  // Only the network node routes the pool: h1 does, h2 (standby) does not.
  t.regex((await run('ip', ['-n', h1.ns, 'route', 'show', '198.19.0.0/24'])).stdout, /dev anup0/);
  t.is((await run('ip', ['-n', h2.ns, 'route', 'show', '198.19.0.0/24'])).stdout.trim(), '');

  await d1.kill9();
  const killedAt = Date.now();
  const cap = await net.capture(out.ns, 'br0', { filter: 'icmp' });
  const after = await until('new flows out through h2', async () => {
    const r = await net.ping(x.ns, OUTSIDE, { count: 2, interval: 0.2, timeoutS: 5 });
    return r.received === 2 ? r : undefined;
  }, 90);
  const tookS = (Date.now() - killedAt) / 1000;
  t.is(after.received, 2);
  t.log(`new outbound flows worked again ${tookS.toFixed(1)} s after kill -9 of the network node (host lease TTL 10 s)`);
  t.regex((await run('ip', ['-n', h2.ns, 'route', 'show', '198.19.0.0/24'])).stdout, /dev anup0/);
  const shown = await cliJson(h3.ns, 'network', 'show', network.uuid);
  t.is(shown.floating_gateway, fgw, 'the network keeps its floating gateway');
  // Not the ICMP unreachables the old node's kernel sent while it had no route to the pool: the echoes only.
  const sources = new Set(tsharkFields(await cap.stop(), ['ip.src'], 'icmp && !(icmp.type == 3)').map((r) => r[0]));
  t.deepEqual([...sources].sort(), [OUTSIDE, fgw].sort(), 'the outside still sees only the floating gateway');
  const transfer = await net.tcpTransfer(x.ns, out.ns, OUTSIDE, 1_000_000);
  t.is(transfer.receivedSha256, transfer.sentSha256);
});
