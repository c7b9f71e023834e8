// Keeps SQLite's WAL checkpoints off the event loop: the store's connection runs with
// `wal_autocheckpoint = 0`, and a worker thread (wal-checkpointer-worker.mjs), with its own connection to
// the same file, copies the WAL into the database.
//
// Why: with automatic checkpoints, the COMMIT that pushed the WAL past 1,000 pages also copied them into
// the database file and synced it, on the event loop; under API load those commits took 10-50 ms and were
// POST /instances' p99 (bench/README.md, controlplane).
//
// Contracts:
//   1. The worker runs only while the WAL is busy (~9 MB of RSS each time it runs, and the daemon's idle
//      budget is 100 MB). This side reads the WAL index header from the -shm file every pollMs (one 100-byte
//      read, no lock) and starts the worker once thresholdFrames frames wait to be copied. The worker stops
//      itself after idleMs without new frames, truncating the WAL first.
//   2. The -shm descriptor stays open until close(), which the store calls after closing its connection:
//      POSIX locks belong to a process and an inode, so closing any descriptor of the -shm file would drop
//      the locks SQLite holds on it.
//   3. If the worker fails (cannot open, crashes), onFailure is called once and the checkpointer stops:
//      the store turns automatic checkpoints back on, so the WAL cannot grow without bound.
//   4. A WAL only shrinks back to its start (restarts) when a writer begins while every frame has been
//      copied. The worker copies while the writer appends, so under steady writes that moment never came and
//      the WAL grew without bound (227 MB for 20,000 puts in a test). So once the WAL holds restartFrames
//      frames, shouldDrain() says so, and the store holds its next write group until drain() resolves: the
//      worker checkpoints at once, with no writer appending, and the group's BEGIN restarts the WAL. The
//      writes wait a few ms on the worker, the event loop does not.
//   5. The header layout is SQLite's documented wal-index format (sqlite.org/walformat.html): mxFrame, the
//      frames in the WAL, at byte 16 of the first header copy; nBackfill, the frames already copied, at byte
//      96. Native byte order. A torn read only moves the start of the worker by one poll.
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

export interface WalCheckpointerOptions {
  /** Frames (pages) waiting in the WAL that start the worker. Default 1000, SQLite's automatic threshold. */
  thresholdFrames?: number;
  /** How often the -shm header is read while the worker is stopped. Default 100 ms. */
  pollMs?: number;
  /** How often the worker checkpoints while it runs. Default 100 ms. */
  intervalMs?: number;
  /**
   * How long the WAL must be quiet before the worker truncates it and stops. Default 2000 ms: below the
   * host lease's keep-alive period (3.3 s), so an idle daemon's keep-alives do not keep the worker alive.
   */
  idleMs?: number;
  /** WAL length (frames) past which writes wait for a catch-up checkpoint (contract 4). Default 4096 (16 MB of 4 KB pages). */
  restartFrames?: number;
  /** How long the idle TRUNCATE may wait for (and hold off) writers. Default 20 ms. */
  truncateBusyMs?: number;
  /** The worker failed; the checkpointer has stopped (contract 3). */
  onFailure?: (err: Error) => void;
}

export interface WalCheckpointerStats {
  /** Times the worker was started. */
  starts: number;
  /** Checkpoints that copied frames, and the longest of them (on the worker thread). */
  checkpoints: number;
  longestMs: number;
  /** Idle truncations of the WAL. */
  truncations: number;
  /** Catch-up checkpoints the store's writes waited for (contract 4). */
  drains: number;
  running: boolean;
}

const HEADER_BYTES = 100;
const MX_FRAME = 16;
const N_BACKFILL = 96;

export class WalCheckpointer {
  readonly #dbPath: string;
  readonly #o: Required<Omit<WalCheckpointerOptions, 'onFailure'>> & Pick<WalCheckpointerOptions, 'onFailure'>;
  readonly #header = Buffer.alloc(HEADER_BYTES);
  readonly #timer: NodeJS.Timeout;
  #shmFd = -1;
  #worker: Worker | undefined;
  #exited: Promise<void> | undefined;
  #draining: Promise<void> | undefined;
  #closed = false;
  #stats: WalCheckpointerStats = { starts: 0, checkpoints: 0, longestMs: 0, truncations: 0, drains: 0, running: false };

  /** `dbPath`: an SQLite file already open in WAL mode (its -shm file exists). */
  constructor(dbPath: string, options: WalCheckpointerOptions = {}) {
    this.#dbPath = dbPath;
    this.#o = {
      thresholdFrames: options.thresholdFrames ?? 1000,
      restartFrames: options.restartFrames ?? 4096,
      pollMs: options.pollMs ?? 100,
      intervalMs: options.intervalMs ?? 100,
      idleMs: options.idleMs ?? 2000,
      truncateBusyMs: options.truncateBusyMs ?? 20,
      onFailure: options.onFailure,
    };
    this.#timer = setInterval(() => this.#poll(), this.#o.pollMs);
    this.#timer.unref();
  }

  stats(): WalCheckpointerStats {
    return { ...this.#stats, running: this.#worker !== undefined };
  }

  /** Frames in the WAL not yet copied into the database, from the -shm header (contract 5). */
  pendingFrames(): number {
    const { frames, backfilled } = this.#readHeader();
    return Math.max(0, frames - backfilled);
  }

  /** Whether the store should hold its writes for drain() first (contract 4). */
  shouldDrain(): boolean {
    if (this.#closed || this.#draining !== undefined) return false;
    try {
      return this.#readHeader().frames >= this.#o.restartFrames;
    } catch {
      return false; // #poll reports an unreadable header
    }
  }

  /** Resolves after a checkpoint that started now (at once if the worker is not running). Never rejects. */
  drain(): Promise<void> {
    if (this.#draining !== undefined) return this.#draining;
    if (this.#worker === undefined && !this.#closed) this.#start();
    const worker = this.#worker;
    if (worker === undefined) return Promise.resolve();
    this.#stats.drains++;
    this.#draining = new Promise<void>((resolve) => {
      const done = () => {
        worker.unref();
        worker.off('message', onMessage);
        worker.off('exit', done);
        this.#draining = undefined;
        resolve();
      };
      const onMessage = (m: { type: string }) => { if (m.type === 'drained') done(); };
      worker.on('message', onMessage);
      worker.on('exit', done);
      worker.ref(); // writes wait on it: the process must not exit meanwhile
      worker.postMessage('drain');
    });
    return this.#draining;
  }

  #readHeader(): { frames: number; backfilled: number } {
    if (this.#shmFd < 0) {
      if (!existsSync(`${this.#dbPath}-shm`)) return { frames: 0, backfilled: 0 };
      this.#shmFd = openSync(`${this.#dbPath}-shm`, 'r');
    }
    if (readSync(this.#shmFd, this.#header, 0, HEADER_BYTES, 0) < HEADER_BYTES) return { frames: 0, backfilled: 0 };
    const le = endianness() === 'LE';
    return {
      frames: le ? this.#header.readUInt32LE(MX_FRAME) : this.#header.readUInt32BE(MX_FRAME),
      backfilled: le ? this.#header.readUInt32LE(N_BACKFILL) : this.#header.readUInt32BE(N_BACKFILL),
    };
  }

  /** Stops the worker (it closes its connection). Call close() after the store's connection is closed. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#closed = true;
    const worker = this.#worker;
    if (worker === undefined) return;
    worker.ref(); // close() waits on it: the process must not exit meanwhile
    worker.postMessage('stop');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#exited, new Promise<void>((resolve) => { timer = setTimeout(resolve, 2000); })]);
    clearTimeout(timer);
    if (this.#worker !== undefined) await worker.terminate();
  }

  /** Closes the -shm descriptor (contract 2). */
  close(): void {
    if (this.#shmFd >= 0) closeSync(this.#shmFd);
    this.#shmFd = -1;
  }

  #poll(): void {
    if (this.#worker !== undefined || this.#closed) return;
    let pending: number;
    try {
      pending = this.pendingFrames();
    } catch (err) {
      return this.#fail(new Error(`cannot read the WAL index ${this.#dbPath}-shm: ${(err as Error).message}`, { cause: err }));
    }
    if (pending >= this.#o.thresholdFrames) this.#start();
  }

  #start(): void {
    const { intervalMs, idleMs, truncateBusyMs } = this.#o;
    const worker = new Worker(workerFile(), {
      workerData: { path: this.#dbPath, intervalMs, idleMs, truncateBusyMs },
      // Its heap holds a few numbers; small limits keep its share of the daemon's RSS small.
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 },
    });
    this.#worker = worker;
    this.#stats.starts++;
    worker.unref();
    worker.on('message', (m: { type: string; ms?: number; truncated?: boolean }) => {
      if (m.type === 'checkpoint') {
        this.#stats.checkpoints++;
        this.#stats.longestMs = Math.max(this.#stats.longestMs, m.ms ?? 0);
      } else if (m.type === 'idle' && m.truncated) {
        this.#stats.truncations++;
      }
    });
    let failure: Error | undefined;
    worker.on('error', (err) => { failure = err; });
    this.#exited = new Promise((resolve) => {
      worker.on('exit', (code) => {
        this.#worker = undefined;
        resolve();
        if (this.#closed) return;
        if (failure !== undefined || code !== 0) {
          const why = failure?.message ?? `it exited with code ${code}`;
          this.#fail(new Error(`the WAL checkpoint thread of ${this.#dbPath} failed: ${why}`, { cause: failure }));
        }
      });
    });
  }

  #fail(err: Error): void {
    clearInterval(this.#timer);
    this.#closed = true;
    this.#o.onFailure?.(err);
  }
}

/**
 * The worker's entry: next to this file when run from source, or under control/store/ from the bundle in
 * dist/ (bin/bundled.js keeps the bundle one directory below the repository root).
 */
function workerFile(): string {
  const beside = fileURLToPath(new URL('./wal-checkpointer-worker.mjs', import.meta.url));
  if (existsSync(beside)) return beside;
  return fileURLToPath(new URL('../control/store/wal-checkpointer-worker.mjs', import.meta.url));
}
