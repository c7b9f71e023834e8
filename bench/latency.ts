// Idle round-trip time, ours against Nebula (the target of issue 17) and wireguard-go, in rounds: one RTT figure
// on this VM moves by a factor of two between runs of the same path, so each path is built and pinged once per
// round, the paths taking turns, and the figures are over all rounds.
//
//   ours_vxlan   instance -> TAP -> appnetd (VXLAN) -> ul0 ... and back       (buildOverlay)
//   ours_link    instance -> TAP -> appnetd (encrypted link) -> ul0 ...        (buildLinkNet)
//   nebula, wg   host ns  -> their TUN -> their daemon -> ul0 ...              (bench/anchor-tunnels.ts)
//
// Each round sends PINGS echoes 10 ms apart (each finds an idle path: no daemon spins). Keys per path:
// `<p>_rtt_p50_us` and `_p90_us` over every echo of every round, `<p>_rtt_mean_us`, `<p>_round_means_us` (one per
// round), and `ours_*_idle_cpu_pct_max` (our daemons' CPU over 5 s without traffic, after the last round).
//
// `node --import tsx bench/run.ts latency [--json] [--rounds=N]` (default 5).
import { runIn } from '../test/helpers/run.ts';
import { buildOverlay } from '../test/helpers/overlay.ts';
import { buildLinkNet } from '../test/helpers/link-net.ts';
import type { Daemon } from '../test/helpers/testnet.ts';
import { nebula, runAnchor, wireguardGo } from './anchor-tunnels.ts';
import { benchLog, idleCpu, r2, shim, type Figures, type Path } from './path-measure.ts';

const log = benchLog('latency');
const PINGS = 200;
const rounds = Number(process.argv.find((a) => a.startsWith('--rounds='))?.split('=')[1] ?? 5);

/** Every echo's RTT in µs (ping without -q prints one "time=" per reply). */
async function pingSeries(x: Pick<Path, 'a' | 'addr'>): Promise<number[]> {
  await runIn(x.a, 'ping', ['-n', '-q', '-c', '3', '-i', '0.1', '-W', '2', x.addr], { reject: false }); // ARP, FDB, handshakes
  const r = await runIn(x.a, 'ping', ['-n', '-c', String(PINGS), '-i', '0.01', '-W', '2', x.addr], { reject: false, timeoutMs: 60_000, killSignal: 'SIGINT' });
  const rtts = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
  if (rtts.length < PINGS * 0.9) throw new Error(`ping ${x.addr} from ${x.a}: ${rtts.length} of ${PINGS} replies:\n${r.stdout.slice(-300)}`);
  return rtts;
}

type Series = Record<string, { all: number[]; means: number[] }>;

function add(s: Series, p: string, rtts: number[]): void {
  s[p] ??= { all: [], means: [] };
  s[p].all.push(...rtts);
  s[p].means.push(rtts.reduce((a, b) => a + b, 0) / rtts.length);
}

const quantile = (v: number[], q: number) => { const s = [...v].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };

async function withCleanups(fn: (cleanups: Array<() => unknown>) => Promise<void>): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  try {
    await fn(cleanups);
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  }
}

export async function run({ json }: { json: boolean }): Promise<Record<string, unknown>> {
  const s: Series = {};
  const f: Figures = {};
  const failures: string[] = [];
  const last = rounds - 1;
  const ours = async (p: string, round: number, build: (c: Array<() => unknown>) => Promise<{ x: Pick<Path, 'a' | 'addr'>; daemons: Daemon[] }>) =>
    withCleanups(async (c) => {
      const { x, daemons } = await build(c);
      add(s, p, await pingSeries(x));
      if (round === last) await idleCpu(daemons, f, p);
    });
  const paths: Array<[string, (round: number) => Promise<void>]> = [
    ['ours_vxlan', (round) => ours('ours_vxlan', round, async (c) => {
      const { daemons, instances: [a, b] } = await buildOverlay(shim(c), { hosts: 2 });
      return { x: { a: a.inst.ns, addr: b.addr }, daemons };
    })],
    ['ours_link', (round) => ours('ours_link', round, async (c) => {
      const { d1, d2, a, addrB } = await buildLinkNet(shim(c));
      return { x: { a: a.ns, addr: addrB }, daemons: [d1, d2] };
    })],
    ['nebula', () => runAnchor(nebula, 1, {}, failures, log, [], async (x) => add(s, 'nebula', await pingSeries(x)))],
    ['wg', () => runAnchor(wireguardGo, 1, {}, failures, log, [], async (x) => add(s, 'wg', await pingSeries(x)))],
  ];
  for (let round = 0; round < rounds; round++) {
    for (const [p, fn] of paths) {
      log(`round ${round + 1}/${rounds}: ${p}`);
      await fn(round).catch((e: Error) => { failures.push(`${p} round ${round + 1}: ${e.message.split('\n')[0]}`); log(`${p} FAILED: ${e.stack}`); });
    }
  }
  for (const [p, v] of Object.entries(s)) {
    f[`${p}_rtt_p50_us`] = Math.round(quantile(v.all, 0.5));
    f[`${p}_rtt_p90_us`] = Math.round(quantile(v.all, 0.9));
    f[`${p}_rtt_mean_us`] = Math.round(v.all.reduce((a, b) => a + b, 0) / v.all.length);
  }
  for (const p of ['ours_vxlan', 'ours_link']) {
    for (const k of ['p50', 'mean']) {
      const base = f[`nebula_rtt_${k}_us`];
      f[`${p}_over_nebula_rtt_${k}`] = base && f[`${p}_rtt_${k}_us`] ? r2((f[`${p}_rtt_${k}_us`] as number) / base) : null;
    }
  }
  const roundMeans = Object.fromEntries(Object.entries(s).map(([p, v]) => [`${p}_round_means_us`, v.means.map(Math.round)]));
  if (!json) {
    console.log(`\n## latency: idle RTT, ${rounds} rounds of ${PINGS} pings 10 ms apart, paths taking turns (µs)`);
    console.log('| path | p50 | p90 | mean | mean per round | p50 / Nebula |');
    console.log('|---|---|---|---|---|---|');
    for (const p of Object.keys(s)) {
      console.log(`| ${p} | ${f[`${p}_rtt_p50_us`]} | ${f[`${p}_rtt_p90_us`]} | ${f[`${p}_rtt_mean_us`]} | ${roundMeans[`${p}_round_means_us`].join(', ')} | ${f[`${p}_over_nebula_rtt_p50`] ?? '-'} |`);
    }
    console.log(`ours idle afterwards (5 s, no traffic): vxlan daemons ${f.ours_vxlan_idle_cpu_pct_max ?? '-'} %, link daemons ${f.ours_link_idle_cpu_pct_max ?? '-'} % of a core (max)`);
    if (failures.length) console.log(`failures: ${failures.join('; ')}`);
  }
  return { ...f, ...roundMeans, rounds, pings: PINGS, failures };
}
