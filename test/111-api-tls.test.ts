// TLS of the API and between hosts (issue 13 item 2):
//   - off loopback appnetd serves TLS only: a plain HTTP request to it is refused, the CLI works with
//     --ca (and says why in one line without it), `appnet login` saves a token;
//   - the certificate it makes is kept and reused, and made again when the address changes;
//   - a peer is trusted for exactly the certificate its host record pins: another certificate from
//     the same CA is refused before anything is sent; plain HTTP to a non-loopback peer is never sent;
//   - the server side names the registered host whose certificate a client presented.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { buildApi } from '../control/api/app.ts';
import { PeerError, peerHost, peerRequest } from '../control/api/peer-client.ts';
import { apiTls } from '../control/daemon/api-tls.ts';
import { parseDaemonConfig } from '../control/daemon/config.ts';
import { openStore } from '../control/store/index.ts';
import { controlPlaneConfig, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { runIn } from './helpers/run.ts';
import { TestNet } from './helpers/testnet.ts';

const APPNET = new URL('../bin/appnet.js', import.meta.url).pathname;

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'appnet-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('config: api.tls, stateDir and auth are validated, each error naming the field', (t) => {
  const base = { underlay: { address: '198.18.0.11' } };
  const cfg = parseDaemonConfig({ ...base, api: { address: '198.18.0.11', tls: { cert: '/etc/appnet/api.pem', key: '/etc/appnet/api.key' } }, auth: { tokenSeconds: 300 } });
  t.deepEqual(cfg.api.tls, { cert: '/etc/appnet/api.pem', key: '/etc/appnet/api.key' });
  t.deepEqual(cfg.auth, { tokenSeconds: 300, rotateSeconds: 3600 });
  t.is(cfg.stateDir, '/var/lib/appnet');
  t.throws(() => parseDaemonConfig({ ...base, api: { tls: { cert: 'api.pem', key: '/k' } } }), { message: /^config: api\.tls\.cert: must be an absolute path to a PEM certificate/ });
  t.throws(() => parseDaemonConfig({ ...base, api: { tls: { cert: '/c', key: '/k', ca: '/x' } } }), { message: /^config: api\.tls\.ca: unknown field; known: cert, key$/ });
  t.throws(() => parseDaemonConfig({ ...base, auth: { tokenSeconds: 5 } }), { message: /^config: auth\.tokenSeconds: must be an integer in 60\.\.86400/ });
  t.throws(() => parseDaemonConfig({ ...base, stateDir: 'relative' }), { message: /^config: stateDir: must be an absolute path/ });
});

test('loopback stays plain; elsewhere a CA and host certificate are made once, and again for a new address', async (t) => {
  const dir = tempDir(t);
  t.is(await apiTls({ address: '127.0.0.1', host: 'h1', stateDir: dir }), undefined);
  const first = await apiTls({ address: '198.18.0.11', host: 'h1', stateDir: dir });
  t.truthy(first);
  const leaf = new X509Certificate(first!.cert);
  t.is(leaf.checkIP('198.18.0.11'), '198.18.0.11');
  t.true(leaf.verify(new X509Certificate(readFileSync(path.join(dir, 'tls', 'ca.pem'))).publicKey), 'signed by the CA in the state directory');
  t.is((await apiTls({ address: '198.18.0.11', host: 'h1', stateDir: dir }))!.cert, first!.cert, 'reused on the next start');
  const moved = await apiTls({ address: '198.18.0.12', host: 'h1', stateDir: dir });
  t.not(moved!.cert, first!.cert);
  t.is(new X509Certificate(moved!.cert).checkIP('198.18.0.12'), '198.18.0.12');
  await t.throwsAsync(apiTls({ address: '198.18.0.11', host: 'h1', stateDir: dir, tls: { cert: path.join(dir, 'missing.pem'), key: path.join(dir, 'missing.key') } }), { message: /ENOENT/ });
});

test('a peer is trusted for exactly its recorded certificate; the server names the host whose certificate it was shown', async (t) => {
  const dir = tempDir(t);
  // Two hosts' certificates from one CA (an operator's shared CA): the CA alone must not be enough.
  const h1 = (await apiTls({ address: '198.18.0.11', host: 'h1', stateDir: dir }))!;
  const h2 = (await apiTls({ address: '198.18.0.12', host: 'h2', stateDir: dir }))!;
  const store = await openStore(path.join(dir, 'store.db'));
  const app = buildApi({ store, tokens: new Map([[TEST_TOKEN, 'system']]), floatingPool: '198.19.0.0/24', https: { cert: h1.cert, key: h1.key } });
  const records = [{ name: 'h1', certificate: h1.chain }, { name: 'h2', certificate: h2.chain }];
  let seen: string | null | undefined;
  app.addHook('onRequest', async (req) => { seen = peerHost(req, records) ?? null; });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => { await app.close(); await store.close(); });
  const api = `https://127.0.0.1:${(app.server.address() as { port: number }).port}`;

  const ok = await peerRequest({ name: 'h1', api, certificate: h1.chain }, '/hosts', { headers: { authorization: `Bearer ${TEST_TOKEN}` }, timeoutMs: 10_000, identity: { cert: h2.cert, key: h2.key } });
  t.is(ok.status, 404, 'reached the API (this app has no /hosts route): the pinned certificate was accepted');
  t.is(seen, 'h2', 'the server recognised the client as h2 by its certificate');
  await peerRequest({ name: 'h1', api, certificate: h1.chain }, '/openapi.json', { timeoutMs: 10_000 });
  t.is(seen, null, 'no client certificate: no host');

  seen = undefined;
  const wrong = await t.throwsAsync(peerRequest({ name: 'h1', api, certificate: h2.chain }, '/openapi.json', { timeoutMs: 10_000 }));
  t.true(wrong instanceof PeerError);
  t.regex(wrong!.message, /host h1 at 127\.0\.0\.1:\d+ presented certificate .* not the one its host record pins/);
  t.is(seen, undefined, 'nothing reached the server');
  await t.throwsAsync(peerRequest({ name: 'h1', api }, '/openapi.json', { timeoutMs: 10_000 }), { message: /published no usable API certificate/ });
  await t.throwsAsync(peerRequest({ name: 'h3', api: 'http://198.18.0.13:7878' }, '/openapi.json', { timeoutMs: 10_000 }),
    { instanceOf: PeerError, message: /plain HTTP is only allowed to loopback; refusing to send/ });
});

test('off loopback the API is TLS only: plain HTTP refused, the CLI needs --ca, login saves a token', async (t) => {
  const net = await TestNet.create(t, { hosts: 1 });
  const [h1] = net.hosts;
  const d1 = await net.startAppnetd(h1, await controlPlaneConfig(net, { api: { address: h1.underlayIp, port: 7878 } }));
  const ca = path.join(d1.config.stateDir!, 'tls', 'ca.pem');
  const https = `https://${h1.underlayIp}:7878`;
  const cli = (...args: string[]) => runIn(h1.ns, 'env', [`HOME=${d1.config.stateDir!}`, 'node', APPNET, ...args], { reject: false });

  // Plain HTTP to the address: no HTTP answer at all (the TLS server drops it).
  const plain = await runIn(h1.ns, 'node', ['-e', `fetch('http://${h1.underlayIp}:7878/openapi.json').then(r => console.log('answered', r.status), e => console.log('refused', e.cause?.code ?? e.message))`]);
  t.regex(plain.stdout, /^refused /, plain.stdout);

  // The CLI without the CA: one line naming the problem; with it: the host record shows https and the certificate.
  const noCa = await cli('--api', https, '--token', TEST_TOKEN, 'host', 'list', '--json');
  t.is(noCa.code, 1);
  t.regex(noCa.stderr, /^appnet: the appnet API at https:\/\/198\.18\.\d+\.\d+:7878 presented a certificate this CLI does not trust \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\): give its CA with --ca FILE .*\n$/);
  const hosts = await cli('--api', https, '--token', TEST_TOKEN, '--ca', ca, 'host', 'list', '--json');
  t.is(hosts.code, 0, hosts.stderr);
  const [record] = JSON.parse(hosts.stdout);
  t.is(record.api, https);
  t.is(new X509Certificate(record.certificate).checkIP(h1.underlayIp), h1.underlayIp);

  // Namespaces and login through the CLI, over TLS.
  const made = await cli('--api', https, '--token', TEST_TOKEN, '--ca', ca, 'namespace', 'create', 'tenant1', '--key-name', 'ci', '--key', 'sesame-open-1', '--json');
  t.is(made.code, 0, made.stderr);
  t.deepEqual(JSON.parse(made.stdout).key_names, ['ci']);
  const login = await cli('--api', https, '--ca', ca, 'login', 'tenant1', '--key', 'sesame-open-1');
  t.is(login.code, 0, login.stderr);
  t.regex(login.stderr, /logged in to namespace tenant1/);
  const saved = JSON.parse(readFileSync(path.join(d1.config.stateDir!, '.config', 'appnet', 'config.json'), 'utf8'));
  t.is(saved.api, https);
  const mine = await cli('--ca', ca, 'network', 'create', 'n1', '198.18.111.0/24', '--json');
  t.is(mine.code, 0, mine.stderr);
  t.is(JSON.parse(mine.stdout).namespace, 'tenant1', 'the saved token is the namespace key\'s JWT');
  const badLogin = await cli('--api', https, '--ca', ca, 'login', 'tenant1', '--key', 'wrong-key-123');
  t.is(badLogin.code, 1);
  t.is(badLogin.stderr, 'appnet: namespace or key is not valid\n');
});
