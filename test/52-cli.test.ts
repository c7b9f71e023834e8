// The `appnet` CLI as a child process against a real API (buildApi over a temp SQLite store).
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildApi } from '../control/api/app.ts';
import { resolveConfig } from '../control/cli/config.ts';
import { parseNetDesc } from '../control/cli/commands/instance.ts';
import { formatTable } from '../control/cli/table.ts';
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

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['APPNET_API', 'APPNET_TOKEN', 'APPNET_CONFIG']) delete base[k];
  // Keep the user's real config files out of the way.
  base.HOME = tmpdir();
  for (const [k, v] of Object.entries(env)) if (v !== undefined) base[k] = v;
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: base, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

async function api(t: { teardown: (fn: () => Promise<void> | void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-cli-'));
  const store = await openStore(join(dir, 'store.db'));
  const app = buildApi({ store, tokens: TOKENS, floatingPool: POOL });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  t.teardown(async () => {
    await app.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const url = `http://127.0.0.1:${address.port}`;
  return { url, dir, store, env: (token = 'tok-a') => ({ APPNET_API: url, APPNET_TOKEN: token }) };
}

/** A port with nothing listening on it. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

function rowsOf(table: string): string[][] {
  return table.trimEnd().split('\n').map((l) => l.trim().split(/\s{2,}/));
}

test('unit: table alignment, netdesc parsing, config precedence', (t) => {
  t.is(formatTable(['a', 'long'], [['xyz', 1], [null, true]]), 'A    LONG\nxyz  1\n-    yes\n');
  t.deepEqual(parseNetDesc('net1,address=10.0.0.5,mac=02:00:00:00:00:01'), {
    network: 'net1', address: '10.0.0.5', macaddr: '02:00:00:00:00:01',
  });
  t.throws(() => parseNetDesc('net1,colour=red'), { message: /unknown key "colour"/ });
  const dir = mkdtempSync(join(tmpdir(), 'appnet-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ api: 'http://file:1', token: 'file-tok' }));
  t.like(resolveConfig({ env: {}, candidates: [] }), { api: 'http://127.0.0.1:7878', token: undefined });
  t.like(resolveConfig({ env: { APPNET_CONFIG: file } }), { api: 'http://file:1', token: 'file-tok' });
  t.like(resolveConfig({ env: {}, candidates: [join(dir, 'missing.json'), file] }), { api: 'http://file:1' });
  t.like(resolveConfig({ env: { APPNET_CONFIG: file, APPNET_TOKEN: 'env-tok' } }), { api: 'http://file:1', token: 'env-tok' });
  t.like(resolveConfig({ flags: { api: 'http://flag:2/' }, env: { APPNET_API: 'http://env:3', APPNET_CONFIG: file } }), {
    api: 'http://flag:2', token: 'file-tok',
  });
  t.throws(() => resolveConfig({ env: { APPNET_CONFIG: join(dir, 'missing.json') } }), { message: /cannot read config file/ });
  t.throws(() => resolveConfig({ flags: { api: 'ftp://x' }, env: {}, candidates: [] }), { message: /not an http\(s\) URL/ });
});

test('network create, list, show, delete: tables and --json', async (t) => {
  const { env } = await api(t);
  const created = await run(['network', 'create', 'net1', '198.18.4.0/24', '--no-nat', '--dns', '--json'], env());
  t.is(created.code, 0, created.stderr);
  const view = JSON.parse(created.stdout);
  t.like(view, { name: 'net1', namespace: 'alpha', netblock: '198.18.4.0/24', state: 'initial', provide_dhcp: true, provide_nat: false, provide_dns: true });

  const second = await run(['network', 'create', 'net2', '198.18.5.0/29', '--no-dhcp'], env());
  t.is(second.code, 0, second.stderr);
  const showRows = rowsOf(second.stdout);
  t.deepEqual(showRows[0], ['FIELD', 'VALUE']);
  t.deepEqual(showRows.find((r) => r[0] === 'name'), ['name', 'net2']);
  t.deepEqual(showRows.find((r) => r[0] === 'provide_dhcp'), ['provide_dhcp', 'no']);

  const list = await run(['network', 'list'], env());
  t.is(list.code, 0, list.stderr);
  const rows = rowsOf(list.stdout);
  t.deepEqual(rows[0], ['UUID', 'NAME', 'NAMESPACE', 'NETBLOCK', 'STATE', 'VXLAN_ID', 'DHCP', 'NAT', 'DNS', 'ENCRYPT']);
  t.is(rows.length, 3);
  t.deepEqual(rows[1], [view.uuid, 'net1', 'alpha', '198.18.4.0/24', 'initial', String(view.vxlan_id), 'yes', 'no', 'yes', 'no']);
  // Header and rows align: each column starts at the same offset.
  const lines = list.stdout.split('\n');
  t.is(lines[0].indexOf('NAME'), lines[1].indexOf('net1'));

  const listJson = await run(['network', 'list', '--json'], env());
  t.deepEqual(JSON.parse(listJson.stdout).map((n: { name: string }) => n.name), ['net1', 'net2']);
  // --json before the noun works too (global option); other namespaces do not see these networks.
  t.deepEqual(JSON.parse((await run(['--json', 'network', 'list'], env('tok-b'))).stdout), []);

  const show = await run(['network', 'show', 'net1', '--json'], env());
  t.deepEqual(JSON.parse(show.stdout), view);
  const showTable = await run(['network', 'show', view.uuid], env());
  t.deepEqual(rowsOf(showTable.stdout).find((r) => r[0] === 'uuid'), ['uuid', view.uuid]);

  const meta = await run(['network', 'metadata', 'set', 'net1', 'owner', 'ops'], env());
  t.is(meta.code, 0, meta.stderr);
  t.deepEqual(rowsOf(meta.stdout), [['KEY', 'VALUE'], ['owner', 'ops']]);
  t.deepEqual(JSON.parse((await run(['network', 'metadata', 'net1', '--json'], env())).stdout), { owner: 'ops' });
  t.deepEqual(JSON.parse((await run(['network', 'metadata', 'delete', 'net1', 'owner', '--json'], env())).stdout), {});

  const events = await run(['network', 'events', 'net1', '--limit', '2', '--json'], env());
  t.is(JSON.parse(events.stdout).length, 2);
  const eventsTable = await run(['network', 'events', 'net1', '--type', 'audit'], env());
  t.deepEqual(rowsOf(eventsTable.stdout)[0], ['TIME', 'TYPE', 'FQDN', 'DURATION', 'MESSAGE']);
  t.regex(eventsTable.stdout, /create request from REST API/);

  const addresses = await run(['network', 'addresses', 'net2'], env());
  t.is(addresses.code, 0, addresses.stderr);
  const addrRows = rowsOf(addresses.stdout);
  t.deepEqual(addrRows.map((r) => [r[0], r[1]]), [['ADDRESS', 'TYPE'], ['198.18.5.0', 'network'], ['198.18.5.1', 'gateway'], ['198.18.5.7', 'broadcast']]);

  const del = await run(['network', 'delete', 'net1', '--json'], env());
  t.is(del.code, 0, del.stderr);
  t.is(JSON.parse(del.stdout).state, 'deleted');
  const again = await run(['network', 'delete', view.uuid], env());
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /already deleted/);
  t.deepEqual(JSON.parse((await run(['network', 'list', '--json'], env())).stdout).map((n: { name: string }) => n.name), ['net2']);
  t.is(JSON.parse((await run(['network', 'list', '--all', '--json'], env())).stdout).length, 2);
});

test('API errors: one line on stderr, exit 1; usage errors exit 2', async (t) => {
  const { env } = await api(t);
  const bad = await run(['network', 'create', 'x', '198.18.4.1/24'], env());
  t.is(bad.code, 1);
  t.is(bad.stdout, '');
  t.regex(bad.stderr, /^appnet: cannot parse netblock: .*host bits set.*\n$/);
  t.is(bad.stderr.split('\n').length, 2);

  const ns = await run(['network', 'create', 'x', '198.18.4.0/24', '--namespace', 'gamma'], env('tok-sys'));
  t.is(ns.code, 1);
  t.is(ns.stderr, 'appnet: namespace "gamma" not found\n');

  const missing = await run(['network', 'show', 'nope'], env());
  t.is(missing.code, 1);
  t.regex(missing.stderr, /^appnet: network not found: "nope"\n$/);

  const unauth = await run(['network', 'list'], { APPNET_API: env().APPNET_API });
  t.is(unauth.code, 1);
  t.regex(unauth.stderr, /^appnet: no bearer token/);

  const usage = await run(['network', 'create', 'onlyname'], env());
  t.is(usage.code, 2);
  t.regex(usage.stderr, /missing required argument/);
  t.is((await run(['network', 'frobnicate'], env())).code, 2);
  t.is((await run(['network', 'events', 'x', '--limit', 'zero'], env())).code, 2);
  const help = await run(['--help']);
  t.is(help.code, 0);
  t.regex(help.stdout, /network/);
});

test('unreachable API: one-line "cannot reach", exit 1', async (t) => {
  const port = await deadPort();
  const res = await run(['network', 'list'], { APPNET_API: `http://127.0.0.1:${port}`, APPNET_TOKEN: 'tok-a' });
  t.is(res.code, 1);
  t.regex(res.stderr, new RegExp(`^appnet: cannot reach the appnet API at http://127\\.0\\.0\\.1:${port}: is appnetd running\\?.*\\n$`));
  t.is(res.stderr.split('\n').length, 2);
});

test('config file via APPNET_CONFIG; flags beat env, env beats the file', async (t) => {
  const { url, dir, env } = await api(t);
  const dead = `http://127.0.0.1:${await deadPort()}`;
  const file = join(dir, 'cli.json');
  writeFileSync(file, JSON.stringify({ api: url, token: 'tok-a' }));
  await run(['network', 'create', 'mine', '198.18.4.0/24'], env());

  const fromFile = await run(['network', 'list', '--json'], { APPNET_CONFIG: file });
  t.is(fromFile.code, 0, fromFile.stderr);
  t.deepEqual(JSON.parse(fromFile.stdout).map((n: { name: string }) => n.name), ['mine']);

  // Env token beats the file's: beta sees nothing.
  const envTok = await run(['network', 'list', '--json'], { APPNET_CONFIG: file, APPNET_TOKEN: 'tok-b' });
  t.deepEqual(JSON.parse(envTok.stdout), []);
  // Flags beat env: a dead env API and a bad env token are overridden.
  const flags = await run(['network', 'list', '--json', '--api', url, '--token', 'tok-a'], { APPNET_API: dead, APPNET_TOKEN: 'bogus' });
  t.is(flags.code, 0, flags.stderr);
  t.is(JSON.parse(flags.stdout).length, 1);
  const globalFlags = await run(['--api', url, '--token', 'tok-b', 'network', 'list', '--json'], env('tok-a'));
  t.deepEqual(JSON.parse(globalFlags.stdout), []);
  // Env API beats the file's.
  const envApi = await run(['network', 'list'], { APPNET_CONFIG: file, APPNET_API: dead });
  t.is(envApi.code, 1);
  t.regex(envApi.stderr, /cannot reach the appnet API/);
  // A missing explicit config file is a one-line error.
  const gone = await run(['network', 'list'], { APPNET_CONFIG: join(dir, 'gone.json') });
  t.is(gone.code, 1);
  t.regex(gone.stderr, /^appnet: cannot read config file .*gone\.json: ENOENT\n$/);
});

test('instance commands: create, list, show, interfaces, delete', async (t) => {
  const { env, store } = await api(t);
  const bad = await run(['instance', 'create', 'vm1', '--host', 'h1', '--network', 'net1,colour=red'], env());
  t.is(bad.code, 2);
  t.regex(bad.stderr, /unknown key "colour"/);
  const net = JSON.parse((await run(['network', 'create', 'inet', '198.18.6.0/24', '--json'], env())).stdout);
  await new NetworkRepository({ store, floatingPool: POOL }).markCreated(net.uuid);
  const created = await run(['instance', 'create', 'vm1', '--host', 'h1', '--network', 'inet,address=198.18.6.10', '--json'], env());
  t.is(created.code, 0, created.stderr);
  const vm = JSON.parse(created.stdout);
  t.like(vm, { name: 'vm1', host: 'h1' });
  const list = await run(['instance', 'list'], env());
  t.is(list.code, 0, list.stderr);
  t.regex(list.stdout, /^UUID\s+NAME/);
  t.regex(list.stdout, /vm1/);
  const show = await run(['instance', 'show', 'vm1'], env());
  t.is(show.code, 0, show.stderr);
  t.regex(show.stdout, /198\.18\.6\.10/);
  const ifaces = await run(['instance', 'interfaces', 'vm1', '--json'], env());
  t.is(ifaces.code, 0, ifaces.stderr);
  const rows = JSON.parse(ifaces.stdout);
  t.is(rows[0].ipv4, '198.18.6.10');
  const onNet = await run(['network', 'interfaces', 'inet'], env());
  t.is(onNet.code, 0, onNet.stderr);
  t.regex(onNet.stdout, new RegExp(rows[0].uuid));
  const iface = await run(['interface', 'show', rows[0].uuid, '--json'], env());
  t.is(iface.code, 0, iface.stderr);
  t.is(JSON.parse(iface.stdout).uuid, rows[0].uuid);
  const del = await run(['instance', 'delete', 'vm1'], env());
  t.is(del.code, 0, del.stderr);
});

test('instance errors: 409 taken address, 406 network not ready, 507 full, 404: one line each, exit 1', async (t) => {
  const { env } = await api(t);
  const net = JSON.parse((await run(['network', 'create', 'small', '198.18.7.0/29', '--json'], env())).stdout);
  t.is((await run(['instance', 'create', 'vm0', '--host', 'h1', '--network', 'small,address=198.18.7.2'], env())).code, 0);
  const taken = await run(['instance', 'create', 'vm1', '--host', 'h1', '--network', 'small,address=198.18.7.2'], env());
  t.is(taken.code, 1);
  t.regex(taken.stderr, /^appnet: address 198\.18\.7\.2 in 198\.18\.7\.0\/29 is already in use [^\n]+\n$/);
  // .3 .. .6 are left: four fit, the fifth is 507.
  for (let i = 1; i <= 4; i++) t.is((await run(['instance', 'create', `vm${i}`, '--host', 'h1', '--network', 'small'], env())).code, 0);
  const full = await run(['instance', 'create', 'vm5', '--host', 'h1', '--network', 'small'], env());
  t.is(full.code, 1);
  t.regex(full.stderr, /^appnet: network 198\.18\.7\.0\/29 has no free addresses: [^\n]+\n$/);
  t.is((await run(['network', 'delete', 'small'], env())).code, 0); // has interfaces: delete-wait
  const notReady = await run(['instance', 'create', 'vm6', '--host', 'h1', '--network', net.uuid], env());
  t.is(notReady.code, 1);
  t.is(notReady.stderr, `appnet: network ${net.uuid} is not ready (delete-wait); interfaces.0 cannot attach to it\n`);
  const missing = await run(['instance', 'show', 'nope'], env());
  t.is(missing.code, 1);
  t.is(missing.stderr, 'appnet: instance not found: "nope"\n');
  const noIface = await run(['interface', 'show', 'nope'], env());
  t.is(noIface.code, 1);
  t.is(noIface.stderr, 'appnet: interface not found: "nope"\n');
});
