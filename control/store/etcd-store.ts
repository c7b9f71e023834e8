// The Store on etcd v3, for hosts on many machines (DESIGN.md §4). Revisions, compare-and-swap, leases and
// watches are etcd's own; this file maps them onto the Store contract of store.ts, which the conformance
// suite (test/helpers/store-conformance.ts) checks on both stores alike.
//
// Client: the `etcd3` package (maintained, TypeScript, gRPC through @grpc/grpc-js, every member in one pool
// with failover, TLS and user/password auth). We use its raw RPC clients rather than its builders so that
// each call maps to one etcd request we can reason about, and its fault handling is narrowed:
//   - a write is sent once. If it fails after it may have reached etcd (timeout, dropped connection,
//     "leader changed"), the caller gets StoreUnavailableError and decides; an automatic retry could apply
//     a put twice or turn a create that succeeded into a "conflict". The pool still tries another member
//     when a connection to one could not be made at all (the request never left).
//   - a read is tried again, on another member, for a few seconds: it changes nothing.
//   - every call has a deadline, so a dead cluster fails fast with StoreUnavailableError, never hangs.
// Watches: etcd-watch.ts. Every write also moves its directories' change marks, in the same txn (change-marks.ts),
// which is what lets a watch's progress check skip reading whole prefixes. Limits (127 ops per txn, etcd's 128
// less one for a mark; 1.5 MiB per request): checked before sending, as on SQLite.
import { readFileSync } from 'node:fs';
import type { Etcd3, ICompare, IKeyValue, IOptions, IRequestOp } from 'etcd3';
import { handleWhen, retry, ConstantBackoff, circuitBreaker, ConsecutiveBreaker } from 'cockatiel';
import { isTransient, toStoreError } from './etcd-errors.ts';
import { EtcdWatch, WatchHub, rangeEnd, rangeStart, toKeyValue } from './etcd-watch.ts';
import { GLOBAL_MARK, MARK_END, MARK_PREFIX, directoryOf, isMark, markOf, marksFor } from './change-marks.ts';
import {
  CompactedError, InvalidArgumentError, LeaseNotFoundError, MAX_TXN_OPS, StoreClosedError, checkKey, checkLimit, checkPrefix, checkRevision, checkSize, checkTtl,
  checkTxn, checkValue, deleteAllMessage,
  type DeleteResult, type KeyValue, type LeaseId, type PutOptions, type RangeOptions, type RangeResult, type Revision, type Store,
  type TxnOp, type TxnOpResult, type TxnRequest, type TxnResult, type WatchHandler, type WatchOptions, type Watcher,
} from './store.ts';

export interface EtcdStoreOptions {
  /** `host:port` of every member (the client fails over between them). */
  endpoints: string[];
  /** TLS to etcd (etcds://): PEM file paths. */
  tls?: { ca?: string; cert?: string; key?: string };
  /** etcd's user/password authentication. */
  auth?: { username: string; password: string };
  /** Deadline of each call (default 5 s). */
  callTimeoutMs?: number;
}

const READ_ATTEMPTS = 4;
const READ_PAUSE_MS = 250;

const notSent = (err: unknown) => /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|No connection established|failed to connect/i.test(err instanceof Error ? err.message : String(err));

type Etcd3Class = typeof import('etcd3').Etcd3;

/**
 * Opens an etcd store. The etcd3 client and gRPC are loaded here, on first use, not when this module is: a
 * daemon on SQLite would otherwise carry them (~6 MB of heap, measured with bench/connections.ts's memory
 * figures) without ever calling them.
 */
export async function openEtcdStore(o: EtcdStoreOptions): Promise<EtcdStore> {
  const { Etcd3: client } = await import('etcd3');
  return new EtcdStore(o, client);
}

export class EtcdStore implements Store {
  readonly #Etcd3: Etcd3Class;
  readonly #client: Etcd3;
  readonly #hub: WatchHub;
  readonly #endpoints: string[];
  /** What a single-member client for maintenance needs besides its host. */
  readonly #options: Omit<IOptions, 'hosts'>;
  readonly #scheme: string;
  #closed = false;

  constructor(o: EtcdStoreOptions, client: Etcd3Class) {
    this.#Etcd3 = client;
    if (o.endpoints.length === 0) throw new InvalidArgumentError('the etcd store needs at least one endpoint, e.g. etcd://198.18.0.201:2379');
    this.#endpoints = o.endpoints;
    const scheme = o.tls ? 'https' : 'http';
    this.#scheme = scheme;
    const timeout = o.callTimeoutMs ?? 5000;
    this.#options = {
      dialTimeout: Math.min(timeout, 3000),
      // gRPC's default 4 MiB per message is less than one range of a large prefix (10,000 interfaces are
      // ~4 MiB); etcd itself sends up to 2 GiB.
      grpcOptions: { 'grpc.max_receive_message_length': 512 * 1024 * 1024 },
      ...(o.auth ? { auth: { username: o.auth.username, password: o.auth.password } } : {}),
      ...(o.tls ? {
        credentials: {
          rootCertificate: o.tls.ca ? readFileSync(o.tls.ca) : (undefined as unknown as Buffer),
          ...(o.tls.key ? { privateKey: readFileSync(o.tls.key) } : {}),
          ...(o.tls.cert ? { certChain: readFileSync(o.tls.cert) } : {}),
        },
      } : {}),
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    };
    this.#client = new client({
      ...this.#options,
      hosts: o.endpoints.map((e) => `${scheme}://${e}`),
      faultHandling: {
        // A member that could not be reached three times in a row is skipped for 2 s; the pool then tries the
        // others. Only unreachability counts: the etcd3 pool resets a member's channels on any recoverable
        // error, failing every call in flight on it at once, so under load one slow call (a deadline, a
        // "leader changed" during an election) used to open the breakers of all three members and turn the
        // next 2 s of calls into "store unavailable" without one of them being sent (the controlplane bench
        // saw it on a busy cluster). Such a call still fails on its own, as StoreUnavailableError.
        host: () => circuitBreaker(handleWhen(notSent), { halfOpenAfter: 2000, breaker: new ConsecutiveBreaker(3) }),
        // Only what never left this process is tried again (on another member); see the file header.
        global: retry(handleWhen(notSent), { maxAttempts: o.endpoints.length, backoff: new ConstantBackoff(50) }),
      },
    });
    this.#hub = new WatchHub(this.#client, o.endpoints);
  }

  /** Runs a call that changes nothing, again on failures that another try may not meet. */
  async #read<T>(what: string, call: () => Promise<T>): Promise<T> {
    this.#open();
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        if (attempt >= READ_ATTEMPTS || !isTransient(err)) throw toStoreError(err, what, this.#endpoints);
        await new Promise((r) => setTimeout(r, READ_PAUSE_MS * attempt));
      }
    }
  }

  /** Runs a call that changes the store: once (see the file header). */
  async #write<T>(what: string, call: () => Promise<T>, lease?: string): Promise<T> {
    this.#open();
    try {
      return await call();
    } catch (err) {
      throw toStoreError(err, what, this.#endpoints, lease);
    }
  }

  #open(): void {
    if (this.#closed) throw new StoreClosedError(`etcd ${this.#endpoints.join(',')}`);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    const r = await this.#read(`get ${JSON.stringify(key)}`, () => this.#client.kv.range({ key: Buffer.from(key) }));
    return r.kvs[0] ? toKeyValue(r.kvs[0]) : undefined;
  }

  async range(prefix: string, options: RangeOptions = {}): Promise<RangeResult> {
    checkPrefix(prefix);
    checkLimit(options.limit);
    const from = options.from !== undefined && options.from > prefix ? options.from : prefix;
    const start = rangeStart(from);
    const end = rangeEnd(prefix);
    const limit = options.limit ? { limit: options.limit } : {};
    // A range that spans the marks' own key range reads around it, both sides at one revision.
    const markStart = Buffer.from(MARK_PREFIX);
    const spansMarks = Buffer.compare(start, Buffer.from(MARK_END)) < 0 && (isOpenEnd(end) || Buffer.compare(end, markStart) > 0);
    if (!spansMarks) {
      const r = await this.#read(`range ${JSON.stringify(prefix)}`, () => this.#client.kv.range({ key: start, range_end: end, ...limit }));
      return { kvs: r.kvs.map(toKeyValue), more: r.more, revision: Number(r.header.revision) };
    }
    const sides = [{ key: start, range_end: markStart, ...limit }, { key: Buffer.from(MARK_END), range_end: end, ...limit }]
      .filter((side) => Buffer.compare(side.key, side.range_end) < 0 || isOpenEnd(side.range_end));
    const r = await this.#read(`range ${JSON.stringify(prefix)}`, () => this.#client.kv.txn({ compare: [], success: sides.map((request_range) => ({ request_range })), failure: [] }));
    const kvs = r.responses.flatMap((resp) => resp.response_range.kvs.map(toKeyValue));
    const n = options.limit ? Math.min(options.limit, kvs.length) : kvs.length;
    const more = kvs.length > n || r.responses.some((resp) => resp.response_range.more);
    return { kvs: kvs.slice(0, n), more, revision: Number(r.header.revision) };
  }

  async put(key: string, value: string, options: PutOptions = {}): Promise<Revision> {
    checkKey(key);
    checkValue(value, key);
    checkSize(key, value);
    const put = { key: Buffer.from(key), value: Buffer.from(value), ...(options.lease ? { lease: options.lease } : {}) };
    const dir = directoryOf(key);
    const r: { header: { revision: string } } = await this.#write(`put ${JSON.stringify(key)}`, () => (dir === undefined || isMark(key)
      ? this.#client.kv.put(put)
      : this.#client.kv.txn({ compare: [], success: [{ request_put: put }, markPut(markOf(dir))], failure: [] })) as Promise<{ header: { revision: string } }>, options.lease);
    return Number(r.header.revision);
  }

  async delete(key: string): Promise<DeleteResult> {
    checkKey(key);
    const dir = directoryOf(key);
    if (dir === undefined || isMark(key)) {
      const r = await this.#write(`delete ${JSON.stringify(key)}`, () => this.#client.kv.deleteRange({ key: Buffer.from(key) }));
      return { deleted: Number(r.deleted), revision: Number(r.header.revision) };
    }
    return this.#deleteMarked(`delete ${JSON.stringify(key)}`, Buffer.from(key), undefined, markOf(dir));
  }

  async deletePrefix(prefix: string): Promise<DeleteResult> {
    checkPrefix(prefix);
    if (prefix === '') throw new InvalidArgumentError(deleteAllMessage);
    const dir = directoryOf(prefix);
    return this.#deleteMarked(`delete under ${JSON.stringify(prefix)}`, Buffer.from(prefix), rangeEnd(prefix), dir === undefined ? GLOBAL_MARK : markOf(dir));
  }

  /** Deletes a key or range with its mark, only when there is something to delete (else the revision stays). */
  async #deleteMarked(what: string, key: Buffer, end: Buffer | undefined, mark: string): Promise<DeleteResult> {
    const range = end ? { range_end: end } : {};
    const r = await this.#write(what, () => this.#client.kv.txn({
      compare: [{ key, ...range, target: 'Version', result: 'Greater', version: 0 }],
      success: [{ request_delete_range: { key, ...range, ...(end ? { prev_kv: true } : {}) } }, markPut(mark)],
      failure: [],
    }));
    if (!r.succeeded) return { deleted: 0, revision: Number(r.header.revision) };
    const d = r.responses[0].response_delete_range;
    // A range delete that spans the marks' key range takes them too: they are not the caller's keys.
    const marks = end ? (d.prev_kvs ?? []).filter((kv: IKeyValue) => isMark(kv.key.toString('utf8'))).length : 0;
    return { deleted: Number(d.deleted) - marks, revision: Number(r.header.revision) };
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    checkTxn(request);
    const compare: ICompare[] = (request.compare ?? []).map((c) => ({
      key: Buffer.from(c.key),
      result: ({ '==': 'Equal', '!=': 'NotEqual', '<': 'Less', '>': 'Greater' } as const)[c.op],
      ...(c.target === 'value' ? { target: 'Value' as const, value: Buffer.from(c.value) }
        : c.target === 'version' ? { target: 'Version' as const, version: c.value }
          : c.target === 'createRevision' ? { target: 'Create' as const, create_revision: c.value }
            : { target: 'Mod' as const, mod_revision: c.value }),
    }));
    const lease = [...(request.success ?? []), ...(request.failure ?? [])].find((op) => op.type === 'put' && op.lease) as { lease?: string } | undefined;
    const withMarks = (ops: TxnOp[]) => {
      const marks = marksFor(ops);
      return [...ops.map(toOp), ...(ops.length + marks.length <= MAX_TXN_OPS + 1 ? marks : [GLOBAL_MARK]).map(markPut)];
    };
    const r = await this.#write('txn', () => this.#client.kv.txn({ compare, success: withMarks(request.success ?? []), failure: withMarks(request.failure ?? []) }), lease?.lease);
    const branch = (r.succeeded ? request.success : request.failure) ?? [];
    const results: TxnOpResult[] = r.responses.slice(0, branch.length).map((resp, i) => {
      const op = branch[i];
      if (op.type === 'put') return { type: 'put', ...(resp.response_put.prev_kv ? { prevKv: toKeyValue(resp.response_put.prev_kv) } : {}) };
      if (op.type === 'delete') {
        const d = resp.response_delete_range;
        const prevKvs = (d.prev_kvs ?? []).map((kv: IKeyValue) => toKeyValue(kv));
        const kept = prevKvs.filter((kv) => !isMark(kv.key));
        return { type: 'delete', deleted: Number(d.deleted) - (prevKvs.length - kept.length), prevKvs: kept };
      }
      return { type: 'get', kvs: resp.response_range.kvs.map(toKeyValue).filter((kv) => !isMark(kv.key)), more: resp.response_range.more };
    });
    return { succeeded: r.succeeded, revision: Number(r.header.revision), results };
  }

  async revision(): Promise<Revision> {
    // The header of any read carries the store's revision; a one-key read of a key nobody writes is the cheapest.
    const r = await this.#read('revision', () => this.#client.kv.range({ key: Buffer.from('\0appnet-revision-probe'), count_only: true }));
    return Number(r.header.revision);
  }

  async watch(prefix: string, options: WatchOptions, handler: WatchHandler): Promise<Watcher> {
    checkPrefix(prefix);
    if (options.fromRevision !== undefined) checkRevision(options.fromRevision, 'fromRevision');
    const from = options.fromRevision ?? (await this.revision()) + 1;
    const w = new EtcdWatch(this.#hub, prefix, from, handler, options.onError);
    await this.#hub.add(w);
    return w;
  }

  async compact(revision: Revision): Promise<void> {
    checkRevision(revision, 'compact revision');
    await this.#write(`compact to revision ${revision}`, () => this.#client.kv.compact({ revision, physical: true })).catch((err) => {
      throw err instanceof CompactedError ? new CompactedError(revision, revision) : err;
    });
  }

  async grantLease(ttlSeconds: number): Promise<LeaseId> {
    checkTtl(ttlSeconds);
    const r = await this.#write(`grant a lease of ${ttlSeconds} s`, () => this.#client.leaseClient.leaseGrant({ TTL: ttlSeconds }));
    return String(r.ID);
  }

  async keepAlive(id: LeaseId): Promise<number> {
    this.#open();
    try {
      const stream = await this.#client.leaseClient.leaseKeepAlive();
      try {
        const ttl = await new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('lease keep-alive: request timed out')), 5000);
          stream.on('data', (res) => { clearTimeout(timer); resolve(Number(res.TTL)); });
          stream.on('error', (err) => { clearTimeout(timer); reject(err); });
          stream.write({ ID: id });
        });
        if (ttl <= 0) throw new LeaseNotFoundError(id);
        return ttl;
      } finally {
        stream.cancel();
      }
    } catch (err) {
      throw toStoreError(err, `keep lease ${id} alive`, this.#endpoints, id);
    }
  }

  async revokeLease(id: LeaseId): Promise<Revision> {
    const r = await this.#write(`revoke lease ${id}`, () => this.#client.leaseClient.leaseRevoke({ ID: id }), id);
    return Number(r.header.revision);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#hub.close();
    this.#client.close();
  }

  /**
   * Defragments, one member at a time, each member whose backend has at least `minFreeBytes` free (what
   * compaction left), giving the space back to the file system; returns each one's size before and after.
   * A member that does not answer is skipped (the next pass tries again). Defragmentation blocks that member
   * for a moment; the client meanwhile uses the others.
   */
  async reclaim(minFreeBytes: number): Promise<Array<{ endpoint: string; before: number; after: number }>> {
    this.#open();
    const out: Array<{ endpoint: string; before: number; after: number }> = [];
    for (const endpoint of this.#endpoints) {
      const one = new this.#Etcd3({ ...this.#options, hosts: [`${this.#scheme}://${endpoint}`], faultHandling: {} });
      try {
        const status = await one.maintenance.status();
        const before = Number(status.dbSize);
        if (before - Number(status.dbSizeInUse) < minFreeBytes) continue;
        await one.maintenance.defragment({ deadline: Date.now() + 60_000 });
        out.push({ endpoint, before, after: Number((await one.maintenance.status()).dbSize) });
      } catch {
        // unreachable or busy: the next pass
      } finally {
        one.close();
      }
    }
    return out;
  }

  /** Each member's backend size in bytes (undefined for one that does not answer). */
  async dbSizes(): Promise<Array<{ endpoint: string; bytes?: number }>> {
    this.#open();
    return Promise.all(this.#endpoints.map(async (endpoint) => {
      const one = new this.#Etcd3({ ...this.#options, hosts: [`${this.#scheme}://${endpoint}`], faultHandling: {} });
      try {
        return { endpoint, bytes: Number((await one.maintenance.status()).dbSize) };
      } catch {
        return { endpoint };
      } finally {
        one.close();
      }
    }));
  }
}

/** A mark's write: empty, so it costs the raft log a key and no value. */
function markPut(mark: string): IRequestOp {
  return { request_put: { key: Buffer.from(mark), value: Buffer.alloc(0) } };
}

/** etcd's "to the end of the keyspace" range end. */
function isOpenEnd(end: Buffer): boolean {
  return end.length === 1 && end[0] === 0;
}

function toOp(op: TxnOp): IRequestOp {
  if (op.type === 'put') {
    return { request_put: { key: Buffer.from(op.key), value: Buffer.from(op.value), prev_kv: true, ...(op.lease ? { lease: op.lease } : {}) } };
  }
  const range = op.prefix ? { range_end: rangeEnd(op.key) } : {};
  if (op.type === 'delete') return { request_delete_range: { key: Buffer.from(op.key), prev_kv: true, ...range } };
  return { request_range: { key: op.prefix ? rangeStart(op.key) : Buffer.from(op.key), ...range, ...(op.limit ? { limit: op.limit } : {}) } };
}
