// Who is calling: the bearer token of every request, and the routes that manage namespaces and
// issue tokens, as Shaken Fist has them:
//
//   POST   /auth                               {namespace, key} -> {access_token} (public)
//   POST   /auth/namespaces                    {namespace, key_name?, key?} create / add a key (system)
//   GET    /auth/namespaces                    every namespace with its key names (system)
//   GET    /auth/namespaces/{ns}               one (system, or the namespace itself)
//   DELETE /auth/namespaces/{ns}               (system; refused while it owns networks or instances)
//   POST   /auth/namespaces/{ns}/keys          {key_name, key} add or replace a key (system)
//   PUT    /auth/namespaces/{ns}/keys          {key_name, key} replace an existing key (system; 404 if none)
//   GET    /auth/namespaces/{ns}/keys          the key names (system, or the namespace itself)
//   DELETE /auth/namespaces/{ns}/keys/{name}   (system; revokes the tokens issued for that key)
//   DELETE /auth/signing-keys                   (system) retire every JWT signing key: every token
//                                               POST /auth issued stops working at once, on every host
//
// A bearer token is either one of the config's static tokens (scripts, the system token file) or
// a JWT from POST /auth (control/auth/tokens.ts). Anything else is 401 with the reason. Failed
// POST /auth attempts are limited per source address (control/auth/rate-limit.ts): 429 with
// Retry-After once a source has used up its failures.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError, BadRequest, NotFound, Unauthenticated, quote } from '../errors.ts';
import { AuthState } from '../auth/auth-state.ts';
import { Namespaces, SYSTEM_NAMESPACE, checkKey, checkName } from '../auth/namespaces.ts';
import { FailureLimiter, type RateLimitOptions } from '../auth/rate-limit.ts';
import { TokenError, TokenIssuer, type TokenOptions } from '../auth/tokens.ts';
import type { Store } from '../store/store.ts';

export interface ApiAuthOptions extends TokenOptions {
  store: Store;
  /** Static bearer tokens: token -> namespace. */
  tokens: Map<string, string>;
  /** True when the namespace still owns live networks or instances. */
  inUse?: (namespace: string) => boolean;
  rateLimit?: RateLimitOptions;
}

export class ApiAuth {
  readonly state: AuthState;
  readonly namespaces: Namespaces;
  readonly issuer: TokenIssuer;
  readonly limiter: FailureLimiter;
  readonly #tokens: Map<string, string>;

  constructor(o: ApiAuthOptions) {
    this.#tokens = o.tokens;
    this.state = new AuthState(o.store);
    this.namespaces = new Namespaces(o.store, this.state, new Set([SYSTEM_NAMESPACE, ...o.tokens.values()]), o.inUse);
    this.issuer = new TokenIssuer(o.store, this.state, o);
    this.limiter = new FailureLimiter(o.rateLimit);
  }

  /** The caller's namespace; Unauthenticated with the reason otherwise. */
  async caller(header: string | undefined): Promise<string> {
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) throw new Unauthenticated('no bearer token: send "Authorization: Bearer <token>"');
    const fixed = this.#tokens.get(match[1]);
    if (fixed !== undefined) return fixed;
    try {
      const claims = await this.issuer.verify(match[1]);
      if (!this.namespaces.keyExists(claims.namespace, claims.keyName)) {
        throw new TokenError(`the key ${quote(claims.keyName)} of namespace ${quote(claims.namespace)} this token was issued for no longer exists`);
      }
      return claims.namespace;
    } catch (e) {
      if (e instanceof TokenError) throw new Unauthenticated(e.message, { reason: 'token' });
      throw e;
    }
  }
}

type Body = Record<string, unknown>;

function requireSystem(caller: string, what: string): void {
  if (caller !== SYSTEM_NAMESPACE) throw new Unauthenticated(`only the system namespace may ${what}`, { reason: 'namespace' });
}

function requireSelfOrSystem(caller: string, namespace: string): void {
  if (caller !== SYSTEM_NAMESPACE && caller !== namespace) throw new Unauthenticated(`namespace ${quote(caller)} may not read namespace ${quote(namespace)}`, { reason: 'namespace' });
}

const nsParams = { type: 'object', required: ['ns'], properties: { ns: { type: 'string', minLength: 1 } } } as const;
const keyBody = {
  type: 'object', additionalProperties: false, required: ['key_name', 'key'],
  properties: { key_name: { type: 'string' }, key: { type: 'string' } },
} as const;

export function registerAuthRoutes(app: FastifyInstance, auth: ApiAuth, callerOf: (req: FastifyRequest) => string): void {
  app.post('/auth', {
    schema: {
      body: {
        type: 'object', additionalProperties: false, required: ['namespace', 'key'],
        properties: { namespace: { type: 'string' }, key: { type: 'string' } },
      },
    },
    config: { summary: 'a token for a namespace key: {access_token} (public; failures rate-limited per source)', public: true },
  }, async (req, reply) => {
    const source = req.ip;
    const wait = auth.limiter.retryAfter(source);
    if (wait > 0) {
      reply.header('retry-after', String(wait));
      throw new ApiError(429, `too many failed authentication attempts from ${source}: retry in ${wait} s`, { reason: 'rate-limit' });
    }
    const body = req.body as { namespace: string; key: string };
    const keyName = await auth.namespaces.authenticate(body.namespace, body.key);
    if (keyName === undefined) {
      auth.limiter.fail(source);
      throw new Unauthenticated('namespace or key is not valid', { reason: 'key' });
    }
    return auth.issuer.issue({ namespace: body.namespace, keyName });
  });

  app.post('/auth/namespaces', {
    schema: {
      body: {
        type: 'object', additionalProperties: false, required: ['namespace'],
        properties: { namespace: { type: 'string' }, key_name: { type: 'string' }, key: { type: 'string' } },
      },
    },
    config: { summary: 'create a namespace, or add a key to it (system)' },
  }, async (req) => {
    requireSystem(callerOf(req), 'create namespaces');
    const body = req.body as Body;
    const name = checkName(body.namespace, 'namespace');
    if ((body.key_name === undefined) !== (body.key === undefined)) {
      throw new BadRequest('key_name and key go together: give both or neither', { reason: body.key === undefined ? 'key' : 'key_name' });
    }
    const key = body.key_name === undefined ? undefined : { name: checkName(body.key_name, 'key_name'), secret: checkKey(body.key) };
    return auth.namespaces.put(name, key);
  });

  app.get('/auth/namespaces', { config: { summary: 'every namespace and its key names (system)' } }, async (req) => {
    requireSystem(callerOf(req), 'list namespaces');
    return auth.namespaces.list();
  });

  app.get<{ Params: { ns: string } }>('/auth/namespaces/:ns', { schema: { params: nsParams }, config: { summary: 'one namespace and its key names' } }, async (req) => {
    requireSelfOrSystem(callerOf(req), req.params.ns);
    return auth.namespaces.get(req.params.ns);
  });

  app.delete<{ Params: { ns: string } }>('/auth/namespaces/:ns', { schema: { params: nsParams }, config: { summary: 'delete a namespace (system)' } }, async (req) => {
    requireSystem(callerOf(req), 'delete namespaces');
    await auth.namespaces.delete(req.params.ns);
    return null;
  });

  app.post<{ Params: { ns: string } }>('/auth/namespaces/:ns/keys', { schema: { params: nsParams, body: keyBody }, config: { summary: 'add or replace a key (system)' } }, async (req) => {
    requireSystem(callerOf(req), 'add keys');
    const body = req.body as Body;
    return auth.namespaces.put(checkName(req.params.ns, 'namespace'), { name: checkName(body.key_name, 'key_name'), secret: checkKey(body.key) });
  });

  app.put<{ Params: { ns: string } }>('/auth/namespaces/:ns/keys', { schema: { params: nsParams, body: keyBody }, config: { summary: 'replace an existing key (system)' } }, async (req) => {
    requireSystem(callerOf(req), 'replace keys');
    const body = req.body as Body;
    const keyName = checkName(body.key_name, 'key_name');
    if (!auth.namespaces.get(req.params.ns).key_names.includes(keyName)) {
      throw new NotFound(`namespace ${quote(req.params.ns)} has no key ${quote(keyName)}: POST adds one`, { reason: 'key' });
    }
    return auth.namespaces.put(req.params.ns, { name: keyName, secret: checkKey(body.key) });
  });

  app.get<{ Params: { ns: string } }>('/auth/namespaces/:ns/keys', { schema: { params: nsParams }, config: { summary: 'the key names of a namespace' } }, async (req) => {
    requireSelfOrSystem(callerOf(req), req.params.ns);
    return auth.namespaces.get(req.params.ns).key_names;
  });

  app.delete('/auth/signing-keys', { config: { summary: 'retire every JWT signing key, revoking every issued token (system)' } }, async (req) => {
    requireSystem(callerOf(req), 'revoke every token');
    return { retired: await auth.issuer.retireAll() };
  });

  app.delete<{ Params: { ns: string; key: string } }>('/auth/namespaces/:ns/keys/:key', {
    schema: { params: { type: 'object', required: ['ns', 'key'], properties: { ns: { type: 'string', minLength: 1 }, key: { type: 'string', minLength: 1 } } } },
    config: { summary: 'delete a key and revoke its tokens (system)' },
  }, async (req) => {
    requireSystem(callerOf(req), 'delete keys');
    await auth.namespaces.deleteKey(req.params.ns, req.params.key);
    return null;
  });
}
