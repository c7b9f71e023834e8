// Watches on the SQLite store (contract 3 of sqlite-store.ts): each watcher reads the history from its next
// revision, a window of revisions at a time, and awaits its handler before reading on; one delivery at a time per
// watcher. The store pumps every watcher when it sees a commit (its own, or another process's data_version).
import { CompactedError, StoreError, WatchHandlerError, prefixRangeEnd } from './store.ts';
import type { Revision, WatchEvent, WatchHandler, Watcher } from './store.ts';
import { toEvent, type EventRow } from './sqlite-schema.ts';

/** Revisions a watcher reads per query; a revision's events are never split. */
const WATCH_WINDOW = 1000;

/** What the watchers read from the store. */
export interface WatchSource {
  /** Runs `fn` in one read transaction (errors translated). */
  read<T>(fn: () => T): T;
  /** The current and the compacted revision, inside read(). */
  revisions(): [Revision, Revision];
  /** The current revision, outside any transaction. */
  current(): Revision;
  /** History rows of revisions from..to with lower <= key < upper, in order. */
  events(from: Revision, to: Revision, lower: string, upper: Buffer): EventRow[];
  translate(err: unknown): StoreError;
  closed(): boolean;
}

interface WatchState {
  prefix: string; lower: string; upper: Buffer; nextRev: Revision;
  handler: WatchHandler; onError?: (err: StoreError) => void; cancelled: boolean;
  /** The delivery loop in progress, if any: one at a time per watcher. */
  running?: Promise<void>;
  /** Why the watch ended on its own. */
  failure?: StoreError;
}

export class SqliteWatchers {
  readonly #all = new Set<WatchState>();

  constructor(private readonly src: WatchSource) {}

  /** A watcher of `prefix` from `nextRev`; `behind`: history is already there to deliver. */
  add(prefix: string, nextRev: Revision, behind: boolean, onError: ((err: StoreError) => void) | undefined, handler: WatchHandler): Watcher {
    const w: WatchState = { prefix, lower: prefix, upper: prefixRangeEnd(prefix), nextRev, handler, onError, cancelled: false };
    this.#all.add(w);
    if (behind) setImmediate(() => void this.#pump(w));
    return {
      cancel: async () => {
        w.cancelled = true;
        this.#all.delete(w);
      },
      progress: async () => {
        const ended = () => w.failure ?? new StoreError('ECANCELLED', `watch of prefix ${JSON.stringify(prefix)} was cancelled; watch again`);
        const target = this.src.current();
        while (w.nextRev <= target && !w.cancelled) await this.#pump(w);
        if (w.cancelled) throw ended();
        return w.nextRev - 1;
      },
    };
  }

  pumpAll(): void {
    for (const w of this.#all) void this.#pump(w);
  }

  cancelAll(): void {
    for (const w of this.#all) w.cancelled = true;
    this.#all.clear();
  }

  /** Delivers the watcher's history up to the current revision; joins the delivery in progress if any. */
  #pump(w: WatchState): Promise<void> {
    if (w.cancelled) return Promise.resolve();
    w.running ??= this.#deliver(w).finally(() => { w.running = undefined; });
    return w.running;
  }

  async #deliver(w: WatchState): Promise<void> {
    try {
      for (;;) {
        if (w.cancelled || this.src.closed()) return;
        const { events, caughtUp } = this.src.read(() => this.#readWindow(w));
        if (events.length > 0) {
          try {
            await w.handler(events);
          } catch (err) {
            throw new WatchHandlerError(w.prefix, err);
          }
        } else if (caughtUp) {
          return;
        }
      }
    } catch (err) {
      if (w.cancelled || this.src.closed()) return;
      w.cancelled = true;
      this.#all.delete(w);
      const error = this.src.translate(err);
      w.failure = error;
      if (w.onError) w.onError(error);
      else process.emitWarning(error);
    }
  }

  /** The watcher's next window of history; advances its nextRev past it. */
  #readWindow(w: WatchState): { events: WatchEvent[]; caughtUp: boolean } {
    const [current, compacted] = this.src.revisions();
    if (w.nextRev < compacted) throw new CompactedError(w.nextRev, compacted);
    if (w.nextRev > current) return { events: [], caughtUp: true };
    const last = Math.min(current, w.nextRev + WATCH_WINDOW - 1);
    const rows = this.src.events(w.nextRev, last, w.lower, w.upper);
    w.nextRev = last + 1;
    return { events: rows.map(toEvent), caughtUp: last === current };
  }
}
