// The application connection: one instance's outbound interface joined to another instance's
// inbound interface (Nalej's ConnectionInstance, reference A2). appnet realises it as a
// point-to-point encrypted link between the two instances' sidecars, carrying VXLAN with the
// connection's own VNI; the outbound side reaches the inbound at `link.inbound_address` on
// `inbound_port` and nothing else.
//
// Identity: `connection_id` (a UUID) names the record; the reference's composite key (source,
// target, inbound, outbound) stays unique because an outbound carries at most one connection,
// which the store enforces with a claim key per outbound (repo/connections.ts).
//
// Names and the outbound's required flag are copied from the instances when the connection is
// made (as Nalej does), so the record still reads well while an endpoint is being deleted.

import type { InboundProtocol } from '../instances/appnet-interfaces.ts';

export const CONNECTION_RECORD_VERSION = 1;
export const CONNECTION_STATUSES = ['WAITING', 'ESTABLISHED', 'TERMINATED', 'ERROR'] as const;
export type ConnectionStatus = (typeof CONNECTION_STATUSES)[number];

/** The two link addresses of a connection: a /31 from the link pool (link-pool.ts). */
export interface LinkAddresses {
  /** The source (outbound) instance's address on the link. */
  outbound_address: string;
  /** The address the source dials: the target (inbound) side of the link. */
  inbound_address: string;
  prefix_len: number;
}

/** What `add` names: the reference's four fields (the organisation is the caller's namespace). */
export interface ConnectionRequest {
  source_instance_id: string;
  outbound_name: string;
  target_instance_id: string;
  inbound_name: string;
}

export interface ConnectionRecord {
  connection_id: string;
  /** The source instance's namespace; the connection is visible to it, the target's and system. */
  namespace: string;
  /** The target instance's namespace (the same unless a system caller joined two namespaces). */
  target_namespace: string;
  source_instance_id: string;
  source_instance_name: string;
  outbound_name: string;
  outbound_required: boolean;
  target_instance_id: string;
  target_instance_name: string;
  inbound_name: string;
  inbound_port: number;
  inbound_protocol: InboundProtocol;
  status: ConnectionStatus;
  /** Why the connection is WAITING (after it was up), ERROR or TERMINATED; null otherwise. */
  reason: string | null;
  /** null when no address could be allocated (then status is ERROR). */
  link: LinkAddresses | null;
  /** The VNI inside the encrypted link; null when none could be allocated (ERROR). */
  vni: number | null;
  created_at: number;
  status_updated_at: number;
  /** When it was first ESTABLISHED (absent until then): the placement time limit applies only before. */
  established_at?: number;
  version: number;
}

/** One status change, stored as an event (repo/connections.ts) and watchable. */
export interface ConnectionEvent {
  /** Seconds since the epoch (fractional), as network events. */
  timestamp: number;
  connection_id: string;
  namespace: string;
  target_namespace: string;
  /** null: the record did not exist yet. */
  from: ConnectionStatus | null;
  /** null: the record was deleted. */
  to: ConnectionStatus | null;
  reason: string | null;
  message: string;
}

/** Whether a caller of `namespace` sees the connection: either endpoint's namespace, or system. */
export function connectionVisibleTo(record: { namespace: string; target_namespace: string }, namespace: string, system: string): boolean {
  return namespace === system || record.namespace === namespace || record.target_namespace === namespace;
}

/** A short human name of a connection for messages: `vm1/db -> sink/in`. */
export function describeConnection(c: {
  source_instance_name: string;
  outbound_name: string;
  target_instance_name: string;
  inbound_name: string;
}): string {
  return `${c.source_instance_name}/${c.outbound_name} -> ${c.target_instance_name}/${c.inbound_name}`;
}
