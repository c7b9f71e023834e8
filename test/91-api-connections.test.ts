// Application connections through the real REST API (fastify inject and a listening socket) and
// the `appnet` CLI as a child process, over a temp SQLite store. The data plane's reports are
// made by calling the repository hooks the reconciler will call (markEstablished, markWaiting,
// finishTermination) on a second repository over the same store, as another process would.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildApi } from '../control/api/app.ts';
import { ConnectionRepository } from '../control/repo/connections.ts';
import { InstanceRepository } from '../control/repo/instances.ts';
import { NetworkRepository } from '../control/repo/networks.ts';
import { openStore } from '../control/store/index.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'appnet.js');
const POOL = '198.19.0.0/24';
const TOKENS = new Map([
  ['tok-sys', 'system'],
  ['tok-a', 'alpha'],
  ['tok-b', 'beta'],
]);

type Body = Record<string, any>;

async function fixture(t: { teardown: (fn: () => Promise<void> | void) => void }, linkPool = '198.18.128.0/17') {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-conn-'));
  const store = await openStore(join(dir, 'store.db'));
  const app = buildApi({ store, tokens: TOKENS, floatingPool: POOL, linkPool });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(async () => {
    await app.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const port = (app.server.address() as { port: number }).port;
  const networks = new NetworkRepository({ store, floatingPool: POOL });
  const hooks = new ConnectionRepository({ store, instances: new InstanceRepository({ store, networks }), linkPool });
  const call = async (method: string, url: string, payload?: unknown, token = 'tok-a'): Promise<{ status: number; body: any }> => {
    const res = await app.inject({
      method: method as 'GET', url, headers: { authorization: `Bearer ${token}` }, ...(payload !== undefined ? { payload: payload as object } : {}),
    });
    return { status: res.statusCode, body: res.body === '' ? undefined : res.json() };
  };
  const instance = async (name: string, extra: Body = {}, token = 'tok-a'): Promise<Body> => {
    const res = await call('POST', '/instances', { name, host: extra.host ?? 'h1', ...extra }, token);
    if (res.status !== 200) throw new Error(JSON.stringify(res.body));
    return res.body;
  };
  const cli = (args: string[], token = 'tok-a') => run(args, { APPNET_API: `http://127.0.0.1:${port}`, APPNET_TOKEN: token });
  return { store, call, instance, hooks, cli };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string>): Promise<Run> {
  const base: NodeJS.ProcessEnv = { ...process.env, HOME: tmpdir(), ...env };
  delete base.APPNET_CONFIG;
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: base, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

function rowsOf(table: string): string[][] {
  return table.trimEnd().split('\n').map((l) => l.trim().split(/\s{2,}/));
}

const tuple = (source: string, outbound: string, target: string, inbound: string) => ({
  source_instance_id: source, outbound_name: outbound, target_instance_id: target, inbound_name: inbound,
});

test('instances declare inbounds and outbounds; bad declarations are 400 naming the field', async (t) => {
  const { call, instance } = await fixture(t);
  const sink = await instance('sink', { inbounds: [{ name: 'in', port: 5432 }, { name: 'dns', port: 53, protocol: 'udp' }] });
  t.deepEqual(sink.inbounds, [{ name: 'in', port: 5432, protocol: 'tcp' }, { name: 'dns', port: 53, protocol: 'udp' }]);
  t.deepEqual(sink.outbounds, []);
  t.deepEqual((await call('GET', '/instances/sink')).body.inbounds, sink.inbounds);
  const cases: [Body, string][] = [
    [{ inbounds: [{ name: 'in', port: 70000 }] }, 'inbounds.0.port must be an integer 1..65535 (the port the connection opens), got 70000'],
    [{ inbounds: [{ name: 'in' }] }, 'inbounds.0.port is required in the request body'],
    [{ outbounds: [{ name: 'x', required: 'yes' }] }, 'outbounds.0.required must be boolean'],
    [{ outbounds: [{ name: 'a-b' }, { name: 'A_B' }] }, 'Inbound/outbound name defined twice: outbounds.1.name "A_B" is the same name as outbounds.0.name (names are compared ignoring case and \'-\' vs \'_\')'],
  ];
  for (const [extra, error] of cases) {
    t.deepEqual((await call('POST', '/instances', { name: 'bad', host: 'h1', ...extra })).body, { error, status: 400 });
  }
});

test('add: every validation message through the API and the CLI, one outbound refused twice', async (t) => {
  const { call, instance, cli } = await fixture(t);
  // Not required: a required outbound is connected at deploy time (the deploy-time test below).
  const src = await instance('src', { outbounds: [{ name: 'db' }], inbounds: [{ name: 'self', port: 1 }] });
  const sink = await instance('sink', { host: 'h2', inbounds: [{ name: 'in', port: 5432 }] });
  const other = await instance('other', { inbounds: [{ name: 'in', port: 80 }] });
  await instance('theirs', { inbounds: [{ name: 'in', port: 80 }] }, 'tok-b');
  const refused: [Body, number, RegExp][] = [
    [tuple('', 'db', 'sink', 'in'), 400, /^source_instance_id cannot be empty$/],
    [tuple('src', '', 'sink', 'in'), 400, /^outbound_name cannot be empty$/],
    [tuple('src', 'db', '', 'in'), 400, /^target_instance_id cannot be empty$/],
    [tuple('src', 'db', 'sink', ''), 400, /^inbound_name cannot be empty$/],
    [{ outbound_name: 'db', target_instance_id: 'sink', inbound_name: 'in' }, 400, /^source_instance_id cannot be empty$/],
    [tuple('nosuch', 'db', 'sink', 'in'), 404, /^source_instance_id does not exist: no instance "nosuch"$/],
    [tuple('src', 'db', 'theirs', 'in'), 404, /^target_instance_id does not exist: no instance "theirs"$/],
    [tuple('src', 'nope', 'sink', 'in'), 400, /^outbound_name does not exist: instance src .*declares no outbound "nope" \(its outbounds: db\)$/],
    [tuple('src', 'db', 'sink', 'nope'), 400, /^inbound_name does not exist: instance sink .*\(its inbounds: in\)$/],
    [tuple('src', 'db', 'src', 'self'), 400, /^Can not create a connection between an inbound and an outbound of the same instance: src/],
    [{ ...tuple('src', 'db', 'sink', 'in'), colour: 'red' }, 400, /^unknown parameter "colour" in the request body/],
  ];
  for (const [body, status, message] of refused) {
    const res = await call('POST', '/connections', body);
    t.is(res.status, status, JSON.stringify(body));
    t.regex(res.body.error, message);
  }
  t.deepEqual((await call('GET', '/connections')).body, [], 'nothing was created by a refused add');

  const added = await call('POST', '/connections', tuple('src', 'db', 'sink', 'in'));
  t.is(added.status, 202);
  t.like(added.body, {
    source_instance_id: src.uuid, source_instance_name: 'src', outbound_name: 'db', outbound_required: false,
    target_instance_id: sink.uuid, target_instance_name: 'sink', inbound_name: 'in', inbound_port: 5432, inbound_protocol: 'tcp',
    status: 'WAITING', reason: null, link: { outbound_address: '198.18.128.0', inbound_address: '198.18.128.1', prefix_len: 31 },
  });
  t.true(Number.isInteger(added.body.vni) && added.body.vni > 0);
  const again = await call('POST', '/connections', tuple('src', 'db', 'sink', 'in'));
  t.is(again.status, 409);
  t.is(again.body.error, `connection already exists: src/db -> sink/in (connection ${added.body.connection_id}, WAITING)`);
  const elsewhere = await call('POST', '/connections', tuple(src.uuid, 'db', other.uuid, 'in'));
  t.is(elsewhere.status, 409);
  t.regex(elsewhere.body.error, /^source instance already have its outbound interface connected: src\/db -> sink\/in/);

  // Two adds of one outbound at the same time: the store's claim lets exactly one through.
  const racer = await instance('racer', { outbounds: [{ name: 'o' }] });
  const raced = await Promise.all([
    call('POST', '/connections', tuple(racer.uuid, 'o', 'sink', 'in')),
    call('POST', '/connections', tuple(racer.uuid, 'o', 'other', 'in')),
  ]);
  t.deepEqual(raced.map((r) => r.status).sort(), [202, 409]);
  t.regex(raced.find((r) => r.status === 409)!.body.error, /^source instance already have its outbound interface connected: racer\/o -> /);

  // The CLI shows the same messages on one line and exits 1; a wrong argument count is a usage error (2).
  const cliRefused = await cli(['add', 'src', 'db', 'other', 'in']);
  t.is(cliRefused.code, 1);
  t.regex(cliRefused.stderr, /^appnet: source instance already have its outbound interface connected: src\/db -> sink\/in.*\n$/);
  t.is(cliRefused.stderr.split('\n').length, 2);
  const cliEmpty = await cli(['add', 'src', '', 'sink', 'in']);
  t.is(cliEmpty.stderr, 'appnet: outbound_name cannot be empty\n');
  t.is((await cli(['add', 'src', 'db', 'sink'])).code, 2);
  t.is((await cli(['add', 'src', 'db', 'sink', 'in', 'extra'])).code, 2);
});

test('five sources to one sink on two hosts: each its own link, ESTABLISHED when reported, stable across WAITING', async (t) => {
  const { call, instance, hooks, cli } = await fixture(t);
  const sink = await instance('sink', { host: 'h1', inbounds: [{ name: 'in', port: 7000 }] });
  const sources: Body[] = [];
  for (let i = 0; i < 5; i++) sources.push(await instance(`src${i}`, { host: i % 2 === 0 ? 'h1' : 'h2', outbounds: [{ name: 'sink-svc' }] }));

  // Available outbounds hide connected ones; every inbound stays available.
  const avail = await cli(['outbound', 'available']);
  t.is(avail.code, 0, avail.stderr);
  t.deepEqual(rowsOf(avail.stdout)[0], ['INSTANCE_ID', 'INSTANCE_NAME', 'OUTBOUND_NAME', 'REQUIRED']);
  t.is(rowsOf(avail.stdout).length, 6);

  const ids: string[] = [];
  for (const [i, s] of sources.entries()) {
    const out = await cli(['add', s.name, 'sink-svc', 'sink', 'in', ...(i === 0 ? [] : ['--json'])]);
    t.is(out.code, 0, out.stderr);
    if (i === 0) {
      t.is(out.stdout, 'RESULT OK\n');
      t.deepEqual(rowsOf((await cli(['list'])).stdout)[1], [s.uuid, 'src0', 'sink-svc', sink.uuid, 'sink', 'in', 'WAITING']);
    } else {
      t.is(JSON.parse(out.stdout).status, 'WAITING');
    }
  }
  const listed = (await call('GET', '/connections')).body as Body[];
  t.is(listed.length, 5);
  ids.push(...listed.map((c) => c.connection_id));
  t.is(new Set(listed.map((c) => c.link.inbound_address)).size, 5, 'each connection has its own address to dial');
  t.is(new Set(listed.map((c) => c.vni)).size, 5, 'each link its own VNI');
  t.deepEqual((await call('GET', '/outbounds/available')).body, []);
  t.deepEqual((await call('GET', '/inbounds/available')).body, [
    { instance_id: sink.uuid, instance_name: 'sink', inbound_name: 'in', port: 7000, protocol: 'tcp' },
  ]);
  const inb = await cli(['inbound', 'available']);
  t.deepEqual(rowsOf(inb.stdout), [['INSTANCE_ID', 'INSTANCE_NAME', 'INBOUND_NAME', 'PORT', 'PROTOCOL'], [sink.uuid, 'sink', 'in', '7000', 'tcp']]);

  for (const id of ids) t.like(await hooks.markEstablished(id), { status: 'ESTABLISHED' });
  const table = await cli(['ls']);
  t.is(table.code, 0, table.stderr);
  const rows = rowsOf(table.stdout);
  t.deepEqual(rows[0], ['SOURCE_INSTANCE_ID', 'SOURCE_INSTANCE_NAME', 'OUTBOUND', 'TARGET_INSTANCE_ID', 'TARGET_INSTANCE_NAME', 'INBOUND', 'STATUS']);
  t.deepEqual(rows.slice(1).map((r) => r[6]), Array(5).fill('ESTABLISHED'));
  // `instance show` ends with Nalej's connections block, either side of the instance.
  const shownSink = rowsOf((await cli(['instance', 'show', 'sink'])).stdout);
  const head = shownSink.findIndex((r) => r[0] === 'SOURCE');
  t.deepEqual(shownSink[head], ['SOURCE', 'OUTBOUND', 'TARGET', 'INBOUND', 'REQUIRED', 'STATUS']);
  t.deepEqual(shownSink.slice(head + 1).map((r) => r.join(' ')).sort(), sources.map((s) => `${s.name} sink-svc sink in FALSE ESTABLISHED`).sort());
  const shownSrc = rowsOf((await cli(['instance', 'show', 'src0'])).stdout);
  t.deepEqual(shownSrc.slice(shownSrc.findIndex((r) => r[0] === 'SOURCE') + 1), [['src0', 'sink-svc', 'sink', 'in', 'FALSE', 'ESTABLISHED']]);

  // The sink's host goes away: WAITING with the reason, then back, with the same addresses.
  const before = new Map(listed.map((c) => [c.connection_id, c.link]));
  for (const id of ids) await hooks.markWaiting(id, 'host h1 stopped answering');
  // STATUS is bare (scripts split rows on whitespace); the reason is in -o wide and --json.
  const waiting = rowsOf((await cli(['list'])).stdout);
  t.deepEqual(waiting.slice(1).map((r) => r.length), Array(5).fill(7));
  t.deepEqual(waiting.slice(1).map((r) => r[6]), Array(5).fill('WAITING'));
  const wide = (await cli(['list', '-o', 'wide'])).stdout.split('\n').filter((l) => l !== '');
  t.regex(wide[0]!, /STATUS\s+REASON$/);
  t.true(wide.slice(1).every((l) => /WAITING\s+host h1 stopped answering$/.test(l)), wide.join('\n'));
  t.is((await cli(['list', '-o', 'tall'])).code, 1);
  const shownConn = (await cli(['connection', 'show', ids[0]!])).stdout;
  t.regex(shownConn, /^reason\s+host h1 stopped answering$/m);
  t.regex(shownConn, /^status\s+WAITING$/m);
  for (const id of ids) await hooks.markEstablished(id);
  for (const c of (await call('GET', '/connections')).body as Body[]) {
    t.is(c.status, 'ESTABLISHED');
    t.deepEqual(c.link, before.get(c.connection_id));
  }
  const events = (await call('GET', `/connections/${ids[0]}/events`)).body as Body[];
  t.deepEqual(events.map((e) => [e.from, e.to]), [[null, 'WAITING'], ['WAITING', 'ESTABLISHED'], ['ESTABLISHED', 'WAITING'], ['WAITING', 'ESTABLISHED']]);
  t.is(events[2].reason, 'host h1 stopped answering');

  // The source finds its peer by a stable name; the env command prints it.
  const env = await cli(['instance', 'env', 'src0']);
  t.is(env.code, 0, env.stderr);
  t.is(env.stdout, `APPNET_OUTBOUND_SINK_SVC=sink-svc.${sources[0].uuid.slice(0, 8)}.appnet\n`);
  const envJson = (await call('GET', '/instances/src0/env')).body as Body[];
  t.like(envJson[0], { name: 'APPNET_OUTBOUND_SINK_SVC', address: before.get(envJson[0].connection_id).inbound_address, port: 7000, status: 'ESTABLISHED' });
  // Other namespaces see none of it.
  t.deepEqual((await call('GET', '/connections', undefined, 'tok-b')).body, []);
  t.is((await call('GET', `/connections/${ids[0]}`, undefined, 'tok-b')).status, 404);
  t.is((await call('GET', '/connections', undefined, 'tok-sys')).body.length, 5);
});

test('removing a required outbound needs --force; TERMINATED, then gone when the data plane finishes', async (t) => {
  const { call, instance, hooks, cli } = await fixture(t);
  await instance('sink', { inbounds: [{ name: 'in', port: 5432 }] });
  // A required outbound is connected when the instance is deployed.
  await instance('src', { outbounds: [{ name: 'db', required: true }, { name: 'log' }], connect: [{ outbound: 'db', target: 'sink', inbound: 'in' }] });
  const req = ((await call('GET', '/connections')).body as Body[]).find((c) => c.outbound_name === 'db')!;
  const opt = (await call('POST', '/connections', tuple('src', 'log', 'sink', 'in'))).body;
  await hooks.markEstablished(req.connection_id);

  const refused = await cli(['remove', 'src', 'db', 'sink', 'in']);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /^appnet: A connection in which the outbound is required cannot be deleted; the application could have an unexpected result\. If it must be deleted, user confirmation is required: src\/db -> sink\/in \(use --force, or force=true\)\n$/);
  const api = await call('DELETE', `/connections/${req.connection_id}`);
  t.is(api.status, 403);
  t.is((await call('GET', `/connections/${req.connection_id}`)).body.status, 'ESTABLISHED', 'a refused removal changes nothing');

  const forced = await cli(['rm', 'src', 'db', 'sink', 'in', '--force']);
  t.is(forced.code, 0, forced.stderr);
  t.is(forced.stdout, 'RESULT OK\n');
  t.is((await call('GET', `/connections/${req.connection_id}`)).body.status, 'TERMINATED');
  // A late "up" from the data plane does not resurrect it.
  t.like(await hooks.markEstablished(req.connection_id), { status: 'TERMINATED' });
  t.deepEqual((await call('GET', '/outbounds/available')).body, [], 'a terminating connection still holds its outbound');
  await hooks.finishTermination(req.connection_id);
  t.is((await call('GET', `/connections/${req.connection_id}`)).status, 404);
  t.deepEqual((await call('GET', `/connections/${req.connection_id}/events`)).body.map((e: Body) => e.to), ['WAITING', 'ESTABLISHED', 'TERMINATED', null]);
  t.deepEqual((await call('GET', '/outbounds/available')).body.map((r: Body) => r.outbound_name), ['db']);

  // Not required: no force needed; by the four fields through REST; missing: 404.
  const del = await call('DELETE', '/connections', tuple('src', 'log', 'sink', 'in'));
  t.is(del.status, 202);
  t.is(del.body.status, 'TERMINATED');
  await hooks.finishTermination(opt.connection_id);
  const missing = await cli(['delete', 'src', 'log', 'sink', 'in']);
  t.is(missing.stderr, 'appnet: connection does not exist: src/log -> sink/in\n');
  // The freed outbound and address can be used again.
  const readd = await call('POST', '/connections', tuple('src', 'db', 'sink', 'in'));
  t.is(readd.status, 202);
  t.is(readd.body.link.outbound_address, '198.18.128.0');
});

test('connections at deploy time: --connect and connect[]; a required outbound not filled is refused, nothing written', async (t) => {
  const { call, instance, cli } = await fixture(t);
  await instance('sink', { inbounds: [{ name: 'in', port: 5432 }] });
  const refused = await call('POST', '/instances', { name: 'app', host: 'h1', outbounds: [{ name: 'db', required: true }, { name: 'log' }] });
  t.is(refused.status, 400);
  t.is(refused.body.error, 'Required outbound not filled: db');
  t.is((await call('GET', '/instances/app')).status, 404, 'nothing was written');
  const cliRefused = await cli(['instance', 'create', 'app', '--host', 'h1', '--outbound', 'db:required']);
  t.is(cliRefused.code, 1);
  t.is(cliRefused.stderr, 'appnet: Required outbound not filled: db\n');
  const bad = await call('POST', '/instances', { name: 'app', host: 'h1', outbounds: [{ name: 'db' }], connect: [{ outbound: 'nope', target: 'sink', inbound: 'in' }] });
  t.is(bad.status, 400);
  t.regex(bad.body.error, /connect\.0\.outbound "nope" is not an outbound of the instance/);
  // A target inbound that does not exist: the API's own message, and the instance is gone again.
  const noInbound = await call('POST', '/instances', { name: 'app', host: 'h1', outbounds: [{ name: 'db' }], connect: [{ outbound: 'db', target: 'sink', inbound: 'other' }] });
  t.true(noInbound.status >= 400 && noInbound.status < 500, JSON.stringify(noInbound.body));
  t.is((await call('GET', '/instances/app')).status, 404);

  const made = await cli(['instance', 'create', 'app', '--host', 'h1', '--outbound', 'db:required', '--connect', 'db=sink:in', '--json']);
  t.is(made.code, 0, made.stderr);
  const conns = (await call('GET', '/connections')).body as Body[];
  t.deepEqual(conns.map((c) => [c.source_instance_name, c.outbound_name, c.target_instance_name, c.inbound_name, c.outbound_required, c.status]), [['app', 'db', 'sink', 'in', true, 'WAITING']]);
  t.is((await cli(['instance', 'create', 'x', '--host', 'h1', '--connect', 'db-sink:in'])).code, 2, 'a malformed --connect is a usage error');
});

test('deleting an instance with inbound connections needs force; its connections pass through TERMINATED', async (t) => {
  const { call, instance, hooks, cli } = await fixture(t);
  await instance('a', { outbounds: [{ name: 'up' }] });
  const sink = await instance('sink', { inbounds: [{ name: 'in', port: 80 }], outbounds: [{ name: 'next' }] });
  await instance('far', { inbounds: [{ name: 'in', port: 81 }] });
  const c1 = (await call('POST', '/connections', tuple('a', 'up', 'sink', 'in'))).body;
  await instance('b', { outbounds: [{ name: 'up', required: true }], connect: [{ outbound: 'up', target: 'sink', inbound: 'in' }] });
  const c2 = ((await call('GET', '/connections')).body as Body[]).find((c) => c.source_instance_name === 'b')!;
  const c3 = (await call('POST', '/connections', tuple('sink', 'next', 'far', 'in'))).body;

  const refused = await call('DELETE', '/instances/sink');
  t.is(refused.status, 403);
  t.regex(refused.body.error, /^can not delete the instance, it has inbound connections\. User confirmation required: sink .* has 2 \(a\/up -> sink\/in, b\/up -> sink\/in\); use --force/);
  const cliRefused = await cli(['instance', 'delete', 'sink']);
  t.is(cliRefused.code, 1);
  t.regex(cliRefused.stderr, /^appnet: can not delete the instance, it has inbound connections/);
  t.is((await call('GET', '/instances/sink')).status, 200, 'still there');

  // An instance with only outbound connections goes without force.
  const forced = await cli(['instance', 'delete', 'sink', '--force', '--json']);
  t.is(forced.code, 0, forced.stderr);
  t.is(JSON.parse(forced.stdout).uuid, sink.uuid);
  for (const c of [c1, c2, c3]) {
    const now = (await call('GET', `/connections/${c.connection_id}`)).body;
    t.like(now, { status: 'TERMINATED', reason: 'instance sink deleted' });
    await hooks.finishTermination(c.connection_id);
    t.deepEqual((await call('GET', `/connections/${c.connection_id}/events`)).body.map((e: Body) => e.to), ['WAITING', 'TERMINATED', null]);
  }
  t.deepEqual((await call('GET', '/connections')).body, []);
  t.deepEqual((await call('GET', '/outbounds/available')).body.map((r: Body) => r.instance_name), ['a', 'b']);
  t.is((await call('DELETE', '/instances/a?force=maybe')).status, 400);
});

test('an exhausted link pool puts the connection in ERROR with its reason; add exits 1, list shows it', async (t) => {
  const { call, instance, hooks, cli } = await fixture(t, '198.18.200.0/30');
  await instance('sink', { inbounds: [{ name: 'in', port: 80 }] });
  for (const name of ['s1', 's2', 's3']) await instance(name, { outbounds: [{ name: 'o' }] });
  t.is((await call('POST', '/connections', tuple('s1', 'o', 'sink', 'in'))).body.link.inbound_address, '198.18.200.1');
  t.is((await call('POST', '/connections', tuple('s2', 'o', 'sink', 'in'))).body.link.inbound_address, '198.18.200.3');
  const third = await cli(['add', 's3', 'o', 'sink', 'in']);
  t.is(third.code, 1);
  const reason = 'no free link address: the link pool 198.18.200.0/30 has all 2 address pairs in use; remove unused connections or configure a larger link pool';
  t.is(third.stdout, '', 'no RESULT OK for a connection in ERROR');
  const listed3 = rowsOf((await cli(['list'])).stdout).find((r) => r[1] === 's3')!;
  t.is(listed3[6], 'ERROR');
  t.regex(third.stderr, new RegExp(`^appnet: connection [0-9a-f-]+ is in ERROR: no free link address`));
  const err = ((await call('GET', '/connections')).body as Body[]).find((c) => c.source_instance_name === 's3')!;
  t.like(err, { status: 'ERROR', reason, link: null });
  t.deepEqual((await call('GET', `/connections/${err.connection_id}/events`)).body.map((e: Body) => [e.from, e.to]), [[null, 'WAITING'], ['WAITING', 'ERROR']]);
  await t.throwsAsync(hooks.markEstablished(err.connection_id), { message: /is ERROR: link-up is not allowed/ });
  // Removing it and a working one frees an address for a fresh add.
  await call('DELETE', `/connections/${err.connection_id}`);
  await hooks.finishTermination(err.connection_id);
  const first = ((await call('GET', '/connections')).body as Body[])[0];
  await call('DELETE', `/connections/${first.connection_id}`);
  await hooks.finishTermination(first.connection_id);
  const fresh = await call('POST', '/connections', tuple('s3', 'o', 'sink', 'in'));
  t.like(fresh.body, { status: 'WAITING', link: { inbound_address: '198.18.200.1' } });
});
