// `node --import tsx bench/plot.ts bench/results/<name>-<stamp>.json [...]`: (re)writes the SVG next to each
// saved benchmark result (bench/plot-svg.ts).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { plotSvg } from './plot-svg.ts';

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: node --import tsx bench/plot.ts RESULT.json [...]\n');
  process.exit(2);
}
for (const file of files) {
  const saved = JSON.parse(readFileSync(file, 'utf8')) as { bench: string; date: string; result: Record<string, unknown> };
  if (!saved.bench || !saved.result) {
    process.stderr.write(`bench/plot: ${file} is not a saved result ({bench, date, result})\n`);
    process.exit(1);
  }
  const out = path.join(path.dirname(file), `${path.basename(file, '.json')}.svg`);
  writeFileSync(out, plotSvg(saved.result, { bench: saved.bench, date: saved.date }));
  process.stderr.write(`bench/plot: ${out}\n`);
}
