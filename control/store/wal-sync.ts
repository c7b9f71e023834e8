// Makes commits durable off the event loop: fdatasync of the SQLite WAL file on libuv's thread pool.
//
// SqliteStore commits with `synchronous = NORMAL`, which appends the transaction's frames to the WAL
// without syncing them, then asks here for a sync before it settles the writes' promises. A promise
// therefore resolves only once its frames are on disk, as with `synchronous = FULL`; only the wait has
// moved from the event loop (where FULL's fsync blocked every request for its ~4 ms) to a pool thread.
//
// Contracts:
//   1. A sync() promise resolves after an fdatasync that STARTED after the call: one already running
//      may have missed frames written just before the call.
//   2. Calls that arrive while a sync runs share the next one (group sync); syncs run one at a time and
//      settle in call order, so writes are acknowledged in commit order.
//   3. fsync works per file (inode), so a read-only descriptor of our own syncs the frames SQLite wrote
//      through its descriptor. The WAL is never locked (SQLite's locks live in the -shm and main files),
//      so opening and closing a descriptor of it cannot drop SQLite's POSIX locks.
import { closeSync, fdatasync, openSync } from 'node:fs';

export class WalSync {
  readonly #path: string;
  #fd: number;
  #running: Promise<void> | undefined;
  #waiting: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];

  /** `walPath` must exist: SQLite creates it when the database is opened in WAL mode. */
  constructor(walPath: string) {
    this.#path = walPath;
    this.#fd = openSync(walPath, 'r');
  }

  /** Resolves once everything written to the WAL before this call is on disk (contract 1). */
  sync(): Promise<void> {
    if (this.#fd < 0) return Promise.reject(new Error(`${this.#path} is closed`));
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      if (this.#running === undefined) this.#start();
    });
  }

  /** Waits for the syncs asked for, then closes the descriptor. */
  async close(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }

  #start(): void {
    const group = this.#waiting;
    this.#waiting = [];
    this.#running = new Promise<void>((done) => {
      fdatasync(this.#fd, (err) => {
        for (const w of group) {
          if (err) w.reject(new Error(`fdatasync of ${this.#path} failed: ${err.message}`, { cause: err }));
          else w.resolve();
        }
        this.#running = undefined;
        if (this.#waiting.length > 0) this.#start();
        done();
      });
    });
  }
}
