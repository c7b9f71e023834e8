// REST routes of application connections (repo/connections.ts does the work):
//
//   GET    /connections                   the caller's connections, oldest first
//   POST   /connections                   add {source_instance_id, outbound_name, target_instance_id,
//                                         inbound_name}: 202 with the record (WAITING, or ERROR + reason)
//   DELETE /connections                   remove, named by the same four fields (+ force): 202, TERMINATED
//   GET    /connections/{id}              one connection
//   DELETE /connections/{id}?force=true   remove by id: 202, TERMINATED
//   GET    /connections/{id}/events       its status changes, oldest first
//   GET    /inbounds/available            every inbound of the caller's instances
//   GET    /outbounds/available           outbounds no connection holds
//   GET    /instances/{ref}/env           APPNET_OUTBOUND_* of an instance and what they resolve to
//
// The body schemas type the fields but do not require them, so a missing field gets the
// reference's "<field> cannot be empty" from validate.ts, the same text the CLI shows.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest, quote } from '../errors.ts';
import type { ConnectionRepository } from '../repo/connections.ts';
import { callerNamespace } from './caller.ts';

const str = { type: 'string' } as const;
const forceQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { force: { type: 'string', enum: ['', 'true', 'false', '1', '0'] } },
} as const;
const idParam = { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1 } } } as const;
const tupleBody = (withForce: boolean) => ({
  type: 'object',
  additionalProperties: false,
  properties: {
    source_instance_id: str,
    outbound_name: str,
    target_instance_id: str,
    inbound_name: str,
    ...(withForce ? { force: { type: 'boolean', description: 'confirm removing a connection whose outbound is required' } } : {}),
  },
});

/** `?force`, `?force=true`, `?force=1` → true; absent, `false`, `0` → false. */
function queryFlag(req: FastifyRequest, name: string): boolean {
  const value = (req.query as Record<string, string | undefined>)[name];
  return value === '' || value === 'true' || value === '1';
}

export function registerConnectionRoutes(app: FastifyInstance, connections: ConnectionRepository): void {
  app.addHook('onReady', async () => connections.init());

  app.get('/connections', { schema: { querystring: { type: 'object', additionalProperties: false, properties: {} } } }, async (req) =>
    connections.list(callerNamespace(req)),
  );

  app.post('/connections', { schema: { body: tupleBody(false) } }, async (req, reply) => {
    reply.code(202);
    return connections.add(req.body ?? {}, callerNamespace(req));
  });

  app.delete('/connections', { schema: { body: tupleBody(true), querystring: forceQuery } }, async (req, reply) => {
    const body = { ...((req.body ?? {}) as Record<string, unknown>) };
    const force = body.force === true || queryFlag(req, 'force');
    delete body.force;
    const record = await connections.find(body, callerNamespace(req));
    const after = await connections.remove(record, force);
    reply.code(202);
    return after;
  });

  app.get('/connections/:id', { schema: { params: idParam } }, async (req) =>
    connections.get((req.params as { id: string }).id, callerNamespace(req)),
  );

  app.delete('/connections/:id', { schema: { params: idParam, querystring: forceQuery } }, async (req, reply) => {
    const record = await connections.get((req.params as { id: string }).id, callerNamespace(req));
    const body = req.body as Record<string, unknown> | undefined | null;
    if (body !== undefined && body !== null && (typeof body !== 'object' || Object.keys(body).some((k) => k !== 'force'))) {
      throw new BadRequest(`DELETE /connections/{id} takes only force (in the query string or the body), got ${quote(body)}`, { reason: 'body' });
    }
    const after = await connections.remove(record, body?.force === true || queryFlag(req, 'force'));
    reply.code(202);
    return after;
  });

  app.get('/connections/:id/events', { schema: { params: idParam } }, async (req) =>
    connections.events((req.params as { id: string }).id, callerNamespace(req)),
  );

  app.get('/inbounds/available', async (req) => connections.availableInbounds(callerNamespace(req)));
  app.get('/outbounds/available', async (req) => connections.availableOutbounds(callerNamespace(req)));

  app.get('/instances/:ref/env', { schema: { params: { type: 'object', required: ['ref'], properties: { ref: { type: 'string', minLength: 1 } } } } }, async (req) =>
    connections.env((req.params as { ref: string }).ref, callerNamespace(req)),
  );
}
