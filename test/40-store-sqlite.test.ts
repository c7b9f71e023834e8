// The Store on SQLite: the conformance suite on a temporary file shared by this process and child
// processes, plus what only SQLite has (URLs, WAL, reopening, lagging watchers, a whole-file gap check).

import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CompactedError, InvalidArgumentError, SqliteStore, StoreClosedError, openStore, parseStoreUrl,
} from '../control/store/index.ts';
import type { StoreError, WatchEvent } from '../control/store/index.ts';
import { storeConformance } from './helpers/store-conformance.ts';
import { spawnStorePeer } from './helpers/store-peer.ts';

const dir = mkdtempSync(join(tmpdir(), 'appnet-store-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const freshFile = () => join(dir, `store-${files++}.db`);
const sharedFile = freshFile();

storeConformance('sqlite', async () => {
  const store = new SqliteStore(sharedFile, { pollIntervalMs: 10 });
  return {
    store,
    spawnPeer: () => spawnStorePeer(`sqlite:${sharedFile}`),
    cleanup: () => store.close(),
  };
});

test('store URLs: sqlite forms open SQLite, etcd forms are parsed (test 45 opens them), others are refused', async (t) => {
  const file = freshFile();
  t.deepEqual(parseStoreUrl(file), { kind: 'sqlite', path: file });
  t.deepEqual(parseStoreUrl(`sqlite:${file}`), { kind: 'sqlite', path: file });
  t.deepEqual(parseStoreUrl(`sqlite://${file}`), { kind: 'sqlite', path: file });
  t.deepEqual(parseStoreUrl('etcd://198.18.0.201:2379,198.18.0.202:2379'), { kind: 'etcd', endpoints: ['198.18.0.201:2379', '198.18.0.202:2379'], tls: false });
  for (const url of [file, `sqlite:${file}`]) {
    const store = await openStore(url);
    t.true(store instanceof SqliteStore);
    await store.close();
  }
  await t.throwsAsync(openStore('ftp://example/store'), { instanceOf: InvalidArgumentError, message: /unknown scheme/ });
  await t.throwsAsync(openStore('sqlite://somehost/store.db'), { instanceOf: InvalidArgumentError, message: /names a host/ });
  await t.throwsAsync(openStore(''), { instanceOf: InvalidArgumentError });
});

test('the file is in WAL mode and keeps state and history across reopening', async (t) => {
  const file = freshFile();
  const first = new SqliteStore(file);
  const r1 = await first.put('k', '"one"');
  const r2 = await first.put('k', '"two"');
  await first.close();
  await t.throwsAsync(first.get('k'), { instanceOf: StoreClosedError });

  const Database = createRequire(import.meta.url)('better-sqlite3') as new (path: string) => {
    pragma(s: string, o: { simple: true }): unknown; close(): void;
  };
  const raw = new Database(file);
  t.is(raw.pragma('journal_mode', { simple: true }), 'wal');
  raw.close();

  const again = new SqliteStore(file);
  t.is(await again.revision(), r2);
  t.like(await again.get('k'), { value: '"two"', createRevision: r1, version: 2 });
  const events: WatchEvent[] = [];
  const w = await again.watch('k', { fromRevision: r1 }, (e) => { events.push(...e); });
  await waitFor(() => events.length === 2);
  t.deepEqual(events.map((e) => e.kv.value), ['"one"', '"two"']);
  await w.cancel();
  await again.close();
});

test('a watcher whose unread history is compacted ends with CompactedError', async (t) => {
  const store = new SqliteStore(freshFile());
  const r1 = await store.put('k', '1');
  let release!: () => void;
  const blocked = new Promise<void>((resolve) => { release = resolve; });
  const seen: number[] = [];
  let failure: StoreError | undefined;
  await store.watch('k', { fromRevision: r1, onError: (e) => { failure = e; } }, async (events) => {
    seen.push(...events.map((e) => e.revision));
    await blocked;
  });
  await waitFor(() => seen.length === 1);
  await store.put('k', '2');
  const r3 = await store.put('k', '3');
  await store.compact(r3);
  release();
  await waitFor(() => failure !== undefined);
  t.true(failure instanceof CompactedError);
  t.deepEqual(seen, [r1]);
  await store.close();
});

test('with two writer processes, a watcher sees every revision of the file, with no gap', async (t) => {
  const file = freshFile();
  const store = new SqliteStore(file, { pollIntervalMs: 10 });
  const start = await store.revision();
  const events: WatchEvent[] = [];
  await store.watch('', {}, (e) => { events.push(...e); });
  const writers = await Promise.all([spawnStorePeer(`sqlite:${file}`), spawnStorePeer(`sqlite:${file}`)]);
  try {
    await Promise.all(writers.map((peer, i) => peer.request({ cmd: 'putMany', prefix: 'gap/', me: `w${i}`, count: 150 })));
    const end = await store.revision();
    t.is(end, start + 300);
    await waitFor(() => events.length >= 300);
    t.deepEqual(events.map((e) => e.revision), Array.from({ length: 300 }, (_, i) => start + 1 + i));
  } finally {
    await Promise.all(writers.map((peer) => peer.close()));
    await store.close();
  }
});

async function waitFor(ready: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000; // a guard against hangs, not an assertion
  while (!ready()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the store');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
