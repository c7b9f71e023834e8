// Namespaces, keys and JWTs (issue 13 item 2): two API instances over one real SQLite store stand
// for two appnetd on different machines sharing only the store. Tokens are obtained with POST /auth
// exactly as Shaken Fist's client does, and then used as bearer tokens.
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../control/api/app.ts';
import { JWT_KEYS_PREFIX } from '../control/auth/auth-state.ts';
import { FailureLimiter } from '../control/auth/rate-limit.ts';
import { NetworkRepository } from '../control/repo/networks.ts';
import { openStore } from '../control/store/index.ts';

const SYS = 'system-token-0123456789';

async function cluster(t: ExecutionContext, opts: { tokenSeconds?: number; rotateSeconds?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-auth-'));
  const store = await openStore(join(dir, 'store.db'));
  const clock = { now: Date.now() };
  const apps: FastifyInstance[] = [];
  for (let i = 0; i < 2; i++) {
    const app = buildApi({ store, tokens: new Map([[SYS, 'system']]), floatingPool: '198.19.0.0/24', now: () => clock.now, ...opts });
    await app.ready();
    apps.push(app);
  }
  t.teardown(async () => {
    for (const app of apps) await app.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const call = async (app: FastifyInstance, method: string, url: string, token: string | null, payload?: unknown, remoteAddress?: string) => {
    const res = await app.inject({
      method: method as 'GET', url, headers: token ? { authorization: `Bearer ${token}` } : {},
      ...(payload !== undefined ? { payload: payload as object } : {}), ...(remoteAddress ? { remoteAddress } : {}),
    });
    return { status: res.statusCode, body: res.body === '' ? undefined : res.json(), headers: res.headers };
  };
  const login = async (app: FastifyInstance, namespace: string, key: string) => {
    const res = await call(app, 'POST', '/auth', null, { namespace, key });
    if (res.status !== 200) throw new Error(`login ${namespace}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.access_token as string;
  };
  return { store, apps, clock, call, login };
}

test('a namespace key gets a JWT on one daemon that every daemon on the store accepts', async (t) => {
  const { apps: [a, b], call, login } = await cluster(t);
  const made = await call(a, 'POST', '/auth/namespaces', SYS, { namespace: 'tenant1', key_name: 'ci', key: 'sesame-open-1' });
  t.is(made.status, 200);
  t.deepEqual(made.body, { name: 'tenant1', key_names: ['ci'], builtin: false });
  const token = await login(a, 'tenant1', 'sesame-open-1');
  t.is(token.split('.').length, 3);
  // Issued by a, used on b: the signing key is in the store, not in a's memory alone.
  const net = await call(b, 'POST', '/networks', token, { netblock: '198.18.20.0/24', name: 'n1', namespace: null });
  t.is(net.status, 200);
  t.is(net.body.namespace, 'tenant1');
  t.deepEqual((await call(a, 'GET', '/networks', token)).body.map((n: { uuid: string }) => n.uuid), [net.body.uuid]);
  // The stored record holds a pwhash, never the key.
  const listed = await call(b, 'GET', '/auth/namespaces', SYS);
  t.deepEqual(listed.body.find((n: { name: string }) => n.name === 'tenant1'), { name: 'tenant1', key_names: ['ci'], builtin: false });
  t.false(JSON.stringify(listed.body).includes('sesame'));
  t.is((await call(a, 'GET', '/auth/namespaces', token)).status, 401, 'only system lists namespaces');
  t.is((await call(a, 'GET', '/auth/namespaces/tenant1', token)).status, 200, 'a namespace reads itself');
});

test('wrong key, unknown namespace and non-system management are refused', async (t) => {
  const { apps: [a], call, login } = await cluster(t);
  await call(a, 'POST', '/auth/namespaces', SYS, { namespace: 'tenant1', key_name: 'ci', key: 'sesame-open-1' });
  const wrong = await call(a, 'POST', '/auth', null, { namespace: 'tenant1', key: 'sesame-open-2' });
  t.is(wrong.status, 401);
  t.is((await call(a, 'POST', '/auth', null, { namespace: 'nobody', key: 'sesame-open-1' })).status, 401);
  const token = await login(a, 'tenant1', 'sesame-open-1');
  const create = await call(a, 'POST', '/auth/namespaces', token, { namespace: 'tenant2' });
  t.is(create.status, 401);
  t.regex(create.body.error, /only the system namespace/);
  const bad = await call(a, 'POST', '/auth/namespaces', SYS, { namespace: 'bad name!' });
  t.is(bad.status, 400);
  t.regex(bad.body.error, /^namespace must be/);
  const half = await call(a, 'POST', '/auth/namespaces', SYS, { namespace: 'tenant2', key_name: 'k' });
  t.is(half.status, 400);
  t.regex(half.body.error, /key_name and key go together/);
  t.is((await call(a, 'DELETE', '/auth/namespaces/system', SYS)).status, 403);
});

test('expired, forged, wrongly signed and revoked tokens get 401 naming the reason', async (t) => {
  const { apps: [a, b], call, login, clock, store } = await cluster(t, { tokenSeconds: 60 });
  await call(a, 'POST', '/auth/namespaces', SYS, { namespace: 'tenant1', key_name: 'ci', key: 'sesame-open-1' });
  const token = await login(a, 'tenant1', 'sesame-open-1');
  t.is((await call(b, 'GET', '/networks', token)).status, 200);

  // Expired: the clock moves past the token's lifetime.
  clock.now += 61_000;
  const expired = await call(b, 'GET', '/networks', token);
  t.is(expired.status, 401);
  t.regex(expired.body.error, /expired/);
  clock.now -= 61_000;

  // Forged: same header and claims for another namespace, signed with a key the cluster does not hold.
  const [header, payload] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  const forgedPayload = Buffer.from(JSON.stringify({ ...claims, sub: 'system' })).toString('base64url');
  const sign = (key: Buffer, h: string, p: string) => `${h}.${p}.${createHmac('sha256', key).update(`${h}.${p}`).digest('base64url')}`;
  const forged = await call(b, 'GET', '/networks', sign(randomBytes(32), header, forgedPayload));
  t.is(forged.status, 401);
  t.regex(forged.body.error, /signature does not verify/);
  // Tampered: the real signature over changed claims.
  const tampered = await call(b, 'GET', '/networks', `${header}.${forgedPayload}.${token.split('.')[2]}`);
  t.is(tampered.status, 401);
  // Unknown key id, and alg none.
  const otherKid = Buffer.from(JSON.stringify({ alg: 'HS256', kid: 'no-such-key', typ: 'JWT' })).toString('base64url');
  t.regex((await call(b, 'GET', '/networks', sign(randomBytes(32), otherKid, payload))).body.error, /key this cluster does not hold/);
  const none = Buffer.from(JSON.stringify({ alg: 'none', kid: JSON.parse(Buffer.from(header, 'base64url').toString()).kid })).toString('base64url');
  t.is((await call(b, 'GET', '/networks', `${none}.${forgedPayload}.`)).status, 401);
  t.is((await call(b, 'GET', '/networks', 'not-a-token-at-all')).status, 401);

  // Deleting the key revokes the tokens issued for it, on every daemon.
  t.is((await call(a, 'DELETE', '/auth/namespaces/tenant1/keys/ci', SYS)).status, 200);
  const revoked = await call(b, 'GET', '/networks', token);
  t.is(revoked.status, 401);
  t.regex(revoked.body.error, /no longer exists/);
  // Retiring every signing key revokes every token, on every daemon (the other one hears it by its watch).
  await call(a, 'POST', '/auth/namespaces', SYS, { namespace: 'tenant1', key_name: 'ci2', key: 'sesame-open-2' });
  const again = await login(a, 'tenant1', 'sesame-open-2');
  t.is((await call(b, 'DELETE', '/auth/signing-keys', again)).status, 401, 'only system may');
  const retired = await call(a, 'DELETE', '/auth/signing-keys', SYS);
  t.deepEqual(retired.body, { retired: 1 });
  t.is((await store.range(JWT_KEYS_PREFIX)).kvs.length, 0);
  await waitFor(async () => (await call(b, 'GET', '/networks', again)).status === 401);
  const fresh = await login(b, 'tenant1', 'sesame-open-2');
  t.is((await call(a, 'GET', '/networks', fresh)).status, 200, 'a new login works at once with a new key');
});

test('the signing key rotates; tokens of the previous key stay valid until they expire', async (t) => {
  const { apps: [a, b], call, login, clock, store } = await cluster(t, { tokenSeconds: 900, rotateSeconds: 3600 });
  await call(a, 'POST', '/auth/namespaces', SYS, { namespace: 'tenant1', key_name: 'ci', key: 'sesame-open-1' });
  const kid = (tok: string) => JSON.parse(Buffer.from(tok.split('.')[0], 'base64url').toString()).kid as string;
  const original = await login(a, 'tenant1', 'sesame-open-1');
  clock.now += 3500_000; // near the end of the key's hour: a token issued now outlives the key's turn
  const first = await login(a, 'tenant1', 'sesame-open-1');
  t.is(kid(await login(b, 'tenant1', 'sesame-open-1')), kid(original), 'both daemons sign with the one current key');
  t.is(kid(first), kid(original));
  clock.now += 101_000;
  const second = await login(b, 'tenant1', 'sesame-open-1');
  t.not(kid(second), kid(first));
  t.is((await store.range(JWT_KEYS_PREFIX)).kvs.length, 2);
  t.is((await call(a, 'GET', '/networks', second)).status, 200);
  t.is((await call(a, 'GET', '/networks', first)).status, 200, 'the previous key still verifies its unexpired tokens');
  // Long after: the old key is retired at the next rotation, and its token is refused.
  clock.now += 2 * 3600_000;
  await login(a, 'tenant1', 'sesame-open-1');
  t.false((await store.range(JWT_KEYS_PREFIX)).kvs.some((kv) => kv.key.endsWith(kid(first))));
  t.is((await call(b, 'GET', '/networks', first)).status, 401);
});

test('failed POST /auth is rate-limited per source; other sources are not affected', async (t) => {
  const { apps: [a], call } = await cluster(t);
  await call(a, 'POST', '/auth/namespaces', SYS, { namespace: 'tenant1', key_name: 'ci', key: 'sesame-open-1' });
  const statuses: number[] = [];
  for (let i = 0; i < 11; i++) statuses.push((await call(a, 'POST', '/auth', null, { namespace: 'tenant1', key: `guess-${i}-xx` }, '198.18.9.9')).status);
  t.deepEqual(statuses, [...Array(10).fill(401), 429]);
  const limited = await call(a, 'POST', '/auth', null, { namespace: 'tenant1', key: 'sesame-open-1' }, '198.18.9.9');
  t.is(limited.status, 429, 'even the right key waits: the limit is checked before any hashing');
  t.truthy(Number(limited.headers['retry-after']) >= 1);
  t.regex(limited.body.error, /too many failed authentication attempts from 198\.18\.9\.9/);
  t.is((await call(a, 'POST', '/auth', null, { namespace: 'tenant1', key: 'sesame-open-1' }, '198.18.9.10')).status, 200);
});

test('the failure limiter refills one attempt per interval and remembers a bounded number of sources', (t) => {
  const clock = { now: 0 };
  const limiter = new FailureLimiter({ burst: 2, refillSeconds: 6, maxSources: 4, now: () => clock.now });
  limiter.fail('a');
  t.is(limiter.retryAfter('a'), 0);
  limiter.fail('a');
  t.is(limiter.retryAfter('a'), 6);
  clock.now += 5_000;
  t.is(limiter.retryAfter('a'), 1);
  clock.now += 1_000;
  t.is(limiter.retryAfter('a'), 0, 'one attempt back after 6 s');
  for (let i = 0; i < 50; i++) limiter.fail(`198.18.0.${i}`);
  t.true(limiter.size <= 4, `${limiter.size} sources remembered`);
});

test('another namespace gets 404 on every object route, as if the object were absent', async (t) => {
  const { apps: [a], call, login, store } = await cluster(t);
  for (const ns of ['alpha', 'beta']) await call(a, 'POST', '/auth/namespaces', SYS, { namespace: ns, key_name: 'k', key: `key-of-${ns}` });
  const alpha = await login(a, 'alpha', 'key-of-alpha');
  const beta = await login(a, 'beta', 'key-of-beta');
  const net = (await call(a, 'POST', '/networks', alpha, { netblock: '198.18.30.0/24', name: 'secret-net' })).body;
  await new NetworkRepository({ store, floatingPool: '198.19.0.0/24' }).markCreated(net.uuid);
  const inst = await call(a, 'POST', '/instances', alpha, { name: 'vm1', host: 'h1', interfaces: [{ network: net.uuid }] });
  t.is(inst.status, 200, JSON.stringify(inst.body));
  const iface = inst.body.interfaces[0].uuid as string;
  const ids: Record<string, string> = { ref: net.uuid, uuid: iface, key: 'k1', id: 'none', ns: 'alpha' };
  const doc = (await call(a, 'GET', '/openapi.json', null)).body as { paths: Record<string, Record<string, unknown>> };
  const checked: string[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    if (!/\{(ref|uuid)\}/.test(path)) continue;
    for (const verb of Object.keys(ops)) {
      const method = verb.toUpperCase();
      const url = path.replace(/\{(\w+)\}/g, (_, k: string) => (path.startsWith('/instances') && k === 'ref' ? inst.body.uuid : ids[k]));
      const body = method === 'POST' && url.endsWith('/metadata') ? { key: 'k1', value: 'v' }
        : method === 'POST' && url.endsWith('/interfaces') ? { network: net.uuid }
          : method === 'PUT' ? { value: 'v' } : undefined;
      const res = await call(a, method, url, beta, body);
      t.is(res.status, 404, `${method} ${url} as beta: ${JSON.stringify(res.body)}`);
      checked.push(`${method} ${path}`);
    }
  }
  t.true(checked.length >= 15, checked.join(', '));
  // get-network-namespace: system finds a name within a namespace; naming another namespace is a 404.
  t.is((await call(a, 'GET', '/networks/secret-net?namespace=alpha', SYS)).body.uuid, net.uuid);
  t.is((await call(a, 'GET', '/networks/secret-net?namespace=beta', SYS)).status, 404);
  t.is((await call(a, 'GET', `/networks/${net.uuid}?namespace=beta`, alpha)).status, 404);
  // Names do not leak either, and the owner still sees everything.
  t.is((await call(a, 'GET', '/networks/secret-net', beta)).status, 404);
  t.is((await call(a, 'GET', '/networks/secret-net', alpha)).status, 200);
});

async function waitFor(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('condition not met within 5 s');
}
