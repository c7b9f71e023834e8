// GET /hosts: the live hosts (their appnetd holds a lease in the store).
import type { FastifyInstance } from 'fastify';
import type { HostRegistry } from '../repo/hosts.ts';

export function registerHostRoutes(app: FastifyInstance, hosts: HostRegistry): void {
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
