// Egress NAT throughput: iperf3 from an instance to an "outside" host through the network node's uplink,
// translated (SNAT to the network's floating gateway) against the same path untranslated (a routed address,
// which the engine passes through), in the same run, plus the conntrack table's state afterwards. Also the
// download (the outside sending to the instance through NAT, iperf3 -R) and, as the anchor issue 17 sets, plain
// VXLAN TCP between two instances of the same network on two hosts, measured in the same run.
//
//   instance a (198.18.140.x) --TAP--> appnetd h1 --SNAT--> anup0 --h1 kernel--> up0 --veth--> outside
//   instance b (routed 198.19.0.y/32)  appnetd h1 --as is--> anup0 --h1 kernel--> up0 --veth--> outside
//   instance c on h2 --VXLAN--> instance a (the anchor)
//
// a and b sit on the network node itself, so the NAT figures isolate the NAT stage and the uplink (no VXLAN).
// `node --import tsx bench/run.ts nat [--json] [--duration=S]`. Traffic stays in the namespaces built here.
import { portName } from '../control/reconcile/plan.ts';
import { apiCall, cliJson, controlPlaneConfig, TEST_TOKEN } from '../test/helpers/api-in-ns.ts';
import { iperf3 } from '../test/helpers/iperf.ts';
import { runIn } from '../test/helpers/run.ts';
import { TestNet } from '../test/helpers/testnet.ts';
import { benchLog, benchSeconds, r2, shim } from './path-measure.ts';
import { until } from '../test/helpers/until.ts';
import { addOutside, natInstance, OUTSIDE } from '../test/helpers/nat-net.ts';

const log = benchLog('nat');


export async function run(opts: { json: boolean }): Promise<Record<string, number | string | null>> {
  const seconds = benchSeconds('nat');
  const cleanups: Array<() => unknown> = [];
  const f: Record<string, number | string | null> = {};
  try {
    const net = await TestNet.create(shim(cleanups), { hosts: 2 });
    const [h1, h2] = net.hosts;
    const out = await addOutside(net, h1);
    const cp = await controlPlaneConfig(net);
    const d1 = await net.startAppnetd(h1, { ...cp, uplink: { device: 'anup0' } });
    await net.startAppnetd(h2, cp);

    const network = await cliJson(h1.ns, 'network', 'create', 'natted', '198.18.140.0/24', '--no-dhcp');
    const a = await natInstance(net, h1, 'a', network);
    const b = await natInstance(net, h1, 'b', network);
    const c = await natInstance(net, h2, 'c', network);
    await until('floating gateway allocated', async () => ((await cliJson(h1.ns, 'network', 'show', network.uuid)).floating_gateway ? true : undefined));
    const routed: string = await cliJson(h1.ns, 'network', 'route', network.uuid);
    await runIn(b.ns, 'ip', ['addr', 'add', `${routed}/32`, 'dev', portName(b.iface.uuid)]);
    await until('the outside reaches the routed address', async () => ((await net.ping(out.ns, routed, { count: 1, interval: 0.2 })).received > 0 ? true : undefined));
    await until('the outside reached through NAT', async () => ((await net.ping(a.ns, OUTSIDE, { count: 1, interval: 0.2 })).received > 0 ? true : undefined));

    log(`iperf3 ${seconds} s: untranslated (routed ${routed}) -> ${OUTSIDE}`);
    const plain = await iperf3(net, b.ns, out.ns, OUTSIDE, ['-B', routed], seconds);
    log(`iperf3 ${seconds} s: through SNAT (${a.iface.ipv4}) -> ${OUTSIDE}`);
    const nat = await iperf3(net, a.ns, out.ns, OUTSIDE, [], seconds);
    log(`iperf3 ${seconds} s: untranslated again`);
    const plain2 = await iperf3(net, b.ns, out.ns, OUTSIDE, ['-B', routed], seconds);
    log(`iperf3 ${seconds} s: download through NAT (${OUTSIDE} -> ${a.iface.ipv4}, -R)`);
    const down = await iperf3(net, a.ns, out.ns, OUTSIDE, ['-R'], seconds);
    await until('c reaches a over VXLAN', async () => ((await net.ping(c.ns, a.iface.ipv4, { count: 1, interval: 0.2 })).received > 0 ? true : undefined));
    log(`iperf3 ${seconds} s: plain VXLAN, c on h2 -> a on h1 (the anchor)`);
    const vxlan = await iperf3(net, c.ns, a.ns, a.iface.ipv4, [], seconds);
    f.plain_tcp_gbps = r2(plain.end.sum_received.bits_per_second / 1e9);
    f.nat_tcp_gbps = r2(nat.end.sum_received.bits_per_second / 1e9);
    f.plain2_tcp_gbps = r2(plain2.end.sum_received.bits_per_second / 1e9);
    f.ratio = r2((f.nat_tcp_gbps as number) / (((f.plain_tcp_gbps as number) + (f.plain2_tcp_gbps as number)) / 2));
    f.nat_rx_tcp_gbps = r2(down.end.sum_received.bits_per_second / 1e9);
    f.vxlan_tcp_gbps = r2(vxlan.end.sum_received.bits_per_second / 1e9);
    f.nat_over_vxlan = r2((f.nat_tcp_gbps as number) / (f.vxlan_tcp_gbps as number));
    f.nat_rx_over_vxlan = r2((f.nat_rx_tcp_gbps as number) / (f.vxlan_tcp_gbps as number));
    f.nat_retransmits = nat.end.sum_sent.retransmits ?? null;
    const stats = (await apiCall(h1.ns, 'GET', '/nat', TEST_TOKEN)).body;
    f.conntrack_entries = stats.table?.entries ?? null;
    f.conntrack_full = stats.table?.drops?.conntrack_full ?? null;
    const offload = (await d1.get('/engine/counters')).offload;
    f.uplink_gso_writes = offload.uplink_gso_writes;
    f.uplink_gso_reads = offload.uplink_gso_reads;
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch((e) => log(`cleanup: ${(e as Error).message}`));
  }
  if (!opts.json) {
    console.log(`\n## nat: iperf3 TCP from an instance to an outside host through the network node's uplink (${seconds} s each)`);
    console.log('| path | Gbit/s |');
    console.log('|---|---|');
    console.log(`| untranslated (routed address), before | ${f.plain_tcp_gbps} |`);
    console.log(`| SNAT to the floating gateway | ${f.nat_tcp_gbps} |`);
    console.log(`| untranslated, after | ${f.plain2_tcp_gbps} |`);
    console.log(`| ratio NAT / untranslated (mean) | ${f.ratio} |`);
    console.log(`| download through NAT (iperf3 -R) | ${f.nat_rx_tcp_gbps} |`);
    console.log(`| anchor: plain VXLAN between two hosts | ${f.vxlan_tcp_gbps} |`);
    console.log(`| ratio NAT / VXLAN, upload and download | ${f.nat_over_vxlan} / ${f.nat_rx_over_vxlan} |`);
    console.log(`super-packets through the uplink whole: ${f.uplink_gso_writes} written, ${f.uplink_gso_reads} read`);
    console.log(`conntrack after the run: ${f.conntrack_entries} entries, ${f.conntrack_full} refused for a full table`);
  }
  return f;
}
