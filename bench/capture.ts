// What an active capture costs the data plane: forwarding throughput with and without `appnet capture` taking
// every packet at snap length 128, measured in the same run on the same topology.
//
//   instance a --TAP--> appnetd h1 ==VXLAN (or encrypted link)==> appnetd h2 --TAP--> instance b
//
// Per path (a plain network and an encrypted one; --path= picks one), four phases in turn:
//   off    -> iperf3 one TCP stream, then a UDP 64 B flood (bench/path-measure.ts)
//   on     -> the same, while `appnet capture --network N --snaplen 128 -w FILE` runs on BOTH hosts, as an
//             operator would run it: no filter, so every packet of the network, at the CLI's default points
//             (vni_encap and vni_decap: each packet once on the sending host and once on the receiving one),
//             the engine's ring drained into a pcap file
//   all4   -> the same with all four points (port, vni_encap, vni_decap, wire): each packet copied 3 times per
//             host, the most a capture can ask for
//   off    -> the same again, so that drift over the run (other load) does not count as capture cost
// Cost = 1 - on / mean(off, off) for TCP Gbit/s and UDP rx pkt/s; the target applies to `on`. Also printed:
// copies the engines made and dropped (ring full: the capture never slows forwarding, it loses copies
// instead), records in the files.
//
// `node --import tsx bench/run.ts capture [--json] [--duration=S] [--ring=N] [--path=plain|encrypted]`:
// TCP S seconds (default 10), UDP min(S, 5); ring = records the engine holds between polls (default 65536).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildLinkNet, type LinkNet } from '../test/helpers/link-net.ts';
import { runIn } from '../test/helpers/run.ts';
import { startCliCapture } from '../test/helpers/api-in-ns.ts';
import { benchLog, benchSeconds, r2, shim, tcp, udp, type Figures, type Path } from './path-measure.ts';

const log = benchLog('capture');
const ALL_POINTS = ['port', 'vni_encap', 'vni_decap', 'wire'];
/** Capture phases: the CLI's default points (none given) and all four. */
const CAPTURES: Record<string, string[]> = { on: [], all4: ALL_POINTS };
const PHASES = ['off1', 'on', 'all4', 'off2'];
const SNAPLEN = 128;
const PATHS = ['plain', 'encrypted'] as const;
type PathName = (typeof PATHS)[number];

function option(name: string): string | undefined {
  return process.argv.find((x) => x.startsWith(`--${name}=`))?.split('=')[1];
}

function ringSize(): number {
  const v = Number(option('ring') ?? 65536);
  if (!Number.isInteger(v) || v < 1 || v > 1_000_000) throw new Error(`capture bench: --ring must be an integer 1..1000000, got '${option('ring')}'`);
  return v;
}

function selectedPaths(): PathName[] {
  const v = option('path');
  if (v === undefined) return [...PATHS];
  if (!(PATHS as readonly string[]).includes(v)) throw new Error(`capture bench: --path must be one of ${PATHS.join(', ')}, got '${v}'`);
  return [v as PathName];
}

interface CaptureTotals { written: number; captured: number; dropped: number; fileBytes: number }

/** Runs `step` while `appnet capture` takes every packet on both hosts; returns what the captures got. */
async function withCapture(x: LinkNet, points: string[], ring: number, dir: string, tag: string, step: () => Promise<void>): Promise<CaptureTotals> {
  const files = [x.h1, x.h2].map((h) => path.join(dir, `${tag}-${h.name}.pcap`));
  const caps = await Promise.all([x.h1, x.h2].map((h, i) => startCliCapture(x.net, h.ns, '--network', x.network.uuid,
    ...points.flatMap((p) => ['--point', p]), '--snaplen', String(SNAPLEN), '--ring', String(ring), '--poll-ms', '100', '-w', files[i])));
  try {
    await step();
  } finally {
    for (const c of caps) c.stop();
  }
  const ends = await Promise.all(caps.map((c) => c.done));
  const t: CaptureTotals = { written: 0, captured: 0, dropped: 0, fileBytes: 0 };
  for (const [i, e] of ends.entries()) {
    // "appnet capture: N packets; the engine copied C, dropped D (ring full), filtered F"
    const m = /appnet capture: (\d+) packets; the engine copied (\d+), dropped (\d+)/.exec(e.stderr);
    if (e.code !== 0 || !m) throw new Error(`appnet capture on h${i + 1} ended with ${e.code}: ${e.stderr.trim().split('\n').pop()}`);
    t.written += Number(m[1]);
    t.captured += Number(m[2]);
    t.dropped += Number(m[3]);
    t.fileBytes += statSync(files[i]).size;
  }
  return t;
}

async function measurePath(name: PathName, secs: number, ring: number, f: Figures, fails: string[]): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  const t = shim(cleanups);
  try {
    log(`${name}: building 2 hosts, one ${name} network, one TAP instance each`);
    const x = await buildLinkNet(t, { encrypt: name === 'encrypted' });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-capbench-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const devs = JSON.parse((await runIn(x.a.ns, 'ip', ['-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>;
    const tap = devs.find((d) => d.ifname !== 'lo')!.ifname;
    const phase = async (p: string): Promise<void> => {
      const px: Path = { net: x.net, a: x.a.ns, b: x.b.ns, addr: x.addrB, p, aDev: tap, hostB: x.h2.ns };
      await tcp(px, secs, f);
      await udp(px, 64, Math.min(secs, 5), f);
    };
    await runIn(x.a.ns, 'ping', ['-n', '-q', '-c', '3', '-i', '0.2', x.addrB]); // warm-up: ARP, FDB, link session
    for (const [i, p] of PHASES.entries()) {
      log(`${name}: phase ${i + 1}/${PHASES.length}, ${p in CAPTURES ? `capture at ${CAPTURES[p].join(',') || 'the default points'}` : 'no capture'}`);
      try {
        if (!(p in CAPTURES)) {
          await phase(`${name}_${p}`);
        } else {
          const c = await withCapture(x, CAPTURES[p], ring, dir, `${name}-${p}`, () => phase(`${name}_${p}`));
          f[`${name}_${p}_records_written`] = c.written;
          f[`${name}_${p}_copies_made`] = c.captured;
          f[`${name}_${p}_copies_dropped`] = c.dropped;
          f[`${name}_${p}_file_mb`] = r2(c.fileBytes / 2 ** 20);
        }
      } catch (e) {
        log(`${name} ${p} FAILED: ${(e as Error).message}`);
        fails.push(`${name} ${p}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    for (const k of ['tcp_gbps', 'udp64_rx_pps']) {
      const offs = [f[`${name}_off1_${k}`], f[`${name}_off2_${k}`]].filter((v): v is number => typeof v === 'number');
      const off = offs.length ? offs.reduce((s, v) => s + v, 0) / offs.length : null;
      f[`${name}_off_${k}`] = off === null ? null : r2(off);
      for (const c of Object.keys(CAPTURES)) {
        const on = f[`${name}_${c}_${k}`];
        f[`${name}_${c}_cost_pct_${k}`] = off && typeof on === 'number' ? r2(100 * (1 - on / off)) : null;
      }
    }
  } catch (e) {
    t.passed = false;
    throw e;
  } finally {
    for (const fn of cleanups.reverse()) await fn();
  }
}

function table(paths: PathName[], f: Figures): string {
  const cell = (v: number | null | undefined, w = 11) => (v === undefined || v === null ? '-' : String(v)).padStart(w);
  const lines = ['path'.padEnd(10) + 'metric'.padEnd(19) + 'off (1st)'.padStart(11) + 'capture'.padStart(11) + 'cost %'.padStart(11) +
    'all 4 pts'.padStart(11) + 'cost %'.padStart(11) + 'off (2nd)'.padStart(11)];
  for (const p of paths) {
    for (const [label, k] of [['TCP Gbit/s', 'tcp_gbps'], ['UDP 64 B rx pkt/s', 'udp64_rx_pps']]) {
      lines.push(p.padEnd(10) + label.padEnd(19) + cell(f[`${p}_off1_${k}`]) + cell(f[`${p}_on_${k}`]) + cell(f[`${p}_on_cost_pct_${k}`]) +
        cell(f[`${p}_all4_${k}`]) + cell(f[`${p}_all4_cost_pct_${k}`]) + cell(f[`${p}_off2_${k}`]));
    }
    for (const c of Object.keys(CAPTURES)) {
      lines.push(`${' '.repeat(10)}${c === 'on' ? 'capture (default points)' : 'capture (all 4 points)'}: ${f[`${p}_${c}_copies_made`] ?? '-'} copies made by the engines, ` +
        `${f[`${p}_${c}_copies_dropped`] ?? '-'} dropped (ring full), ${f[`${p}_${c}_records_written`] ?? '-'} records written (${f[`${p}_${c}_file_mb`] ?? '-'} MB of pcap)`);
    }
  }
  return lines.join('\n');
}

export async function run({ json }: { json?: boolean }): Promise<Record<string, unknown>> {
  const secs = benchSeconds('capture');
  const ring = ringSize();
  const paths = selectedPaths();
  const f: Figures = {};
  const failures: string[] = [];
  for (const p of paths) {
    await measurePath(p, secs, ring, f, failures).catch((e: Error) => { failures.push(`${p}: ${e.message.split('\n')[0]}`); log(`${p} FAILED: ${e.stack}`); });
  }
  const costs = paths.map((p) => f[`${p}_on_cost_pct_tcp_gbps`]).filter((v): v is number => typeof v === 'number');
  const worst = costs.length === paths.length ? Math.max(...costs) : null;
  const result = {
    ...f, tcp_seconds: secs, udp_seconds: Math.min(secs, 5), snaplen: SNAPLEN, ring, points: { on: 'vni_encap,vni_decap (the CLI default)', all4: ALL_POINTS.join(',') },
    worst_tcp_cost_pct: worst, target_cost_20pct_met: worst !== null && worst <= 20, failures,
    machine: { cpus: os.cpus().length, kernel: os.release() },
  };
  if (!json) {
    console.log(`Capture cost, ${os.cpus().length} CPUs, kernel ${os.release()}: every packet of the network captured on both hosts ` +
      `by \`appnet capture --network N --snaplen ${SNAPLEN} -w FILE\` (ring ${ring}); TCP ${secs} s, UDP ${Math.min(secs, 5)} s\n`);
    console.log(table(paths, f));
    console.log(`\ntarget: a capture of every packet (default points) costs <= 20% of TCP throughput: ${result.target_cost_20pct_met ? 'met' : 'NOT met'} (worst ${worst ?? '-'}%)`);
    if (failures.length) console.log(`failures: ${failures.join('; ')}`);
  }
  return result;
}
