// Builds and runs the libFuzzer targets (fuzz/README.md). Each run fuzzes from the checked-in seed corpus and the
// regression inputs (every crash ever found, fuzz/regressions/<target>/) into a scratch corpus; a crash leaves its
// input in the scratch directory, named in the result, to be added to fuzz/regressions/ with its fix.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const FUZZ_DIR = path.dirname(fileURLToPath(import.meta.url));

export interface FuzzResult {
  target: string;
  execs: number;
  coverage: number;
  features: number;
  corpus: number;
  peakRssMb: number;
  crashes: string[];
  seconds: number;
}

export function targets(): string[] {
  return readdirSync(path.join(FUZZ_DIR, 'targets')).filter((f) => f.endsWith('.cc')).map((f) => f.slice(0, -3)).sort();
}

/** Builds every target (make is incremental); throws with the compiler's output on failure. */
export function build(): void {
  const r = spawnSync('make', ['-s', '-C', FUZZ_DIR, `-j${Math.max(1, os.cpus().length)}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`fuzz: build failed\n${r.stdout}${r.stderr}`);
}

/** The last value of `key` in libFuzzer's output ("cov: 123", "stat::number_of_executed_units: 456"). */
export function lastNumber(log: string, key: string): number {
  const re = new RegExp(`${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:?\\s+(\\d+)`, 'g');
  let v = 0;
  for (const m of log.matchAll(re)) v = Number(m[1]);
  return v;
}

/**
 * Runs one target for `seconds` (or exactly `runs` inputs). `save`: new inputs that add coverage are merged into
 * the checked-in corpus afterwards.
 */
export async function runTarget(target: string, opts: { seconds?: number; runs?: number; save?: boolean }): Promise<FuzzResult> {
  const bin = path.join(FUZZ_DIR, 'build', target);
  if (!existsSync(bin)) throw new Error(`fuzz: no target ${target} (have: ${targets().join(', ')})`);
  const scratch = mkdtempSync(path.join(os.tmpdir(), `appnet-fuzz-${target}-`));
  const work = path.join(scratch, 'corpus');
  mkdirSync(work);
  const seeds = path.join(FUZZ_DIR, 'corpus', target);
  const regressions = path.join(FUZZ_DIR, 'regressions', target);
  const dirs = [work, ...[seeds, regressions].filter((d) => existsSync(d))];
  const args = [
    '-print_final_stats=1', `-artifact_prefix=${scratch}/`, '-max_len=70000', '-timeout=10', '-rss_limit_mb=2048',
    opts.runs !== undefined ? `-runs=${opts.runs}` : `-max_total_time=${opts.seconds ?? 60}`,
    ...dirs,
  ];
  const started = Date.now();
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (c: Buffer) => { log = (log + c.toString()).slice(-200_000); });
  const code: number = await new Promise((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  const crashes = readdirSync(scratch).filter((f) => /^(crash|leak|timeout|oom)-/.test(f)).map((f) => path.join(scratch, f));
  if (code !== 0 && crashes.length === 0) crashes.push(`${target} exited ${code}: ${log.split('\n').filter((l) => /ERROR|SUMMARY/.test(l)).join(' | ') || log.slice(-500)}`);
  if (opts.save && existsSync(seeds)) spawnSync(bin, ['-merge=1', seeds, work], { stdio: 'ignore' });
  const result: FuzzResult = {
    target,
    execs: lastNumber(log, 'stat::number_of_executed_units'),
    coverage: lastNumber(log, 'cov'),
    features: lastNumber(log, 'ft'),
    corpus: lastNumber(log, 'corp'),
    peakRssMb: lastNumber(log, 'stat::peak_rss_mb'),
    crashes,
    seconds: (Date.now() - started) / 1000,
  };
  if (crashes.length === 0) rmSync(scratch, { recursive: true, force: true });
  return result;
}
