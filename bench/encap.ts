// Micro benchmark (benchmark.js): VXLAN encapsulation and decapsulation of a 1400-byte frame,
// native (one N-API call, so this includes the call overhead) against the TypeScript codec.
import Benchmark from 'benchmark';
import { native } from '../dataplane/native.ts';
import { vxlanDecap, vxlanEncap } from '../dataplane/wire/vxlan.ts';

function frame(len: number): Buffer {
  const f = Buffer.alloc(len);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(len - 14, 16);
  f[23] = 17;
  return f;
}

export async function run({ json }: { json: boolean }): Promise<Record<string, number>> {
  const f = frame(1400);
  const d = native.vxlanEncap(42, f);
  const figures: Record<string, number> = {};
  const suite = new Benchmark.Suite();
  let sink = 0;
  suite
    .add('encap native', () => { sink ^= native.vxlanEncap(42, f)[0]; })
    .add('encap ts', () => { sink ^= vxlanEncap(42, f)[0]; })
    .add('decap native', () => { sink ^= native.vxlanDecap(d).vni; })
    .add('decap ts', () => { const r = vxlanDecap(d); sink ^= r.ok ? r.vni : 0; })
    .on('cycle', (e: Benchmark.Event) => {
      const b = e.target as unknown as { name: string; hz: number };
      figures[`${b.name.replace(' ', '_')}_ops_per_s`] = Math.round(b.hz);
      if (!json) console.log(String(e.target));
    });
  await new Promise<void>((resolve) => suite.on('complete', () => resolve()).run({ async: true }));
  figures.encap_native_over_ts = +(figures.encap_native_ops_per_s / figures.encap_ts_ops_per_s).toFixed(2);
  figures.decap_native_over_ts = +(figures.decap_native_ops_per_s / figures.decap_ts_ops_per_s).toFixed(2);
  // The engine's own cost: the same C functions in a native loop, no N-API call per frame.
  const rounds = 2_000_000;
  native.codecLoop(42, f, 10_000);
  const ns = native.codecLoop(42, f, rounds);
  figures.native_inloop_encap_decap_hash_ns_per_frame = +(ns / rounds).toFixed(1);
  figures.native_inloop_over_ts_encap = +((1e9 / figures.encap_ts_ops_per_s) / (ns / rounds)).toFixed(1);
  if (!json) {
    console.log(`native in-loop encap+decap+flow hash: ${figures.native_inloop_encap_decap_hash_ns_per_frame} ns/frame ` +
      `(${figures.native_inloop_over_ts_encap}x faster than one TS encap alone)`);
    console.log(`encap native/ts: ${figures.encap_native_over_ts}x, decap native/ts: ${figures.decap_native_over_ts}x`);
    console.log('(native figures include one N-API call per frame; the engine makes none)');
  }
  void sink;
  return figures;
}
