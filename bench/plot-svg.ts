// A benchmark's figures as an SVG bar chart: for each figure, ours against every anchor measured in the same
// run, with the machine and the date. Pure: the result object in, SVG text out (bench/run.ts writes it next to
// the JSON; bench/plot.ts re-plots a saved JSON).
//
// Figures are found in the result's flat keys, `<system>_<figure>`: every `ours_<figure>` (not `ours_over_*`,
// the ratios) with at least one other `<anchor>_<figure>` makes a group; each group has its own scale (units
// differ between figures). The control-plane benchmark's shape (results: [{store, routes}]) gives one group per
// route, the stores side by side.

export interface Bar { system: string; value: number }
export interface Figure { name: string; bars: Bar[] }

const ROW = 18;
const GAP = 14;
const LABEL_W = 190;
const BAR_W = 420;
const WIDTH = LABEL_W + BAR_W + 150;

function numeric(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** The figures of a result (see the file header); empty when it has none to compare. */
export function figuresOf(result: Record<string, unknown>): Figure[] {
  if (Array.isArray(result.results)) {
    const runs = result.results as Array<{ store?: string; routes?: Record<string, { p50?: number; p99?: number }>; store_put_floor?: { p99?: number } }>;
    const routes = [...new Set(runs.flatMap((r) => Object.keys(r.routes ?? {})))];
    const out: Figure[] = routes.map((route) => ({
      name: `${route} p99 (ms)`,
      bars: runs.filter((r) => numeric(r.routes?.[route]?.p99)).map((r) => ({ system: r.store ?? '?', value: r.routes![route]!.p99! })),
    }));
    const floor = runs.filter((r) => numeric(r.store_put_floor?.p99)).map((r) => ({ system: `${r.store} (store alone)`, value: r.store_put_floor!.p99! }));
    if (floor.length) out.push({ name: 'a 1 KiB put, 8 in flight, p99 (ms)', bars: floor });
    return out.filter((f) => f.bars.length > 0);
  }
  const keys = Object.keys(result).filter((k) => numeric(result[k]));
  const out: Figure[] = [];
  for (const k of keys) {
    if (!k.startsWith('ours_') || k.startsWith('ours_over_')) continue;
    const figure = k.slice('ours_'.length);
    const anchors = keys.filter((a) => a !== k && a.endsWith(`_${figure}`) && !a.startsWith('ours_'))
      .map((a) => ({ system: a.slice(0, -figure.length - 1), value: result[a] as number }));
    if (anchors.length === 0) continue;
    out.push({ name: figure, bars: [{ system: 'ours', value: result[k] as number }, ...anchors] });
  }
  return out;
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
const fmt = (v: number) => (Math.abs(v) >= 100 ? String(Math.round(v)) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2));

export interface PlotMeta {
  bench: string;
  date: string;
  machine?: { cpus?: number; cpuModel?: string; kernel?: string };
}

export function plotSvg(result: Record<string, unknown>, meta: PlotMeta): string {
  const figures = figuresOf(result);
  const m = meta.machine ?? (result.machine as PlotMeta['machine']) ?? {};
  const machine = [m.cpuModel, m.cpus ? `${m.cpus} CPUs` : undefined, m.kernel ? `kernel ${m.kernel}` : undefined].filter(Boolean).join(', ');
  const parts: string[] = [];
  let y = 58;
  for (const f of figures) {
    parts.push(`<text x="10" y="${y + 12}" class="fig">${esc(f.name)}</text>`);
    y += ROW;
    const max = Math.max(...f.bars.map((b) => Math.abs(b.value)), 1e-9);
    for (const b of f.bars) {
      const w = Math.max(1, Math.round((Math.abs(b.value) / max) * BAR_W));
      parts.push(`<text x="${LABEL_W - 8}" y="${y + 13}" class="sys" text-anchor="end">${esc(b.system)}</text>`);
      const ours = b.system === 'ours' || (!f.bars.some((x) => x.system === 'ours') && b === f.bars[0]);
      parts.push(`<rect x="${LABEL_W}" y="${y + 2}" width="${w}" height="${ROW - 4}" class="${ours ? 'ours' : 'anchor'}"/>`);
      parts.push(`<text x="${LABEL_W + w + 6}" y="${y + 13}" class="val">${esc(fmt(b.value))}</text>`);
      y += ROW;
    }
    y += GAP;
  }
  if (figures.length === 0) {
    parts.push(`<text x="10" y="${y + 12}" class="sys">no figure with an anchor to compare in this result</text>`);
    y += ROW + GAP;
  }
  const height = y + 24;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif">`,
    '<style>.title{font-size:15px;font-weight:bold}.sub{font-size:11px;fill:#555}.fig{font-size:12px;font-weight:bold}' +
      '.sys,.val{font-size:11px}.ours{fill:#1565c0}.anchor{fill:#9e9e9e}</style>',
    `<rect width="${WIDTH}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="22" class="title">npm run bench -- ${esc(meta.bench)}: ${figures.some((f) => f.bars.some((b) => b.system === 'ours'))
      ? 'ours (blue) against the anchors of the same run' : 'each setup of the same run (the first in blue)'}</text>`,
    `<text x="10" y="40" class="sub">${esc(meta.date)}${machine ? ` · ${esc(machine)}` : ''}</text>`,
    ...parts,
    `<text x="10" y="${height - 8}" class="sub">Each figure has its own scale; units are in its name (gbps, ms, pps, ...).</text>`,
    '</svg>',
    '',
  ].join('\n');
}
