// Connection status from observed facts (connections/realise.ts):
//
//   every endpoint host:  its ports + its link sessions --desiredReports--> /appnet/connection-endpoints/<id>/<side>
//                         (put under the host's lease, only when a report changes)
//   the status applier:   reports + records --nextStatus--> repo hooks (markEstablished, markWaiting,
//   (first live host)                                       finishTermination): each change an event
//
// Runs after every reconcile pass (ports just changed) and on a short tick (link sessions come and
// go without any store change, and other hosts' reports are not watched).
import type { Logger } from 'pino';
import { isApiError } from '../errors.ts';
import {
  CONNECTION_ENDPOINTS_PREFIX, ENDPOINT_SIDES, endpointReportKey, isRealisable, nextStatus, statusApplier,
  type EndpointReport, type EndpointReports, type EndpointSide,
} from '../connections/realise.ts';
import type { ConnectionRecord } from '../connections/model.ts';
import type { LeaseId, Store } from '../store/store.ts';
import type { DesiredState } from './plan.ts';

const TICK_MS = 1000;
/** Status writes issued together (each its own compare-and-swap), as the reconciler's state writes. */
const WRITE_GROUP = 25;

/** What makes a side report an error (EndpointReport.error). */
export interface FailureWatch {
  /** Why the side's port could not be made, if it could not. */
  portError?: (iface: string) => string | undefined;
  /** A link down this long while the other side's host is live is a failing handshake (0: never). */
  handshakeMs?: number;
  now?: number;
  /** Report key -> when its link was first seen down with the other host live; kept by the caller between runs. */
  linkDownSince?: Map<string, number>;
}

/**
 * This host's reports, by key. A side is reported by the host its instance is placed on,
 * for realisable connections only (a TERMINATED one's report goes away with its port). `hasPort`
 * says whether the engine holds the side's port; `sessions` are the underlay addresses of link
 * peers with a current session. Pure but for `watch.linkDownSince`, which it keeps current.
 */
export function desiredReports(
  host: string,
  state: DesiredState,
  hasPort: (iface: string) => boolean,
  sessions: ReadonlySet<string>,
  watch: FailureWatch = {},
): Map<string, EndpointReport> {
  const reports = new Map<string, EndpointReport>();
  const downSeen = new Set<string>();
  for (const c of state.connections?.values() ?? []) {
    if (!isRealisable(c)) continue;
    const hosts = { outbound: state.instances.get(c.source_instance_id)?.host, inbound: state.instances.get(c.target_instance_id)?.host };
    for (const side of ENDPOINT_SIDES) {
      if (hosts[side] !== host) continue;
      const iface = `${c.connection_id}/${side}`;
      const attached = hasPort(iface);
      const other = hosts[side === 'outbound' ? 'inbound' : 'outbound'];
      const vtep = other === undefined ? undefined : state.hosts.get(other)?.underlay_address;
      const linkUp = other === host || (vtep !== undefined && sessions.has(vtep));
      const key = endpointReportKey(c.connection_id, side);
      const report: EndpointReport = { host, attached, link_up: attached && linkUp };
      const portError = attached ? undefined : watch.portError?.(iface);
      if (portError !== undefined) report.error = `its port could not be made: ${portError}`;
      // The other host is live (its record is under its lease) and this side is attached: a link still
      // down after handshakeMs is handshakes that keep failing, not a peer away.
      if (attached && !linkUp && vtep !== undefined && watch.linkDownSince && watch.now !== undefined && (watch.handshakeMs ?? 0) > 0) {
        downSeen.add(key);
        const since = watch.linkDownSince.get(key) ?? watch.now;
        watch.linkDownSince.set(key, since);
        if (watch.now - since > watch.handshakeMs!) {
          report.error = `no link session with host ${other} (${vtep}) for more than ${Math.round(watch.handshakeMs! / 1000)} s: its handshakes keep failing`;
        }
      }
      reports.set(key, report);
    }
  }
  if (watch.linkDownSince) for (const key of [...watch.linkDownSince.keys()]) if (!downSeen.has(key)) watch.linkDownSince.delete(key);
  return reports;
}

/** The hooks of repo/connections.ts that the applier drives. */
export interface ConnectionHooks {
  markEstablished(id: string): Promise<unknown>;
  markWaiting(id: string, reason: string): Promise<unknown>;
  markError(id: string, reason: string): Promise<unknown>;
  finishTermination(id: string): Promise<void>;
}

export interface ConnectionReportsOptions {
  store: Store;
  host: string;
  /** The desired state (StateView.state()), current. */
  state: () => DesiredState;
  /** This host's lease (HostRegistry.lease); reports vanish with it. */
  lease: () => LeaseId | undefined;
  hasPort: (iface: string) => boolean;
  /** Underlay addresses of the link peers with a current session. */
  sessions: () => ReadonlySet<string>;
  hooks: ConnectionHooks;
  log: Logger;
  tickMs?: number;
  /** Why a connection port could not be made (the reconciler's last attempt), if it could not. */
  portError?: (iface: string) => string | undefined;
  /** ERROR for a link with no session this long while the other host is live (default 120 s; 0: never). */
  handshakeTimeoutMs?: number;
  /** ERROR for a connection never established, WAITING this long with a side not attached (default 300 s; 0: never). */
  placementTimeoutMs?: number;
  now?: () => number;
}

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 120_000;
export const DEFAULT_PLACEMENT_TIMEOUT_MS = 300_000;

export class ConnectionReports {
  readonly #o: ConnectionReportsOptions;
  /** Key -> JSON as last put by this run (with #lease). */
  readonly #written = new Map<string, string>();
  #lease: LeaseId | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #closed = false;
  readonly #linkDownSince = new Map<string, number>();

  constructor(o: ConnectionReportsOptions) {
    this.#o = o;
  }

  start(): void {
    this.#timer = setInterval(() => void this.update(), this.#o.tickMs ?? TICK_MS);
    void this.update();
  }

  /** Reports, then status; coalesced: one run at a time, another right after if asked meanwhile. */
  update(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        try {
          await this.#report();
          await this.#applyStatus();
        } catch (e) {
          this.#o.log.warn({ err: e }, 'connection reports not brought up to date; retrying on the next tick');
        }
      } while (this.#again && !this.#closed);
      this.#running = undefined;
    })();
    return this.#running;
  }

  /** Stops; the reports stay until the lease goes (graceful shutdown revokes it). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#running;
  }

  async #report(): Promise<void> {
    const { store, host } = this.#o;
    const lease = this.#o.lease();
    if (lease === undefined) return;
    if (lease !== this.#lease) {
      // First run, or the lease expired and the host registered again: the old reports are gone or
      // belong to a dead lease. Take over whatever reports name this host.
      this.#written.clear();
      const { kvs } = await store.range(CONNECTION_ENDPOINTS_PREFIX);
      for (const kv of kvs) {
        if ((JSON.parse(kv.value) as EndpointReport).host === host) this.#written.set(kv.key, '');
      }
      this.#lease = lease;
    }
    const want = desiredReports(host, this.#o.state(), this.#o.hasPort, this.#o.sessions(), {
      portError: this.#o.portError, handshakeMs: this.#o.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      now: this.#now(), linkDownSince: this.#linkDownSince,
    });
    const puts: Array<[string, string]> = [];
    for (const [key, report] of want) {
      const text = JSON.stringify(report);
      if (this.#written.get(key) !== text) puts.push([key, text]);
    }
    const deletes = [...this.#written.keys()].filter((k) => !want.has(k));
    for (let i = 0; i < puts.length; i += WRITE_GROUP) {
      await Promise.all(puts.slice(i, i + WRITE_GROUP).map(async ([key, text]) => {
        await store.put(key, text, { lease });
        this.#written.set(key, text);
      }));
    }
    for (const key of deletes) {
      // Only while it is still this host's (an instance moved: the new host reports that side).
      const kv = await store.get(key);
      if (kv && (JSON.parse(kv.value) as EndpointReport).host === host) {
        await store.txn({ compare: [{ key, target: 'modRevision', op: '==', value: kv.modRevision }], success: [{ type: 'delete', key }] });
      }
      this.#written.delete(key);
    }
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  async #applyStatus(): Promise<void> {
    const state = this.#o.state();
    if (statusApplier(state.hosts.keys()) !== this.#o.host) return;
    const byConnection = new Map<string, EndpointReports>();
    const { kvs } = await this.#o.store.range(CONNECTION_ENDPOINTS_PREFIX);
    for (const kv of kvs) {
      const [id, side] = kv.key.slice(CONNECTION_ENDPOINTS_PREFIX.length).split('/') as [string, EndpointSide];
      const reports = byConnection.get(id) ?? {};
      reports[side] = JSON.parse(kv.value) as EndpointReport;
      byConnection.set(id, reports);
    }
    const hostOf = (uuid: string) => state.instances.get(uuid)?.host;
    const steps: Array<() => Promise<unknown>> = [];
    for (const c of state.connections?.values() ?? []) {
      const step = nextStatus(c, byConnection.get(c.connection_id) ?? {}, hostOf, {
        now: this.#now(), placementMs: this.#o.placementTimeoutMs ?? DEFAULT_PLACEMENT_TIMEOUT_MS,
      });
      if (step.type === 'none') continue;
      steps.push(() => this.#step(c, step).catch((e) => {
        // A record that moved meanwhile (removed, ERROR): the next run decides again.
        if (!isApiError(e)) throw e;
        this.#o.log.debug({ err: e, connection: c.connection_id }, 'connection status step skipped');
      }));
    }
    for (let i = 0; i < steps.length; i += WRITE_GROUP) await Promise.all(steps.slice(i, i + WRITE_GROUP).map((s) => s()));
  }

  #step(c: ConnectionRecord, step: Exclude<ReturnType<typeof nextStatus>, { type: 'none' }>): Promise<unknown> {
    const { hooks, log } = this.#o;
    const id = c.connection_id;
    if (step.type === 'establish') {
      log.info({ connection: id }, 'connection established');
      return hooks.markEstablished(id);
    }
    if (step.type === 'fail') {
      log.warn({ connection: id, reason: step.reason }, 'connection failed');
      return hooks.markError(id, step.reason);
    }
    if (step.type === 'wait') {
      if (c.status === 'ESTABLISHED') log.info({ connection: id, reason: step.reason }, 'connection waiting');
      return hooks.markWaiting(id, step.reason);
    }
    log.info({ connection: id }, 'connection torn down everywhere; record finished');
    return hooks.finishTermination(id);
  }
}
