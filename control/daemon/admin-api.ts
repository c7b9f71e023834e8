// The daemon's local admin API: HTTP on a unix socket, for tests, the demo and benchmarks.
import { performance } from 'node:perf_hooks';
import { unlinkSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Engine } from '../../dataplane/engine.ts';
import { METRICS_CONTENT_TYPE } from '../metrics/daemon-metrics.ts';
import type { LinkManager } from '../../dataplane/link/link-manager.ts';

export interface AdminContext {
  engine: Engine;
  host: string;
  ports: Map<string, number>;
  links?: LinkManager;
  publicKey?: Uint8Array;
  /** Store mode: gateway, DHCP and DNS counters (malformed input is counted here). */
  services?: { stats(): unknown };
  /** GET /metrics: the daemon's Prometheus text (no auth here: the socket is root's). */
  metrics?: { text(): Promise<string> };
}

function sessionView(s: { localIndex: number; remoteIndex: number; initiator: boolean; ageMs: number; sendCounter: bigint } | null) {
  return s && { localIndex: s.localIndex, remoteIndex: s.remoteIndex, initiator: s.initiator, ageMs: s.ageMs, sendCounter: s.sendCounter.toString() };
}

export async function startAdminApi(socketPath: string, ctx: AdminContext): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => ({ ok: true, host: ctx.host }));
  app.get('/engine/counters', async () => ctx.engine.counters());
  app.get('/metrics', async (_req, reply) => {
    if (!ctx.metrics) return reply.code(404).send({ error: 'metrics are not set up on this daemon', status: 404 });
    return reply.type(METRICS_CONTENT_TYPE).send(await ctx.metrics.text());
  });
  app.get('/engine/ports', async () => [...ctx.ports].map(([name, id]) => ({ name, id })));
  app.get('/engine/vnis', async () => ctx.engine.floods());
  app.get<{ Params: { vni: string } }>('/engine/fdb/:vni', async (req, reply) => {
    const vni = Number(req.params.vni);
    if (!Number.isInteger(vni) || vni < 1 || vni > 0xffffff) {
      return reply.code(400).send({ error: `vni must be an integer in 1..16777215, got '${req.params.vni}'`, status: 400 });
    }
    return ctx.engine.fdb(vni);
  });
  // Encrypted links: this host's key, each peer's sessions (never their keys) and counters.
  app.get('/engine/links', async (_req, reply) => {
    if (!ctx.links) return reply.code(404).send({ error: 'encrypted links are disabled (link.enabled is false)', status: 404 });
    return {
      port: ctx.engine.linkPort(),
      publicKey: Buffer.from(ctx.publicKey!).toString('base64'),
      handshakes: ctx.links.counters(),
      global: ctx.engine.counters().links,
      peers: ctx.links.peers().map((p) => ({ ...p, current: sessionView(p.current), previous: sessionView(p.previous), next: sessionView(p.next) })),
    };
  });
  app.get('/services/stats', async (_req, reply) => {
    if (!ctx.services) return reply.code(404).send({ error: 'network services run in store mode only (--store)', status: 404 });
    return ctx.services.stats();
  });
  // Cumulative event-loop time, memory and open descriptors: a benchmark samples it before and after a run,
  // the soak every minute (a leak shows as a slope).
  app.get('/engine/stats', async () => {
    const elu = performance.eventLoopUtilization();
    const m = process.memoryUsage();
    const openFds = readdirSync('/proc/self/fd').length - 1; // the listing's own descriptor is not ours
    return { eluIdleMs: elu.idle, eluActiveMs: elu.active, rssBytes: m.rss, heapUsedBytes: m.heapUsed, heapTotalBytes: m.heapTotal, externalBytes: m.external, openFds };
  });
  mkdirSync(dirname(socketPath), { recursive: true });
  try { unlinkSync(socketPath); } catch { /* not there */ }
  await app.listen({ path: socketPath });
  return app;
}
