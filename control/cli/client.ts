// A small fetch client of the appnet REST API: base URL + bearer token, `{error, status}` → ApiClientError.
// With a CA (the CLI's --ca), requests go through node:https trusting exactly that CA: fetch cannot
// be given a CA without a dependency on undici.
import https from 'node:https';

export class ApiClientError extends Error {
  override name = 'ApiClientError';
  constructor(
    message: string,
    /** HTTP status; 0 when the API could not be reached. */
    readonly status: number,
    readonly body?: unknown,
  ) {
    super(message);
  }
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
}

/** Render an `{error}` value as one line. */
function errorText(error: unknown): string {
  if (typeof error === 'string') return error;
  if (error !== null && typeof error === 'object') {
    const o = error as Record<string, unknown>;
    if (Array.isArray(o.deleted) && Array.isArray(o.unable)) {
      return `some networks are in use: deleted [${o.deleted.join(', ')}], unable [${o.unable.join(', ')}]`;
    }
    return JSON.stringify(error);
  }
  return String(error);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

export class ApiClient {
  readonly baseUrl: string;
  constructor(baseUrl: string, readonly token: string | undefined, readonly ca?: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  /** fetch, or node:https with the CA when one is given. */
  private send(url: string, init: { method?: string; headers: Record<string, string>; body?: string }): Promise<Response> {
    if (this.ca === undefined || !url.startsWith('https:')) return fetch(url, init);
    return new Promise((resolve, reject) => {
      const req = https.request(url, { method: init.method ?? 'GET', headers: init.headers, ca: this.ca }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
          resolve(new Response(status === 204 || status === 304 ? null : Buffer.concat(chunks), { status, statusText: res.statusMessage, headers }));
        });
        res.on('error', reject);
      });
      req.on('error', (e) => reject(Object.assign(new Error(e.message), { cause: e })));
      req.end(init.body);
    });
  }

  url(path: string, query?: Query): string {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    return url.toString();
  }

  private unreachable(err: unknown): ApiClientError {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (err as Error).message;
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(why)) {
      return new ApiClientError(`the appnet API at ${this.baseUrl} presented a certificate this CLI does not trust (${why}): ` +
        'give its CA with --ca FILE (or APPNET_CA, or "ca" in the CLI config)', 0);
    }
    return new ApiClientError(`cannot reach the appnet API at ${this.baseUrl}: is appnetd running? (${why})`, 0);
  }

  async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    let res: Response;
    try {
      res = await this.send(this.url(path, options.query), { method, headers, body });
    } catch (err) {
      throw this.unreachable(err);
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    if (text !== '') {
      try {
        parsed = JSON.parse(text);
      } catch {
        if (!res.ok) throw new ApiClientError(oneLine(`HTTP ${res.status}: ${text.slice(0, 200)}`), res.status, text);
        throw new ApiClientError(`the API answered ${method} ${path} with non-JSON text`, res.status, text);
      }
    }
    if (!res.ok) {
      const p = parsed as { error?: unknown } | undefined;
      const message = p !== undefined && p !== null && typeof p === 'object' && 'error' in p ? errorText(p.error) : `HTTP ${res.status} ${res.statusText}`;
      throw new ApiClientError(oneLine(message), res.status, parsed);
    }
    return parsed as T;
  }

  /** GET of a binary resource: the body as bytes and the response headers; errors as for JSON. */
  getBytes(path: string): Promise<{ body: Buffer; headers: Headers }> {
    return this.getBody(path, 'application/octet-stream');
  }

  /** GET of a non-JSON resource of content type `type`. */
  private async getBody(path: string, type: string): Promise<{ body: Buffer; headers: Headers }> {
    const headers: Record<string, string> = { accept: type };
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    let res: Response;
    try {
      res = await this.send(this.url(path), { headers });
    } catch (err) {
      throw this.unreachable(err);
    }
    if (!res.ok || !(res.headers.get('content-type') ?? '').startsWith(type)) {
      const text = await res.text();
      let parsed: { error?: unknown } | undefined;
      try { parsed = JSON.parse(text); } catch { /* not JSON */ }
      const message = parsed && typeof parsed === 'object' && 'error' in parsed ? errorText(parsed.error) : `HTTP ${res.status}: ${text.slice(0, 200)}`;
      throw new ApiClientError(oneLine(res.ok ? `the API answered GET ${path} without ${type} content: ${message}` : message), res.status, parsed ?? text);
    }
    return { body: Buffer.from(await res.arrayBuffer()), headers: res.headers };
  }

  /** GET of a text resource (GET /metrics): the body; errors as for JSON. */
  async getText(path: string): Promise<string> {
    const { body } = await this.getBody(path, 'text/plain');
    return body.toString('utf8');
  }

  get<T = unknown>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, { query });
  }
  post<T = unknown>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, { body: body ?? {} });
  }
  put<T = unknown>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('PUT', path, { body: body ?? {} });
  }
  delete<T = unknown>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('DELETE', path, { body });
  }
}

/** Encode one path segment (names, UUIDs, keys). */
export function seg(value: string): string {
  return encodeURIComponent(value);
}
