// Scheduled compaction: the store keeps every revision until it is compacted, and etcd's database grows with
// that history until it refuses writes ("mvcc: database space exceeded", which Shaken Fist met). Every
// `intervalSeconds` one daemon compacts the store to its revision minus `retainRevisions` (watchers that lag
// further than that re-read their prefix: repo/state-view.ts), then, on etcd, defragments the members whose
// backend has more than `defragFreeBytes` free, which gives the space back to the file system.
//
// One daemon at a time: the first live host by name (the same rule as the event pruner), so no election is
// needed; two hosts that briefly both think they are first compact to nearly the same revision, harmlessly.
import type { Logger } from 'pino';
import { CompactedError, type Store } from './store.ts';

export interface CompactionSettings {
  intervalSeconds: number;
  retainRevisions: number;
  defragFreeBytes: number;
}

export const DEFAULT_COMPACTION: CompactionSettings = { intervalSeconds: 300, retainRevisions: 10_000, defragFreeBytes: 64 * 1024 * 1024 };

/** A store that can give freed space back (EtcdStore): per member, its size before and after. */
export interface Reclaimer {
  reclaim(minFreeBytes: number): Promise<Array<{ endpoint: string; before: number; after: number }>>;
}

const canReclaim = (s: Store): s is Store & Reclaimer => typeof (s as Partial<Reclaimer>).reclaim === 'function';

/** The revision to compact to, or undefined when there is nothing to forget yet. Pure. */
export function compactionTarget(revision: number, retain: number, compactedTo: number): number | undefined {
  const target = revision - retain;
  return target > 1 && target > compactedTo ? target : undefined;
}

export class Compactor {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  #compactedTo = 0;

  constructor(private readonly o: { store: Store; settings: CompactionSettings; isCompactor: () => boolean; log: Logger }) {}

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      if (this.#running || !this.o.isCompactor()) return;
      this.#running = this.pass()
        .catch((err) => this.o.log.warn({ err: { message: (err as Error).message } }, 'store not compacted; the next interval tries again'))
        .finally(() => { this.#running = undefined; });
    }, this.o.settings.intervalSeconds * 1000);
    this.#timer.unref();
  }

  /** One pass: compact if there is history to forget, then reclaim space. Resolves with what it did. */
  async pass(): Promise<{ compactedTo?: number; reclaimed: Array<{ endpoint: string; before: number; after: number }> }> {
    const { store, settings, log } = this.o;
    const target = compactionTarget(await store.revision(), settings.retainRevisions, this.#compactedTo);
    let compactedTo: number | undefined;
    if (target !== undefined) {
      try {
        await store.compact(target);
        compactedTo = target;
      } catch (err) {
        if (!(err instanceof CompactedError)) throw err; // another host got there first
      }
      this.#compactedTo = target;
    }
    const reclaimed = canReclaim(store) ? await store.reclaim(settings.defragFreeBytes) : [];
    if (compactedTo !== undefined || reclaimed.length > 0) log.info({ compactedTo, reclaimed }, 'store compacted');
    return { compactedTo, reclaimed };
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }
}
