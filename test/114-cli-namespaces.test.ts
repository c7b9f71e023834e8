// `appnet namespace ...` and `appnet login` as child processes against a real API (buildApi over a
// temp SQLite store, on loopback): what an operator types to hand a tenant a key, and what the
// tenant types to use it. Keys go through stdin or APPNET_KEY, never the command line, where shown.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { buildApi } from '../control/api/app.ts';
import { openStore } from '../control/store/index.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'appnet.js');

function run(args: string[], env: Record<string, string>, stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['APPNET_API', 'APPNET_TOKEN', 'APPNET_CONFIG', 'APPNET_CA', 'APPNET_KEY']) delete base[k];
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...base, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1, stdout, stderr });
    });
    child.stdin!.end(stdin ?? '');
  });
}

test('an operator creates a namespace and keys; a tenant logs in and works in it; keys and namespaces go', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-cli-ns-'));
  const store = await openStore(join(dir, 'store.db'));
  const app = buildApi({ store, tokens: new Map([['tok-sys-0123456789', 'system']]), floatingPool: '198.19.0.0/24' });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(async () => {
    await app.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const operator = { APPNET_API: url, APPNET_TOKEN: 'tok-sys-0123456789', HOME: join(dir, 'op') };
  const tenant = { HOME: join(dir, 'tenant') };

  const made = await run(['namespace', 'create', 'tenant1', '--key-name', 'ci', '--key', '-'], operator, 'from-stdin-key-1\n');
  t.is(made.code, 0, made.stderr);
  t.regex(made.stdout, /tenant1\s+ci/);
  const added = await run(['namespace', 'key', 'add', 'tenant1', 'laptop', '--json'], { ...operator, APPNET_KEY: 'from-env-key-2' });
  t.deepEqual(JSON.parse(added.stdout).key_names, ['ci', 'laptop']);
  const list = await run(['namespace', 'list', '--json'], operator);
  t.deepEqual(JSON.parse(list.stdout).map((n: { name: string }) => n.name), ['system', 'tenant1']);

  // The tenant logs in with each key; the token lands in its CLI config, readable by it alone.
  const login = await run(['--api', url, 'login', 'tenant1', '--key', '-'], tenant, 'from-stdin-key-1\n');
  t.is(login.code, 0, login.stderr);
  const file = join(dir, 'tenant', '.config', 'appnet', 'config.json');
  t.is(statSync(file).mode & 0o777, 0o600);
  t.is(JSON.parse(readFileSync(file, 'utf8')).api, url);
  const created = await run(['network', 'create', 'n1', '198.18.114.0/24', '--json'], tenant);
  t.is(created.code, 0, created.stderr);
  t.is(JSON.parse(created.stdout).namespace, 'tenant1');
  t.is((await run(['login', 'tenant1'], { ...tenant, APPNET_KEY: 'from-env-key-2' })).code, 0);
  const denied = await run(['namespace', 'list'], tenant);
  t.is(denied.code, 1);
  t.is(denied.stderr, 'appnet: only the system namespace may list namespaces\n');
  const noKey = await run(['login', 'tenant1'], tenant);
  t.is(noKey.code, 1);
  t.regex(noKey.stderr, /^appnet: login: give the key with --key SECRET, --key - \(stdin\) or APPNET_KEY\n$/);

  // Deleting the key the tenant's token came from logs it out; the namespace goes once it owns nothing.
  t.is((await run(['namespace', 'key', 'delete', 'tenant1', 'laptop'], operator)).stdout, 'deleted key laptop of namespace tenant1\n');
  const after = await run(['network', 'list'], tenant);
  t.is(after.code, 1);
  t.regex(after.stderr, /^appnet: the key "laptop" of namespace "tenant1" this token was issued for no longer exists\n$/);
  const busy = await run(['namespace', 'delete', 'tenant1'], operator);
  t.is(busy.code, 1);
  t.regex(busy.stderr, /still owns networks or instances/);
  t.is((await run(['network', 'delete', 'n1'], operator)).code, 0);
  t.is((await run(['namespace', 'delete', 'tenant1'], operator)).stdout, 'deleted namespace tenant1\n');
  t.deepEqual(JSON.parse((await run(['namespace', 'list', '--json'], operator)).stdout).map((n: { name: string }) => n.name), ['system']);
});
