// Which daemon marks a new network `created` (initial -> created, once the store has it). Pure.
//
// Every daemon sees every new network. When all of them marked it, each network cost every daemon but one a
// lost txn and a read, on the same etcd the API's creates wait for: with 5 daemons, 4 wasted writes per batch
// of new networks. So the first live host by name marks at once; any other host marks a network only once it
// has stayed `initial` for MARK_GRACE_MS (the first host may be dead, or cut off, until its lease expires and
// the next host becomes first).
import type { NetworkRecord } from '../networks/network.ts';

export const MARK_GRACE_MS = 3000;

export function marksNetwork(host: string, hosts: ReadonlyMap<string, unknown>, network: Pick<NetworkRecord, 'stateUpdatedAt'>, now: number): boolean {
  let first: string | undefined;
  for (const name of hosts.keys()) if (first === undefined || name < first) first = name;
  // No host record (this daemon's own not written yet, or a store with none): nobody else would mark it either.
  if (first === undefined || first === host) return true;
  return now - network.stateUpdatedAt >= MARK_GRACE_MS;
}
