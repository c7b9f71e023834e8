// What an etcd or gRPC failure means for a caller of the Store, as one of our StoreError classes.
//
// The rule that keeps writes exactly-once: any failure that may have happened after the request left this
// process (a timeout, a dropped connection, "leader changed") is StoreUnavailableError, whose outcome is
// unknown, and nothing retries it. Only a read, which changes nothing, is tried again on another member.
import {
  CompactedError, InvalidArgumentError, LeaseNotFoundError, StoreError, StoreFullError, StoreUnavailableError,
} from './store.ts';

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Failures after which the cluster may answer on another try (or another member). */
export function isTransient(err: unknown): boolean {
  const m = message(err);
  const name = (err as Error | undefined)?.constructor?.name ?? '';
  return /Unavailable|DeadlineExceeded|Cancelled|BrokenCircuit|IsolatedCircuit|ClientRuntime|WatchStreamEnded/.test(name) ||
    /leader changed|no leader|request timed out|timed out|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|No connection established|Connection dropped|connection closed|too many requests|Deadline exceeded|Breaker is open|circuit/i.test(m);
}

/** The StoreError a failed etcd call stands for; `what` names the operation, `endpoints` where it went. */
export function toStoreError(err: unknown, what: string, endpoints: readonly string[], lease?: string): StoreError {
  if (err instanceof StoreError) return err;
  const m = message(err);
  if (/requested lease not found|lease not found/i.test(m) && lease !== undefined) return new LeaseNotFoundError(lease);
  const compacted = /required revision has been compacted/i.exec(m);
  if (compacted) return new CompactedError(0, 0);
  if (/database space exceeded/i.test(m)) return new StoreFullError(`etcd refused ${what}: ${m}`);
  if (/request is too large|message larger than max|too many operations in txn/i.test(m)) {
    return new InvalidArgumentError(`etcd refused ${what} as too large: ${m}`);
  }
  if (/future revision/i.test(m)) return new InvalidArgumentError(`${what}: ${m}`);
  if (isTransient(err)) {
    return new StoreUnavailableError(`etcd did not complete ${what} (${m.split('\n')[0]}); tried ${endpoints.join(', ')}. ` +
      'A write may or may not have been applied: read it back before trying again', err);
  }
  return new StoreError('EETCD', `etcd failed ${what}: ${m}`, { cause: err });
}
