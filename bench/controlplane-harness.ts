// What the control-plane benchmark's scenarios share (bench/controlplane.ts, bench/controlplane-fleet.ts):
// running the load client in a host's namespace, the daemons' tokens, and the convergence check.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { OBSERVED_PREFIX } from '../control/reconcile/reconciler.ts';
import type { Store } from '../control/store/store.ts';
import { run as exec } from '../test/helpers/run.ts';
import type { Daemon, TestNet } from '../test/helpers/testnet.ts';
import { LOAD_CLIENT, SYSTEM_TOKEN, TENANTS, pool, tenantToken, type LoadPlan, type LoadResult } from './controlplane-load.ts';
import { INTERFACES_PREFIX } from '../control/repo/keys.ts';

const POLL_MS = 100;
const CONVERGE_TIMEOUT_MS = 180_000;
const log = (s: string) => process.stderr.write(`controlplane bench: ${s}\n`);

/** Runs the load client in `ns` and returns its JSON; its progress lines go to our stderr. */
export function runLoad(net: TestNet, ns: string, plan: LoadPlan): Promise<LoadResult> {
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

export interface Expect { store: Store; daemon: Daemon; host: string; pid: () => number | undefined; ifaces: Set<string>; namespaces: Map<string, number> }

/** One poll round: true when engine, store and devices all show the host's interfaces converged. */
export async function converged(e: Expect, why: string[], created?: Set<string>): Promise<boolean> {
  why.length = 0;
  const counters = await e.daemon.get<{ ports: unknown[] }>('/engine/counters').catch(() => null);
  const ports = counters?.ports.length ?? 0;
  if (ports !== e.ifaces.size) return why.push(`${e.host} engine ports ${ports}/${e.ifaces.size}`), false;
  const observed = await e.store.get(OBSERVED_PREFIX + e.host);
  const obs = observed ? JSON.parse(observed.value) : null;
  if (!obs || obs.pid !== e.pid() || obs.ports !== e.ifaces.size || obs.pending !== 0) {
    return why.push(`${e.host} observed ${JSON.stringify(obs)}`), false;
  }
  const states = created ?? new Set((await e.store.range(INTERFACES_PREFIX)).kvs.filter((kv) => JSON.parse(kv.value).state === 'created').map((kv) => kv.key.slice(INTERFACES_PREFIX.length)));
  const done = [...e.ifaces].filter((i) => states.has(i)).length;
  if (done !== e.ifaces.size) return why.push(`${e.host} store created ${done}/${e.ifaces.size}`), false;
  let missing = 0;
  await pool(e.namespaces.size, 4, async (i) => {
    const [ns, want] = [...e.namespaces][i];
    const r = await exec('ip', ['-n', ns, '-o', 'link', 'show', 'up'], { reject: false });
    const have = (r.stdout.match(/^\d+: an[0-9a-f]{8}[:@]/gm) ?? []).length;
    missing += Math.max(0, want - have);
  });
  if (missing > 0) return why.push(`${e.host} ${missing} TAPs missing or down`), false;
  return true;
}

export async function waitConverged(all: Expect[], from: number): Promise<number> {
  const why: string[] = [];
  let lastLog = 0;
  for (;;) {
    const round = performance.now();
    const created = new Set((await all[0].store.range(INTERFACES_PREFIX)).kvs.filter((kv) => JSON.parse(kv.value).state === 'created').map((kv) => kv.key.slice(INTERFACES_PREFIX.length)));
    let ok = true;
    for (const e of all) if (!(await converged(e, why, created))) { ok = false; break; }
    if (ok) return round - from;
    if (round - from > CONVERGE_TIMEOUT_MS) throw new Error(`not converged after ${CONVERGE_TIMEOUT_MS} ms: ${why.join('; ')}`);
    if (round - lastLog > 2000) { log(`converging: ${why.join('; ')}`); lastLog = round; }
    await sleep(POLL_MS);
  }
}

/** Tenant and system tokens of the load client. */
export function benchTokens(): Record<string, string> {
  const tokens: Record<string, string> = { [SYSTEM_TOKEN]: 'system' };
  for (let i = 0; i < TENANTS; i++) tokens[tenantToken(i)] = `t${i}`;
  return tokens;
}

