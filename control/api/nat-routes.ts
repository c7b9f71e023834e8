// Floating and routed addresses (docs/nat.md), as the reference shapes them:
//
//   POST /interfaces/{uuid}/float      200 null: a floating-pool address typed `floating`, held by the interface
//   POST /interfaces/{uuid}/defloat    200 null: the rule goes with the next pass, the address to the pool
//   POST /networks/{ref}/route         200 "a.b.c.d": typed `routed`, held by the network
//   DELETE /networks/{ref}/route/{address}  200 null; 404 `address not routed`; 403 routed by another network
//   GET /nat                           system only: the network node's plan, NAT counters, rules, flow count
//
// The store is the only thing written here: every daemon's NatService follows the records (and the
// floating pool) and the network node installs the rules.
import type { FastifyInstance } from 'fastify';
import { Forbidden, NotFound, quote } from '../errors.ts';
import { allocate, getReservation, release, type IpamState } from '../ipam/ipam.ts';
import type { InterfaceRecord } from '../instances/interface.ts';
import { requireReady } from '../networks/state-machine.ts';
import { InterfaceRepository } from '../repo/interfaces.ts';
import { withFloatingPool } from '../repo/floating-pool.ts';
import type { NetworkRepository } from '../repo/networks.ts';
import type { Store } from '../store/store.ts';
import { callerNamespace } from './caller.ts';
import { SYSTEM_NAMESPACE } from '../networks/network.ts';
import { INTERFACES_PREFIX } from '../repo/keys.ts';


export interface NatRoutesOptions {
  store: Store;
  networks: NetworkRepository;
  /** GET /nat: this daemon's NAT state. */
  natStats?: () => unknown;
  now?: () => number;
}


export function registerNatRoutes(app: FastifyInstance, o: NatRoutesOptions): void {
  const now = o.now ?? Date.now;
  const interfaces = new InterfaceRepository(o.store);

  app.post<{ Params: { uuid: string } }>('/interfaces/:uuid/float', async (req) => {
    const { uuid } = req.params;
    await interfaces.get(uuid, callerNamespace(req));
    const key = INTERFACES_PREFIX + uuid;
    await withFloatingPool(o.store, key, (pool, value) => {
      if (value === undefined) throw new NotFound(`interface not found: ${quote(uuid)}`, { reason: 'not-found' });
      const iface = JSON.parse(value) as InterfaceRecord;
      if (iface.floating !== null) return { result: null };  // already floated: idempotent, like the reference
      const a = allocate(pool, { type: 'floating', holder: { kind: 'interface', id: uuid }, now: now(), comment: `float of ${iface.ipv4 ?? 'no address'}` });
      return { pool: a.state, ops: [{ type: 'put', key, value: JSON.stringify({ ...iface, floating: a.address }) }], result: null };
    });
    return null;
  });

  app.post<{ Params: { uuid: string } }>('/interfaces/:uuid/defloat', async (req) => {
    const { uuid } = req.params;
    await interfaces.get(uuid, callerNamespace(req));
    const key = INTERFACES_PREFIX + uuid;
    await withFloatingPool(o.store, key, (pool, value) => {
      if (value === undefined) throw new NotFound(`interface not found: ${quote(uuid)}`, { reason: 'not-found' });
      const iface = JSON.parse(value) as InterfaceRecord;
      if (iface.floating === null) return { result: null };
      return {
        pool: release(pool, iface.floating, now()),
        ops: [{ type: 'put', key, value: JSON.stringify({ ...iface, floating: null }) }],
        result: null,
      };
    });
    return null;
  });

  app.post<{ Params: { ref: string } }>('/networks/:ref/route', async (req, reply) => {
    const net = await o.networks.resolve(req.params.ref, callerNamespace(req));
    requireReady(net);
    const address = await withFloatingPool(o.store, null, (pool) => {
      const a = allocate(pool, { type: 'routed', holder: { kind: 'network', id: net.uuid }, now: now(), comment: `routed to ${net.name}` });
      return { pool: a.state, ops: [], result: a.address };
    });
    // A JSON string, as the reference answers (fastify would send a bare string as text).
    return reply.type('application/json').send(JSON.stringify(address));
  });

  app.delete<{ Params: { ref: string; address: string } }>('/networks/:ref/route/:address', async (req) => {
    const net = await o.networks.resolve(req.params.ref, callerNamespace(req));
    requireReady(net);
    const { address } = req.params;
    await withFloatingPool(o.store, null, (pool) => {
      let r;
      try {
        r = getReservation(pool, address, now());
      } catch {
        r = null;  // not an address of the pool at all: not routed either
      }
      if (r === null || r.type !== 'routed') throw new NotFound('address not routed', { reason: 'not-routed' });
      if (r.holder?.kind !== 'network' || r.holder.id !== net.uuid) throw new Forbidden('address not routed by this network', { reason: 'other-network' });
      return { pool: release(pool, address, now()), ops: [], result: null };
    });
    return null;
  });

  app.get('/nat', async (req) => {
    if (callerNamespace(req) !== SYSTEM_NAMESPACE) throw new Forbidden('only the system namespace may read NAT state', { reason: 'not-system' });
    return o.natStats?.() ?? null;
  });
}

/** Routed addresses in the floating pool, by the network that holds them. */
export function routedByNetwork(pool: IpamState): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [address, r] of Object.entries(pool.reservations)) {
    if (r.type !== 'routed' || r.holder?.kind !== 'network') continue;
    const list = out.get(r.holder.id) ?? [];
    list.push(address);
    out.set(r.holder.id, list);
  }
  return out;
}
