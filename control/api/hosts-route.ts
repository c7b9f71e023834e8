// GET /hosts: the live hosts (their appnetd holds a lease in the store).
import type { FastifyInstance } from 'fastify';
import type { HostRegistry } from '../repo/hosts.ts';
import type { Store } from '../store/store.ts';
import { HOST_EVENTS_PREFIX } from '../repo/keys.ts';

export function registerHostRoutes(app: FastifyInstance, hosts: HostRegistry, store?: Store): void {
  // Operator events of a host, newest first (e.g. "link session keys exported").
  app.get<{ Params: { name: string } }>('/hosts/:name/events', async (req) => {
    if (!store) return [];
    const { kvs } = await store.range(`${HOST_EVENTS_PREFIX}${req.params.name}/`);
    return kvs.map((kv) => JSON.parse(kv.value)).reverse();
  });
  app.get('/hosts', {
    schema: {
      response: {
        200: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              underlay_address: { type: 'string' },
              public_key: { type: 'string' },
              api: { type: 'string' },
              certificate: { type: 'string', description: 'PEM of the API certificate (then its CA) that other hosts pin' },
              machine: { type: 'string' },
              pid: { type: 'integer' },
              started_at: { type: 'string' },
            },
          },
        },
      },
    },
  }, async () => hosts.list());
}
