// A second (or third) process on the same store, for the conformance suite's multi-process tests.
//
// Child:  node --import tsx test/helpers/store-peer.ts <store-url>
//         prints {"ready":true,"pid":N} once the store is open, then reads one JSON request per line on
//         stdin ({"id":1,"cmd":"put",...}) and answers each with {"id":1,"ok":true,"result":...} or
//         {"id":1,"ok":false,"error":{"name":...,"message":...}}. Requests run concurrently.
// Parent: spawnStorePeer(url) starts one and returns a PeerHandle that sends requests.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Store, TxnRequest, WatchEvent } from '../../control/store/store.ts';

export type PeerCommand =
  | { cmd: 'put'; key: string; value: string; lease?: string }
  | { cmd: 'get'; key: string }
  | { cmd: 'delete'; key: string }
  | { cmd: 'txn'; request: TxnRequest }
  | { cmd: 'grantLease'; ttl: number }
  | { cmd: 'keepAlive'; lease: string }
  /** Rounds 0..rounds-1: meet the others at a barrier, then txn(value == r → put r+1). Result: CasRounds. */
  | { cmd: 'casRounds'; key: string; barrier: string; rounds: number; peers: number; me: string }
  /** Read-modify-write increments with modRevision CAS, retrying until `times` succeeded. Result: attempts. */
  | { cmd: 'increment'; key: string; times: number }
  /** Puts prefix/me/i for i < count. Result: the revisions, in order. */
  | { cmd: 'putMany'; prefix: string; me: string; count: number }
  /** Starts a watch named `tag`; answers once it is established. */
  | { cmd: 'watchStart'; tag: string; prefix: string; fromRevision?: number }
  /** Answers with the first `count` events of watch `tag` (as PeerEvent), then cancels it. */
  | { cmd: 'watchCollect'; tag: string; count: number };

export interface CasRounds { won: number[]; lost: number[] }
export interface PeerEvent { type: string; key: string; revision: number }

export interface PeerHandle {
  readonly pid: number;
  request<T = unknown>(command: PeerCommand): Promise<T>;
  /** SIGKILL: the process dies without closing the store or revoking its leases. */
  kill(): Promise<void>;
  /** Closes the store and waits for the process to exit. */
  close(): Promise<void>;
}

const peerScript = fileURLToPath(import.meta.url);
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

export async function spawnStorePeer(url: string): Promise<PeerHandle> {
  const child = spawn(process.execPath, ['--import', 'tsx', peerScript, url], {
    cwd: repoRoot,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let onReady: ((pid: number) => void) | undefined;
  const ready = new Promise<number>((resolve, reject) => {
    onReady = resolve;
    void exited.then(() => reject(new Error(`store peer exited before it was ready (url ${url})`)));
  });
  void exited.then(() => {
    for (const p of pending.values()) p.reject(new Error(`store peer ${child.pid} exited with requests pending`));
    pending.clear();
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const msg = JSON.parse(line) as { ready?: boolean; pid?: number; id?: number; ok?: boolean; result?: unknown; error?: { name: string; message: string } };
    if (msg.ready) return onReady?.(msg.pid!);
    const p = pending.get(msg.id!);
    if (!p) return;
    pending.delete(msg.id!);
    if (msg.ok) p.resolve(msg.result);
    else p.reject(Object.assign(new Error(msg.error!.message), { name: msg.error!.name }));
  });
  const pid = await ready;
  return {
    pid,
    request<T>(command: PeerCommand): Promise<T> {
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.stdin!.write(`${JSON.stringify({ id, ...command })}\n`);
      });
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.stdin!.end();
      await exited;
    },
  };
}

// ---- Child side ----------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function runPeer(url: string): Promise<void> {
  const { openStore } = await import('../../control/store/index.ts');
  const store = await openStore(url);
  const watches = new Map<string, { events: PeerEvent[]; cancel: () => Promise<void>; failed?: Error }>();
  const send = (msg: unknown) => process.stdout.write(`${JSON.stringify(msg)}\n`);
  const inflight = new Set<Promise<unknown>>();

  const handlers: { [C in PeerCommand['cmd']]: (c: Extract<PeerCommand, { cmd: C }>) => Promise<unknown> } = {
    put: (c) => store.put(c.key, c.value, { lease: c.lease }),
    get: (c) => store.get(c.key),
    delete: (c) => store.delete(c.key),
    txn: (c) => store.txn(c.request),
    grantLease: (c) => store.grantLease(c.ttl),
    keepAlive: (c) => store.keepAlive(c.lease),
    casRounds: (c) => casRounds(store, c),
    increment: (c) => increment(store, c.key, c.times),
    async putMany(c) {
      const revisions: number[] = [];
      for (let i = 0; i < c.count; i++) revisions.push(await store.put(`${c.prefix}${c.me}/${i}`, JSON.stringify(i)));
      return revisions;
    },
    async watchStart(c) {
      const state = { events: [] as PeerEvent[], cancel: async () => {}, failed: undefined as Error | undefined };
      const watcher = await store.watch(c.prefix, { fromRevision: c.fromRevision, onError: (e) => { state.failed = e; } },
        (events: WatchEvent[]) => { for (const e of events) state.events.push({ type: e.type, key: e.kv.key, revision: e.revision }); });
      state.cancel = () => watcher.cancel();
      watches.set(c.tag, state);
      return true;
    },
    async watchCollect(c) {
      const state = watches.get(c.tag);
      if (!state) throw new Error(`no watch named ${c.tag}`);
      while (state.events.length < c.count) {
        if (state.failed) throw state.failed;
        await sleep(5);
      }
      await state.cancel();
      watches.delete(c.tag);
      return state.events.slice(0, c.count);
    },
  };

  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const { id, ...command } = JSON.parse(line) as PeerCommand & { id: number };
    const handler = handlers[command.cmd] as (c: PeerCommand) => Promise<unknown>;
    const p = handler(command as PeerCommand).then(
      (result) => send({ id, ok: true, result: result ?? null }),
      (err: Error) => send({ id, ok: false, error: { name: err.name, message: err.message } }),
    );
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  });
  send({ ready: true, pid: process.pid });
  await new Promise<void>((resolve) => lines.once('close', () => resolve()));
  await Promise.all(inflight);
  await store.close();
}

async function casRounds(store: Store, c: Extract<PeerCommand, { cmd: 'casRounds' }>): Promise<CasRounds> {
  const result: CasRounds = { won: [], lost: [] };
  for (let r = 0; r < c.rounds; r++) {
    // The barrier: nobody tries round r until every peer has finished round r - 1, so all peers try
    // round r against the same value, and exactly one of them can win.
    await store.put(`${c.barrier}${r}/${c.me}`, '""');
    while ((await store.range(`${c.barrier}${r}/`)).kvs.length < c.peers) await sleep(1);
    const { succeeded } = await store.txn({
      compare: [{ key: c.key, target: 'value', op: '==', value: String(r) }],
      success: [{ type: 'put', key: c.key, value: String(r + 1) }],
    });
    (succeeded ? result.won : result.lost).push(r);
  }
  return result;
}

async function increment(store: Store, key: string, times: number): Promise<number> {
  let attempts = 0;
  for (let done = 0; done < times; attempts++) {
    const kv = await store.get(key);
    const { succeeded } = await store.txn({
      compare: [{ key, target: 'modRevision', op: '==', value: kv?.modRevision ?? 0 }],
      success: [{ type: 'put', key, value: String(Number(kv?.value ?? '0') + 1) }],
    });
    if (succeeded) done++;
  }
  return attempts;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.argv[2];
  if (!url) {
    process.stderr.write('usage: node --import tsx test/helpers/store-peer.ts <store-url>\n');
    process.exit(2);
  }
  runPeer(url).catch((err: Error) => {
    process.stderr.write(`store peer: ${err.stack ?? err.message}\n`);
    process.exit(1);
  });
}
