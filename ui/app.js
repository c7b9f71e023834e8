// The status page: the REST API and GET /metrics of the daemon that serves it, every PERIOD_MS, with the
// page's bearer token (from #token=… in the address, then kept in sessionStorage, or typed in). Tables of
// hosts, networks with instances, connections and link peers; uPlot charts of throughput per port and per VNI
// and of drops by reason, as rates between two scrapes. window.appnetUi exposes the latest values (tests).
import uPlot from './vendor/uPlot.esm.js';
import { parsePrometheusText } from './prom-text.js';

const PERIOD_MS = 2000;
const HISTORY = 90;
const $ = (id) => document.getElementById(id);

function readToken() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('appnet-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname); // keep the token out of the address bar and history
  }
  return sessionStorage.getItem('appnet-token') ?? '';
}
let token = readToken();

class HttpError extends Error {
  constructor(path, status) { super(`${path}: HTTP ${status}`); this.status = status; }
}

async function api(path, asText = false) {
  const r = await fetch(path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (!r.ok) throw new HttpError(path, r.status);
  return asText ? r.text() : r.json();
}

const esc = (v) => String(v ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
function table(el, head, rows, empty) {
  el.innerHTML = rows.length === 0
    ? `<tr><td class="empty">${esc(empty)}</td></tr>`
    : `<tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>` +
      rows.map((r) => `<tr>${r.map((c) => (Array.isArray(c) ? `<td class="${esc(c[1])}">${esc(c[0])}</td>` : `<td>${esc(c)}</td>`)).join('')}</tr>`).join('');
}
const ago = (iso) => { const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000)); return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`; };
const mb = (bytes) => `${((bytes ?? 0) / 1e6).toFixed(1)} MB`;
const bits = (v) => (v >= 1e9 ? `${(v / 1e9).toFixed(2)} Gbit/s` : v >= 1e6 ? `${(v / 1e6).toFixed(1)} Mbit/s` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} kbit/s` : `${Math.round(v)} bit/s`);

/** One chart: a series per label, rebuilt when the set of labels changes, the last HISTORY points kept. */
class Chart {
  constructor(el, format) {
    this.el = el; this.format = format; this.times = []; this.series = new Map(); this.plot = null; this.labels = '';
  }
  push(t, values) {
    for (const label of values.keys()) if (!this.series.has(label)) this.series.set(label, this.times.map(() => null));
    this.times.push(t);
    for (const [label, arr] of this.series) arr.push(values.get(label) ?? null);
    if (this.times.length > HISTORY) { this.times.shift(); for (const arr of this.series.values()) arr.shift(); }
    const labels = [...this.series.keys()].join('\n');
    const data = [this.times, ...this.series.values()];
    if (labels !== this.labels || !this.plot) {
      this.plot?.destroy();
      this.el.textContent = '';
      this.labels = labels;
      if (this.series.size === 0) { this.el.innerHTML = '<span class="empty">nothing to chart yet</span>'; this.plot = null; return; }
      const colour = (i) => `hsl(${(i * 67) % 360} 65% 42%)`;
      this.plot = new uPlot({
        width: Math.max(480, this.el.clientWidth), height: 220,
        series: [{}, ...[...this.series.keys()].map((label, i) => ({ label, stroke: colour(i), width: 1.5, value: (_u, v) => (v == null ? '-' : this.format(v)) }))],
        axes: [{}, { values: (_u, ticks) => ticks.map((v) => this.format(v)), size: 90 }],
      }, data, this.el);
    } else {
      this.plot.setData(data);
    }
  }
  latest(label) {
    const arr = this.series.get(label);
    return arr ? arr[arr.length - 1] : undefined;
  }
}

const charts = {
  ports: new Chart($('chart-ports'), bits),
  vnis: new Chart($('chart-vnis'), bits),
  drops: new Chart($('chart-drops'), (v) => `${v.toFixed(1)}/s`),
};
let previous = null; // { t, scrape }

/** Per-second rates of `name` (summed over `extra` names) by the value of `label`, between two scrapes. */
function rates(cur, prev, dt, names, label, scale = 1) {
  const out = new Map();
  for (const name of names) {
    for (const s of cur.all(name)) {
      const key = s.labels[label];
      if (key === undefined) continue;
      const before = prev.all(name, { [label]: key }).reduce((a, p) => a + p.value, 0);
      const delta = s.value >= before ? s.value - before : s.value; // a counter reset (daemon restart)
      out.set(key, (out.get(key) ?? 0) + (delta * scale) / dt);
    }
  }
  return out;
}

function renderMetrics(text) {
  const scrape = parsePrometheusText(text);
  const t = Date.now() / 1000;
  if (previous) {
    const dt = t - previous.t;
    charts.ports.push(t, rates(scrape, previous.scrape, dt, ['appnet_port_rx_bytes_total', 'appnet_port_tx_bytes_total'], 'port', 8));
    charts.vnis.push(t, rates(scrape, previous.scrape, dt, ['appnet_vni_rx_bytes_total', 'appnet_vni_tx_bytes_total'], 'vni', 8));
    charts.drops.push(t, rates(scrape, previous.scrape, dt, ['appnet_engine_drops_total'], 'reason'));
  }
  previous = { t, scrape };
  const peers = scrape.all('appnet_link_sessions').map((s) => {
    const age = scrape.value('appnet_link_handshake_age_seconds', { peer: s.labels.peer });
    return [s.labels.peer, s.value, age === undefined ? ['no session', 'down'] : [`${Math.round(age)} s ago`, age > 180 ? 'down' : 'live'],
      mb(scrape.value('appnet_link_rx_bytes_total', { peer: s.labels.peer })),
      mb(scrape.value('appnet_link_tx_bytes_total', { peer: s.labels.peer }))];
  });
  table($('peers'), ['peer', 'sessions', 'last handshake', 'received', 'sent'], peers, 'no link peers');
}

function renderState(hosts, networks, instances, connections) {
  const live = new Set(hosts.map((h) => h.name));
  const down = [...new Set(instances.map((i) => i.host))].filter((h) => h && !live.has(h)).sort();
  table($('hosts'), ['host', 'state', 'underlay', 'API', 'up for'], [
    ...hosts.map((h) => [h.name, ['live', 'live'], h.underlay_address, h.api ?? '', h.started_at ? ago(h.started_at) : '']),
    ...down.map((h) => [h, ['down (no lease)', 'down'], '', '', '']),
  ], 'no hosts');
  const byNetwork = new Map();
  for (const inst of instances) {
    for (const i of inst.interfaces ?? []) {
      if (!byNetwork.has(i.network_uuid)) byNetwork.set(i.network_uuid, []);
      byNetwork.get(i.network_uuid).push([inst.name, inst.host, i.device ?? '', i.ipv4 ?? 'none', i.macaddr, [i.state, i.state]]);
    }
  }
  const el = $('networks');
  el.innerHTML = networks.length === 0 ? '<span class="empty">no networks</span>' : '';
  for (const n of networks) {
    const div = document.createElement('div');
    div.className = 'net';
    div.innerHTML = `<b>${esc(n.name)}</b> ${esc(n.netblock)} · VNI ${esc(n.vxlan_id)} · <span class="${esc(n.state)}">${esc(n.state)}</span>` +
      (n.error ? ` · ${esc(n.error)}` : '') + (n.floating_gateway ? ` · floating gateway ${esc(n.floating_gateway)}` : '');
    const t = document.createElement('table');
    table(t, ['instance', 'host', 'device', 'address', 'MAC', 'state'], byNetwork.get(n.uuid) ?? [], 'no instances');
    div.append(t);
    el.append(div);
  }
  table($('connections'), ['source', 'outbound', 'target', 'inbound', 'status', 'reason'],
    connections.map((c) => [c.source_instance_name, c.outbound_name, c.target_instance_name, c.inbound_name, [c.status, c.status], c.reason ?? '']),
    'no connections');
}

async function orFallback(primary, fallback) {
  try { return await primary(); } catch (e) { if (e instanceof HttpError && e.status === 403) return fallback(); throw e; }
}

const state = { ready: false, ticks: 0, errors: [] };
window.appnetUi = {
  get ready() { return state.ready; },
  get ticks() { return state.ticks; },
  errors: state.errors,
  /** The latest value of a chart's series: latest('ports', 'an1234abcd') in bit/s. */
  latest: (chart, label) => charts[chart]?.latest(label),
};

async function tick() {
  try {
    const [hosts, networks, instances, connections] = await Promise.all([
      api('/hosts'),
      orFallback(() => api('/networks?all=true'), () => api('/networks')),
      api('/instances'),
      api('/connections'),
    ]);
    renderState(hosts, networks, instances, connections);
    try {
      renderMetrics(await api('/metrics', true));
    } catch (e) {
      if (!(e instanceof HttpError && e.status === 403)) throw e;
      table($('peers'), [], [], 'metrics need the system token or the metrics token');
    }
    $('state').textContent = `updated ${new Date().toLocaleTimeString()}`;
    $('state').className = '';
    state.ready = true;
    state.ticks++;
  } catch (e) {
    $('state').textContent = e instanceof HttpError && e.status === 401 ? 'token refused' : `error: ${e.message}`;
    $('state').className = 'bad';
    if (e instanceof HttpError && e.status === 401) $('login').hidden = false;
    state.errors.push(String(e.message));
  }
}

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('token').value.trim();
  sessionStorage.setItem('appnet-token', token);
  $('login').hidden = true;
  void tick();
});
if (!token) { $('login').hidden = false; $('state').textContent = 'a bearer token is needed'; }
else void tick();
setInterval(() => { if (token) void tick(); }, PERIOD_MS);
