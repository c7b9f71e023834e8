// Where a phase of the control-plane benchmark spent its time, from the timed daemon's own metrics and the CPU
// of the processes that share the machine: scraped before and after a phase, reported as the difference.
// The client-side latencies say how long a route took; this says who was busy meanwhile (the daemon's event
// loop, its reconciler, the store, etcd's members), so a figure over target can be traced to its cause.
import { readFileSync } from 'node:fs';
import { parsePrometheusText, type Scrape } from '../control/metrics/prom-text.ts';
import type { Daemon } from '../test/helpers/testnet.ts';

export interface Mark { at: number; scrape: Scrape; etcdTicks: number; etcdCalls: Map<string, number> }

export interface PhaseBreakdown {
  wall_s: number;
  /** CPU seconds over the phase: the daemon (its own metric), etcd's members together (from /proc). */
  cpu_s: { daemon: number; etcd: number };
  /** Reconcile passes in the phase and the seconds they took (they share the daemon's event loop with the API). */
  reconcile: { passes: number; seconds: number };
  /** Store operations by kind (get, range, txn, ...) as the daemon waited for them: count and mean. */
  store_ops: Record<string, { count: number; mean_ms: number }>;
  /** Requests etcd's members handled in the phase, by gRPC method (all clients: the daemon, the bench's leases). */
  etcd_calls: Record<string, number>;
  /** Server-side mean per route (`METHOD pattern`), from the daemon's request histogram: arrival to response sent. */
  server_mean_ms: Record<string, number>;
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** utime + stime of the live pids, in clock ticks (a pid that is gone counts 0). */
function cpuTicks(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // Fields after the command (which may hold spaces) start after the last ')'; utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch { /* exited */ }
  }
  return ticks;
}

/** Unary and stream calls etcd's members have handled, summed over the members, by gRPC method. */
export async function etcdCalls(metricsUrls: readonly string[]): Promise<Map<string, number>> {
  const calls = new Map<string, number>();
  for (const url of metricsUrls) {
    const text = await fetch(url).then((r) => r.text()).catch(() => '');
    if (!text) continue;
    for (const s of parsePrometheusText(text).all('grpc_server_handled_total')) {
      calls.set(s.labels.grpc_method, (calls.get(s.labels.grpc_method) ?? 0) + s.value);
    }
  }
  return calls;
}

/** A snapshot before or after a phase. `etcd`: the members' pids and their /metrics URLs (none on SQLite). */
export async function mark(daemon: Daemon, etcd: { pids: readonly number[]; metricsUrls: readonly string[] }): Promise<Mark> {
  const res = await daemon.request('GET', '/metrics');
  if (res.status !== 200) throw new Error(`metrics of the timed daemon: HTTP ${res.status} ${res.body.slice(0, 200)}`);
  return { at: performance.now(), scrape: parsePrometheusText(res.body), etcdTicks: cpuTicks(etcd.pids), etcdCalls: await etcdCalls(etcd.metricsUrls) };
}

const r1 = (n: number) => Math.round(n * 10) / 10;
const r2 = (n: number) => Math.round(n * 100) / 100;

export function breakdown(a: Mark, b: Mark): PhaseBreakdown {
  const delta = (name: string, labels?: Record<string, string>) => (b.scrape.value(name, labels) ?? 0) - (a.scrape.value(name, labels) ?? 0);
  const server: Record<string, number> = {};
  const sums = new Map<string, { sum: number; count: number }>();
  for (const s of b.scrape.all('appnet_api_request_seconds_sum')) {
    const before = a.scrape.value('appnet_api_request_seconds_sum', s.labels) ?? 0;
    const count = (b.scrape.value('appnet_api_request_seconds_count', s.labels) ?? 0) - (a.scrape.value('appnet_api_request_seconds_count', s.labels) ?? 0);
    if (count <= 0) continue;
    const key = `${s.labels.method} ${s.labels.route}`;
    const acc = sums.get(key) ?? { sum: 0, count: 0 };
    sums.set(key, { sum: acc.sum + s.value - before, count: acc.count + count });
  }
  for (const [key, { sum, count }] of sums) if (count >= 20) server[key] = r1((1000 * sum) / count);
  const ops: PhaseBreakdown['store_ops'] = {};
  for (const c of b.scrape.all('appnet_store_operation_seconds_count')) {
    const op = c.labels.op;
    const count = delta('appnet_store_operation_seconds_count', { op });
    if (count > 0) ops[op] = { count, mean_ms: r1((1000 * delta('appnet_store_operation_seconds_sum', { op })) / count) };
  }
  return {
    wall_s: r1((b.at - a.at) / 1000),
    cpu_s: { daemon: r1(delta('appnet_process_cpu_seconds_total')), etcd: r1((b.etcdTicks - a.etcdTicks) / TICKS_PER_SECOND) },
    reconcile: { passes: delta('appnet_reconcile_seconds_count'), seconds: r2(delta('appnet_reconcile_seconds_sum')) },
    store_ops: ops,
    etcd_calls: Object.fromEntries([...b.etcdCalls].map(([m, n]) => [m, n - (a.etcdCalls.get(m) ?? 0)]).filter(([, n]) => (n as number) > 0)),
    server_mean_ms: server,
  };
}

/** Lines for the bench's text output. */
export function describe(phase: string, p: PhaseBreakdown): string {
  const routes = Object.entries(p.server_mean_ms).map(([k, v]) => `${k} ${v}`).join(', ');
  const ops = Object.entries(p.store_ops).map(([op, o]) => `${op} ${o.count} x ${o.mean_ms} ms`).join(', ');
  return `${phase} (${p.wall_s} s): CPU s daemon ${p.cpu_s.daemon}, etcd ${p.cpu_s.etcd}; reconcile ${p.reconcile.passes} passes, ` +
    `${p.reconcile.seconds} s; store ops: ${ops}; etcd calls: ${Object.entries(p.etcd_calls).map(([m, n]) => `${m} ${n}`).join(', ') || 'none'}; ` +
    `server-side mean ms: ${routes}`;
}
