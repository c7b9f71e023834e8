// Control-plane scale benchmark: REST API latency of a real appnetd at 1,000 networks and 10,000 interfaces,
// then the time a kill -9'd daemon takes to converge its 1,000 interfaces again.
//
//   root ns (this process)                    <prefix>h1 (the timed host)
//   SQLite store file in a temp dir  <----->  appnetd --store (API 127.0.0.1:7878, reconciler, engine)
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
// Latency is client side, from sending the request to the response parsed (the p50/p99/max columns and the
// target), and also to the last byte received, before the client's JSON.parse (`p99 recv`): a 300 KB list
// takes the client a few ms to parse, and with 8 responses arriving together the last one waits for the
// parses of the others, on CPUs it shares with the daemon.
//
// `node --import tsx bench/run.ts controlplane [--json] [--scale=F]`: F (default 1) scales every count, for a
// smoke run (--scale=0.1: 100 networks, 1000 interfaces). Traffic stays in the namespaces built here.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HostRegistry } from '../control/repo/hosts.ts';
import { INTERFACES_PREFIX } from '../control/repo/interfaces.ts';
import { OBSERVED_PREFIX } from '../control/reconcile/reconciler.ts';
import { openStore } from '../control/store/index.ts';
import type { Store } from '../control/store/store.ts';
import { run as exec } from '../test/helpers/run.ts';
import { TestNet, type Daemon } from '../test/helpers/testnet.ts';
import {
  CONCURRENCY, IFACES_PER_INSTANCE, LOAD_CLIENT, SYSTEM_TOKEN, TENANTS, pool, tenantToken, type LoadPlan, type LoadResult, type RouteStats,
} from './controlplane-load.ts';

const HOSTS = 10;
const POLL_MS = 100;
const CONVERGE_TIMEOUT_MS = 180_000;
const log = (s: string) => process.stderr.write(`controlplane bench: ${s}\n`);

// ---- The orchestrator -----------------------------------------------------------------------------------------

/** A fake ava context: TestNet registers its destroy() here. */
function shim(cleanups: Array<() => unknown>) {
  return { teardown: (fn: () => unknown) => cleanups.push(fn), passed: true } as any;
}

/** Runs the load client in `ns` and returns its JSON; its progress lines go to our stderr. */
function runLoad(net: TestNet, ns: string, plan: LoadPlan): Promise<LoadResult> {
  const child = net.track(spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', LOAD_CLIENT], {
    env: { ...process.env, APPNET_BENCH_LOAD: JSON.stringify(plan) }, stdio: ['ignore', 'pipe', 'inherit'], detached: true,
  }));
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b));
  return new Promise((resolve, reject) => {
    child.once('close', (code, signal) => {
      if (code !== 0) return reject(new Error(`load client (${plan.phase}) exited ${code ?? signal}`));
      try { resolve(JSON.parse(out)); } catch (e) { reject(new Error(`load client gave no JSON: ${out.slice(0, 300)}`)); }
    });
  });
}

interface Expect { store: Store; daemon: Daemon; pid: () => number | undefined; ifaces: Set<string>; namespaces: Map<string, number> }

/** One poll round: true when engine, store and devices all show the h1 interfaces converged. */
async function converged(e: Expect, why: string[]): Promise<boolean> {
  why.length = 0;
  const counters = await e.daemon.get<{ ports: unknown[] }>('/engine/counters').catch(() => null);
  const ports = counters?.ports.length ?? 0;
  if (ports !== e.ifaces.size) return why.push(`engine ports ${ports}/${e.ifaces.size}`), false;
  const observed = await e.store.get(OBSERVED_PREFIX + 'h1');
  const obs = observed ? JSON.parse(observed.value) : null;
  if (!obs || obs.pid !== e.pid() || obs.ports !== e.ifaces.size || obs.pending !== 0) {
    return why.push(`observed ${JSON.stringify(obs)}`), false;
  }
  const { kvs } = await e.store.range(INTERFACES_PREFIX);
  const created = kvs.filter((kv) => e.ifaces.has(kv.key.slice(INTERFACES_PREFIX.length)) && JSON.parse(kv.value).state === 'created').length;
  if (created !== e.ifaces.size) return why.push(`store created ${created}/${e.ifaces.size}`), false;
  let missing = 0;
  await pool(e.namespaces.size, 4, async (i) => {
    const [ns, want] = [...e.namespaces][i];
    const r = await exec('ip', ['-n', ns, '-o', 'link', 'show', 'up'], { reject: false });
    const have = (r.stdout.match(/^\d+: an[0-9a-f]{8}[:@]/gm) ?? []).length;
    missing += Math.max(0, want - have);
  });
  if (missing > 0) return why.push(`${missing} TAPs missing or down`), false;
  return true;
}

async function waitConverged(e: Expect, from: number): Promise<number> {
  const why: string[] = [];
  let lastLog = 0;
  for (;;) {
    const round = performance.now();
    if (await converged(e, why)) return round - from;
    if (round - from > CONVERGE_TIMEOUT_MS) throw new Error(`not converged after ${CONVERGE_TIMEOUT_MS} ms: ${why.join('; ')}`);
    if (round - lastLog > 2000) { log(`converging: ${why.join('; ')}`); lastLog = round; }
    await sleep(POLL_MS);
  }
}

function table(f: Result): string {
  const lines = [`${'route'.padEnd(36)}${'count'.padStart(7)}${'errors'.padStart(8)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'max ms'.padStart(9)}${'p99 recv'.padStart(10)}`];
  for (const [route, s] of Object.entries(f.routes)) {
    lines.push(`${route.padEnd(36)}${String(s.count).padStart(7)}${String(s.errors).padStart(8)}${String(s.p50).padStart(9)}${String(s.p99).padStart(9)}${String(s.max).padStart(9)}${String(s.p99_received).padStart(10)}`);
  }
  return lines.join('\n');
}

interface Result {
  networks: number; interfaces: number; instances: number; timed_host_interfaces: number; hosts: string; concurrency: number;
  routes: Record<string, RouteStats>;
  initial_converge_ms: number; kill_exit_ms: number; restart_converge_ms: number; restart_healthz_ms: number;
  p99_max_ms: number; target_p99_50ms_met: boolean; target_converge_10s_met: boolean;
  machine: { cpus: number; cpuModel?: string; kernel: string };
}

export async function run({ json }: { json?: boolean }): Promise<Result> {
  const arg = process.argv.find((x) => x.startsWith('--scale='))?.split('=')[1];
  const scale = Number(arg ?? 1);
  if (!(scale > 0 && scale <= 1)) throw new Error(`controlplane bench: --scale must be in (0, 1], got '${arg}'`);
  const networks = Math.round(1000 * scale);
  const instancesPerHost = networks / IFACES_PER_INSTANCE;
  if (!Number.isInteger(instancesPerHost)) throw new Error(`controlplane bench: --scale must make ${networks} networks a multiple of 5`);
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
    // TestNet owns the instance namespaces, so its teardown (and its SIGINT/exit handlers) delete them.
    log(`creating ${instancesPerHost} instance namespaces for h1`);
    const namespaces = new Map<string, number>();
    for (let k = 0; k < instancesPerHost; k++) namespaces.set((await net.addInstance(`i${String(k).padStart(4, '0')}`)).ns, IFACES_PER_INSTANCE);
    const netnsPrefix = `${net.prefix}-i`;
    const storeUrl = `sqlite:${path.join(dir, 'appnet.db')}`;
    const tokens: Record<string, string> = { [SYSTEM_TOKEN]: 'system' };
    for (let i = 0; i < TENANTS; i++) tokens[tenantToken(i)] = `t${i}`;
    const daemon = await net.startAppnetd(h1, { store: storeUrl, tokens, floatingPool: '198.19.255.0/24' });
    store = await openStore(storeUrl);
    // The other hosts are host records under live leases (kept alive by this process), with no daemon: they
    // place instances and appear in flood lists, which is all the timed host sees of them.
    for (let i = 2; i <= HOSTS; i++) {
      const reg = new HostRegistry(store);
      await reg.register({ name: `h${i}`, underlay_address: `198.18.0.${10 + i}` });
      registries.push(reg);
    }

    log(`creating ${networks} networks and ${plan0.instances} instances (${plan0.instances * IFACES_PER_INSTANCE} interfaces), concurrency ${CONCURRENCY}`);
    const t0 = performance.now();
    const created = await runLoad(net, h1.ns, { ...plan0, netnsPrefix, phase: 'create' });
    const ifaces = new Set(created.h1Instances.flatMap((i) => i.interfaces));
    if (ifaces.size !== networks) throw new Error(`expected ${networks} interfaces on h1, got ${ifaces.size}`);
    const expect: Expect = { store, daemon, pid: () => daemon.pid, ifaces, namespaces };
    const initial = await waitConverged(expect, t0);
    log(`initial convergence ${Math.round(initial)} ms after the first POST`);

    const read = await runLoad(net, h1.ns, { ...plan0, netnsPrefix, phase: 'read' });

    // SIGKILL, then wait for the process to be gone: the kernel unregisters its 1000 TAPs as the process
    // exits, which takes longer than Daemon.kill9()'s 5 s allowance. A supervisor restarts after that exit.
    log('kill -9 of h1 appnetd');
    const killed = performance.now();
    process.kill(daemon.pid!, 'SIGKILL');
    while (daemon.running) {
      if (performance.now() - killed > 120_000) throw new Error('appnetd did not exit within 120 s of SIGKILL');
      await sleep(50);
    }
    const exitMs = performance.now() - killed;
    log(`exited ${Math.round(exitMs)} ms after SIGKILL; restarting`);
    const t1 = performance.now();
    await daemon.start();
    const healthz = performance.now() - t1;
    const restart = await waitConverged(expect, t1);
    log(`restart convergence ${Math.round(restart)} ms (healthz after ${Math.round(healthz)} ms)`);

    const routes = { ...created.routes, ...read.routes };
    const p99Max = Math.max(...Object.values(routes).map((s) => s.p99));
    const result: Result = {
      networks, interfaces: plan0.instances * IFACES_PER_INSTANCE, instances: plan0.instances, timed_host_interfaces: ifaces.size,
      hosts: `h1 real appnetd (timed); h2..h${HOSTS} host records under live leases, no daemon`,
      concurrency: CONCURRENCY, routes,
      initial_converge_ms: Math.round(initial), kill_exit_ms: Math.round(exitMs), restart_converge_ms: Math.round(restart), restart_healthz_ms: Math.round(healthz),
      p99_max_ms: p99Max, target_p99_50ms_met: p99Max < 50, target_converge_10s_met: restart < 10_000,
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, kernel: os.release() },
    };
    if (!json) {
      console.log(`Control plane at scale, ${os.cpus().length} CPUs, kernel ${os.release()}: ${networks} networks, ${result.interfaces} interfaces ` +
        `(${plan0.instances} instances x ${IFACES_PER_INSTANCE}), ${ifaces.size} on the timed host h1`);
      console.log(`hosts: ${result.hosts}; client-side latency, ${CONCURRENCY} requests in flight, keep-alive\n`);
      console.log(table(result));
      console.log(`\ninitial convergence of h1 (from the first POST): ${result.initial_converge_ms} ms`);
      console.log(`kill -9: the process was gone ${result.kill_exit_ms} ms after SIGKILL (the kernel removing its TAPs)`);
      console.log(`after kill -9: restart to converged ${result.restart_converge_ms} ms (/healthz answered after ${result.restart_healthz_ms} ms)`);
      console.log(`target p99 < 50 ms: ${result.target_p99_50ms_met ? 'met' : 'NOT met'} (worst ${p99Max}); ` +
        `target convergence < 10 s: ${result.target_converge_10s_met ? 'met' : 'NOT met'}`);
    }
    return result;
  } catch (e) {
    t.passed = false;
    throw e;
  } finally {
    for (const r of registries) await r.close();
    await store?.close();
    for (const fn of cleanups.reverse()) await fn();
  }
}
