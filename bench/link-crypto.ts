// Micro benchmark: sealing and opening link data messages (ChaCha20-Poly1305-IETF + 16-byte header).
// Native figures come from a loop inside the addon (linkCryptoLoop), so they are the per-packet cost
// the engine pays with no N-API call per packet; the TypeScript codec (dataplane/wire/link.ts, on
// sodium-native: one binding call and one allocation per message) is what a JS data plane would pay.
// Gbit/s counts plaintext bytes (the VXLAN datagram).
import os from 'node:os';
import { native } from '../dataplane/native.ts';
import { openData, sealData } from '../dataplane/wire/link.ts';

const SIZES = [64, 1400, 8950];
const OPS = ['seal', 'open'] as const;
type Op = (typeof OPS)[number];
/** Each measurement runs for about this long; the reported figure is the median of 3. */
const TARGET_NS = 250e6;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** ns per operation: calibrates an iteration count from a short run, then takes the median of 3. */
function measure(loop: (iterations: number) => number): number {
  const probe = 200;
  const perOp = loop(probe) / probe;
  const n = Math.max(probe, Math.min(5_000_000, Math.round(TARGET_NS / perOp)));
  return median([0, 1, 2].map(() => loop(n) / n));
}

function nativeLoop(op: Op, size: number): (n: number) => number {
  return (n) => native.linkCryptoLoop(op, size, n);
}

function tsLoop(op: Op, size: number): (n: number) => number {
  const key = new Uint8Array(32).fill(3);
  const pt = new Uint8Array(size).fill(0xa5);
  const msg = sealData(key, 1, 0n, pt);
  return (n) => {
    let sink = 0;
    const t0 = process.hrtime.bigint();
    if (op === 'seal') {
      for (let i = 0; i < n; i++) sink ^= sealData(key, 1, BigInt(i), pt)[16];
    } else {
      for (let i = 0; i < n; i++) { const r = openData(key, msg); sink ^= 'error' in r ? 1 : r.plaintext[0]; }
    }
    const ns = Number(process.hrtime.bigint() - t0);
    if (sink === -1) console.log(sink); // keep the results alive
    return ns;
  };
}

const r1 = (x: number): number => Math.round(x * 10) / 10;
const r2 = (x: number): number => Math.round(x * 100) / 100;

export async function run({ json }: { json?: boolean } = {}): Promise<Record<string, unknown>> {
  const figures: Record<string, number> = {};
  for (const size of SIZES) {
    for (const op of OPS) {
      for (const [impl, loop] of [['native', nativeLoop(op, size)], ['ts', tsLoop(op, size)]] as const) {
        const ns = measure(loop);
        figures[`${impl}_${op}_${size}_ns`] = r1(ns);
        figures[`${impl}_${op}_${size}_gbps`] = r2((size * 8) / ns);
      }
      figures[`native_over_ts_${op}_${size}`] = r1(figures[`ts_${op}_${size}_ns`] / figures[`native_${op}_${size}_ns`]);
    }
  }
  const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, kernel: os.release() };
  if (!json) {
    console.log(`link crypto (ChaCha20-Poly1305-IETF data messages), ${machine.cpus} CPUs, ${machine.cpuModel}\n`);
    const cell = (v: number | string, w = 12): string => String(v).padStart(w);
    console.log('op    size B' + cell('native ns') + cell('native Gb/s') + cell('ts ns') + cell('ts Gb/s') + cell('native/ts'));
    for (const size of SIZES) {
      for (const op of OPS) {
        console.log(op.padEnd(6) + String(size).padStart(6) +
          cell(figures[`native_${op}_${size}_ns`]) + cell(figures[`native_${op}_${size}_gbps`]) +
          cell(figures[`ts_${op}_${size}_ns`]) + cell(figures[`ts_${op}_${size}_gbps`]) +
          cell(`${figures[`native_over_ts_${op}_${size}`]}x`));
      }
    }
    console.log('\nnative: a loop inside the addon (no N-API call per packet), seal in place as the engine does;');
    console.log('ts: dataplane/wire/link.ts (sodium-native), one binding call and one allocation per message. Gb/s counts plaintext bytes.');
  }
  return { ...figures, machine };
}
