// The Store conformance suite: what every implementation (SQLite, etcd) must do, as ava tests.
//
// storeConformance(name, factory) registers the tests; factory() is called once per test and returns a
// fresh Store handle, perhaps on a backing store that other tests use at the same time. So each test
// works under its own random prefix and asserts revisions relative to what it wrote, never absolute
// ones or the global revision's neighbours. Compaction affects everyone, so its test runs serially
// (ava runs serial tests before concurrent ones). With spawnPeer, the suite also runs the multi-process
// tests: other processes open the same store through test/helpers/store-peer.ts.

import test from 'ava';
import type { ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import {
  CompactedError, InvalidArgumentError, LeaseNotFoundError, compareKeys,
} from '../../control/store/store.ts';
import type { Compare, CompareOp, Store, WatchEvent, WatchOptions } from '../../control/store/store.ts';
import type { CasRounds, PeerCommand, PeerEvent, PeerHandle } from './store-peer.ts';

export type { PeerHandle } from './store-peer.ts';

export interface StoreFixture {
  store: Store;
  /** Starts another process with its own handle on the same backing store. */
  spawnPeer?: () => Promise<PeerHandle>;
  cleanup(): Promise<void>;
}

const WAIT_MS = 30_000; // only a guard against hangs; no test asserts how long anything takes
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitUntil(what: string, ready: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** A watch that records what it receives, per handler call. */
async function record(store: Store, prefix: string, options: WatchOptions = {}) {
  const calls: WatchEvent[][] = [];
  const errors: Error[] = [];
  const watcher = await store.watch(prefix, { ...options, onError: (e) => errors.push(e) }, (events) => {
    calls.push(events);
  });
  const events = () => calls.flat();
  return {
    calls, events, cancel: () => watcher.cancel(),
    async take(count: number): Promise<WatchEvent[]> {
      await waitUntil(`${count} events under ${prefix}`, () => {
        if (errors.length > 0) throw errors[0];
        return events().length >= count;
      });
      return events().slice(0, count);
    },
  };
}

const brief = (e: WatchEvent) => ({ type: e.type, key: e.kv.key, revision: e.revision });

export function storeConformance(name: string, factory: () => Promise<StoreFixture>): void {
  type Body = (t: ExecutionContext, store: Store, p: string, fixture: StoreFixture) => Promise<unknown>;
  const define = (register: typeof test | typeof test.serial, title: string, body: Body) =>
    register(`${name}: ${title}`, async (t) => {
      const fixture = await factory();
      try {
        await body(t, fixture.store, `/conformance/${randomUUID()}/`, fixture);
      } finally {
        await fixture.cleanup();
      }
    });
  const it = (title: string, body: Body) => define(test, title, body);

  it('put, get and delete keep revisions and versions like etcd', async (t, store, p) => {
    const k = `${p}k`;
    t.is(await store.get(k), undefined);
    const r1 = await store.put(k, '{"a":1}');
    t.deepEqual(await store.get(k), { key: k, value: '{"a":1}', createRevision: r1, modRevision: r1, version: 1 });
    const r2 = await store.put(k, '{"a":2}');
    t.true(r2 > r1);
    t.deepEqual(await store.get(k), { key: k, value: '{"a":2}', createRevision: r1, modRevision: r2, version: 2 });
    t.true((await store.revision()) >= r2);
    const d = await store.delete(k);
    t.is(d.deleted, 1);
    t.true(d.revision > r2);
    t.is(await store.get(k), undefined);
    const again = await store.delete(k);
    t.is(again.deleted, 0);
    t.true(again.revision >= d.revision);
    const r3 = await store.put(k, '"back"');
    t.deepEqual(await store.get(k), { key: k, value: '"back"', createRevision: r3, modRevision: r3, version: 1 });
    for (const value of ['', 'ünïcødé ✓ 🐢', '{"nested":{"list":[1,2,3]}}']) {
      await store.put(`${p}v`, value);
      t.is((await store.get(`${p}v`))?.value, value);
    }
  });

  it('rejects bad arguments with InvalidArgumentError', async (t, store, p) => {
    const bad = { instanceOf: InvalidArgumentError };
    await t.throwsAsync(store.put('', 'x'), bad);
    await t.throwsAsync(store.get(''), bad);
    await t.throwsAsync(store.put(`${p}k`, 42 as unknown as string), bad);
    await t.throwsAsync(store.range(p, { limit: 0 }), bad);
    await t.throwsAsync(store.deletePrefix(''), bad);
    await t.throwsAsync(store.grantLease(0), bad);
    await t.throwsAsync(store.grantLease(1.5), bad);
    await t.throwsAsync(store.txn({ success: [{ type: 'put', key: `${p}d`, value: '1' }, { type: 'put', key: `${p}d`, value: '2' }] }), bad);
    await t.throwsAsync(store.txn({ success: [{ type: 'put', key: `${p}d/x`, value: '1' }, { type: 'delete', key: `${p}d/`, prefix: true }] }), bad);
    await t.throwsAsync(store.txn({ compare: [{ key: `${p}d`, target: 'version', op: '==', value: '1' as unknown as number }] }), bad);
    t.is((await store.range(p)).kvs.length, 0, 'a rejected txn writes nothing');
  });

  it('range sorts by UTF-8 bytes and honours prefix boundaries, limit and paging', async (t, store, p) => {
    const names = ['b', 'a', 'a/', 'a/x', 'a/y/z', 'ab', 'a0', 'a.', 'é', 'z', 'A', '~', '🐢', 'ａ'];
    let last = 0;
    for (const n of names) last = await store.put(p + n, JSON.stringify(n));
    const all = await store.range(p);
    t.deepEqual(all.kvs.map((kv) => kv.key.slice(p.length)), [...names].sort(compareKeys));
    t.false(all.more);
    t.true(all.revision >= last);
    t.deepEqual((await store.range(`${p}a/`)).kvs.map((kv) => kv.key.slice(p.length)), ['a/', 'a/x', 'a/y/z']);
    t.deepEqual((await store.range(`${p}é`)).kvs.map((kv) => kv.key.slice(p.length)), ['é']);
    t.deepEqual((await store.range(`${p}nothing/`)).kvs, []);
    const page = await store.range(p, { limit: 3 });
    t.deepEqual(page.kvs, all.kvs.slice(0, 3));
    t.true(page.more);
    const paged = [];
    for (let from: string | undefined; ;) {
      const r = await store.range(p, { limit: 4, from });
      paged.push(...r.kvs);
      if (!r.more) break;
      from = `${r.kvs[r.kvs.length - 1].key}\0`;
    }
    t.deepEqual(paged, all.kvs);
    const any = await store.range('', { limit: 1 });
    t.is(any.kvs.length, 1);
    t.true(any.more);
  });

  it('deletePrefix deletes exactly the prefix, in one revision', async (t, store, p) => {
    for (const n of ['d', 'd/1', 'd/2', 'd/3/x', 'dx']) await store.put(p + n, '1');
    const w = await record(store, p);
    const result = await store.deletePrefix(`${p}d/`);
    t.is(result.deleted, 3);
    t.deepEqual((await store.range(p)).kvs.map((kv) => kv.key.slice(p.length)), ['d', 'dx']);
    const events = await w.take(3);
    t.deepEqual(events.map(brief), ['d/1', 'd/2', 'd/3/x'].map((n) => ({ type: 'delete', key: p + n, revision: result.revision })));
    t.true(events.every((e) => e.prevKv?.value === '1'));
    await w.cancel();
  });

  it('txn compares value, version, createRevision and modRevision with each operator', async (t, store, p) => {
    const k = `${p}k`;
    await store.put(k, 'm');
    await store.put(k, 'm');
    const kv = (await store.get(k))!;
    const expect: Record<CompareOp, (order: number) => boolean> = {
      '==': (o) => o === 0, '!=': (o) => o !== 0, '<': (o) => o < 0, '>': (o) => o > 0,
    };
    const cases: Array<[Compare, boolean]> = [];
    for (const op of Object.keys(expect) as CompareOp[]) {
      for (const [delta, than] of [[-1, 'l'], [0, 'm'], [1, 'n']] as const) {
        // order = actual compared with the given value: given = actual + delta → order = -delta
        cases.push([{ key: k, target: 'value', op, value: than }, expect[op](-delta)]);
        cases.push([{ key: k, target: 'version', op, value: kv.version + delta }, expect[op](-delta)]);
        cases.push([{ key: k, target: 'createRevision', op, value: kv.createRevision + delta }, expect[op](-delta)]);
        cases.push([{ key: k, target: 'modRevision', op, value: kv.modRevision + delta }, expect[op](-delta)]);
      }
      // A missing key has version and revisions 0, and no value: a value comparison never holds.
      cases.push([{ key: `${p}missing`, target: 'version', op, value: 0 }, expect[op](0)]);
      cases.push([{ key: `${p}missing`, target: 'createRevision', op, value: 1 }, expect[op](-1)]);
      cases.push([{ key: `${p}missing`, target: 'value', op, value: '' }, false]);
    }
    for (const [compare, holds] of cases) {
      t.is((await store.txn({ compare: [compare] })).succeeded, holds, JSON.stringify(compare));
    }
    const both = (v: string) => store.txn({ compare: [{ key: k, target: 'version', op: '==', value: 2 }, { key: k, target: 'value', op: '==', value: v }] });
    t.true((await both('m')).succeeded);
    t.false((await both('x')).succeeded, 'all compares must hold');
    t.deepEqual(await store.get(k), kv, 'compares alone change nothing');
  });

  it('txn applies the chosen branch atomically as one revision', async (t, store, p) => {
    await store.put(`${p}a`, '1');
    const w = await record(store, p);
    const ok = await store.txn({
      compare: [{ key: `${p}a`, target: 'value', op: '==', value: '1' }],
      success: [
        { type: 'put', key: `${p}b`, value: '2' }, { type: 'put', key: `${p}c`, value: '3' },
        { type: 'delete', key: `${p}a` }, { type: 'get', key: p, prefix: true },
      ],
      failure: [{ type: 'put', key: `${p}failed`, value: '1' }],
    });
    t.true(ok.succeeded);
    t.deepEqual(ok.results.map((r) => r.type), ['put', 'put', 'delete', 'get']);
    const got = ok.results[3];
    t.deepEqual(got.type === 'get' ? got.kvs.map((kv) => kv.key) : [], [`${p}b`, `${p}c`], 'a get sees the writes before it');
    t.is((await store.get(`${p}b`))?.modRevision, ok.revision);
    t.is((await store.get(`${p}c`))?.modRevision, ok.revision);
    t.is(await store.get(`${p}a`), undefined);
    const events = await w.take(3);
    t.deepEqual(events.map(brief), [
      { type: 'put', key: `${p}b`, revision: ok.revision }, { type: 'put', key: `${p}c`, revision: ok.revision },
      { type: 'delete', key: `${p}a`, revision: ok.revision },
    ]);
    t.is(w.calls[0].length, 3, "one revision's events arrive in one handler call");
    const failed = await store.txn({
      compare: [{ key: `${p}a`, target: 'value', op: '==', value: '1' }],
      success: [{ type: 'put', key: `${p}never`, value: '1' }],
      failure: [{ type: 'put', key: `${p}failed`, value: '1' }, { type: 'get', key: `${p}b` }],
    });
    t.false(failed.succeeded);
    t.deepEqual(failed.results[1], { type: 'get', kvs: [(await store.get(`${p}b`))!], more: false });
    t.is(await store.get(`${p}never`), undefined);
    t.truthy(await store.get(`${p}failed`));
    await t.throwsAsync(store.txn({
      success: [{ type: 'put', key: `${p}x`, value: '1' }, { type: 'put', key: `${p}y`, value: '1', lease: '999999999' }],
    }), { instanceOf: LeaseNotFoundError });
    t.is(await store.get(`${p}x`), undefined, 'a txn that fails part-way writes nothing');
    await w.cancel();
  });

  it('watch from a revision replays every event in order', async (t, store, p) => {
    const live = await record(store, p);
    const r0 = await store.put(`${p}a`, '1');
    const r1 = await store.put(`${p}b`, '1');
    const tx = await store.txn({ success: [
      { type: 'put', key: `${p}c`, value: '1' }, { type: 'delete', key: `${p}a` }, { type: 'put', key: `${p}b`, value: '2' },
    ] });
    const r3 = (await store.delete(`${p}b`)).revision;
    const r4 = await store.put(`${p}a`, '3');
    const expected = [
      { type: 'put', key: `${p}a`, revision: r0 }, { type: 'put', key: `${p}b`, revision: r1 },
      { type: 'put', key: `${p}c`, revision: tx.revision }, { type: 'delete', key: `${p}a`, revision: tx.revision },
      { type: 'put', key: `${p}b`, revision: tx.revision }, { type: 'delete', key: `${p}b`, revision: r3 },
      { type: 'put', key: `${p}a`, revision: r4 },
    ];
    const replay = await record(store, p, { fromRevision: r0 });
    const fromMiddle = await record(store, p, { fromRevision: tx.revision });
    t.deepEqual((await replay.take(7)).map(brief), expected);
    t.deepEqual((await live.take(7)).map(brief), expected);
    t.deepEqual((await fromMiddle.take(5)).map(brief), expected.slice(2));
    const [, , , deleteA, putB] = await replay.take(7);
    t.deepEqual(deleteA.kv, { key: `${p}a`, value: '', createRevision: 0, modRevision: tx.revision, version: 0 });
    t.deepEqual(deleteA.prevKv, { key: `${p}a`, value: '1', createRevision: r0, modRevision: r0, version: 1 });
    t.deepEqual(putB.kv, { key: `${p}b`, value: '2', createRevision: r1, modRevision: tx.revision, version: 2 });
    t.is(putB.prevKv?.value, '1');
    for (const w of [live, replay]) {
      t.true(w.calls.every((call) => call.every((e, i) => i === 0 || e.revision >= call[i - 1].revision)));
      t.true(w.calls.every((call) => call.filter((e) => e.revision === tx.revision).length % 3 === 0), 'revisions are not split');
      await w.cancel();
    }
    await fromMiddle.cancel();
  });

  it('watch delivers only its prefix, awaits async handlers, and stops on cancel', async (t, store, p) => {
    let active = 0;
    let overlapped = false;
    const seen: string[] = [];
    const slow = await store.watch(`${p}w/`, {}, async (events) => {
      overlapped ||= active++ > 0;
      await sleep(10);
      seen.push(...events.map((e) => e.kv.key.slice(p.length)));
      active--;
    });
    const other = await record(store, `${p}w/`);
    for (const n of ['w', 'w/1', 'wx', 'w/2', 'v', 'w/3']) await store.put(p + n, '1');
    await other.take(3);
    await waitUntil('the slow handler', () => seen.length >= 3);
    t.deepEqual(seen, ['w/1', 'w/2', 'w/3']);
    t.false(overlapped, 'the next handler call waits for the previous one');
    await slow.cancel();
    await store.put(`${p}w/4`, '1');
    await other.take(4);
    await sleep(50);
    t.deepEqual(seen, ['w/1', 'w/2', 'w/3'], 'no calls after cancel');
    await other.cancel();
  });

  define(test.serial, 'compaction forgets history; watching it fails with CompactedError', async (t, store, p) => {
    const r1 = await store.put(`${p}k`, '1');
    const r2 = await store.put(`${p}k`, '2');
    const r3 = await store.put(`${p}k`, '3');
    await store.compact(r2);
    const err = await t.throwsAsync(store.watch(p, { fromRevision: r1 }, () => {}), { instanceOf: CompactedError });
    t.regex(err!.message, new RegExp(`revision ${r1} has been compacted`));
    const w = await record(store, p, { fromRevision: r2 });
    t.deepEqual((await w.take(2)).map((e) => e.revision), [r2, r3]);
    await w.cancel();
    await t.throwsAsync(store.compact(r2), { instanceOf: CompactedError });
    await t.throwsAsync(store.compact(r3 + 1_000_000), { instanceOf: InvalidArgumentError });
    t.is((await store.get(`${p}k`))?.value, '3');
  });

  it('leases attach keys; revoke deletes them in one revision', async (t, store, p) => {
    const id = await store.grantLease(10);
    await store.put(`${p}k1`, '1', { lease: id });
    await store.put(`${p}k2`, '2', { lease: id });
    await store.put(`${p}k3`, '3', { lease: id });
    await store.put(`${p}k3`, '3'); // a put without the lease detaches the key
    t.is((await store.get(`${p}k1`))?.lease, id);
    t.is((await store.get(`${p}k3`))?.lease, undefined);
    t.is(await store.keepAlive(id), 10);
    const w = await record(store, p);
    const revision = await store.revokeLease(id);
    const events = await w.take(2);
    t.deepEqual(events.map(brief), [
      { type: 'delete', key: `${p}k1`, revision }, { type: 'delete', key: `${p}k2`, revision },
    ]);
    t.is(events[0].prevKv?.lease, id);
    t.truthy(await store.get(`${p}k3`));
    const gone = { instanceOf: LeaseNotFoundError };
    await t.throwsAsync(store.keepAlive(id), gone);
    await t.throwsAsync(store.revokeLease(id), gone);
    await t.throwsAsync(store.put(`${p}k4`, '4', { lease: id }), gone);
    await t.throwsAsync(store.put(`${p}k4`, '4', { lease: '12345678901' }), gone);
    await w.cancel();
  });

  it('an expired lease deletes its keys with delete events', async (t, store, p) => {
    await store.put(`${p}other`, '1');
    const id = await store.grantLease(1);
    const r = await store.put(`${p}host`, '{"up":true}', { lease: id });
    const w = await record(store, p, { fromRevision: r + 1 });
    const [expired] = await w.take(1);
    t.like(expired, { type: 'delete', kv: { key: `${p}host` }, prevKv: { value: '{"up":true}', lease: id } });
    t.is(await store.get(`${p}host`), undefined);
    t.truthy(await store.get(`${p}other`));
    await t.throwsAsync(store.keepAlive(id), { instanceOf: LeaseNotFoundError });
    await w.cancel();
  });

  it('two processes compare-and-swap one key: exactly one wins each round', async (t, store, p, fixture) => {
    if (!fixture.spawnPeer) throw new Error('the store fixture has no spawnPeer: the multi-process cases run on every store');
    const rounds = 200;
    await store.put(`${p}cas`, '0');
    const peers = await Promise.all([fixture.spawnPeer(), fixture.spawnPeer()]);
    try {
      const results = await Promise.all(peers.map((peer, i) => peer.request<CasRounds>({
        cmd: 'casRounds', key: `${p}cas`, barrier: `${p}barrier/`, rounds, peers: peers.length, me: `peer${i}`,
      })));
      for (let r = 0; r < rounds; r++) {
        t.is(results.filter((res) => res.won.includes(r)).length, 1, `round ${r} has one winner`);
        t.true(results.every((res) => res.won.includes(r) || res.lost.includes(r)), `both tried round ${r}`);
      }
      t.is((await store.get(`${p}cas`))?.value, String(rounds));
      t.is((await store.get(`${p}cas`))?.version, rounds + 1);
    } finally {
      await Promise.all(peers.map((peer) => peer.close()));
    }
  });

  it('two processes increment one key with CAS: no update is lost', async (t, store, p, fixture) => {
    if (!fixture.spawnPeer) throw new Error('the store fixture has no spawnPeer: the multi-process cases run on every store');
    const peers = await Promise.all([fixture.spawnPeer(), fixture.spawnPeer()]);
    try {
      const attempts = await Promise.all(peers.map((peer) => peer.request<number>({ cmd: 'increment', key: `${p}n`, times: 100 })));
      t.true(attempts.every((a) => a >= 100));
      t.is((await store.get(`${p}n`))?.value, '200');
    } finally {
      await Promise.all(peers.map((peer) => peer.close()));
    }
  });

  it('watchers in two processes see every revision in order while two processes write', async (t, store, p, fixture) => {
    if (!fixture.spawnPeer) throw new Error('the store fixture has no spawnPeer: the multi-process cases run on every store');
    const [watcher, ...writers] = await Promise.all([fixture.spawnPeer(), fixture.spawnPeer(), fixture.spawnPeer()]);
    try {
      await watcher.request({ cmd: 'watchStart', tag: 'w', prefix: p });
      const local = await record(store, p);
      const written = await Promise.all(writers.map((peer, i) => peer.request<number[]>({ cmd: 'putMany', prefix: p, me: `w${i}`, count: 100 })));
      const all = written.flat().sort((a, b) => a - b);
      t.is(new Set(all).size, 200, 'every put has its own revision');
      const remote = await watcher.request<PeerEvent[]>({ cmd: 'watchCollect', tag: 'w', count: 200 });
      t.deepEqual(remote.map((e) => e.revision), all);
      t.deepEqual((await local.take(200)).map((e) => e.revision), all);
      t.deepEqual(remote.filter((e) => e.key.startsWith(`${p}w0/`)).map((e) => e.key), [...Array(100).keys()].map((i) => `${p}w0/${i}`));
      await local.cancel();
    } finally {
      await Promise.all([watcher, ...writers].map((peer) => peer.close()));
    }
  });

  // The prefix is a directory (three '/'), which EtcdStore checks by its change mark, and `sub/` below it is
  // checked by reading its keys (control/store/change-marks.ts): both must see every kind of change in time.
  it('progress() hands the handler every change another process committed before it: puts, deletes, txns, an expired lease', async (t, store, p, fixture) => {
    if (!fixture.spawnPeer) throw new Error('the store fixture has no spawnPeer: the multi-process cases run on every store');
    const [peer, holder] = await Promise.all([fixture.spawnPeer(), fixture.spawnPeer()]);
    const follow = async (prefix: string, options: WatchOptions = {}) => {
      const log: string[] = [];
      const w = await store.watch(prefix, options, (events) => { for (const e of events) log.push(`${e.type} ${e.kv.key.slice(p.length)}`); });
      return { w, log };
    };
    const top = await follow(p);
    const sub = await follow(`${p}sub/`);
    const sibling = `${p.slice(0, -1)}-sibling/x`;
    try {
      let leasedAt = 0;
      const steps: Array<[string, () => Promise<unknown>, string[], string[]]> = [
        ['a put', () => peer.request({ cmd: 'put', key: `${p}a`, value: '1' }), ['put a'], []],
        ['a put below', () => peer.request({ cmd: 'put', key: `${p}sub/b`, value: '1' }), ['put sub/b'], ['put sub/b']],
        ['a delete', () => peer.request({ cmd: 'delete', key: `${p}a` }), ['delete a'], []],
        ['a write elsewhere', () => peer.request({ cmd: 'put', key: sibling, value: '1' }), [], []],
        ['a txn deleting a missing key', () => peer.request({ cmd: 'txn', request: { success: [{ type: 'delete', key: `${p}missing` }] } } as PeerCommand), [], []],
        ['a txn of two puts', () => peer.request({ cmd: 'txn', request: { success: [{ type: 'put', key: `${p}c`, value: '1' }, { type: 'put', key: `${p}sub/d`, value: '1' }] } } as PeerCommand), ['put c', 'put sub/d'], ['put sub/d']],
        ['a leased put', async () => {
          // Granted here, not before the steps above: a 1 s lease could expire on a loaded machine before its put.
          const lease = await holder.request<string>({ cmd: 'grantLease', ttl: 1 });
          leasedAt = await holder.request<number>({ cmd: 'put', key: `${p}sub/leased`, value: '1', lease });
        }, ['put sub/leased'], ['put sub/leased']],
        ['the lease expiring', async () => {
          await holder.kill();
          const until = Date.now() + WAIT_MS;
          while ((await store.get(`${p}sub/leased`)) !== undefined && Date.now() < until) await sleep(100);
        }, ['delete sub/leased'], ['delete sub/leased']],
      ];
      const want = { top: [] as string[], sub: [] as string[] };
      for (const [what, step, inTop, inSub] of steps) {
        await step();
        want.top.push(...inTop);
        want.sub.push(...inSub);
        await Promise.all([top.w.progress(), sub.w.progress()]);
        t.deepEqual(top.log, want.top, `after ${what}, under the prefix`);
        t.deepEqual(sub.log, want.sub, `after ${what}, below it`);
      }
      // A watch from before the expiry, replaying it (etcd sends history from a loop that runs every 100 ms):
      // at the check, only the key count can tell that the lease deleted a key.
      const late = await follow(p, { fromRevision: leasedAt + 1 });
      await late.w.progress();
      t.deepEqual(late.log, ['delete sub/leased'], 'a deletion by an expired lease, replayed');
      await late.w.cancel();
      await store.delete(sibling);
    } finally {
      await Promise.all([top.w.cancel(), sub.w.cancel(), peer.close(), holder.kill()]);
    }
  });

  // A watch from an old revision replays it (etcd sends history from a loop that runs every 100 ms), so
  // progress() right after it starts must wait for the replay: with the same keys rewritten, the key count
  // cannot tell, only the change marks (or reading the prefix) can.
  it('progress() right after a watch from an old revision waits for the replay of rewrites of the same keys', async (t, store, p) => {
    const keys = Array.from({ length: 10 }, (_, i) => `${p}k${i}`);
    const puts = (value: string) => keys.map((key) => ({ type: 'put' as const, key, value }));
    const from = (await store.txn({ success: puts('0') })).revision + 1;
    for (let round = 1; round <= 50; round++) await store.txn({ success: puts(String(round)) });
    const last = new Map<string, string>();
    let events = 0;
    const w = await store.watch(p, { fromRevision: from }, (batch) => {
      for (const e of batch) (events++, last.set(e.kv.key.slice(p.length), e.kv.value));
    });
    try {
      await w.progress();
      t.is(events, 500, 'every rewrite handed over before progress() resolved');
      t.deepEqual([...last.values()], keys.map(() => '50'));
    } finally {
      await w.cancel();
    }
  });

  it('a lease held by a process that dies expires, and another process sees its keys go', async (t, store, p, fixture) => {
    if (!fixture.spawnPeer) throw new Error('the store fixture has no spawnPeer: the multi-process cases run on every store');
    const peer = await fixture.spawnPeer();
    try {
      const id = await peer.request<string>({ cmd: 'grantLease', ttl: 1 });
      const r = await peer.request<number>({ cmd: 'put', key: `${p}host`, value: '{"pid":1}', lease: id });
      await peer.request({ cmd: 'keepAlive', lease: id });
      t.is((await store.get(`${p}host`))?.lease, id);
      await peer.kill();
      const w = await record(store, p, { fromRevision: r + 1 });
      t.like((await w.take(1))[0], { type: 'delete', kv: { key: `${p}host` } });
      t.is(await store.get(`${p}host`), undefined);
      await t.throwsAsync(store.keepAlive(id), { instanceOf: LeaseNotFoundError });
      await w.cancel();
    } finally {
      await peer.kill();
    }
  });
}
