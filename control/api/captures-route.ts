// Operator routes for debugging the data plane of this host (system namespace only):
//   POST   /captures                start a capture at one or more points of this host's engine
//                                    (scoped to a network, an application connection, or a port)
//   GET    /captures/{id}/records   drain what it copied so far (base64 frames, in order)
//   DELETE /captures/{id}           stop it
//   POST   /replay                  inject frames into a port, rate-limited
//   POST   /links/keys/export       session keys as a keylog, if this host allows it (an event records it)
// A capture nobody polls for 30 s is stopped, so a killed CLI leaves nothing running.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { CaptureSpec, Engine } from '../../dataplane/engine.ts';
import { BadRequest, Conflict, Forbidden, NotFound, quote } from '../errors.ts';
import { SYSTEM_NAMESPACE } from '../networks/network.ts';
import { callerNamespace } from './caller.ts';

export interface CaptureRouteContext {
  engine: Engine;
  host: string;
  /** A network reference (uuid or name, in the caller's namespace) -> its VNI. */
  networkVni(ref: string, namespace: string): Promise<number>;
  /** An application connection id (visible to the caller's namespace) -> its VNI, or null when it has none. */
  connectionVni(id: string, namespace: string): Promise<{ vni: number | null; status: string; reason: string | null }>;
  /** An interface uuid or port name on this host -> the engine port. */
  port(ref: string): { id: number; name: string; vni: number } | undefined;
  allowKeyExport: boolean;
  /** Where the capture sessions' ring drops are counted for /metrics. */
  metrics?: { noteCapture(id: number, dropped: number, ended?: boolean): void };
  /** Records an operator event (key export). */
  event(message: string, extra: Record<string, unknown>): Promise<void>;
}

const IDLE_MS = 30_000;
const POINTS = ['port', 'vni_encap', 'vni_decap', 'wire'] as const;

function requireSystem(req: FastifyRequest): void {
  if (callerNamespace(req) !== SYSTEM_NAMESPACE) {
    throw new Forbidden('captures, replay and key export are for operators: use a system token', { reason: 'namespace' });
  }
}

export function registerCaptureRoutes(app: FastifyInstance, ctx: CaptureRouteContext): void {
  const sessions = new Map<number, { spec: CaptureSpec; lastPoll: number; scope: Record<string, unknown> }>();
  const reaper = setInterval(() => {
    const now = Date.now();
    for (const [id, s] of sessions) {
      if (now - s.lastPoll > IDLE_MS) {
        ctx.engine.captureStop(id);
        sessions.delete(id);
      }
    }
  }, 5000);
  reaper.unref();
  app.addHook('onClose', async () => {
    clearInterval(reaper);
    for (const id of sessions.keys()) ctx.engine.captureStop(id);
  });

  app.post('/captures', {
    schema: {
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          network: { type: 'string', minLength: 1 },
          connection: { type: 'string', minLength: 1 },
          port: { type: 'string', minLength: 1 },
          points: { type: 'array', minItems: 1, items: { type: 'string', enum: [...POINTS] } },
          filter: { type: 'string' },
          snaplen: { type: 'integer', minimum: 14, maximum: 65535 },
          ring: { type: 'integer', minimum: 1, maximum: 1_000_000 },
        },
      },
    },
  }, async (req, reply) => {
    requireSystem(req);
    const body = (req.body ?? {}) as { network?: string; connection?: string; port?: string; points?: CaptureSpec['points']; filter?: string; snaplen?: number; ring?: number };
    const spec: CaptureSpec = { points: body.points ?? ['port', 'vni_encap', 'vni_decap', 'wire'], snaplen: body.snaplen, ring: body.ring, filter: body.filter };
    const scope: Record<string, unknown> = {};
    if (body.port !== undefined) {
      const p = ctx.port(body.port);
      if (!p) throw new NotFound(`port ${quote(body.port)} is not on host ${ctx.host}`, { reason: 'port' });
      spec.port = p.id;
      spec.vni = p.vni;
      Object.assign(scope, { port: p.name, vni: p.vni });
    }
    if (body.network !== undefined) {
      const vni = await ctx.networkVni(body.network, callerNamespace(req));
      if (spec.vni !== undefined && spec.vni !== vni) throw new BadRequest(`port ${quote(body.port)} is not on network ${quote(body.network)}`, { reason: 'port' });
      spec.vni = vni;
      scope.vni = vni;
    }
    if (body.connection !== undefined) {
      if (body.network !== undefined) throw new BadRequest('give connection or network, not both: a connection has its own VNI', { reason: 'connection' });
      const c = await ctx.connectionVni(body.connection, callerNamespace(req));
      if (c.vni === null) {
        throw new Conflict(`connection ${quote(body.connection)} has no VNI to capture (status ${c.status}${c.reason ? `: ${c.reason}` : ''})`, { reason: 'connection' });
      }
      if (spec.vni !== undefined && spec.vni !== c.vni) throw new BadRequest(`port ${quote(body.port)} is not on connection ${quote(body.connection)}`, { reason: 'port' });
      spec.vni = c.vni;
      Object.assign(scope, { vni: c.vni, connection: body.connection });
    }
    let id: number;
    try {
      id = ctx.engine.captureStart(spec);
    } catch (e) {
      if (e instanceof RangeError) throw new BadRequest(e.message, { reason: 'filter' });
      throw e;
    }
    sessions.set(id, { spec, lastPoll: Date.now(), scope });
    return reply.code(201).send({ id, host: ctx.host, points: spec.points, snaplen: spec.snaplen ?? 65535, ring: spec.ring ?? 4096, filter: spec.filter ?? '', ...scope });
  });

  const session = (req: FastifyRequest) => {
    requireSystem(req);
    const id = Number((req.params as { id: string }).id);
    const s = sessions.get(id);
    if (!s) throw new NotFound(`capture ${quote((req.params as { id: string }).id)} not found (stopped, or idle for ${IDLE_MS / 1000} s)`, { reason: 'capture' });
    s.lastPoll = Date.now();
    return id;
  };

  // Binary clients (`Accept: application/octet-stream`, as `appnet capture` sends) get the engine's packed
  // batch untouched (dataplane/capture-records.ts), the totals in headers: no work per record here, whatever
  // the packet rate. JSON clients get one object per record.
  app.get('/captures/:id/records', async (req, reply) => {
    const id = session(req);
    if (/application\/octet-stream/.test(req.headers.accept ?? '')) {
      const b = ctx.engine.captureDrainPacked(id);
      ctx.metrics?.noteCapture(id, b.dropped);
      return reply.type('application/octet-stream').headers({
        'x-appnet-records': String(b.count), 'x-appnet-captured': String(b.captured),
        'x-appnet-dropped': String(b.dropped), 'x-appnet-filtered': String(b.filtered),
      }).send(b.records);
    }
    const b = ctx.engine.captureDrain(id);
    ctx.metrics?.noteCapture(id, b.dropped);
    return {
      captured: b.captured,
      dropped: b.dropped,
      filtered: b.filtered,
      records: b.records.map((r) => ({
        ts_ns: r.tsNs.toString(), point: r.point, dir: r.dir, port: r.port, vni: r.vni, orig_len: r.origLen, data: r.data.toString('base64'),
      })),
    };
  });

  app.delete('/captures/:id', async (req) => {
    const id = session(req);
    const b = ctx.engine.captureDrainPacked(id);
    ctx.engine.captureStop(id);
    ctx.metrics?.noteCapture(id, b.dropped, true);
    sessions.delete(id);
    return { id, captured: b.captured, dropped: b.dropped, filtered: b.filtered, unread: b.count };
  });

  app.post('/replay', {
    schema: {
      body: {
        type: 'object',
        required: ['port', 'frames'],
        additionalProperties: false,
        properties: {
          port: { type: 'string', minLength: 1 },
          frames: { type: 'array', minItems: 1, maxItems: 100_000, items: { type: 'string' } },
          rate: { type: 'number', exclusiveMinimum: 0, maximum: 100_000, description: 'frames per second' },
          direction: { type: 'string', enum: ['from-instance', 'to-instance'] },
        },
      },
    },
  }, async (req) => {
    requireSystem(req);
    const body = req.body as { port: string; frames: string[]; rate?: number; direction?: 'from-instance' | 'to-instance' };
    const p = ctx.port(body.port);
    if (!p) throw new NotFound(`port ${quote(body.port)} is not on host ${ctx.host}`, { reason: 'port' });
    const frames = body.frames.map((f, i) => {
      const b = Buffer.from(f, 'base64');
      if (b.length < 14) throw new BadRequest(`frames[${i}] is ${b.length} bytes: not an Ethernet frame`, { reason: 'frames' });
      return b;
    });
    const rate = body.rate ?? 100;
    const gapMs = 1000 / rate;
    const start = Date.now();
    let sent = 0;
    for (const [i, f] of frames.entries()) {
      // Paced against the start time, so timer slack does not add up over a long replay.
      const due = start + i * gapMs - Date.now();
      if (due > 1) await new Promise((r) => setTimeout(r, due));
      try {
        if (body.direction === 'to-instance') ctx.engine.injectToPort(p.id, f);
        else ctx.engine.injectFromPort(p.id, f);
        sent++;
      } catch (e) {
        throw new BadRequest(`frames[${i}]: ${(e as Error).message}`, { reason: 'frames' });
      }
    }
    return { port: p.name, sent, seconds: (Date.now() - start) / 1000 };
  });

  app.post('/links/keys/export', async (req) => {
    requireSystem(req);
    if (!ctx.allowKeyExport) {
      throw new Forbidden(`key export is off on host ${ctx.host}; an operator enables it with link.allowKeyExport in appnetd's config`, { reason: 'key-export' });
    }
    const lines = [`# appnet link session keys of host ${ctx.host}, exported ${new Date().toISOString()}`,
      '# APPNET_LINK_KEY <receiver index> <key>: data messages to that index were sealed with that key'];
    let sessions = 0;
    for (const p of ctx.engine.linkPeers(true)) {
      for (const s of [p.current, p.previous, p.next]) {
        if (!s?.sendKey || !s.recvKey) continue;
        sessions++;
        lines.push(`# peer ${p.vtep} session ${s.localIndex.toString(16).padStart(8, '0')} (${s.initiator ? 'initiator' : 'responder'})`);
        lines.push(`APPNET_LINK_KEY ${s.localIndex.toString(16).padStart(8, '0')} ${s.recvKey.toString('hex')}`);
        lines.push(`APPNET_LINK_KEY ${s.remoteIndex.toString(16).padStart(8, '0')} ${s.sendKey.toString('hex')}`);
      }
    }
    await ctx.event('link session keys exported', { sessions, by: callerNamespace(req) });
    return { host: ctx.host, sessions, keylog: lines.join('\n') + '\n' };
  });
}
