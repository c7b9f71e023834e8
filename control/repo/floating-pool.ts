// Writes that change the floating pool's address management (control/ipam) together with one other record:
// a network's floating gateway, an interface's floating address, a routed address. One compare-and-swap
// transaction over both keys, retried on a lost race, so an address is never held twice nor lost.
import { Conflict, NotFound } from '../errors.ts';
import type { IpamState } from '../ipam/ipam.ts';
import { FLOATING_NETWORK_UUID } from '../networks/network.ts';
import type { Store, TxnOp } from '../store/store.ts';
import { IPAM_PREFIX } from './keys.ts';
// networks.ts imports this module too: IPAM_PREFIX is read when a write runs, never while modules load.

const TRIES = 8;

export type PoolChange<T> = { pool: IpamState; ops: TxnOp[]; result: T } | { result: T };

/**
 * `change` gets the pool and the other record's value (undefined when absent) and returns the new pool with
 * the ops for the other record, or just a result for "nothing to write". Throws 409 when every try lost a race.
 */
export async function withFloatingPool<T>(
  store: Store,
  extraKey: string | null,
  change: (pool: IpamState, extra: string | undefined) => PoolChange<T> | Promise<PoolChange<T>>,
): Promise<T> {
  const poolKey = IPAM_PREFIX + FLOATING_NETWORK_UUID;
  for (let i = 0; i < TRIES; i++) {
    const [poolKv, extraKv] = await Promise.all([store.get(poolKey), extraKey ? store.get(extraKey) : undefined]);
    if (poolKv === undefined) throw new NotFound('the floating pool has no address management state', { reason: 'no-ipam' });
    const out = await change(JSON.parse(poolKv.value) as IpamState, extraKv?.value);
    if (!('pool' in out)) return out.result;
    const compare = [{ key: poolKey, target: 'modRevision' as const, op: '==' as const, value: poolKv.modRevision }];
    if (extraKey) compare.push({ key: extraKey, target: 'modRevision', op: '==', value: extraKv?.modRevision ?? 0 });
    const r = await store.txn({ compare, success: [{ type: 'put', key: poolKey, value: JSON.stringify(out.pool) }, ...out.ops] });
    if (r.succeeded) return out.result;
  }
  throw new Conflict('the floating pool is being changed concurrently; retry the request', { reason: 'cas' });
}
