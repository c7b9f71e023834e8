// Who made a request: the namespace its token or JWT authenticated, stamped on the request by the API's auth
// hook (app.ts) and read by every route that scopes what it does to the caller.
import type { FastifyRequest } from 'fastify';

const CALLER = Symbol('appnet caller namespace');

/** The authenticated namespace of a request. */
export function callerNamespace(req: FastifyRequest): string {
  return (req as unknown as Record<symbol, string>)[CALLER];
}

/** Set once per request by the auth hook. */
export function setCallerNamespace(req: FastifyRequest, namespace: string): void {
  (req as unknown as Record<symbol, string>)[CALLER] = namespace;
}
