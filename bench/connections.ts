// Application connections at scale: 1,000 connections across three hosts, time until all are ESTABLISHED and
// each appnetd's RSS; then iperf3 through one connection against an encrypted network between the same two
// hosts, in the same run.
//
//   h1, h2, h3: appnetd --store (one SQLite file), encrypted links between every pair
//   per host: 1 sink instance (inbound `svc`, tcp 5201) and SOURCES_PER_HOST source instances, each with
//   OUTBOUNDS outbounds; outbound j of source k goes to the sink on host (k + j) mod 3, so two thirds of the
//   connections cross hosts and every host holds both ends of some. Each connection is one TAP per side
//   (a /31 from the link pool) on its own VNI inside the encrypted link.
//
// The records are written through the repositories over the store file, as the API would (the API listens on
// each host's loopback, inside its namespace); the daemons see them through the store's watch, as in
// production. The clock starts when the first connection is added and stops at the first poll that finds
// every one ESTABLISHED.
//
// `node --import tsx bench/run.ts connections [--json] [--scale=F] [--duration=S]`: F (default 1) scales the
// number of connections (--scale=0.05: 50). Traffic stays in the namespaces built here.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConnectionRepository } from '../control/repo/connections.ts';
import { InstanceRepository } from '../control/repo/instances.ts';
import { NetworkRepository } from '../control/repo/networks.ts';
import type { ConnectionRecord } from '../control/connections/model.ts';
import { openStore } from '../control/store/index.ts';
import { iperf3 } from '../test/helpers/iperf.ts';
import { runIn } from '../test/helpers/run.ts';
import { TestNet, type Daemon } from '../test/helpers/testnet.ts';
import { benchLog, benchSeconds, r2, rssBytes, shim } from './path-measure.ts';
import { CONNECTIONS_PREFIX } from '../control/repo/keys.ts';

const log = benchLog('connections');
const HOSTS = 3;
const FULL = 1000;
const OUTBOUNDS = 34;
const POLL_MS = 250;
const SETTLE_MS = 30_000;
const ESTABLISH_TIMEOUT_MS = 300_000;
const FLOATING_POOL = '198.19.0.0/24';
const SYSTEM = 'system';

function scale(): number {
  const arg = process.argv.find((x) => x.startsWith('--scale='))?.split('=')[1];
  const f = Number(arg ?? 1);
  if (!(f > 0 && f <= 1)) throw new Error(`connections bench: --scale must be in (0, 1], got '${arg}'`);
  return f;
}

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`connections bench: timed out waiting for ${what}`);
    await sleep(POLL_MS);
  }
}

export async function run(opts: { json: boolean }): Promise<Record<string, number | string | null>> {
  const total = Math.max(3, Math.round(FULL * scale()));
  const seconds = benchSeconds('connections');
  const cleanups: Array<() => unknown> = [];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-bench-conn-'));
  const f: Record<string, number | string | null> = { connections: total, hosts: HOSTS };
  try {
    const net = await TestNet.create(shim(cleanups), { hosts: HOSTS });
    const storeUrl = `sqlite:${path.join(dir, 'appnet.db')}`;
    const daemons: Daemon[] = [];
    for (const h of net.hosts) daemons.push(await net.startAppnetd(h, { store: storeUrl, floatingPool: FLOATING_POOL }));
    const store = await openStore(storeUrl);
    cleanups.unshift(() => store.close());
    const networks = new NetworkRepository({ store, floatingPool: FLOATING_POOL });
    const instances = new InstanceRepository({ store, networks });
    const connections = new ConnectionRepository({ store, instances });
    await connections.init();

    // Instances: one sink per host, then sources until their outbounds cover `total`.
    const sourcesPerHost = Math.ceil(total / (OUTBOUNDS * HOSTS));
    const sinks: Array<{ uuid: string; ns: string }> = [];
    for (let h = 0; h < HOSTS; h++) {
      const ns = (await net.addInstance(`k${h}`)).ns;
      const rec = await instances.create({ name: `sink${h}`, host: net.hosts[h].name, netns: ns, inbounds: [{ name: 'svc', port: 5201, protocol: 'tcp' }] }, SYSTEM);
      sinks.push({ uuid: rec.instance.uuid, ns });
    }
    const sources: Array<{ uuid: string; ns: string; host: number }> = [];
    for (let h = 0; h < HOSTS; h++) {
      for (let s = 0; s < sourcesPerHost; s++) {
        const ns = (await net.addInstance(`s${h}x${s}`)).ns;
        const outbounds = Array.from({ length: OUTBOUNDS }, (_, j) => ({ name: `o${j}`, required: false }));
        const rec = await instances.create({ name: `src${h}x${s}`, host: net.hosts[h].name, netns: ns, outbounds }, SYSTEM);
        sources.push({ uuid: rec.instance.uuid, ns, host: h });
      }
    }
    log(`${sinks.length} sinks and ${sources.length} sources on ${HOSTS} hosts; adding ${total} connections`);
    await sleep(2000); // the instances' reconcile passes settle before the baseline
    const base = await Promise.all(daemons.map(memory));

    const started = performance.now();
    let added = 0;
    const first: ConnectionRecord[] = [];
    for (let k = 0; k < sources.length && added < total; k++) {
      for (let j = 0; j < OUTBOUNDS && added < total; j++) {
        const sink = sinks[(sources[k].host + j) % HOSTS];
        const c = await connections.add({ source_instance_id: sources[k].uuid, outbound_name: `o${j}`, target_instance_id: sink.uuid, inbound_name: 'svc' }, SYSTEM);
        if (first.length < 2) first.push(c);
        added++;
      }
    }
    f.add_ms = Math.round(performance.now() - started);
    log(`added ${added} connections in ${f.add_ms} ms; waiting for ESTABLISHED`);
    let lastLog = 0;
    await until('every connection ESTABLISHED', ESTABLISH_TIMEOUT_MS, async () => {
      const all = (await store.range(CONNECTIONS_PREFIX)).kvs.map((kv) => JSON.parse(kv.value) as ConnectionRecord);
      const up = all.filter((c) => c.status === 'ESTABLISHED').length;
      const errors = all.filter((c) => c.status === 'ERROR');
      if (errors.length) throw new Error(`connections bench: ${errors.length} connections in ERROR, e.g. ${errors[0].reason}`);
      if (performance.now() - lastLog > 5000) (lastLog = performance.now(), log(`${up}/${all.length} ESTABLISHED`));
      return up === total ? true : undefined;
    });
    f.established_ms = Math.round(performance.now() - started);
    for (const [i, d] of daemons.entries()) {
      f[`rss_mb_h${i + 1}`] = Math.round(rssBytes(d.pid!) / 2 ** 20);
      f[`ports_h${i + 1}`] = (await d.get('/engine/counters')).ports.length;
    }
    // What a connection port costs: the growth from before the connections existed, once the daemons have been
    // quiet for SETTLE_MS (V8's memory reducer collects the burst's garbage ~8 s after allocation slows), per
    // port, and where. The figure at ESTABLISHED above is the peak, garbage included.
    await sleep(SETTLE_MS);
    for (const [i, d] of daemons.entries()) {
      const h = `h${i + 1}`;
      const m = await memory(d);
      const ports = f[`ports_${h}`] as number;
      f[`rss_mb_before_${h}`] = r2(base[i].rss / 2 ** 20);
      f[`rss_mb_settled_${h}`] = r2(m.rss / 2 ** 20);
      for (const k of ['rss', 'anon', 'file', 'heapUsed', 'heapTotal', 'external'] as const) {
        f[`per_port_kb_${k}_${h}`] = ports ? r2((m[k] - base[i][k]) / 1024 / ports) : null;
      }
      log(`${h}: ${ports} ports; before/settled MB: ${Object.entries(m).map(([k, v]) => `${k} ${r2(base[i][k as keyof typeof m] / 2 ** 20)}/${r2(v / 2 ** 20)}`).join(', ')}`);
    }
    f.rss_mb_max = Math.max(...daemons.map((_, i) => f[`rss_mb_h${i + 1}`] as number));
    f.rss_mb_settled_max = Math.max(...daemons.map((_, i) => f[`rss_mb_settled_h${i + 1}`] as number));

    // One connection across hosts (source on h1 to the sink on h2) against an encrypted network h1 <-> h2.
    const src = sources.find((s) => s.host === 0)!;
    const cross = (await store.range(CONNECTIONS_PREFIX)).kvs.map((kv) => JSON.parse(kv.value) as ConnectionRecord)
      .find((c) => c.source_instance_id === src.uuid && c.target_instance_id === sinks[1].uuid)!;
    const enc = await networks.create({ name: 'enc', netblock: '198.18.200.0/24', encrypt: true, provide_dhcp: false, provide_nat: false, provide_dns: false }, SYSTEM);
    const a = await net.addInstance('ea');
    const b = await net.addInstance('eb');
    const ia = await instances.create({ name: 'ea', host: net.hosts[0].name, netns: a.ns, interfaces: [{ network: enc.uuid }] }, SYSTEM);
    const ib = await instances.create({ name: 'eb', host: net.hosts[1].name, netns: b.ns, interfaces: [{ network: enc.uuid }] }, SYSTEM);
    const addrB = ib.interfaces[0].ipv4!;
    await until('the encrypted network carries ping', 60_000, async () =>
      (await runIn(a.ns, 'ping', ['-c', '1', '-W', '1', addrB], { reject: false })).code === 0 ? true : undefined);
    log(`iperf3 ${seconds} s through connection ${cross.connection_id} (${cross.link!.outbound_address} -> ${cross.link!.inbound_address}:5201)`);
    const rc = await iperf3(net, src.ns, sinks[1].ns, cross.link!.inbound_address, [], seconds);
    f.connection_tcp_gbps = r2(rc.end.sum_received.bits_per_second / 1e9);
    log(`iperf3 ${seconds} s through the encrypted network (${ia.interfaces[0].ipv4} -> ${addrB})`);
    const rn = await iperf3(net, a.ns, b.ns, addrB, [], seconds);
    f.network_tcp_gbps = r2(rn.end.sum_received.bits_per_second / 1e9);
    f.ratio = f.network_tcp_gbps ? r2((f.connection_tcp_gbps as number) / (f.network_tcp_gbps as number)) : null;
    for (const [i, d] of daemons.entries()) f[`rss_mb_after_h${i + 1}`] = Math.round(rssBytes(d.pid!) / 2 ** 20);
    // A daemon with ~700 TAPs takes seconds to exit (the kernel removes each device): stop them here and wait,
    // rather than let the teardown's 5 s allowance run out.
    await Promise.all(daemons.map(async (d) => {
      const pid = d.pid;
      if (pid === undefined) return;
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 600 && d.running; i++) await sleep(100);
    }));
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch((e) => log(`cleanup: ${(e as Error).message}`));
    rmSync(dir, { recursive: true, force: true });
  }
  if (!opts.json) {
    console.log(`\n## connections: ${f.connections} across ${HOSTS} hosts (${Math.round(process.uptime())} s run)`);
    console.log(`added through the repositories in ${f.add_ms} ms; all ESTABLISHED ${f.established_ms} ms after the first add`);
    console.log(`RSS per daemon at ESTABLISHED: ${[1, 2, 3].map((i) => `h${i} ${f[`rss_mb_h${i}`]} MB (${f[`ports_h${i}`]} ports)`).join(', ')}`);
    console.log(`RSS before the connections: ${[1, 2, 3].map((i) => `h${i} ${f[`rss_mb_before_h${i}`]} MB`).join(', ')}; ` +
      `${SETTLE_MS / 1000} s after ESTABLISHED: ${[1, 2, 3].map((i) => `h${i} ${f[`rss_mb_settled_h${i}`]} MB`).join(', ')}`);
    console.log('| per connection port, settled, KB | RSS | anonymous | file-backed | V8 heap used | V8 heap total | external |');
    console.log('|---|---|---|---|---|---|---|');
    for (const i of [1, 2, 3]) {
      const c = (k: string) => f[`per_port_kb_${k}_h${i}`] ?? '-';
      console.log(`| h${i} | ${c('rss')} | ${c('anon')} | ${c('file')} | ${c('heapUsed')} | ${c('heapTotal')} | ${c('external')} |`);
    }
    console.log('| path (h1 -> h2, iperf3 TCP) | Gbit/s |');
    console.log('|---|---|');
    console.log(`| one application connection | ${f.connection_tcp_gbps} |`);
    console.log(`| encrypted network | ${f.network_tcp_gbps} |`);
    console.log(`| ratio connection / network | ${f.ratio} |`);
  }
  return f;
}

/** A daemon's memory, in bytes: RSS and its anonymous and file-backed parts (smaps_rollup), and V8's heap. */
async function memory(d: Daemon): Promise<{ rss: number; anon: number; file: number; heapUsed: number; heapTotal: number; external: number }> {
  const stats = await d.get('/engine/stats');
  const rollup = readFileSync(`/proc/${d.pid}/smaps_rollup`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? NaN) * 1024;
  return { rss: kb('Rss'), anon: kb('Anonymous'), file: kb('Rss') - kb('Anonymous'), heapUsed: stats.heapUsedBytes, heapTotal: stats.heapTotalBytes, external: stats.externalBytes };
}
