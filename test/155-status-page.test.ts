// The status page (/ui/) in headless Chromium (Debian's, driven by puppeteer-core over a pipe, started in the
// host's namespace so that it reaches the daemon's loopback API as an operator's browser on that host would):
// it loads without console errors, shows the hosts, networks, instances and connections the test made, and
// its throughput chart of a port rises while iperf3 runs through it. A screenshot is kept in test/artifacts/.
import test from 'ava';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';
import { TestNet } from './helpers/testnet.ts';
import { cliJson, controlPlaneConfig, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { natInstance } from './helpers/nat-net.ts';
import { iperf3 } from './helpers/iperf.ts';
import { until } from './helpers/until.ts';
import { deviceName } from '../control/instances/interface.ts';

const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;

test('the status page shows what the test made, without console errors, and a port chart rises under iperf3', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const cp = await controlPlaneConfig(net);
  await net.startAppnetd(h1, cp);
  await net.startAppnetd(h2, cp);
  const network = await cliJson(h1.ns, 'network', 'create', 'ui-blue', '198.18.155.0/24', '--no-dhcp', '--no-nat');
  const a = await natInstance(net, h1, 'ui-a', network);
  const b = await natInstance(net, h2, 'ui-b', network);
  await cliJson(h1.ns, 'instance', 'create', 'ui-sink', '--host', 'h2', '--netns', (await net.addInstance('ui-sink')).ns, '--inbound', 'in:5201');
  const src = await cliJson(h1.ns, 'instance', 'create', 'ui-src', '--host', 'h1', '--netns', (await net.addInstance('ui-src')).ns, '--outbound', 'db');
  await cliJson(h1.ns, 'add', src.uuid, 'db', 'ui-sink', 'in');

  // Chromium in h1's namespace, its DevTools protocol over the pipe puppeteer opens (no port to reach).
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-ui-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const wrapper = path.join(dir, 'chromium-in-h1');
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${h1.ns} /usr/bin/chromium "$@"\n`);
  chmodSync(wrapper, 0o755);
  const browser: Browser = await puppeteer.launch({
    executablePath: wrapper, pipe: true, headless: true, userDataDir: path.join(dir, 'profile'),
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  t.teardown(() => browser.close().catch(() => undefined));
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page: ${(e as Error).message}`));
  page.on('requestfailed', (r) => problems.push(`request: ${r.url()} ${r.failure()?.errorText}`));
  await page.setViewport({ width: 1400, height: 1100 });
  await page.goto(`http://127.0.0.1:7878/ui/#token=${TEST_TOKEN}`, { waitUntil: 'load' });
  await page.waitForFunction('window.appnetUi && window.appnetUi.ticks >= 2', { timeout: 30_000 });

  // What the test made is on the page; the token left the address bar.
  const text = await page.evaluate('document.body.innerText') as string;
  for (const want of ['h1', 'h2', 'ui-blue', '198.18.155.0/24', 'ui-a', 'ui-b', a.ipv4, b.ipv4, 'ui-src', 'ui-sink', 'db']) {
    t.true(text.includes(want), `page shows ${want}`);
  }
  t.false((await page.evaluate('location.href') as string).includes('token='));

  // A port's chart rises while iperf3 runs from a to b.
  const port = deviceName(a.iface);
  const idle = (await page.evaluate(`window.appnetUi.latest('ports', ${JSON.stringify(port)})`) as number | null) ?? 0;
  const run = iperf3(net, a.ns, b.ns, b.ipv4, [], 12);
  const peak = await until('the chart of a\'s port rises', async () => {
    const v = await page.evaluate(`window.appnetUi.latest('ports', ${JSON.stringify(port)})`) as number | null;
    return v !== null && v > 10_000_000 ? v : undefined;
  }, 60);
  const report = await run;
  t.true(peak > idle + 10_000_000, `idle ${idle} bit/s, under iperf3 ${peak} bit/s`);
  t.true(report.end.sum_received.bits_per_second > 10_000_000);

  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, '155-status-page.png'), fullPage: true });
  t.deepEqual(problems, []);
  t.deepEqual(await page.evaluate('window.appnetUi.errors') as string[], []);
});

test('the status page without a token asks for one, and says so when the token is refused', async (t) => {
  const net = await TestNet.create(t, { hosts: 1 });
  const [h1] = net.hosts;
  await net.startAppnetd(h1, await controlPlaneConfig(net));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-ui-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const wrapper = path.join(dir, 'chromium-in-h1');
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${h1.ns} /usr/bin/chromium "$@"\n`);
  chmodSync(wrapper, 0o755);
  const browser = await puppeteer.launch({ executablePath: wrapper, pipe: true, headless: true, userDataDir: path.join(dir, 'profile'), args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  t.teardown(() => browser.close().catch(() => undefined));
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push((e as Error).message));
  await page.goto('http://127.0.0.1:7878/ui/', { waitUntil: 'load' });
  t.is(await page.evaluate('document.getElementById("login").hidden'), false);
  await page.type('#token', 'not-the-token-0123456789');
  await page.click('#login button');
  await until('the page says the token was refused', async () => ((await page.evaluate('document.getElementById("state").textContent')) === 'token refused' ? true : undefined), 20);
  // The right one, typed in, shows an empty host without failing.
  await page.evaluate('document.getElementById("token").value = ""');
  await page.type('#token', TEST_TOKEN);
  await page.click('#login button');
  await page.waitForFunction('window.appnetUi.ticks >= 1', { timeout: 20_000 });
  t.true((await page.evaluate('document.getElementById("networks").innerText') as string).includes('no networks'));
  t.deepEqual(pageErrors, []);
});
