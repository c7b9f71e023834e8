// kill -9 of the etcd leader while a client keeps 8 API writes in flight (three hosts, three members,
// shared nothing but etcd and the underlay). Every write is either acknowledged and present afterwards, or
// answered 503 "store unavailable: ..."; none is lost after acknowledgement, none is applied twice, and
// writes succeed again once a new leader is elected.
import test from 'ava';
import { apiCall, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { buildClusterNet } from './helpers/cluster-net.ts';
import { spawnIn } from './helpers/run.ts';
import { until } from './helpers/until.ts';

// Runs inside a host's machine: 8 workers POST networks with unique names until `seconds` have passed (or
// 400 writes each), then print every outcome as JSON. Bounded in time and count; loopback only.
const LOAD = `
const [token, seconds] = process.argv.slice(1);
const until = Date.now() + Number(seconds) * 1000;
const results = [];
async function worker(w) {
  for (let i = 0; i < 400 && Date.now() < until; i++) {
    const name = 'w' + w + '-' + i;
    const started = Date.now();
    try {
      const r = await fetch('http://127.0.0.1:7878/networks', {
        method: 'POST',
        headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
        body: JSON.stringify({ name, netblock: '198.18.150.0/24', provide_dhcp: false, provide_nat: false }),
        signal: AbortSignal.timeout(30000),
      });
      const body = await r.json().catch(() => ({}));
      results.push({ name, status: r.status, error: body.error, started, ended: Date.now() });
    } catch (e) {
      results.push({ name, status: 0, error: String(e), started, ended: Date.now() });
    }
  }
}
await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
console.log(JSON.stringify(results));
`;

interface Outcome { name: string; status: number; error?: string; started: number; ended: number }

test('kill -9 of the etcd leader under 8 writes in flight: acknowledged writes stay, once; the rest are 503s', async (t) => {
  const { net, etcd } = await buildClusterNet(t);
  const [h1] = net.hosts;
  const client = net.track(spawnIn(h1.ns, process.execPath, ['--input-type=module', '-e', LOAD, TEST_TOKEN, '24']));
  let stdout = '';
  client.stdout!.on('data', (b: Buffer) => (stdout += b));
  const finished = new Promise<void>((resolve) => client.once('close', () => resolve()));

  // Let writes flow, then kill the leader in the middle of them.
  await new Promise((r) => setTimeout(r, 6000));
  const leader = await etcd.leader();
  const killedAt = Date.now();
  await etcd.kill9(leader);
  t.log(`killed etcd leader ${leader.name} (${leader.ip})`);
  await finished;
  const outcomes = JSON.parse(stdout.trim().split('\n').at(-1)!) as Outcome[];

  const acked = outcomes.filter((o) => o.status === 200 || o.status === 201);
  const refused = outcomes.filter((o) => o.status === 503);
  const other = outcomes.filter((o) => !acked.includes(o) && !refused.includes(o));
  t.deepEqual(other, [], 'every answer is a success or a 503');
  for (const o of refused) t.regex(o.error ?? '', /^store unavailable: /, JSON.stringify(o));
  t.true(acked.some((o) => o.started < killedAt), 'writes were acknowledged before the kill');
  t.true(acked.some((o) => o.started > killedAt + 1000), 'writes are acknowledged again after a new leader is elected');
  t.log(`${outcomes.length} writes: ${acked.length} acknowledged, ${refused.length} answered 503`);

  // Read back through another host: every acknowledged network exactly once, none more than once.
  const list = await until('the list through h2', async () => {
    const r = await apiCall(net.hosts[1].ns, 'GET', '/networks?all=1', TEST_TOKEN);
    return r.status === 200 ? (r.body as Array<{ name: string; namespace: string }>) : undefined;
  });
  const count = new Map<string, number>();
  for (const n of list) if (n.namespace === 'system') count.set(n.name, (count.get(n.name) ?? 0) + 1);
  for (const o of acked) t.is(count.get(o.name), 1, `acknowledged network ${o.name}`);
  for (const [name, n] of count) t.is(n, 1, `network ${name} applied ${n} times`);
  for (const name of count.keys()) t.true(outcomes.some((o) => o.name === name), `network ${name} was never asked for`);
});
