// Saved benchmark results: bench/results/<name>-<UTC stamp>.json ({bench, date, result}) with its SVG plot
// next to it, and bench/results/latest/<name>.{json,svg}, the copies README links.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { plotSvg } from './plot-svg.ts';

export const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));

export function saveResult(bench: string, result: Record<string, unknown>, now = new Date()): { json: string; svg: string } {
  const date = now.toISOString().replace(/\.\d+Z$/, 'Z');
  const stamp = date.replace(/[-:]/g, '').replace('T', '-').slice(0, 13);
  mkdirSync(path.join(RESULTS_DIR, 'latest'), { recursive: true });
  const json = path.join(RESULTS_DIR, `${bench}-${stamp}.json`);
  const svg = path.join(RESULTS_DIR, `${bench}-${stamp}.svg`);
  writeFileSync(json, JSON.stringify({ bench, date, result }, null, 2) + '\n');
  writeFileSync(svg, plotSvg(result, { bench, date }));
  copyFileSync(json, path.join(RESULTS_DIR, 'latest', `${bench}.json`));
  copyFileSync(svg, path.join(RESULTS_DIR, 'latest', `${bench}.svg`));
  return { json, svg };
}
