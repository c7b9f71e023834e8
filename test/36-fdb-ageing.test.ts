// Learned MACs age out; traffic re-learns them (flooding again until it does).
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildOverlay } from './helpers/overlay.ts';

type Fdb = Array<{ mac: string; remote: string | null; port: number | null; static: boolean }>;

test('learned entries expire after ageingSeconds of silence and come back with traffic', async (t) => {
  const { net, daemons: [da], instances: [a, b] } = await buildOverlay(t, { hosts: 2, ageingSeconds: 1 });
  const p = await net.ping(a.inst.ns, b.addr, { count: 2, interval: 0.1 });
  t.is(p.received, 2, p.output);
  t.truthy(((await da.get('/engine/fdb/42')) as Fdb).find((e) => e.mac === b.mac));

  // Silence for well over the ageing time: the engine sweeps once a second.
  let fdb = (await da.get('/engine/fdb/42')) as Fdb;
  for (let i = 0; i < 40 && fdb.length > 0; i++) {
    await sleep(250);
    fdb = (await da.get('/engine/fdb/42')) as Fdb;
  }
  t.deepEqual(fdb, [], 'entries should have aged out');

  const again = await net.ping(a.inst.ns, b.addr, { count: 2, interval: 0.1 });
  t.is(again.received, 2, again.output);
  const relearned = ((await da.get('/engine/fdb/42')) as Fdb).find((e) => e.mac === b.mac);
  t.is(relearned?.remote, b.host.underlayIp);
  t.false(relearned?.static);
});
