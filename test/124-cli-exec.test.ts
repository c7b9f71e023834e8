// `appnet exec INSTANCE -- CMD`: the command runs in the instance's namespace with the instance's
// APPNET_OUTBOUND_* variables, as Nalej injects them, and exits with the command's status.
import test from 'ava';
import { rmSync } from 'node:fs';
import { TestNet } from './helpers/testnet.ts';
import { runIn } from './helpers/run.ts';
import { cliJson, controlPlaneConfig, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { enterNetns } from '../control/cli/commands/exec.ts';

const APPNET = new URL('../bin/appnet.js', import.meta.url).pathname;

test('enterNetns: a name through ip netns exec, a path through nsenter', (t) => {
  t.deepEqual(enterNetns('inst-1', ['sh', '-c', 'true']), ['ip', 'netns', 'exec', 'inst-1', 'sh', '-c', 'true']);
  t.deepEqual(enterNetns('/run/netns/cni-1', ['env']), ['nsenter', '--net=/run/netns/cni-1', '--', 'env']);
});

test('appnet exec runs in the instance with its outbound variables and exits with the command status', async (t) => {
  const net = await TestNet.create(t, { hosts: 1 });
  const [h1] = net.hosts;
  await net.startAppnetd(h1, await controlPlaneConfig(net));
  const sinkNs = await net.addInstance('sink');
  const srcNs = await net.addInstance('src');
  for (const ns of [sinkNs.ns, srcNs.ns]) t.teardown(() => rmSync(`/etc/netns/${ns}`, { recursive: true, force: true }));
  await cliJson(h1.ns, 'instance', 'create', 'sink', '--host', 'h1', '--netns', sinkNs.ns, '--inbound', 'in:5201');
  const src = await cliJson(h1.ns, 'instance', 'create', 'src', '--host', 'h1', '--netns', srcNs.ns, '--outbound', 'db');
  await cliJson(h1.ns, 'add', 'src', 'db', 'sink', 'in');
  const appnet = (...args: string[]) =>
    runIn(h1.ns, 'env', ['APPNET_API=http://127.0.0.1:7878', `APPNET_TOKEN=${TEST_TOKEN}`, 'node', APPNET, ...args], { reject: false });

  // The variable names the connection's peer; the command sees the instance's namespace (its marker file).
  const r = await appnet('exec', 'src', '--', 'sh', '-c', 'echo "db=$APPNET_OUTBOUND_DB"; readlink /proc/self/ns/net');
  t.is(r.code, 0, r.stderr);
  t.true(r.stdout.includes(`db=db.${src.uuid.replace(/-/g, '').slice(0, 8)}.appnet`), r.stdout);
  const inside = (await runIn(srcNs.ns, 'readlink', ['/proc/self/ns/net'])).stdout.trim();
  t.true(r.stdout.includes(inside), `${r.stdout} is not in ${inside}`);
  t.is((await appnet('exec', 'src', '--', 'sh', '-c', 'exit 3')).code, 3);
  const missing = await appnet('exec', 'nobody', '--', 'true');
  t.is(missing.code, 1);
  t.regex(missing.stderr, /nobody/);
});
