// appnetd's Prometheus metrics (docs/metrics.md): one prom-client Registry per daemon (never the global one:
// a test process may run several), served as text by GET /metrics on the REST API and the admin socket.
//
// Counters of the data plane are read at scrape time, in collect() callbacks, from the snapshots the engine,
// the link manager and the services already keep: nothing runs per packet or between scrapes. The control
// plane observes its own durations (store operations, API requests, reconcile passes) into histograms as they
// happen. Labels are bounded by what the host carries: ports, VNIs, link peers, drop reasons, routes.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Engine } from '../../dataplane/engine.ts';
import type { LinkManager } from '../../dataplane/link/link-manager.ts';
import type { NatStats } from '../../dataplane/nat.ts';
import type { ServiceStats } from '../services/network-services.ts';
import type { StateView } from '../repo/state-view.ts';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** What the daemon has; absent parts (no store mode, links off, no NAT) simply add no families. */
export interface MetricSources {
  engine: Engine;
  links?: LinkManager;
  services?: { stats(): ServiceStats; leasesInUse?(): number };
  nat?: { stats(): { table: NatStats | null } };
  view?: StateView;
  /** Ports of the last reconcile pass still to be made. */
  pendingPorts?: () => number;
}

type Labels = Record<string, string | number>;
/** A counter set from a snapshot at scrape time (prom-client counters only go up: reset, then add the total). */
function setCounter<T extends string>(c: Counter<T>, labels: Labels, value: number): void {
  if (value > 0) c.inc(labels as Partial<Record<T, string | number>>, value);
}

export class DaemonMetrics {
  readonly registry = new Registry();
  readonly storeOps: Histogram<'op'>;
  readonly apiRequests: Histogram<'method' | 'route' | 'status'>;
  readonly reconcilePasses: Histogram<string>;
  #sources: MetricSources | undefined;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'appnet_' });
    // Gauges named like counters, which promtool rejects; the handles they count are in the heap figures anyway.
    for (const name of ['active_handles_total', 'active_requests_total', 'active_resources_total']) this.registry.removeSingleMetric(`appnet_nodejs_${name}`);
    this.storeOps = new Histogram({
      name: 'appnet_store_operation_seconds', help: 'Store operations (get, range, txn, ...) by operation, as this daemon waited for them',
      labelNames: ['op'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers,
    });
    this.apiRequests = new Histogram({
      name: 'appnet_api_request_seconds', help: 'REST API requests by method, route pattern and status',
      labelNames: ['method', 'route', 'status'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers,
    });
    this.reconcilePasses = new Histogram({
      name: 'appnet_reconcile_seconds', help: 'Reconcile passes (plan and apply)', buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers,
    });
    this.#engineFamilies(registers);
    this.#linkFamilies(registers);
    this.#serviceFamilies(registers);
    this.#controlFamilies(registers);
  }

  readonly #captureTotals = new Map<number, number>();
  #captureRetired = 0;

  /** A capture session's drop total as its last drain said (the engine's count is per session); `ended` when stopped. */
  noteCapture(id: number, dropped: number, ended = false): void {
    if (ended) {
      this.#captureTotals.delete(id);
      this.#captureRetired += dropped;
    } else {
      this.#captureTotals.set(id, dropped);
    }
  }

  /** The parts of the daemon read at scrape time (set once they exist). */
  attach(sources: MetricSources): void {
    this.#sources = sources;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  #engineFamilies(registers: Registry[]): void {
    const get = () => this.#sources?.engine.counters();
    const counter = <T extends string>(name: string, help: string, labelNames: T[], fill: (c: Counter<T>) => void) =>
      new Counter<T>({ name, help, labelNames, registers, collect() { this.reset(); fill(this); } });
    for (const dir of ['rx', 'tx'] as const) {
      for (const unit of ['packets', 'bytes'] as const) {
        const what = dir === 'rx' ? 'from the instance' : 'delivered to the instance';
        counter(`appnet_port_${dir}_${unit}_total`, `Frames ${what} (${unit}), by port`, ['port'], (c) => {
          for (const p of get()?.ports ?? []) setCounter(c, { port: p.name }, p[`${dir}_${unit}`]);
        });
        const vdir = dir === 'rx' ? 'decapsulated into the VNI' : 'sent to VTEPs';
        counter(`appnet_vni_${dir}_${unit}_total`, `Frames ${vdir} (${unit}), by VNI`, ['vni'], (c) => {
          for (const [vni, b] of Object.entries(get()?.vnis ?? {})) setCounter(c, { vni }, b[`${dir}_${unit}`]);
        });
      }
    }
    counter('appnet_port_drops_total', 'Frames dropped on a port, by reason', ['port', 'reason'], (c) => {
      for (const p of get()?.ports ?? []) for (const [reason, n] of Object.entries(p.drops)) setCounter(c, { port: p.name, reason }, n);
    });
    counter('appnet_vni_drops_total', 'Frames dropped in a VNI, by reason', ['vni', 'reason'], (c) => {
      for (const [vni, b] of Object.entries(get()?.vnis ?? {})) for (const [reason, n] of Object.entries(b.drops)) setCounter(c, { vni, reason }, n);
    });
    counter('appnet_wire_rx_packets_total', 'Datagrams received on the underlay socket', [], (c) => setCounter(c, {}, get()?.wire.rx_packets ?? 0));
    counter('appnet_wire_drops_total', 'Underlay datagrams dropped before reaching a VNI, by reason', ['reason'], (c) => {
      for (const [reason, n] of Object.entries(get()?.wire.drops ?? {})) setCounter(c, { reason }, n);
    });
    counter('appnet_engine_drops_total', 'Every drop of the engine (wire, VNIs, ports, uplink), by reason', ['reason'], (c) => {
      const s = get();
      if (!s) return;
      const sum = new Map<string, number>();
      const add = (drops: Record<string, number>) => { for (const [r, n] of Object.entries(drops)) sum.set(r, (sum.get(r) ?? 0) + n); };
      add(s.wire.drops);
      for (const b of Object.values(s.vnis)) add(b.drops);
      for (const p of s.ports) add(p.drops);
      if (s.uplink) add(s.uplink.drops);
      for (const [reason, n] of sum) setCounter(c, { reason }, n);
    });
    counter('appnet_punt_total', 'Frames handed to the control plane (DHCP, DNS, ARP, ping)', [], (c) => setCounter(c, {}, get()?.punt.punted ?? 0));
    counter('appnet_punt_dropped_total', 'Frames not punted because the punt queue was full', [], (c) => setCounter(c, {}, get()?.punt.dropped ?? 0));
    counter('appnet_offload_fallbacks_total', 'Offloads the kernel refused (the engine then sends singly), by kind', ['kind'], (c) => {
      for (const [kind, n] of Object.entries(get()?.offload ?? {})) if (kind.endsWith('_fallbacks')) setCounter(c, { kind }, n);
    });
    counter('appnet_uplink_super_packets_total', 'TCP super-packets that crossed the NAT uplink whole, by direction', ['direction'], (c) => {
      const o = get()?.offload;
      if (!o) return;
      setCounter(c, { direction: 'out' }, o.uplink_gso_writes);
      setCounter(c, { direction: 'in' }, o.uplink_gso_reads);
    });
    counter('appnet_engine_pipeline_reads_total', 'Reads from ports and the uplink (TX) and datagrams received (RX, link RX), by pipeline (engine.threads)', ['pipeline', 'kind'], (c) => {
      for (const [i, p] of (get()?.pipelines ?? []).entries()) {
        setCounter(c, { pipeline: String(i), kind: 'tx' }, p.tx_reads);
        setCounter(c, { pipeline: String(i), kind: 'rx' }, p.rx_datagrams);
        setCounter(c, { pipeline: String(i), kind: 'link_rx' }, p.link_datagrams);
      }
    });
    counter('appnet_capture_ring_drops_total', 'Captured frames lost because a capture ring was full', [], (c) => {
      let sum = this.#captureRetired;
      for (const n of this.#captureTotals.values()) sum += n;
      setCounter(c, {}, sum);
    });
  }

  #linkFamilies(registers: Registry[]): void {
    const peers = () => this.#sources?.links?.peers() ?? [];
    const name = (vtep: string) => {
      for (const h of this.#sources?.view?.hosts.values() ?? []) if (h.underlay_address === vtep) return h.name;
      return vtep;
    };
    new Gauge({
      name: 'appnet_link_handshake_age_seconds', help: 'Seconds since the current session with a peer was made (absent: no session)',
      labelNames: ['peer'], registers,
      collect() { this.reset(); for (const p of peers()) if (p.current) this.set({ peer: name(p.vtep) }, p.current.ageMs / 1000); },
    });
    new Gauge({
      name: 'appnet_link_sessions', help: 'Sessions held with a peer (current, previous, next)', labelNames: ['peer'], registers,
      collect() { this.reset(); for (const p of peers()) this.set({ peer: name(p.vtep) }, [p.current, p.previous, p.next].filter((s) => s !== null).length); },
    });
    const perPeer = (metric: string, help: string, value: (p: ReturnType<typeof peers>[number]) => number) =>
      new Counter({ name: metric, help, labelNames: ['peer'], registers, collect() { this.reset(); for (const p of peers()) setCounter(this, { peer: name(p.vtep) }, value(p)); } });
    perPeer('appnet_link_rx_bytes_total', 'Bytes received from a peer (decrypted)', (p) => p.rx_bytes);
    perPeer('appnet_link_tx_bytes_total', 'Bytes sent to a peer (before encryption)', (p) => p.tx_bytes);
    perPeer('appnet_link_rx_packets_total', 'Data messages received from a peer', (p) => p.rx_packets);
    perPeer('appnet_link_tx_packets_total', 'Data messages sent to a peer', (p) => p.tx_packets);
    perPeer('appnet_link_roams_total', 'Times an authenticated packet moved the peer\'s endpoint', (p) => p.roams);
    perPeer('appnet_link_handshakes_received_total', 'Handshake messages received from a peer', (p) => p.handshakes_rx);
    perPeer('appnet_link_rekeys_total', 'Sessions made with a peer since start: the first handshake and every rekey', (p) => this.#sources?.links?.sessionsMade().get(p.vtep) ?? 0);
    new Counter({
      name: 'appnet_link_drops_total', help: 'Link messages dropped, by reason (every peer and none)', labelNames: ['reason'], registers,
      collect: () => {
        const c = this.registry.getSingleMetric('appnet_link_drops_total') as Counter<'reason'>;
        c.reset();
        const sum = new Map<string, number>();
        for (const p of peers()) for (const [r, n] of Object.entries(p.drops)) sum.set(r, (sum.get(r) ?? 0) + n);
        for (const [r, n] of Object.entries(this.#sources?.engine.counters().links?.drops ?? {})) sum.set(r, (sum.get(r) ?? 0) + n);
        for (const [reason, n] of sum) setCounter(c, { reason }, n);
      },
    });
    new Counter({
      name: 'appnet_link_handshakes_total', help: 'Handshakes: completed, or failed by reason', labelNames: ['result'], registers,
      collect: () => {
        const c = this.registry.getSingleMetric('appnet_link_handshakes_total') as Counter<'result'>;
        c.reset();
        const h = this.#sources?.links?.counters();
        if (!h) return;
        setCounter(c, { result: 'completed' }, h.completed);
        for (const [reason, n] of Object.entries(h.failed)) setCounter(c, { result: `failed_${reason}` }, n);
      },
    });
  }

  #serviceFamilies(registers: Registry[]): void {
    const services = () => this.#sources?.services?.stats();
    const nat = () => this.#sources?.nat?.stats().table ?? null;
    const family = <T extends string>(name: string, help: string, labelNames: T[], fill: (c: Counter<T>) => void) =>
      new Counter<T>({ name, help, labelNames, registers, collect() { this.reset(); fill(this); } });
    family('appnet_dhcp_messages_total', 'DHCP replies sent, by type', ['type'], (c) => {
      for (const [type, n] of Object.entries(services()?.dhcp.sent ?? {})) setCounter(c, { type }, n);
    });
    family('appnet_dhcp_lease_changes_total', 'DHCP lease changes, by kind', ['change'], (c) => {
      for (const [change, n] of Object.entries(services()?.dhcp.leases ?? {})) setCounter(c, { change }, n);
    });
    new Gauge({ name: 'appnet_dhcp_leases', help: 'DHCP leases bound and unexpired on the networks this host serves', registers, collect: () => {
      (this.registry.getSingleMetric('appnet_dhcp_leases') as Gauge).set(this.#sources?.services?.leasesInUse?.() ?? 0);
    } });
    family('appnet_dns_answers_total', 'DNS replies, by RCODE', ['rcode'], (c) => {
      for (const [rcode, n] of Object.entries(services()?.dns.replies ?? {})) setCounter(c, { rcode }, n);
    });
    family('appnet_dns_forwarded_total', 'DNS queries forwarded to the upstream', [], (c) => setCounter(c, {}, services()?.dns.forwarded ?? 0));
    family('appnet_services_drops_total', 'Frames the services dropped, by service and reason', ['service', 'reason'], (c) => {
      const s = services();
      if (!s) return;
      for (const [service, drops] of [['gateway', s.gateway.dropped], ['dhcp', s.dhcp.dropped], ['dns', s.dns.dropped]] as const) {
        for (const [reason, n] of Object.entries(drops)) setCounter(c, { service, reason }, n ?? 0);
      }
    });
    new Gauge({ name: 'appnet_nat_flows', help: 'NAT flows in the table', registers, collect() { this.set(nat()?.entries ?? 0); } });
    new Gauge({ name: 'appnet_nat_capacity', help: 'NAT table capacity (flows)', registers, collect() { this.set(nat()?.capacity ?? 0); } });
    family('appnet_nat_translations_total', 'Packets NAT translated, by direction', ['direction'], (c) => {
      for (const [direction, n] of Object.entries(nat()?.translated ?? {})) setCounter(c, { direction }, n);
    });
    family('appnet_nat_drops_total', 'Packets the NAT table refused, by reason', ['reason'], (c) => {
      for (const [reason, n] of Object.entries(nat()?.drops ?? {})) setCounter(c, { reason }, n);
    });
  }

  #controlFamilies(registers: Registry[]): void {
    const view = () => this.#sources?.view;
    new Gauge({ name: 'appnet_hosts', help: 'Hosts with a live lease in the store', registers, collect() { this.set(view()?.hosts.size ?? 0); } });
    new Gauge({
      name: 'appnet_connections', help: 'Application connections, by status', labelNames: ['status'], registers,
      collect() {
        this.reset();
        const by = new Map<string, number>([['WAITING', 0], ['ESTABLISHED', 0], ['TERMINATED', 0], ['ERROR', 0]]);
        for (const c of view()?.connections.values() ?? []) by.set(c.status, (by.get(c.status) ?? 0) + 1);
        for (const [status, n] of by) this.set({ status }, n);
      },
    });
    new Gauge({ name: 'appnet_pending_ports', help: 'Ports of the last reconcile pass not made yet', registers, collect: () => {
      (this.registry.getSingleMetric('appnet_pending_ports') as Gauge).set(this.#sources?.pendingPorts?.() ?? 0);
    } });
    new Gauge({
      name: 'appnet_watch_lag_seconds', help: 'How long the view took, at this scrape, to catch up with every write committed before it (a round trip when current)',
      registers,
      collect: async () => {
        const v = view();
        if (!v) return;
        const started = performance.now();
        await v.sync().catch(() => undefined);
        (this.registry.getSingleMetric('appnet_watch_lag_seconds') as Gauge).set((performance.now() - started) / 1000);
      },
    });
    new Gauge({ name: 'appnet_store_seen_revision', help: 'The latest store revision this daemon\'s view has applied', registers, collect() {
      this.set(view()?.seenRevision ?? 0);
    } });
  }
}
