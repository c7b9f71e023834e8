// End-to-end benchmark of encrypted links: appnetd (Noise IK + ChaCha20-Poly1305 per VXLAN datagram) against
// the userspace tunnels an operator would pick instead, wireguard-go (the same cipher and message format),
// Nebula and tinc 1.0 (bench/anchor-tunnels.ts), measured in the same run on the same machine, one topology at
// a time. Both tunnels run over the same bridged underlay (TestNet, 198.18.0.11/.12,
// MTU 1500) with an inner MTU of 1418.
//
//   ours:  instance a --TAP--> appnetd h1 ==link==> appnetd h2 --TAP--> instance b     (test/helpers/link-net.ts)
//   wg:    iperf3 in h1 --TUN wg..a--> wireguard-go h1 ==wg==> wireguard-go h2 --TUN wg..b--> iperf3 in h2
//   nebula, tinc: the same, with nebula's TUN or tinc's TAP (switch mode) and their daemons
//
// Each side crosses the same hops per direction: the application's socket, one kernel virtual device (TAP for
// ours, TUN for wg), a userspace daemon that encrypts, and its UDP socket onto ul0. wg's endpoints sit in the
// host namespaces on the wg device itself, because a veth into an instance namespace would add a hop (veth +
// IP forwarding) that ours does not have.
//
// Per side: ping RTT, iperf3 one TCP stream, iperf3 UDP floods at 64 and 1400 bytes (bench/path-measure.ts).
// Ours also: the daemons' event-loop utilisation, CPU and RSS during the TCP run, per-thread CPU (diagnosis),
// and the link counters (handshakes, drops by reason). wg: wireguard-go's CPU and RSS during the TCP run.
//
// `node --import tsx bench/run.ts link [--json] [--duration=S]` (or BENCH_SECONDS=S): TCP seconds, default 10;
// UDP runs min(S, 5) s.
import { existsSync } from 'node:fs';
import os from 'node:os';
import type { EngineCounters } from '../dataplane/engine.ts';
import { buildLinkNet } from '../test/helpers/link-net.ts';
import { counters } from '../test/helpers/overlay.ts';
import { run as exec, runIn } from '../test/helpers/run.ts';
import type { Daemon } from '../test/helpers/testnet.ts';
import { benchLog, benchSeconds, idleCpu, measure, r2, sampleDaemons, shim, threadLines, threadScaling, type Figures } from './path-measure.ts';
import { nebula, runAnchor, tinc, wireguardGo } from './anchor-tunnels.ts';

const log = benchLog('link');
// 1390 is the largest UDP payload that fits the 1418 MTU unfragmented (1418 - 20 IP - 8 UDP); 1400, the size
// the vxlan bench uses, goes out as two IP fragments here, on both sides alike.
const UDP_SIZES = [64, 1390, 1400];
const ANCHORS = [wireguardGo, nebula, tinc];

/** Diagnosis that is not a figure: per-thread CPU and counters by reason, per host. */
interface Details {
  threads: Record<string, Record<string, number>>;
  counters: Record<string, { handshakes: unknown; link_drops: Record<string, number>; engine_drops: Record<string, number> }>;
}

/** Sum of drops by reason over every block of the engine counters (wire, VNIs, ports). */
function engineDrops(c: EngineCounters): Record<string, number> {
  const out: Record<string, number> = {};
  for (const b of [c.wire, ...Object.values(c.vnis), ...c.ports]) for (const [k, n] of Object.entries(b.drops)) out[k] = (out[k] ?? 0) + n;
  return out;
}

/** Link drops by reason: the global block (no peer) plus every peer's. */
function linkDrops(l: any): Record<string, number> {
  const out: Record<string, number> = {};
  for (const b of [l.global, ...l.peers]) for (const [k, n] of Object.entries(b?.drops ?? {})) out[k] = (out[k] ?? 0) + (n as number);
  return out;
}

const diff = (a: Record<string, number>, b: Record<string, number>) => Object.fromEntries(Object.entries(a).map(([k, n]) => [k, n - (b[k] ?? 0)]));
const sum = (r: Record<string, number>) => Object.values(r).reduce((s, n) => s + n, 0);

/** The instance's TAP, named by the data plane (an<8 hex>): the only device besides lo. */
async function instanceTap(ns: string): Promise<{ name: string; mtu: number }> {
  const devs = JSON.parse((await runIn(ns, 'ip', ['-j', 'link', 'show'])).stdout) as Array<{ ifname: string; mtu: number }>;
  const tap = devs.find((x) => x.ifname !== 'lo');
  if (!tap) throw new Error(`no TAP in instance ${ns}: ${devs.map((x) => x.ifname).join(', ')}`);
  return { name: tap.ifname, mtu: tap.mtu };
}

async function ours(secs: number, f: Figures, fails: string[], d: Details): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  const t = shim(cleanups);
  try {
    log('ours: building the link net (2 hosts, appnetd in store mode, encrypted network, one TAP instance each)');
    const { net, h2, d1, d2, a, b, addrB } = await buildLinkNet(t);
    const daemons = [d1, d2];
    const tap = await instanceTap(a.ns);
    f.ours_mtu = tap.mtu;
    const snap = () => Promise.all(daemons.map(async (x: Daemon) => ({ c: await counters(x), l: await x.get('/engine/links') })));
    const before = await snap();
    // RSS with the link up and no traffic yet, to tell the process's baseline from what traffic adds.
    for (const x of daemons) f[`ours_rss_mb_idle_${x.host.name}`] = Math.round((await x.get('/engine/stats')).rssBytes / 2 ** 20);
    const around = sampleDaemons(daemons, f, 'ours', d.threads);
    await measure({ net, a: a.ns, b: b.ns, addr: addrB, p: 'ours', aDev: tap.name, hostB: h2.ns }, secs, f, fails, log, around, UDP_SIZES);
    await idleCpu(daemons, f);
    const after = await snap();
    daemons.forEach((x, i) => {
      const h = x.host.name;
      const ld = diff(linkDrops(after[i].l), linkDrops(before[i].l));
      const ed = diff(engineDrops(after[i].c), engineDrops(before[i].c));
      f[`ours_link_drops_${h}`] = sum(ld);
      f[`ours_engine_drops_${h}`] = sum(ed);
      f[`ours_handshakes_completed_${h}`] = after[i].l.handshakes.completed;
      d.counters[h] = { handshakes: after[i].l.handshakes, link_drops: ld, engine_drops: ed };
      log(`ours: ${h} link ${JSON.stringify(after[i].l.handshakes)} drops ${JSON.stringify(ld)}; engine drops ${JSON.stringify(ed)}`);
    });
  } catch (e) {
    t.passed = false; // TestNet then keeps the daemon logs and prints their tails
    throw e;
  } finally {
    for (const fn of cleanups.reverse()) await fn();
  }
}

// Ratios ours/anchor for delivered rates. Not for tx pkt/s: sending faster into a device that drops the excess is
// not a better result.
const THROUGHPUT = ['tcp_gbps', 'tcp_p4_gbps', ...UDP_SIZES.flatMap((n) => [`udp${n}_rx_pps`, `udp${n}_paced_pps`])];
const THREADS = [1, 2];
const ROWS: Array<[string, string]> = [
  ['TCP 1 stream, Gbit/s', 'tcp_gbps'], ['TCP retransmits', 'tcp_retransmits'], ['TCP 4 streams, Gbit/s', 'tcp_p4_gbps'],
  ['  lost: sender dev', 'tcp_lost_sender_dev'], ['  lost: underlay sock', 'tcp_lost_underlay_sock'],
  ...UDP_SIZES.flatMap((n): Array<[string, string]> => [
    [`UDP ${n} B, rx pkt/s`, `udp${n}_rx_pps`], [`UDP ${n} B, tx pkt/s`, `udp${n}_tx_pps`], [`UDP ${n} B, loss %`, `udp${n}_loss_pct`],
    ['  lost: sender dev', `udp${n}_lost_sender_dev`], ['  lost: underlay sock', `udp${n}_lost_underlay_sock`],
    ['  lost: receiver sock', `udp${n}_lost_receiver_sock`], ['  lost: elsewhere', `udp${n}_lost_other`],
    [`UDP ${n} B paced, rx pkt/s`, `udp${n}_paced_pps`],
  ]),
  ['ping avg ms', 'ping_avg_ms'], ['ping min ms', 'ping_min_ms'], ['ping max ms', 'ping_max_ms'],
  ['CPU % during TCP, h1', 'cpu_pct_h1'], ['CPU % during TCP, h2', 'cpu_pct_h2'], ['CPU % per Gbit/s (h1+h2)', 'cpu_pct_per_gbps'],
  ['RSS MB after TCP, h1', 'rss_mb_h1'], ['RSS MB after TCP, h2', 'rss_mb_h2'],
];

function table(f: Figures, d: Details): string {
  const cell = (v: number | null | undefined, w = 14) => (v === undefined || v === null ? '-' : String(v)).padStart(w);
  const names = ANCHORS.map((a) => a.p);
  const lines = ['metric'.padEnd(24) + 'ours'.padStart(12) + names.map((n) => n.padStart(12)).join('') + names.map((n) => `/${n}`.padStart(9)).join('')];
  for (const [label, k] of ROWS) {
    lines.push(label.padEnd(24) + cell(f[`ours_${k}`], 12) + names.map((n) => cell(f[`${n}_${k}`], 12)).join('') +
      names.map((n) => cell(THROUGHPUT.includes(k) ? f[`ours_over_${n}_${k}`] : undefined, 9)).join(''));
  }
  lines.push('', 'paths: ours = iperf3 in instance ns -> TAP -> appnetd -> ul0; anchors = iperf3 in host ns -> their TUN/TAP -> their daemon -> ul0',
    `  (same hops: one virtual device and one userspace daemon per side; inner MTU ours ${f.ours_mtu ?? '-'}, ` +
    `${names.map((n) => `${n} ${f[`${n}_mtu`] ?? '-'}`).join(', ')})`,
    '  an anchor\'s "underlay sock" counts its own and iperf3\'s socket (same namespace), so its "receiver sock" is -',
    '  UDP 1400 B exceeds the 1418 MTU: 2 IP fragments per datagram; "sender dev" counts fragments, so "elsewhere" can go negative');
  lines.push('', `ours during the TCP run: event-loop utilisation max ${f.ours_elu_max ?? '-'} (h1 ${f.ours_elu_h1 ?? '-'}, h2 ${f.ours_elu_h2 ?? '-'}); ` +
    `process CPU max ${f.ours_cpu_pct_max ?? '-'}% of one core; RSS h1 ${f.ours_rss_mb_h1 ?? '-'} MB, h2 ${f.ours_rss_mb_h2 ?? '-'} MB ` +
    `(idle, link up: h1 ${f.ours_rss_mb_idle_h1 ?? '-'}, h2 ${f.ours_rss_mb_idle_h2 ?? '-'})`);
  lines.push(`ours idle afterwards (no traffic, 5 s): process CPU max ${f.ours_idle_cpu_pct_max ?? '-'}% of one core`);
  lines.push(...threadLines(f, THREADS));
  for (const [h, th] of Object.entries(d.threads)) {
    lines.push(`  ${h} threads, % of one core: ${Object.entries(th).map(([k, v]) => `${k} ${v}`).join(', ') || '-'}`);
  }
  for (const [h, c] of Object.entries(d.counters)) {
    const nz = (r: Record<string, number>) => Object.entries(r).filter(([, n]) => n !== 0).map(([k, n]) => `${k} ${n}`).join(', ') || 'none';
    const hs = c.handshakes as { sent: Record<string, number>; completed: number; failed: Record<string, number> };
    lines.push(`ours ${h} over the run: link drops ${nz(c.link_drops)}; engine drops ${nz(c.engine_drops)}; ` +
      `handshakes completed ${hs.completed} (sent: ${nz(hs.sent)}; failed: ${nz(hs.failed)})`);
  }
  return lines.join('\n');
}

/** Namespaces of this process still listed, and wireguard-go sockets still on disk: both should be none. */
async function leftovers(): Promise<string[]> {
  const ns = (await exec('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(/\s+/)[0]).filter((n) => n.startsWith(`an${process.pid}x`));
  return [...ns, ...ANCHORS.flatMap((a) => a.leftovers ?? []).filter((s) => existsSync(s))];
}

export async function run({ json }: { json?: boolean }): Promise<Record<string, unknown>> {
  const secs = benchSeconds('link');
  // Sequentially, one topology at a time, so idle daemons never compete for the CPUs being measured.
  const f: Figures = {};
  const d: Details = { threads: {}, counters: {} };
  const failures: string[] = [];
  const sides: Array<[string, () => Promise<void>]> = [
    ['ours', () => ours(secs, f, failures, d)],
    ...ANCHORS.map((a): [string, () => Promise<void>] => [a.p, () => runAnchor(a, secs, f, failures, log, UDP_SIZES)]),
  ];
  for (const [name, fn] of sides) {
    await fn().catch((e: Error) => { failures.push(`${name}: ${e.message.split('\n')[0]}`); log(`${name} FAILED: ${e.stack}`); });
  }
  await threadScaling(async (threads, cleanups) => {
    const x = await buildLinkNet(shim(cleanups), { daemon: { engine: { threads } } });
    const tap = await instanceTap(x.a.ns);
    return { path: { net: x.net, a: x.a.ns, b: x.b.ns, addr: x.addrB, aDev: tap.name, hostB: x.h2.ns }, daemons: [x.d1, x.d2] };
  }, THREADS, secs, f, failures, log);
  // CPU cost of the delivered TCP rate, both daemons together: the efficiency figure, less sensitive than the
  // rate itself to how much of the 2 cores other processes took.
  for (const p of ['ours', ...ANCHORS.map((a) => a.p)]) {
    const cpu = (f[`${p}_cpu_pct_h1`] ?? NaN) + (f[`${p}_cpu_pct_h2`] ?? NaN);
    const gbps = f[`${p}_tcp_gbps`];
    f[`${p}_cpu_pct_per_gbps`] = gbps && Number.isFinite(cpu) ? Math.round(cpu / gbps) : null;
  }
  for (const a of ANCHORS) {
    for (const k of THROUGHPUT) {
      const ours = f[`ours_${k}`], base = f[`${a.p}_${k}`];
      f[`ours_over_${a.p}_${k}`] = ours != null && base ? r2(ours / base) : null;
    }
  }
  const left = await leftovers();
  if (left.length) failures.push(`left behind: ${left.join(', ')}`);
  const met = {
    target_tcp_3x_wg_met: (f.ours_over_wg_tcp_gbps ?? 0) >= 3,
    target_elu_5pct_met: f.ours_elu_max != null && f.ours_elu_max <= 0.05,
    target_rss_100mb_met: f.ours_rss_mb_max != null && f.ours_rss_mb_max <= 100,
  };
  const result = {
    ...f, ...met, tcp_seconds: secs, udp_seconds: Math.min(secs, 5),
    ours_threads: d.threads, ours_counters: d.counters, failures,
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, kernel: os.release(), ...(await anchorVersions()) },
  };
  if (!json) {
    const yes = (b: boolean) => (b ? 'met' : 'NOT met');
    const m = result.machine;
    console.log(`Encrypted link end to end, ${os.cpus().length} CPUs, kernel ${os.release()}, ${m.wireguardGo}, ${m.nebula}, ${m.tinc}, TCP ${secs} s, UDP ${Math.min(secs, 5)} s\n`);
    console.log(table(f, d));
    console.log(`\ntarget TCP >= 3x wireguard-go: ${yes(met.target_tcp_3x_wg_met)} (${f.ours_over_wg_tcp_gbps ?? '-'}x); ` +
      `target ELU <= 5%: ${yes(met.target_elu_5pct_met)} (${f.ours_elu_max ?? '-'}); ` +
      `target RSS <= 100 MB: ${yes(met.target_rss_100mb_met)} (${f.ours_rss_mb_max ?? '-'} MB)`);
    if (failures.length) console.log(`failures: ${failures.join('; ')}`);
  }
  return result;
}

async function anchorVersions(): Promise<{ wireguardGo: string; nebula: string; tinc: string }> {
  const out = async (cmd: string, args: string[], re: RegExp, name: string) => {
    const r = await exec(cmd, args, { reject: false });
    return re.exec(r.stdout + r.stderr)?.[0] ?? `${name} (version unknown)`;
  };
  return {
    wireguardGo: await out('wireguard-go', ['--version'], /wireguard-go v\S+/, 'wireguard-go'),
    nebula: `nebula ${await out('nebula', ['-version'], /\d+\.\d+\.\d+/, 'nebula')}`,
    tinc: await out('tincd', ['--version'], /tinc version \S+/, 'tinc'),
  };
}
