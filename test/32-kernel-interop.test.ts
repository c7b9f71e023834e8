// Interop with the kernel: our engine on host 1, a Linux vxlan device (id 42, dstport 4789)
// bridged to the instance on host 2. tshark dissects what we put on the wire.
import test from 'ava';
import { TestNet, tsharkFields } from './helpers/testnet.ts';
import { counters, instanceMac } from './helpers/overlay.ts';

test('our engine and a kernel vxlan device ping both ways, and tshark sees VXLAN VNI 42 carrying ICMP', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const a = await net.addInstance('a');
  const b = await net.addInstance('b');
  const d1 = await net.startAppnetd(h1, {
    vnis: [{ vni: 42, flood: [h2.underlayIp] }],
    ports: [{ name: 'eth0', kind: 'tap', vni: 42, mac: instanceMac(1, 42), netns: a.ns }],
  });
  await net.configureInstance(a, 'eth0', '198.18.42.1/24');
  await net.addKernelVtep(h2, { vni: 42, remotes: [h1.underlayIp], instance: b, cidr: '198.18.42.2/24', mac: instanceMac(2, 42) });

  const cap = await net.capture(h1.ns, 'ul0', { filter: 'udp port 4789' });
  const ab = await net.ping(a.ns, '198.18.42.2', { count: 5, interval: 0.1 });
  const ba = await net.ping(b.ns, '198.18.42.1', { count: 5, interval: 0.1 });
  const file = await cap.stop();
  t.is(ab.received, 5, ab.output);
  t.is(ba.received, 5, ba.output);

  const rows = tsharkFields(file, ['ip.src', 'ip.dst', 'udp.srcport', 'udp.dstport', 'vxlan.vni', 'icmp.type'], 'icmp', ['udp.port==4789,vxlan']);
  const ours = rows.filter((r) => r[0].startsWith(h1.underlayIp));
  const kernels = rows.filter((r) => r[0].startsWith(h2.underlayIp));
  t.true(ours.length >= 10, `expected our encapsulated ICMP in the capture, got ${JSON.stringify(rows)}`);
  t.true(kernels.length >= 10);
  for (const r of ours) {
    t.is(r[3], '4789');
    t.is(r[4], '42');
    t.regex(r[5], /^(0|8)$/);
    t.true(Number(r[2]) !== 4789, 'the outer source port comes from the flow hash, not the VXLAN port');
  }
  t.true(ours.some((r) => r[5] === '8') && ours.some((r) => r[5] === '0'));
  // The inner IP tshark found is the instances' traffic (second ip.src value is the inner one).
  t.true(ours.some((r) => r[0].split(',')[1] === '198.18.42.1'));
  t.is((await counters(d1)).wire.drops.malformed, 0);
});
