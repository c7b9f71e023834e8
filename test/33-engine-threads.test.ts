// engine.threads > 1 (docs/engine-threads.md): every TAP and TUN port is multi-queue with one queue per TX
// pipeline, the underlay and link sockets are SO_REUSEPORT groups with one RX pipeline each, and a flow
// stays on one pipeline. Parallel flows spread over the pipelines; each arrives intact.
import test from 'ava';
import { buildOverlay, counters, port } from './helpers/overlay.ts';
import { runIn } from './helpers/run.ts';
import { iperf3 } from './helpers/iperf.ts';
import { parsePrometheusText } from '../control/metrics/prom-text.ts';
import type { Instance } from './helpers/testnet.ts';
import { buildLinkNet } from './helpers/link-net.ts';

async function queues(ns: string, dev: string): Promise<string[]> {
  const r = await runIn(ns, 'ls', [`/sys/class/net/${dev}/queues`]);
  return r.stdout.split(/\s+/).filter((q) => q.startsWith('tx-')).sort();
}

test('engine.threads 2: multi-queue ports, parallel flows over both pipelines each way, every byte intact', async (t) => {
  let tun: Instance | undefined;
  const { net, daemons, instances: [a, b] } = await buildOverlay(t, {
    hosts: 2,
    daemon: { engine: { threads: 2 } },
    extraPorts: async (h, n) => {
      if (h.index !== 2) return [];
      tun = await n.addInstance('tun');
      return [{ name: 'tun42', kind: 'tun', vni: 42, ipv4: '198.18.42.20', mac: '02:00:00:2a:00:20', netns: tun.ns }];
    },
  });
  await net.configureInstance(tun!, 'tun42', '198.18.42.20/24');
  t.deepEqual(await queues(a.inst.ns, 'tap42'), ['tx-0', 'tx-1'], 'a TAP has one queue per TX pipeline');
  t.deepEqual(await queues(tun!.ns, 'tun42'), ['tx-0', 'tx-1'], 'so has a TUN');

  const ping = await net.ping(a.inst.ns, b.addr, { count: 10, interval: 0.05 });
  t.is(ping.received, 10, ping.output);
  t.is(ping.duplicates, 0);
  const toTun = await net.ping(a.inst.ns, '198.18.42.20', { count: 5, interval: 0.1 });
  t.is(toTun.received, 5, toTun.output);

  // Sixteen flows each way, sharing the path about equally. Each pipeline must carry a real share of them,
  // not just the first packets of a few: fewer than 2 of 16 flows on one queue has a chance of 0.05%. (A flow's
  // first packet may land on either queue; after that it stays where the engine writes it, see queue_fd.)
  await iperf3(net, a.inst.ns, b.inst.ns, b.addr, ['-P', '16'], 2);
  await iperf3(net, a.inst.ns, b.inst.ns, b.addr, ['-P', '16', '-R'], 2);
  for (const [i, d] of daemons.entries()) {
    const c = await counters(d);
    t.is(c.pipelines.length, 2);
    const share = (k: 'tx_reads' | 'rx_datagrams') => c.pipelines.map((p) => p[k] / c.pipelines.reduce((s, x) => s + x[k], 0));
    for (const k of ['tx_reads', 'rx_datagrams'] as const) {
      t.true(share(k).every((f) => f > 0.03), `h${i + 1}: ${k} per pipeline ${JSON.stringify(c.pipelines.map((p) => p[k]))}`);
    }
  }
  // The same per pipeline in /metrics (admin socket), as an operator's Prometheus sees it.
  const m = parsePrometheusText((await daemons[0].request('GET', '/metrics')).body);
  for (const pipeline of ['0', '1']) t.true((m.value('appnet_engine_pipeline_reads_total', { pipeline, kind: 'tx' }) ?? 0) > 0, `pipeline ${pipeline}`);

  // Flows that run at once, both ways, each checked end to end.
  const transfers = await Promise.all([
    net.tcpTransfer(a.inst.ns, b.inst.ns, b.addr, 8_000_000, 5301),
    net.tcpTransfer(a.inst.ns, b.inst.ns, b.addr, 8_000_000, 5302),
    net.tcpTransfer(b.inst.ns, a.inst.ns, a.addr, 8_000_000, 5303),
    net.tcpTransfer(tun!.ns, a.inst.ns, a.addr, 8_000_000, 5304),
  ]);
  for (const x of transfers) {
    t.is(x.receivedBytes, 8_000_000);
    t.is(x.receivedSha256, x.sentSha256);
  }
  const c = await counters(daemons[1]);
  t.true(port(c, 'tun42').rx_packets > 1000, JSON.stringify(port(c, 'tun42')));
});

test('engine.threads 2 on an encrypted network: link pipelines on an SO_REUSEPORT group carry flows both ways intact', async (t) => {
  const x = await buildLinkNet(t, { daemon: { engine: { threads: 2 } } });
  const ping = await x.net.ping(x.a.ns, x.addrB, { count: 5, interval: 0.1 });
  t.is(ping.received, 5, ping.output);
  const transfers = await Promise.all([
    x.net.tcpTransfer(x.a.ns, x.b.ns, x.addrB, 8_000_000, 5311),
    x.net.tcpTransfer(x.b.ns, x.a.ns, x.addrA, 8_000_000, 5312),
  ]);
  for (const r of transfers) t.is(r.receivedSha256, r.sentSha256);
  // One peer sends from one source port, so its messages are opened on one link pipeline (its replay window
  // is touched by one thread); which one is the kernel's hash.
  for (const d of [x.d1, x.d2]) {
    const c = await counters(d);
    t.is(c.pipelines.length, 2);
    const opened = c.pipelines.map((p) => p.link_datagrams);
    t.is(opened.filter((n) => n > 0).length, 1, `one link pipeline took all the peer's messages: ${JSON.stringify(opened)}`);
  }
});

/** The daemon's engine threads by name (appnet-tx0, appnet-rx0, ...) and the CPUs each may run on. */
async function engineThreads(pid: number): Promise<Record<string, string>> {
  const { readdir, readFile } = await import('node:fs/promises');
  const out: Record<string, string> = {};
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const status = await readFile(`/proc/${pid}/task/${tid}/status`, 'utf8').catch(() => '');
    const name = /^Name:\s*(\S+)/m.exec(status)?.[1];
    if (name?.startsWith('appnet-')) out[name] = /^Cpus_allowed_list:\s*(\S+)/m.exec(status)![1];
  }
  return out;
}

test('engine.cpus: every pipeline thread is named and pinned to its CPU; traffic flows; a CPU the process may not use is refused', async (t) => {
  const { net, daemons, instances: [a, b] } = await buildOverlay(t, {
    hosts: 2,
    daemon: { engine: { threads: 2, cpus: [1, 0] } },
  });
  const pinned = { 'appnet-tx0': '1', 'appnet-rx0': '1', 'appnet-link0': '1', 'appnet-tx1': '0', 'appnet-rx1': '0', 'appnet-link1': '0' };
  for (const d of daemons) t.deepEqual(await engineThreads(d.pid!), pinned, `${d.host.name}'s engine threads`);
  const ping = await net.ping(a.inst.ns, b.addr, { count: 5, interval: 0.05 });
  t.is(ping.received, 5, ping.output);
  // A CPU outside the process's affinity: the daemon says which, and does not start.
  await daemons[0].stop();
  const err = await t.throwsAsync(net.startAppnetd(net.hosts[0], { engine: { threads: 1, cpus: [1000] } }));
  t.regex(err!.message, /cpus: CPU 1000 is not one this process may run on/);
});
