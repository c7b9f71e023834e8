// Control-plane scale benchmark: REST API latency of a real appnetd at 1,000 networks and 10,000 interfaces,
// then the time a kill -9'd daemon takes to converge its 1,000 interfaces again; on SQLite and on a
// three-member etcd cluster in the same run (`--store sqlite|etcd|both`, default both). On etcd it also
// reports the database size after the workload, after churn, and after a compaction pass, and runs the
// fleet scenario (bench/controlplane-fleet.ts): five real daemons, 5,000 interfaces, time to all converged.
//
//   root ns (this process)                    <prefix>h1 (the timed host)
//   the store: a SQLite file, or etcd  <---->  appnetd --store (API 127.0.0.1:7878, reconciler, engine)
//     (members on h1's underlay, this process by a veth of its own)
//   host records h2..h10 (leases, no daemon)     ^ HTTP, keep-alive, CONCURRENCY requests in flight
//                                              load client (this file, `--load`), measures latency
//                                              <prefix>-iNNNN: 200 instance namespaces, 5 TAPs each
//
// Steps: 1. POST /networks x1000 in 10 tenant namespaces (a /26 each from 198.18.4.0 up).
//        2. POST /instances x2000, 5 interfaces each: instance k runs on host h(1 + k/200), its interface j on
//           network (k + 200 j) mod 1000, so every network has 10 interfaces, one on each host, and h1 gets
//           exactly 1000 (one per network: 1000 VNIs, each flooding to 9 hosts).
//        3. wait until h1 converged (below), then the read routes, ROUTE_SAMPLES requests each.
//        4. kill -9 h1's appnetd, start it again, time until converged.
// Converged: the engine holds 1000 ports (GET /engine/counters), the store has every h1 interface `created`
// and h1's observed status (/appnet/observed/h1) written by the new process, and every instance namespace has
// its 5 TAPs up. Checked every POLL_MS; the figure is the start of the first poll round that saw all of it.
//
// Latency is client side, from sending the request to its last byte received, as wrk or k6 time a request: the
// timed reads' bodies are not parsed (a 300 KB list takes the client ~1 ms to parse, and with 8 in flight the
// other responses would wait for those parses, on CPUs the client shares with the daemon and etcd). Anchors in
// the same run: the store's own put (`store floor`), and the two big lists' bytes served by a bare node:http
// server (bench/static-body-server.ts) to the same client: the transport floor a route of that size cannot beat.
// Where the time went in each phase (`breakdown`): the daemon's own metrics and the CPU of it and of etcd.
//
// `node --import tsx bench/run.ts controlplane [--json] [--scale=F] [--store sqlite|etcd|both] [--etcd-data disk|tmpfs]`: F (default 1)
// scales every count, for a smoke run (--scale=0.1: 100 networks, 1000 interfaces). Traffic stays in the
// namespaces built here.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HostRegistry } from '../control/repo/hosts.ts';
import { openStore } from '../control/store/index.ts';
import type { Store } from '../control/store/store.ts';
import { TestNet } from '../test/helpers/testnet.ts';
import { EtcdCluster } from '../test/helpers/etcd-cluster.ts';
import { Compactor } from '../control/store/compactor.ts';
import pino from 'pino';
import { runFleet, type FleetResult } from './controlplane-fleet.ts';
import { CONCURRENCY, IFACES_PER_INSTANCE, pool, type RouteStats } from './controlplane-load.ts';
import { benchTokens, runLoad, waitConverged, type Expect } from './controlplane-harness.ts';
import { breakdown, describe, mark, type PhaseBreakdown } from './controlplane-breakdown.ts';
import { shim } from './path-measure.ts';

const HOSTS = 10;
const log = (s: string) => process.stderr.write(`controlplane bench: ${s}\n`);

// ---- The orchestrator -----------------------------------------------------------------------------------------

type StoreKind = 'sqlite' | 'etcd';

interface ScaleResult {
  store: StoreKind; networks: number; interfaces: number; instances: number; timed_host_interfaces: number; hosts: string; concurrency: number;
  routes: Record<string, RouteStats>;
  initial_converge_ms: number; kill_exit_ms: number; restart_converge_ms: number; restart_healthz_ms: number;
  /** The big lists' bytes from a bare node:http server: same client, concurrency and namespace as the API. */
  transport_floor: Record<string, RouteStats>;
  /** Per phase, from h1's metrics and /proc: CPU, reconcile passes, store txns, server-side time per route. */
  breakdown: { create: PhaseBreakdown; read: PhaseBreakdown };
  /** The store's own latency for a 1 KiB put, CONCURRENCY in flight, taken between the create and read phases. */
  store_put_floor: { p50: number; p99: number };
  p99_max_ms: number; target_p99_50ms_met: boolean; target_converge_10s_met: boolean;
  /** etcd: the largest member's backend after the workload, after churn, after one compaction pass. */
  db_mib?: { after_workload: number; after_churn: number; after_compaction: number };
}

const mib = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;

/**
 * Where the etcd members keep their data: `disk` (default; the three share this machine's one disk, so each
 * raft commit pays three fsyncs on it) or `tmpfs` (`--etcd-data tmpfs`: a what-if without the fsync cost, to
 * separate the store's floor from appnet's own latency; not a durable setup).
 */
const ETCD_DATA = (() => {
  const i = process.argv.findIndex((x) => x === '--etcd-data' || x.startsWith('--etcd-data='));
  const v = i < 0 ? 'disk' : process.argv[i].includes('=') ? process.argv[i].split('=')[1] : process.argv[i + 1];
  if (v !== 'disk' && v !== 'tmpfs') throw new Error(`controlplane bench: --etcd-data must be disk or tmpfs, got '${v}'`);
  return v;
})();

function etcdDataDir(dir: string, cleanups: Array<() => unknown>): string | undefined {
  if (ETCD_DATA === 'disk') return undefined;
  const data = path.join(dir, 'etcd-tmpfs');
  mkdirSync(data);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2g', 'tmpfs', data]);
  cleanups.push(() => execFileSync('umount', ['-l', data]));
  return data;
}

async function scaleRun(kind: StoreKind, scale: number): Promise<ScaleResult> {
  const networks = Math.round(1000 * scale);
  const instancesPerHost = networks / IFACES_PER_INSTANCE;
  const plan0 = { api: 'http://127.0.0.1:7878', networks, instances: instancesPerHost * HOSTS, instancesPerHost };
  const cleanups: Array<() => unknown> = [];
  const t = shim(cleanups);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-cpbench-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  let store: Store | undefined;
  const registries: HostRegistry[] = [];
  try {
    const net = await TestNet.create(t, { hosts: 1 });
    const h1 = net.hosts[0];
    let daemonStore = `sqlite:${path.join(dir, 'appnet.db')}`;
    let benchStore = daemonStore;
    let etcd: EtcdCluster | undefined;
    if (kind === 'etcd') {
      const data = etcdDataDir(dir, cleanups);
      log(`etcd: starting a three-member cluster on the underlay (data on ${ETCD_DATA === 'tmpfs' ? 'a tmpfs' : 'the disk the members share'})`);
      etcd = await EtcdCluster.start(t, { members: 3, rootAccess: true, dir: data, attach: { ns: net.underlayNs, bridge: 'br0', subnet: '198.18.0', firstHost: 201 } });
      [daemonStore, benchStore] = [etcd.url(), etcd.rootUrl()];
    }
    // TestNet owns the instance namespaces, so its teardown (and its SIGINT/exit handlers) delete them.
    log(`${kind}: creating ${instancesPerHost} instance namespaces for h1`);
    const namespaces = new Map<string, number>();
    for (let k = 0; k < instancesPerHost; k++) namespaces.set((await net.addInstance(`i${String(k).padStart(4, '0')}`)).ns, IFACES_PER_INSTANCE);
    const netnsPrefix = `${net.prefix}-i`;
    const daemon = await net.startAppnetd(h1, { store: daemonStore, tokens: benchTokens(), floatingPool: '198.19.255.0/24' });
    store = await openStore(benchStore);
    // The other hosts are host records under live leases (kept alive by this process), with no daemon: they
    // place instances and appear in flood lists, which is all the timed host sees of them.
    for (let i = 2; i <= HOSTS; i++) {
      const reg = new HostRegistry(store);
      await reg.register({ name: `h${i}`, underlay_address: `198.18.0.${10 + i}` });
      registries.push(reg);
    }

    log(`${kind}: creating ${networks} networks and ${plan0.instances} instances (${plan0.instances * IFACES_PER_INSTANCE} interfaces), concurrency ${CONCURRENCY}`);
    const etcdPids = () => ({ pids: etcd?.pids() ?? [], metricsUrls: etcd?.members.map((m) => `http://${m.rootIp}:2379/metrics`) ?? [] });
    const beforeCreate = await mark(daemon, etcdPids());
    const t0 = performance.now();
    const created = await runLoad(net, h1.ns, { ...plan0, netnsPrefix, phase: 'create' });
    const createBreakdown = breakdown(beforeCreate, await mark(daemon, etcdPids()));
    log(describe(`${kind}: create phase`, createBreakdown));
    const ifaces = new Set(created.h1Instances.flatMap((i) => i.interfaces));
    if (ifaces.size !== networks) throw new Error(`expected ${networks} interfaces on h1, got ${ifaces.size}`);
    const expect: Expect = { store, daemon, host: 'h1', pid: () => daemon.pid, ifaces, namespaces };
    const initial = await waitConverged([expect], t0);
    log(`${kind}: initial convergence ${Math.round(initial)} ms after the first POST`);

    // The anchor: what the store itself takes for a write, 8 in flight, from this process, at the same moment.
    const floor = await storeFloor(store);
    const beforeRead = await mark(daemon, etcdPids());
    const read = await runLoad(net, h1.ns, { ...plan0, netnsPrefix, phase: 'read' });
    const readBreakdown = breakdown(beforeRead, await mark(daemon, etcdPids()));
    log(describe(`${kind}: read phase`, readBreakdown));

    // SIGKILL, then wait for the process to be gone: the kernel unregisters its 1000 TAPs as the process
    // exits, which takes longer than Daemon.kill9()'s 5 s allowance. A supervisor restarts after that exit.
    log(`${kind}: kill -9 of h1 appnetd`);
    const killed = performance.now();
    process.kill(daemon.pid!, 'SIGKILL');
    while (daemon.running) {
      if (performance.now() - killed > 120_000) throw new Error('appnetd did not exit within 120 s of SIGKILL');
      await sleep(50);
    }
    const exitMs = performance.now() - killed;
    const t1 = performance.now();
    await daemon.start();
    const healthz = performance.now() - t1;
    const restart = await waitConverged([expect], t1);
    log(`${kind}: restart convergence ${Math.round(restart)} ms (healthz after ${Math.round(healthz)} ms)`);

    let db: ScaleResult['db_mib'];
    if (etcd) {
      const afterWorkload = await etcd.dbSize();
      log('etcd: churn (metadata writes on every network, 10 rounds), then one compaction pass');
      const nets = (await store.range('/appnet/networks/')).kvs.map((kv) => kv.key);
      for (let round = 0; round < 10; round++) {
        await pool(nets.length, CONCURRENCY, async (i) => {
          const kv = await store!.get(nets[i]);
          if (kv) await store!.put(nets[i], JSON.stringify({ ...JSON.parse(kv.value), metadata: { churn: String(round).padEnd(512, '.') } }));
        });
      }
      const afterChurn = await etcd.dbSize();
      await new Compactor({ store, log: pino({ level: 'silent' }), isCompactor: () => true, settings: { intervalSeconds: 3600, retainRevisions: 1000, defragFreeBytes: 1024 * 1024 } }).pass();
      db = { after_workload: mib(afterWorkload), after_churn: mib(afterChurn), after_compaction: mib(await etcd.dbSize()) };
    }
    const routes = { ...created.routes, ...read.routes };
    const p99Max = Math.max(...Object.values(routes).map((s) => s.p99));
    return {
      store: kind, networks, interfaces: plan0.instances * IFACES_PER_INSTANCE, instances: plan0.instances, timed_host_interfaces: ifaces.size,
      hosts: `h1 real appnetd (timed); h2..h${HOSTS} host records under live leases, no daemon`,
      concurrency: CONCURRENCY, routes, transport_floor: read.anchors, breakdown: { create: createBreakdown, read: readBreakdown },
      initial_converge_ms: Math.round(initial), kill_exit_ms: Math.round(exitMs), restart_converge_ms: Math.round(restart), restart_healthz_ms: Math.round(healthz),
      store_put_floor: floor, p99_max_ms: p99Max, target_p99_50ms_met: p99Max < 50, target_converge_10s_met: restart < 10_000, ...(db ? { db_mib: db } : {}),
    };
  } catch (e) {
    t.passed = false;
    throw e;
  } finally {
    for (const r of registries) await r.close();
    await store?.close();
    for (const fn of cleanups.reverse()) await fn();
  }
}

/** p50/p99 of 200 puts of 1 KiB, CONCURRENCY in flight, under a scratch prefix deleted afterwards. */
async function storeFloor(store: Store): Promise<{ p50: number; p99: number }> {
  const samples: number[] = [];
  const value = 'x'.repeat(1024);
  await pool(200, CONCURRENCY, async (i) => {
    const t0 = performance.now();
    await store.put(`/bench/floor/${i}`, value);
    samples.push(performance.now() - t0);
  });
  await store.deletePrefix('/bench/floor/');
  samples.sort((a, b) => a - b);
  const at = (p: number) => Math.round(samples[Math.ceil(p * samples.length) - 1] * 10) / 10;
  return { p50: at(0.5), p99: at(0.99) };
}

const LABEL = 52;

function table(results: ScaleResult[]): string {
  const cols = results.map((r) => r.store);
  const lines = [`${'route'.padEnd(LABEL)}${cols.map((c) => `${c} p50 / p99 ms`.padStart(24)).join('')}`];
  for (const route of Object.keys(results[0].routes)) {
    lines.push(route.padEnd(LABEL) + results.map((r) => {
      const s = r.routes[route];
      return (s ? `${s.p50} / ${s.p99}${s.errors ? ` (${s.errors} err)` : ''}` : '-').padStart(24);
    }).join(''));
  }
  const row = (label: string, f: (r: ScaleResult) => string) => lines.push(label.padEnd(LABEL) + results.map((r) => f(r).padStart(24)).join(''));
  lines.push('');
  row('h1 converged from the first POST', (r) => `${r.initial_converge_ms} ms`);
  row('process gone after kill -9', (r) => `${r.kill_exit_ms} ms`);
  row('h1 converged after the restart', (r) => `${r.restart_converge_ms} ms`);
  row('store floor: 1 KiB put, 8 in flight', (r) => `${r.store_put_floor.p50} / ${r.store_put_floor.p99}`);
  for (const route of Object.keys(results[0].transport_floor)) {
    row(`same bytes, bare server: ${route.replace('GET ', '')}`, (r) => { const s = r.transport_floor[route]; return s ? `${s.p50} / ${s.p99}` : '-'; });
  }
  row('worst p99 (target < 50 ms)', (r) => `${r.p99_max_ms} ms ${r.target_p99_50ms_met ? 'met' : 'NOT met'}`);
  row('restart (target < 10 s)', (r) => (r.target_converge_10s_met ? 'met' : 'NOT met'));
  lines.push('');
  for (const r of results) for (const phase of ['create', 'read'] as const) lines.push(describe(`${r.store}, ${phase} phase`, r.breakdown[phase]));
  const e = results.find((r) => r.db_mib);
  if (e?.db_mib) lines.push(`\netcd DB (largest member): ${e.db_mib.after_workload} MiB after the workload, ${e.db_mib.after_churn} MiB after churn, ${e.db_mib.after_compaction} MiB after one compaction pass`);
  return lines.join('\n');
}

export async function run({ json }: { json?: boolean }): Promise<Record<string, unknown>> {
  const arg = process.argv.find((x) => x.startsWith('--scale='))?.split('=')[1];
  const scale = Number(arg ?? 1);
  if (!(scale > 0 && scale <= 1)) throw new Error(`controlplane bench: --scale must be in (0, 1], got '${arg}'`);
  if (!Number.isInteger(Math.round(1000 * scale) / IFACES_PER_INSTANCE)) throw new Error('controlplane bench: --scale must make a multiple of 5 networks');
  const i = process.argv.findIndex((x) => x === '--store' || x.startsWith('--store='));
  const which = i < 0 ? 'both' : process.argv[i].includes('=') ? process.argv[i].split('=')[1] : process.argv[i + 1];
  if (!['sqlite', 'etcd', 'both'].includes(which)) throw new Error(`controlplane bench: --store must be sqlite, etcd or both, got '${which}'`);
  const kinds: StoreKind[] = which === 'both' ? ['sqlite', 'etcd'] : [which as StoreKind];
  const results: ScaleResult[] = [];
  for (const kind of kinds) results.push(await scaleRun(kind, scale));
  let fleet: FleetResult | undefined;
  if (kinds.includes('etcd')) fleet = await runFleet(scale);
  const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, kernel: os.release() };
  if (!json) {
    const r = results[0];
    console.log(`Control plane at scale, ${machine.cpus} CPUs, kernel ${machine.kernel}: ${r.networks} networks, ${r.interfaces} interfaces ` +
      `(${r.instances} instances x ${IFACES_PER_INSTANCE}), ${r.timed_host_interfaces} on the timed host h1; stores: ${kinds.join(', ')} (etcd: 3 members, data on ${ETCD_DATA})`);
    console.log(`hosts: ${r.hosts}; client-side latency, ${CONCURRENCY} requests in flight, keep-alive\n`);
    console.log(table(results));
    if (fleet) {
      console.log(`\nfleet on etcd: ${fleet.daemons} real daemons, ${fleet.interfaces} interfaces (${fleet.per_daemon} each): all converged ${fleet.converge_ms} ms ` +
        `after the first POST (the POSTs took ${fleet.creates_ms} ms) (target < 30 s: ${fleet.target_30s_met ? 'met' : 'NOT met'}); RSS per daemon ${fleet.rss_mb.join(' / ')} MB`);
    }
  }
  return { results, fleet, machine, etcd_data: ETCD_DATA };
}
