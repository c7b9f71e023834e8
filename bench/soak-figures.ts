// The soak's figures (bench/soak.ts): what one sample of a daemon holds, the counters that must not move,
// the per-minute line and the end-of-run summary (least-squares slope of RSS and open descriptors). Pure:
// the samples come in as the admin API returned them.

/** One daemon at one moment: GET /engine/stats, /engine/counters, /engine/links and /services/stats. */
export interface DaemonSample {
  atS: number;
  stats: { eluIdleMs: number; eluActiveMs: number; rssBytes: number; openFds: number };
  counters: {
    wire: { drops: Record<string, number> };
    vnis: Record<string, { drops: Record<string, number> }>;
    ports: Array<{ drops: Record<string, number> }>;
    uplink?: { drops: Record<string, number> };
    punt: { dropped: number };
    links?: { drops: Record<string, number> };
  };
  links: { handshakes: { failed: Record<string, number> }; peers: Array<{ drops: Record<string, number> }> } | null;
  services: { dhcp?: { sent: { NAK: number; ACK: number } } } | null;
}

/**
 * Every counter that must stay where it was when the soak's traffic started, summed over the daemon's
 * blocks: engine drops by reason (wire, VNIs, ports, uplink), punt ring overflows, link drops by reason
 * (AEAD tag failures are `bad_tag`, replays of genuine traffic `replay`), handshake failures by reason,
 * DHCP NAKs. `provoked` names engine drop reasons the soak causes on purpose (none today).
 */
export function mustStayZero(s: DaemonSample, provoked: ReadonlySet<string> = new Set()): Record<string, number> {
  const out: Record<string, number> = {};
  const add = (key: string, n: number | undefined) => {
    if (n) out[key] = (out[key] ?? 0) + n;
  };
  const c = s.counters;
  const engineBlocks = [c.wire, ...Object.values(c.vnis), ...c.ports, ...(c.uplink ? [c.uplink] : [])];
  for (const b of engineBlocks) for (const [r, n] of Object.entries(b.drops)) if (!provoked.has(r)) add(`engine_drop_${r}`, n);
  add('punt_dropped', c.punt.dropped);
  for (const b of [...(c.links ? [c.links] : []), ...(s.links?.peers ?? [])]) for (const [r, n] of Object.entries(b.drops)) add(`link_drop_${r}`, n);
  for (const [r, n] of Object.entries(s.links?.handshakes.failed ?? {})) add(`handshake_failed_${r}`, n);
  add('dhcp_nak', s.services?.dhcp?.sent.NAK);
  return out;
}

/** What moved between two samples: keys with a non-zero difference. */
export function moved(from: Record<string, number>, to: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(from), ...Object.keys(to)])) {
    const d = (to[k] ?? 0) - (from[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/** Event-loop utilisation between two samples, 0..1. */
export function elu(a: DaemonSample, b: DaemonSample): number {
  const active = b.stats.eluActiveMs - a.stats.eluActiveMs;
  const idle = b.stats.eluIdleMs - a.stats.eluIdleMs;
  return active + idle > 0 ? active / (active + idle) : 0;
}

/** Least-squares slope of y over x; 0 for fewer than two points. */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const mb = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

/** The line printed each minute for one daemon. */
export function minuteLine(host: string, prev: DaemonSample, cur: DaemonSample, baseline: Record<string, number>): string {
  const m = moved(baseline, mustStayZero(cur));
  const list = Object.entries(m).map(([k, v]) => `${k}=${v}`).join(' ') || 'none moved';
  return `${host}: rss ${mb(cur.stats.rssBytes)} MB, fds ${cur.stats.openFds}, elu ${(elu(prev, cur) * 100).toFixed(1)}%, must-be-zero: ${list}`;
}

export interface SoakSummary {
  /** Per host: RSS slope in MB/hour and open-descriptor slope in fds/hour over the per-minute samples. */
  rssMbPerHour: Record<string, number>;
  fdsPerHour: Record<string, number>;
  /** Per host, every must-be-zero counter that moved since the baseline. */
  movedCounters: Record<string, Record<string, number>>;
  ok: boolean;
}

/** Slopes from the samples taken after the baseline (so start-up growth does not count), and what moved. */
export function summarise(samples: Record<string, DaemonSample[]>, baselines: Record<string, Record<string, number>>): SoakSummary {
  const out: SoakSummary = { rssMbPerHour: {}, fdsPerHour: {}, movedCounters: {}, ok: true };
  for (const [host, list] of Object.entries(samples)) {
    const hours = list.map((s) => s.atS / 3600);
    out.rssMbPerHour[host] = Math.round(slope(hours, list.map((s) => s.stats.rssBytes / 2 ** 20)) * 10) / 10;
    out.fdsPerHour[host] = Math.round(slope(hours, list.map((s) => s.stats.openFds)) * 10) / 10;
    const m = moved(baselines[host], mustStayZero(list[list.length - 1]));
    out.movedCounters[host] = m;
    if (Object.keys(m).length > 0) out.ok = false;
  }
  return out;
}
