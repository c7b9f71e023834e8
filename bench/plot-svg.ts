// A benchmark's figures as an SVG bar chart: for each figure, ours against every anchor measured in the same
// run, with the machine and the date. Pure: the result object in, SVG text out (bench/run.ts writes it next to
// the JSON; bench/plot.ts re-plots a saved JSON).
//
// Figures are found in the result's flat keys, which name a system as one of their tokens (`ours_tcp_gbps`,
// `wg_tcp_gbps`, `encap_native_ops_per_s`); a figure with ours (ours, native, nat) and at least one anchor
// makes a group, ratios left out; each group has its own scale (units differ between figures). The control-plane benchmark's shape (results: [{store, routes}]) gives one group per
// route, the stores side by side.

export interface Bar { system: string; value: number }
export interface Figure { name: string; bars: Bar[] }

const ROW = 18;
const GAP = 14;
const LABEL_W = 190;
const BAR_W = 420;
const WIDTH = LABEL_W + BAR_W + 150;

/** Systems a benchmark names in its keys, longest first; OURS are appnet's side. */
const SYSTEMS = ['kernel_nooffload', 'kernel_offload', 'ours', 'native', 'ts', 'kernel', 'wg', 'nebula', 'tinc', 'plain2', 'plain', 'nat'];
const OURS = new Set(['ours', 'native', 'nat']);

function numeric(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** The figures of a result (see the file header); empty when it has none to compare. */
export function figuresOf(result: Record<string, unknown>): Figure[] {
  if (Array.isArray(result.results)) {
    type Stats = Record<string, { p50?: number; p99?: number }>;
    const runs = result.results as Array<{ store?: string; routes?: Stats; transport_floor?: Stats; store_put_floor?: { p99?: number } }>;
    const routes = [...new Set(runs.flatMap((r) => Object.keys(r.routes ?? {})))];
    // A route with a transport floor (its bytes from a bare server) has that anchor next to it.
    const out: Figure[] = routes.map((route) => ({
      name: `${route} p99 (ms)`,
      bars: [
        ...runs.filter((r) => numeric(r.routes?.[route]?.p99)).map((r) => ({ system: r.store ?? '?', value: r.routes![route]!.p99! })),
        ...runs.filter((r) => numeric(r.transport_floor?.[route]?.p99)).map((r) => ({ system: `${r.store} (same bytes, bare server)`, value: r.transport_floor![route]!.p99! })),
      ],
    }));
    const floor = runs.filter((r) => numeric(r.store_put_floor?.p99)).map((r) => ({ system: `${r.store} (store alone)`, value: r.store_put_floor!.p99! }));
    if (floor.length) out.push({ name: 'a 1 KiB put, 8 in flight, p99 (ms)', bars: floor });
    return out.filter((f) => f.bars.length > 0);
  }
  // Flat results: a key names a system as one of its `_`-separated tokens (`ours_tcp_gbps`, `wg_tcp_gbps`,
  // `encap_native_ops_per_s`, `nat_tcp_gbps`); the key without it names the figure.
  const groups = new Map<string, Bar[]>();
  for (const key of Object.keys(result)) {
    if (!numeric(result[key]) || /(^|_)(over|ratio)(_|$)/.test(key)) continue;
    const tokens = key.split('_');
    for (const system of SYSTEMS) {
      const parts = system.split('_');
      const at = tokens.findIndex((_t, n) => parts.every((p, m) => tokens[n + m] === p));
      if (at < 0) continue;
      const figure = [...tokens.slice(0, at), ...tokens.slice(at + parts.length)].join('_');
      if (figure === '') break;
      if (!groups.has(figure)) groups.set(figure, []);
      groups.get(figure)!.push({ system, value: result[key] as number });
      break;
    }
  }
  const out: Figure[] = [];
  for (const [name, bars] of groups) {
    if (bars.length < 2 || !bars.some((b) => OURS.has(b.system))) continue;
    bars.sort((a, b) => Number(OURS.has(b.system)) - Number(OURS.has(a.system)));
    out.push({ name, bars });
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
      const ours = OURS.has(b.system) || (!f.bars.some((x) => OURS.has(x.system)) && b === f.bars[0]);
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
    `<text x="10" y="22" class="title">npm run bench -- ${esc(meta.bench)}: ${figures.some((f) => f.bars.some((b) => OURS.has(b.system)))
      ? 'ours (blue) against the anchors of the same run' : 'each setup of the same run (the first in blue)'}</text>`,
    `<text x="10" y="40" class="sub">${esc(meta.date)}${machine ? ` · ${esc(machine)}` : ''}</text>`,
    ...parts,
    `<text x="10" y="${height - 8}" class="sub">Each figure has its own scale; units are in its name (gbps, ms, pps, ...).</text>`,
    '</svg>',
    '',
  ].join('\n');
}
