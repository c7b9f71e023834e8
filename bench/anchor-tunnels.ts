// The userspace encrypted tunnels the link benchmark measures ours against, in the same run on the same
// topology: wireguard-go, Nebula (Debian `nebula`, lighthouse-less static host map, any/any firewall) and tinc
// 1.0 (Debian `tinc`, switch mode). Each runs one daemon per test host (TestNet, 198.18.0.11/.12 on a bridged
// underlay) with its tunnel device in the host namespace and an inner MTU of 1418, as ours has, and iperf3
// runs on those devices: one virtual device and one userspace daemon per side, like ours.
//
// `runAnchor(spec)` builds the hosts, lets the spec start its daemons and address its devices, measures the path
// (bench/path-measure.ts) with each daemon's CPU and RSS over the TCP run, and removes everything.
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { hasExited, run as exec, runIn, spawnIn, stopProcess } from '../test/helpers/run.ts';
import { TestNet, type Host } from '../test/helpers/testnet.ts';
import { cpuMs, measure, rssBytes, shim, type Around, type Figures, type Log, type Path } from './path-measure.ts';

export const MTU = 1418;

export interface AnchorSpec {
  /** Key prefix of its figures (`wg`, `nebula`, `tinc`). */
  p: string;
  /** Started daemons (tracked by the net), and the tunnel device and address of each host. */
  start(net: TestNet, dir: string): Promise<{ procs: ChildProcess[]; devs: string[]; addrs: string[] }>;
  /** Files the daemons leave outside `dir` (e.g. wireguard-go's UAPI sockets), removed at the end. */
  leftovers?: string[];
}

/** `only`: measure the path with this instead of measure() (e.g. pings alone, bench/latency.ts). */
export async function runAnchor(spec: AnchorSpec, secs: number, f: Figures, fails: string[], log: Log, udpSizes: number[], only?: (x: Path) => Promise<void>): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  const t = shim(cleanups);
  const dir = mkdtempSync(path.join(os.tmpdir(), `appnet-${spec.p}bench-`));
  const uninstall = removeOnSignal([dir, ...(spec.leftovers ?? [])]);
  let procs: ChildProcess[] = [];
  try {
    log(`${spec.p}: building 2 hosts`);
    const net = await TestNet.create(t, { hosts: 2 });
    const started = await spec.start(net, dir);
    procs = started.procs;
    const [h1, h2] = net.hosts;
    // Tunnels connect in the background (tinc's meta connection, nebula's first handshake): time nothing
    // until a ping gets through, so the figures measure the path, not its set-up.
    for (let i = 0; ; i++) {
      const r = await runIn(h1.ns, 'ping', ['-n', '-c', '1', '-W', '1', started.addrs[1]], { reject: false });
      if (r.code === 0) break;
      if (i >= 30) throw new Error(`${spec.p}: ${started.addrs[1]} not reachable through the tunnel after 30 tries`);
    }
    f[`${spec.p}_mtu`] = JSON.parse((await exec('ip', ['-j', '-n', h1.ns, 'link', 'show', 'dev', started.devs[0]])).stdout)[0].mtu;
    const around: Around = async (step) => {
      const at0 = performance.now();
      const cpu0 = procs.map((p) => cpuMs(p.pid));
      await step();
      const wall = performance.now() - at0;
      procs.forEach((p, i) => {
        f[`${spec.p}_cpu_pct_h${i + 1}`] = Math.round((100 * (cpuMs(p.pid) - cpu0[i])) / wall);
        f[`${spec.p}_rss_mb_h${i + 1}`] = Math.round(rssBytes(p.pid) / 2 ** 20);
      });
    };
    const x: Path = { net, a: h1.ns, b: h2.ns, addr: started.addrs[1], p: spec.p, aDev: started.devs[0], hostB: h2.ns };
    await (only ? only(x) : measure(x, secs, f, fails, log, around, udpSizes));
  } catch (e) {
    t.passed = false;
    throw e;
  } finally {
    await Promise.all(procs.map((p) => stopProcess(p, { group: true, graceMs: 3000 }).catch((e: Error) => log(`${spec.p}: stop: ${e.message}`))));
    for (const fn of cleanups.reverse()) await fn();
    for (const file of spec.leftovers ?? []) rmSync(file, { force: true });
    rmSync(dir, { recursive: true, force: true });
    uninstall();
  }
}

/**
 * On SIGINT/SIGTERM/SIGHUP TestNet SIGKILLs what it tracks, and a SIGKILLed daemon leaves its files behind:
 * remove them (and the throwaway keys). The process still dies by the signal: TestNet's handler re-raises it,
 * and this one does too if it is the last listener. Returns the function that uninstalls it.
 */
function removeOnSignal(files: string[]): () => void {
  const sigs = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const handlers = sigs.map((sig) => {
    const h = () => {
      for (const f of files) rmSync(f, { recursive: true, force: true });
      process.off(sig, h);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, h);
    return h;
  });
  return () => sigs.forEach((sig, i) => process.off(sig, handlers[i]));
}

/** Waits until `ready()` or the daemon exits; `what` names it in the error. */
async function waitFor(child: ChildProcess, what: string, ready: () => boolean | Promise<boolean>, logFile: string): Promise<void> {
  for (const deadline = Date.now() + 15_000; !(await ready()); await sleep(50)) {
    if (hasExited(child) || Date.now() > deadline) {
      await stopProcess(child, { group: true, graceMs: 1000 });
      throw new Error(`${what}: not ready (exit ${child.exitCode ?? child.signalCode ?? 'none, timed out'}); see ${logFile}`);
    }
  }
}

const hasDevice = async (h: Host, dev: string) => (await exec('ip', ['-n', h.ns, 'link', 'show', 'dev', dev], { reject: false })).code === 0;

// ---- wireguard-go ---------------------------------------------------------------------------------------------

// Its UAPI socket is /var/run/wireguard/<ifname>.sock, shared by every namespace: the names carry our pid.
const WG_IFS = [`wg${process.pid}a`, `wg${process.pid}b`];
const wgSocket = (ifname: string) => `/var/run/wireguard/${ifname}.sock`;

export const wireguardGo: AnchorSpec = {
  p: 'wg',
  leftovers: WG_IFS.map(wgSocket),
  async start(net, dir) {
    const keys = await Promise.all(net.hosts.map(async () => {
      const priv = (await exec('wg', ['genkey'])).stdout.trim();
      return { priv, pub: (await exec('wg', ['pubkey'], { input: priv })).stdout.trim() };
    }));
    const procs: ChildProcess[] = [];
    for (const [i, h] of net.hosts.entries()) {
      const ifname = WG_IFS[i];
      const other = net.hosts[1 - i];
      const keyFile = path.join(dir, `${ifname}.key`);
      writeFileSync(keyFile, keys[i].priv + '\n', { mode: 0o600 });
      const logFile = path.join(dir, `${ifname}.log`);
      // -f: foreground, so the pid we track is the daemon itself.
      const child = net.track(spawnIn(h.ns, 'wireguard-go', ['-f', ifname], { logFile }));
      procs.push(child);
      await waitFor(child, `wireguard-go ${ifname}`, () => existsSync(wgSocket(ifname)), logFile);
      await runIn(h.ns, 'wg', ['set', ifname, 'listen-port', '51820', 'private-key', keyFile,
        'peer', keys[1 - i].pub, 'endpoint', `${other.underlayIp}:51820`, 'allowed-ips', `198.18.121.${other.index}/32`]);
      await exec('ip', ['-n', h.ns, 'addr', 'add', `198.18.121.${h.index}/24`, 'dev', ifname]);
      await exec('ip', ['-n', h.ns, 'link', 'set', 'dev', ifname, 'mtu', String(MTU), 'up']);
    }
    return { procs, devs: WG_IFS, addrs: net.hosts.map((h) => `198.18.121.${h.index}`) };
  },
};

// ---- Nebula ---------------------------------------------------------------------------------------------------

const NB_IFS = [`nb${process.pid}a`, `nb${process.pid}b`];

export const nebula: AnchorSpec = {
  p: 'nebula',
  async start(net, dir) {
    const ca = path.join(dir, 'ca');
    await exec('nebula-cert', ['ca', '-name', 'appnet-bench', '-out-crt', `${ca}.crt`, '-out-key', `${ca}.key`]);
    const procs: ChildProcess[] = [];
    const addrs = net.hosts.map((h) => `198.18.122.${h.index}`);
    for (const [i, h] of net.hosts.entries()) {
      const base = path.join(dir, h.name);
      await exec('nebula-cert', ['sign', '-ca-crt', `${ca}.crt`, '-ca-key', `${ca}.key`, '-name', h.name, '-ip', `${addrs[i]}/24`,
        '-out-crt', `${base}.crt`, '-out-key', `${base}.key`]);
      const other = net.hosts[1 - i];
      // A static host map instead of a lighthouse; any/any firewall; the tun MTU matched to ours.
      const config = {
        pki: { ca: `${ca}.crt`, cert: `${base}.crt`, key: `${base}.key` },
        static_host_map: { [addrs[1 - i]]: [`${other.underlayIp}:4242`] },
        lighthouse: { am_lighthouse: false, hosts: [] },
        listen: { host: h.underlayIp, port: 4242 },
        punchy: { punch: false },
        tun: { disabled: false, dev: NB_IFS[i], mtu: MTU },
        logging: { level: 'warning' },
        firewall: { outbound: [{ port: 'any', proto: 'any', host: 'any' }], inbound: [{ port: 'any', proto: 'any', host: 'any' }] },
      };
      // Nebula reads YAML; JSON is YAML.
      writeFileSync(`${base}.yml`, JSON.stringify(config, null, 2));
      const logFile = `${base}.log`;
      const child = net.track(spawnIn(h.ns, 'nebula', ['-config', `${base}.yml`], { logFile }));
      procs.push(child);
      await waitFor(child, `nebula on ${h.name}`, () => hasDevice(h, NB_IFS[i]), logFile);
    }
    return { procs, devs: NB_IFS, addrs };
  },
};

// ---- tinc 1.0, switch mode ------------------------------------------------------------------------------------

const TC_IFS = [`tc${process.pid}a`, `tc${process.pid}b`];

export const tinc: AnchorSpec = {
  p: 'tinc',
  async start(net, dir) {
    const addrs = net.hosts.map((h) => `198.18.123.${h.index}`);
    const confs = net.hosts.map((h) => path.join(dir, h.name));
    for (const [i, h] of net.hosts.entries()) {
      mkdirSync(path.join(confs[i], 'hosts'), { recursive: true });
      writeFileSync(path.join(confs[i], 'tinc.conf'), [
        `Name = ${h.name}`, 'Mode = switch', 'DeviceType = tap', `Interface = ${TC_IFS[i]}`, 'AddressFamily = ipv4',
        `BindToAddress = ${h.underlayIp}`, 'Port = 655', ...(i === 0 ? [`ConnectTo = ${net.hosts[1].name}`] : []), '',
      ].join('\n'));
      writeFileSync(path.join(confs[i], 'tinc-up'), `#!/bin/sh\nip addr add ${addrs[i]}/24 dev $INTERFACE\nip link set $INTERFACE mtu ${MTU} up\n`, { mode: 0o755 });
      writeFileSync(path.join(confs[i], 'hosts', h.name), `Address = ${h.underlayIp}\nPort = 655\n`);
      // Generates rsa_key.priv and appends the public key to hosts/<name>.
      await exec('tincd', ['-c', confs[i], '-K2048'], { input: '\n\n' });
    }
    // Each host knows the other's host file (address and public key).
    for (const [i, other] of [...net.hosts].reverse().entries()) {
      await exec('cp', [path.join(confs[1 - i], 'hosts', other.name), path.join(confs[i], 'hosts', other.name)]);
    }
    const procs: ChildProcess[] = [];
    for (const [i, h] of net.hosts.entries()) {
      const logFile = path.join(dir, `${h.name}.log`);
      const child = net.track(spawnIn(h.ns, 'tincd', ['-c', confs[i], '-D', '-d0', `--pidfile=${path.join(confs[i], 'pid')}`], { logFile }));
      procs.push(child);
      await waitFor(child, `tincd on ${h.name}`, async () => (await exec('ip', ['-n', h.ns, '-o', '-4', 'addr', 'show', 'dev', TC_IFS[i]], { reject: false })).stdout.includes(addrs[i]), logFile);
    }
    return { procs, devs: TC_IFS, addrs };
  },
};
