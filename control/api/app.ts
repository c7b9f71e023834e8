// The REST API of networks, Shaken Fist's `/networks` routes over the store-backed repository.
//
//   buildApi({store, tokens, floatingPool}) → a fastify instance (not listening)
//
// Auth: `Authorization: Bearer <token>`: a static token of the config, or a JWT from POST /auth
// (auth-routes.ts); either names the caller's namespace, `system` is the admin namespace. No, unknown,
// expired or forged token: 401. Another namespace's network is 404, as if absent.
// Errors: every failure, including schema validation, renders as `{error, status}`; validation
// messages name the offending field. `GET /openapi.json` (no auth) documents every route the app
// serves (collected as they register) from the same schemas the validator uses (schemas.ts).
//
// Instances and interfaces (INSTANCE_ROUTES): POST/GET /instances, GET/DELETE /instances/{ref},
// GET /instances/{ref}/interfaces, GET /networks/{ref}/interfaces, GET /interfaces/{uuid} and its
// metadata. Without an `interfaceCount` option, network deletion counts the real interfaces (the
// network's attachments key, compared in the delete's transaction).
//
// Parameters: GET routes take them in the query string or, as the reference's client sends them, in
// a JSON body (sf-compat.ts); POST, PUT and DELETE take a JSON body, as the reference does.

import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ApiError, BadRequest, Forbidden, NotFound, Unauthenticated, errorBody, isApiError, quote } from '../errors.ts';
import type { Histogram } from 'prom-client';
import { METRICS_CONTENT_TYPE } from '../metrics/daemon-metrics.ts';
import type { Cidr } from '../net/ipv4-cidr.ts';
import { SYSTEM_NAMESPACE, externalView } from '../networks/network.ts';
import { instanceView, checkInterfaceVisible } from '../instances/instance.ts';
import { interfaceView } from '../instances/interface.ts';
import { ConnectionRepository } from '../repo/connections.ts';
import { validateDeployConnections } from '../connections/deploy.ts';
import { InstanceRepository } from '../repo/instances.ts';
import { NetworkRepository } from '../repo/networks.ts';
import { StateView } from '../repo/state-view.ts';
import type { Store } from '../store/store.ts';
import { ApiAuth, registerAuthRoutes } from './auth-routes.ts';
import { registerConnectionRoutes } from './connections-route.ts';
import { registerShakenFistCompat } from './sf-compat.ts';
import type { RateLimitOptions } from '../auth/rate-limit.ts';
import { ListCache } from './list-cache.ts';
import { UI_PREFIX, registerUiRoutes } from './ui-route.ts';
import { ALL_ROUTES, type RouteDoc, openApiDocument, routeDocOf } from './schemas.ts';
import { callerNamespace, setCallerNamespace } from './caller.ts';

export interface BuildApiOptions {
  store: Store;
  /** Bearer token → namespace. */
  tokens: Map<string, string>;
  floatingPool: Cidr | string;
  /** Link addresses of application connections (default connections/link-pool.ts DEFAULT_LINK_POOL). */
  linkPool?: Cidr | string;
  /** Replaces the count of a network's live interfaces (tests of delete-wait without instances). */
  interfaceCount?: (networkUuid: string) => number | Promise<number>;
  now?: () => number;
  /** Passed to fastify; default false. */
  logger?: boolean;
  /**
   * The records in memory that list routes are served from (after a sync, so never stale). appnetd
   * shares its reconciler's; without one the API keeps its own, started on ready and stopped on close.
   */
  view?: StateView;
  /** Lifetime of the JWTs POST /auth issues (default 15 min) and signing-key rotation (default 1 h). */
  tokenSeconds?: number;
  rotateSeconds?: number;
  /**
   * Serve TLS with this certificate and key (appnetd does on any non-loopback address). Clients may
   * present a certificate: other hosts do, and forwarded requests are accepted only from a host whose
   * record pins it (peer-client.ts); a client without one is served as usual.
   */
  https?: { cert: string; key: string };
  /** Failed POST /auth attempts allowed per source (control/auth/rate-limit.ts). */
  authRateLimit?: RateLimitOptions;
  /**
   * GET /metrics (Prometheus text), for the system namespace or `token` (which opens nothing else); every
   * request's duration is observed into `requests` by method, route pattern and status.
   */
  metrics?: { text(): Promise<string>; requests: Histogram<'method' | 'route' | 'status'>; token?: string };
}

type Handler = (ctx: {
  req: FastifyRequest;
  reply: FastifyReply;
  namespace: string;
  repo: NetworkRepository;
  instances: InstanceRepository;
}) => Promise<unknown>;
type Params = { ref: string; key: string; uuid: string };
type Body = Record<string, unknown>;

const OPENAPI_URL = '/openapi.json';
const METRICS_URL = '/metrics';
/** The caller of a request authenticated by the metrics token (not a namespace: nothing else accepts it). */
const METRICS_CALLER = '#metrics';
/** Routes served without a token: the document, the capabilities page, and the login itself. */
const PUBLIC = new Set([`GET ${OPENAPI_URL}`, 'GET /', 'POST /auth', 'GET /ui', `GET ${UI_PREFIX}*`]);

function truthy(value: unknown): boolean {
  return value === true || value === '' || value === 'true' || value === '1';
}

function eventLimit(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const limit = Number(text);
  if (!/^[0-9]+$/.test(text) || limit < 1 || limit > 10_000) {
    throw new BadRequest(`limit must be an integer 1..10000, got ${quote(text)}`, { reason: 'limit' });
  }
  return limit;
}

function handlers(namespaces: () => ReadonlySet<string>, lists: Lists): Record<string, Handler> {
  return {
    'POST /networks': async ({ req, namespace, repo }) =>
      externalView(await repo.create(req.body, namespace, namespaces())),

    // From the list cache too: ?all is 1,000 networks for a system caller, the same bytes until the view changes.
    'GET /networks': async ({ req, reply, namespace, repo }) => {
      const all = truthy((req.query as Body).all);
      await lists.view.sync();
      const body = await lists.cache.json(`networks ${namespace} ${all}`, async () => (await repo.list(namespace, all)).map(externalView));
      return reply.type('application/json; charset=utf-8').send(body);
    },

    'DELETE /networks': async ({ req, namespace, repo }) => {
      const body = req.body as Body;
      if (body.confirm !== true) {
        throw new BadRequest('confirm must be true to delete every network of a namespace', { reason: 'confirm' });
      }
      let target = body.namespace as string | undefined;
      if (target === undefined) {
        if (namespace === SYSTEM_NAMESPACE) {
          throw new BadRequest('the system namespace must name the namespace to delete networks from', {
            reason: 'namespace',
          });
        }
        target = namespace;
      }
      if (target !== namespace && namespace !== SYSTEM_NAMESPACE) {
        throw new Unauthenticated(`namespace ${quote(namespace)} may not delete networks of namespace ${quote(target)}`, {
          reason: 'namespace',
        });
      }
      const result = await repo.deleteAll(target, body.clean_wait === true);
      if (result.unable.length > 0) {
        throw new ApiError(403, 'some networks are in use', { reason: 'in-use', detail: { ...result } });
      }
      return result.deleted;
    },

    // `namespace` (the client's get-network-namespace): system looks a name up in that namespace;
    // anyone gets 404 when the network is not in it.
    'GET /networks/:ref': async ({ req, namespace, repo }) => {
      const wanted = (req.query as Body).namespace as string | undefined;
      const record = await repo.resolve((req.params as Params).ref, wanted !== undefined && namespace === SYSTEM_NAMESPACE ? wanted : namespace);
      if (wanted !== undefined && record.namespace !== wanted) throw new NotFound(`network not in namespace ${quote(wanted)}`, { reason: 'namespace' });
      return externalView(record);
    },

    'DELETE /networks/:ref': async ({ req, namespace, repo }) => {
      const record = await repo.resolve((req.params as Params).ref, namespace);
      const wanted = ((req.body ?? {}) as Body).namespace as string | undefined;
      if (wanted !== undefined && record.namespace !== wanted) {
        throw new NotFound(`network not in namespace ${quote(wanted)}`, { reason: 'namespace' });
      }
      const after = await repo.delete(record);
      return after === null ? null : externalView(after);
    },

    'GET /networks/:ref/events': async ({ req, namespace, repo }) => {
      const query = req.query as { event_type?: string; limit?: string };
      return repo.eventsOf((req.params as Params).ref, namespace, { type: query.event_type, limit: eventLimit(query.limit) });
    },

    'GET /networks/:ref/addresses': async ({ req, namespace, repo }) => repo.addresses((req.params as Params).ref, namespace),

    'GET /networks/:ref/metadata': async ({ req, namespace, repo }) =>
      (await repo.resolve((req.params as Params).ref, namespace)).metadata,

    'POST /networks/:ref/metadata': async ({ req, namespace, repo }) => {
      const record = await repo.resolve((req.params as Params).ref, namespace);
      const body = req.body as { key: string; value: string };
      return repo.setMetadata(record.uuid, body.key, body.value);
    },

    'PUT /networks/:ref/metadata/:key': async ({ req, namespace, repo }) => {
      const params = req.params as Params;
      const record = await repo.resolve(params.ref, namespace);
      return repo.setMetadata(record.uuid, params.key, (req.body as { value: string }).value);
    },

    'DELETE /networks/:ref/metadata/:key': async ({ req, namespace, repo }) => {
      const params = req.params as Params;
      const record = await repo.resolve(params.ref, namespace);
      return repo.deleteMetadata(record.uuid, params.key);
    },
  };
}

/** Serialised lists (list-cache.ts) and the view they are built from. */
interface Lists { view: StateView; cache: ListCache }

function instanceHandlers(namespaces: () => ReadonlySet<string>, connections: ConnectionRepository, lists: Lists): Record<string, Handler> {
  const show = async (instances: InstanceRepository, ref: string, namespace: string) => {
    const { instance, interfaces } = await instances.getWithInterfaces(ref, namespace);
    return instanceView(instance, interfaces.map(interfaceView));
  };
  return {
    'POST /instances': async ({ req, namespace, instances }) => {
      // Deploy-time connections are checked before anything is written; if one cannot be made, the
      // instance goes again (its connections with it), so a refused deploy leaves nothing.
      const { connect, ...body } = (req.body ?? {}) as Body;
      const wanted = validateDeployConnections(connect, body.outbounds);
      const { instance, interfaces } = await instances.create(body, namespace, namespaces());
      try {
        for (const c of wanted) {
          await connections.add({ source_instance_id: instance.uuid, outbound_name: c.outbound, target_instance_id: c.target, inbound_name: c.inbound }, namespace);
        }
      } catch (e) {
        await connections.deleteInstance(instance, true).catch(() => undefined);
        throw e;
      }
      return instanceView(instance, interfaces.map(interfaceView));
    },

    // Served from the list cache: ~310 KB for 200 instances, the same bytes until the view changes.
    'GET /instances': async ({ reply, namespace, instances }) => {
      await lists.view.sync();
      const body = await lists.cache.json(`instances ${namespace}`, async () =>
        (await instances.listWithInterfaces(namespace)).map(({ instance, interfaces }) => instanceView(instance, interfaces.map(interfaceView))));
      return reply.type('application/json; charset=utf-8').send(body);
    },

    'GET /instances/:ref': async ({ req, namespace, instances }) => show(instances, (req.params as Params).ref, namespace),

    'DELETE /instances/:ref': async ({ req, namespace, instances }) => {
      const record = await instances.resolve((req.params as Params).ref, namespace);
      // Its connections end with it (TERMINATED); 403 without force when others use its inbounds.
      const { instance, interfaces } = await connections.deleteInstance(record, truthy((req.query as Body).force));
      return instanceView(instance, interfaces.map(interfaceView));
    },

    'GET /instances/:ref/interfaces': async ({ req, namespace, instances }) =>
      (await instances.getWithInterfaces((req.params as Params).ref, namespace)).interfaces.map(interfaceView),

    'GET /networks/:ref/interfaces': async ({ req, namespace, repo, instances }) => {
      const network = await repo.resolve((req.params as Params).ref, namespace);
      const rows = await instances.interfaces.onNetwork(network.uuid);
      // A system-owned network could carry interfaces of other namespaces: show only visible ones.
      return rows
        .filter((row) => {
          try {
            checkInterfaceVisible(row, namespace);
            return true;
          } catch {
            return false;
          }
        })
        .map(interfaceView);
    },

    // Hot-plug (Shaken Fist's): the host's reconciler makes or removes the device in the running instance.
    'POST /instances/:ref/interfaces': async ({ req, namespace, instances }) =>
      interfaceView(await instances.addInterface(await instances.resolve((req.params as Params).ref, namespace), req.body)),

    'DELETE /interfaces/:uuid': async ({ req, namespace, instances }) =>
      interfaceView(await instances.removeInterface(await instances.interfaces.get((req.params as Params).uuid, namespace))),

    'GET /interfaces/:uuid': async ({ req, namespace, instances }) =>
      interfaceView(await instances.interfaces.get((req.params as Params).uuid, namespace)),

    'GET /interfaces/:uuid/metadata': async ({ req, namespace, instances }) =>
      (await instances.interfaces.get((req.params as Params).uuid, namespace)).metadata,

    'POST /interfaces/:uuid/metadata': async ({ req, namespace, instances }) => {
      const body = req.body as { key: string; value: string };
      return instances.interfaces.setMetadata((req.params as Params).uuid, namespace, body.key, body.value);
    },

    'PUT /interfaces/:uuid/metadata/:key': async ({ req, namespace, instances }) => {
      const params = req.params as Params;
      return instances.interfaces.setMetadata(params.uuid, namespace, params.key, (req.body as { value: string }).value);
    },

    'DELETE /interfaces/:uuid/metadata/:key': async ({ req, namespace, instances }) => {
      const params = req.params as Params;
      return instances.interfaces.deleteMetadata(params.uuid, namespace, params.key);
    },
  };
}

/** An operator-readable message for the first schema violation, naming the field. */
function validationMessage(err: FastifyError, req: FastifyRequest): string {
  const first = err.validation?.[0];
  const part = err.validationContext ?? 'body';
  if (first === undefined) return err.message;
  const path = first.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const params = first.params as Record<string, unknown>;
  const where = part === 'querystring' ? 'query string' : part === 'params' ? 'path' : 'request body';
  if (first.keyword === 'required') {
    const field = [path, String(params.missingProperty)].filter((p) => p !== '').join('.');
    return `${field} is required in the ${where}`;
  }
  if (first.keyword === 'additionalProperties') {
    const schema = (req.routeOptions.schema as Record<string, { properties?: object }> | undefined)?.[part];
    const accepted = Object.keys(schema?.properties ?? {});
    return (
      `unknown parameter ${quote(params.additionalProperty)} in the ${where}` +
      (accepted.length > 0 ? `; accepted: ${accepted.join(', ')}` : '')
    );
  }
  return `${path === '' ? `the ${where}` : path} ${first.message ?? 'is invalid'}`;
}

function sendError(reply: FastifyReply, status: number, error: string | Record<string, unknown>): FastifyReply {
  return reply.code(status).type('application/json').send({ error, status });
}

/** The networks API on `options.store`. The repository initialises on `app.ready()`. */
export function buildApi(options: BuildApiOptions): FastifyInstance {
  const app = Fastify({
    ...(options.https ? { https: { ...options.https, requestCert: true, rejectUnauthorized: false } } : {}),
    logger: options.logger ?? false,
    // Keep unknown body fields so that the schema rejects them instead of silently dropping them.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
  });
  const view = options.view ?? new StateView(options.store);
  // Instance deletion finishes delete-wait networks, so the instances repository holds the networks one.
  const repo = new NetworkRepository({
    store: options.store,
    floatingPool: options.floatingPool,
    interfaceCount: options.interfaceCount,
    now: options.now,
    view,
  });
  const instanceRepo = new InstanceRepository({ store: options.store, networks: repo, now: options.now, view });
  const connectionRepo = new ConnectionRepository({ store: options.store, instances: instanceRepo, linkPool: options.linkPool, now: options.now });
  const live = (ns: string) =>
    [...view.networks.values()].some((n) => n.namespace === ns && n.state !== 'deleted') ||
    [...view.instances.values()].some((i) => i.namespace === ns);
  const auth = new ApiAuth({
    store: options.store, tokens: options.tokens, inUse: live, now: options.now,
    tokenSeconds: options.tokenSeconds, rotateSeconds: options.rotateSeconds, rateLimit: options.authRateLimit,
  });
  const namespaces = () => auth.namespaces.names();
  const callers = new WeakMap<FastifyRequest, string>();

  // Every route registered on this app, here and later by the daemon (hosts, captures, services), so that
  // /openapi.json documents what the API serves rather than a list kept by hand.
  const served: RouteDoc[] = [];
  app.addHook('onRoute', (route) => {
    if (route.url !== OPENAPI_URL) served.push(...routeDocOf(route));
  });

  app.addHook('onReady', async () => {
    await repo.init();
    await auth.state.start();
    if (!options.view) await view.start();
  });
  if (!options.view) app.addHook('onClose', async () => view.stop());
  const lists: Lists = { view, cache: new ListCache(view) };
  app.addHook('onClose', async () => lists.cache.close());
  app.addHook('onClose', async () => auth.state.stop());

  const metrics = options.metrics;
  if (metrics) {
    app.addHook('onResponse', async (req, reply) => {
      // The route's pattern, never the raw URL: one series per route, whatever the ids in the path.
      metrics.requests.observe({ method: req.method, route: req.routeOptions.url ?? 'unknown', status: reply.statusCode }, reply.elapsedTime / 1000);
    });
    app.get(METRICS_URL, async (req, reply) => {
      if (callers.get(req) !== 'system' && callers.get(req) !== METRICS_CALLER) {
        throw new Forbidden(`GET ${METRICS_URL} needs the system namespace or the metrics token`, { reason: 'metrics' });
      }
      return reply.type(METRICS_CONTENT_TYPE).send(await metrics.text());
    });
  }

  app.addHook('onRequest', async (req, reply) => {
    if (PUBLIC.has(`${req.method} ${req.routeOptions.url}`)) return;
    // The metrics token opens GET /metrics only; anywhere else it is an unknown token.
    if (metrics?.token && req.method === 'GET' && req.routeOptions.url === METRICS_URL && req.headers.authorization === `Bearer ${metrics.token}`) {
      callers.set(req, METRICS_CALLER);
      return;
    }
    let namespace: string;
    try {
      namespace = await auth.caller(req.headers.authorization);
    } catch (e) {
      if (isApiError(e)) return sendError(reply, e.status, e.message);
      throw e;
    }
    callers.set(req, namespace);
    setCallerNamespace(req, namespace);
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (isApiError(err)) return sendError(reply, err.status, err.toBody().error);
    if (err.validation) return sendError(reply, 400, validationMessage(err, req));
    const status = err.statusCode;
    if (status !== undefined && status >= 400 && status < 500) return sendError(reply, status, err.message);
    req.log.error({ err }, 'unhandled error');
    const body = errorBody(err);
    return sendError(reply, body.status, body.error);
  });

  app.setNotFoundHandler((req, reply) => sendError(reply, 404, `no route ${req.method} ${req.url.split('?')[0]}`));

  const table = { ...handlers(namespaces, lists), ...instanceHandlers(namespaces, connectionRepo, lists) };
  for (const route of ALL_ROUTES as readonly RouteDoc[]) {
    const handler = table[`${route.method} ${route.url}`];
    if (handler === undefined) throw new Error(`no handler for ${route.method} ${route.url}`);
    app.route({
      method: route.method,
      url: route.url,
      schema: route.schema,
      handler: async (req, reply) => handler({ req, reply, namespace: callers.get(req) as string, repo, instances: instanceRepo }),
    });
  }
  registerConnectionRoutes(app, connectionRepo);
  registerAuthRoutes(app, auth, callerNamespace);
  registerShakenFistCompat(app);
  registerUiRoutes(app);
  // Built on first request: by then every route is registered (fastify refuses new ones once ready).
  let document: Record<string, unknown> | undefined;
  app.get(OPENAPI_URL, async () => (document ??= openApiDocument(served)));
  return app;
}
