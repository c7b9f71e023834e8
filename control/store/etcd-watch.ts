// Watches of EtcdStore: one gRPC watch stream per store, every watcher multiplexed on it, re-created after a
// lost stream from the revision after the last event received, so an outage or a dead member costs a delay
// and never an event. A watcher whose next revision was compacted meanwhile ends with CompactedError.
//
// Ordering: a stream's responses arrive in revision order; each watcher splits them into one batch per
// revision and hands batches to its handler one at a time, awaiting each (the Store contract).
//
// progress() does not use etcd's progress requests: before etcd 3.4.25 their answer can overtake events
// still queued on the stream (etcd issue 15220), and Debian ships 3.4.23. Instead it reads the revision R
// and, at R, whether anything under the prefix changed after the last event received: for a prefix that is
// a directory, by its change mark (change-marks.ts: one key), else by reading the keys changed since; and,
// when an expiring lease could have deleted keys unmarked, how many keys the prefix holds. When nothing
// changed (and the count matches the keys the watcher knows), it has received everything up to R;
// otherwise the missing events are on their way and it looks again once the next event arrives. (Without a
// mark, a key created and deleted again between two looks is the one change this cannot see; its two
// events still arrive, in order, and leave the handler's state as it was.) Checks that arrive together (a
// state view syncing its prefixes, eight API requests) share one etcd txn: one round trip per round,
// whatever the number of watchers.
import type { Etcd3, IDuplexStream, IEvent, IWatchRequest, IWatchResponse } from 'etcd3';
import { toStoreError } from './etcd-errors.ts';
import { GLOBAL_MARK, isMark, watchMark } from './change-marks.ts';
import {
  CompactedError, StoreClosedError, StoreError, StoreUnavailableError, WatchHandlerError, prefixRangeEnd,
  type KeyValue, type Revision, type WatchEvent, type WatchHandler, type Watcher,
} from './store.ts';

const PROGRESS_TIMEOUT_MS = 10_000;
/** Looks at a moved mark that no event followed, before the prefix is read instead. */
const MARK_MISSES = 3;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** etcd's end of a prefix range: ours, except '' (everything) which etcd spells as a single NUL byte. */
export function rangeEnd(prefix: string): Buffer {
  return prefix === '' ? Buffer.from([0]) : prefixRangeEnd(prefix);
}

/** etcd's start of a range: the key, except '' (from the first key), which etcd takes only as a NUL byte. */
export function rangeStart(key: string): Buffer {
  return key === '' ? Buffer.from([0]) : Buffer.from(key);
}

export function toKeyValue(kv: { key: Buffer; value: Buffer; create_revision: string; mod_revision: string; version: string; lease: string }): KeyValue {
  const out: KeyValue = {
    key: kv.key.toString('utf8'), value: kv.value.toString('utf8'),
    createRevision: Number(kv.create_revision), modRevision: Number(kv.mod_revision), version: Number(kv.version),
  };
  if (kv.lease && kv.lease !== '0') out.lease = kv.lease;
  return out;
}

function toEvent(e: IEvent): WatchEvent {
  const revision = Number(e.kv.mod_revision);
  const prevKv = e.prev_kv ? toKeyValue(e.prev_kv) : undefined;
  if (e.type === 'Delete') {
    return { type: 'delete', kv: { key: e.kv.key.toString('utf8'), value: '', createRevision: 0, modRevision: revision, version: 0 }, revision, ...(prevKv ? { prevKv } : {}) };
  }
  return { type: 'put', kv: toKeyValue(e.kv), revision, ...(prevKv ? { prevKv } : {}) };
}

/** One watcher on the hub's stream. */
export class EtcdWatch implements Watcher {
  id: string | null = null;
  /** The next revision to ask for when (re)created. */
  nextRev: Revision;
  /** Keys under the prefix as of the last event received (for progress). */
  readonly live = new Set<string>();
  /** Those of them attached to a lease: while there are none, no deletion can happen unmarked (no count). */
  readonly leased = new Set<string>();
  #queue: WatchEvent[][] = [];
  #pumping: Promise<void> | undefined;
  /** Woken by the next events received (progress() waits on it instead of polling). */
  #arrival: { promise: Promise<void>; resolve: () => void } | undefined;
  #handledRev: Revision;
  /** The revision of the last event received from etcd. */
  #receivedRev: Revision;
  #ended: StoreError | undefined;
  /** Checks in a row that found this watcher's mark moved and no event yet (WatchHub.#byMarks). */
  markMisses = 0;
  /** The next check reads the prefix instead of trusting the marks. */
  scanNext = false;
  #cancelled = false;

  constructor(
    readonly hub: WatchHub,
    readonly prefix: string,
    fromRevision: Revision,
    private readonly handler: WatchHandler,
    private readonly onError: ((err: StoreError) => void) | undefined,
  ) {
    this.nextRev = fromRevision;
    this.#handledRev = fromRevision - 1;
    this.#receivedRev = fromRevision - 1;
  }

  /** Events of one response, received in order: split by revision and queued for the handler. */
  receive(events: IEvent[]): void {
    if (this.#cancelled || this.#ended) return;
    let batch: WatchEvent[] = [];
    let last = 0;
    const received = this.#receivedRev; // a revision's events come in one response (no fragmenting asked)
    for (const raw of events) {
      const e = toEvent(raw);
      // Already received (a duplicate). An event below nextRev but above what was received is late, not a
      // duplicate: a write that moved no change mark (etcdctl, a daemon without marks) that a check had
      // answered past. It is handed over, still in revision order with everything the handler saw.
      if (e.revision <= received) continue;
      last = e.revision;
      // Change marks (a watch of '' sees them) count among the prefix's keys, as etcd counts them, but are
      // no event of the caller's.
      this.note(e.kv.key, e.type === 'put', e.kv.lease !== undefined);
      if (isMark(e.kv.key)) continue;
      if (batch.length > 0 && batch[0].revision !== e.revision) {
        this.#queue.push(batch);
        batch = [];
      }
      batch.push(e);
    }
    if (batch.length > 0) this.#queue.push(batch);
    if (last > 0) {
      this.#receivedRev = last;
      this.nextRev = Math.max(this.nextRev, last + 1);
    }
    this.#pump();
    this.#arrival?.resolve();
    this.#arrival = undefined;
  }

  /** Keeps `live` and `leased` as the prefix is: `key` now exists (with a lease or not), or not. */
  note(key: string, exists: boolean, leased: boolean): void {
    if (exists) this.live.add(key);
    else this.live.delete(key);
    if (exists && leased) this.leased.add(key);
    else this.leased.delete(key);
  }

  /** Resolves at the next events received, or after `ms`. */
  #nextArrival(ms: number): Promise<void> {
    if (!this.#arrival) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => { resolve = r; });
      this.#arrival = { promise, resolve };
    }
    return Promise.race([this.#arrival.promise, sleep(ms)]).then(() => undefined);
  }

  /** Nothing under the prefix changed up to `revision`: the watcher has received everything up to it. */
  caughtUp(revision: Revision): void {
    if (revision >= this.nextRev) this.nextRev = revision + 1;
    this.#pump();
  }

  #pump(): void {
    this.#pumping ??= (async () => {
      while (this.#queue.length > 0 && !this.#cancelled && !this.#ended) {
        const batch = this.#queue.shift()!;
        try {
          await this.handler(batch);
        } catch (err) {
          this.end(new WatchHandlerError(this.prefix, err));
          return;
        }
        this.#handledRev = Math.max(this.#handledRev, batch[0].revision);
      }
      if (this.#queue.length === 0) this.#handledRev = Math.max(this.#handledRev, this.nextRev - 1);
    })().finally(() => {
      this.#pumping = undefined;
      if (this.#queue.length > 0 && !this.#cancelled && !this.#ended) this.#pump();
    });
  }

  /** Ends the watch on its own (compaction, a throwing handler): onError once, no handler call after. */
  end(err: StoreError): void {
    if (this.#ended || this.#cancelled) return;
    this.#ended = err;
    this.#queue = [];
    this.hub.forget(this);
    if (this.onError) this.onError(err);
    else process.emitWarning(err.message, { code: err.code });
  }

  get ended(): StoreError | undefined {
    return this.#ended;
  }

  async cancel(): Promise<void> {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.#queue = [];
    await this.hub.remove(this);
    await this.#pumping;
  }

  #round: Promise<Revision> | undefined;
  #nextRound: Promise<Revision> | undefined;

  /**
   * Callers that arrive while a check runs share the next one (it starts after their call, so it covers their
   * writes): with eight API requests in flight, one check per round instead of eight.
   */
  progress(): Promise<Revision> {
    if (!this.#round) {
      this.#round = this.#progress().finally(() => { this.#round = undefined; });
      return this.#round;
    }
    this.#nextRound ??= this.#round.catch(() => undefined).then(() => {
      this.#nextRound = undefined;
      return this.progress();
    });
    return this.#nextRound;
  }

  async #progress(): Promise<Revision> {
    const deadline = Date.now() + PROGRESS_TIMEOUT_MS;
    for (let pause = 5; ; pause = Math.min(pause * 2, 50)) {
      if (this.#ended) throw this.#ended;
      if (this.#cancelled) throw new StoreClosedError(`watch of ${JSON.stringify(this.prefix)}`);
      const target = await this.hub.receivedUpTo(this);
      if (target !== undefined) {
        this.caughtUp(target);
        while (this.#handledRev < target || this.#pumping) {
          if (this.#ended) throw this.#ended;
          await (this.#pumping ?? sleep(1));
        }
        return target;
      }
      if (Date.now() > deadline) {
        throw new StoreUnavailableError(`the watch of ${JSON.stringify(this.prefix)} did not catch up with etcd within ${PROGRESS_TIMEOUT_MS / 1000} s`);
      }
      // The missing events are on their way: look again when they arrive (the pause bounds the wait, for the
      // case the check cannot see, above).
      await this.#nextArrival(pause);
    }
  }
}

/** The stream all of a store's watchers share, and its reconnection. */
export class WatchHub {
  #stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;
  #connecting: Promise<void> | undefined;
  readonly #watchers = new Set<EtcdWatch>();
  readonly #byId = new Map<string, EtcdWatch>();
  /** Watchers whose create request is out, in the order sent: etcd answers creates in that order. */
  #creating: EtcdWatch[] = [];
  #created = new Map<EtcdWatch, { resolve: () => void; reject: (e: StoreError) => void }>();
  #closed = false;
  #backoffMs = 100;

  constructor(private readonly client: Etcd3, private readonly endpoints: readonly string[]) {}

  /** Registers a watcher and resolves once etcd confirmed it (so later commits reach it). */
  async add(w: EtcdWatch): Promise<void> {
    if (this.#closed) throw new StoreClosedError('watch hub');
    // The keys under the prefix just before the first revision delivered, for progress(): the events from
    // there on add or remove keys, in order, so the set ends where the store is. Just before, not at it: a key
    // an expiring lease deletes at the first revision must be known as leased, else nothing would make the
    // check count (and its delete event, still on its way, would be taken for a replay). compact(r) forgets
    // r - 1 while a watch from r is still valid: then the set is read at r, as before marks.
    const seedAt = (revision?: number) => this.client.kv.range({
      key: rangeStart(w.prefix), range_end: rangeEnd(w.prefix), keys_only: true, ...(revision ? { revision } : {}),
    });
    const failedWith = (pattern: RegExp, then: () => ReturnType<typeof seedAt>) => (err: unknown) =>
      (pattern.test(String((err as Error).message)) ? then() : Promise.reject(err));
    const seed = await seedAt(Math.max(1, w.nextRev - 1))
      .catch(failedWith(/compacted/i, () => seedAt(w.nextRev)))
      .catch(failedWith(/future revision/i, () => seedAt()))
      .catch((err) => {
        const e = toStoreError(err, `reading ${JSON.stringify(w.prefix)} to start a watch`, this.endpoints);
        throw e instanceof CompactedError ? new CompactedError(w.nextRev, w.nextRev + 1) : e;
      });
    for (const kv of seed.kvs) w.note(kv.key.toString('utf8'), true, kv.lease !== undefined && kv.lease !== '0');
    this.#watchers.add(w);
    const created = new Promise<void>((resolve, reject) => this.#created.set(w, { resolve, reject }));
    await this.#ensureStream().catch(() => undefined); // not connected: the reconnection creates it
    if (this.#stream) this.#sendCreate(w);
    return created;
  }

  /** Cancels a watcher on etcd (best effort: a lost stream cancels everything anyway). */
  async remove(w: EtcdWatch): Promise<void> {
    this.forget(w);
    if (w.id !== null && this.#stream) this.#stream.write({ cancel_request: { watch_id: w.id } });
  }

  forget(w: EtcdWatch): void {
    this.#watchers.delete(w);
    if (w.id !== null) this.#byId.delete(w.id);
    const pending = this.#created.get(w);
    if (pending) {
      this.#created.delete(w);
      pending.reject(w.ended ?? new StoreClosedError(`watch of ${JSON.stringify(w.prefix)}`));
    }
  }

  /**
   * The revision up to which `w` has received every event, checked against etcd now (see the file header);
   * undefined when events are still on their way.
   */
  receivedUpTo(w: EtcdWatch): Promise<Revision | undefined> {
    return new Promise((resolve, reject) => {
      this.#checks.push({ w, resolve, reject });
      if (this.#checks.length === 1) setImmediate(() => this.#check());
    });
  }

  /** The highest revision a check has read. */
  #lastRevision = 0;
  #checks: Array<{ w: EtcdWatch; resolve: (r: Revision | undefined) => void; reject: (e: unknown) => void }> = [];

  /**
   * One txn answers every check queued meanwhile: per watcher, how many keys its prefix holds (when a
   * deletion could otherwise pass unseen), and whether anything under it changed since its last event, all
   * read at the txn's revision R. A watcher whose prefix
   * is a directory (change-marks.ts) is answered by its directory's mark and the global one: two one-key
   * reads shared by every watcher. Any other is answered by reading the keys of its prefix changed since
   * (etcd reads every value under the prefix to filter them: the cost the marks avoid), which is asked only
   * of watchers that are behind the last revision seen: one that has seen every revision up to it is settled
   * by the header alone, unless something was written since (then it is asked next round).
   */
  async #check(): Promise<void> {
    const batch = this.#checks;
    this.#checks = [];
    const watchers = [...new Set(batch.map((c) => c.w))];
    try {
      const known = this.#lastRevision;
      const marks = [...new Set(watchers.map((w) => watchMark(w.prefix)).filter((m): m is string => m !== undefined))];
      if (marks.length > 0) marks.push(GLOBAL_MARK);
      const scans = new Set(watchers.filter((w) => w.nextRev <= known && (watchMark(w.prefix) === undefined || w.scanNext)));
      // Counting reads etcd's index of the whole prefix (~6 ms a round for 10,000 interfaces on the bench's
      // cluster): a directory watcher none of whose keys has a lease skips it, as only an expiring lease deletes
      // without moving a mark (a key put with a lease since its last event moved the mark itself).
      const counts = new Set(watchers.filter((w) => scans.has(w) || watchMark(w.prefix) === undefined || w.leased.size > 0));
      const success = watchers.flatMap((w) => {
        const key = rangeStart(w.prefix);
        const end = rangeEnd(w.prefix);
        if (!counts.has(w)) return [];
        const count = { request_range: { key, range_end: end, count_only: true } };
        if (!scans.has(w)) return [count];
        // etcd drops the limit while it filters and applies it after: at most one key comes back.
        return [count, { request_range: { key, range_end: end, keys_only: true, min_mod_revision: String(w.nextRev), limit: 1 } }];
      });
      const r = await this.client.kv.txn({ compare: [], success: [...success, ...marks.map((m) => ({ request_range: { key: Buffer.from(m) } }))], failure: [] });
      const revision = Number(r.header.revision);
      this.#lastRevision = Math.max(this.#lastRevision, revision);
      const markRev = new Map(marks.map((m, i) => [m, Number(r.responses[success.length + i].response_range.kvs[0]?.mod_revision ?? 0)]));
      const answer = new Map<EtcdWatch, Revision | undefined | 'ask'>();
      let at = 0;
      for (const w of watchers) {
        const count = counts.has(w) ? Number(r.responses[at++].response_range.count) : w.live.size;
        const changed = scans.has(w) ? r.responses[at++].response_range.kvs.length : 0;
        const mark = watchMark(w.prefix);
        if (scans.has(w)) w.scanNext = false;
        if (w.nextRev > revision) answer.set(w, revision);
        else if (count !== w.live.size) answer.set(w, undefined);
        else if (scans.has(w)) answer.set(w, changed === 0 ? revision : undefined);
        else if (mark === undefined) answer.set(w, 'ask');
        else answer.set(w, this.#byMarks(w, markRev.get(mark) ?? 0, markRev.get(GLOBAL_MARK) ?? 0, revision));
      }
      for (const c of batch) {
        const a = answer.get(c.w);
        if (a !== 'ask') c.resolve(a);
        else if (this.#checks.push(c) === 1) setImmediate(() => this.#check()); // written since: ask at once
      }
    } catch (err) {
      const e = toStoreError(err, `the progress of the watches of ${watchers.map((w) => JSON.stringify(w.prefix)).join(', ')}`, this.endpoints);
      for (const c of batch) c.reject(e);
    }
  }

  /**
   * A directory watcher's answer from its marks: its directory's mark unmoved since its last event (and the
   * global one too) means nothing under it changed up to `revision`. A moved mark means an event on its way,
   * usually: after MARK_MISSES looks in a row (a txn that deleted a missing key moves a mark and sends no
   * event), the prefix is read instead, as is at once when the global mark moved.
   */
  #byMarks(w: EtcdWatch, dirMark: Revision, globalMark: Revision, revision: Revision): Revision | undefined | 'ask' {
    if (dirMark < w.nextRev && globalMark < w.nextRev) {
      w.markMisses = 0;
      return revision;
    }
    if (dirMark >= w.nextRev && w.markMisses++ < MARK_MISSES) return undefined;
    w.markMisses = 0;
    w.scanNext = true;
    return 'ask';
  }

  #ensureStream(): Promise<void> {
    if (this.#stream || this.#closed) return Promise.resolve();
    this.#connecting ??= (async () => {
      try {
        const stream = await this.client.watchClient.watch();
        this.#stream = stream;
        this.#creating = [];
        stream.on('data', (res) => this.#onResponse(res));
        stream.on('error', (err) => this.#lost(stream, err));
        stream.on('end', () => this.#lost(stream, new Error('watch stream ended')));
        for (const w of this.#watchers) this.#sendCreate(w);
      } finally {
        this.#connecting = undefined;
      }
    })();
    return this.#connecting;
  }

  #sendCreate(w: EtcdWatch): void {
    w.id = null;
    this.#creating.push(w);
    this.#stream!.write({
      create_request: { key: rangeStart(w.prefix), range_end: rangeEnd(w.prefix), start_revision: w.nextRev, prev_kv: true },
    });
  }

  #onResponse(res: IWatchResponse): void {
    this.#backoffMs = 100; // etcd answered: the next loss retries quickly again
    if (res.created) {
      const w = this.#creating.shift();
      if (!w) return;
      if (res.canceled) {
        const compacted = Number(res.compact_revision);
        const err = compacted > 0
          ? new CompactedError(w.nextRev, compacted)
          : new StoreError('EETCD', `etcd refused the watch of ${JSON.stringify(w.prefix)}: ${res.cancel_reason}`);
        this.#created.get(w)?.reject(err);
        this.#created.delete(w);
        w.end(err);
        return;
      }
      if (!this.#watchers.has(w)) {
        this.#stream?.write({ cancel_request: { watch_id: res.watch_id } }); // cancelled while being created
        return;
      }
      w.id = res.watch_id;
      this.#byId.set(res.watch_id, w);
      this.#created.get(w)?.resolve();
      this.#created.delete(w);
    }
    const w = this.#byId.get(res.watch_id);
    if (!w) return;
    if (res.canceled) {
      const compacted = Number(res.compact_revision);
      w.end(compacted > 0 ? new CompactedError(w.nextRev, compacted) : new StoreError('EETCD', `etcd cancelled the watch of ${JSON.stringify(w.prefix)}: ${res.cancel_reason}`));
      return;
    }
    if (res.events.length > 0) w.receive(res.events);
  }

  /** The stream failed (a member died, etcd is away): every watcher is created again, from where it was. */
  #lost(stream: IDuplexStream<IWatchRequest, IWatchResponse>, _err: unknown): void {
    if (this.#stream !== stream) return;
    this.#stream = undefined;
    this.#byId.clear();
    this.#creating = [];
    try { stream.cancel(); } catch { /* already gone */ }
    if (this.#closed) return;
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, 2000);
    const retry = () => {
      if (this.#closed || this.#stream) return;
      this.#ensureStream().catch(() => setTimeout(retry, this.#backoffMs).unref());
    };
    setTimeout(retry, delay).unref();
  }

  close(): void {
    this.#closed = true;
    for (const w of [...this.#watchers]) this.forget(w);
    const s = this.#stream;
    this.#stream = undefined;
    try { s?.cancel(); } catch { /* gone */ }
  }
}
