// The ping API, the reference's `GET /networks/{ref}/ping/{address}`: ten echo requests from the
// network's gateway (.1) to the address, answered 200 `{stdout: [lines], stderr: [lines]}` shaped
// like `ping -c 10` output, also when nothing answers (the reference counts ping's exit 1 as
// success). `?count=N` (1..100) changes the number of probes.
//
// Errors, in the reference's order: 404 network not found (or another namespace's), 406 not
// `created`, 400 `invalid address`, 400 `address … outside network block …`.
//
// Which host pings: the gateway is distributed and every host consumes the echo replies its own
// ports send to .1, so only the host holding the target's port sees its replies. The request
// therefore runs on the host of the instance whose interface holds the address; for an address no
// interface holds, on this host if it has a port on the network, else on any live host that has
// one. Another host is reached at the `api` of its host record (over TLS, pinning the record's
// certificate: peer-client.ts), with the caller's own token, and `forwarded=1` so that it answers
// itself whatever it would decide. `forwarded=1` is honoured only from a registered host (its client
// certificate is the one its record pins) or from loopback; anyone else gets 403.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError, BadRequest, Forbidden, quote } from '../errors.ts';
import { contains, isIpv4, parseCidr, parseIpv4 } from '../net/ipv4-cidr.ts';
import { requireReady } from '../networks/state-machine.ts';
import type { NetworkRecord } from '../networks/network.ts';
import type { NetworkRepository } from '../repo/networks.ts';
import type { StateView } from '../repo/state-view.ts';
import type { NetworkServices } from '../services/network-services.ts';
import { PING_DEFAULT_COUNT, PING_INTERVAL_MS, PING_LINGER_MS, PING_MAX_COUNT, type PingOutput } from '../services/ping.ts';
import { callerNamespace } from './caller.ts';
import { peerHost, peerRequest } from './peer-client.ts';
import type { HostRecord } from '../repo/hosts.ts';

export interface ServicesRoutesOptions {
  networks: NetworkRepository;
  view: StateView;
  services: Pick<NetworkServices, 'ping' | 'serves'>;
  /** This host's name (as in its host record). */
  host: string;
  /** This host's API certificate and key, presented to the hosts requests are forwarded to. */
  identity?: { cert: string; key: string };
}

const pingQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    count: { type: 'string', pattern: '^[0-9]{1,3}$', description: `probes to send, 1..${PING_MAX_COUNT} (default ${PING_DEFAULT_COUNT})` },
    forwarded: { type: 'string', description: 'set by the host that forwarded the request: answer here' },
  },
} as const;

/** The host that should send the probes: the address holder's, else this one, else any with a port. */
export function pingHost(view: StateView, net: NetworkRecord, address: string, self: string, servesHere: boolean): string | undefined {
  for (const i of view.interfaces.values()) {
    if (i.network_uuid !== net.uuid || i.state === 'deleted' || i.ipv4 !== address) continue;
    const host = view.instances.get(i.instance_uuid)?.host;
    if (host === self || (host !== undefined && view.hosts.has(host))) return host;
  }
  if (servesHere) return self;
  for (const host of view.state().hostsOnNetwork(net.uuid)) if (host !== self && view.hosts.get(host)?.api) return host;
  return undefined;
}

export function registerServicesRoutes(app: FastifyInstance, o: ServicesRoutesOptions): void {
  app.get<{ Params: { ref: string; address: string }; Querystring: { count?: string; forwarded?: string } }>(
    '/networks/:ref/ping/:address',
    { schema: { querystring: pingQuery }, config: { summary: 'ping an address from the network gateway: {stdout, stderr} like ping -c 10' } }, async (req): Promise<PingOutput> => {
      const net = await o.networks.resolve(req.params.ref, callerNamespace(req));
      requireReady(net);
      const address = req.params.address;
      if (!isIpv4(address)) throw new BadRequest('invalid address', { reason: 'address' });
      if (!contains(parseCidr(net.netblock), parseIpv4(address))) {
        throw new BadRequest(`address ${address} outside network block ${net.netblock}`, { reason: 'address' });
      }
      const count = req.query.count === undefined ? PING_DEFAULT_COUNT : Number(req.query.count);
      if (count < 1 || count > PING_MAX_COUNT) throw new BadRequest(`count must be an integer in 1..${PING_MAX_COUNT}, got ${quote(req.query.count ?? '')}`, { reason: 'count' });
      await o.view.sync();
      const here = o.services.serves(net.uuid);
      if (req.query.forwarded !== undefined && !/^127\./.test(req.ip) && peerHost(req, o.view.hosts.values()) === undefined) {
        throw new Forbidden('forwarded=1 is for requests between appnet hosts: this client presented no registered host certificate', { reason: 'forwarded' });
      }
      const host = req.query.forwarded !== undefined ? o.host : pingHost(o.view, net, address, o.host, here);
      if (host !== undefined && host !== o.host) return forward(req, o.view.hosts.get(host), host, net.uuid, address, count, o.identity);
      const out = here ? await o.services.ping(net.uuid, address, count) : undefined;
      return out ?? { stdout: [], stderr: [`ping: no running host has a port on network ${net.uuid}: there is no gateway to send from`] };
    });
}

async function forward(req: FastifyRequest, record: HostRecord | undefined, host: string, network: string, address: string, count: number, identity?: { cert: string; key: string }): Promise<PingOutput> {
  if (!record?.api) throw new ApiError(503, `host ${quote(host)} holds ${address} but registered no API address`, { reason: 'no-api' });
  let res: { status: number; body: unknown };
  try {
    res = await peerRequest(record, `/networks/${network}/ping/${address}?count=${count}&forwarded=1`, {
      headers: { authorization: req.headers.authorization ?? '' },
      timeoutMs: count * PING_INTERVAL_MS + PING_LINGER_MS + 10_000,
      identity,
    });
  } catch (e) {
    throw new ApiError(502, `host ${quote(host)} (${record.api}) that holds ${address} did not answer the forwarded ping: ${(e as Error).message}`, { reason: 'forward' });
  }
  const body = res.body as (PingOutput & { error?: unknown }) | null;
  if (res.status !== 200 || !body || typeof body !== 'object') {
    throw new ApiError(res.status === 200 ? 502 : res.status, typeof body?.error === 'string' ? body.error : `host ${quote(host)} answered ${res.status}`, { reason: 'forward' });
  }
  return { stdout: body.stdout, stderr: body.stderr };
}
