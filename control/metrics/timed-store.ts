// A Store that observes how long each of its calls took into a histogram, by operation: the store latency
// this daemon actually waits for (appnet_store_operation_seconds). Everything else passes through untouched;
// watch() is timed until it is established, not for its life.
import type { Histogram } from 'prom-client';
import type { Store } from '../store/store.ts';

const TIMED = new Set(['get', 'range', 'put', 'delete', 'deletePrefix', 'txn', 'revision', 'watch', 'grantLease', 'keepAlive', 'revokeLease', 'compact']);

export function timedStore(store: Store, histogram: Histogram<'op'>): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (typeof prop !== 'string' || !TIMED.has(prop)) return (value as (...a: unknown[]) => unknown).bind(target);
      return (...args: unknown[]) => {
        const end = histogram.startTimer({ op: prop });
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (result instanceof Promise) return result.finally(() => end());
        end();
        return result;
      };
    },
  });
}
