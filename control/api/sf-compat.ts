// What Shaken Fist's own Python client (shakenfist_client/apiclient.py) needs beyond the routes
// themselves, so that it runs unmodified against appnet:
//
//   - `GET /` (public) lists the capability strings the client looks for in the page before some
//     calls (`check_capability` is a substring test on the body); the client also probes it with
//     redirects off before authenticating, so it answers 200 and never redirects.
//   - Every parameter may come in a JSON body, also on GET (the client sends `{"all": false}` to
//     GET /networks and `{"namespace": ...}` to GET /networks/{ref}). Fastify does not read GET
//     bodies, so this hook does: each top-level field joins the query string (the query wins on a
//     clash), true/false/numbers as their text, null as absent; a body that is not a JSON object
//     is a 400 naming the problem.
//   - `namespace: null` in any body means "the caller's namespace", i.e. absent.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../errors.ts';

/** What we serve of the reference's capability list; only what works end to end. */
export const CAPABILITIES: Record<string, string[]> = {
  networks: ['list-addresses', 'route-addresses', 'get-network-namespace', 'provide-dns', 'extra-dns-entries'],
  networkinterfaces: ['interface-metadata'],
  auth: ['namespace-keys'],
};

const MAX_GET_BODY = 64 * 1024;

function rootPage(): string {
  const items = Object.entries(CAPABILITIES).map(([family, caps]) => `<li>${family}: ${caps.join(', ')}</li>`).join('');
  return `<html><head><title>appnet</title></head><body><h1>appnet REST API</h1>` +
    `<p>The API is documented at <a href="/openapi.json">/openapi.json</a>.</p>` +
    `<p>Capabilities:<ul>${items}</ul></p></body></html>`;
}

async function readRaw(req: FastifyRequest): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req.raw) {
    size += (chunk as Buffer).length;
    if (size > MAX_GET_BODY) throw new BadRequest(`the GET request body is larger than ${MAX_GET_BODY} bytes`, { reason: 'body' });
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function queryText(field: string, value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean' || typeof value === 'number') return String(value);
  throw new BadRequest(`${field} in the GET request body must be a string, number, boolean or null`, { reason: field });
}

export function registerShakenFistCompat(app: FastifyInstance): void {
  app.get('/', { config: { summary: 'capabilities page (public), as the reference serves it' } }, async (_req, reply) =>
    reply.type('text/html; charset=utf-8').send(rootPage()));

  app.addHook('preValidation', async (req) => {
    if (req.method === 'GET' && (Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined)) {
      const text = (await readRaw(req)).trim();
      if (text === '') return;
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new BadRequest('the GET request body is not JSON: send parameters as a JSON object or in the query string', { reason: 'body' });
      }
      if (body === null) return;
      if (typeof body !== 'object' || Array.isArray(body)) throw new BadRequest('the GET request body must be a JSON object of parameters', { reason: 'body' });
      const query = (req.query ?? {}) as Record<string, string>;
      for (const [field, value] of Object.entries(body as Record<string, unknown>)) {
        const text = queryText(field, value);
        if (text !== undefined && query[field] === undefined) query[field] = text;
      }
      req.query = query;
      return;
    }
    const body = req.body as Record<string, unknown> | null | undefined;
    if (body && typeof body === 'object' && !Array.isArray(body) && body.namespace === null) delete body.namespace;
  });
}
