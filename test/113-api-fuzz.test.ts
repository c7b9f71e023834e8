// A property test over the whole REST API as /openapi.json documents it (issue 13 item 4): random
// path parameters, query strings and JSON bodies (also on GET and DELETE, as Shaken Fist's client
// sends them), with a system, a tenant or no token, never get a 5xx. The API runs in-process
// (fastify inject) over a real SQLite store holding a created network, an instance and a DNS entry,
// so that random requests also reach real objects. The ping route runs with a stand-in for the
// network services (it answers an empty ping); captures and link keys need a packet engine and are
// not registered here: their input checks are covered by their own tests (70, 71).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import fc from 'fast-check';
import { buildApi } from '../control/api/app.ts';
import { registerDnsRoutes } from '../control/api/dns-route.ts';
import { registerHostRoutes } from '../control/api/hosts-route.ts';
import { registerNatRoutes } from '../control/api/nat-routes.ts';
import { registerServicesRoutes } from '../control/api/services-routes.ts';
import { StateView } from '../control/repo/state-view.ts';
import { HostRegistry } from '../control/repo/hosts.ts';
import { NetworkRepository } from '../control/repo/networks.ts';
import { openStore } from '../control/store/index.ts';

const POOL = '198.19.0.0/24';
const TOKENS = new Map([['fuzz-system-token-0123', 'system'], ['fuzz-tenant-token-0123', 'tenant']]);

test('no request built from /openapi.json gets a 5xx', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'appnet-fuzz-'));
  const store = await openStore(path.join(dir, 'store.db'));
  const app = buildApi({ store, tokens: TOKENS, floatingPool: POOL, authRateLimit: { burst: 1000 } });
  const networks = new NetworkRepository({ store, floatingPool: POOL });
  registerDnsRoutes(app, { store, networks });
  registerNatRoutes(app, { store, networks });
  registerHostRoutes(app, new HostRegistry(store), store);
  const view = new StateView(store);
  await view.start();
  registerServicesRoutes(app, { networks, view, host: 'h1', services: { serves: () => true, ping: async () => ({ stdout: [], stderr: [] }) } });
  await app.ready();
  t.teardown(async () => {
    await app.close();
    await view.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const sys = { authorization: 'Bearer fuzz-system-token-0123' };
  const net = (await app.inject({ method: 'POST', url: '/networks', headers: sys, payload: { netblock: '198.18.113.0/24', name: 'n1', provide_dns: true, namespace: 'tenant' } })).json();
  await networks.markCreated(net.uuid);
  const inst = (await app.inject({ method: 'POST', url: '/instances', headers: sys, payload: { name: 'vm', host: 'h1', interfaces: [{ network: net.uuid }], namespace: 'tenant' } })).json();
  await app.inject({ method: 'POST', url: `/networks/${net.uuid}/dns`, headers: sys, payload: { name: 'db', value: '198.18.113.20' } });
  await app.inject({ method: 'POST', url: '/auth/namespaces', headers: sys, payload: { namespace: 'other', key_name: 'k', key: 'other-key-123' } });

  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string }>; requestBody?: { content: { 'application/json': { schema: { properties?: object } } } } }>> };
  const routes = Object.entries(doc.paths).flatMap(([p, ops]) => Object.entries(ops).map(([verb, op]) => ({
    method: verb.toUpperCase() as 'GET', path: p,
    query: (op.parameters ?? []).filter((x) => x.in === 'query').map((x) => x.name),
    fields: Object.keys(op.requestBody?.content['application/json'].schema.properties ?? {}),
  })));
  t.true(routes.length >= 40, `${routes.length} routes`);

  const known = [net.uuid, 'n1', inst.uuid, inst.interfaces[0].uuid, 'db', 'tenant', 'other', 'k', '198.18.113.20', '198.19.0.5', 'floating'];
  const text = fc.oneof(fc.constantFrom(...known), fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 12 }), fc.constantFrom('', '..', '%', '0', '-1', '1e999', 'null', 'true', '198.18.113.0/24'));
  const jsonValue = fc.oneof(text, fc.jsonValue({ maxDepth: 3 }), fc.boolean(), fc.integer(), fc.constant(null), fc.double());
  const request = fc.record({
    route: fc.constantFrom(...routes),
    params: fc.array(text, { minLength: 3, maxLength: 3 }),
    query: fc.array(fc.tuple(fc.oneof(fc.constantFrom('all', 'limit', 'count', 'force', 'namespace', 'event_type', 'forwarded'), fc.string({ maxLength: 8 })), text), { maxLength: 3 }),
    body: fc.oneof(
      fc.constant(undefined),
      fc.dictionary(fc.oneof(fc.constantFrom('namespace', 'key', 'value', 'name', 'netblock', 'confirm', 'clean_wait', 'interfaces', 'all', 'key_name'), fc.string({ maxLength: 8 })), jsonValue, { maxKeys: 5 }),
      jsonValue,
      fc.string({ maxLength: 30 }).map((s) => ({ raw: s })),
    ),
    fieldValues: fc.array(jsonValue, { minLength: 8, maxLength: 8 }),
    useFields: fc.boolean(),
    token: fc.constantFrom<Record<string, string>>(sys, { authorization: 'Bearer fuzz-tenant-token-0123' }, {}, { authorization: 'Bearer x.y.z' }),
  });

  const statuses = new Map<number, number>();
  await fc.assert(fc.asyncProperty(request, async (r) => {
    let i = 0;
    const url = r.route.path.replace(/\{\w+\}/g, () => encodeURIComponent(r.params[i++ % 3]));
    const qs = new URLSearchParams([...r.route.query.map((q, j) => [q, String(r.fieldValues[j] ?? '')] as [string, string]).slice(0, r.useFields ? 2 : 0), ...r.query]).toString();
    let payload: string | undefined;
    let type = 'application/json';
    if (r.useFields && r.route.fields.length > 0) payload = JSON.stringify(Object.fromEntries(r.route.fields.map((f, j) => [f, r.fieldValues[j % 8]])));
    else if (r.body && typeof r.body === 'object' && 'raw' in r.body && Object.keys(r.body).length === 1) { payload = String((r.body as { raw: unknown }).raw); type = 'text/plain'; }
    else if (r.body !== undefined) payload = JSON.stringify(r.body);
    const res = await app.inject({ method: r.route.method, url: qs ? `${url}?${qs}` : url, headers: { ...r.token, ...(payload !== undefined ? { 'content-type': type } : {}) }, ...(payload !== undefined ? { payload } : {}) });
    statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
    if (res.statusCode >= 500) throw new Error(`${r.route.method} ${url}?${qs} body ${payload}: ${res.statusCode} ${res.body}`);
    // Every error is in the reference's shape, naming what was wrong.
    if (res.statusCode >= 400 && res.headers['content-type']?.toString().startsWith('application/json')) {
      const body = res.json() as { error?: unknown; status?: number };
      if (body.status !== res.statusCode || body.error === undefined) throw new Error(`${r.route.method} ${url}: error body ${res.body}`);
    }
  }), { numRuns: Number(process.env.FUZZ_RUNS ?? 400), seed: Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31) });
  t.log('statuses', JSON.stringify(Object.fromEntries(statuses)));
  t.true([...statuses.keys()].some((s) => s === 200), 'some requests succeeded, so the fuzz reached the handlers');
  t.true([...statuses.keys()].some((s) => s === 400), 'some were refused as malformed');
});
