// Change marks: how EtcdStore proves cheaply that nothing under a watched prefix changed since a revision.
//
// Why: a watch's progress check (etcd-watch.ts) must tell "nothing changed under the prefix up to revision R"
// from "events are still on their way". etcd 3.4 can only answer that for a prefix by reading every value
// under it (a range with min_mod_revision filters after reading): on 10,000 interfaces that is ~50-90 ms of
// the leader's time, paid on every check after any write anywhere. So every write through EtcdStore also
// puts, in the same txn (same revision), an empty mark key per directory it touched; the check then reads
// the directory's one mark and compares its mod revision.
//
// Contracts:
//   1. A key's directory is its prefix up to and including its third '/': `/appnet/interfaces/<uuid>` is in
//      `/appnet/interfaces/`. Keys with fewer than three '/' have no directory and no mark.
//   2. Every put or delete of a key with a directory puts that directory's mark in the same txn. A delete of a
//      prefix puts the mark of the prefix's directory, or the global mark when the prefix has none (it may
//      span many directories). So: no mark moved since revision n => nothing written through the store
//      under the directory since n.
//   3. Only a watch whose prefix is exactly a directory is checked by its mark (a deeper prefix would see
//      its siblings' writes as its own). What marks cannot see, deletions by an expiring lease, the check's
//      key count still sees; anything else falls back to reading the prefix.
//   4. Marks live under MARK_PREFIX, a key range of their own that EtcdStore hides from ranges, txn
//      results and watch events. Writes made around EtcdStore (etcdctl) move no mark: run them with the
//      daemons stopped, or expect views to see them late (docs/deploy.md).
import type { TxnOp } from './store.ts';

export const MARK_PREFIX = '\0appnet-mark\0';
/** The first key after every mark. */
export const MARK_END = '\0appnet-mark\x01';
/** Moved by a delete of a prefix that spans directories: every mark-checked watch then reads its prefix. */
export const GLOBAL_MARK = MARK_PREFIX;

export function isMark(key: string): boolean {
  return key.startsWith(MARK_PREFIX);
}

/** The key's (or prefix's) directory, contract 1: undefined with fewer than three '/'. */
export function directoryOf(key: string): string | undefined {
  let at = -1;
  for (let n = 0; n < 3; n++) {
    at = key.indexOf('/', at + 1);
    if (at < 0) return undefined;
  }
  return key.slice(0, at + 1);
}

export function markOf(directory: string): string {
  return MARK_PREFIX + directory;
}

/** The mark a watch of `prefix` is checked by (contract 3), or undefined when it has none. */
export function watchMark(prefix: string): string | undefined {
  return directoryOf(prefix) === prefix ? markOf(prefix) : undefined;
}

/** The marks a branch of writes moves (contract 2), each once, in first-seen order. */
export function marksFor(ops: readonly TxnOp[]): string[] {
  const marks = new Set<string>();
  for (const op of ops) {
    if (op.type === 'get' || isMark(op.key)) continue;
    const dir = directoryOf(op.key);
    if (dir !== undefined) marks.add(markOf(dir));
    else if (op.type === 'delete' && op.prefix) marks.add(GLOBAL_MARK);
  }
  return [...marks];
}
