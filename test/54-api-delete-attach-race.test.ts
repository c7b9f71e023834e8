// A network delete racing an interface attach, through the REST API over real HTTP (two requests
// in flight at once, many times, with the delete sent at varying moments): whatever the order, a
// deleted network never has interfaces, an interface never lands on a deleted network, and both
// requests get a proper answer.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { buildApi } from '../control/api/app.ts';
import { NetworkRepository } from '../control/repo/networks.ts';
import { openStore } from '../control/store/index.ts';
import { POOL, TOKENS } from './helpers/api-fixture.ts';
import { INTERFACES_PREFIX } from '../control/repo/keys.ts';

const ROUNDS = 60;

test('network delete vs interface attach: never an interface on a deleted network, every request answered', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-race-'));
  const store = await openStore(join(dir, 'store.db'));
  const app = buildApi({ store, tokens: TOKENS, floatingPool: POOL });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await app.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const { port } = app.server.address() as { port: number };
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { authorization: 'Bearer tok-a', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json().catch(() => null)) as any };
  };
  /** The truth in the store, not the API's view of it: interfaces whose record names the network. */
  const interfacesOn = async (network: string) =>
    (await store.range(INTERFACES_PREFIX)).kvs.map((kv) => JSON.parse(kv.value)).filter((i) => i.network_uuid === network);
  const answered = (r: { status: number; body: any }, what: string) => {
    t.is(r.body?.status, r.status, `${what}: error body names its status: ${JSON.stringify(r.body)}`);
    t.true(typeof r.body?.error === 'string' && r.body.error.length > 0, `${what}: error has a message: ${JSON.stringify(r.body)}`);
  };

  const networks = new NetworkRepository({ store, floatingPool: POOL }); // plays the daemon that marks networks created
  const outcomes: Record<string, number> = {};
  for (let round = 0; round < ROUNDS; round++) {
    const net = await call('POST', '/networks', { name: `race${round}`, netblock: `198.18.${10 + round}.0/24` });
    t.is(net.status, 200, JSON.stringify(net.body));
    const uuid = net.body.uuid as string;
    // Half the rounds on a deployed network (created), half on one still `initial`, which also takes interfaces.
    if (round % 2 === 1) await networks.markCreated(uuid);
    // The delete leaves 0, 1 or 2 event-loop turns after the attach, to land at different points of it.
    const attach = call('POST', '/instances', { name: `vm${round}`, host: 'hv1', interfaces: [{ network: uuid }] });
    for (let i = 0; i < Math.floor(round / 2) % 3; i++) await nextTurn();
    const del = call('DELETE', `/networks/${uuid}`);
    const [a, d] = await Promise.all([attach, del]);

    // Every request is answered: attach 200, or 406 (network no longer ready) / 409 (kept losing the race).
    t.true([200, 406, 409].includes(a.status), `attach answered ${a.status}: ${JSON.stringify(a.body)}`);
    if (a.status !== 200) answered(a, 'attach');
    t.true([200, 409].includes(d.status), `delete answered ${d.status}: ${JSON.stringify(d.body)}`);
    if (d.status !== 200) answered(d, 'delete');

    const state = (await call('GET', `/networks/${uuid}`)).body.state as string;
    const on = await interfacesOn(uuid);
    if (state === 'deleted') t.deepEqual(on, [], `round ${round}: network deleted with interfaces on it`);
    if (a.status === 200) {
      t.is(on.length, 1, `round ${round}: the attached interface is missing`);
      t.not(state, 'deleted', `round ${round}: interface attached to a network that was deleted`);
    } else {
      t.deepEqual(on, [], `round ${round}: a refused attach left an interface`);
    }
    if (d.status === 200) t.true(state === 'deleted' || state === 'delete-wait', `round ${round}: delete answered 200 but state is ${state}`);
    const key = `${round % 2 ? 'created' : 'initial'}: attach ${a.status}, delete ${d.status} -> ${state}`;
    outcomes[key] = (outcomes[key] ?? 0) + 1;

    // Removing the instance finishes a delete-wait network.
    if (a.status === 200) {
      t.is((await call('DELETE', `/instances/${a.body.uuid}`)).status, 200);
      if (d.status === 200) t.is((await call('GET', `/networks/${uuid}`)).body.state, 'deleted', `round ${round}: delete-wait not finished`);
    }
  }
  t.log(outcomes);
});
