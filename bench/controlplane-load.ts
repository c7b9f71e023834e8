// The control-plane benchmark's load client (bench/controlplane.ts): runs inside the timed host's namespace,
// where the API is, keeps CONCURRENCY requests in flight and measures each route's latency client side.
// Started as `node --import tsx bench/controlplane-load.ts` with the plan in APPNET_BENCH_LOAD; prints its
// LoadResult as JSON on stdout, progress on stderr.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CONCURRENCY = 8;
export const IFACES_PER_INSTANCE = 5;
export const TENANTS = 10;
/** Requests per read route: the p99 of 1,000 is the 10th worst (of 200 it was the 3rd, which one stall decided). */
const ROUTE_SAMPLES = 1000;
export const SYSTEM_TOKEN = 'bench-system-token-0123456789';
export const tenantToken = (i: number) => `bench-tenant-token-${String(i).padStart(2, '0')}-0123456789`;
const log = (s: string) => process.stderr.write(`controlplane bench: ${s}\n`);
export const LOAD_CLIENT = fileURLToPath(import.meta.url);
const STATIC_SERVER = fileURLToPath(new URL('./static-body-server.ts', import.meta.url));

/** What the orchestrator tells the load client (in its namespace) to do. */
export interface LoadPlan {
  api: string;
  networks: number;
  instances: number;
  instancesPerHost: number;
  /** Netns of instance k (only h1's exist; the others are names in records). */
  netnsPrefix: string;
  /** Phase 'create' makes networks and instances; 'read' times the read routes on what exists. */
  phase: 'create' | 'read';
}

export interface RouteStats { count: number; errors: number; p50: number; p99: number; max: number }
export interface LoadResult {
  routes: Record<string, RouteStats>;
  h1Instances: Array<{ uuid: string; netns: string; interfaces: string[] }>;
  /** Read phase: the two big lists' bytes timed from a bare node:http server, same client and concurrency. */
  anchors: Record<string, RouteStats>;
}


const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });

interface Reply { status: number; body: any; bytes: Buffer | null; length: number }

/**
 * One request; `mode` says what is kept of the body: 'json' parses it (the untimed setup reads, the small write
 * answers), 'bytes' keeps it, 'discard' counts its bytes and drops them (unless the status is not 2xx: then it is
 * parsed for the error message). A timed read ends at its last byte, as wrk or k6 time it, and discards its body:
 * neither the client's JSON.parse of a 300 KB list nor the garbage of copying it lands in its figure or in the
 * figures of the requests whose bytes arrive meanwhile.
 */
function request(api: string, method: string, urlPath: string, token: string, body?: unknown, mode: 'json' | 'bytes' | 'discard' = 'json'): Promise<Reply> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const url = new URL(urlPath, api);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: url.hostname, port: url.port, path: url.pathname + url.search, method, agent,
      headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
    }, (res) => {
      const status = res.statusCode ?? 0;
      const keep = mode !== 'discard' || status < 200 || status > 299;
      const chunks: Buffer[] = [];
      let length = 0;
      res.on('data', (c: Buffer) => { length += c.length; if (keep) chunks.push(c); });
      res.on('end', () => {
        if (!keep) return resolve({ status, body: null, bytes: null, length });
        const bytes = Buffer.concat(chunks);
        if (mode === 'bytes' && status >= 200 && status <= 299) return resolve({ status, body: null, bytes, length });
        try {
          resolve({ status, body: bytes.length > 0 ? JSON.parse(bytes.toString()) : null, bytes, length });
        } catch {
          resolve({ status, body: bytes.toString().slice(0, 300), bytes, length });
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

class Latencies {
  readonly samples = new Map<string, number[]>();
  readonly errors = new Map<string, number>();
  readonly firstError = new Map<string, string>();
  async time(route: string, fn: () => Promise<Reply>): Promise<any> {
    const t0 = performance.now();
    const r = await fn();
    const ms = performance.now() - t0;
    if (!this.samples.has(route)) this.samples.set(route, []);
    this.samples.get(route)!.push(ms);
    if (r.status < 200 || r.status > 299) {
      this.errors.set(route, (this.errors.get(route) ?? 0) + 1);
      if (!this.firstError.has(route)) this.firstError.set(route, `HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    }
    return r.body;
  }
  stats(): Record<string, RouteStats> {
    const out: Record<string, RouteStats> = {};
    const r1 = (n: number) => Math.round(n * 10) / 10;
    const quantile = (s: number[], p: number) => {
      const sorted = [...s].sort((a, b) => a - b);
      return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
    };
    for (const [route, s] of this.samples) {
      out[route] = {
        count: s.length, errors: this.errors.get(route) ?? 0, p50: r1(quantile(s, 0.5)), p99: r1(quantile(s, 0.99)), max: r1(quantile(s, 1)),
      };
    }
    return out;
  }
}

/** Runs job(0..n-1) with at most `concurrency` in flight. */
export async function pool(n: number, concurrency: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await job(next++);
  }));
}

/** Network i: tenant i mod TENANTS, the i-th /26 from 198.18.4.0 (clear of the underlay 198.18.0.0/24). */
function networkBlock(i: number): string {
  const base = (198 << 24 | 18 << 16 | 4 << 8) + 64 * i;
  return `${base >>> 24 & 255}.${base >>> 16 & 255}.${base >>> 8 & 255}.${base & 255}/26`;
}

async function load(plan: LoadPlan): Promise<LoadResult> {
  const lat = new Latencies();
  const call = (route: string, method: string, p: string, token: string, body?: unknown) =>
    lat.time(route, () => request(plan.api, method, p, token, body, method === 'GET' ? 'discard' : 'json'));
  const progress = (what: string, i: number, n: number) => { if ((i + 1) % Math.max(1, Math.floor(n / 10)) === 0) log(`${what} ${i + 1}/${n}`); };
  const h1Instances: LoadResult['h1Instances'] = [];
  let anchors: Record<string, RouteStats> = {};
  if (plan.phase === 'create') {
    const networks: string[] = new Array(plan.networks);
    await pool(plan.networks, CONCURRENCY, async (i) => {
      const body = await call('POST /networks', 'POST', '/networks', tenantToken(i % TENANTS), { name: `net${i}`, netblock: networkBlock(i), provide_dhcp: false });
      networks[i] = body?.uuid;
      progress('POST /networks', i, plan.networks);
    });
    if (networks.some((u) => !u)) throw new Error(`POST /networks failed: ${lat.firstError.get('POST /networks')}`);
    await pool(plan.instances, CONCURRENCY, async (k) => {
      const host = `h${1 + Math.floor(k / plan.instancesPerHost)}`;
      const netns = `${plan.netnsPrefix}${String(k).padStart(4, '0')}`;
      const interfaces = Array.from({ length: IFACES_PER_INSTANCE }, (_, j) => ({ network: networks[(k + plan.instancesPerHost * j) % plan.networks] }));
      const body = await call('POST /instances (5 interfaces)', 'POST', '/instances', tenantToken(k % TENANTS), { name: `vm${k}`, host, netns, interfaces });
      if (host === 'h1' && body?.uuid) h1Instances.push({ uuid: body.uuid, netns, interfaces: body.interfaces.map((i: any) => i.uuid) });
      progress('POST /instances', k, plan.instances);
    });
    const failed = lat.errors.get('POST /instances (5 interfaces)');
    if (failed) throw new Error(`POST /instances failed ${failed} times, first: ${lat.firstError.get('POST /instances (5 interfaces)')}`);
  } else {
    // Reads, as tenants see them (a tenant owns 100 networks and 200 instances) and as the admin.
    const tenant = tenantToken(3);
    const nets = (await request(plan.api, 'GET', '/networks', tenant)).body as Array<{ uuid: string }>;
    const insts = (await request(plan.api, 'GET', '/instances', tenant)).body as Array<{ uuid: string; interfaces: Array<{ uuid: string }> }>;
    const pick = <T>(a: T[], i: number) => a[(i * 7919) % a.length];
    const reads: Array<[string, (i: number) => [string, string]]> = [
      ['GET /networks (tenant: 100)', () => ['/networks', tenant]],
      ['GET /networks/{uuid}', (i) => [`/networks/${pick(nets, i).uuid}`, tenant]],
      ['GET /networks/{uuid}/interfaces', (i) => [`/networks/${pick(nets, i).uuid}/interfaces`, tenant]],
      ['GET /networks/{uuid}/addresses', (i) => [`/networks/${pick(nets, i).uuid}/addresses`, tenant]],
      ['GET /networks/{uuid}/events', (i) => [`/networks/${pick(nets, i).uuid}/events`, tenant]],
      ['GET /instances (tenant: 200)', () => ['/instances', tenant]],
      ['GET /instances/{uuid}', (i) => [`/instances/${pick(insts, i).uuid}`, tenant]],
      ['GET /interfaces/{uuid}', (i) => [`/interfaces/${pick(insts, i).interfaces[i % IFACES_PER_INSTANCE].uuid}`, tenant]],
      ['GET /hosts', () => ['/hosts', SYSTEM_TOKEN]],
      ['GET /networks?all (system: 1000)', () => ['/networks?all=true', SYSTEM_TOKEN]],
    ];
    for (const [route, target] of reads) {
      log(route);
      await pool(ROUTE_SAMPLES, CONCURRENCY, async (i) => { const [p, tok] = target(i); await call(route, 'GET', p, tok); });
    }
    log('POST /interfaces/{uuid}/metadata');
    await pool(ROUTE_SAMPLES, CONCURRENCY, async (i) => {
      const iface = pick(insts, i).interfaces[i % IFACES_PER_INSTANCE].uuid;
      await call('POST /interfaces/{uuid}/metadata', 'POST', `/interfaces/${iface}/metadata`, tenant, { key: `k${i}`, value: 'v' });
    });
    anchors = await transportFloor([['GET /instances (tenant: 200)', '/instances', tenant], ['GET /networks?all (system: 1000)', '/networks?all=true', SYSTEM_TOKEN]]);
  }
  return { routes: lat.stats(), h1Instances, anchors };

  /** The big lists' bytes, as the API sent them, timed from a bare node:http server (bench/static-body-server.ts). */
  async function transportFloor(lists: Array<[string, string, string]>): Promise<Record<string, RouteStats>> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-floor-'));
    const files: Record<string, string> = {};
    try {
      for (const [, urlPath, token] of lists) {
        const { status, bytes } = await request(plan.api, 'GET', urlPath, token, undefined, 'bytes');
        if (status !== 200 || bytes === null) throw new Error(`GET ${urlPath} answered ${status}`);
        files[urlPath] = path.join(dir, `${Object.keys(files).length}.json`);
        writeFileSync(files[urlPath], bytes);
      }
      const server = spawn(process.execPath, ['--import', 'tsx', STATIC_SERVER, JSON.stringify(files)], { stdio: ['ignore', 'pipe', 'inherit'] });
      try {
        const port = await new Promise<string>((resolve, reject) => {
          server.stdout.once('data', (b: Buffer) => resolve(b.toString().trim()));
          server.once('exit', (code) => reject(new Error(`static body server exited ${code}`)));
        });
        const floor = new Latencies();
        for (const [route, urlPath] of lists) {
          log(`transport floor: ${route}`);
          await pool(ROUTE_SAMPLES, CONCURRENCY, () => floor.time(route, () => request(`http://127.0.0.1:${port}`, 'GET', urlPath, '', undefined, 'discard')).then(() => undefined));
        }
        return floor.stats();
      } finally {
        server.kill('SIGKILL');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

if (process.argv[1] === LOAD_CLIENT) {
  const plan = JSON.parse(process.env.APPNET_BENCH_LOAD ?? 'null') as LoadPlan;
  const result = await load(plan);
  agent.destroy();
  process.stdout.write(JSON.stringify(result));
}
