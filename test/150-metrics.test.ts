// GET /metrics (docs/metrics.md) on a real daemon: who may read it (the system namespace, the metrics token,
// which opens nothing else), that promtool accepts it, and that the families a user charts move with known
// traffic and crafted input, on the REST API and the admin socket alike.
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { TestNet } from './helpers/testnet.ts';
import { runIn } from './helpers/run.ts';
import { apiCall, cliJson, controlPlaneConfig, curl, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { natInstance } from './helpers/nat-net.ts';
import { deviceName } from '../control/instances/interface.ts';
import { parsePrometheusText } from '../control/metrics/prom-text.ts';

const SEND_UDP = fileURLToPath(new URL('./helpers/send-udp.mjs', import.meta.url));
export const METRICS_TOKEN = 'metrics-token-0123456789abcdef';


function promtool(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const p = spawn('promtool', ['check', 'metrics']);
    let output = '';
    p.stdout.on('data', (b: Buffer) => (output += b));
    p.stderr.on('data', (b: Buffer) => (output += b));
    p.on('close', (code) => resolve({ code, output }));
    p.stdin.end(text);
  });
}

test('GET /metrics: system token or metrics token only; promtool clean; port, VNI, drop and control families move with traffic', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const cp = await controlPlaneConfig(net, { metricsToken: METRICS_TOKEN });
  const d1 = await net.startAppnetd(h1, cp);
  await net.startAppnetd(h2, cp);
  // Encrypted, so that the hosts' link shows in the link families too.
  const network = await cliJson(h1.ns, 'network', 'create', 'm1', '198.18.150.0/24', '--no-dhcp', '--no-nat', '--encrypt');
  const a = await natInstance(net, h1, 'ma', network);
  const b = await natInstance(net, h2, 'mb', network);

  // Who may read it.
  t.is((await curl(h1.ns, '/metrics')).status, 401);
  t.is((await curl(h1.ns, '/metrics', 'not-a-token-at-all-0000')).status, 401);
  const bySystem = await curl(h1.ns, '/metrics', TEST_TOKEN);
  t.is(bySystem.status, 200);
  t.is((await curl(h1.ns, '/metrics', METRICS_TOKEN)).status, 200);
  t.is((await curl(h1.ns, '/networks', METRICS_TOKEN)).status, 401, 'the metrics token opens /metrics only');
  const tenant = await apiCall(h1.ns, 'POST', '/auth/namespaces', TEST_TOKEN, { namespace: 'tenant1', key_name: 'k', key: 'tenant-key-0123456789' });
  t.true(tenant.status < 300, JSON.stringify(tenant.body));
  const jwt = (await apiCall(h1.ns, 'POST', '/auth', '', { namespace: 'tenant1', key: 'tenant-key-0123456789' })).body.access_token;
  t.is((await curl(h1.ns, '/metrics', jwt)).status, 403, 'a tenant may not read the host\'s metrics');
  t.is((await promtool(bySystem.body)).code, 0, (await promtool(bySystem.body)).output);

  // Known traffic: 30 pings from a (h1) to b (h2).
  const before = parsePrometheusText((await curl(h1.ns, '/metrics', METRICS_TOKEN)).body);
  const p = await net.ping(a.ns, b.ipv4, { count: 30, interval: 0.02 });
  t.is(p.received, 30, p.output);
  const after = parsePrometheusText((await curl(h1.ns, '/metrics', METRICS_TOKEN)).body);
  const port = deviceName(a.iface);
  const delta = (m: ReturnType<typeof parsePrometheusText>, name: string, labels: Record<string, string>) => m.value(name, labels) ?? 0;
  t.true(delta(after, 'appnet_port_rx_packets_total', { port }) - delta(before, 'appnet_port_rx_packets_total', { port }) >= 30);
  t.true(delta(after, 'appnet_port_tx_packets_total', { port }) - delta(before, 'appnet_port_tx_packets_total', { port }) >= 30);
  const vni = String(network.vxlan_id);
  t.true(delta(after, 'appnet_vni_tx_packets_total', { vni }) - delta(before, 'appnet_vni_tx_packets_total', { vni }) >= 30);
  t.true(delta(after, 'appnet_vni_rx_bytes_total', { vni }) - delta(before, 'appnet_vni_rx_bytes_total', { vni }) >= 30 * 98);
  // The control plane's own: hosts, store operations, the API requests made above, reconcile passes, Node's.
  t.is(after.value('appnet_hosts', {}), 2);
  t.true((after.value('appnet_link_rekeys_total', { peer: 'h2' }) ?? 0) >= 1);
  t.true((after.value('appnet_link_handshake_age_seconds', { peer: 'h2' }) ?? -1) >= 0);
  t.true((after.value('appnet_link_tx_bytes_total', { peer: 'h2' }) ?? 0) >= 30 * 98);
  t.true((after.value('appnet_watch_lag_seconds', {}) ?? -1) >= 0);
  t.true((after.value('appnet_store_operation_seconds_count', { op: 'txn' }) ?? 0) > 0);
  t.true((after.value('appnet_api_request_seconds_count', { method: 'GET', route: '/metrics', status: '200' }) ?? 0) >= 2);
  t.true((after.value('appnet_reconcile_seconds_count', {}) ?? 0) > 0);
  t.true((after.value('appnet_process_resident_memory_bytes', {}) ?? 0) > 0);
  t.is(after.value('appnet_connections', { status: 'ESTABLISHED' }), 0);

  // Crafted input: five 3-byte datagrams at h1's VXLAN port are malformed drops, on the wire and in the total.
  await runIn(h2.ns, 'node', [SEND_UDP, h1.underlayIp, '4789', '5', '080000']);
  const dropped = parsePrometheusText((await curl(h1.ns, '/metrics', TEST_TOKEN)).body);
  t.is((dropped.value('appnet_wire_drops_total', { reason: 'malformed' }) ?? 0) - (after.value('appnet_wire_drops_total', { reason: 'malformed' }) ?? 0), 5);
  t.true((dropped.value('appnet_engine_drops_total', { reason: 'malformed' }) ?? 0) >= 5);

  // The admin socket serves the same families, without a token.
  const admin = await d1.request('GET', '/metrics');
  t.is(admin.status, 200);
  t.true(parsePrometheusText(admin.body).value('appnet_wire_drops_total', { reason: 'malformed' })! >= 5);
});
