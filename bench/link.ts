// End-to-end benchmark of encrypted links: appnetd (Noise IK + ChaCha20-Poly1305 per VXLAN datagram) against
// wireguard-go (the same cipher and message format, in userspace too), measured in the same run on the same
// machine, one topology at a time. Both tunnels run over the same bridged underlay (TestNet, 198.18.0.11/.12,
// MTU 1500) with an inner MTU of 1418.
//
//   ours:  instance a --TAP--> appnetd h1 ==link==> appnetd h2 --TAP--> instance b     (test/helpers/link-net.ts)
//   wg:    iperf3 in h1 --TUN wg..a--> wireguard-go h1 ==wg==> wireguard-go h2 --TUN wg..b--> iperf3 in h2
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
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EngineCounters } from '../dataplane/engine.ts';
import { buildLinkNet } from '../test/helpers/link-net.ts';
import { counters } from '../test/helpers/overlay.ts';
import { hasExited, run as exec, runIn, spawnIn, stopProcess } from '../test/helpers/run.ts';
import { TestNet, type Daemon } from '../test/helpers/testnet.ts';
import { benchLog, benchSeconds, cpuMs, measure, r2, rssBytes, sampleDaemons, shim, type Around, type Figures } from './path-measure.ts';

const log = benchLog('link');
const MTU = 1418;
// 1390 is the largest UDP payload that fits the 1418 MTU unfragmented (1418 - 20 IP - 8 UDP); 1400, the size
// the vxlan bench uses, goes out as two IP fragments here, on both sides alike.
const UDP_SIZES = [64, 1390, 1400];
const WG_PORT = 51820;
const WG_SUBNET = '198.18.121';
// wireguard-go's UAPI socket is /var/run/wireguard/<ifname>.sock, a path every namespace shares: the names
// carry our pid so two runs (or a leftover of a killed one) never collide. At most 15 characters.
const WG_IFS = [`wg${process.pid}a`, `wg${process.pid}b`];
const wgSocket = (ifname: string) => `/var/run/wireguard/${ifname}.sock`;

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

async function ours(secs: number, f: Figures, fails: string[], d: Details): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  const t = shim(cleanups);
  try {
    log('ours: building the link net (2 hosts, appnetd in store mode, encrypted network, one TAP instance each)');
    const { net, h2, d1, d2, a, b, addrB } = await buildLinkNet(t);
    const daemons = [d1, d2];
    // The instance's TAP is named by the data plane (an<8 hex>); it is the only device besides lo.
    const devs = JSON.parse((await runIn(a.ns, 'ip', ['-j', 'link', 'show'])).stdout) as Array<{ ifname: string; mtu: number }>;
    const tap = devs.find((x) => x.ifname !== 'lo');
    if (!tap) throw new Error(`no TAP in instance ${a.ns}: ${devs.map((x) => x.ifname).join(', ')}`);
    f.ours_mtu = tap.mtu;
    const snap = () => Promise.all(daemons.map(async (x: Daemon) => ({ c: await counters(x), l: await x.get('/engine/links') })));
    const before = await snap();
    // RSS with the link up and no traffic yet, to tell the process's baseline from what traffic adds.
    for (const x of daemons) f[`ours_rss_mb_idle_${x.host.name}`] = Math.round((await x.get('/engine/stats')).rssBytes / 2 ** 20);
    const around = sampleDaemons(daemons, f, 'ours', d.threads);
    await measure({ net, a: a.ns, b: b.ns, addr: addrB, p: 'ours', aDev: tap.ifname, hostB: h2.ns }, secs, f, fails, log, around, UDP_SIZES);
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

/** Start wireguard-go on `ifname` in `ns` (tracked by `net`) and wait for its UAPI socket. */
async function startWireguardGo(net: TestNet, ns: string, ifname: string, logFile: string): Promise<ChildProcess> {
  // -f: stay in the foreground, so the pid we track is the daemon itself and TestNet's teardown reaches it.
  const child = net.track(spawnIn(ns, 'wireguard-go', ['-f', ifname], { logFile }));
  for (const deadline = Date.now() + 10_000; !existsSync(wgSocket(ifname)); await sleep(50)) {
    if (hasExited(child) || Date.now() > deadline) {
      await stopProcess(child, { group: true, graceMs: 1000 });
      throw new Error(`wireguard-go -f ${ifname} in ${ns}: no UAPI socket ${wgSocket(ifname)} (exit ${child.exitCode ?? child.signalCode ?? 'none, timed out'}); see ${logFile}`);
    }
  }
  return child;
}

/**
 * On SIGINT/SIGTERM/SIGHUP TestNet SIGKILLs what it tracks, and a SIGKILLed wireguard-go leaves its socket
 * file behind: remove ours, and `dir` (the throwaway keys). The process still dies by the signal: TestNet's handler re-raises it, and this one
 * does too if it is the last listener. Returns the function that uninstalls it.
 */
function removeOnSignal(dir: string): () => void {
  const sigs = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const handlers = sigs.map((sig) => {
    const h = () => {
      for (const i of WG_IFS) rmSync(wgSocket(i), { force: true });
      rmSync(dir, { recursive: true, force: true });
      process.off(sig, h);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, h);
    return h;
  });
  return () => sigs.forEach((sig, i) => process.off(sig, handlers[i]));
}

async function wireguard(secs: number, f: Figures, fails: string[]): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  const t = shim(cleanups);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-wgbench-'));
  const procs: ChildProcess[] = [];
  const uninstall = removeOnSignal(dir);
  try {
    log('wg: building 2 hosts with wireguard-go');
    const net = await TestNet.create(t, { hosts: 2 });
    const keys = await Promise.all(net.hosts.map(async () => {
      const priv = (await exec('wg', ['genkey'])).stdout.trim();
      return { priv, pub: (await exec('wg', ['pubkey'], { input: priv })).stdout.trim() };
    }));
    for (const [i, h] of net.hosts.entries()) {
      const ifname = WG_IFS[i];
      const other = net.hosts[1 - i];
      const keyFile = path.join(dir, `${ifname}.key`);
      writeFileSync(keyFile, keys[i].priv + '\n', { mode: 0o600 });
      procs.push(await startWireguardGo(net, h.ns, ifname, path.join(dir, `${ifname}.log`)));
      await runIn(h.ns, 'wg', ['set', ifname, 'listen-port', String(WG_PORT), 'private-key', keyFile,
        'peer', keys[1 - i].pub, 'endpoint', `${other.underlayIp}:${WG_PORT}`, 'allowed-ips', `${WG_SUBNET}.${other.index}/32`]);
      await exec('ip', ['-n', h.ns, 'addr', 'add', `${WG_SUBNET}.${h.index}/24`, 'dev', ifname]);
      await exec('ip', ['-n', h.ns, 'link', 'set', 'dev', ifname, 'mtu', String(MTU), 'up']);
    }
    const [h1, h2] = net.hosts;
    f.wg_mtu = JSON.parse((await exec('ip', ['-j', '-n', h1.ns, 'link', 'show', 'dev', WG_IFS[0]])).stdout)[0].mtu;
    // wireguard-go's cost over the TCP run, like ours' (it has no event loop to report).
    const around: Around = async (step) => {
      const at0 = performance.now();
      const cpu0 = procs.map((p) => cpuMs(p.pid));
      await step();
      const wall = performance.now() - at0;
      procs.forEach((p, i) => {
        f[`wg_cpu_pct_${net.hosts[i].name}`] = Math.round((100 * (cpuMs(p.pid) - cpu0[i])) / wall);
        f[`wg_rss_mb_${net.hosts[i].name}`] = Math.round(rssBytes(p.pid) / 2 ** 20);
      });
      f.wg_cpu_pct_max = Math.max(f.wg_cpu_pct_h1 ?? NaN, f.wg_cpu_pct_h2 ?? NaN);
      f.wg_rss_mb_max = Math.max(f.wg_rss_mb_h1 ?? NaN, f.wg_rss_mb_h2 ?? NaN);
    };
    await measure({ net, a: h1.ns, b: h2.ns, addr: `${WG_SUBNET}.${h2.index}`, p: 'wg', aDev: WG_IFS[0], hostB: h2.ns }, secs, f, fails, log, around, UDP_SIZES);
  } catch (e) {
    t.passed = false;
    throw e;
  } finally {
    // SIGTERM first: wireguard-go then removes its UAPI socket itself. TestNet's teardown would do the same;
    // stopping them here also covers a failure before the net existed.
    await Promise.all(procs.map((p) => stopProcess(p, { group: true, graceMs: 3000 }).catch((e: Error) => log(`wg: stop: ${e.message}`))));
    for (const fn of cleanups.reverse()) await fn();
    for (const i of WG_IFS) rmSync(wgSocket(i), { force: true }); // left only if one had to be SIGKILLed
    rmSync(dir, { recursive: true, force: true });
    uninstall();
  }
}

// Ratios ours/wg for delivered rates. Not for tx pkt/s: sending faster into a device that drops the excess is
// not a better result.
const THROUGHPUT = ['tcp_gbps', ...UDP_SIZES.map((n) => `udp${n}_rx_pps`)];
const ROWS: Array<[string, string]> = [
  ['TCP 1 stream, Gbit/s', 'tcp_gbps'], ['TCP retransmits', 'tcp_retransmits'],
  ['  lost: sender dev', 'tcp_lost_sender_dev'], ['  lost: underlay sock', 'tcp_lost_underlay_sock'],
  ...UDP_SIZES.flatMap((n): Array<[string, string]> => [
    [`UDP ${n} B, rx pkt/s`, `udp${n}_rx_pps`], [`UDP ${n} B, tx pkt/s`, `udp${n}_tx_pps`], [`UDP ${n} B, loss %`, `udp${n}_loss_pct`],
    ['  lost: sender dev', `udp${n}_lost_sender_dev`], ['  lost: underlay sock', `udp${n}_lost_underlay_sock`],
    ['  lost: receiver sock', `udp${n}_lost_receiver_sock`], ['  lost: elsewhere', `udp${n}_lost_other`],
  ]),
  ['ping avg ms', 'ping_avg_ms'], ['ping min ms', 'ping_min_ms'], ['ping max ms', 'ping_max_ms'],
  ['CPU % during TCP, h1', 'cpu_pct_h1'], ['CPU % during TCP, h2', 'cpu_pct_h2'], ['CPU % per Gbit/s (h1+h2)', 'cpu_pct_per_gbps'],
  ['RSS MB after TCP, h1', 'rss_mb_h1'], ['RSS MB after TCP, h2', 'rss_mb_h2'],
];

function table(f: Figures, d: Details): string {
  const cell = (v: number | null | undefined, w = 14) => (v === undefined || v === null ? '-' : String(v)).padStart(w);
  const lines = ['metric'.padEnd(24) + 'ours'.padStart(14) + 'wireguard-go'.padStart(14) + 'ours/wg'.padStart(10)];
  for (const [label, k] of ROWS) {
    lines.push(label.padEnd(24) + cell(f[`ours_${k}`]) + cell(f[`wg_${k}`]) + cell(THROUGHPUT.includes(k) ? f[`ours_over_wg_${k}`] : undefined, 10));
  }
  lines.push('', 'paths: ours = iperf3 in instance ns -> TAP -> appnetd -> ul0; wg = iperf3 in host ns -> TUN -> wireguard-go -> ul0',
    `  (same hops: one virtual device and one userspace daemon per side; inner MTU ours ${f.ours_mtu ?? '-'}, wg ${f.wg_mtu ?? '-'})`,
    '  wg\'s "underlay sock" counts its own and iperf3\'s socket (same namespace), so its "receiver sock" is -',
    '  UDP 1400 B exceeds the 1418 MTU: 2 IP fragments per datagram; "sender dev" counts fragments, so "elsewhere" can go negative');
  lines.push('', `ours during the TCP run: event-loop utilisation max ${f.ours_elu_max ?? '-'} (h1 ${f.ours_elu_h1 ?? '-'}, h2 ${f.ours_elu_h2 ?? '-'}); ` +
    `process CPU max ${f.ours_cpu_pct_max ?? '-'}% of one core; RSS h1 ${f.ours_rss_mb_h1 ?? '-'} MB, h2 ${f.ours_rss_mb_h2 ?? '-'} MB ` +
    `(idle, link up: h1 ${f.ours_rss_mb_idle_h1 ?? '-'}, h2 ${f.ours_rss_mb_idle_h2 ?? '-'})`);
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
  return [...ns, ...WG_IFS.map(wgSocket).filter((s) => existsSync(s))];
}

export async function run({ json }: { json?: boolean }): Promise<Record<string, unknown>> {
  const secs = benchSeconds('link');
  // Sequentially, one topology at a time, so idle daemons never compete for the CPUs being measured.
  const f: Figures = {};
  const d: Details = { threads: {}, counters: {} };
  const failures: string[] = [];
  const sides: Array<[string, () => Promise<void>]> = [['ours', () => ours(secs, f, failures, d)], ['wg', () => wireguard(secs, f, failures)]];
  for (const [name, fn] of sides) {
    await fn().catch((e: Error) => { failures.push(`${name}: ${e.message.split('\n')[0]}`); log(`${name} FAILED: ${e.stack}`); });
  }
  // CPU cost of the delivered TCP rate, both daemons together: the efficiency figure, less sensitive than the
  // rate itself to how much of the 2 cores other processes took.
  for (const p of ['ours', 'wg']) {
    const cpu = (f[`${p}_cpu_pct_h1`] ?? NaN) + (f[`${p}_cpu_pct_h2`] ?? NaN);
    const gbps = f[`${p}_tcp_gbps`];
    f[`${p}_cpu_pct_per_gbps`] = gbps && Number.isFinite(cpu) ? Math.round(cpu / gbps) : null;
  }
  for (const k of THROUGHPUT) {
    const ours = f[`ours_${k}`], base = f[`wg_${k}`];
    f[`ours_over_wg_${k}`] = ours != null && base ? r2(ours / base) : null;
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
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, kernel: os.release(), wireguardGo: await wgVersion() },
  };
  if (!json) {
    const yes = (b: boolean) => (b ? 'met' : 'NOT met');
    console.log(`Encrypted link end to end, ${os.cpus().length} CPUs, kernel ${os.release()}, ${result.machine.wireguardGo}, TCP ${secs} s, UDP ${Math.min(secs, 5)} s\n`);
    console.log(table(f, d));
    console.log(`\ntarget TCP >= 3x wireguard-go: ${yes(met.target_tcp_3x_wg_met)} (${f.ours_over_wg_tcp_gbps ?? '-'}x); ` +
      `target ELU <= 5%: ${yes(met.target_elu_5pct_met)} (${f.ours_elu_max ?? '-'}); ` +
      `target RSS <= 100 MB: ${yes(met.target_rss_100mb_met)} (${f.ours_rss_mb_max ?? '-'} MB)`);
    if (failures.length) console.log(`failures: ${failures.join('; ')}`);
  }
  return result;
}

async function wgVersion(): Promise<string> {
  const r = await exec('wireguard-go', ['--version'], { reject: false });
  return /wireguard-go v\S+/.exec(r.stdout)?.[0] ?? 'wireguard-go (version unknown)';
}
