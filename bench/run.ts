import { BenchProgress } from './progress.ts';
import { saveResult } from './results.ts';
// `npm run bench [-- NAME [--json]]`: runs every benchmark, or the named one.
// Each benchmark module exports `run(opts) -> figures`; --json prints one JSON object per run.
const BENCHES: Record<string, string> = {
  encap: './encap.ts',
  vxlan: './vxlan.ts',
  controlplane: './controlplane.ts',
  link: './link.ts',
  'link-crypto': './link-crypto.ts',
  capture: './capture.ts',
  connections: './connections.ts',
  nat: './nat.ts',
  hops: './hops.ts',
  latency: './latency.ts',
  'etcd-reads': './etcd-reads.ts',
  dhcp: './dhcp.ts',
  soak: './soak.ts',
};

const args = process.argv.slice(2);
const json = args.includes('--json');
// Names are the bare words; options may be `--opt=value` or `--opt value`.
const names = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--') && !args[i - 1].includes('=') && args[i - 1] !== '--json'));
for (const n of names) {
  if (!BENCHES[n]) {
    process.stderr.write(`bench: unknown benchmark '${n}'; known: ${Object.keys(BENCHES).join(', ')}\n`);
    process.exit(2);
  }
}
// The soak runs only when named: it takes minutes to hours by design.
const selected = names.length ? names : Object.keys(BENCHES).filter((n) => n !== 'soak');
const results: Record<string, unknown> = {};
const plan = new BenchProgress(selected, (line) => process.stderr.write(`bench: ${line}\n`));
for (const name of selected) {
  plan.start(name);
  const mod = await import(BENCHES[name]);
  results[name] = await mod.run({ json });
  plan.done(name);
  // Each run's figures are kept with a plot of ours against the anchors (bench/README.md "Plots").
  const saved = saveResult(name, results[name] as Record<string, unknown>);
  process.stderr.write(`bench: ${name} figures in ${saved.json}, plot ${saved.svg}\n`);
}
if (json) process.stdout.write(JSON.stringify(selected.length === 1 ? results[selected[0]] : results) + '\n');
