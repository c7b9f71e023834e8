// The reference's example, end to end through the CLI: five source instances on two hosts, each
// with an outbound connected to one sink's inbound (tcp 5201) on h2. All become ESTABLISHED; each
// source reaches the sink's port by its outbound name; nothing else gets through (another port of
// the sink, another source, the sink through another connection's address) and the engines count
// what they filtered. A second add of a connected outbound is refused; removing a required
// outbound's connection needs --force, and then its traffic, name and record go.
//
//   h1: s1 s2 s3 --ao--+                         +--ai x3-- sink (h2)
//                      +== encrypted link h1-h2 =+
//   h2: s4 s5 ----ao---- (local, no link) -ai x2-+
import test from 'ava';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { TestNet, type Daemon } from './helpers/testnet.ts';
import { runIn, spawnIn } from './helpers/run.ts';
import { cliJson, cliRun, controlPlaneConfig, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { until } from './helpers/until.ts';

const APPNET = new URL('../bin/appnet.js', import.meta.url).pathname;


/** `appnet ...` expected to fail: its exit code and stderr. */
async function cliFails(ns: string, ...args: string[]): Promise<{ code: number | null; stderr: string }> {
  const r = await runIn(ns, 'env', ['APPNET_API=http://127.0.0.1:7878', `APPNET_TOKEN=${TEST_TOKEN}`, 'node', APPNET, ...args], { reject: false });
  return { code: r.code, stderr: r.stderr };
}

/** Whether a TCP connection from `ns` to addr:port opens within 2 s. */
async function connects(ns: string, addr: string, port: number): Promise<boolean> {
  const r = await runIn(ns, 'timeout', ['2', 'bash', '-c', `exec 3<>/dev/tcp/${addr}/${port}`], { reject: false });
  return r.code === 0;
}

/** A listener in `ns` that accepts any number of connections on `port` (closed by the TestNet). */
async function listen(net: TestNet, ns: string, port: number): Promise<ChildProcess> {
  const script = `require('net').createServer((s) => s.end()).listen(${port}, () => console.log('listening'))`;
  const child = net.track(spawnIn(ns, process.execPath, ['-e', script]));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`listener on ${port} in ${ns} did not start`)), 10_000);
    child.stdout!.on('data', (b: Buffer) => { if (b.toString().includes('listening')) { clearTimeout(timer); resolve(); } });
  });
  return child;
}

async function filtered(daemons: Daemon[]): Promise<number> {
  let sum = 0;
  for (const d of daemons) {
    const c = await d.get('/engine/counters');
    for (const p of c.ports) sum += p.drops.filtered ?? 0;
  }
  return sum;
}

test('five sources on two hosts reach one sink port by name, nothing else; a required outbound needs --force to remove', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const cp = await controlPlaneConfig(net);
  const daemons = [await net.startAppnetd(h1, cp), await net.startAppnetd(h2, cp)];

  const sinkNs = await net.addInstance('sink');
  t.teardown(() => rmSync(`/etc/netns/${sinkNs.ns}`, { recursive: true, force: true }));
  const sink = await cliJson(h1.ns, 'instance', 'create', 'sink', '--host', 'h2', '--netns', sinkNs.ns, '--inbound', 'in:5201', '--inbound', 'other:5203');
  const sources: Array<{ ns: string; uuid: string; name: string }> = [];
  for (const [i, host] of ['h1', 'h1', 'h1', 'h2', 'h2'].entries()) {
    const name = `s${i + 1}`;
    const inst = await net.addInstance(name);
    t.teardown(() => rmSync(`/etc/netns/${inst.ns}`, { recursive: true, force: true }));
    // s1's outbound is required: it is connected at deploy time (an unfilled required outbound is refused).
    const outbound = i === 0 ? ['--outbound', 'db:required', '--connect', `db=${sink.uuid}:in`] : ['--outbound', 'db'];
    const rec = await cliJson(h1.ns, 'instance', 'create', name, '--host', host, '--netns', inst.ns, ...outbound);
    sources.push({ ns: inst.ns, uuid: rec.uuid, name });
  }
  for (const s of sources.slice(1)) t.is((await cliJson(h1.ns, 'add', s.uuid, 'db', sink.uuid, 'in')).status, 'WAITING');

  const established = await until('all five ESTABLISHED', async () => {
    const list = await cliJson(h2.ns, 'list');
    return list.length === 5 && list.every((c: any) => c.status === 'ESTABLISHED') ? list : undefined;
  });
  const bySource = new Map<string, any>(established.map((c: any) => [c.source_instance_id, c]));

  // Each source finds its peer by the variable's name and reaches the sink's port there.
  const env = await cliRun(h1.ns, 'instance', 'env', sources[1].uuid);
  const hostname = `db.${sources[1].uuid.replace(/-/g, '').slice(0, 8)}.appnet`;
  t.true(env.stdout.includes(`APPNET_OUTBOUND_DB=${hostname}`), env.stdout);
  for (const s of sources) {
    const c = bySource.get(s.uuid);
    const name = `db.${s.uuid.replace(/-/g, '').slice(0, 8)}.appnet`;
    const resolved = (await runIn(s.ns, 'getent', ['hosts', name])).stdout.trim().split(/\s+/)[0];
    t.is(resolved, c.link.inbound_address, `${s.name} resolves ${name}`);
    const r = await net.tcpTransfer(s.ns, sinkNs.ns, resolved, 256 * 1024, 5201, { timeoutMs: 20_000 });
    t.is(r.receivedSha256, r.sentSha256, `${s.name} -> sink:5201`);
  }

  // Nothing else: another port of the sink, another source, the sink at another connection's address.
  await listen(net, sinkNs.ns, 5201);
  await listen(net, sinkNs.ns, 5202);
  await listen(net, sources[1].ns, 5201);
  const before = await filtered(daemons);
  const s1 = bySource.get(sources[0].uuid);
  t.true(await connects(sources[0].ns, s1.link.inbound_address, 5201), 'the listener itself answers');
  for (const s of sources) t.false(await connects(s.ns, bySource.get(s.uuid).link.inbound_address, 5202), `${s.name} reached sink:5202`);
  // s1 routes the whole pool into its link: only its own peer address and port may pass.
  const ao1 = `ao${s1.connection_id.replace(/-/g, '').slice(0, 8)}`;
  await runIn(sources[0].ns, 'ip', ['route', 'add', '198.19.128.0/17', 'dev', ao1]);
  t.false(await connects(sources[0].ns, bySource.get(sources[1].uuid).link.outbound_address, 5201), 's1 reached s2');
  t.false(await connects(sources[0].ns, bySource.get(sources[1].uuid).link.inbound_address, 5201), "s1 reached the sink at s2's address");
  t.true((await filtered(daemons)) > before, 'the engines counted no filtered frames');

  // One outbound, one connection: neither the same one again nor another inbound.
  const again = await cliFails(h1.ns, 'add', sources[2].uuid, 'db', sink.uuid, 'in');
  t.is(again.code, 1);
  t.regex(again.stderr, /connection already exists: s3\/db -> sink\/in/);
  const elsewhere = await cliFails(h1.ns, 'add', sources[2].uuid, 'db', sink.uuid, 'other');
  t.is(elsewhere.code, 1);
  t.regex(elsewhere.stderr, /source instance already have its outbound interface connected/);

  // A required outbound: refused without --force; with it, the link, its name and the record go.
  const refused = await cliFails(h1.ns, 'remove', sources[0].uuid, 'db', sink.uuid, 'in');
  t.is(refused.code, 1);
  t.regex(refused.stderr, /A connection in which the outbound is required cannot be deleted/);
  t.is((await cliJson(h1.ns, 'remove', sources[0].uuid, 'db', sink.uuid, 'in', '--force')).status, 'TERMINATED');
  await until('the record to disappear', async () => {
    const list = await cliJson(h1.ns, 'list');
    return list.length === 4 && !list.some((c: any) => c.source_instance_id === sources[0].uuid) ? true : undefined;
  });
  await until(`${ao1} to go from s1`, async () => ((await runIn(sources[0].ns, 'ip', ['-o', 'link'])).stdout.includes(ao1) ? undefined : true));
  t.false(await connects(sources[0].ns, s1.link.inbound_address, 5201), 'traffic still flows after the removal');
  const gone = await runIn(sources[0].ns, 'getent', ['hosts', `db.${sources[0].uuid.replace(/-/g, '').slice(0, 8)}.appnet`], { reject: false });
  t.not(gone.code, 0, `the name still resolves: ${gone.stdout}`);
  // The others are untouched.
  t.true(await connects(sources[1].ns, bySource.get(sources[1].uuid).link.inbound_address, 5201));
  t.is((await cliJson(h1.ns, 'list')).filter((c: any) => c.status === 'ESTABLISHED').length, 4);
});
