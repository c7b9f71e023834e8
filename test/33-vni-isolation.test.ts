// Two VNIs on the same hosts stay isolated, even with identical instance addresses.
import test from 'ava';
import { runIn } from './helpers/run.ts';
import { buildOverlay, counters, instanceMac, port } from './helpers/overlay.ts';

test('identical addresses on VNI 42 and VNI 43 reach only their own VNI', async (t) => {
  const { net, daemons, instances } = await buildOverlay(t, {
    hosts: 2,
    vnis: [42, 43],
    addr: (h) => `198.18.42.${h}`,
  });
  const find = (h: number, vni: number) => instances.find((i) => i.host.index === h && i.inst.name.endsWith(`v${vni}`))!;
  const a42 = find(1, 42);
  const a43 = find(1, 43);

  const p42 = await net.ping(a42.inst.ns, '198.18.42.2', { count: 5, interval: 0.05 });
  t.is(p42.received, 5, p42.output);
  // Nothing of VNI 42's traffic, not even the flooded ARP request, reached VNI 43's instance.
  t.is(port(await counters(daemons[1]), 'tap43').tx_packets, 0);

  const p43 = await net.ping(a43.inst.ns, '198.18.42.2', { count: 5, interval: 0.05 });
  t.is(p43.received, 5, p43.output);
  t.is(p43.duplicates, 0);

  // Each instance resolved the peer address to its own VNI's peer.
  const n42 = await runIn(a42.inst.ns, 'ip', ['neigh', 'show', '198.18.42.2']);
  const n43 = await runIn(a43.inst.ns, 'ip', ['neigh', 'show', '198.18.42.2']);
  t.regex(n42.stdout, new RegExp(instanceMac(2, 42)));
  t.regex(n43.stdout, new RegExp(instanceMac(2, 43)));
});
