// Proves the namespace test-host helper with Linux kernel peers only (no appnet code):
//
//   <p>-a eth0 198.18.42.1 -- brv42 -- vxlan42 (h1, 198.18.0.11) ==underlay br0== (h2, 198.18.0.12) vxlan42 -- brv42 -- eth0 198.18.42.2 <p>-b

import test from 'ava';
import { spawn } from 'node:child_process';
import { run } from './helpers/run.ts';
import { TestNet, tsharkFields } from './helpers/testnet.ts';

async function namespaces(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').map((l) => l.split(' ')[0]).filter(Boolean);
}

test.serial('two hosts with kernel VTEPs on VNI 42 carry ping and TCP, and tshark sees VXLAN', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  t.is(h1.underlayIp, '198.18.0.11');
  t.is(h2.underlayIp, '198.18.0.12');
  const a = await net.addInstance('a');
  const b = await net.addInstance('b');
  await net.addKernelVtep(h1, { vni: 42, remotes: [h2.underlayIp], instance: a, cidr: '198.18.42.1/24', mac: '02:00:00:00:42:01' });
  const vb = await net.addKernelVtep(h2, { vni: 42, remotes: [h1.underlayIp], instance: b, cidr: '198.18.42.2/24' });
  t.regex(vb.mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);

  const underlay = await net.ping(h1.ns, h2.underlayIp, { count: 2 });
  t.is(underlay.lossPercent, 0, underlay.output);

  const cap = await net.capture(h1.ns, 'ul0', { filter: 'udp port 4789' });
  const ab = await net.ping(a.ns, '198.18.42.2');
  const ba = await net.ping(b.ns, '198.18.42.1');
  const file = await cap.stop();
  for (const r of [ab, ba]) {
    t.is(r.transmitted, 5, r.output);
    t.is(r.received, 5, r.output);
    t.is(r.lossPercent, 0, r.output);
    t.is(r.duplicates, 0, r.output);
    t.true(r.rttAvgMs !== null && r.rttAvgMs > 0, r.output);
  }

  const rows = tsharkFields(file, ['vxlan.vni', 'icmp.type'], 'icmp', ['udp.port==4789,vxlan']);
  t.true(rows.length >= 20, `expected 20 ICMP packets in VXLAN (2 x 5 echo + reply), got ${rows.length}`);
  t.true(rows.every(([vni]) => vni === '42'));
  t.true(rows.some(([, type]) => type === '8'));
  t.true(rows.some(([, type]) => type === '0'));

  const xfer = await net.tcpTransfer(a.ns, b.ns, '198.18.42.2', 2 * 1024 * 1024);
  t.is(xfer.sentBytes, 2 * 1024 * 1024);
  t.is(xfer.receivedBytes, xfer.sentBytes);
  t.is(xfer.receivedSha256, xfer.sentSha256);
  t.regex(xfer.sentSha256, /^[0-9a-f]{64}$/);
});

test.serial('100% loss is a result, not an exception', async (t) => {
  const net = await TestNet.create(t, { hosts: 1 });
  const r = await net.ping(net.hosts[0].ns, '198.18.0.99', { count: 2, interval: 0.2 });
  t.is(r.transmitted, 2, r.output);
  t.is(r.received, 0, r.output);
  t.is(r.lossPercent, 100, r.output);
  t.is(r.rttAvgMs, null);
});

test.serial('destroy removes every namespace and is idempotent', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const a = await net.addInstance('a');
  await net.addKernelVtep(net.hosts[0], { vni: 7, remotes: [net.hosts[1].underlayIp], instance: a, cidr: '198.18.7.1/24' });
  const cap = await net.capture(net.hosts[0].ns, 'ul0');
  const owned = net.ownedNamespaces();
  t.is(owned.length, 4);
  t.true(owned.every((ns) => ns.startsWith(net.prefix)));
  await net.destroy();
  await net.destroy();
  const left = await namespaces();
  t.deepEqual(left.filter((ns) => ns.startsWith(net.prefix)), []);
  t.deepEqual(net.ownedNamespaces(), []);
  await t.notThrowsAsync(cap.stop()); // already stopped by destroy
});

test.serial('create sweeps namespaces of dead test processes, and the processes in them', async (t) => {
  // Pids never reach PID_MAX_LIMIT (2^22), so 4194305 is dead on every Linux machine; our pid keeps the name
  // unique when this file runs in parallel with itself. (A concurrent run's sweep may delete it first: fine.)
  const stale = `an4194305x${process.pid}ul`;
  await run('ip', ['netns', 'add', stale]);
  const sleeper = spawn('ip', ['netns', 'exec', stale, 'sleep', '600'], { stdio: 'ignore' });
  const exited = new Promise((resolve) => sleeper.once('exit', resolve));
  t.teardown(async () => {
    sleeper.kill('SIGKILL');
    await run('ip', ['netns', 'delete', stale], { reject: false });
  });
  for (let i = 0; (await run('ip', ['netns', 'pids', stale], { reject: false })).stdout.trim() === '' && i < 50; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }

  const live = await TestNet.create(t, { hosts: 1 });
  const ours = await namespaces();
  t.false(ours.includes(stale));
  t.true(ours.includes(live.underlayNs), 'namespaces of live pids are kept');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  t.is(sleeper.signalCode, 'SIGKILL', 'the process left in the stale namespace was killed');
});
