// Requests from one appnetd to another's API (forwarded pings today; anything else that must run
// on another host). The one rule: a peer is trusted for exactly the certificate its host record
// publishes.
//
//   - https: the TLS handshake must present the record's certificate itself (its SHA-256
//     fingerprint), chaining to the CA the record carries beside it; the host name is not
//     consulted, so a CA that signed other certificates cannot stand in for this host. This host
//     presents its own API certificate as a client certificate, which the peer pins the same way
//     (`peerHost` below). Nothing, not even the request line, is sent before the check passed.
//   - http: only to a loopback address (hosts on one machine in tests and single-host setups);
//     plain HTTP to any other address is refused, never sent.
import http from 'node:http';
import { X509Certificate } from 'node:crypto';
import tls, { type TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { pemBlocks } from '../daemon/api-tls.ts';
import type { HostRecord } from '../repo/hosts.ts';

export interface PeerResponse {
  status: number;
  body: unknown;
}

export interface PeerRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  headers?: Record<string, string>;
  body?: unknown;
  timeoutMs: number;
  /** This host's API certificate and key, presented to the peer (https only). */
  identity?: { cert: string; key: string };
}

/** Why a peer request was not made or not answered; the message names the host. */
export class PeerError extends Error {}

/** SHA-256 fingerprint of the first certificate of a PEM chain (node's colon-separated hex). */
export function leafFingerprint(chain: string): string | undefined {
  const first = pemBlocks(chain)[0];
  if (!first) return undefined;
  try {
    return new X509Certificate(first).fingerprint256;
  } catch {
    return undefined;
  }
}

function pinnedSocket(host: Pick<HostRecord, 'name' | 'certificate'>, url: URL, o: PeerRequest): Promise<TLSSocket> {
  const chain = pemBlocks(host.certificate ?? '');
  const pin = leafFingerprint(host.certificate ?? '');
  if (!pin) return Promise.reject(new PeerError(`host ${host.name} published no usable API certificate: refusing to send it anything`));
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: url.hostname,
      port: Number(url.port || 443),
      ca: chain,
      ...(o.identity ? { cert: o.identity.cert, key: o.identity.key } : {}),
      ALPNProtocols: ['http/1.1'],
      checkServerIdentity: (_name, cert) =>
        cert.fingerprint256 === pin ? undefined : new PeerError(`host ${host.name} at ${url.host} presented certificate ${cert.fingerprint256}, not the one its host record pins (${pin})`),
    });
    const timer = setTimeout(() => socket.destroy(new PeerError(`host ${host.name} at ${url.host}: TLS handshake timed out`)), o.timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e instanceof PeerError ? e : new PeerError(`host ${host.name} at ${url.host}: ${e.message}`));
    });
  });
}

/** One request to `host`'s API at `path` (with its query string). */
export async function peerRequest(host: Pick<HostRecord, 'name' | 'api' | 'certificate'>, path: string, o: PeerRequest): Promise<PeerResponse> {
  if (!host.api) throw new PeerError(`host ${host.name} registered no API address`);
  const url = new URL(path, host.api);
  let socket: TLSSocket | undefined;
  if (url.protocol === 'https:') socket = await pinnedSocket(host, url, o);
  else if (url.protocol !== 'http:' || !/^127\./.test(url.hostname)) {
    throw new PeerError(`host ${host.name} publishes ${host.api}: plain HTTP is only allowed to loopback; refusing to send`);
  }
  const payload = o.body === undefined ? undefined : JSON.stringify(o.body);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: url.hostname,
      port: Number(url.port || (socket ? 443 : 80)),
      path: url.pathname + url.search,
      method: o.method ?? 'GET',
      headers: { ...(o.headers ?? {}), ...(payload ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}) },
      ...(socket ? { createConnection: () => socket } : {}),
      timeout: o.timeoutMs,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = text === '' ? null : JSON.parse(text);
        } catch { /* not JSON: the text as it is */ }
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new PeerError(`host ${host.name} at ${url.host} did not answer within ${o.timeoutMs} ms`)));
    req.on('error', (e) => reject(e instanceof PeerError ? e : new PeerError(`host ${host.name} at ${url.host}: ${e.message}`)));
    req.end(payload);
  });
}

/**
 * The registered host that made this request: the one whose record pins the client certificate
 * the TLS connection presented. Undefined for plain HTTP (loopback) or an unknown certificate.
 */
export function peerHost(req: FastifyRequest, hosts: Iterable<Pick<HostRecord, 'name' | 'certificate'>>): string | undefined {
  const socket = req.raw.socket as Partial<TLSSocket>;
  if (typeof socket.getPeerCertificate !== 'function') return undefined;
  const presented = socket.getPeerCertificate()?.fingerprint256;
  if (!presented) return undefined;
  for (const h of hosts) if (h.certificate && leafFingerprint(h.certificate) === presented) return h.name;
  return undefined;
}
