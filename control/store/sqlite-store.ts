// The Store on one SQLite file (WAL), shared by every appnetd process on a machine.
//
// Layout: `kv` holds the current state, `history` one row per event (revision, sub-revision) with the
// key's previous state, `meta` the global revision and the compaction point, `leases` an absolute expiry
// time per lease. Contracts:
//
//   1. Every write runs in BEGIN IMMEDIATE, so writers from all processes are serialised by SQLite's
//      write lock: compare-and-swap is exact, and revision N+1 commits after revision N, so a reader
//      that sees revision N also sees everything before it (watches never skip).
//   2. A write first reaps expired leases (each reaped lease with keys is one revision of deletes), then
//      applies its own changes as one more revision. Any process may reap; the lock makes it happen once.
//   3. Watches in other processes learn of commits by polling `PRAGMA data_version` (a counter read, no
//      I/O) every pollIntervalMs; writes through this store wake its own watchers at once. Each watcher
//      reads the history from its next revision, a window of revisions at a time, and awaits its handler.
//   4. better-sqlite3 is synchronous: a write waiting for another process's lock blocks this event loop
//      for up to busyTimeoutMs, then fails with StoreBusyError. Writes are short, so waits are too.
//   5. Group commit: writes called in one turn of the event loop are queued and committed together, in
//      call order, in ONE SQLite transaction (so one fsync), each inside its own savepoint and with its
//      own revision, exactly as if committed one by one. A write that throws rolls back its savepoint
//      and rejects alone; the others commit. Without this, each write paid its own fsync (~4 ms here)
//      while blocking the event loop, and an API under concurrent load queued behind them.
//   6. A group stops taking writes once it has run for FLUSH_BUDGET_MS: it commits, and the writes left
//      (still in call order) go into the next group, a turn of the event loop later. Hundreds of writes
//      issued at once then block the loop in slices of a few ms, not in one long transaction, and the
//      API's requests are served in between.
//   7. Durability ('full', the default): SQLite commits with synchronous = NORMAL (the WAL frames are
//      written, not synced), and the group's promises settle only after an fdatasync of the WAL that
//      started after the COMMIT, run on libuv's thread pool (wal-sync.ts). A resolved write is on disk,
//      as with synchronous = FULL, but the event loop no longer waits for the disk: FULL's fsync inside
//      COMMIT blocked it for ~4 ms per group, the largest single cost of POST /instances under load.
//      What differs from FULL: a commit is visible to readers and watchers (here and in other
//      processes) a few ms before it is durable, so after a power loss a watcher may have acted on a
//      revision the file no longer has; nothing acknowledged is lost. A process crash loses nothing
//      either way: the frames are in the page cache. 'normal' skips the fdatasync (power loss may take
//      the last acknowledged commits).
//   8. Checkpoints run on a worker thread with its own connection (wal-checkpointer.ts): this connection
//      has `wal_autocheckpoint = 0`, so no COMMIT copies the WAL into the database file on the event loop
//      (10-50 ms each under load). PASSIVE checkpoints never hold up this connection's reads or writes; the
//      WAL is truncated only after seconds without writes. Once the WAL is long (16 MB), the next group
//      waits (off the loop) for a checkpoint that catches up, so that its BEGIN restarts the WAL: with the
//      writer never pausing, it would grow without bound. If the thread fails, automatic checkpoints are
//      turned back on. Other processes on the file run their own; checkpoints are serialised by SQLite.
//
// Lease expiry uses the wall clock (Date.now()); all processes sharing the file share that clock.

import {
  checkKey, checkLimit, checkPrefix, checkRevision, checkSize, checkTtl, checkTxn, checkValue, compareHolds, compareKeys,
  deleteAllMessage, prefixRangeEnd,
  CompactedError, InvalidArgumentError, LeaseNotFoundError, StoreBusyError, StoreClosedError, StoreError,
} from './store.ts';
import type {
  DeleteResult, KeyValue, LeaseId, PutOptions, RangeOptions, RangeResult, Revision, Store,
  TxnOp, TxnOpResult, TxnRequest, TxnResult, WatchHandler, WatchOptions, Watcher,
} from './store.ts';
import { WalCheckpointer } from './wal-checkpointer.ts';
import { WalSync } from './wal-sync.ts';
import { SqliteWatchers } from './sqlite-watchers.ts';
import { openFile, prepareStatements, toKv, type Database, type EventRow, type KvRow, type Statement, type Transaction } from './sqlite-schema.ts';

export interface SqliteStoreOptions {
  /** How often to look for other processes' commits and for expired leases. Default 25 ms. */
  pollIntervalMs?: number;
  /** How long a write waits for another process's write lock. Default 10 000 ms. */
  busyTimeoutMs?: number;
  /**
   * 'full' (default): a write resolves once it is on disk, as etcd's do (contract 7: the fsync runs off the
   * event loop); 'normal': once committed, so a power loss may take the last acknowledged commits.
   */
  synchronous?: 'full' | 'normal';
}

/** How long one group commit may apply writes before it commits and leaves the rest to the next. */
const FLUSH_BUDGET_MS = 5;
/** SQLite's default automatic checkpoint, restored if the checkpoint thread fails (contract 8). */
const AUTOCHECKPOINT_PAGES = 1000;


/** Hands out revisions inside one write transaction: changes share a revision until endRevision(). */
class RevisionScope {
  private rev = 0;
  private seq = 0;
  constructor(public current: Revision) {}
  change(): [Revision, number] {
    if (this.rev === 0) this.rev = this.current + 1;
    return [this.rev, this.seq++];
  }
  endRevision(): Revision {
    if (this.rev !== 0) [this.current, this.rev, this.seq] = [this.rev, 0, 0];
    return this.current;
  }
  reset(current: Revision): void {
    [this.current, this.rev, this.seq] = [current, 0, 0];
  }
}

/** A write waiting for the next group commit. */
interface QueuedWrite {
  fn: (scope: RevisionScope) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  result?: unknown;
  error?: unknown;
}

export class SqliteStore implements Store {
  readonly path: string;
  private readonly db: Database;
  private readonly s: Record<string, Statement>;
  private readonly busyTimeoutMs: number;
  private readonly watchers: SqliteWatchers;
  private readonly timer: NodeJS.Timeout;
  private readonly batchTxn: Transaction<[QueuedWrite[], number], number>;
  private readonly savepoint: Transaction<[() => unknown], unknown>;
  private queue: QueuedWrite[] = [];
  private readonly readTxn: Transaction<[() => unknown], unknown>;
  /** Syncs the WAL before writes are acknowledged ('full'); undefined for 'normal' and ':memory:'. */
  private readonly walSync: WalSync | undefined;
  /** Copies the WAL into the database from a worker thread (contract 8); undefined for ':memory:'. */
  private readonly checkpointer: WalCheckpointer | undefined;
  private closed = false;
  private dataVersion = -1;
  private localDirty = true;
  private nextExpiry: number | null = null;
  private kickScheduled = false;
  /** Writes wait for a catch-up checkpoint (contract 8). */
  private draining = false;
  private drained = false;

  constructor(path: string, options: SqliteStoreOptions = {}) {
    this.path = path;
    this.busyTimeoutMs = options.busyTimeoutMs ?? 10_000;
    this.db = openFile(path, this.busyTimeoutMs);
    try {
      this.walSync = (options.synchronous ?? 'full') === 'full' && path !== ':memory:' && path !== '' ? new WalSync(`${path}-wal`) : undefined;
    } catch (err) {
      this.db.close();
      throw new StoreError('EOPEN', `cannot open SQLite store ${path}: its WAL file: ${(err as Error).message}`, { cause: err });
    }
    if (path !== ':memory:' && path !== '') {
      this.db.pragma('wal_autocheckpoint = 0');
      this.checkpointer = new WalCheckpointer(path, {
        onFailure: (err) => {
          if (this.closed) return;
          this.db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
          process.emitWarning(new StoreError('ECHECKPOINT', `SQLite store ${path}: ${err.message}; checkpoints run on the event loop again`, { cause: err }));
        },
      });
    }
    this.s = prepareStatements(this.db);
    this.savepoint = this.db.transaction((fn: () => unknown) => fn());
    /** Applies writes from the head of `batch` for up to budgetMs (at least one); returns how many. */
    this.batchTxn = this.db.transaction((batch: QueuedWrite[], budgetMs: number) => {
      const deadline = performance.now() + budgetMs;
      const scope = new RevisionScope(this.meta('revision'));
      const start = scope.current;
      this.reapExpired(scope);
      let applied = 0;
      for (const w of batch) {
        if (applied > 0 && performance.now() > deadline) break;
        applied++;
        const before = scope.current;
        try {
          w.result = this.savepoint(() => w.fn(scope));
          scope.endRevision();
        } catch (err) {
          w.error = err;
          scope.reset(before); // its savepoint rolled back: its revision is not used
        }
      }
      if (scope.endRevision() !== start) this.s.setMeta.run(scope.current, 'revision');
      return applied;
    });
    this.readTxn = this.db.transaction((fn: () => unknown) => fn());
    this.watchers = new SqliteWatchers({
      read: (fn) => this.read(fn),
      revisions: () => [this.meta('revision'), this.meta('compact_revision')],
      current: () => this.run(() => this.meta('revision')),
      events: (from, to, lower, upper) => this.s.events.all(from, to, lower, upper) as EventRow[],
      translate: (err) => this.translate(err),
      closed: () => this.closed,
    });
    this.timer = setInterval(() => this.tick(), options.pollIntervalMs ?? 25);
    this.timer.unref();
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    return this.run(() => this.getKv(key));
  }

  async range(prefix: string, options: RangeOptions = {}): Promise<RangeResult> {
    checkPrefix(prefix);
    checkLimit(options.limit);
    if (options.from !== undefined) checkKey(options.from, 'range option from');
    return this.read(() => {
      const { kvs, more } = this.rangeKvs(prefix, options.limit, options.from);
      return { kvs, more, revision: this.meta('revision') };
    });
  }

  async put(key: string, value: string, options: PutOptions = {}): Promise<Revision> {
    checkKey(key);
    checkValue(value, key);
    checkSize(key, value);
    return this.write((scope) => {
      this.applyPut(scope, key, value, options.lease);
      return scope.endRevision();
    });
  }

  async delete(key: string): Promise<DeleteResult> {
    checkKey(key);
    return this.write((scope) => ({ deleted: this.applyDelete(scope, key, false).length, revision: scope.endRevision() }));
  }

  async deletePrefix(prefix: string): Promise<DeleteResult> {
    checkPrefix(prefix);
    if (prefix === '') throw new InvalidArgumentError(deleteAllMessage);
    return this.write((scope) => ({ deleted: this.applyDelete(scope, prefix, true).length, revision: scope.endRevision() }));
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    checkTxn(request);
    return this.write((scope) => {
      const succeeded = (request.compare ?? []).every((c) => compareHolds(c, c.target === 'value' ? this.getKv(c.key) : this.getRevisions(c.key)));
      const ops = (succeeded ? request.success : request.failure) ?? [];
      const results = ops.map((op) => this.applyOp(scope, op));
      return { succeeded, revision: scope.endRevision(), results };
    });
  }

  async revision(): Promise<Revision> {
    return this.run(() => this.meta('revision'));
  }

  async watch(prefix: string, options: WatchOptions, handler: WatchHandler): Promise<Watcher> {
    checkPrefix(prefix);
    if (options.fromRevision !== undefined) checkRevision(options.fromRevision, 'watch fromRevision');
    const [current, compacted] = this.read(() => [this.meta('revision'), this.meta('compact_revision')]);
    const nextRev = options.fromRevision ?? current + 1;
    if (nextRev < compacted) throw new CompactedError(nextRev, compacted);
    return this.watchers.add(prefix, nextRev, nextRev <= current, options.onError, handler);
  }

  async compact(revision: Revision): Promise<void> {
    checkRevision(revision, 'compact revision');
    await this.write(() => {
      const [current, compacted] = [this.meta('revision'), this.meta('compact_revision')];
      if (revision > current) {
        throw new InvalidArgumentError(`cannot compact to revision ${revision}: it is in the future (current revision ${current})`);
      }
      if (revision <= compacted) throw new CompactedError(revision, compacted);
      this.s.compact.run(revision);
      this.s.setMeta.run(revision, 'compact_revision');
    });
  }

  async grantLease(ttlSeconds: number): Promise<LeaseId> {
    checkTtl(ttlSeconds);
    return this.write(() => String(this.s.grant.run(ttlSeconds, Date.now() + ttlSeconds * 1000).lastInsertRowid));
  }

  async keepAlive(id: LeaseId): Promise<number> {
    return this.write(() => {
      const ttl = this.leaseTtl(id);
      this.s.touchLease.run(Date.now() + ttl * 1000, Number(id));
      return ttl;
    });
  }

  async revokeLease(id: LeaseId): Promise<Revision> {
    return this.write((scope) => {
      this.leaseTtl(id);
      this.revoke(scope, Number(id));
      return scope.endRevision();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.draining = false; // close does not wait for a catch-up checkpoint
    while (this.queue.length > 0) this.flush(Infinity); // writes already accepted are committed, not dropped
    this.closed = true;
    clearInterval(this.timer);
    this.watchers.cancelAll();
    await this.walSync?.close(); // the groups committed above are acknowledged once synced
    await this.checkpointer?.stop();
    this.db.close();
    this.checkpointer?.close(); // after the connection: SQLite's locks on the -shm file are gone with it
  }

  // ---- Writes: each runs inside writeTxn, after expired leases are reaped ---------------------------

  private applyOp(scope: RevisionScope, op: TxnOp): TxnOpResult {
    if (op.type === 'put') {
      const prev = this.applyPut(scope, op.key, op.value, op.lease);
      return prev ? { type: 'put', prevKv: prev } : { type: 'put' };
    }
    if (op.type === 'delete') {
      const prevKvs = this.applyDelete(scope, op.key, op.prefix === true);
      return { type: 'delete', deleted: prevKvs.length, prevKvs };
    }
    const kv = op.prefix ? undefined : this.getKv(op.key);
    return { type: 'get', ...(op.prefix ? this.rangeKvs(op.key, op.limit) : { kvs: kv ? [kv] : [], more: false }) };
  }

  private applyPut(scope: RevisionScope, key: string, value: string, lease: LeaseId | undefined): KeyValue | undefined {
    if (lease !== undefined) this.leaseTtl(lease);
    const prev = this.getKv(key);
    const [rev, seq] = scope.change();
    const kv: KeyValue = { key, value, createRevision: prev?.createRevision ?? rev, modRevision: rev, version: (prev?.version ?? 0) + 1 };
    if (lease !== undefined) kv.lease = lease;
    this.s.putKv.run(key, value, kv.createRevision, rev, kv.version, lease === undefined ? null : Number(lease));
    this.s.event.run(rev, seq, 'put', key, JSON.stringify(kv), prev ? JSON.stringify(prev) : null);
    return prev;
  }

  /** Returns the deleted keys' last state. */
  private applyDelete(scope: RevisionScope, key: string, prefix: boolean): KeyValue[] {
    const kv = prefix ? undefined : this.getKv(key);
    const prevs = prefix ? this.rangeKvs(key).kvs : kv ? [kv] : [];
    for (const prev of prevs) {
      const [rev, seq] = scope.change();
      this.s.deleteKv.run(prev.key);
      this.s.event.run(rev, seq, 'delete', prev.key, null, JSON.stringify(prev));
    }
    return prevs;
  }

  private revoke(scope: RevisionScope, id: number): void {
    for (const key of this.s.kvByLease.all(id) as string[]) this.applyDelete(scope, key, false);
    this.s.deleteLease.run(id);
    scope.endRevision();
  }

  private reapExpired(scope: RevisionScope): void {
    for (const id of this.s.expired.all(Date.now()) as number[]) this.revoke(scope, id);
  }

  /** The lease's TTL in seconds; throws LeaseNotFoundError if it is not (or no longer) granted. */
  private leaseTtl(id: LeaseId): number {
    const ttl = typeof id === 'string' && /^[1-9][0-9]{0,14}$/.test(id) ? this.s.lease.get(Number(id)) : undefined;
    if (ttl === undefined) throw new LeaseNotFoundError(id);
    return ttl as number;
  }

  // ---- Reads ------------------------------------------------------------------------------------

  private meta(name: string): number {
    return this.s.meta.get(name) as number;
  }

  /** What a revision compare needs: the key's row without its value. */
  private getRevisions(key: string): KeyValue | undefined {
    return this.s.getRevisions.get(key) as KeyValue | undefined;
  }

  private getKv(key: string): KeyValue | undefined {
    const row = this.s.getKv.get(key) as KvRow | undefined;
    return row && toKv(row);
  }

  private rangeKvs(prefix: string, limit?: number, from?: string): { kvs: KeyValue[]; more: boolean } {
    const start = from !== undefined && compareKeys(from, prefix) > 0 ? from : prefix;
    const rows = this.s.rangeKv.all(start, prefixRangeEnd(prefix), limit === undefined ? -1 : limit + 1) as KvRow[];
    const more = limit !== undefined && rows.length > limit;
    return { kvs: (more ? rows.slice(0, limit) : rows).map(toKv), more };
  }

  // ---- Watch delivery ---------------------------------------------------------------------------

  /** Runs every pollIntervalMs, and soon after a local write. */
  private tick(): void {
    if (this.closed) return;
    try {
      const dataVersion = this.s.dataVersion.get() as number;
      if (dataVersion !== this.dataVersion || this.localDirty) {
        this.dataVersion = dataVersion;
        this.localDirty = false;
        this.nextExpiry = this.s.nextExpiry.get() as number | null;
        this.watchers.pumpAll();
      }
      if (this.nextExpiry !== null && Date.now() >= this.nextExpiry && this.queue.length === 0) {
        this.write(() => undefined).catch((err) => { if (!this.closed) process.emitWarning(this.translate(err)); });
      }
    } catch (err) {
      if (!this.closed) process.emitWarning(this.translate(err));
    }
  }

  // ---- Plumbing ---------------------------------------------------------------------------------

  /** Queues a write for the group commit at the end of this turn of the event loop (contract 5). */
  private write<T>(fn: (scope: RevisionScope) => T): Promise<T> {
    if (this.closed) return Promise.reject(new StoreClosedError(this.path));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (this.queue.length === 1) setImmediate(() => this.flush());
    });
  }

  /** Commits queued writes in one transaction (contract 6: for up to budgetMs), then settles their promises. */
  private flush(budgetMs = FLUSH_BUDGET_MS): void {
    const queued = this.queue;
    if (queued.length === 0 || this.draining) return;
    if (budgetMs !== Infinity && !this.drained && this.checkpointer?.shouldDrain()) {
      // The WAL is long: let the checkpoint thread catch up first, so this group's BEGIN restarts it (contract 8).
      this.draining = true;
      void this.checkpointer.drain().then(() => {
        this.draining = false;
        this.drained = true; // the header still shows the long WAL until this group's BEGIN restarts it
        this.flush();
      });
      return;
    }
    this.drained = false;
    this.queue = [];
    let applied: number;
    try {
      applied = this.run(() => this.batchTxn.immediate(queued, budgetMs));
    } catch (err) {
      for (const w of queued) w.reject(err); // BEGIN or COMMIT failed: nothing of the batch was written
      return;
    }
    const batch = applied === queued.length ? queued : queued.slice(0, applied);
    if (applied < queued.length) {
      this.queue = queued.slice(applied);
      setImmediate(() => this.flush());
    }
    this.localDirty = true;
    this.kick();
    const settle = () => {
      for (const w of batch) {
        if ('error' in w) w.reject(this.translate(w.error));
        else w.resolve(w.result);
      }
    };
    if (this.walSync === undefined) return settle();
    this.walSync.sync().then(settle, (err: Error) => {
      // Committed and visible, but not known to be on disk: the caller must not take it as acknowledged.
      const failure = new StoreError('ESYNC', `SQLite store ${this.path}: ${err.message}; the write may not survive a power loss`, { cause: err });
      for (const w of batch) w.reject(failure);
    });
  }

  private read<T>(fn: () => T): T {
    return this.run(() => this.readTxn(fn) as T);
  }

  private run<T>(fn: () => T): T {
    if (this.closed) throw new StoreClosedError(this.path);
    try {
      return fn();
    } catch (err) {
      throw this.translate(err);
    }
  }

  private kick(): void {
    if (this.kickScheduled) return;
    this.kickScheduled = true;
    setImmediate(() => {
      this.kickScheduled = false;
      this.tick();
    });
  }

  private translate(err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('SQLITE_BUSY')) {
      return new StoreBusyError(
        `SQLite store ${this.path} stayed locked by another process for over ${this.busyTimeoutMs} ms; ` +
          `check for a stuck process holding it (fuser ${this.path})`,
        err,
      );
    }
    return new StoreError('ESQLITE', `SQLite store ${this.path}: ${(err as Error).message}`, { cause: err });
  }
}
