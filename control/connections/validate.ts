// The checks of adding and removing a connection, and of deleting an instance that has some
// (reference A4, A6), with the reference's messages followed by the detail an operator needs.
// Pure: the repository resolves instances (404 "<field> does not exist") and reads the claim on
// the outbound, then calls these in this order:
//
//   validateConnectionRequest  400  "<field> cannot be empty"
//   checkAdd                   400  "outbound_name does not exist" / "inbound_name does not exist"
//                              400  "Can not create a connection between an inbound and an outbound of the same instance"
//                              409  "connection already exists"                (the same four fields)
//                              409  "source instance already have its outbound interface connected"
//   checkRemove                403  "A connection in which the outbound is required cannot be deleted; ..."
//   checkInstanceDelete        403  "can not delete the instance, it has inbound connections. ..."
//
// Choices where Nalej's docs and code differ (reference A8; docs/connections.md):
//   - self-connection is refused per instance, as the docs say ("an application instance can not
//     be connected to itself"). The code's per-service rule has nothing to act on here: an appnet
//     instance is one endpoint, so "the same service" and "the same instance" coincide. Two
//     instances on one host are not the same instance and may be connected.
//   - "already have" is kept verbatim so that scripts matching Nalej's text keep working.

import { BadRequest, Conflict, Forbidden, NotFound, quote } from '../errors.ts';
import type { InboundSpec, OutboundSpec } from '../instances/appnet-interfaces.ts';
import type { InstanceRecord } from '../instances/instance.ts';
import { type ConnectionRecord, type ConnectionRequest, describeConnection } from './model.ts';

export const REQUEST_FIELDS = ['source_instance_id', 'outbound_name', 'target_instance_id', 'inbound_name'] as const;

export const REQUIRED_OUTBOUND_MESSAGE =
  'A connection in which the outbound is required cannot be deleted; the application could have an unexpected result. ' +
  'If it must be deleted, user confirmation is required';

/** The four fields of add and remove, each a non-empty string; 400 naming the first bad one. */
export function validateConnectionRequest(body: unknown): ConnectionRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BadRequest(`request body must be a JSON object with ${REQUEST_FIELDS.join(', ')}`, { reason: 'body' });
  }
  const fields = body as Record<string, unknown>;
  const out: Record<string, string> = {};
  for (const field of REQUEST_FIELDS) {
    const value = fields[field];
    if (value === undefined || value === null || (typeof value === 'string' && value.trim() === '')) {
      throw new BadRequest(`${field} cannot be empty`, { reason: field });
    }
    if (typeof value !== 'string') throw new BadRequest(`${field} must be a string, got ${quote(value)}`, { reason: field });
    out[field] = value;
  }
  return out as unknown as ConnectionRequest;
}

/** 404 for an instance reference that resolves to nothing visible. */
export function unknownInstance(field: 'source_instance_id' | 'target_instance_id', ref: string): NotFound {
  return new NotFound(`${field} does not exist: no instance ${quote(ref)}`, { reason: field });
}

function names(list: { name: string }[]): string {
  return list.length === 0 ? 'none' : list.map((i) => i.name).join(', ');
}

function instanceText(instance: InstanceRecord): string {
  return `${instance.name} (${instance.uuid})`;
}

export interface AddContext {
  request: ConnectionRequest;
  source: InstanceRecord;
  target: InstanceRecord;
  /** The connection that holds the source's outbound, if any (its claim key). */
  holder: ConnectionRecord | undefined;
}

/** The interfaces joined by a valid add; throws in the order of the file comment. */
export function checkAdd(ctx: AddContext): { outbound: OutboundSpec; inbound: InboundSpec } {
  const { request, source, target, holder } = ctx;
  const outbound = (source.outbounds ?? []).find((o) => o.name === request.outbound_name);
  if (outbound === undefined) {
    throw new BadRequest(
      `outbound_name does not exist: instance ${instanceText(source)} declares no outbound ${quote(request.outbound_name)} ` +
        `(its outbounds: ${names(source.outbounds ?? [])})`,
      { reason: 'outbound_name' },
    );
  }
  const inbound = (target.inbounds ?? []).find((i) => i.name === request.inbound_name);
  if (inbound === undefined) {
    throw new BadRequest(
      `inbound_name does not exist: instance ${instanceText(target)} declares no inbound ${quote(request.inbound_name)} ` +
        `(its inbounds: ${names(target.inbounds ?? [])})`,
      { reason: 'inbound_name' },
    );
  }
  if (source.uuid === target.uuid) {
    throw new BadRequest(
      `Can not create a connection between an inbound and an outbound of the same instance: ${instanceText(source)} ` +
        'cannot be connected to itself',
      { reason: 'self' },
    );
  }
  if (holder !== undefined) {
    const where = `connection ${holder.connection_id}, ${holder.status}`;
    if (holder.target_instance_id === target.uuid && holder.inbound_name === inbound.name) {
      throw new Conflict(`connection already exists: ${describeConnection(holder)} (${where})`, { reason: 'exists' });
    }
    throw new Conflict(
      `source instance already have its outbound interface connected: ${describeConnection(holder)} (${where}); ` +
        'an outbound takes one connection, remove that one first',
      { reason: 'outbound-connected' },
    );
  }
  return { outbound, inbound };
}

/** 403 when the outbound is required and the caller did not confirm with force. */
export function checkRemove(record: ConnectionRecord, force: boolean): void {
  if (record.outbound_required && !force) {
    throw new Forbidden(`${REQUIRED_OUTBOUND_MESSAGE}: ${describeConnection(record)} (use --force, or force=true)`, {
      reason: 'required',
    });
  }
}

/**
 * Deleting an instance ends all its connections; when other instances are connected to its
 * inbounds that needs force (A6). Its own outbounds' connections end without asking, as Nalej's
 * undeploy does: the instance that needed them is going away.
 */
export function checkInstanceDelete(instance: InstanceRecord, connections: readonly ConnectionRecord[], force: boolean): void {
  if (force) return;
  const inbound = connections.filter((c) => c.target_instance_id === instance.uuid && c.status !== 'TERMINATED');
  if (inbound.length === 0) return;
  const list = inbound.slice(0, 5).map(describeConnection).join(', ') + (inbound.length > 5 ? `, and ${inbound.length - 5} more` : '');
  throw new Forbidden(
    `can not delete the instance, it has inbound connections. User confirmation required: ${instanceText(instance)} ` +
      `has ${inbound.length} (${list}); use --force (force=true) to terminate them with it`,
    { reason: 'inbound-connections' },
  );
}
