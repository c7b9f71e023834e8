// The shared-nothing harness itself: hosts as separate machines (their own network, mount and UTS
// namespaces). What one host's daemon keeps is invisible to another host and to the test's root, and the
// data plane still works across them.
import test from 'ava';
import { existsSync } from 'node:fs';
import { buildOverlay } from './helpers/overlay.ts';
import { runIn } from './helpers/run.ts';
import { MACHINE_PRIVATE_DIRS, TestNet } from './helpers/testnet.ts';

test('machines have their own hostname and private state directories; instances are entered from their host', async (t) => {
  const net = await TestNet.create(t, { hosts: 2, machines: true });
  const [h1, h2] = net.hosts;
  const names = await Promise.all(net.hosts.map(async (h) => (await runIn(h.ns, 'hostname', [])).stdout.trim()));
  t.deepEqual(names, [`${net.prefix}-h1`, `${net.prefix}-h2`]);

  for (const dir of MACHINE_PRIVATE_DIRS) {
    const marker = `${dir}/${net.prefix}-marker`;
    await runIn(h1.ns, 'sh', ['-c', `echo h1 > ${marker}`]);
    t.is((await runIn(h1.ns, 'cat', [marker])).stdout.trim(), 'h1');
    t.is((await runIn(h2.ns, 'test', ['-e', marker], { reject: false })).code, 1, `${marker} leaked to h2`);
    t.false(existsSync(marker), `${marker} leaked to the root`);
    t.true(existsSync(net.machinePath(h1, marker)));
  }

  // An instance placed on h1 sees h1's /etc/netns files, not h2's; the root namespace's view has none.
  const a = await net.addInstance('a', { host: h1 });
  await runIn(h1.ns, 'sh', ['-c', `mkdir -p /etc/netns/${a.ns} && echo '198.18.9.9 only-on-h1' > /etc/netns/${a.ns}/hosts`]);
  t.regex((await runIn(a.ns, 'cat', ['/etc/hosts'])).stdout, /only-on-h1/);
  t.false(existsSync(`/etc/netns/${a.ns}/hosts`));
});

test('a static overlay across machines carries ping and TCP both ways', async (t) => {
  const { net, instances: [a, b] } = await buildOverlay(t, { hosts: 2, machines: true });
  const ab = await net.ping(a.inst.ns, b.addr, { count: 5, interval: 0.1 });
  t.is(ab.received, 5, ab.output);
  const x = await net.tcpTransfer(b.inst.ns, a.inst.ns, a.addr, 1024 * 1024);
  t.is(x.receivedSha256, x.sentSha256);
});
