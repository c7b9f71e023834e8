// The daemon's local admin API: HTTP on a unix socket, for tests, the demo and benchmarks.
import { performance } from 'node:perf_hooks';
import { unlinkSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Engine } from '../../dataplane/engine.ts';

export interface AdminContext {
  engine: Engine;
  host: string;
  ports: Map<string, number>;
}

export async function startAdminApi(socketPath: string, ctx: AdminContext): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => ({ ok: true, host: ctx.host }));
  app.get('/engine/counters', async () => ctx.engine.counters());
  app.get('/engine/ports', async () => [...ctx.ports].map(([name, id]) => ({ name, id })));
  app.get<{ Params: { vni: string } }>('/engine/fdb/:vni', async (req, reply) => {
    const vni = Number(req.params.vni);
    if (!Number.isInteger(vni) || vni < 1 || vni > 0xffffff) {
      return reply.code(400).send({ error: `vni must be an integer in 1..16777215, got '${req.params.vni}'`, status: 400 });
    }
    return ctx.engine.fdb(vni);
  });
  // Cumulative event-loop time and memory: a benchmark samples it before and after a run.
  app.get('/engine/stats', async () => {
    const elu = performance.eventLoopUtilization();
    return { eluIdleMs: elu.idle, eluActiveMs: elu.active, rssBytes: process.memoryUsage().rss };
  });
  mkdirSync(dirname(socketPath), { recursive: true });
  try { unlinkSync(socketPath); } catch { /* not there */ }
  await app.listen({ path: socketPath });
  return app;
}
