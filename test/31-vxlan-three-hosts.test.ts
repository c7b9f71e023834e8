// Three hosts: ARP resolves across hosts by flooding; once learned, unicast goes only to the
// host that has the destination.
import test from 'ava';
import { buildOverlay, counters, instanceMac } from './helpers/overlay.ts';

test('ARP floods to every host, then unicast reaches only the right host, with no duplicates', async (t) => {
  const { net, daemons, instances: [a, b, c] } = await buildOverlay(t, { hosts: 3 });
  const [da, db, dc] = daemons;
  const cBefore = (await counters(dc)).vnis['42'].rx_packets;

  const first = await net.ping(a.inst.ns, b.addr, { count: 3, interval: 0.1 });
  t.is(first.received, 3, first.output);

  // The broadcast ARP request from a was replicated to both other hosts.
  const cAfterArp = (await counters(dc)).vnis['42'].rx_packets;
  t.true(cAfterArp > cBefore, 'host 3 never saw the flooded ARP request');
  // Both ends learned each other at the right VTEP.
  const fdbA = (await da.get('/engine/fdb/42')) as Array<{ mac: string; remote: string | null }>;
  t.is(fdbA.find((e) => e.mac === b.mac)?.remote, b.host.underlayIp);
  const fdbB = (await db.get('/engine/fdb/42')) as Array<{ mac: string; remote: string | null }>;
  t.is(fdbB.find((e) => e.mac === a.mac)?.remote, a.host.underlayIp);

  // Learned unicast: 50 pings a <-> b; host 3 receives none of them.
  const before = await counters(dc);
  const bBefore = (await counters(db)).vnis['42'].rx_packets;
  const p = await net.ping(a.inst.ns, b.addr, { count: 50, interval: 0.02 });
  t.is(p.received, 50, p.output);
  t.is(p.duplicates, 0, 'a flooded unicast frame would show up as a duplicate reply');
  const after = await counters(dc);
  t.is(after.vnis['42'].rx_packets, before.vnis['42'].rx_packets, 'host 3 received unicast meant for host 2');
  t.true((await counters(db)).vnis['42'].rx_packets - bBefore >= 50);
  t.is(c.mac, instanceMac(3, 42));
});
