// Soak: three hosts under steady, bounded load for `--minutes N` (default 10), all at once:
//
//   h1 pa ---- plain network (DHCP) ---- pb h2        ping every 50 ms + iperf3 TCP at 20 Mbit/s, pa -> pb
//   h2 ea ==== encrypted network (DHCP) == eb h3      the same, ea -> eb, over links rekeyed every second
//   h1 src -- application connection --> sink h3      iperf3 TCP at 20 Mbit/s through it (port 5201)
//   h2 churn -- a second connection to sink, added and removed every 20 s
//   every 4 s one of pa, pb, ea, eb renews its DHCP lease (udhcpc, SIGUSR1); every 30 s a capture is
//   started through h1's API on one of the three scopes, drained and stopped 5 s later.
//
// Every minute it prints each daemon's RSS, open descriptors, event-loop utilisation and the counters that
// must not move (bench/soak-figures.ts: engine drops, punt overflows, link drops such as AEAD tag failures
// and replays, handshake failures, DHCP NAKs), counted from a baseline taken once the traffic runs. At the
// end: RSS and descriptor slopes, everything that moved, the traffic's own figures; the process exits 1 if
// a must-be-zero counter moved or a periodic step failed. Everything runs in namespaces built here.
//
// `node --import tsx bench/run.ts soak [--minutes N] [--rekey=S] [--json]`
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { portName } from '../control/reconcile/plan.ts';
import { apiCall, cliJson, controlPlaneConfig, TEST_TOKEN } from '../test/helpers/api-in-ns.ts';
import { iperf3 } from '../test/helpers/iperf.ts';
import { run as runCmd, runIn, spawnIn, stopProcess } from '../test/helpers/run.ts';
import { parsePing, TestNet, type Daemon, type Instance } from '../test/helpers/testnet.ts';
import { benchLog, shim } from './path-measure.ts';
import { elu, minuteLine, mustStayZero, summarise, type DaemonSample } from './soak-figures.ts';

const log = benchLog('soak');
const RENEW_EVERY_MS = 4000;
const CHURN_EVERY_MS = 20_000;
const CAPTURE_EVERY_MS = 30_000;
const SAMPLE_EVERY_MS = 60_000;
const RATE = '20M';

// udhcpc runs this on each event: apply the address and say which event it was, so renewals can be counted.
const DHCP_SCRIPT = `#!/bin/sh
case "$1" in
  bound|renew) ip addr replace "$ip/$subnet" dev "$interface"; echo "$1 $ip" ;;
esac
exit 0
`;

function minutes(): number {
  const i = process.argv.indexOf('--minutes');
  const arg = process.argv.find((x) => x.startsWith('--minutes='))?.split('=')[1] ?? (i >= 0 ? process.argv[i + 1] : undefined);
  const m = Number(arg ?? 10);
  if (!(m > 0 && m <= 24 * 60)) throw new Error(`soak bench: --minutes must be a number in (0, 1440], got '${arg}'`);
  return m;
}

/** Link rekey age in seconds (`--rekey=S`, default 1: a rekey every second, as the issue asks). */
function rekeySeconds(): number {
  const arg = process.argv.find((x) => x.startsWith('--rekey='))?.split('=')[1];
  const s = Number(arg ?? 1);
  if (!(Number.isInteger(s) && s >= 1 && s <= 120)) throw new Error(`soak bench: --rekey must be an integer in 1..120 seconds, got '${arg}'`);
  return s;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`soak bench: timed out waiting for ${what}`);
    await sleep(250);
  }
}

async function sample(d: Daemon, atS: number): Promise<DaemonSample> {
  const links = await d.request('GET', '/engine/links');
  const services = await d.request('GET', '/services/stats');
  return {
    atS,
    stats: await d.get('/engine/stats'),
    counters: await d.get('/engine/counters'),
    links: links.status === 200 ? JSON.parse(links.body) : null,
    services: services.status === 200 ? JSON.parse(services.body) : null,
  };
}

/** A long-running udhcpc in the instance, bound once this returns; `renew()` asks for a renewal (SIGUSR1). */
async function dhcpClient(net: TestNet, inst: Instance, tap: string, dir: string) {
  const script = path.join(dir, 'dhcp.sh');
  writeFileSync(script, DHCP_SCRIPT);
  chmodSync(script, 0o755);
  const pidFile = path.join(dir, `udhcpc-${inst.name}.pid`);
  const child = net.track(spawnIn(inst.ns, 'udhcpc', ['-i', tap, '-f', '-p', pidFile, '-s', script, '-t', '10', '-T', '1', '-A', '2']));
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b));
  const address = await until(`a DHCP lease for ${inst.name}`, async () => /^bound (\S+)$/m.exec(out)?.[1]);
  return {
    address,
    renew: () => process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 'SIGUSR1'),
    renewals: () => (out.match(/^renew /gm) ?? []).length,
  };
}

export async function run(opts: { json: boolean }): Promise<Record<string, unknown>> {
  const total = Math.round(minutes() * 60);
  const cleanups: Array<() => unknown> = [];
  const f: Record<string, unknown> = { minutes: total / 60, rekey_s: rekeySeconds() };
  try {
    const net = await TestNet.create(shim(cleanups), { hosts: 3 });
    const cp = await controlPlaneConfig(net, { link: { rekeyAfterSeconds: rekeySeconds() } });
    const daemons: Daemon[] = [];
    for (const h of net.hosts) daemons.push(await net.startAppnetd(h, cp));
    const [h1, h2, h3] = net.hosts.map((h) => h.ns);
    const dir = path.dirname(daemons[0].logFile);

    // Two DHCP networks, one encrypted, with an instance on each of two hosts.
    const plain = await cliJson(h1, 'network', 'create', 'soak-plain', '198.18.140.0/24');
    const enc = await cliJson(h1, 'network', 'create', 'soak-enc', '198.18.141.0/24', '--encrypt');
    const member = async (name: string, host: string, network: string) => {
      const inst = await net.addInstance(name);
      cleanups.push(() => runCmd('rm', ['-rf', `/etc/netns/${inst.ns}`], { reject: false }));
      const rec = await cliJson(h1, 'instance', 'create', name, '--host', host, '--netns', inst.ns, '--network', network);
      const tap = portName(rec.interfaces[0].uuid);
      await until(`${tap} in ${name}`, async () => ((await runCmd('ip', ['-n', inst.ns, 'link', 'show', 'dev', tap], { reject: false })).code === 0 ? true : undefined));
      await runIn(inst.ns, 'ip', ['link', 'set', 'dev', tap, 'up']);
      return { inst, dhcp: await dhcpClient(net, inst, tap, dir) };
    };
    const pa = await member('pa', 'h1', plain.uuid);
    const pb = await member('pb', 'h2', plain.uuid);
    const ea = await member('ea', 'h2', enc.uuid);
    const eb = await member('eb', 'h3', enc.uuid);
    const dhcp = [pa.dhcp, pb.dhcp, ea.dhcp, eb.dhcp];

    // The application connection, and the source whose connection comes and goes.
    const inst = async (name: string, host: string, ...args: string[]) => {
      const i = await net.addInstance(name);
      cleanups.push(() => runCmd('rm', ['-rf', `/etc/netns/${i.ns}`], { reject: false }));
      return { ns: i.ns, uuid: (await cliJson(h1, 'instance', 'create', name, '--host', host, '--netns', i.ns, ...args)).uuid as string };
    };
    const sink = await inst('sink', 'h3', '--inbound', 'svc:5201');
    const src = await inst('src', 'h1', '--outbound', 'db');
    const churn = await inst('churn', 'h2', '--outbound', 'db');
    await cliJson(h1, 'add', src.uuid, 'db', sink.uuid, 'svc');
    const conn = await until('the connection ESTABLISHED', async () => {
      const c = (await cliJson(h1, 'list')).find((x: any) => x.source_instance_id === src.uuid);
      return c?.status === 'ESTABLISHED' ? c : undefined;
    });
    for (const [a, b] of [[pa, pb], [ea, eb]] as const) {
      await until(`ping ${a.inst.name} -> ${b.inst.name}`, async () =>
        ((await runIn(a.inst.ns, 'ping', ['-c', '1', '-W', '1', b.dhcp.address], { reject: false })).code === 0 ? true : undefined));
    }

    // Traffic for the whole run, bounded in rate.
    log(`traffic for ${total} s: ping + iperf3 ${RATE}bit/s on the plain and encrypted networks, iperf3 through connection ${conn.connection_id}`);
    const ping = (from: Instance, to: string) => {
      const c = net.track(spawnIn(from.ns, 'ping', ['-n', '-q', '-i', '0.05', '-w', String(total), to]));
      let out = '';
      c.stdout!.on('data', (b: Buffer) => (out += b));
      return new Promise<string>((resolve) => c.once('close', () => resolve(out)));
    };
    const traffic = {
      pingPlain: ping(pa.inst, pb.dhcp.address),
      pingEnc: ping(ea.inst, eb.dhcp.address),
      tcpPlain: iperf3(net, pa.inst.ns, pb.inst.ns, pb.dhcp.address, ['-b', RATE], total),
      tcpEnc: iperf3(net, ea.inst.ns, eb.inst.ns, eb.dhcp.address, ['-b', RATE], total),
      tcpConn: iperf3(net, src.ns, sink.ns, conn.link.inbound_address, ['-b', RATE], total),
    };
    for (const p of Object.values(traffic)) (p as Promise<unknown>).catch(() => undefined); // awaited below

    await sleep(3000); // let the flows start before the baseline
    const started = Date.now();
    const atS = () => (Date.now() - started) / 1000;
    const samples: Record<string, DaemonSample[]> = {};
    const baselines: Record<string, Record<string, number>> = {};
    for (const d of daemons) {
      const s = await sample(d, 0);
      samples[d.host.name] = [s];
      baselines[d.host.name] = mustStayZero(s);
    }

    const errors: string[] = [];
    const counts = { renewRequests: 0, churnAdds: 0, churnRemoves: 0, churnEstablished: 0, captures: 0, capturedRecords: 0 };
    let churnUp = false;
    let nextRenew = 0;
    const scopes = [{ network: plain.uuid }, { network: enc.uuid }, { connection: conn.connection_id }];
    // Each periodic step runs alone (a slow one is skipped, not stacked) and records its failure; the end
    // waits for the steps in flight, so none meets a daemon being torn down.
    const inFlight = new Set<Promise<void>>();
    const every = (ms: number, what: string, step: () => Promise<void>) => {
      let busy = false;
      const timer = setInterval(() => {
        if (busy) return;
        busy = true;
        const p: Promise<void> = step()
          .catch((e: Error) => {
            errors.push(`${what} at ${Math.round(atS())} s: ${e.message}`);
            log(`FAILED: ${errors[errors.length - 1]}`);
          })
          .finally(() => {
            busy = false;
            inFlight.delete(p);
          });
        inFlight.add(p);
      }, ms);
      return timer;
    };
    const timers = [
      every(RENEW_EVERY_MS, 'DHCP renew', async () => {
        dhcp[nextRenew++ % dhcp.length].renew();
        counts.renewRequests++;
      }),
      every(CHURN_EVERY_MS, 'connection churn', async () => {
        if (churnUp) {
          const c = (await cliJson(h1, 'list')).find((x: any) => x.source_instance_id === churn.uuid);
          if (c?.status === 'ESTABLISHED') counts.churnEstablished++;
          await cliJson(h1, 'remove', churn.uuid, 'db', sink.uuid, 'svc');
          counts.churnRemoves++;
        } else {
          await cliJson(h1, 'add', churn.uuid, 'db', sink.uuid, 'svc');
          counts.churnAdds++;
        }
        churnUp = !churnUp;
      }),
      every(CAPTURE_EVERY_MS, 'capture', async () => {
        const scope = scopes[counts.captures % scopes.length];
        const started = await apiCall(h1, 'POST', '/captures', TEST_TOKEN, scope);
        if (started.status !== 201) throw new Error(`POST /captures ${JSON.stringify(scope)}: ${started.status} ${JSON.stringify(started.body)}`);
        await sleep(5000);
        const records = await apiCall(h1, 'GET', `/captures/${started.body.id}/records`, TEST_TOKEN);
        counts.capturedRecords += Array.isArray(records.body?.records) ? records.body.records.length : 0;
        const stopped = await apiCall(h1, 'DELETE', `/captures/${started.body.id}`, TEST_TOKEN);
        if (stopped.status >= 300) throw new Error(`DELETE /captures/${started.body.id}: ${stopped.status}`);
        counts.captures++;
      }),
      every(SAMPLE_EVERY_MS, 'sample', async () => {
        const lines = [`minute ${Math.round(atS() / 60)}:`];
        for (const d of daemons) {
          const list = samples[d.host.name];
          const s = await sample(d, atS());
          lines.push(`  ${minuteLine(d.host.name, list[list.length - 1], s, baselines[d.host.name])}`);
          list.push(s);
        }
        log(lines.join('\n'));
      }),
    ];
    try {
      while (atS() < total) await sleep(500);
    } finally {
      for (const t of timers) clearInterval(t);
      await Promise.all(inFlight);
    }
    while (samples.h1.length < 2 || samples.h1[samples.h1.length - 1].atS < total - 1) {
      for (const d of daemons) samples[d.host.name].push(await sample(d, atS()));
    }

    // The traffic's own figures.
    const mbps = (r: any) => Math.round(r.end.sum_received.bits_per_second / 1e5) / 10;
    for (const [k, p] of Object.entries(traffic)) {
      try {
        const r = await p;
        if (typeof r === 'string') {
          const pr = parsePing(r);
          f[`${k}_sent`] = pr?.transmitted ?? null;
          f[`${k}_lost`] = pr ? pr.transmitted - pr.received : null;
        } else {
          f[`${k}_mbps`] = mbps(r);
          f[`${k}_retransmits`] = r.end.sum_sent.retransmits ?? null;
        }
      } catch (e) {
        errors.push(`${k}: ${(e as Error).message}`);
      }
    }
    Object.assign(f, counts, { dhcpRenewals: dhcp.reduce((n, c) => n + c.renewals(), 0) });
    const sum = summarise(samples, baselines);
    const last = (h: string) => samples[h][samples[h].length - 1];
    for (const d of daemons) {
      const h = d.host.name;
      f[`${h}_rss_mb`] = Math.round(last(h).stats.rssBytes / 2 ** 20);
      f[`${h}_fds`] = last(h).stats.openFds;
      f[`${h}_elu_pct`] = Math.round(elu(samples[h][0], last(h)) * 1000) / 10;
      f[`${h}_rss_mb_per_hour`] = sum.rssMbPerHour[h];
      f[`${h}_fds_per_hour`] = sum.fdsPerHour[h];
      f[`${h}_moved`] = sum.movedCounters[h];
    }
    f.errors = errors;
    f.ok = sum.ok && errors.length === 0;
    if (!f.ok) process.exitCode = 1;
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch((e) => log(`cleanup: ${(e as Error).message}`));
  }
  if (!opts.json) {
    console.log(`\n## soak: ${f.minutes} min, 3 hosts (${f.ok ? 'no must-be-zero counter moved' : 'FAILED'})`);
    for (const h of ['h1', 'h2', 'h3']) {
      console.log(`${h}: RSS ${f[`${h}_rss_mb`]} MB (slope ${f[`${h}_rss_mb_per_hour`]} MB/h), fds ${f[`${h}_fds`]} (slope ${f[`${h}_fds_per_hour`]}/h), ELU ${f[`${h}_elu_pct`]}%, moved: ${JSON.stringify(f[`${h}_moved`])}`);
    }
    const { errors, ...rest } = f;
    console.log(JSON.stringify(rest));
    for (const e of errors as string[]) console.log(`error: ${e}`);
  }
  return f;
}
