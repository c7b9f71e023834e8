// Measuring one network path between two namespaces, shared by the end-to-end benchmarks (vxlan, link):
// ping RTT, one iperf3 TCP stream and four in parallel, iperf3 UDP floods at two sizes, where the loss happened,
// the highest paced UDP rate carried with at most 1 % loss, and the cost to
// appnetd (event-loop utilisation, process CPU, RSS) around the TCP run. Figures go into a flat record whose
// keys start with the path's prefix, so several paths measured in one run sit side by side.
import { readdirSync, readFileSync } from 'node:fs';
import { runIn } from '../test/helpers/run.ts';
import type { Daemon, TestNet } from '../test/helpers/testnet.ts';
import { iperf3 } from '../test/helpers/iperf.ts';

export type Figures = Record<string, number | null>;
export type Log = (s: string) => void;
export const r2 = (n: number) => Math.round(n * 100) / 100;

export const benchLog = (name: string): Log => (s) => process.stderr.write(`${name} bench: ${s}\n`);

/** TCP seconds from `--duration=S` or BENCH_SECONDS (default 10). `--duration` needs '=': a bare word is a bench name. */
export function benchSeconds(name: string): number {
  const arg = process.argv.find((x) => x.startsWith('--duration='))?.split('=')[1];
  const secs = Number(arg ?? process.env.BENCH_SECONDS ?? 10);
  if (!(secs >= 1)) throw new Error(`${name} bench: duration must be a number of seconds >= 1, got '${arg ?? process.env.BENCH_SECONDS}'`);
  return secs;
}

/** A fake ava context: TestNet registers its destroy() here; `passed` false keeps logs and artifacts. */
export function shim(cleanups: Array<() => unknown>) {
  return { teardown: (fn: () => unknown) => cleanups.push(fn), passed: true } as any;
}

/** One path under test: namespaces `a` (client) and `b` (server, at `addr`); `p` prefixes its keys. */
export interface Path {
  net: TestNet; a: string; b: string; addr: string; p: string;
  /**
   * Where UDP loss is counted: the sender's device and the receiving host namespace. When the server runs in
   * the host namespace itself (b === hostB), one RcvbufErrors counter covers both the tunnel daemon's socket
   * and iperf3's: it is reported as `underlay sock` and `receiver sock` is null.
   */
  aDev: string; hostB: string;
}

/** iperf3 with `streams` TCP streams at once (-P): `${p}_tcp_p${streams}_gbps`, the sum of the streams. */
export async function tcpParallel(x: Path, streams: number, seconds: number, f: Figures): Promise<void> {
  const r = await iperf3(x.net, x.a, x.b, x.addr, ['-P', String(streams)], seconds);
  f[`${x.p}_tcp_p${streams}_gbps`] = r2(r.end.sum_received.bits_per_second / 1e9);
}

export async function tcp(x: Path, seconds: number, f: Figures): Promise<void> {
  const before = await lossPoints(x);
  const r = await iperf3(x.net, x.a, x.b, x.addr, [], seconds);
  const after = await lossPoints(x);
  f[`${x.p}_tcp_gbps`] = r2(r.end.sum_received.bits_per_second / 1e9);
  f[`${x.p}_tcp_retransmits`] = r.end.sum_sent.retransmits ?? null;
  // Forward-path drops behind the retransmits, at the two queues we can count (ACK-direction drops not included).
  [f[`${x.p}_tcp_lost_sender_dev`], f[`${x.p}_tcp_lost_underlay_sock`]] = [after[0] - before[0], after[1] - before[1]];
}

/**
 * Loss points, cumulative: TX drops on the sender's device (a full TAP/TUN queue the daemon did not read in
 * time; for a veth, a full backlog on its peer), UDP receive-buffer overflows in the receiving host (the
 * daemon's underlay socket; a kernel VTEP decapsulates without a socket) and in the receiving instance
 * (iperf3 itself; NaN when that is the host namespace, already counted in the second).
 */
export async function lossPoints(x: Path): Promise<number[]> {
  const link = JSON.parse((await runIn(x.a, 'ip', ['-j', '-s', 'link', 'show', 'dev', x.aDev])).stdout);
  const rcvbuf = async (ns: string) => {
    const [h, v] = (await runIn(ns, 'cat', ['/proc/net/snmp'])).stdout.split('\n').filter((l) => l.startsWith('Udp:')).map((l) => l.split(/\s+/));
    return Number(v[h.indexOf('RcvbufErrors')]);
  };
  return [link[0].stats64.tx.dropped, await rcvbuf(x.hostB), x.b === x.hostB ? NaN : await rcvbuf(x.b)];
}

export async function udp(x: Path, len: number, seconds: number, f: Figures): Promise<void> {
  // -b 0: no pacing, the client sends as fast as its socket takes datagrams, so what arrives per second is the
  // most this path delivers. It is sender-bound when the sender does the forwarding work inline (kernel VTEP).
  const before = await lossPoints(x);
  const r = await iperf3(x.net, x.a, x.b, x.addr, ['-u', '-b', '0', '-l', String(len)], seconds);
  const after = await lossPoints(x);
  const s = r.end.sum_sent;
  const rx = r.end.sum_received;
  // Received = the highest sequence number seen minus the gaps. Lost = sent - received: iperf3's own lost_packets
  // misses the tail (datagrams after the last one that arrived), which a TAP dropping most of a flood makes large.
  const received = rx.packets - rx.lost_packets;
  const lost = s.packets - received;
  const k = `${x.p}_udp${len}`;
  f[`${k}_tx_pps`] = Math.round(s.packets / (s.seconds || seconds));
  f[`${k}_rx_pps`] = Math.round(received / (rx.seconds || seconds));
  f[`${k}_loss_pct`] = r2((100 * lost) / s.packets);
  const deltas = after.map((n, i) => n - before[i]);
  [f[`${k}_lost_sender_dev`], f[`${k}_lost_underlay_sock`], f[`${k}_lost_receiver_sock`]] = deltas.map((d) => (Number.isNaN(d) ? null : d));
  // The rest of the loss happened elsewhere (bridge or veth backlogs, the engine's RX side, the receiving TAP).
  f[`${k}_lost_other`] = lost - deltas.reduce((t, d) => t + (Number.isNaN(d) ? 0 : d), 0);
}

/** One paced UDP run: `pps` datagrams of `len` bytes a second offered; what arrived, and the loss. */
async function udpAt(x: Path, len: number, pps: number, seconds: number): Promise<{ rx: number; loss: number }> {
  const r = await iperf3(x.net, x.a, x.b, x.addr, ['-u', '-b', String(Math.round(pps * len * 8)), '-l', String(len)], seconds);
  const sent = r.end.sum_sent.packets;
  const received = r.end.sum_received.packets - r.end.sum_received.lost_packets;
  return { rx: Math.round(received / (r.end.sum_received.seconds || seconds)), loss: sent > 0 ? (100 * (sent - received)) / sent : 100 };
}

/** The loss a paced rate may have and still count as carried (RFC 2544 asks for none; a VM's scheduler never gives none). */
export const PACED_LOSS_PCT = 1;

/**
 * The highest offered rate this path carries with at most PACED_LOSS_PCT loss, found by bisection between 0 and
 * the rate the flood (`udp()`, run first) offered, a rate failing when two tries in a row lose more:
 * `${p}_udp${len}_paced_pps` is what arrived per second at the highest rate that passed. A flood measures what arrives when four busy threads (sender, two engine threads, receiver) share the
 * cores and the receiver gets a quarter of them; this is what the path itself carries when the sender paces.
 */
export async function udpPaced(x: Path, len: number, seconds: number, f: Figures, probes = 6): Promise<void> {
  const k = `${x.p}_udp${len}`;
  let lo = 0;
  let hi = Number(f[`${k}_tx_pps`] ?? 0) || 400_000;
  let best = 0;
  let rate = Number(f[`${k}_rx_pps`] ?? 0) || hi / 2;
  for (let i = 0; i < probes; i++) {
    // A rate fails only when two tries in a row lose too much: one hiccup (a rekey, a vCPU the host took away)
    // would otherwise halve the answer.
    let r = await udpAt(x, len, rate, seconds);
    if (r.loss > PACED_LOSS_PCT) r = await udpAt(x, len, rate, seconds);
    if (r.loss <= PACED_LOSS_PCT) {
      [lo, best] = [rate, Math.max(best, r.rx)];
    } else {
      hi = rate;
    }
    rate = (lo + hi) / 2;
  }
  f[`${k}_paced_pps`] = best;
  f[`${k}_paced_offered_pps`] = Math.round(lo);
}

export async function ping(x: Path, f: Figures, count = 50): Promise<void> {
  const r = await runIn(x.a, 'ping', ['-n', '-q', '-c', String(count), '-i', '0.01', '-W', '2', x.addr], { reject: false, timeoutMs: 30_000, killSignal: 'SIGINT' });
  const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\//.exec(r.stdout);
  if (!m) throw new Error(`ping ${x.addr} from ${x.a}: no RTT summary:\n${r.stdout}${r.stderr}`);
  [f[`${x.p}_ping_min_ms`], f[`${x.p}_ping_avg_ms`], f[`${x.p}_ping_max_ms`]] = [Number(m[1]), Number(m[2]), Number(m[3])];
  f[`${x.p}_ping_loss_pct`] = Number(/([\d.]+)% packet loss/.exec(r.stdout)?.[1] ?? NaN);
}

/** Wraps one measured step, e.g. to sample the daemons before and after it. */
export type Around = (step: () => Promise<void>) => Promise<void>;

/** ping, TCP, then a UDP flood per payload size over one path; a failing step is logged, listed in `fails` and left out. */
export async function measure(x: Path, secs: number, f: Figures, fails: string[], log: Log, around?: Around, udpSizes = [64, 1400], paced = true): Promise<void> {
  // Warm-up: ARP and FDB learning, and proof the path works before timing anything.
  await ping(x, {}, 3).catch((e: Error) => log(`${x.p}: warm-up ping failed: ${e.message}`));
  const steps: Array<[string, () => Promise<void>]> = [
    ['ping', () => ping(x, f)], // first, on an idle path: after a flood the RTTs also measure queues draining
    ['tcp', () => (around ? around(() => tcp(x, secs, f)) : tcp(x, secs, f))],
    ['tcp_p4', () => tcpParallel(x, 4, secs, f)],
    ...udpSizes.map((n): [string, () => Promise<void>] => [`udp${n}`, () => udp(x, n, Math.min(secs, 5), f)]),
    ...(paced ? udpSizes.map((n): [string, () => Promise<void>] => [`udp${n}_paced`, () => udpPaced(x, n, Math.min(secs, 3), f)]) : []),
  ];
  for (const [name, fn] of steps) {
    log(`${x.p}: ${name}`);
    try {
      await fn();
    } catch (e) {
      log(`${x.p}: ${name} FAILED: ${(e as Error).message}`);
      fails.push(`${x.p} ${name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
}

/** utime + stime from a /proc stat line, in ms (fields 14, 15 of proc(5), in USER_HZ: 100 on Linux). */
function statCpuMs(stat: string): number {
  const fields = stat.replace(/^.*\) /, '').split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/** utime + stime of a process, in ms (all its threads, so the native engine threads count). */
export function cpuMs(pid: number | undefined): number {
  if (!pid) return NaN;
  return statCpuMs(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/** RSS of a process in bytes, from /proc (for processes without a stats endpoint). */
export function rssBytes(pid: number | undefined): number {
  if (!pid) return NaN;
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return kb === undefined ? NaN : Number(kb) * 1024;
}

/** CPU ms of each thread of `pid`, keyed `<comm>/<tid>`; threads that exit in between simply drop out. */
export function threadCpuMs(pid: number | undefined): Map<string, number> {
  const out = new Map<string, number>();
  if (!pid) return out;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      out.set(`${/\((.*)\)/.exec(stat)?.[1] ?? '?'}/${tid}`, statCpuMs(stat));
    } catch {
      // the thread exited between readdir and read
    }
  }
  return out;
}

/**
 * An `around` for the TCP step that samples appnetd daemons before and after it: event-loop utilisation
 * (Δactive / (Δactive + Δidle) from GET /engine/stats), process CPU as % of one core, RSS. Keys
 * `${p}_elu_<host>`, `${p}_cpu_pct_<host>`, `${p}_rss_mb_<host>` and their `_max` over the daemons. With
 * `threads`, also the busiest threads' CPU % per daemon, into `threads[<host>]` (for diagnosis, not a figure).
 */
export function sampleDaemons(daemons: Daemon[], f: Figures, p = 'ours', threads?: Record<string, Record<string, number>>): Around {
  return async (step) => {
    const stats = (d: Daemon) => d.get<{ eluIdleMs: number; eluActiveMs: number; rssBytes: number }>('/engine/stats');
    const snap = async (d: Daemon) => ({ s: await stats(d), cpu: cpuMs(d.pid), th: threadCpuMs(d.pid), at: performance.now() });
    const before = await Promise.all(daemons.map(snap));
    await step();
    const after = await Promise.all(daemons.map(snap));
    daemons.forEach((d, i) => {
      const da = after[i].s.eluActiveMs - before[i].s.eluActiveMs;
      const di = after[i].s.eluIdleMs - before[i].s.eluIdleMs;
      const wall = after[i].at - before[i].at;
      f[`${p}_elu_${d.host.name}`] = Math.round((1000 * da) / (da + di)) / 1000;
      f[`${p}_cpu_pct_${d.host.name}`] = Math.round((100 * (after[i].cpu - before[i].cpu)) / wall);
      f[`${p}_rss_mb_${d.host.name}`] = Math.round(after[i].s.rssBytes / 2 ** 20);
      if (threads) {
        // The engine's threads are unnamed (they show as the process's comm); the main (JS) thread's tid is the pid.
        const label = (k: string) => (k.endsWith(`/${d.pid}`) ? `${k}(main)` : k);
        const busy = [...after[i].th].map(([k, ms]): [string, number] => [label(k), Math.round((100 * (ms - (before[i].th.get(k) ?? 0))) / wall)]);
        threads[d.host.name] = Object.fromEntries(busy.filter(([, pct]) => pct >= 1).sort((x, y) => y[1] - x[1]));
      }
    });
    const max = (k: string) => Math.max(...daemons.map((d) => f[`${p}_${k}_${d.host.name}`] as number));
    [f[`${p}_elu_max`], f[`${p}_cpu_pct_max`], f[`${p}_rss_mb_max`]] = [max('elu'), max('cpu_pct'), max('rss_mb')];
  };
}

/**
 * What the daemons cost with no traffic: process CPU (every thread) as % of one core over `ms` of quiet, after
 * the measured steps; `${p}_idle_cpu_pct_<host>` and `_max` (the floor any latency work must keep near 0).
 */
export async function idleCpu(daemons: Daemon[], f: Figures, p = 'ours', ms = 5000): Promise<void> {
  await new Promise((r) => setTimeout(r, 1000)); // the last step's traffic drains first
  const before = daemons.map((d) => ({ cpu: cpuMs(d.pid), at: performance.now() }));
  await new Promise((r) => setTimeout(r, ms));
  daemons.forEach((d, i) => {
    f[`${p}_idle_cpu_pct_${d.host.name}`] = r2((100 * (cpuMs(d.pid) - before[i].cpu)) / (performance.now() - before[i].at));
  });
  f[`${p}_idle_cpu_pct_max`] = Math.max(...daemons.map((d) => f[`${p}_idle_cpu_pct_${d.host.name}`] as number));
}

/**
 * How throughput and its CPU cost change with engine.threads (docs/engine-threads.md): for each thread count, a
 * fresh pair of daemons from `build`, one TCP stream and four, each with the daemons sampled around it. Keys
 * `ours_t<n>_tcp_gbps`, `ours_t<n>_tcp_p4_gbps`, and `ours_t<n>[_p4]_cpu_pct_per_gbps` (h1 + h2 process CPU, % of
 * one core, per Gbit/s delivered).
 */
export async function threadScaling(
  build: (threads: number, cleanups: Array<() => unknown>) => Promise<{ path: Omit<Path, 'p'>; daemons: Daemon[] }>,
  counts: number[], secs: number, f: Figures, fails: string[], log: Log,
): Promise<void> {
  for (const n of counts) {
    const cleanups: Array<() => unknown> = [];
    try {
      log(`engine.threads ${n}: building`);
      const { path, daemons } = await build(n, cleanups);
      await ping({ ...path, p: `ours_t${n}` }, {}, 3);
      for (const [suffix, step] of [['', (x: Path) => tcp(x, secs, f)], ['_p4', (x: Path) => tcpParallel(x, 4, secs, f)]] as const) {
        const p = `ours_t${n}${suffix}`;
        log(`engine.threads ${n}: TCP${suffix ? ' -P 4' : ''}`);
        await sampleDaemons(daemons, f, p)(() => step({ ...path, p: `ours_t${n}` }));
        const cpu = daemons.reduce((s, d) => s + (f[`${p}_cpu_pct_${d.host.name}`] ?? NaN), 0);
        const gbps = f[`ours_t${n}_tcp${suffix}_gbps`];
        f[`${p}_cpu_pct_per_gbps`] = gbps && Number.isFinite(cpu) ? Math.round(cpu / gbps) : null;
      }
    } catch (e) {
      log(`engine.threads ${n} FAILED: ${(e as Error).message}`);
      fails.push(`engine.threads ${n}: ${(e as Error).message.split('\n')[0]}`);
    } finally {
      for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
    }
  }
}

/** The threadScaling figures as table lines. */
export function threadLines(f: Figures, counts: number[]): string[] {
  const lines = ['', 'engine.threads'.padEnd(16) + 'TCP 1, Gbit/s'.padStart(15) + 'CPU %/Gbit/s'.padStart(14) + 'TCP -P 4, Gbit/s'.padStart(18) + 'CPU %/Gbit/s'.padStart(14)];
  for (const n of counts) {
    const c = (k: string) => String(f[`ours_t${n}${k}`] ?? '-');
    lines.push(String(n).padEnd(16) + c('_tcp_gbps').padStart(15) + c('_cpu_pct_per_gbps').padStart(14) + c('_tcp_p4_gbps').padStart(18) + c('_p4_cpu_pct_per_gbps').padStart(14));
  }
  return lines;
}
