// Extra DNS entries of a network (the reference's `hosteddns`), served by the network's DNS
// (control/services/network-services.ts follows them from the store):
//
//   GET    /networks/{ref}/dns          the entries, by name
//   POST   /networks/{ref}/dns          add or replace {name, address} (`value` is the reference's
//                                      spelling of address): 200 with the entry
//   DELETE /networks/{ref}/dns/{name}   remove: 200 with the entry, 404 if there is none
//   DELETE /networks/{ref}/dns          the same with the reference's JSON body {name}
//
// A name with one label is relative to the network's domain (`web` -> web.<namespace>.<zone>),
// like dnsmasq's expand-hosts; a dotted name is taken as fully qualified. Records live under
// /appnet/dns/<network uuid>/<canonical name>. 406 when the network does not provide DNS.
import type { FastifyInstance } from 'fastify';
import { BadRequest, NotFound, NotReady, quote } from '../errors.ts';
import { isIpv4 } from '../net/ipv4-cidr.ts';
import type { NetworkRepository } from '../repo/networks.ts';
import type { NetworkRecord } from '../networks/network.ts';
import { DNS_ENTRIES_PREFIX } from '../services/network-services.ts';
import type { Store } from '../store/store.ts';
import { callerNamespace } from './caller.ts';

export interface DnsEntryView {
  name: string;
  address: string;
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** Lower case, no final dot, LDH labels (and `_`) of 1-63 bytes, at most 253 in all; else 406 as the reference. */
export function canonicalEntryName(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw new BadRequest('name cannot be empty', { reason: 'name' });
  const name = value.toLowerCase().replace(/\.$/, '');
  if (name.length > 253 || !name.split('.').every((l) => LABEL.test(l))) {
    throw new NotReady(`invalid DNS name ${quote(value)}: labels of 1-63 letters, digits, '-' or '_', at most 253 characters`, { reason: 'name' });
  }
  return name;
}

const nameBody = {
  type: 'object',
  additionalProperties: false,
  properties: { name: { type: 'string' }, address: { type: 'string' }, value: { type: 'string' } },
} as const;

export function registerDnsRoutes(app: FastifyInstance, o: { store: Store; networks: NetworkRepository }): void {
  const network = async (ref: string, namespace: string): Promise<NetworkRecord> => {
    const net = await o.networks.resolve(ref, namespace);
    if (net.state === 'deleted') throw new NotFound(`network ${quote(ref)} is deleted`, { reason: 'deleted' });
    return net;
  };
  const list = async (net: NetworkRecord): Promise<DnsEntryView[]> => {
    const { kvs } = await o.store.range(`${DNS_ENTRIES_PREFIX}${net.uuid}/`);
    return kvs.map((kv) => JSON.parse(kv.value) as DnsEntryView).sort((a, b) => a.name.localeCompare(b.name));
  };

  app.get<{ Params: { ref: string } }>('/networks/:ref/dns', async (req) => list(await network(req.params.ref, callerNamespace(req))));

  app.post<{ Params: { ref: string }; Body: { name?: string; address?: string; value?: string } }>(
    '/networks/:ref/dns', { schema: { body: nameBody } }, async (req) => {
      const net = await network(req.params.ref, callerNamespace(req));
      if (!net.provideDns) throw new NotReady('network does not provide DNS', { reason: 'no-dns' });
      const body = req.body ?? {};
      const name = canonicalEntryName(body.name);
      const address = body.address ?? body.value;
      if (!isIpv4(address)) throw new BadRequest(`address must be an IPv4 address, got ${quote(address ?? '')}`, { reason: 'address' });
      const entry: DnsEntryView = { name, address };
      await o.store.put(`${DNS_ENTRIES_PREFIX}${net.uuid}/${name}`, JSON.stringify(entry));
      return entry;
    });

  const remove = async (ref: string, namespace: string, raw: unknown): Promise<DnsEntryView> => {
    const net = await network(ref, namespace);
    const name = canonicalEntryName(raw);
    const key = `${DNS_ENTRIES_PREFIX}${net.uuid}/${name}`;
    const kv = await o.store.get(key);
    if (!kv) throw new NotFound(`network ${quote(ref)} has no DNS entry ${quote(name)}`, { reason: 'no-entry' });
    await o.store.delete(key);
    return JSON.parse(kv.value) as DnsEntryView;
  };

  app.delete<{ Params: { ref: string; name: string } }>('/networks/:ref/dns/:name', async (req) =>
    remove(req.params.ref, callerNamespace(req), req.params.name));

  app.delete<{ Params: { ref: string }; Body: { name: string } }>('/networks/:ref/dns', {
    schema: { body: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string' } } } },
  }, async (req) => remove(req.params.ref, callerNamespace(req), req.body.name));
}
