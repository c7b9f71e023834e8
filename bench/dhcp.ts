// DHCP leases per second with many clients: one appnetd (store mode, SQLite) serving a provide_dhcp
// network to N instances, each in its own namespace with the TAP the daemon created, and Debian's
// udhcpc started in every one of them at once.
//
//   round 1 (new leases):  every client DISCOVER -> OFFER -> REQUEST -> ACK; the clock runs from the
//                          first spawn until the last udhcpc exits bound (its script applied the address)
//   round 2 (renewals):    appnetd restarted (SIGTERM, start: leases reloaded from the store, TAPs
//                          recreated); every client asks for its previous address (`udhcpc -r`)
//   baseline:              the same N processes spawned the same way, each running `true`: what spawning
//                          alone costs on this machine, which bounds any DHCP figure from below
//
// `node --import tsx bench/run.ts dhcp [--json] [--scale=F]`: F (default 1) scales the 200 clients
// (--scale=0.1: 20; at most 5: 1000). Run it under the shared lock: it builds N namespaces.
// Traffic stays in the namespaces built here (198.18.208.0/22).
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { portName } from '../control/reconcile/plan.ts';
import { InstanceRepository } from '../control/repo/instances.ts';
import { NetworkRepository } from '../control/repo/networks.ts';
import { openStore } from '../control/store/index.ts';
import { runIn } from '../test/helpers/run.ts';
import { TestNet, type Daemon } from '../test/helpers/testnet.ts';
import { benchLog, r2, shim } from './path-measure.ts';

const log = benchLog('dhcp');
const FULL = 200;
const NETBLOCK = '198.18.208.0/22';
const FLOATING_POOL = '198.19.0.0/24';
const SYSTEM = 'system';

// Applies the address, as a real client does, so "bound" means the instance has it.
const SCRIPT = `#!/bin/sh
case "$1" in
  bound|renew) ip addr replace "$ip/$subnet" dev "$interface" ;;
esac
exit 0
`;

function clients(): number {
  const arg = process.argv.find((x) => x.startsWith('--scale='))?.split('=')[1];
  const f = Number(arg ?? 1);
  if (!(f > 0 && f <= 5)) throw new Error(`dhcp bench: --scale must be in (0, 5], got '${arg}'`);
  return Math.max(1, Math.round(FULL * f));
}

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`dhcp bench: timed out waiting for ${what}`);
    await sleep(250);
  }
}

interface Client { ns: string; tap: string; ipv4: string }

/** Starts every command at once; resolves with the wall time until the last exits, and the failures. */
async function concurrently(cs: Client[], cmd: (c: Client) => [string, string[]]): Promise<{ ms: number; failed: string[] }> {
  const started = performance.now();
  const results = await Promise.all(cs.map((c) => {
    const [bin, args] = cmd(c);
    return runIn(c.ns, bin, args, { reject: false, timeoutMs: 120_000 }).then((r) => (r.code === 0 ? undefined : `${c.ns}: exit ${r.code} ${r.stderr.trim().split('\n').pop()}`));
  }));
  return { ms: performance.now() - started, failed: results.filter((x): x is string => x !== undefined) };
}

async function dhcpStats(d: Daemon): Promise<{ ACK: number; NAK: number; OFFER: number }> {
  return (await d.get('/services/stats')).dhcp.sent;
}

export async function run(opts: { json: boolean }): Promise<Record<string, number | null>> {
  const n = clients();
  const cleanups: Array<() => unknown> = [];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-bench-dhcp-'));
  const f: Record<string, number | null> = { clients: n };
  try {
    const net = await TestNet.create(shim(cleanups), { hosts: 1 });
    const [h1] = net.hosts;
    const storeUrl = `sqlite:${path.join(dir, 'appnet.db')}`;
    const d = await net.startAppnetd(h1, { store: storeUrl, floatingPool: FLOATING_POOL });
    const store = await openStore(storeUrl);
    cleanups.unshift(() => store.close());
    const networks = new NetworkRepository({ store, floatingPool: FLOATING_POOL });
    const instances = new InstanceRepository({ store, networks });
    const network = await networks.create({ name: 'dhcp-bench', netblock: NETBLOCK, provide_dhcp: true, provide_nat: false, provide_dns: false }, SYSTEM);
    const script = path.join(dir, 'script.sh');
    writeFileSync(script, SCRIPT);
    chmodSync(script, 0o755);

    log(`${n} instances on ${NETBLOCK}`);
    const cs: Client[] = [];
    for (let i = 0; i < n; i++) {
      const ns = (await net.addInstance(`c${i}`)).ns;
      const rec = await instances.create({ name: `c${i}`, host: h1.name, netns: ns, interfaces: [{ network: network.uuid }] }, SYSTEM);
      cs.push({ ns, tap: portName(rec.interfaces[0].uuid), ipv4: rec.interfaces[0].ipv4! });
    }
    const ports = async () => ((await d.get('/engine/counters')).ports as unknown[]).length;
    await until(`${n} TAPs`, 300_000, async () => ((await ports()) >= n ? true : undefined));
    // Served once the reconcile pass that made the ports has handed them to the services.
    await sleep(1000);

    const base = await concurrently(cs, () => ['true', []]);
    f.spawn_baseline_ms = Math.round(base.ms);
    log(`baseline: ${n} 'ip netns exec ... true' in ${f.spawn_baseline_ms} ms`);

    const udhcpc = (extra: (c: Client) => string[]) => (c: Client): [string, string[]] =>
      ['udhcpc', ['-i', c.tap, '-f', '-q', '-n', '-t', '10', '-T', '1', '-s', script, ...extra(c)]];
    const before1 = await dhcpStats(d);
    const r1 = await concurrently(cs, udhcpc(() => []));
    const after1 = await dhcpStats(d);
    if (r1.failed.length) throw new Error(`dhcp bench: ${r1.failed.length} clients got no lease, e.g. ${r1.failed[0]}\n${d.logTail(20)}`);
    f.new_ms = Math.round(r1.ms);
    f.new_leases_per_s = r2(n / (r1.ms / 1000));
    f.new_acks = after1.ACK - before1.ACK;
    f.new_offers = after1.OFFER - before1.OFFER;
    log(`round 1: ${n} leases in ${f.new_ms} ms (${f.new_leases_per_s}/s; ${f.new_offers} OFFER, ${f.new_acks} ACK)`);
    const addressed = await runIn(cs[n - 1].ns, 'ip', ['-o', '-4', 'addr', 'show', 'dev', cs[n - 1].tap]);
    if (!addressed.stdout.includes(`inet ${cs[n - 1].ipv4}/`)) throw new Error(`dhcp bench: ${cs[n - 1].ns} does not hold ${cs[n - 1].ipv4}: ${addressed.stdout}`);

    log('restarting appnetd');
    await d.restart();
    await until(`${n} TAPs after the restart`, 300_000, async () => ((await ports()) >= n ? true : undefined));
    await sleep(1000);
    const r2run = await concurrently(cs, udhcpc((c) => ['-r', c.ipv4]));
    const after2 = await dhcpStats(d);
    if (r2run.failed.length) throw new Error(`dhcp bench: ${r2run.failed.length} clients failed to renew, e.g. ${r2run.failed[0]}\n${d.logTail(20)}`);
    f.renew_ms = Math.round(r2run.ms);
    f.renew_leases_per_s = r2(n / (r2run.ms / 1000));
    f.renew_acks = after2.ACK;
    f.renew_naks = after2.NAK;
    log(`round 2: ${n} renewals in ${f.renew_ms} ms (${f.renew_leases_per_s}/s; ${f.renew_acks} ACK, ${f.renew_naks} NAK)`);
    // Many TAPs take a while to go: stop the daemon here rather than inside the teardown's allowance.
    if (d.pid !== undefined) process.kill(d.pid, 'SIGTERM');
    for (let i = 0; i < 600 && d.running; i++) await sleep(100);
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch((e) => log(`cleanup: ${(e as Error).message}`));
    rmSync(dir, { recursive: true, force: true });
  }
  if (!opts.json) {
    console.log(`\n## dhcp: ${n} udhcpc clients at once against one appnetd (${Math.round(process.uptime())} s run)`);
    console.log('| round | wall ms | leases/s |');
    console.log('|---|---|---|');
    console.log(`| new leases (DISCOVER/OFFER/REQUEST/ACK) | ${f.new_ms} | ${f.new_leases_per_s} |`);
    console.log(`| renewals after an appnetd restart (REQUEST/ACK) | ${f.renew_ms} | ${f.renew_leases_per_s} |`);
    console.log(`| spawn baseline (${n} x ip netns exec true) | ${f.spawn_baseline_ms} | ${r2(n / ((f.spawn_baseline_ms as number) / 1000))} |`);
  }
  return f;
}
