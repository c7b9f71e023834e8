// Records real traffic on real daemons and turns it into the checked-in seed corpora (fuzz/corpus/<target>/):
// a plain VXLAN overlay with offloads (ARP, ping, a TCP transfer with TSO super-frames, seen on an instance's TAP
// and on the underlay) and an encrypted link (handshake and data messages on the underlay).
//   node --import tsx fuzz/record-seeds.ts        (root: it makes network namespaces)
import type { ExecutionContext } from 'ava';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildOverlay } from '../test/helpers/overlay.ts';
import { buildLinkNet } from '../test/helpers/link-net.ts';
import { FUZZ_DIR } from './runner.ts';
import { distinct, seedsFromCapture, type Seeds } from './seeds.ts';

const cleanups: Array<() => unknown> = [];
const ctx = { teardown: (fn: () => unknown) => cleanups.push(fn), passed: true } as unknown as ExecutionContext;
const seeds: Seeds = new Map();

try {
  {
    const { net, instances: [a, b] } = await buildOverlay(ctx, { hosts: 2, offloads: {} });
    const wire = await net.capture(b.host.ns, 'ul0');
    const tap = await net.capture(a.inst.ns, 'tap42');
    await net.ping(a.inst.ns, b.addr, { count: 5, interval: 0.05 });
    await net.ping(a.inst.ns, b.addr, { count: 2, size: 1400 });
    await net.tcpTransfer(a.inst.ns, b.inst.ns, b.addr, 300_000);
    seedsFromCapture(readFileSync(await wire.stop()), 'underlay', seeds);
    seedsFromCapture(readFileSync(await tap.stop()), 'instance', seeds);
  }
  {
    const l = await buildLinkNet(ctx, {});
    const wire = await l.net.capture(l.h2.ns, 'ul0');
    await l.net.ping(l.a.ns, l.addrB, { count: 5, interval: 0.05 });
    seedsFromCapture(readFileSync(await wire.stop()), 'underlay', seeds);
  }
} finally {
  for (const fn of cleanups.reverse()) await fn();
}

for (const [target, files] of distinct(seeds, 200)) {
  const dir = path.join(FUZZ_DIR, 'corpus', target);
  mkdirSync(dir, { recursive: true });
  for (const [name, b] of files) writeFileSync(path.join(dir, name), b);
  console.log(`seeds: ${target}: ${files.size}`);
}
