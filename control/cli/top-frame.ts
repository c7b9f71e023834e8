// `appnet top`'s screen, from two scrapes of GET /metrics (control/metrics/prom-text.ts) `seconds` apart.
// Pure: rates in, text out; the loop that scrapes and redraws is control/cli/commands/top.ts.
//
//   appnet top: 127.0.0.1:7878, over 1.0 s                          2026-12-05 04:30:01
//   PORT            RX bit/s    TX bit/s   RX pkt/s   TX pkt/s  DROPS/s
//   an1a2b3c4d       9.41 G     120.4 M     812345      98765        0
//   VNI ...   DROPS BY REASON ...   LINK PEERS (handshake age, rx/tx bit/s) ...
import type { Scrape } from '../metrics/prom-text.ts';

export interface TopOptions {
  host: string;
  seconds: number;
  /** Rows per table (the busiest first). */
  rows?: number;
  now?: Date;
}

/** Per-second rate of each series of `name`, by the value of `label`, summed over series that share it. */
export function ratesBy(cur: Scrape, prev: Scrape, name: string, label: string, seconds: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of cur.all(name)) {
    const key = s.labels[label];
    if (key === undefined) continue;
    const before = prev.all(name, s.labels).reduce((a, p) => a + p.value, 0);
    const delta = s.value >= before ? s.value - before : s.value; // the daemon restarted: counted from 0
    out.set(key, (out.get(key) ?? 0) + delta / seconds);
  }
  return out;
}

/** 1234567 -> "1.2 M" (SI, 4 significant characters at most). */
export function si(v: number): string {
  if (!Number.isFinite(v) || v < 0.05) return '0';
  const units = ['', 'k', 'M', 'G', 'T'];
  let u = 0;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u++; }
  return `${v >= 100 || u === 0 ? Math.round(v) : v.toFixed(1)}${units[u] ? ` ${units[u]}` : ''}`;
}

function columns(rows: string[][], widths: number[]): string[] {
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' ').trimEnd());
}

export function topFrame(cur: Scrape, prev: Scrape, o: TopOptions): string {
  const rows = o.rows ?? 10;
  const r = (name: string, label: string) => ratesBy(cur, prev, name, label, o.seconds);
  const out: string[] = [];
  const stamp = (o.now ?? new Date()).toISOString().replace('T', ' ').slice(0, 19);
  out.push(`appnet top: ${o.host}, over ${o.seconds.toFixed(1)} s`.padEnd(64) + stamp);

  const table = (title: string, label: string, prefix: 'port' | 'vni') => {
    const rx = r(`appnet_${prefix}_rx_bytes_total`, label);
    const tx = r(`appnet_${prefix}_tx_bytes_total`, label);
    const rxp = r(`appnet_${prefix}_rx_packets_total`, label);
    const txp = r(`appnet_${prefix}_tx_packets_total`, label);
    const drops = r(`appnet_${prefix}_drops_total`, label);
    const keys = [...new Set([...cur.all(`appnet_${prefix}_rx_bytes_total`).map((s) => s.labels[label]!)])];
    keys.sort((a, b) => ((rx.get(b) ?? 0) + (tx.get(b) ?? 0)) - ((rx.get(a) ?? 0) + (tx.get(a) ?? 0)) || a.localeCompare(b));
    out.push('');
    const body = keys.slice(0, rows).map((k) => [
      k, si(8 * (rx.get(k) ?? 0)), si(8 * (tx.get(k) ?? 0)), si(rxp.get(k) ?? 0), si(txp.get(k) ?? 0), si(drops.get(k) ?? 0),
    ]);
    out.push(...columns([[title, 'RX bit/s', 'TX bit/s', 'RX pkt/s', 'TX pkt/s', 'DROPS/s'], ...body], [16, 10, 10, 10, 10, 8]));
    if (keys.length === 0) out.push(`  (no ${title === 'PORT' ? 'ports' : 'VNIs'})`);
    else if (keys.length > rows) out.push(`  … ${keys.length - rows} more`);
  };
  table('PORT', 'port', 'port');
  table('VNI', 'vni', 'vni');

  const drops = [...r('appnet_engine_drops_total', 'reason')].filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
  const totals = cur.all('appnet_engine_drops_total').filter((s) => s.value > 0).sort((a, b) => b.value - a.value);
  out.push('', `DROPS BY REASON (per s; since start)`);
  if (totals.length === 0) out.push('  none');
  for (const s of totals.slice(0, rows)) {
    const reason = s.labels.reason ?? '';
    out.push(`  ${reason.padEnd(18)} ${si(drops.find(([k]) => k === reason)?.[1] ?? 0).padStart(8)}  ${String(s.value).padStart(12)}`);
  }

  const peers = cur.all('appnet_link_sessions');
  out.push('', 'LINK PEER           SESSIONS  HANDSHAKE     RX bit/s   TX bit/s');
  if (peers.length === 0) out.push('  none');
  const prx = r('appnet_link_rx_bytes_total', 'peer');
  const ptx = r('appnet_link_tx_bytes_total', 'peer');
  for (const s of peers) {
    const peer = s.labels.peer ?? '';
    const age = cur.value('appnet_link_handshake_age_seconds', { peer });
    out.push(`  ${peer.padEnd(18)} ${String(s.value).padStart(8)}  ${(age === undefined ? 'none' : `${Math.round(age)} s ago`).padStart(9)}  ` +
      `${si(8 * (prx.get(peer) ?? 0)).padStart(9)}  ${si(8 * (ptx.get(peer) ?? 0)).padStart(9)}`);
  }
  return out.join('\n') + '\n';
}
