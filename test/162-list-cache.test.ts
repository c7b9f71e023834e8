// The API's list cache (control/api/list-cache.ts): a body is reused until the view changes, and requests
// that miss together share one build instead of serialising a copy each.
import test from 'ava';
import { ListCache } from '../control/api/list-cache.ts';
import type { StateView } from '../control/repo/state-view.ts';

const text = async (body: Promise<Buffer>) => (await body).toString();

/** Just what the cache follows of a view: its change notifications. */
function fakeView() {
  const listeners = new Set<() => void>();
  const view = { onChange: (fn: () => void) => { listeners.add(fn); return () => listeners.delete(fn); } } as unknown as StateView;
  return { view, change: () => { for (const fn of listeners) fn(); } };
}

test('requests that miss together share one build; a change since makes the next one build again', async (t) => {
  const { view, change } = fakeView();
  const cache = new ListCache(view);
  let builds = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const build = async () => { builds++; await gate; return [{ n: builds }]; };
  const together = Array.from({ length: 8 }, () => cache.json('k', build));
  release();
  const bodies = await Promise.all(together);
  t.deepEqual(bodies.map(String), Array(8).fill('[{"n":1}]'));
  t.true(bodies.every((b) => b === bodies[0]), 'one body, shared');
  t.is(builds, 1);
  t.is(await text(cache.json('k', build)), '[{"n":1}]', 'served from the cache');
  change();
  t.is(await text(cache.json('k', build)), '[{"n":2}]', 'rebuilt after a change');
  t.is(builds, 2);
  cache.close();
});

test('a build that fails fails every request waiting on it, and is not cached', async (t) => {
  const { view } = fakeView();
  const cache = new ListCache(view);
  let calls = 0;
  const failing = async () => { calls++; throw new Error('store unavailable: test'); };
  const [a, b] = [cache.json('k', failing), cache.json('k', failing)];
  await t.throwsAsync(a, { message: /store unavailable/ });
  await t.throwsAsync(b, { message: /store unavailable/ });
  t.is(calls, 1);
  t.is(await text(cache.json('k', async () => ['ok'])), '["ok"]');
  cache.close();
});

test('a change while a build runs: the body is served to its callers but not cached', async (t) => {
  const { view, change } = fakeView();
  const cache = new ListCache(view);
  let n = 0;
  const first = cache.json('k', async () => { change(); return [++n]; });
  t.is(await text(first), '[1]');
  t.is(await text(cache.json('k', async () => [++n])), '[2]', 'built again: the first body straddled a change');
  cache.close();
});
