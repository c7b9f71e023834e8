// `appnet top`: the frame from two scrapes (pure), then `appnet top --once` against a real daemon while
// iperf3 runs, and its bad flags.
import test from 'ava';
import { parsePrometheusText } from '../control/metrics/prom-text.ts';
import { ratesBy, si, topFrame } from '../control/cli/top-frame.ts';
import { TestNet } from './helpers/testnet.ts';
import { runIn } from './helpers/run.ts';
import { cliJson, cliRun, controlPlaneConfig, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { natInstance } from './helpers/nat-net.ts';
import { until } from './helpers/until.ts';
import { iperf3 } from './helpers/iperf.ts';
import { deviceName } from '../control/instances/interface.ts';

const APPNET = new URL('../bin/appnet.js', import.meta.url).pathname;

const scrape = (rx: number, drops: number, age?: number) => parsePrometheusText([
  '# TYPE appnet_port_rx_bytes_total counter',
  `appnet_port_rx_bytes_total{port="an11111111"} ${rx}`,
  'appnet_port_rx_bytes_total{port="an22222222"} 1000',
  `appnet_port_tx_bytes_total{port="an11111111"} ${rx / 2}`,
  'appnet_port_tx_bytes_total{port="an22222222"} 1000',
  `appnet_port_rx_packets_total{port="an11111111"} ${rx / 1000}`,
  `appnet_port_drops_total{port="an11111111",reason="filtered"} ${drops}`,
  'appnet_vni_rx_bytes_total{vni="42"} 5',
  `appnet_engine_drops_total{reason="malformed"} ${drops}`,
  'appnet_link_sessions{peer="h2"} 2',
  ...(age === undefined ? [] : [`appnet_link_handshake_age_seconds{peer="h2"} ${age}`]),
].join('\n'));

test('the frame: ports by throughput (busiest first), rates between the scrapes, drops by reason, link peers', (t) => {
  const prev = scrape(1_000_000, 10, 30);
  const cur = scrape(3_500_000, 14, 32);
  t.deepEqual([...ratesBy(cur, prev, 'appnet_port_rx_bytes_total', 'port', 2)], [['an11111111', 1_250_000], ['an22222222', 0]]);
  const frame = topFrame(cur, prev, { host: 'h1', seconds: 2, now: new Date('2026-12-05T04:30:01Z') });
  const lines = frame.split('\n');
  t.regex(lines[0]!, /^appnet top: h1, over 2\.0 s +2026-12-05 04:30:01$/);
  const ports = lines.findIndex((l) => l.startsWith('PORT'));
  t.regex(lines[ports + 1]!, /^an11111111 +10\.0 M +5\.0 M +1\.3 k +0 +2$/); // 1.25 MB/s = 10 Mbit/s; 2 drops/s
  t.regex(lines[ports + 2]!, /^an22222222 +0 +0 +0 +0 +0$/);
  t.regex(frame, /malformed +2 +14/);
  t.regex(frame, /h2 +2 +32 s ago/);
  // A counter that went down (the daemon restarted) counts from 0, never negative.
  t.deepEqual([...ratesBy(prev, cur, 'appnet_engine_drops_total', 'reason', 1)], [['malformed', 10]]);
  t.regex(topFrame(scrape(1, 0), scrape(1, 0), { host: 'h1', seconds: 1 }), /h2 +2 +none/);
  t.is(si(999), '999');
  t.is(si(1234567), '1.2 M');
  t.is(si(0.01), '0');
});

test('appnet top --once against a real daemon shows the busy port with a rate; bad flags exit non-zero with one line', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const cp = await controlPlaneConfig(net);
  await net.startAppnetd(h1, cp);
  await net.startAppnetd(h2, cp);
  const network = await cliJson(h1.ns, 'network', 'create', 'top1', '198.18.158.0/24', '--no-dhcp', '--no-nat');
  const a = await natInstance(net, h1, 'ta', network);
  const b = await natInstance(net, h2, 'tb', network);
  const port = deviceName(a.iface);
  const run = iperf3(net, a.ns, b.ns, b.ipv4, [], 15);
  // A frame taken while iperf3 sends (it may take a moment to start on a loaded machine: look again until then).
  let last = '';
  const top = await until('appnet top shows a\'s port at megabits per second', async () => {
    const r = await cliRun(h1.ns, 'top', '--once', '--interval', '1');
    last = r.stdout;
    const row = r.stdout.split('\n').find((l) => l.startsWith(port));
    const rx = row ? /^\S+ +([\d.]+(?: [kMG])?)/.exec(row)?.[1] : undefined;
    return rx !== undefined && / [MG]$/.test(rx) ? r : undefined;
  }, 12).catch((e: Error) => { throw new Error(`${e.message}; last frame:\n${last}`); });
  await run;
  t.true(top.stdout.indexOf(port) < top.stdout.indexOf('VNI'), 'the busy port is listed first');
  t.regex(top.stdout, /LINK PEER/);

  const bad = await runIn(h1.ns, 'env', ['APPNET_API=http://127.0.0.1:7878', `APPNET_TOKEN=${TEST_TOKEN}`, 'node', APPNET, 'top', '--interval', '0'], { reject: false });
  t.not(bad.code, 0);
  t.regex(bad.stderr.trim(), /^[^\n]*interval[^\n]*seconds between 0\.2 and 3600[^\n]*$/);
});
