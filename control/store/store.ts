// The store: desired and observed state of appnet, with the semantics of etcd v3 (DESIGN.md §4).
//
// Every implementation (SQLite today, etcd later) passes the same conformance suite
// (test/helpers/store-conformance.ts). The contract, in etcd's words:
//
//   - Keys and values are strings; values are JSON text by convention. Keys sort by their UTF-8 bytes.
//   - One global revision counts write transactions. A put, a delete that removed something, a lease
//     revocation that removed keys, and a txn that changed something each advance it by exactly one;
//     all changes of one transaction share that revision. Reads and no-op writes do not advance it.
//   - A key's createRevision/modRevision are the revisions that created and last changed it; version
//     counts its puts since creation (1 after the first). A deleted key re-created starts again at 1.
//   - Watches deliver every change to a prefix in revision order, never skipping one, from any revision
//     the history still holds (see compact()). The events of one revision arrive in one handler call.
//   - Leases have a TTL in whole seconds. Keys put with a lease are deleted, with delete events, when the
//     lease is revoked or expires without a keepAlive.
//
// Methods return Promises even where an implementation is synchronous, so etcd can implement them.
// Failures are StoreError subclasses whose messages say what was wrong and what to do.

/** A global store revision: 1 in an empty store, +1 per write transaction. */
export type Revision = number;

/** A lease id: a decimal integer as a string (etcd lease ids are int64, beyond a JS number). */
export type LeaseId = string;

export interface KeyValue {
  key: string;
  value: string;
  createRevision: Revision;
  modRevision: Revision;
  /** Puts since creation: 1 after the first. */
  version: number;
  /** The lease the key is attached to, if any. */
  lease?: LeaseId;
}

export interface PutOptions {
  /** Attach the key to this lease; a put without a lease detaches the key from any lease. */
  lease?: LeaseId;
}

export interface RangeOptions {
  /** At most this many keys; `more` tells whether there were others. */
  limit?: number;
  /** Start at this key (inclusive) instead of at the prefix: for paging, pass the last key + '\0'. */
  from?: string;
}

export interface RangeResult {
  /** Sorted by key (UTF-8 byte order). */
  kvs: KeyValue[];
  /** True if `limit` cut the result short. */
  more: boolean;
  /** The revision the read saw: watch from revision + 1 to follow on without a gap. */
  revision: Revision;
}

export interface DeleteResult {
  deleted: number;
  /** The revision of the delete, or the current revision if nothing was deleted. */
  revision: Revision;
}

export type CompareOp = '==' | '!=' | '<' | '>';

/**
 * A txn condition on one key. A missing key has version, createRevision and modRevision 0; a
 * comparison of a missing key's value is always false (as in etcd).
 */
export type Compare =
  | { key: string; target: 'value'; op: CompareOp; value: string }
  | { key: string; target: 'version' | 'createRevision' | 'modRevision'; op: CompareOp; value: number };

export type TxnOp =
  | { type: 'put'; key: string; value: string; lease?: LeaseId }
  | { type: 'delete'; key: string; prefix?: boolean }
  | { type: 'get'; key: string; prefix?: boolean; limit?: number };

export type TxnOpResult =
  | { type: 'put'; prevKv?: KeyValue }
  | { type: 'delete'; deleted: number; prevKvs: KeyValue[] }
  | { type: 'get'; kvs: KeyValue[]; more: boolean };

export interface TxnRequest {
  /** All must hold for `success` to run; otherwise `failure` runs. Empty: success. */
  compare?: Compare[];
  success?: TxnOp[];
  failure?: TxnOp[];
}

export interface TxnResult {
  succeeded: boolean;
  /** The txn's revision if it changed anything, else the revision its reads saw. */
  revision: Revision;
  /** One per op of the branch that ran, in order. A get sees the earlier ops' writes. */
  results: TxnOpResult[];
}

export interface WatchEvent {
  type: 'put' | 'delete';
  /** For a delete: { key, value: '', createRevision: 0, modRevision: revision, version: 0 }. */
  kv: KeyValue;
  /** The key's previous state, if it existed. */
  prevKv?: KeyValue;
  revision: Revision;
}

/** Called with events in revision order; the next call waits until a returned Promise settles. */
export type WatchHandler = (events: WatchEvent[]) => void | Promise<void>;

export interface WatchOptions {
  /** First revision to deliver (inclusive). Default: changes after the watch is established. */
  fromRevision?: Revision;
  /**
   * Called once if the watch ends on its own: its history was compacted (CompactedError), its handler
   * threw (WatchHandlerError), or the store failed. Without it, the error is a process warning.
   */
  onError?: (err: StoreError) => void;
}

export interface Watcher {
  /** After this resolves the handler is not called again. */
  cancel(): Promise<void>;
  /**
   * Catches the watch up (etcd's progress request): resolves with a revision R, at least the store's
   * revision when it was called, once every event up to R has been handed to the handler and the
   * handler's Promise has settled. So state built by the handler then reflects every write committed
   * before the call, by any process: a consistent read from it. Rejects if the watch has ended. Never
   * await it inside the handler (it waits for the handler).
   */
  progress(): Promise<Revision>;
}

export interface Store {
  get(key: string): Promise<KeyValue | undefined>;
  /** Keys that start with `prefix` ('' for all keys). "a/" matches "a/" and "a/b", not "ab". */
  range(prefix: string, options?: RangeOptions): Promise<RangeResult>;
  put(key: string, value: string, options?: PutOptions): Promise<Revision>;
  delete(key: string): Promise<DeleteResult>;
  /** Deletes every key under a non-empty prefix in one revision. */
  deletePrefix(prefix: string): Promise<DeleteResult>;
  txn(request: TxnRequest): Promise<TxnResult>;
  revision(): Promise<Revision>;
  /** Resolves once established: every change committed after that is delivered. */
  watch(prefix: string, options: WatchOptions, handler: WatchHandler): Promise<Watcher>;
  /** Forgets history before `revision`; watching from an earlier revision then fails. */
  compact(revision: Revision): Promise<void>;
  grantLease(ttlSeconds: number): Promise<LeaseId>;
  /** Restarts the lease's TTL; returns it. Throws LeaseNotFoundError if revoked or expired. */
  keepAlive(id: LeaseId): Promise<number>;
  /** Deletes the lease and its keys (one revision). Throws LeaseNotFoundError if already gone. */
  revokeLease(id: LeaseId): Promise<Revision>;
  /** Cancels watchers and releases the connection. Later calls throw StoreClosedError. */
  close(): Promise<void>;
}

// ---- Errors ----------------------------------------------------------------------------------

export class StoreError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A caller passed something the store cannot accept. */
export class InvalidArgumentError extends StoreError {
  constructor(message: string) {
    super('EINVAL', message);
  }
}

export class LeaseNotFoundError extends StoreError {
  constructor(readonly lease: LeaseId) {
    super(
      'ELEASE',
      `lease ${JSON.stringify(lease)} not found: it was revoked or expired (keepAlive it more often ` +
        `than its TTL), or never granted; grant a new lease and put the keys again`,
    );
  }
}

export class CompactedError extends StoreError {
  constructor(
    readonly requested: Revision,
    readonly compactRevision: Revision,
  ) {
    super(
      'ECOMPACTED',
      `revision ${requested} has been compacted (history starts at revision ${compactRevision}); ` +
        `re-read the current state with range() and watch from its revision + 1`,
    );
  }
}

export class StoreClosedError extends StoreError {
  constructor(what: string) {
    super('ECLOSED', `store ${what} is closed; open a new one`);
  }
}

/** Another process held the store's write lock for longer than the busy timeout. */
export class StoreBusyError extends StoreError {
  constructor(message: string, cause?: unknown) {
    super('EBUSY', message, { cause });
  }
}

export class WatchHandlerError extends StoreError {
  constructor(prefix: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super('EHANDLER', `watch handler for prefix ${JSON.stringify(prefix)} threw, watch cancelled: ${why}`, { cause });
  }
}

/**
 * The store could not be reached, or lost the request's outcome (a leader died while it was in flight): the
 * operation may or may not have happened. Callers answer 503 and let the client decide; nothing retries a
 * write on their behalf, so nothing is applied twice.
 */
export class StoreUnavailableError extends StoreError {
  constructor(message: string, cause?: unknown) {
    super('EUNAVAILABLE', `store unavailable: ${message}`, { cause });
  }
}

/** etcd's own backend quota was reached ("mvcc: database space exceeded"): compact and defragment, or raise it. */
export class StoreFullError extends StoreError {
  constructor(message: string) {
    super('ENOSPACE', `store full: ${message}; compact and defragment etcd (appnetd does on a schedule) or raise --quota-backend-bytes`);
  }
}

// ---- Argument checks shared by implementations -------------------------------------------------

export function checkKey(key: unknown, what = 'key'): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidArgumentError(`${what} must be a non-empty string, got ${JSON.stringify(key)}`);
  }
}

export function checkPrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string') {
    throw new InvalidArgumentError(`prefix must be a string ('' for all keys), got ${JSON.stringify(prefix)}`);
  }
}

export function checkValue(value: unknown, key: string): asserts value is string {
  if (typeof value !== 'string') {
    throw new InvalidArgumentError(
      `value for key ${JSON.stringify(key)} must be a string (JSON text by convention), got ${typeof value}`,
    );
  }
}

export function checkRevision(revision: unknown, what: string): asserts revision is Revision {
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 1) {
    throw new InvalidArgumentError(`${what} must be a positive integer revision, got ${JSON.stringify(revision)}`);
  }
}

export function checkTtl(ttlSeconds: unknown): asserts ttlSeconds is number {
  if (typeof ttlSeconds !== 'number' || !Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1) {
    throw new InvalidArgumentError(`lease TTL must be a whole number of seconds >= 1, got ${JSON.stringify(ttlSeconds)}`);
  }
}

export function checkLimit(limit: unknown): void {
  if (limit !== undefined && (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1)) {
    throw new InvalidArgumentError(`limit must be a positive integer, got ${JSON.stringify(limit)}`);
  }
}

/**
 * etcd's default limits, enforced by every store so that a caller that would break them on etcd breaks on
 * SQLite too, in tests: at most MAX_TXN_OPS operations per txn branch (etcd's --max-txn-ops, 128, less the one
 * EtcdStore keeps for a change mark: change-marks.ts), and a request of at most MAX_REQUEST_BYTES (etcd's
 * --max-request-bytes, 1.5 MiB; counted here as keys plus values plus 64 bytes per op).
 */
export const MAX_TXN_OPS = 127;
export const MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;

/** Refuses a put whose key and value exceed what etcd takes in one request. */
export function checkSize(key: string, value: string): void {
  const bytes = Buffer.byteLength(key) + Buffer.byteLength(value) + 64;
  if (bytes > MAX_REQUEST_BYTES) {
    throw new InvalidArgumentError(`request of ${bytes} bytes for key ${JSON.stringify(key)} exceeds the store's limit of ${MAX_REQUEST_BYTES} bytes (etcd's max request size); split the value`);
  }
}

const compareTargets = new Set(['value', 'version', 'createRevision', 'modRevision']);
const compareOps = new Set(['==', '!=', '<', '>']);

/**
 * Validates a txn the way etcd does, including its rule that one branch may not write a key twice
 * (two puts, or a put and a delete covering it), since all its writes share one revision.
 */
export function checkTxn(request: TxnRequest): void {
  for (const c of request.compare ?? []) {
    checkKey(c.key, 'compare key');
    if (!compareTargets.has(c.target)) {
      throw new InvalidArgumentError(`compare target must be value, version, createRevision or modRevision, got ${JSON.stringify(c.target)}`);
    }
    if (!compareOps.has(c.op)) {
      throw new InvalidArgumentError(`compare op must be ==, !=, < or >, got ${JSON.stringify(c.op)}`);
    }
    const wantString = c.target === 'value';
    if (wantString ? typeof c.value !== 'string' : !Number.isSafeInteger(c.value)) {
      throw new InvalidArgumentError(
        `compare of ${c.target} on key ${JSON.stringify(c.key)} needs ${wantString ? 'a string' : 'an integer'}, got ${JSON.stringify(c.value)}`,
      );
    }
  }
  if ((request.compare ?? []).length > MAX_TXN_OPS) {
    throw new InvalidArgumentError(`txn has ${request.compare!.length} compares; the store takes at most ${MAX_TXN_OPS} (etcd's --max-txn-ops): split it into several txns`);
  }
  let bytes = 0;
  for (const c of request.compare ?? []) bytes += Buffer.byteLength(c.key) + (c.target === 'value' ? Buffer.byteLength(c.value as string) : 8) + 64;
  for (const branch of [request.success ?? [], request.failure ?? []]) {
    if (branch.length > MAX_TXN_OPS) {
      throw new InvalidArgumentError(`txn has ${branch.length} operations in one branch; the store takes at most ${MAX_TXN_OPS} (etcd's --max-txn-ops): split it into several txns`);
    }
    for (const op of branch) bytes += Buffer.byteLength(op.key) + (op.type === 'put' && typeof op.value === 'string' ? Buffer.byteLength(op.value) : 0) + 64;
    const puts = new Set<string>();
    const deletes: Array<Extract<TxnOp, { type: 'delete' }>> = [];
    for (const op of branch) {
      if (op.type === 'put') {
        checkKey(op.key);
        checkValue(op.value, op.key);
        if (puts.has(op.key)) throw duplicate(op.key);
        puts.add(op.key);
      } else if (op.type === 'delete' || op.type === 'get') {
        if (op.prefix) checkPrefix(op.key);
        else checkKey(op.key);
        if (op.type === 'get') checkLimit(op.limit);
        else if (op.prefix && op.key === '') throw new InvalidArgumentError(deleteAllMessage);
        else deletes.push(op);
      } else {
        throw new InvalidArgumentError(`txn op type must be put, delete or get, got ${JSON.stringify((op as { type: unknown }).type)}`);
      }
    }
    for (const d of deletes) {
      for (const key of puts) {
        if (d.prefix ? key.startsWith(d.key) : key === d.key) throw duplicate(key);
      }
    }
  }
  if (bytes > MAX_REQUEST_BYTES) {
    throw new InvalidArgumentError(`txn of about ${bytes} bytes exceeds the store's limit of ${MAX_REQUEST_BYTES} bytes (etcd's max request size): split it into several txns`);
  }
}

/** Why deleting under the empty prefix is refused (it would delete every key). */
export const deleteAllMessage =
  "refusing to delete under the empty prefix (every key in the store); pass the prefix of what to delete, e.g. 'networks/'";

function duplicate(key: string): InvalidArgumentError {
  return new InvalidArgumentError(
    `txn writes key ${JSON.stringify(key)} more than once in one branch; all its writes share one revision, so split them into separate txns`,
  );
}

/** Orders strings by their UTF-8 bytes, the order keys sort in. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Whether a txn compare holds for a key's current state (undefined: the key is missing), as in etcd. */
export function compareHolds(c: Compare, kv: KeyValue | undefined): boolean {
  let order: number;
  if (c.target === 'value') {
    if (!kv) return false; // a missing key has no value to compare, so no value comparison holds
    order = compareKeys(kv.value, c.value);
  } else {
    order = Math.sign((kv ? kv[c.target] : 0) - c.value);
  }
  switch (c.op) {
    case '==': return order === 0;
    case '!=': return order !== 0;
    case '<': return order < 0;
    case '>': return order > 0;
  }
}

/**
 * The exclusive upper bound of the keys under `prefix`, as UTF-8 bytes: the prefix with its last byte
 * incremented (etcd's prefix range_end). UTF-8 never contains 0xff, so the increment never carries; for
 * '' it is [0xff], above every key (an etcd client sends '\0', etcd's "to the end", instead).
 */
export function prefixRangeEnd(prefix: string): Buffer {
  const bytes = Buffer.from(prefix, 'utf8');
  if (bytes.length === 0) return Buffer.from([0xff]);
  bytes[bytes.length - 1] += 1;
  return bytes;
}
