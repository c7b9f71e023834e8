// The benchmark plots (bench/plot-svg.ts) on fixture results of both shapes, read back as XML, and the
// benchmark progress estimate (bench/progress.ts) on a fake clock.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { figuresOf, plotSvg } from '../bench/plot-svg.ts';
import { BenchProgress } from '../bench/progress.ts';

const LINK = {
  ours_tcp_gbps: 3.1, wg_tcp_gbps: 0.9, nebula_tcp_gbps: 0.5, tinc_tcp_gbps: 0.3,
  ours_udp_pps: 410000, wg_udp_pps: 150000,
  ours_over_wg_tcp_gbps: 3.44, ours_rss_mb_max: 88, target_tcp_3x_wg_met: true,
  machine: { cpus: 2, cpuModel: 'Test CPU @ 2GHz', kernel: '6.18.0' },
};
const CONTROLPLANE = {
  results: [
    { store: 'sqlite', routes: { 'POST /networks': { p50: 9, p99: 30 }, 'GET /hosts': { p50: 1, p99: 3 } }, store_put_floor: { p50: 1, p99: 2 } },
    { store: 'etcd', routes: { 'POST /networks': { p50: 30, p99: 80 }, 'GET /hosts': { p50: 8, p99: 20 } }, store_put_floor: { p50: 9, p99: 25 } },
  ],
  machine: { cpus: 2 },
};

/** Elements by name in the SVG as Debian's Python parses it (a parse error fails the test). */
function parse(svg: string): { rects: number; texts: string[] } {
  const py = 'import sys, json, xml.dom.minidom as m\nd = m.parseString(sys.stdin.read())\n' +
    'print(json.dumps({"rects": len(d.getElementsByTagName("rect")), "texts": [t.firstChild.data for t in d.getElementsByTagName("text") if t.firstChild]}))';
  const r = spawnSync('/usr/bin/python3', ['-c', py], { input: svg, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`not XML: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

test('flat results: one group per figure with an anchor, ours first, ratios and ours-only figures left out', (t) => {
  t.deepEqual(figuresOf(LINK), [
    { name: 'tcp_gbps', bars: [{ system: 'ours', value: 3.1 }, { system: 'wg', value: 0.9 }, { system: 'nebula', value: 0.5 }, { system: 'tinc', value: 0.3 }] },
    { name: 'udp_pps', bars: [{ system: 'ours', value: 410000 }, { system: 'wg', value: 150000 }] },
  ]);
  const svg = plotSvg(LINK, { bench: 'link', date: '2026-12-05T04:30:00Z' });
  const doc = parse(svg);
  t.is(doc.rects, 1 + 6, 'the background and one bar per (figure, system)');
  for (const want of ['tcp_gbps', 'udp_pps', 'ours', 'wg', 'nebula', 'tinc', '3.10', '410000']) t.true(doc.texts.includes(want), want);
  t.true(doc.texts.some((s) => s.includes('2026-12-05T04:30:00Z') && s.includes('Test CPU @ 2GHz') && s.includes('2 CPUs')), 'machine and date');
  t.false(/NaN|undefined|Infinity/.test(svg));
});

test('keys that name the system inside (native/ts, plain/nat) group the same way, ours first', (t) => {
  t.deepEqual(figuresOf({ encap_native_ops_per_s: 3, encap_ts_ops_per_s: 5, encap_native_over_ts: 0.6 }), [
    { name: 'encap_ops_per_s', bars: [{ system: 'native', value: 3 }, { system: 'ts', value: 5 }] },
  ]);
  t.deepEqual(figuresOf({ plain_tcp_gbps: 1.04, nat_tcp_gbps: 1.03, plain2_tcp_gbps: 1.02, ratio: 1.01 }), [
    { name: 'tcp_gbps', bars: [{ system: 'nat', value: 1.03 }, { system: 'plain', value: 1.04 }, { system: 'plain2', value: 1.02 }] },
  ]);
});

test('control-plane results: one group per route, the stores side by side, and the store-alone floor', (t) => {
  const figures = figuresOf(CONTROLPLANE);
  t.deepEqual(figures.map((f) => f.name), ['POST /networks p99 (ms)', 'GET /hosts p99 (ms)', 'a 1 KiB put, 8 in flight, p99 (ms)']);
  t.deepEqual(figures[0]!.bars, [{ system: 'sqlite', value: 30 }, { system: 'etcd', value: 80 }]);
  const doc = parse(plotSvg(CONTROLPLANE, { bench: 'controlplane', date: '2026-12-05' }));
  t.is(doc.rects, 1 + 6);
  t.true(doc.texts.includes('etcd (store alone)'));
});

test('controlplane: a route with a transport floor has it next to the route, per store', (t) => {
  const withFloor = {
    results: [
      { store: 'sqlite', routes: { 'GET /instances': { p99: 27 } }, transport_floor: { 'GET /instances': { p99: 43 } } },
      { store: 'etcd', routes: { 'GET /instances': { p99: 54 } }, transport_floor: { 'GET /instances': { p99: 39 } } },
    ],
  };
  t.deepEqual(figuresOf(withFloor), [{
    name: 'GET /instances p99 (ms)',
    bars: [
      { system: 'sqlite', value: 27 }, { system: 'etcd', value: 54 },
      { system: 'sqlite (same bytes, bare server)', value: 43 }, { system: 'etcd (same bytes, bare server)', value: 39 },
    ],
  }]);
});

test('a result with nothing to compare still makes a valid SVG that says so', (t) => {
  const doc = parse(plotSvg({ ms: 12, failed: [] }, { bench: 'dhcp', date: '2026-12-05' }));
  t.is(doc.rects, 1);
  t.true(doc.texts.some((s) => /no figure with an anchor/.test(s)));
});

test('progress: the step and the time left, scaled by the pace of the finished steps', (t) => {
  let now = 0;
  const lines: string[] = [];
  const p = new BenchProgress(['encap', 'vxlan', 'nat'], (l) => lines.push(l), () => now);
  p.start('encap');
  now += 2 * 60_000; // encap usually takes 1 min: twice as slow
  p.done('encap');
  p.start('vxlan');
  t.deepEqual(lines, [
    '[1/3] encap (about 7 min left in all)',
    'encap done in 2 min; about 12 min left', // (4 + 2) usual minutes at twice the pace
    '[2/3] vxlan (about 12 min left in all)',
  ]);
});
