// npm run fuzz [-- NAME...] [-- --save]: every target (or the named ones) for FUZZ_SECONDS each (default 60), or
// for FUZZ_RUNS inputs each; one line per target, then `fuzz: N targets, E execs, C crashes`. Exits 1 on a crash.
import { build, runTarget, targets, type FuzzResult } from './runner.ts';

const args = process.argv.slice(2);
const save = args.includes('--save');
const names = args.filter((a) => !a.startsWith('--'));
const all = targets();
const unknown = names.filter((n) => !all.includes(n));
if (unknown.length > 0) {
  console.error(`fuzz: no target ${unknown.join(', ')} (have: ${all.join(', ')})`);
  process.exit(2);
}
const seconds = Number(process.env.FUZZ_SECONDS ?? 60);
const runs = process.env.FUZZ_RUNS === undefined ? undefined : Number(process.env.FUZZ_RUNS);
if (!(seconds > 0) || (runs !== undefined && !(runs > 0))) {
  console.error('fuzz: FUZZ_SECONDS and FUZZ_RUNS must be positive numbers');
  process.exit(2);
}
build();
const results: FuzzResult[] = [];
for (const t of names.length > 0 ? names : all) {
  const r = await runTarget(t, { seconds, runs, save });
  results.push(r);
  const rate = r.seconds > 0 ? Math.round(r.execs / r.seconds) : 0;
  console.log(`fuzz: ${t}: ${r.execs.toLocaleString('en')} execs in ${r.seconds.toFixed(0)} s (${rate.toLocaleString('en')}/s), cov ${r.coverage}, ft ${r.features}, corpus ${r.corpus}, peak RSS ${r.peakRssMb} MB, ${r.crashes.length} crashes`);
  for (const c of r.crashes) console.log(`fuzz: ${t}: crash: ${c}`);
}
const execs = results.reduce((s, r) => s + r.execs, 0);
const crashes = results.reduce((s, r) => s + r.crashes.length, 0);
console.log(`fuzz: ${results.length} targets, ${execs} execs, ${crashes} crashes`);
process.exit(crashes > 0 ? 1 : 0);
