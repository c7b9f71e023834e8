// Pruning of append-only events: network events (usage samples every minute on every host among them),
// connection events and host events. Without it the keyspace grows for ever, and on etcd that ends in
// "mvcc: database space exceeded" (Shaken Fist met it). An event goes when it is older than maxAgeSeconds,
// or when its object has more than maxPerObject newer events.
//
// One host prunes at a time: the first live host by name, the same choice on every host from the same host
// list, so no election is needed. Two hosts that briefly both think they are first only repeat each other's
// deletes, which are no-ops. Deletes go in txns of at most PRUNE_BATCH keys, under etcd's 128 ops per txn.
import type { Logger } from 'pino';
import type { Store } from '../store/store.ts';
import { CONNECTION_EVENTS_PREFIX, EVENTS_PREFIX, HOST_EVENTS_PREFIX } from './keys.ts';

export const EVENT_PREFIXES = [EVENTS_PREFIX, CONNECTION_EVENTS_PREFIX, HOST_EVENTS_PREFIX] as const;
export const PRUNE_BATCH = 100;
const PAGE = 1000;

export interface PruneLimits {
  maxAgeSeconds: number;
  maxPerObject: number;
}

/**
 * When an event was written, from the last segment of its key: `<rev:15>-<ms:15>-<seq:6>` (network and
 * connection events) or `<ms:15>` (host events). Undefined for a key of another form: it is never pruned.
 */
export function eventTimeMs(key: string): number | undefined {
  const last = key.slice(key.lastIndexOf('/') + 1);
  const m = /^\d{15}-(\d{15})-\d{6}$/.exec(last) ?? /^(\d{15})$/.exec(last);
  return m ? Number(m[1]) : undefined;
}

/**
 * The keys to delete among one object's events, given in key order (oldest first: keys start with the
 * revision or the time). Pure.
 */
export function eventsToPrune(keys: readonly string[], nowMs: number, limits: PruneLimits): string[] {
  const dated = keys.filter((k) => eventTimeMs(k) !== undefined);
  const excess = Math.max(0, dated.length - limits.maxPerObject);
  const cutoff = nowMs - limits.maxAgeSeconds * 1000;
  return dated.filter((k, i) => i < excess || eventTimeMs(k)! < cutoff);
}

/** The object an event belongs to: its key without the last segment. */
function objectOf(key: string): string {
  return key.slice(0, key.lastIndexOf('/') + 1);
}

export interface EventPrunerOptions {
  store: Store;
  limits: PruneLimits;
  intervalSeconds: number;
  /** Whether this host is the one that prunes now. */
  isPruner: () => boolean;
  log: Logger;
  now?: () => number;
}

export class EventPruner {
  readonly #o: EventPrunerOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;

  constructor(o: EventPrunerOptions) {
    this.#o = o;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      if (this.#running || !this.#o.isPruner()) return;
      this.#running = this.prune()
        .catch((err) => { this.#o.log.warn({ err }, 'events not pruned; the next interval tries again'); return 0; })
        .finally(() => { this.#running = undefined; });
    }, this.#o.intervalSeconds * 1000);
    this.#timer.unref();
  }

  /** One pass over every event prefix; resolves with the number of events deleted. */
  async prune(): Promise<number> {
    const now = (this.#o.now ?? Date.now)();
    let deleted = 0;
    for (const prefix of EVENT_PREFIXES) {
      let object = '';
      let keys: string[] = [];
      const flush = async () => {
        deleted += await this.#delete(eventsToPrune(keys, now, this.#o.limits));
        keys = [];
      };
      let from: string | undefined;
      for (;;) {
        const page = await this.#o.store.range(prefix, { limit: PAGE, ...(from ? { from } : {}) });
        for (const kv of page.kvs) {
          const o = objectOf(kv.key);
          if (o !== object) {
            await flush();
            object = o;
          }
          keys.push(kv.key);
        }
        if (!page.more || page.kvs.length === 0) break;
        from = page.kvs[page.kvs.length - 1].key + '\0';
      }
      await flush();
    }
    if (deleted > 0) this.#o.log.info({ deleted, ...this.#o.limits }, 'pruned events');
    return deleted;
  }

  async #delete(keys: string[]): Promise<number> {
    let n = 0;
    for (let i = 0; i < keys.length; i += PRUNE_BATCH) {
      const batch = keys.slice(i, i + PRUNE_BATCH);
      const r = await this.#o.store.txn({ success: batch.map((key) => ({ type: 'delete' as const, key })) });
      for (const op of r.results) if (op.type === 'delete') n += op.deleted;
    }
    return n;
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }
}
