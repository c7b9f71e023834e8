// A real Prometheus (Debian's) scrapes two appnetd hosts with the metrics token, one over the host's own
// loopback API and one over TLS on the other host's address (trusting that host's CA), as an operator's
// prometheus.yml would (docs/metrics.md). Known traffic and crafted input then show up in PromQL answers.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestNet } from './helpers/testnet.ts';
import { runIn, spawnIn } from './helpers/run.ts';
import { cliJson, controlPlaneConfig } from './helpers/api-in-ns.ts';
import { natInstance } from './helpers/nat-net.ts';
import { until } from './helpers/until.ts';
import { deviceName } from '../control/instances/interface.ts';

const SEND_UDP = fileURLToPath(new URL('./helpers/send-udp.mjs', import.meta.url));
const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
const PROM_PORT = 19090;

test('Prometheus scrapes two hosts; PromQL sees a port\'s packets, their rate, and crafted datagrams as malformed drops', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const cp = await controlPlaneConfig(net, { metricsToken: METRICS_TOKEN });
  await net.startAppnetd(h1, { ...cp, api: { address: h1.underlayIp, port: 7878 } });
  const d2 = await net.startAppnetd(h2, { ...cp, api: { address: h2.underlayIp, port: 7878 } });
  const network = await cliJson(h1.ns, 'network', 'create', 'p1', '198.18.151.0/24', '--no-dhcp', '--no-nat');
  const a = await natInstance(net, h1, 'pa', network);
  const b = await natInstance(net, h2, 'pb', network);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-prom-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const job = (host: string, target: string, tls?: string) => [
    `  - job_name: appnet-${host}`,
    '    scrape_interval: 1s',
    `    authorization: { credentials: ${METRICS_TOKEN} }`,
    ...(tls ? ['    scheme: https', `    tls_config: { ca_file: ${tls} }`] : []),
    `    static_configs: [{ targets: ['${target}'], labels: { host: ${host} } }]`,
  ].join('\n');
  writeFileSync(path.join(dir, 'prometheus.yml'), [
    'global: { scrape_interval: 1s, evaluation_interval: 1s }',
    'scrape_configs:',
    job('h1', '127.0.0.1:7878'),
    job('h2', `${h2.underlayIp}:7878`, `${d2.config.stateDir}/tls/ca.pem`),
  ].join('\n') + '\n');
  // In h1's namespace: h1's API on its loopback, h2's across the underlay.
  const prom = net.track(spawnIn(h1.ns, 'prometheus', [
    `--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${PROM_PORT}`, '--log.level=warn',
  ]));
  let promLog = '';
  prom.stderr!.on('data', (c: Buffer) => (promLog = (promLog + c).slice(-4000)));

  const query = async (q: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> => {
    const r = await runIn(h1.ns, 'curl', ['-s', '--get', '--data-urlencode', `query=${q}`, `http://127.0.0.1:${PROM_PORT}/api/v1/query`], { reject: false });
    // Until its storage is ready Prometheus answers 503 in plain text ("Service Unavailable"): not yet, ask again.
    // Its API's own errors (a bad query) are JSON with status "error".
    if (r.code !== 0 || !r.stdout.startsWith('{')) return [];
    const body = JSON.parse(r.stdout) as { status: string; data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    return body.status === 'success' ? body.data!.result : [];
  };
  const scalar = async (q: string) => { const r = await query(q); return r.length === 1 ? Number(r[0].value[1]) : undefined; };

  // Both targets up (h2 over TLS with its CA and the token).
  const up = await until('both targets up', async () => {
    const r = await query('up');
    return r.length === 2 && r.every((s) => s.value[1] === '1') ? r : undefined;
  }, 60).catch((e) => { throw new Error(`${(e as Error).message}\n${promLog}`); });
  t.deepEqual(up.map((s) => s.metric.host).sort(), ['h1', 'h2']);

  // Known traffic: 50 pings a -> b. b's port delivered at least 50 frames; a's port rate was above 0.
  const p = await net.ping(a.ns, b.ipv4, { count: 50, interval: 0.02 });
  t.is(p.received, 50, p.output);
  const delivered = await until('b\'s port counts the pings', async () => {
    const v = await scalar(`appnet_port_tx_packets_total{host="h2",port="${deviceName(b.iface)}"}`);
    return v !== undefined && v >= 50 ? v : undefined;
  }, 30);
  t.true(delivered >= 50);
  // h1 is scraped on its own clock: wait until a scrape after the pings has landed, then the rate shows them.
  const rate = await until('a\'s port has a rate above 0', async () => {
    const v = await scalar(`max_over_time(rate(appnet_port_rx_packets_total{host="h1",port="${deviceName(a.iface)}"}[10s])[2m:1s])`);
    return v !== undefined && v > 0 ? v : undefined;
  }, 30);
  t.true(rate > 0, `rate ${rate}`);
  t.true((await scalar(`appnet_hosts{host="h1"}`)) === 2);

  // Crafted input: seven 3-byte datagrams at h2's VXLAN port.
  const before = (await scalar('appnet_wire_drops_total{host="h2",reason="malformed"}')) ?? 0;
  await runIn(h1.ns, 'node', [SEND_UDP, h2.underlayIp, '4789', '7', '080000']);
  const after = await until('h2 counts the malformed datagrams', async () => {
    const v = await scalar('appnet_wire_drops_total{host="h2",reason="malformed"}');
    return v !== undefined && v - before >= 7 ? v : undefined;
  }, 30);
  t.is(after - before, 7);
});
