// What each kind of read a watch's progress check can make costs etcd at the control-plane bench's size:
// a three-member cluster (Debian etcd-server, members in their own namespaces, data on the disk), the keys of
// 1,000 networks, 2,000 instances and 10,000 interfaces (600 B values), 8 requests in flight from this process.
//
//   get          one key: the floor of any round trip
//   put          one 1 KiB put: the floor of any write
//   marks        a txn of 9 one-key reads: a state view's check by change marks (control/store/change-marks.ts)
//   counts       a txn counting each of 6 prefixes: what a check without marks read first every round
//   scan         the keys of 10,000 interfaces changed since a revision (min_mod_revision): what a check
//                without marks read after any write; etcd reads every value under the prefix to filter
//
// Keys: `<read>_p50_ms`, `<read>_p99_ms`, and `scan_over_marks` (p50 / p50). Two rounds, the figures of the
// second (the first warms the members' caches).
//
// `node --import tsx bench/run.ts etcd-reads [--json]`: root (namespaces). Traffic stays on the cluster's
// own segment, reached from this process by a veth of its own.
import type { Etcd3 } from 'etcd3';
import { EtcdCluster } from '../test/helpers/etcd-cluster.ts';
import { rangeEnd } from '../control/store/etcd-watch.ts';
import { markOf } from '../control/store/change-marks.ts';
import { benchLog, r2 } from './path-measure.ts';

const log = benchLog('etcd-reads');
const PREFIXES: Array<[string, number]> = [
  ['/appnet/networks/', 1000], ['/appnet/instances/', 2000], ['/appnet/interfaces/', 10000],
  ['/appnet/ipam/', 1000], ['/appnet/attachments/', 1000], ['/appnet/hosts/', 10],
];
const VALUE = Buffer.from('x'.repeat(600));
const IN_FLIGHT = 8;

async function timed(n: number, call: (i: number) => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  const ms: number[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < n) {
      const i = next++;
      const t0 = performance.now();
      await call(i);
      ms.push(performance.now() - t0);
    }
  }));
  ms.sort((a, b) => a - b);
  return { p50: r2(ms[Math.floor(n / 2)]), p99: r2(ms[Math.ceil(n * 0.99) - 1]) };
}

async function fill(client: Etcd3): Promise<void> {
  for (const [prefix, n] of PREFIXES) {
    for (let i = 0; i < n; i += 100) {
      const puts = Array.from({ length: Math.min(100, n - i) }, (_, j) => ({ request_put: { key: Buffer.from(prefix + String(i + j).padStart(6, '0')), value: VALUE } }));
      await client.kv.txn({ compare: [], success: puts, failure: [] });
    }
  }
}

export async function run(_opts: { json: boolean }): Promise<Record<string, unknown>> {
  const { Etcd3: Client } = await import('etcd3');
  const cluster = await EtcdCluster.start(undefined, { members: 3, rootAccess: true });
  const figures: Record<string, unknown> = { members: 3, in_flight: IN_FLIGHT, keys: Object.fromEntries(PREFIXES) };
  try {
    const client = new Client({ hosts: cluster.members.map((m) => `http://${m.rootIp ?? m.ip}:2379`) });
    try {
      log('filling the cluster with 15,010 keys');
      await fill(client);
      const range = (prefix: string) => ({ key: Buffer.from(prefix), range_end: rangeEnd(prefix) });
      const reads: Array<[string, number, (i: number) => Promise<unknown>]> = [
        ['get', 400, (i) => client.kv.range({ key: Buffer.from(`/appnet/interfaces/${String(i % 10000).padStart(6, '0')}`) })],
        ['put', 400, (i) => client.kv.put({ key: Buffer.from(`/bench/put/${i}`), value: Buffer.alloc(1024, 120) })],
        ['marks', 400, () => client.kv.txn({ compare: [], success: [...PREFIXES.map(([p]) => markOf(p)), markOf('/appnet/vni/'), markOf('/appnet/connections/'), markOf('')].map((key) => ({ request_range: { key: Buffer.from(key) } })), failure: [] })],
        ['counts', 400, () => client.kv.txn({ compare: [], success: PREFIXES.map(([p]) => ({ request_range: { ...range(p), count_only: true } })), failure: [] })],
        ['scan', 100, () => client.kv.range({ ...range('/appnet/interfaces/'), keys_only: true, min_mod_revision: '999999999', limit: 1 })],
      ];
      for (const round of [1, 2]) {
        for (const [name, n, call] of reads) {
          const f = await timed(n, call);
          log(`round ${round}: ${name} p50 ${f.p50} ms, p99 ${f.p99} ms`);
          if (round === 2) (figures[`${name}_p50_ms`] = f.p50, figures[`${name}_p99_ms`] = f.p99);
        }
      }
      figures.scan_over_marks = r2((figures.scan_p50_ms as number) / (figures.marks_p50_ms as number));
    } finally {
      client.close();
    }
  } finally {
    await cluster.destroy();
  }
  console.log('etcd reads, 3 members, 8 in flight (p50 / p99 ms):');
  for (const name of ['get', 'put', 'marks', 'counts', 'scan']) console.log(`  ${name.padEnd(8)} ${figures[`${name}_p50_ms`]} / ${figures[`${name}_p99_ms`]}`);
  console.log(`  scan / marks (p50): ${figures.scan_over_marks}x`);
  return figures;
}
