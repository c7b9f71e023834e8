// Two hosts, one instance each on VNI 42, through appnetd's userspace data plane.
import test from 'ava';
import { buildOverlay, counters, port } from './helpers/overlay.ts';
import { runIn } from './helpers/run.ts';
import type { Instance } from './helpers/testnet.ts';

test('ping both ways with 0% loss and a 10 MB TCP transfer arrives intact', async (t) => {
  const { net, daemons, instances: [a, b] } = await buildOverlay(t, { hosts: 2 });

  const ab = await net.ping(a.inst.ns, b.addr, { count: 10, interval: 0.05 });
  t.is(ab.received, 10, ab.output);
  t.is(ab.duplicates, 0);
  const ba = await net.ping(b.inst.ns, a.addr, { count: 10, interval: 0.05 });
  t.is(ba.received, 10, ba.output);

  const x = await net.tcpTransfer(a.inst.ns, b.inst.ns, b.addr, 10 * 1024 * 1024);
  t.is(x.receivedBytes, 10 * 1024 * 1024);
  t.is(x.receivedSha256, x.sentSha256);

  // The traffic went through the engine: its counters saw the frames, both ways, on the VNI.
  const c = await counters(daemons[0]);
  t.true(port(c, 'tap42').rx_bytes > 10 * 1024 * 1024, JSON.stringify(port(c, 'tap42')));
  t.true(c.vnis['42'].tx_packets > 7000);
  t.true(c.vnis['42'].rx_packets > 0);
  t.is(c.wire.drops.malformed, 0);
});

test('a TAP instance and a TUN instance reach each other (the engine answers ARP for TUN)', async (t) => {
  let tun: Instance | undefined;
  const { net, daemons, instances: [a] } = await buildOverlay(t, {
    hosts: 2,
    extraPorts: async (h, n) => {
      if (h.index !== 2) return [];
      tun = await n.addInstance('tun');
      return [{ name: 'tun42', kind: 'tun', vni: 42, ipv4: '198.18.42.20', mac: '02:00:00:2a:00:20', netns: tun.ns }];
    },
  });
  await net.configureInstance(tun!, 'tun42', '198.18.42.20/24');

  const toTun = await net.ping(a.inst.ns, '198.18.42.20', { count: 5, interval: 0.1 });
  t.is(toTun.received, 5, toTun.output);
  const fromTun = await net.ping(tun!.ns, a.addr, { count: 5, interval: 0.1 });
  t.is(fromTun.received, 5, fromTun.output);
  t.is(fromTun.duplicates, 0);

  // The TAP instance resolved the TUN instance's address to the MAC the engine stands in with.
  const neigh = await runIn(a.inst.ns, 'ip', ['neigh', 'show', '198.18.42.20']);
  t.regex(neigh.stdout, /02:00:00:2a:00:20/);
  const c = await counters(daemons[1]);
  t.true(port(c, 'tun42').tx_packets >= 10, JSON.stringify(port(c, 'tun42')));
});

test('with every offload switched off (and none on the underlay) a transfer still arrives intact', async (t) => {
  const { net, daemons, instances: [a, b] } = await buildOverlay(t, {
    hosts: 2,
    offloads: { udpGso: false, udpGro: false, tapOffload: false },
  });
  for (const h of [a.host, b.host]) await runIn(h.ns, 'ethtool', ['-K', 'ul0', 'tx', 'off', 'rx', 'off', 'gso', 'off', 'gro', 'off']);
  const x = await net.tcpTransfer(a.inst.ns, b.inst.ns, b.addr, 4 * 1024 * 1024);
  t.is(x.receivedBytes, 4 * 1024 * 1024);
  t.is(x.receivedSha256, x.sentSha256);
  // Without TAP offload the instance segments itself: the device offers no TSO.
  const features = await runIn(a.inst.ns, 'ethtool', ['-k', 'tap42']);
  t.regex(features.stdout, /tcp-segmentation-offload: off/);
  const c = await counters(daemons[0]);
  t.is(c.vnis['42'].drops.oversize + c.vnis['42'].drops.queue_full, 0, JSON.stringify(c.vnis['42'].drops));
});

test('with offloads on, the instance hands TCP super-frames to the engine (TSO) and the engine cuts them', async (t) => {
  const { net, instances: [a, b] } = await buildOverlay(t, { hosts: 2 });
  const features = await runIn(a.inst.ns, 'ethtool', ['-k', 'tap42']);
  t.regex(features.stdout, /tcp-segmentation-offload: on/);
  const x = await net.tcpTransfer(a.inst.ns, b.inst.ns, b.addr, 4 * 1024 * 1024);
  t.is(x.receivedSha256, x.sentSha256);
});
