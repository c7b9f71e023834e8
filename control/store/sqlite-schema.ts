// The SQLite store's file: the part of better-sqlite3's API it uses, the schema, opening (WAL, schema check), the
// prepared statements, and rows turned into KeyValues and watch events. sqlite-store.ts holds the contracts.
import { createRequire } from 'node:module';
import { StoreError } from './store.ts';
import type { KeyValue, WatchEvent } from './store.ts';

// better-sqlite3 ships no types; this is the part of its API we use.
export interface Statement {
  run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  pluck(): Statement;
}
export interface Transaction<A extends unknown[], R> { (...args: A): R; immediate(...args: A): R }
export interface Database {
  prepare(sql: string): Statement;
  exec(sql: string): void;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  transaction<A extends unknown[], R>(fn: (...args: A) => R): Transaction<A, R>;
  close(): void;
}
const require = createRequire(import.meta.url);
const openDatabase = require('better-sqlite3') as new (path: string, options?: { timeout?: number }) => Database;

const SCHEMA_VERSION = 1;
const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ${SCHEMA_VERSION}), ('revision', 1), ('compact_revision', 0);
CREATE TABLE IF NOT EXISTS kv (
  key TEXT PRIMARY KEY, value TEXT NOT NULL, create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL,
  version INTEGER NOT NULL, lease INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease IS NOT NULL;
CREATE TABLE IF NOT EXISTS history (
  rev INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL,
  kv TEXT, prev TEXT, PRIMARY KEY (rev, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ttl INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS leases_expiry ON leases (expires_at);
`;

/** A kv row as selected by KV_COLUMNS; history rows hold put and previous KeyValues as JSON. */
export type KvRow = Omit<KeyValue, 'lease'> & { lease?: string | null };
export interface EventRow { rev: number; type: 'put' | 'delete'; key: string; kv: string | null; prev: string | null }
export const KV_COLUMNS = 'key, value, create_rev AS createRevision, mod_rev AS modRevision, version, CAST(lease AS TEXT) AS lease';
/** Every statement the store runs, prepared once per connection. */
export function prepareStatements(db: Database): Record<string, Statement> {
  const prep = (sql: string) => db.prepare(sql);
  return {
    meta: prep('SELECT value FROM meta WHERE name = ?').pluck(),
    setMeta: prep('UPDATE meta SET value = ? WHERE name = ?'),
    getKv: prep(`SELECT ${KV_COLUMNS} FROM kv WHERE key = ?`),
    getRevisions: prep('SELECT create_rev AS createRevision, mod_rev AS modRevision, version FROM kv WHERE key = ?'),
    rangeKv: prep(`SELECT ${KV_COLUMNS} FROM kv WHERE key >= ? AND key < CAST(? AS TEXT) ORDER BY key LIMIT ?`),
    putKv: prep('INSERT OR REPLACE INTO kv (key, value, create_rev, mod_rev, version, lease) VALUES (?, ?, ?, ?, ?, ?)'),
    deleteKv: prep('DELETE FROM kv WHERE key = ?'),
    kvByLease: prep('SELECT key FROM kv WHERE lease = ? ORDER BY key').pluck(),
    event: prep('INSERT INTO history (rev, seq, type, key, kv, prev) VALUES (?, ?, ?, ?, ?, ?)'),
    events: prep('SELECT rev, type, key, kv, prev FROM history WHERE rev >= ? AND rev <= ? AND key >= ? AND key < CAST(? AS TEXT) ORDER BY rev, seq'),
    compact: prep('DELETE FROM history WHERE rev < ?'),
    grant: prep('INSERT INTO leases (ttl, expires_at) VALUES (?, ?)'),
    lease: prep('SELECT ttl FROM leases WHERE id = ?').pluck(),
    touchLease: prep('UPDATE leases SET expires_at = ? WHERE id = ?'),
    deleteLease: prep('DELETE FROM leases WHERE id = ?'),
    expired: prep('SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at, id').pluck(),
    nextExpiry: prep('SELECT min(expires_at) FROM leases').pluck(),
    dataVersion: prep('PRAGMA data_version').pluck(),
  };
}

/** Opens the file, switches it to WAL and creates or checks the schema (waiting out other openers). */
export function openFile(path: string, busyTimeoutMs: number): Database {
  let db: Database | undefined;
  const fail = (why: string, cause?: unknown) => {
    db?.close();
    return new StoreError('EOPEN', `cannot open SQLite store ${path}: ${why}`, { cause });
  };
  try {
    db = new openDatabase(path, { timeout: busyTimeoutMs });
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal' && path !== ':memory:') throw fail(`it cannot use WAL (journal_mode is ${String(mode)}); put it on a local filesystem, not NFS`);
    // NORMAL in both modes: commits do not sync; 'full' syncs the WAL off the event loop (contract 7).
    db.pragma('synchronous = NORMAL');
    db.transaction(() => db!.exec(SCHEMA)).immediate();
    const schema = db.prepare("SELECT value FROM meta WHERE name = 'schema'").pluck().get() as number;
    if (schema > SCHEMA_VERSION) throw fail(`its schema version ${schema} is newer than this appnetd supports (${SCHEMA_VERSION}); upgrade appnetd`);
    return db;
  } catch (err) {
    if (err instanceof StoreError) throw err;
    const busy = String((err as { code?: unknown }).code).startsWith('SQLITE_BUSY');
    throw fail(busy ? `another process kept it locked for over ${busyTimeoutMs} ms; check for a stuck process (fuser ${path})`
      : `${(err as Error).message}; check that its directory exists and is writable`, err);
  }
}

/** Drops a null lease, so a KeyValue without a lease has no lease property. */
export function toKv(row: KvRow): KeyValue {
  if (row.lease === null) delete row.lease;
  return row as KeyValue;
}

export function toEvent(r: EventRow): WatchEvent {
  const kv: KeyValue = r.kv !== null ? JSON.parse(r.kv) : { key: r.key, value: '', createRevision: 0, modRevision: r.rev, version: 0 };
  const event: WatchEvent = { type: r.type, kv, revision: r.rev };
  if (r.prev !== null) event.prevKv = JSON.parse(r.prev) as KeyValue;
  return event;
}
