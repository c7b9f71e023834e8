// How a connection is realised in the data plane, and how its status follows from what the two
// endpoint hosts observe. Pure: the reconciler (plan.ts) and the status applier
// (reconcile/connection-reports.ts) call these with records and reports, and do the I/O.
//
//   connection record --planHost--> on each endpoint's host: one TAP port in the instance's netns
//                                   (ao<8 hex>/ai<8 hex>), on the connection's VNI, encrypted,
//                                   filtered to the inbound's protocol and port
//   endpoint reports  --nextStatus--> ESTABLISHED | WAITING (reason) | finished (TERMINATED, no reports)
//
// A status is decided from observed facts only: each endpoint host's daemon writes one report per
// side under its host lease, so a dead daemon's reports vanish with its lease and the connection
// goes back to WAITING without anyone having to notice the death.

import { createHash } from 'node:crypto';
import type { ConnectionRecord } from './model.ts';

export type EndpointSide = 'outbound' | 'inbound';
export const ENDPOINT_SIDES: readonly EndpointSide[] = ['outbound', 'inbound'];

/** `/appnet/connection-endpoints/<id>/<side>`: one endpoint host's observation, under its lease. */
export const CONNECTION_ENDPOINTS_PREFIX = '/appnet/connection-endpoints/';

export interface EndpointReport {
  host: string;
  /** The side's TAP port exists in the instance's netns, addressed. */
  attached: boolean;
  /** Both sides on this host, or the link to the other side's host has a current session. */
  link_up: boolean;
  /**
   * A failure on this side that will not fix itself: the port could not be made, or the link to the other
   * side's (live) host has had no session for the configured time. The connection goes to ERROR with it.
   */
  error?: string;
}

export type EndpointReports = Partial<Record<EndpointSide, EndpointReport>>;

/** What the engine enforces on a connection port (dataplane/engine.ts PortSpec.filter). */
export interface ConnectionFilter {
  localAddress: string;
  peerAddress: string;
  protocol: 'tcp' | 'udp';
  port: number;
  side: EndpointSide;
}

export function endpointReportKey(connectionId: string, side: EndpointSide): string {
  return `${CONNECTION_ENDPOINTS_PREFIX}${connectionId}/${side}`;
}

/** A connection the data plane should carry: not ERROR/TERMINATED, with a VNI and link addresses. */
export function isRealisable(c: ConnectionRecord): c is ConnectionRecord & { vni: number; link: NonNullable<ConnectionRecord['link']> } {
  return (c.status === 'WAITING' || c.status === 'ESTABLISHED') && c.vni !== null && c.link !== null;
}

/** `ao` (outbound) / `ai` (inbound) + the first 8 hex digits of the connection id: <= 15 bytes. */
export function connectionPortName(connectionId: string, side: EndpointSide): string {
  return `${side === 'outbound' ? 'ao' : 'ai'}${connectionId.replace(/-/g, '').slice(0, 8).toLowerCase()}`;
}

/**
 * Locally administered unicast (02:...), from a hash of the id, the last byte naming the side. The
 * link's VNI holds exactly these two MACs, so they differ by construction; the hash only keeps
 * them apart from other connections' MACs in captures.
 */
export function connectionMac(connectionId: string, side: EndpointSide): string {
  const h = createHash('sha256').update(connectionId).digest();
  const bytes = [0x02, h[0], h[1], h[2], h[3], side === 'outbound' ? 0x0a : 0x0b];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The side's address with prefix length, e.g. `198.19.128.0/31`. */
export function connectionCidr(c: ConnectionRecord & { link: NonNullable<ConnectionRecord['link']> }, side: EndpointSide): string {
  const address = side === 'outbound' ? c.link.outbound_address : c.link.inbound_address;
  return `${address}/${c.link.prefix_len}`;
}

export function connectionFilter(c: ConnectionRecord & { link: NonNullable<ConnectionRecord['link']> }, side: EndpointSide): ConnectionFilter {
  const out = c.link.outbound_address;
  const inb = c.link.inbound_address;
  return {
    localAddress: side === 'outbound' ? out : inb,
    peerAddress: side === 'outbound' ? inb : out,
    protocol: c.inbound_protocol,
    port: c.inbound_port,
    side,
  };
}

export type StatusStep =
  | { type: 'establish' }
  | { type: 'wait'; reason: string }
  /** A real failure: to ERROR with the reason (final short of removal). */
  | { type: 'fail'; reason: string }
  /** TERMINATED and no endpoint reports remain: the link is torn down everywhere. */
  | { type: 'finish' }
  | { type: 'none' };

/**
 * The next status step of `record` given the reports of its two sides. `hostOf` gives the host an
 * instance is placed on (undefined: the instance is gone), to name the side in a reason.
 *
 * ESTABLISHED needs both reports attached && link_up; otherwise WAITING with a reason naming every
 * missing side (a WAITING connection whose reason would not change gets `none`: no write). ERROR
 * is final short of removal. A TERMINATED record is finished once no report remains: every host
 * has removed its port (or its daemon died and its lease took the reports along).
 *
 * ERROR, with the reason: a side reports an error (its host could not make the port, or its link
 * handshakes kept failing); or, with `placementMs`, a connection never established has been WAITING
 * for longer than that with a side not attached (its instance was never placed on a live host).
 */
export function nextStatus(
  record: ConnectionRecord,
  reports: EndpointReports,
  hostOf: (instanceId: string) => string | undefined,
  limits: { now?: number; placementMs?: number } = {},
): StatusStep {
  if (record.status === 'TERMINATED') {
    return reports.outbound === undefined && reports.inbound === undefined ? { type: 'finish' } : { type: 'none' };
  }
  if (!isRealisable(record)) return { type: 'none' };
  for (const side of ENDPOINT_SIDES) {
    const r = reports[side];
    if (r?.error !== undefined) return { type: 'fail', reason: `${side} side on host ${r.host}: ${r.error}` };
  }
  const { now, placementMs } = limits;
  if (placementMs !== undefined && placementMs > 0 && now !== undefined && record.status === 'WAITING' &&
      record.established_at === undefined && now - record.status_updated_at > placementMs) {
    const unplaced = ENDPOINT_SIDES.filter((side) => !reports[side]?.attached);
    if (unplaced.length > 0) {
      const which = unplaced.map((side) => `${side} instance ${side === 'outbound' ? record.source_instance_name : record.target_instance_name}`);
      return { type: 'fail', reason: `${which.join(' and ')} not placed and attached on a live host within ${Math.round(placementMs / 1000)} s` };
    }
  }
  const missing: string[] = [];
  for (const side of ENDPOINT_SIDES) {
    const r = reports[side];
    const instanceId = side === 'outbound' ? record.source_instance_id : record.target_instance_id;
    const host = r?.host ?? hostOf(instanceId);
    const where = host === undefined ? `${side} side (instance ${instanceId} is not placed)` : `${side} side on host ${host}`;
    if (r === undefined || !r.attached) {
      missing.push(`${where} is not attached`);
    } else if (!r.link_up) {
      const other = hostOf(side === 'outbound' ? record.target_instance_id : record.source_instance_id);
      missing.push(`${where} has no link session${other === undefined ? '' : ` with host ${other}`}`);
    }
  }
  if (missing.length === 0) return record.status === 'ESTABLISHED' ? { type: 'none' } : { type: 'establish' };
  const reason = missing.join('; ');
  return record.status === 'WAITING' && record.reason === reason ? { type: 'none' } : { type: 'wait', reason };
}

/**
 * The one host that applies status steps: the first live host by name. Every daemon computes the
 * same choice from the registered hosts; writes are compare-and-swap, so a moment with two appliers
 * (a host joining or leaving) costs a retried write, never a wrong status.
 */
export function statusApplier(liveHosts: Iterable<string>): string | undefined {
  let first: string | undefined;
  for (const h of liveHosts) if (first === undefined || h < first) first = h;
  return first;
}
