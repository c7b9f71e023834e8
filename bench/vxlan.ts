// End-to-end benchmark: appnetd's userspace VXLAN against Linux kernel VXLAN, measured in the same run on the
// same machine across the same namespace topology (DESIGN.md §5: figures are ratios against in-run anchors).
//
//   ours:   two hosts running appnetd, one TAP instance each on VNI 42 (test/helpers/overlay.ts)
//   kernel: two hosts with a kernel vxlan42 + bridge + veth to the instance (TestNet.addKernelVtep),
//           measured twice: veth offloads as created (on), then with every offload off (see OFFLOAD_OFF).
//
// Per setup: iperf3 one TCP stream; iperf3 UDP at 64 and 1400 byte payload, unlimited rate (-b 0) so the
// figure is the most the path delivers (sender-bound on small packets); ping RTT. For ours also the daemons'
// event-loop utilisation (JS thread only) and whole-process CPU (includes the native RX/TX threads) during the
// TCP run, RSS, and engine drop counters. Traffic stays in the namespaces built here (198.18.0.0/15).
//
// `node --import tsx bench/run.ts vxlan [--json] [--duration=S]` (or BENCH_SECONDS=S): TCP seconds, default 10;
// UDP runs min(S, 5) s. `--duration=S` must use '=': run.ts treats a bare word as a benchmark name.
import os from 'node:os';
import { buildOverlay, counters, totalDrops } from '../test/helpers/overlay.ts';
import { run as exec } from '../test/helpers/run.ts';
import { TestNet } from '../test/helpers/testnet.ts';
import { benchLog, benchSeconds, idleCpu, measure, r2, sampleDaemons, shim, threadLines, threadScaling, udp, udpPaced, type Figures } from './path-measure.ts';

const log = benchLog('vxlan');

// What "offloads off" means: segmentation (TSO/GSO), receive coalescing (GRO) and checksum offload (tx/rx),
// so every packet is segmented and checksummed in software like a NIC without those features would force.
const OFFLOAD_OFF = ['tso', 'off', 'gso', 'off', 'gro', 'off', 'tx', 'off', 'rx', 'off'];

async function ours(secs: number, f: Figures, fails: string[]): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  const t = shim(cleanups);
  try {
    log('ours: building the overlay (2 hosts, appnetd, TAP on VNI 42)');
    const { net, daemons, instances: [a, b] } = await buildOverlay(t, { hosts: 2 });
    // Sample the daemons around the TCP run only: that is the figure the ELU target is about.
    const around = sampleDaemons(daemons, f);
    const c0 = await Promise.all(daemons.map(counters));
    await measure({ net, a: a.inst.ns, b: b.inst.ns, addr: b.addr, p: 'ours', aDev: 'tap42', hostB: b.host.ns }, secs, f, fails, log, around);
    await idleCpu(daemons, f);
    // Engine drops over the whole run, per daemon (wire + VNI + port blocks), reported for diagnosis.
    const c1 = await Promise.all(daemons.map(counters));
    daemons.forEach((d, i) => {
      const drops = (c: typeof c0[0]) => totalDrops(c.wire) + Object.values(c.vnis).reduce((s, v) => s + totalDrops(v), 0) + c.ports.reduce((s, p) => s + totalDrops(p), 0);
      f[`ours_engine_drops_${d.host.name}`] = drops(c1[i]) - drops(c0[i]);
      log(`ours: ${d.host.name} engine counters: ${JSON.stringify({ wire: c1[i].wire.drops, ports: c1[i].ports.map((p) => p.drops), punt: c1[i].punt })}`);
    });
  } catch (e) {
    t.passed = false; // TestNet then keeps the daemon logs and prints their tails
    throw e;
  } finally {
    for (const fn of cleanups.reverse()) await fn();
  }
}

async function kernel(secs: number, f: Figures, fails: string[]): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  const t = shim(cleanups);
  try {
    log('kernel: building 2 hosts with kernel vxlan42');
    const net = await TestNet.create(t, { hosts: 2 });
    const [h1, h2] = net.hosts;
    const a = await net.addInstance('ka');
    const b = await net.addInstance('kb');
    const va = await net.addKernelVtep(h1, { vni: 42, remotes: [h2.underlayIp], instance: a, cidr: '198.18.42.1/24' });
    const vb = await net.addKernelVtep(h2, { vni: 42, remotes: [h1.underlayIp], instance: b, cidr: '198.18.42.2/24' });
    const path = { net, a: a.ns, b: b.ns, addr: '198.18.42.2', aDev: va.instanceIf, hostB: h2.ns };
    await measure({ ...path, p: 'kernel_offload' }, secs, f, fails, log);
    // Offloads off on every veth end the traffic crosses: ul0 in each host ns and its peer (h1/h2, the
    // underlay bridge ports), and both ends of each instance veth (vkN in the host ns, eth0 in the instance).
    const devs: Array<[string, string]> = [
      [h1.ns, 'ul0'], [h2.ns, 'ul0'], [net.underlayNs, h1.name], [net.underlayNs, h2.name],
      [h1.ns, va.hostIf], [h2.ns, vb.hostIf], [a.ns, va.instanceIf], [b.ns, vb.instanceIf],
    ];
    for (const [ns, dev] of devs) await exec('ip', ['netns', 'exec', ns, 'ethtool', '-K', dev, ...OFFLOAD_OFF]);
    await measure({ ...path, p: 'kernel_nooffload' }, secs, f, fails, log);
  } catch (e) {
    t.passed = false;
    throw e;
  } finally {
    for (const fn of cleanups.reverse()) await fn();
  }
}

/** Ours again with offloads.tapGroUdp (UDP coalesced into the receiving TAP; opt-in): the UDP floods and paced rates only. */
async function oursTapGroUdp(secs: number, f: Figures, fails: string[]): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  const t = shim(cleanups);
  try {
    log('ours with offloads.tapGroUdp: building the overlay');
    const { net, instances: [a, b] } = await buildOverlay(t, { hosts: 2, offloads: { tapGroUdp: true } });
    const x = { net, a: a.inst.ns, b: b.inst.ns, addr: b.addr, p: 'ours_tapgroudp', aDev: 'tap42', hostB: b.host.ns };
    for (const n of [64, 1400]) {
      log(`ours with offloads.tapGroUdp: udp${n}, flood and paced`);
      await udp(x, n, Math.min(secs, 5), f);
      await udpPaced(x, n, Math.min(secs, 3), f);
    }
  } catch (e) {
    t.passed = false;
    fails.push(`ours tapGroUdp: ${(e as Error).message.split('\n')[0]}`);
  } finally {
    for (const fn of cleanups.reverse()) await fn();
  }
}

// Ratios ours/kernel for the delivered rates. Not for tx pkt/s: a higher send rate into a TAP that drops the
// excess is not a better result.
const THROUGHPUT = ['tcp_gbps', 'tcp_p4_gbps', 'udp64_rx_pps', 'udp1400_rx_pps', 'udp64_paced_pps', 'udp1400_paced_pps'];
const THREADS = [1, 2];
const ROWS: Array<[string, string]> = [
  ['TCP 1 stream, Gbit/s', 'tcp_gbps'], ['TCP retransmits', 'tcp_retransmits'], ['TCP 4 streams, Gbit/s', 'tcp_p4_gbps'],
  ['  lost: sender dev', 'tcp_lost_sender_dev'], ['  lost: underlay sock', 'tcp_lost_underlay_sock'],
  ...[64, 1400].flatMap((n): Array<[string, string]> => [
    [`UDP ${n} B, rx pkt/s`, `udp${n}_rx_pps`], [`UDP ${n} B, tx pkt/s`, `udp${n}_tx_pps`], [`UDP ${n} B, loss %`, `udp${n}_loss_pct`],
    ['  lost: sender dev', `udp${n}_lost_sender_dev`], ['  lost: underlay sock', `udp${n}_lost_underlay_sock`],
    ['  lost: receiver sock', `udp${n}_lost_receiver_sock`], ['  lost: elsewhere', `udp${n}_lost_other`],
    [`UDP ${n} B paced, rx pkt/s`, `udp${n}_paced_pps`],
  ]),
  ['ping avg ms', 'ping_avg_ms'], ['ping min ms', 'ping_min_ms'], ['ping max ms', 'ping_max_ms'],
];

function table(f: Figures): string {
  const cell = (v: number | null | undefined) => (v === undefined || v === null ? '-' : String(v)).padStart(14);
  const lines = ['metric'.padEnd(22) + 'ours'.padStart(14) + 'kernel offl'.padStart(14) + 'kernel no-offl'.padStart(16) + 'ours/k offl'.padStart(14) + 'ours/k no-offl'.padStart(16)];
  for (const [label, k] of ROWS) {
    const ratio = THROUGHPUT.includes(k);
    lines.push(label.padEnd(22) + cell(f[`ours_${k}`]) + cell(f[`kernel_offload_${k}`]) + cell(f[`kernel_nooffload_${k}`]).padStart(16) +
      cell(ratio ? f[`ours_over_kernel_offload_${k}`] : undefined) + cell(ratio ? f[`ours_over_kernel_nooffload_${k}`] : undefined).padStart(16));
  }
  lines.push('', `ours during the TCP run: event-loop utilisation max ${f.ours_elu_max ?? '-'} (h1 ${f.ours_elu_h1 ?? '-'}, h2 ${f.ours_elu_h2 ?? '-'}); ` +
    `process CPU max ${f.ours_cpu_pct_max ?? '-'}% of one core (h1 ${f.ours_cpu_pct_h1 ?? '-'}, h2 ${f.ours_cpu_pct_h2 ?? '-'}); RSS max ${f.ours_rss_mb_max ?? '-'} MB`);
  lines.push(`ours engine drops over the whole run: h1 ${f.ours_engine_drops_h1 ?? '-'}, h2 ${f.ours_engine_drops_h2 ?? '-'}`);
  lines.push(`ours idle afterwards (no traffic, 5 s): process CPU max ${f.ours_idle_cpu_pct_max ?? '-'}% of one core`);
  lines.push(`ours with offloads.tapGroUdp (opt-in): UDP 64 B rx ${f.ours_tapgroudp_udp64_rx_pps ?? '-'} pkt/s, paced ${f.ours_tapgroudp_udp64_paced_pps ?? '-'}; ` +
    `1400 B rx ${f.ours_tapgroudp_udp1400_rx_pps ?? '-'}, paced ${f.ours_tapgroudp_udp1400_paced_pps ?? '-'}`);
  lines.push(...threadLines(f, THREADS));
  return lines.join('\n');
}

export async function run({ json }: { json: boolean }): Promise<Record<string, unknown>> {
  const secs = benchSeconds('vxlan');
  // Sequentially, one topology at a time, so idle daemons or bridges never compete for the CPUs being measured.
  // Cleanup on SIGINT/SIGTERM is TestNet's own handler (kills tracked processes, deletes the namespaces).
  const f: Figures = {};
  const failures: string[] = [];
  for (const [name, fn] of [['ours', ours], ['ours tapGroUdp', oursTapGroUdp], ['kernel', kernel]] as const) {
    await fn(secs, f, failures).catch((e: Error) => { failures.push(`${name}: ${e.message}`); log(`${name} FAILED: ${e.stack}`); });
  }
  await threadScaling(async (threads, cleanups) => {
    const { net, daemons, instances: [a, b] } = await buildOverlay(shim(cleanups), { hosts: 2, daemon: { engine: { threads } } });
    return { path: { net, a: a.inst.ns, b: b.inst.ns, addr: b.addr, aDev: 'tap42', hostB: b.host.ns }, daemons };
  }, THREADS, secs, f, failures, log);
  for (const k of THROUGHPUT) {
    for (const v of ['offload', 'nooffload']) {
      const ours = f[`ours_${k}`], base = f[`kernel_${v}_${k}`];
      f[`ours_over_kernel_${v}_${k}`] = ours != null && base ? r2(ours / base) : null;
    }
  }
  const tcpMet = (f.ours_tcp_gbps ?? 0) >= 1.0;
  const eluMet = f.ours_elu_max != null && f.ours_elu_max <= 0.05;
  const result = {
    ...f, target_tcp_1gbps_met: tcpMet, target_elu_5pct_met: eluMet, tcp_seconds: secs, udp_seconds: Math.min(secs, 5),
    failures,
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, kernel: os.release() },
  };
  if (!json) {
    console.log(`VXLAN end to end, ${os.cpus().length} CPUs, kernel ${os.release()}, TCP ${secs} s, UDP ${Math.min(secs, 5)} s\n`);
    console.log(table(f));
    console.log(`\ntarget TCP >= 1.0 Gbit/s: ${tcpMet ? 'met' : 'NOT met'} (${f.ours_tcp_gbps ?? '-'}); ` +
      `target ELU <= 5%: ${eluMet ? 'met' : 'NOT met'} (${f.ours_elu_max ?? '-'})`);
    if (result.failures.length) console.log(`failures: ${result.failures.join('; ')}`);
  }
  return result;
}
