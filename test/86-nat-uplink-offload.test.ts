// The uplink with offload (docs/nat.md "Offload on the uplink"): TCP super-frames go through NAT once and
// into the uplink whole, super-packets come back whole into the instance's TAP, and a packet too big for the
// uplink is answered with ICMP "fragmentation needed". Topology of test/helpers/nat-net.ts: h1 is the
// network node with the outside behind it; h2 is a second host, whose instances reach the uplink over VXLAN.
import test, { type ExecutionContext } from 'ava';
import { portName } from '../control/reconcile/plan.ts';
import { cliJson, controlPlaneConfig, curl, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { parsePrometheusText } from '../control/metrics/prom-text.ts';
import { addOutside, natInstance, OUTSIDE } from './helpers/nat-net.ts';
import { run, runIn } from './helpers/run.ts';
import { TestNet, tsharkFields } from './helpers/testnet.ts';
import { until } from './helpers/until.ts';

const BYTES = 16_000_000;

type Offload = { uplink_gso_writes: number; uplink_gso_reads: number; uplink_gso_fallbacks: number };

async function natTopology(t: ExecutionContext, uplink: { device: string; mtu?: number }, extra: Record<string, unknown> = {}) {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const out = await addOutside(net, h1);
  const cp = await controlPlaneConfig(net);
  const d1 = await net.startAppnetd(h1, { ...cp, ...extra, uplink });
  await net.startAppnetd(h2, cp);
  const network = await cliJson(h1.ns, 'network', 'create', 'natted', '198.18.150.0/24', '--no-dhcp');
  const a = await natInstance(net, h1, 'a', network);
  const c = await natInstance(net, h2, 'c', network);
  await until('floating gateway allocated', async () => ((await cliJson(h1.ns, 'network', 'show', network.uuid)).floating_gateway ? true : undefined));
  for (const i of [a, c]) {
    await until(`${i.ipv4} reaches the outside`, async () => ((await net.ping(i.ns, OUTSIDE, { count: 1, interval: 0.2 })).received > 0 ? true : undefined), 30);
  }
  const offload = async (): Promise<Offload> => (await d1.get('/engine/counters')).offload;
  return { net, h1, h2, out, d1, a, c, offload };
}

/**
 * [ip.src, ip.dst, ip.len, ip.hdr_len, tcp.checksum] of TCP packets longer than one MTU in a capture: only a
 * super-packet (written whole with a partial checksum) can be.
 */
function superPackets(file: string): string[][] {
  return tsharkFields(file, ['ip.src', 'ip.dst', 'ip.len', 'ip.hdr_len', 'tcp.checksum'], 'tcp && ip.len > 1500');
}

/** The partial checksum a super-packet must carry: its pseudo-header sum, folded, not complemented. */
function pseudoHeaderSum(src: string, dst: string, ipLen: number, ihl: number): number {
  const words = (a: string) => { const o = a.split('.').map(Number); return [(o[0] << 8) | o[1], (o[2] << 8) | o[3]]; };
  let s = [...words(src), ...words(dst), 6, ipLen - ihl].reduce((x, y) => x + y, 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function assertSeeds(t: ExecutionContext, rows: string[][], where: string): void {
  t.true(rows.length > 0, `${where}: no super-packet captured`);
  const wrong = rows.filter(([src, dst, len, ihl, sum]) => Number(sum) !== pseudoHeaderSum(src, dst, Number(len), Number(ihl)));
  t.deepEqual(wrong, [], `${where}: super-packets whose partial checksum is not their pseudo-header sum`);
}

test.serial('TCP through the network node\'s NAT goes out and comes back in super-packets, every byte intact, from local and remote instances', async (t) => {
  const { net, h1, out, a, c, offload } = await natTopology(t, { device: 'anup0' });
  // No checksum offload on the node's way out: the kernel completes every checksum in software from the
  // partial sum the engine left, so a wrong one reaches the outside as a bad segment and stalls the transfer.
  await run('ip', ['netns', 'exec', h1.ns, 'ethtool', '-K', 'up0', 'tx', 'off', 'tso', 'off', 'gso', 'off']);
  const before = await offload();

  const upCap = await net.capture(h1.ns, 'anup0', { filter: 'tcp' });
  const up = await net.tcpTransfer(a.ns, out.ns, OUTSIDE, BYTES);
  t.is(up.receivedBytes, BYTES);
  t.is(up.receivedSha256, up.sentSha256);
  const afterUp = await offload();
  t.true(afterUp.uplink_gso_writes > before.uplink_gso_writes, `no super-frame went to the uplink whole: ${JSON.stringify(afterUp)}`);
  const upRows = superPackets(await upCap.stop());
  assertSeeds(t, upRows, 'into the uplink');
  t.true(upRows.every(([src]) => src !== a.ipv4), 'super-packets leave translated');

  const tap = portName(a.iface.uuid);
  const downCap = await net.capture(a.ns, tap, { filter: 'tcp' });
  const down = await net.tcpTransfer(a.ns, out.ns, OUTSIDE, BYTES, 5202, { download: true });
  t.is(down.receivedBytes, BYTES);
  t.is(down.receivedSha256, down.sentSha256);
  const afterDown = await offload();
  t.true(afterDown.uplink_gso_reads > afterUp.uplink_gso_reads, `no super-packet came from the uplink whole: ${JSON.stringify(afterDown)}`);
  const downRows = superPackets(await downCap.stop());
  assertSeeds(t, downRows, 'into the instance\'s TAP');
  t.true(downRows.every(([, dst]) => dst === a.ipv4), 'super-packets arrive translated back to the instance');

  // An instance on another host: its segments reach the node over VXLAN, and a super-packet from the uplink
  // is cut into segments (with complete checksums) to travel back to it.
  const cUp = await net.tcpTransfer(c.ns, out.ns, OUTSIDE, BYTES, 5203);
  t.is(cUp.receivedSha256, cUp.sentSha256);
  const cDown = await net.tcpTransfer(c.ns, out.ns, OUTSIDE, BYTES, 5204, { download: true });
  t.is(cDown.receivedBytes, BYTES);
  t.is(cDown.receivedSha256, cDown.sentSha256);
  t.is((await offload()).uplink_gso_fallbacks, 0);
  // Operators see the same in /metrics: super-packets each way, and no refusal counted as one.
  const m = parsePrometheusText((await curl(h1.ns, '/metrics', TEST_TOKEN)).body);
  t.is(m.value('appnet_uplink_super_packets_total', { direction: 'out' }), afterDown.uplink_gso_writes);
  t.true((m.value('appnet_uplink_super_packets_total', { direction: 'in' }) ?? 0) >= afterDown.uplink_gso_reads);
  t.is(m.value('appnet_offload_fallbacks_total', { kind: 'uplink_gso_writes' }), undefined);
  t.is(m.value('appnet_offload_fallbacks_total', { kind: 'uplink_gso_fallbacks' }) ?? 0, 0);
});

test.serial('a packet too big for the uplink is answered with "fragmentation needed", locally and across hosts, and TCP adapts', async (t) => {
  const { net, d1, out, a, c } = await natTopology(t, { device: 'anup0', mtu: 1280 });
  for (const i of [a, c]) {
    const r = await runIn(i.ns, 'ping', ['-n', '-c', '2', '-i', '0.3', '-W', '2', '-M', 'do', '-s', '1300', OUTSIDE], { reject: false });
    t.regex(r.stdout + r.stderr, /mtu ?= ?1280/, `ping from ${i.ipv4}: ${r.stdout}${r.stderr}`);
    const route = (await runIn(i.ns, 'ip', ['route', 'get', OUTSIDE])).stdout;
    t.regex(route, /mtu 1280/, `${i.ipv4} learnt the path MTU: ${route}`);
    const small = await net.ping(i.ns, OUTSIDE, { count: 2, interval: 0.2, size: 1200, dontFragment: true });
    t.is(small.received, 2, `a packet that fits still passes from ${i.ipv4}`);
  }
  const counters = await d1.get('/engine/counters');
  t.true(counters.uplink.drops.oversize >= 2, JSON.stringify(counters.uplink));
  // TCP lowers its segment size after the first refusal and every byte still arrives.
  const up = await net.tcpTransfer(a.ns, out.ns, OUTSIDE, 4_000_000);
  t.is(up.receivedSha256, up.sentSha256);
});

test.serial('offloads.uplinkOffload false: the uplink carries one packet per read and write, and every byte still arrives', async (t) => {
  const { net, out, a, offload } = await natTopology(t, { device: 'anup0' }, { offloads: { uplinkOffload: false } });
  const up = await net.tcpTransfer(a.ns, out.ns, OUTSIDE, 4_000_000);
  t.is(up.receivedSha256, up.sentSha256);
  const down = await net.tcpTransfer(a.ns, out.ns, OUTSIDE, 4_000_000, 5202, { download: true });
  t.is(down.receivedSha256, down.sentSha256);
  const o = await offload();
  t.is(o.uplink_gso_writes, 0);
  t.is(o.uplink_gso_reads, 0);
});
