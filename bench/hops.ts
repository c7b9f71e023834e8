// Where an idle ping's round trip goes, hop by hop: ours against kernel VXLAN, same topology, same run.
//
//   instance a --dev--> [host 1: ours or kernel VXLAN] --ul0 ... ul0--> [host 2] --dev--> instance b, and back
//
// tcpdump runs at the four points a packet crosses each way (a's device, h1's ul0, h2's ul0, b's device). Each
// point's kernel timestamps the packet as it passes, so for every echo the differences between the points are
// the time spent between them. Hops, for the request and then the reply:
//   tx_h1   a's device -> h1 ul0   (ours: the TAP read, the TX pipeline's wake-up, switching, sendmmsg)
//   wire    h1 ul0 -> h2 ul0      (the veth pair and the underlay bridge)
//   rx_h2   h2 ul0 -> b's device  (ours: the RX pipeline's wake-up, recvmmsg, the TAP write)
//   b       b's device in -> out  (the instance's own stack answering)
// and tx_h2, wire, rx_h1 on the way back. Printed as the median and the 90th percentile per hop, in microseconds.
//
// Ours is measured three times: as the scheduler places the engine threads; pinned apart (engine.cpus: h1 CPU 0,
// h2 CPU 1, a core per host); and pinned together (both on CPU 0), where every wake-up of an engine thread comes
// from work on its own CPU: on one VM the underlay's softirq runs on the sending thread's CPU, so this is the
// stand-in for a host whose engine runs on the CPU its NIC interrupts.
//
// `node --import tsx bench/run.ts hops [--json]`. Pings are 20 ms apart: each finds an idle path.
import { buildOverlay } from '../test/helpers/overlay.ts';
import { TestNet, tsharkFields, type Capture } from '../test/helpers/testnet.ts';
import { benchLog, shim, type Figures } from './path-measure.ts';

const log = benchLog('hops');
const COUNT = 300;
const HOPS = ['tx_h1', 'wire_ab', 'rx_h2', 'b', 'tx_h2', 'wire_ba', 'rx_h1'] as const;

interface Points { net: TestNet; a: string; b: string; addr: string; aDev: string; bDev: string; h1: string; h2: string }

/** Timestamps (s) of each echo request (8) and reply (0) by sequence number, at one capture point. */
function stamps(file: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const [t, type, seq] of tsharkFields(file, ['frame.time_epoch', 'icmp.type', 'icmp.seq'], 'icmp', ['udp.port==4789,vxlan'])) {
    const key = `${type}/${seq}`;
    if (!out.has(key)) out.set(key, Number(t));
  }
  return out;
}

async function measure(p: Points, prefix: string, f: Figures): Promise<void> {
  await p.net.ping(p.a, p.addr, { count: 3, interval: 0.2 }); // ARP and FDB learnt before timing
  const caps: Capture[] = [];
  for (const [ns, dev] of [[p.a, p.aDev], [p.h1, 'ul0'], [p.h2, 'ul0'], [p.b, p.bDev]] as const) {
    // Buffered: tcpdump in immediate mode wakes per packet, four of them on two cores, and would delay the
    // engine's own wake-ups it is meant to time. Each point sees one request and one reply per echo.
    caps.push(await p.net.capture(ns, dev, { filter: 'icmp or udp port 4789', packets: 2 * COUNT, buffered: true }));
  }
  const ping = await p.net.ping(p.a, p.addr, { count: COUNT, interval: 0.02, timeoutS: 60 });
  const [A, H1, H2, B] = (await Promise.all(caps.map((c) => c.done(5000)))).map(stamps);
  const hops: Record<string, number[]> = Object.fromEntries(HOPS.map((h) => [h, []]));
  for (let seq = 1; seq <= COUNT; seq++) {
    const q = `8/${seq}`, r = `0/${seq}`;
    const t = [A.get(q), H1.get(q), H2.get(q), B.get(q), B.get(r), H2.get(r), H1.get(r), A.get(r)];
    if (t.some((x) => x === undefined)) continue;
    const d = (i: number) => ((t[i + 1] as number) - (t[i] as number)) * 1e6;
    HOPS.forEach((h, i) => hops[h].push(d(i)));
  }
  const n = hops.tx_h1.length;
  f[`${prefix}_echoes`] = n;
  f[`${prefix}_ping_avg_us`] = ping.rttAvgMs === null ? null : Math.round(ping.rttAvgMs * 1000);
  for (const h of HOPS) {
    const s = hops[h].sort((x, y) => x - y);
    f[`${prefix}_${h}_p50_us`] = n ? Math.round(s[Math.floor(n / 2)]) : null;
    f[`${prefix}_${h}_p90_us`] = n ? Math.round(s[Math.floor(n * 0.9)]) : null;
  }
}

/** Ours; `pin`: engine.cpus per host, 'apart' h1 [0] and h2 [1], 'together' both [0]. */
async function ours(f: Figures, pin?: 'apart' | 'together'): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  try {
    log(`ours${pin ? `, pinned ${pin}` : ''}: two hosts, appnetd, one TAP instance each`);
    const daemonFor = pin ? (h: { index: number }) => ({ engine: { threads: 1, cpus: [pin === 'apart' ? (h.index - 1) % 2 : 0] } }) : undefined;
    const { net, instances: [a, b] } = await buildOverlay(shim(cleanups), { hosts: 2, daemonFor });
    await measure({ net, a: a.inst.ns, b: b.inst.ns, addr: b.addr, aDev: 'tap42', bDev: 'tap42', h1: a.host.ns, h2: b.host.ns }, pin ? `pinned_${pin}` : 'ours', f);
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  }
}

async function kernel(f: Figures): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  try {
    log('kernel: two hosts with kernel vxlan42');
    const net = await TestNet.create(shim(cleanups), { hosts: 2 });
    const [h1, h2] = net.hosts;
    const a = await net.addInstance('ka');
    const b = await net.addInstance('kb');
    const va = await net.addKernelVtep(h1, { vni: 42, remotes: [h2.underlayIp], instance: a, cidr: '198.18.42.1/24' });
    const vb = await net.addKernelVtep(h2, { vni: 42, remotes: [h1.underlayIp], instance: b, cidr: '198.18.42.2/24' });
    await measure({ net, a: a.ns, b: b.ns, addr: '198.18.42.2', aDev: va.instanceIf, bDev: vb.instanceIf, h1: h1.ns, h2: h2.ns }, 'kernel', f);
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  }
}

export async function run({ json }: { json: boolean }): Promise<Record<string, unknown>> {
  const f: Figures = {};
  const failures: string[] = [];
  for (const [name, fn] of [['ours', (g: Figures) => ours(g)], ['pinned apart', (g: Figures) => ours(g, 'apart')], ['pinned together', (g: Figures) => ours(g, 'together')], ['kernel', kernel]] as const) {
    await fn(f).catch((e: Error) => { failures.push(`${name}: ${e.message.split('\n')[0]}`); log(`${name} FAILED: ${e.stack}`); });
  }
  if (!json) {
    console.log(`\n## hops: where an idle ping's round trip goes (${COUNT} pings 20 ms apart; µs, median / 90th percentile)`);
    console.log('| hop | ours | ours, engine.cpus h1 [0], h2 [1] | ours, both [0] | kernel VXLAN |');
    console.log('|---|---|---|---|---|');
    for (const h of HOPS) {
      const c = (p: string) => `${f[`${p}_${h}_p50_us`] ?? '-'} / ${f[`${p}_${h}_p90_us`] ?? '-'}`;
      console.log(`| ${h} | ${c('ours')} | ${c('pinned_apart')} | ${c('pinned_together')} | ${c('kernel')} |`);
    }
    const avg = (p: string) => f[`${p}_ping_avg_us`] ?? '-';
    console.log(`| ping avg (iputils) | ${avg('ours')} | ${avg('pinned_apart')} | ${avg('pinned_together')} | ${avg('kernel')} |`);
    console.log(`echoes seen at all four points: ours ${f.ours_echoes ?? '-'}, apart ${f.pinned_apart_echoes ?? '-'}, together ${f.pinned_together_echoes ?? '-'}, kernel ${f.kernel_echoes ?? '-'} of ${COUNT}`);
    if (failures.length) console.log(`failures: ${failures.join('; ')}`);
  }
  return { ...f, failures };
}
