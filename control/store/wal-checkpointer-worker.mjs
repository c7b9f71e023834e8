// The thread that copies the store's WAL into its database file (started by wal-checkpointer.ts).
//
// Plain JavaScript, loaded by path: the daemon runs from an esbuild bundle, and a worker's entry must be a
// file Node can load by itself (see wal-checkpointer.ts for how it is found).
//
// It owns its own better-sqlite3 connection to the same file. PASSIVE checkpoints take no lock that the
// writing connection waits for: they copy the frames no reader still needs, and the writer keeps appending
// meanwhile. Once no frame has been added for idleMs, it truncates the WAL (TRUNCATE waits for writers, so
// only when idle, and with a short busy timeout: a writer that arrives meanwhile waits at most that long)
// and exits, giving its ~9 MB back; the main thread starts it again when the WAL grows past its threshold.
//
// Messages to the parent: { type: 'checkpoint', log, checkpointed, ms } after a checkpoint that copied
// frames, { type: 'drained', ... } after one asked for with 'drain' (checkpoint now: the store holds its
// writes meanwhile), { type: 'idle', truncated } before exiting. From the parent: 'drain', and 'stop'
// (close and exit now).
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3');

const { path, intervalMs, idleMs, truncateBusyMs } = workerData;
const db = new Database(path, { timeout: 0 });
// Checkpoints copy frames from the WAL file to the database file without the page cache: keep it small.
db.pragma('cache_size = -256');
let lastLog = -1;
let lastCheckpointed = -1;
let activeAt = Date.now();
let timer;
let finished = false;

function checkpoint(mode) {
  const started = performance.now();
  const [r] = db.pragma(`wal_checkpoint(${mode})`);
  return { busy: r.busy, log: r.log, checkpointed: r.checkpointed, ms: performance.now() - started };
}

function finish(reason) {
  clearTimeout(timer);
  finished = true;
  let truncated = false;
  if (reason === 'idle') {
    try {
      db.pragma(`busy_timeout = ${truncateBusyMs}`);
      truncated = checkpoint('TRUNCATE').busy === 0;
    } catch {
      // Busy or locked by another process: the next idle period tries again.
    }
  }
  db.close();
  parentPort.postMessage({ type: 'idle', truncated });
  parentPort.close();
}

function step(drain = false) {
  clearTimeout(timer);
  const r = checkpoint('PASSIVE');
  if (drain) parentPort.postMessage({ type: 'drained', ...r });
  // A new frame count (also a smaller one: the writer restarted the WAL) means writes since the last look.
  if (r.log !== lastLog || r.checkpointed !== lastCheckpointed) {
    if (r.checkpointed !== lastCheckpointed && r.checkpointed > 0) parentPort.postMessage({ type: 'checkpoint', ...r });
    lastLog = r.log;
    lastCheckpointed = r.checkpointed;
    activeAt = Date.now();
  } else if (Date.now() - activeAt >= idleMs) {
    return finish('idle');
  }
  timer = setTimeout(step, intervalMs);
}

parentPort.on('message', (m) => {
  if (finished) return; // a drain that crossed our exit: the parent resolves it on 'exit'
  if (m === 'stop') finish('stop');
  else if (m === 'drain') step(true);
});
step();
