// Usage events, the reference's `usage` events (daemons/resources.py): every `usageIntervalSeconds`
// (default 60) this host adds to each network it has local ports on one event of type and message
// `usage`, whose `extra` holds the host's cumulative counters summed over its ports of the network:
//
//   {host, ports, rx: {packets, bytes, dropped}, tx: {packets, bytes}}
//
// rx is what the instances sent into the network, tx what the network delivered to them (the
// engine's port counters). The reference counts its egress veth, which one network node holds; here
// every host with ports reports its own share, so a network's usage is the sum of the latest event
// of each host. Counters start at zero when a port is created (also after a daemon restart).
//
// Events go under /appnet/events/<network>/ with the key form of repo/networks.ts (store revision
// first), so they list with the network's other events: GET /networks/{ref}/events?event_type=usage.
import type { Logger } from 'pino';
import type { Engine, PortCounters } from '../../dataplane/engine.ts';
import type { EventRecord } from '../repo/networks.ts';
import type { Store } from '../store/store.ts';
import { EVENTS_PREFIX } from '../repo/keys.ts';

export interface UsageCounters {
  ports: number;
  rx: { packets: number; bytes: number; dropped: number };
  tx: { packets: number; bytes: number };
}

/** Sums the counters of each network's ports; a port the engine no longer lists counts nothing. Pure. */
export function usageByNetwork(ports: readonly PortCounters[], portsByNetwork: ReadonlyMap<string, readonly number[]>): Map<string, UsageCounters> {
  const byId = new Map(ports.map((p) => [p.id, p]));
  const out = new Map<string, UsageCounters>();
  for (const [network, ids] of portsByNetwork) {
    const u: UsageCounters = { ports: 0, rx: { packets: 0, bytes: 0, dropped: 0 }, tx: { packets: 0, bytes: 0 } };
    for (const id of ids) {
      const p = byId.get(id);
      if (!p) continue;
      u.ports++;
      u.rx.packets += p.rx_packets;
      u.rx.bytes += p.rx_bytes;
      u.rx.dropped += Object.values(p.drops).reduce((a, b) => a + b, 0);
      u.tx.packets += p.tx_packets;
      u.tx.bytes += p.tx_bytes;
    }
    out.set(network, u);
  }
  return out;
}

/** The event row of one sample, in the reference's event shape. Pure. */
export function usageEvent(host: string, usage: UsageCounters, nowMs: number): EventRecord {
  return { timestamp: nowMs / 1000, fqdn: host, duration: null, message: 'usage', type: 'usage', extra: { host, ...usage } };
}

export interface UsageReporterOptions {
  store: Store;
  engine: Pick<Engine, 'counters'>;
  /** Port ids of each network this host has local ports on (NetworkServices.localPorts). */
  localPorts: () => Map<string, number[]>;
  host: string;
  intervalSeconds: number;
  log: Logger;
  now?: () => number;
}

export class UsageReporter {
  readonly #o: UsageReporterOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #seq = 0;

  constructor(o: UsageReporterOptions) {
    this.#o = o;
  }

  /** Reports every interval until close(); an interval of 0 reports nothing. */
  start(): void {
    if (this.#o.intervalSeconds <= 0 || this.#timer) return;
    this.#timer = setInterval(() => {
      // A slow store must not pile up reports: skip a tick while the last one is still writing.
      if (this.#running) return;
      this.#running = this.report().catch((err) => this.#o.log.warn({ err }, 'usage events not written; next interval tries again'))
        .finally(() => { this.#running = undefined; });
    }, this.#o.intervalSeconds * 1000);
    this.#timer.unref();
  }

  /** One event per network with local ports, now. */
  async report(): Promise<void> {
    const networks = this.#o.localPorts();
    if (networks.size === 0) return;
    const usage = usageByNetwork(this.#o.engine.counters().ports, networks);
    const now = (this.#o.now ?? Date.now)();
    const revision = await this.#o.store.revision();
    for (const [network, u] of usage) {
      this.#seq = (this.#seq + 1) % 1_000_000;
      const key = `${EVENTS_PREFIX}${network}/${String(revision).padStart(15, '0')}-${String(now).padStart(15, '0')}-${String(this.#seq).padStart(6, '0')}`;
      await this.#o.store.put(key, JSON.stringify(usageEvent(this.#o.host, u, now)));
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }
}
