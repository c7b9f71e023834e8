// What an active capture costs the data plane: forwarding throughput with and without `appnet capture` taking
// every packet at snap length 128, measured in the same run on the same topology.
//
//   instance a --TAP--> appnetd h1 ==VXLAN (or encrypted link)==> appnetd h2 --TAP--> instance b
//
// Per path (a plain network and an encrypted one; --path= picks one), phases in turn, each an iperf3 TCP
// stream then a UDP 64 B flood (bench/path-measure.ts):
//   off1    no capture
//   on      `appnet capture --network N --snaplen 128 -w FILE` on BOTH hosts, as an operator runs it: no
//           filter (every packet of the network), the CLI's default points (vni_encap and vni_decap: each
//           packet once on each host), ring (4096 records) and poll interval (200 ms). Copies that do not
//           fit the ring are dropped and counted, never waited for.
//   keepup  the same with a ring of 65536 records drained every 100 ms: the reader writes nearly every
//           packet to its file, and competes with forwarding for the same 2 cores while doing so
//   all4    the defaults with all four points (port, vni_encap, vni_decap, wire): 3 copies per packet and host
//   off2    no capture again, so that drift over the run (other load) does not count as capture cost
// Cost = 1 - capture / mean(off1, off2) for TCP Gbit/s and UDP rx pkt/s; the target (<= 20% of TCP) is
// checked on `on`. Also printed per capture: copies the engines made and dropped, records in the files.
//
// `node --import tsx bench/run.ts capture [--json] [--duration=S] [--path=plain|encrypted]`: TCP S seconds
// (default 10), UDP min(S, 5).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildLinkNet, type LinkNet } from '../test/helpers/link-net.ts';
import { runIn } from '../test/helpers/run.ts';
import { startCliCapture } from '../test/helpers/api-in-ns.ts';
import { benchLog, benchSeconds, r2, shim, tcp, udp, type Figures, type Path } from './path-measure.ts';

const log = benchLog('capture');
const ALL_POINTS = ['port', 'vni_encap', 'vni_decap', 'wire'];
/** The capture phases: extra `appnet capture` arguments (none: the CLI's defaults) and a label. */
const CAPTURES: Record<string, { args: string[]; label: string }> = {
  on: { args: [], label: 'defaults (points vni_encap+vni_decap, ring 4096, poll 200 ms)' },
  keepup: { args: ['--ring', '65536', '--poll-ms', '100'], label: 'keep-up reader (ring 65536, poll 100 ms)' },
  all4: { args: ALL_POINTS.flatMap((p) => ['--point', p]), label: 'all 4 points, otherwise defaults' },
};
const PHASES = ['off1', 'on', 'keepup', 'all4', 'off2'];
const SNAPLEN = 128;
const PATHS = ['plain', 'encrypted'] as const;
type PathName = (typeof PATHS)[number];

function option(name: string): string | undefined {
  return process.argv.find((x) => x.startsWith(`--${name}=`))?.split('=')[1];
}

function selectedPaths(): PathName[] {
  const v = option('path');
  if (v === undefined) return [...PATHS];
  if (!(PATHS as readonly string[]).includes(v)) throw new Error(`capture bench: --path must be one of ${PATHS.join(', ')}, got '${v}'`);
  return [v as PathName];
}

interface CaptureTotals { written: number; captured: number; dropped: number; fileBytes: number }

/** Runs `step` while `appnet capture` takes every packet on both hosts; returns what the captures got. */
async function withCapture(x: LinkNet, args: string[], dir: string, tag: string, step: () => Promise<void>): Promise<CaptureTotals> {
  const files = [x.h1, x.h2].map((h) => path.join(dir, `${tag}-${h.name}.pcapng`));
  const caps = await Promise.all([x.h1, x.h2].map((h, i) => startCliCapture(x.net, h.ns, '--network', x.network.uuid,
    '--snaplen', String(SNAPLEN), ...args, '-w', files[i])));
  try {
    await step();
  } finally {
    for (const c of caps) c.stop();
  }
  const ends = await Promise.all(caps.map((c) => c.done));
  const t: CaptureTotals = { written: 0, captured: 0, dropped: 0, fileBytes: 0 };
  for (const [i, e] of ends.entries()) {
    // "appnet capture: N packets (M MB) written to FILE; the engine copied C, dropped D (ring full), filtered F"
    const m = /appnet capture: (\d+) packets[^;\n]*; the engine copied (\d+), dropped (\d+)/.exec(e.stderr);
    if (e.code !== 0 || !m) throw new Error(`appnet capture on h${i + 1} ended with ${e.code}: ${e.stderr.trim().split('\n').pop()}`);
    t.written += Number(m[1]);
    t.captured += Number(m[2]);
    t.dropped += Number(m[3]);
    t.fileBytes += statSync(files[i]).size;
  }
  return t;
}

async function measurePath(name: PathName, secs: number, f: Figures, fails: string[]): Promise<void> {
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
      log(`${name}: phase ${i + 1}/${PHASES.length}, ${p in CAPTURES ? `capture: ${CAPTURES[p].label}` : 'no capture'}`);
      try {
        if (!(p in CAPTURES)) {
          await phase(`${name}_${p}`);
        } else {
          const c = await withCapture(x, CAPTURES[p].args, dir, `${name}-${p}`, () => phase(`${name}_${p}`));
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
  const cell = (v: number | null | undefined, w = 10) => (v === undefined || v === null ? '-' : String(v)).padStart(w);
  const caps = Object.keys(CAPTURES);
  const lines = ['path'.padEnd(10) + 'metric'.padEnd(19) + 'off (1st)'.padStart(10) + caps.map((c) => c.padStart(10) + 'cost %'.padStart(8)).join('') + 'off (2nd)'.padStart(10)];
  for (const p of paths) {
    for (const [label, k] of [['TCP Gbit/s', 'tcp_gbps'], ['UDP 64 B rx pkt/s', 'udp64_rx_pps']]) {
      lines.push(p.padEnd(10) + label.padEnd(19) + cell(f[`${p}_off1_${k}`]) +
        caps.map((c) => cell(f[`${p}_${c}_${k}`]) + cell(f[`${p}_${c}_cost_pct_${k}`], 8)).join('') + cell(f[`${p}_off2_${k}`]));
    }
  }
  lines.push('', 'captures (both hosts together, over the TCP and UDP runs):');
  for (const p of paths) {
    for (const c of caps) {
      lines.push(`  ${p} ${c}, ${CAPTURES[c].label}: ${f[`${p}_${c}_copies_made`] ?? '-'} copies made by the engines, ` +
        `${f[`${p}_${c}_copies_dropped`] ?? '-'} dropped (ring full), ${f[`${p}_${c}_records_written`] ?? '-'} records written (${f[`${p}_${c}_file_mb`] ?? '-'} MB of pcapng)`);
    }
  }
  return lines.join('\n');
}

export async function run({ json }: { json?: boolean }): Promise<Record<string, unknown>> {
  const secs = benchSeconds('capture');
  const paths = selectedPaths();
  const f: Figures = {};
  const failures: string[] = [];
  for (const p of paths) {
    await measurePath(p, secs, f, failures).catch((e: Error) => { failures.push(`${p}: ${e.message.split('\n')[0]}`); log(`${p} FAILED: ${e.stack}`); });
  }
  const costs = paths.map((p) => f[`${p}_on_cost_pct_tcp_gbps`]).filter((v): v is number => typeof v === 'number');
  const worst = costs.length === paths.length ? Math.max(...costs) : null;
  const result = {
    ...f, tcp_seconds: secs, udp_seconds: Math.min(secs, 5), snaplen: SNAPLEN, captures: Object.fromEntries(Object.entries(CAPTURES).map(([k, v]) => [k, v.label])),
    worst_tcp_cost_pct: worst, target_cost_20pct_met: worst !== null && worst <= 20, failures,
    machine: { cpus: os.cpus().length, kernel: os.release() },
  };
  if (!json) {
    console.log(`Capture cost, ${os.cpus().length} CPUs, kernel ${os.release()}: every packet of the network captured on both hosts ` +
      `by \`appnet capture --network N --snaplen ${SNAPLEN} -w FILE\`; TCP ${secs} s, UDP ${Math.min(secs, 5)} s\n`);
    console.log(table(paths, f));
    console.log(`\ntarget: a capture of every packet (\`on\`, the CLI's defaults) costs <= 20% of TCP throughput: ` +
      `${result.target_cost_20pct_met ? 'met' : 'NOT met'} (worst ${worst ?? '-'}%)`);
    const keep = paths.map((p) => f[`${p}_keepup_cost_pct_tcp_gbps`]).filter((v): v is number => typeof v === 'number');
    if (keep.length) console.log(`a reader that keeps up (\`keepup\`) costs up to ${Math.max(...keep)}% of TCP throughput: it shares the same cores`);
    if (failures.length) console.log(`failures: ${failures.join('; ')}`);
  }
  return result;
}
