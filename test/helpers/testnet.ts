// Test hosts as network namespaces, for integration tests that run real appnetd processes and real kernel
// peers. Everything stays inside namespaces this file creates; addresses come from 198.18.0.0/15.
//
//   <prefix>h1 (host)              <prefix>ul (underlay)              <prefix>h2 (host)
//   appnetd / kernel vxlan42       +-------- br0 --------+            appnetd / kernel vxlan42
//   ul0 198.18.0.11/24 ---veth--- h1                    h2 ---veth--- ul0 198.18.0.12/24
//     |  TAP/veth                                                           |  TAP/veth
//   <prefix>-a (instance)                                            <prefix>-b (instance)
//
// <prefix> is `an<pid>x<n>`. Teardown, in order of preference: t.teardown -> destroy(); process 'exit' and
// SIGINT/SIGTERM/SIGHUP (ava kills a timed-out worker with SIGTERM) -> synchronous cleanup; and namespaces
// of dead pids, left by a SIGKILLed run, are swept by the next create() on the machine.

import type { ExecutionContext } from 'ava';
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { defaultEngineThreads, type DaemonConfig } from '../../control/daemon/config.ts';
import {
  forgetNamespace, formatCommand, hasExited, machineOf, placeInstance, registerMachine, run, runIn, signalGroup, spawnIn, stopProcess, waitExit,
  type ExitStatus,
} from './run.ts';

const APPNETD = fileURLToPath(new URL('../../bin/appnetd.js', import.meta.url));
const TCP_TRANSFER = fileURLToPath(new URL('./tcp-transfer.mjs', import.meta.url));
const STALE_NS = /^an(\d+)x\d+/;
const MAX_SOCKET_PATH = 107; // sun_path is 108 bytes including the NUL

export interface Host {
  name: string;
  ns: string;
  underlayIp: string;
  index: number;
  /** With `machines: true`: the pid of the process that pins this host's mount and UTS namespaces. */
  machine?: number;
}
export interface Instance { name: string; ns: string; host?: Host }

/** A machine's private directories (tmpfs each): nothing in them is seen by another host or the test's root. */
export const MACHINE_PRIVATE_DIRS = ['/var/lib/appnet', '/run/appnet', '/tmp', '/etc/netns'];
/** The checkout the daemons run from. */
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');

export interface KernelVtepOptions {
  vni: number;
  dstport?: number;
  /** Underlay addresses that get flooded (BUM) frames, one all-zeros FDB entry each. */
  remotes: string[];
  instance: Instance;
  ifname?: string;
  mac?: string;
  cidr: string;
  /** Default underlay MTU - 50 (1450 on the default underlay). */
  mtu?: number;
}

export interface KernelVtep { vni: number; vxlan: string; bridge: string; hostIf: string; instanceIf: string; mac: string }

export interface PingResult {
  transmitted: number;
  received: number;
  lossPercent: number;
  duplicates: number;
  /** null when nothing came back. */
  rttAvgMs: number | null;
  output: string;
}

export interface TransferResult { sentBytes: number; receivedBytes: number; sentSha256: string; receivedSha256: string }

/** What startAppnetd needs; everything missing is derived from the host and the net. */
export type DaemonConfigInput = Partial<Omit<DaemonConfig, 'link'>> & { link?: Partial<DaemonConfig['link']> };

const liveNets = new Set<TestNet>();
let netCounter = 0;
let safetyNetInstalled = false;

function installSafetyNet(): void {
  if (safetyNetInstalled) return;
  safetyNetInstalled = true;
  process.on('exit', () => {
    for (const net of liveNets) net.destroySync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      for (const net of liveNets) net.destroySync();
      process.off(sig, onSignal);
      process.kill(process.pid, sig); // re-raise: die the way we would have without this handler
    };
    process.on(sig, onSignal);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function listNamespaces(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((n) => n.length > 0);
}

/** Delete namespaces (and kill their processes) left by test processes that no longer exist. */
export async function sweepStaleNamespaces(): Promise<string[]> {
  const swept: string[] = [];
  for (const ns of await listNamespaces()) {
    const m = STALE_NS.exec(ns);
    if (!m || pidAlive(Number(m[1]))) continue;
    const pids = await run('ip', ['netns', 'pids', ns], { reject: false });
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone already
      }
    }
    // Another process may sweep the same namespace concurrently: losing that race is fine.
    const del = await run('ip', ['netns', 'delete', ns], { reject: false });
    if (del.code === 0) swept.push(ns);
  }
  return swept;
}

function ip(...args: string[]) {
  return run('ip', args);
}

export class TestNet {
  readonly hosts: Host[] = [];
  readonly underlayNs: string;
  private readonly namespaces: string[] = [];
  private readonly instances = new Map<string, Instance>();
  private readonly procs = new Set<ChildProcess>();
  private readonly daemons: Daemon[] = [];
  private readonly vteps = new Map<string, Set<string>>(); // `${hostNs}/${vni}` -> remotes already flooded to
  private dir?: Promise<string>;
  private dirPath?: string;
  private destroying?: Promise<void>;
  private seq = 0;

  private constructor(
    private readonly t: ExecutionContext,
    readonly prefix: string,
    readonly underlayMtu: number,
  ) {
    this.underlayNs = `${prefix}ul`;
  }

  /** Build the topology. Call from a test (ava forbids t.teardown in hooks). */
  /**
   * With `machines: true` each host is a separate machine as far as appnetd can tell: its own network
   * namespace, and its own mount and UTS namespaces (hostname `<prefix>-<host>`) with private tmpfs on
   * MACHINE_PRIVATE_DIRS. Its daemon keeps config, keys, tokens and sockets there; the test reaches the admin
   * socket through /proc/<holder>/root, as an operator on that machine would through its own filesystem.
   */
  static async create(t: ExecutionContext, opts: { hosts: number; underlayMtu?: number; machines?: boolean }): Promise<TestNet> {
    if (!Number.isInteger(opts.hosts) || opts.hosts < 1 || opts.hosts > 244) {
      throw new Error(`TestNet.create: hosts must be an integer in 1..244 (underlay 198.18.0.11-254), got ${opts.hosts}`);
    }
    const net = new TestNet(t, `an${process.pid}x${++netCounter}`, opts.underlayMtu ?? 1500);
    installSafetyNet();
    liveNets.add(net);
    t.teardown(() => net.destroy());
    await sweepStaleNamespaces();

    const mtu = String(net.underlayMtu);
    await net.addNamespace(net.underlayNs);
    await ip('-n', net.underlayNs, 'link', 'add', 'br0', 'type', 'bridge');
    await ip('-n', net.underlayNs, 'link', 'set', 'br0', 'up');
    for (let i = 1; i <= opts.hosts; i++) {
      const host: Host = { name: `h${i}`, ns: `${net.prefix}h${i}`, underlayIp: `198.18.0.${10 + i}`, index: i };
      await net.addNamespace(host.ns);
      await ip('-n', host.ns, 'link', 'add', 'ul0', 'mtu', mtu, 'type', 'veth', 'peer', 'name', host.name, 'netns', net.underlayNs, 'mtu', mtu);
      await ip('-n', net.underlayNs, 'link', 'set', host.name, 'master', 'br0', 'up');
      await ip('-n', host.ns, 'addr', 'add', `${host.underlayIp}/24`, 'dev', 'ul0');
      await ip('-n', host.ns, 'link', 'set', 'ul0', 'up');
      if (opts.machines) host.machine = await net.startMachine(host);
      net.hosts.push(host);
    }
    return net;
  }

  /**
   * The holder of a host's machine: `unshare` new mount and UTS namespaces inside the host's network namespace,
   * mount tmpfs on the private directories, set the hostname, and sleep. Propagation is slave so that namespaces
   * the test adds under /run/netns (instances) still appear inside, while nothing mounted inside leaks out.
   */
  private async startMachine(host: Host): Promise<number> {
    await run('mkdir', ['-p', ...MACHINE_PRIVATE_DIRS]);
    // The software is part of every machine: a checkout under a private directory (a clone in /tmp) is bound
    // back over the machine's tmpfs, by way of a stash outside the private directories.
    const hidden = MACHINE_PRIVATE_DIRS.some((d) => REPO_ROOT === d || REPO_ROOT.startsWith(`${d}/`));
    const stash = `/run/appnet-code-${this.prefix}-${host.name}`;
    if (hidden) {
      await run('mkdir', ['-p', stash]);
      this.stashes.push(stash);
    }
    const script = [
      'set -e',
      ...(hidden ? [`mount --bind ${REPO_ROOT} ${stash}`] : []),
      ...MACHINE_PRIVATE_DIRS.map((d) => `mount -t tmpfs -o mode=${d === '/tmp' ? '1777' : '0755'} machine ${d}`),
      ...(hidden ? [`mkdir -p ${REPO_ROOT}`, `mount --bind ${stash} ${REPO_ROOT}`] : []),
      `hostname "$0"`,
      'echo ready',
      'exec sleep infinity',
    ].join('; ');
    const holder = this.track(spawnIn(host.ns, 'unshare', ['--mount', '--uts', '--propagation', 'slave', '--', 'sh', '-c', script, `${this.prefix}-${host.name}`]));
    const out = collectOutput(holder);
    await waitForText(holder, out, 'stdout', /^ready$/m, 10_000, `machine holder of ${host.name}`);
    registerMachine(host.ns, holder.pid!);
    return holder.pid!;
  }

  /** A path inside `host`'s machine, as the test process reaches it (its own filesystem without machines). */
  machinePath(host: Host, p: string): string {
    return host.machine === undefined ? p : `/proc/${host.machine}/root${p}`;
  }

  /** Every namespace this net has created and not yet deleted. */
  ownedNamespaces(): string[] {
    return [...this.namespaces];
  }

  /**
   * An empty instance namespace `<prefix>-<name>` with lo up and IPv6 off. On a net of machines, `host` places
   * it: commands in it then run from inside that host's machine (and see its /etc/netns files).
   */
  async addInstance(name: string, opts: { host?: Host } = {}): Promise<Instance> {
    if (!/^[A-Za-z0-9_.-]{1,32}$/.test(name) || this.instances.has(name)) {
      throw new Error(`addInstance: name must be unique and match [A-Za-z0-9_.-]{1,32}, got "${name}"`);
    }
    const inst: Instance = { name, ns: `${this.prefix}-${name}`, host: opts.host };
    await this.addNamespace(inst.ns);
    if (opts.host?.machine !== undefined) placeInstance(inst.ns, opts.host.ns);
    // Tests count frames: IPv6 would add router solicitations and MLD reports of its own.
    await runIn(inst.ns, 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    this.instances.set(name, inst);
    return inst;
  }

  /** Wait for `ifname` to appear in the instance (the data plane moves its TAP there), then address it and up it. */
  async configureInstance(inst: Instance, ifname: string, cidr: string, opts: { mtu?: number; waitMs?: number } = {}): Promise<void> {
    const deadline = Date.now() + (opts.waitMs ?? 10_000);
    while ((await run('ip', ['-n', inst.ns, 'link', 'show', 'dev', ifname], { reject: false })).code !== 0) {
      if (Date.now() > deadline) {
        const { stdout } = await ip('-n', inst.ns, '-br', 'link');
        throw new Error(`configureInstance: no device ${ifname} in ${inst.ns} after ${opts.waitMs ?? 10_000} ms; it has:\n${stdout}`);
      }
      await sleep(100);
    }
    if (opts.mtu !== undefined) await ip('-n', inst.ns, 'link', 'set', 'dev', ifname, 'mtu', String(opts.mtu));
    await ip('-n', inst.ns, 'addr', 'replace', cidr, 'dev', ifname);
    await ip('-n', inst.ns, 'link', 'set', 'dev', ifname, 'up');
  }

  /** A Linux kernel VTEP on `host` (learning on), bridged to a veth whose other end is `ifname` in the instance. */
  async addKernelVtep(host: Host, o: KernelVtepOptions): Promise<KernelVtep> {
    const ns = host.ns;
    const vxlan = `vxlan${o.vni}`;
    const bridge = `brv${o.vni}`;
    const key = `${ns}/${o.vni}`;
    let flooded = this.vteps.get(key);
    if (!flooded) {
      await ip('-n', ns, 'link', 'add', vxlan, 'type', 'vxlan', 'id', String(o.vni), 'dstport', String(o.dstport ?? 4789),
        'local', host.underlayIp, 'dev', 'ul0');
      await ip('-n', ns, 'link', 'add', bridge, 'type', 'bridge');
      await ip('-n', ns, 'link', 'set', vxlan, 'master', bridge, 'up');
      await ip('-n', ns, 'link', 'set', bridge, 'up');
      flooded = new Set();
      this.vteps.set(key, flooded);
    }
    for (const remote of o.remotes.filter((r) => !flooded.has(r))) {
      await run('bridge', ['-n', ns, 'fdb', 'append', '00:00:00:00:00:00', 'dev', vxlan, 'dst', remote]);
      flooded.add(remote);
    }
    const hostIf = `vk${++this.seq}`;
    const instanceIf = o.ifname ?? 'eth0';
    const mtu = String(o.mtu ?? this.underlayMtu - 50);
    await ip('-n', ns, 'link', 'add', hostIf, 'mtu', mtu, 'type', 'veth', 'peer', 'name', instanceIf, 'netns', o.instance.ns, 'mtu', mtu);
    await ip('-n', ns, 'link', 'set', hostIf, 'master', bridge, 'up');
    if (o.mac) await ip('-n', o.instance.ns, 'link', 'set', 'dev', instanceIf, 'address', o.mac);
    await ip('-n', o.instance.ns, 'addr', 'add', o.cidr, 'dev', instanceIf);
    await ip('-n', o.instance.ns, 'link', 'set', 'dev', instanceIf, 'up');
    const { stdout } = await ip('-j', '-n', o.instance.ns, 'link', 'show', 'dev', instanceIf);
    const mac = (JSON.parse(stdout) as Array<{ address: string }>)[0].address;
    return { vni: o.vni, vxlan, bridge, hostIf, instanceIf, mac };
  }

  /**
   * Start appnetd in `host`'s namespace and wait until GET /healthz answers 200. `opts.entry` replaces
   * bin/appnetd.js (a stub or another build); `opts.args` are appended to its command line.
   */
  async startAppnetd(host: Host, config: DaemonConfigInput = {}, opts: { entry?: string; args?: string[] } = {}): Promise<Daemon> {
    // On a machine, everything the daemon keeps is in the machine's private directories.
    const dir = host.machine !== undefined ? '/var/lib/appnet' : await mkdtemp(path.join(await this.workDir(), `${host.name}-`));
    const logFile = host.machine !== undefined ? path.join(await this.workDir(), `${host.name}-appnetd.log`) : path.join(dir, 'appnetd.log');
    const full: DaemonConfig = {
      host: host.name,
      underlay: { address: host.underlayIp, port: 4789, mtu: this.underlayMtu },
      adminSocket: host.machine !== undefined ? '/run/appnet/admin.sock' : path.join(dir, 'admin.sock'),
      ageingSeconds: 300,
      offloads: { udpGso: true, udpGro: true, tapOffload: true },
      // Store mode is off unless the test gives `store`; these are its defaults then.
      api: { address: '127.0.0.1', port: 7878 },
      floatingPool: '198.19.0.0/24',
      tokens: {},
      tokenFile: path.join(dir, 'token'),
      // The API's generated CA and certificate (off loopback) stay in the daemon's directory.
      stateDir: dir,
      vnis: [],
      ports: [],
      ...config,
      engine: config.engine ?? { threads: defaultEngineThreads() },
      // Each host keeps its key in its own directory (a restart finds the same key).
      link: { enabled: true, port: 51830, keyFile: path.join(dir, 'host.key'), peers: [], rekeyAfterSeconds: 120, allowKeyExport: false, ...config.link },
    };
    if (Buffer.byteLength(full.adminSocket) > MAX_SOCKET_PATH) {
      throw new Error(`startAppnetd: admin socket path is longer than ${MAX_SOCKET_PATH} bytes: ${full.adminSocket} (set TMPDIR shorter)`);
    }
    const configFile = path.join(dir, 'appnetd.json');
    await writeFile(this.machinePath(host, configFile), JSON.stringify(full, null, 2));
    const argv = [opts.entry ?? APPNETD, '--config', configFile, ...(opts.args ?? [])];
    const daemon = new Daemon(this, host, full, argv, logFile, this.machinePath(host, full.adminSocket));
    this.daemons.push(daemon);
    await daemon.start();
    return daemon;
  }

  /** iputils ping from inside `ns`. 100% loss is a result, not an error; bad setups (no route) throw. */
  async ping(ns: string, addr: string, opts: { count?: number; interval?: number; timeoutS?: number; size?: number; dontFragment?: boolean } = {}): Promise<PingResult> {
    this.assertOwned(ns);
    const args = ['-n', '-c', String(opts.count ?? 5), '-i', String(opts.interval ?? 0.2), '-W', '2'];
    if (opts.size !== undefined) args.push('-s', String(opts.size));
    if (opts.dontFragment) args.push('-M', 'do');
    args.push(addr);
    // SIGINT on timeout: ping then still prints its statistics.
    const r = await runIn(ns, 'ping', args, { reject: false, timeoutMs: (opts.timeoutS ?? 15) * 1000, killSignal: 'SIGINT' });
    const output = r.stdout + r.stderr;
    const parsed = parsePing(output);
    if (!parsed) throw new Error(`ping ${addr} in ${ns} gave no statistics (exit ${r.code ?? r.signal}):\n${output}`);
    return parsed;
  }

  /**
   * Send `bytes` of deterministic data over TCP from `fromNs` to a one-shot server in `toNs`. With `download`,
   * `fromNs` still opens the connection, but the server sends and `fromNs` receives (what a client behind NAT
   * does when it fetches something).
   */
  async tcpTransfer(fromNs: string, toNs: string, toAddr: string, bytes: number, port = 5201, opts: { timeoutMs?: number; download?: boolean } = {}): Promise<TransferResult> {
    this.assertOwned(fromNs);
    this.assertOwned(toNs);
    const serverArgs = opts.download ? ['server-send', String(port), String(bytes)] : ['server', String(port)];
    const clientArgs = opts.download ? ['client-receive', toAddr, String(port)] : ['client', toAddr, String(port), String(bytes)];
    const server = this.track(spawnIn(toNs, process.execPath, [TCP_TRANSFER, ...serverArgs]));
    const out = collectOutput(server);
    try {
      await waitForText(server, out, 'stdout', /^listening$/m, 10_000, `tcp-transfer server in ${toNs}`);
      const client = await runIn(fromNs, process.execPath, [TCP_TRANSFER, ...clientArgs], {
        timeoutMs: opts.timeoutMs ?? 60_000,
        reject: false,
      });
      if (client.code !== 0) {
        throw new Error(`tcp-transfer client ${fromNs} -> ${toAddr}:${port} failed (exit ${client.code ?? client.signal}${client.timedOut ? ', timed out' : ''}): ${client.stderr.trim()}\nserver stderr: ${out.stderr.trim()}`);
      }
      await waitForText(server, out, 'stdout', /^\{.*\}$/m, 10_000, `tcp-transfer server in ${toNs}`);
      const fromClient = lastJson(client.stdout) as { bytes: number; sha256: string };
      const fromServer = lastJson(out.stdout) as { bytes: number; sha256: string };
      const [sent, received] = opts.download ? [fromServer, fromClient] : [fromClient, fromServer];
      return { sentBytes: sent.bytes, receivedBytes: received.bytes, sentSha256: sent.sha256, receivedSha256: received.sha256 };
    } finally {
      await stopProcess(server, { graceMs: 1000 });
    }
  }

  /**
   * Start tcpdump on `ifname` in `ns`; resolves once it is capturing. `buffered` (with `packets`): no immediate
   * mode, so tcpdump wakes per ring block instead of per packet and perturbs timing less; collect it with done().
   */
  async capture(ns: string, ifname: string, opts: { filter?: string; packets?: number; buffered?: boolean } = {}): Promise<Capture> {
    this.assertOwned(ns);
    // On a machine tcpdump writes inside it (its /tmp is private); the test reads the file through /proc.
    const holder = machineOf(ns);
    const name = `${++this.seq}-${ns}-${ifname}.pcap`;
    const inner = holder === undefined ? path.join(await this.workDir(), name) : `/tmp/${name}`;
    const file = holder === undefined ? inner : `/proc/${holder}/root${inner}`;
    // --immediate-mode: without it TPACKET_V3 holds packets in a ring block for up to 1 s and SIGINT loses them.
    const args = ['-i', ifname, '-w', inner, ...(opts.buffered && opts.packets ? [] : ['-U', '--immediate-mode']), '-n', '-Z', 'root'];
    if (opts.packets !== undefined) args.push('-c', String(opts.packets));
    if (opts.filter) args.push(opts.filter);
    const child = this.track(spawnIn(ns, 'tcpdump', args));
    const out = collectOutput(child);
    await waitForText(child, out, 'stderr', /listening on/, 10_000, `tcpdump on ${ns}/${ifname}`);
    return new Capture(child, file, out);
  }

  /** Kill every process, delete every namespace, remove the work dir (kept when the test failed). Never throws. */
  destroy(): Promise<void> {
    this.destroying ??= this.doDestroy();
    return this.destroying;
  }

  private async doDestroy(): Promise<void> {
    const errors: string[] = [];
    let failed = false;
    try {
      failed = !this.t.passed;
    } catch {
      // outside a test's lifetime: treat as passed
    }
    if (failed) {
      for (const d of this.daemons) console.error(`--- appnetd ${d.host.name} (${d.logFile}), last 40 lines ---\n${d.logTail(40)}`);
    }
    await Promise.all([...this.procs].map((c) => stopProcess(c, { group: true, graceMs: 3000 }).catch((e: Error) => errors.push(e.message))));
    for (const d of this.stashes.splice(0)) await run('rmdir', [d], { reject: false });
    for (const ns of [...this.namespaces].reverse()) {
      const r = await run('ip', ['netns', 'delete', ns], { reject: false });
      if (r.code !== 0) errors.push(`ip netns delete ${ns}: ${r.stderr.trim()}`);
      forgetNamespace(ns);
      this.namespaces.splice(this.namespaces.indexOf(ns), 1); // one by one: destroySync may still need the rest
    }
    liveNets.delete(this);
    if (this.dir) {
      const dir = await this.dir.catch(() => undefined);
      if (dir && failed) console.error(`TestNet ${this.prefix}: test failed, artifacts kept in ${dir}`);
      else if (dir) await rm(dir, { recursive: true, force: true }).catch((e: Error) => errors.push(e.message));
    }
    if (errors.length > 0) console.error(`TestNet ${this.prefix}: teardown errors:\n  ${errors.join('\n  ')}`);
  }

  /** Last-resort cleanup from 'exit' and signal handlers: synchronous, best effort. */
  destroySync(): void {
    for (const c of this.procs) signalGroup(c, 'SIGKILL');
    for (const d of this.stashes.splice(0)) {
      try { execFileSync('rmdir', [d], { stdio: 'ignore' }); } catch { /* still in use: swept by a later run */ }
    }
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
      } catch {
        // swept by a later run
      }
    }
    liveNets.delete(this);
    if (this.dirPath) process.stderr.write(`TestNet ${this.prefix}: interrupted, artifacts kept in ${this.dirPath}\n`);
  }

  /** Empty directories in /run that held a machine's view of the checkout (startMachine), removed at the end. */
  private readonly stashes: string[] = [];

  /** Register a child so destroy() kills it. */
  track(child: ChildProcess): ChildProcess {
    this.procs.add(child);
    child.on('error', (e) => console.error(`TestNet ${this.prefix}: ${e.message}`));
    child.once('exit', () => this.procs.delete(child));
    return child;
  }

  private assertOwned(ns: string): void {
    if (!this.namespaces.includes(ns)) throw new Error(`TestNet ${this.prefix}: refusing to send traffic from ${ns}, not a namespace of this net`);
  }

  private async addNamespace(ns: string): Promise<void> {
    await ip('netns', 'add', ns);
    this.namespaces.push(ns);
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
  }

  /** A SQLite store URL in this net's work dir: removed with the net, kept (with the logs) when the test failed. */
  async storeUrl(): Promise<string> {
    return `sqlite:${path.join(await this.workDir(), 'appnet.db')}`;
  }

  private workDir(): Promise<string> {
    this.dir ??= mkdtemp(path.join(os.tmpdir(), `appnet-${this.prefix}-`)).then((d) => (this.dirPath = d));
    return this.dir;
  }
}

/** A running (or stopped) appnetd; `restart()` starts it again with the same config file. */
export class Daemon {
  private child?: ChildProcess;
  private lastExit: ExitStatus = { code: null, signal: null };

  constructor(
    private readonly net: TestNet,
    readonly host: Host,
    readonly config: DaemonConfig,
    /** Arguments to node: the entry script, --config <file>, extra args. */
    readonly argv: string[],
    readonly logFile: string,
    /** The admin socket as the test reaches it (through the machine's root on a net of machines). */
    readonly adminSocket: string = config.adminSocket,
  ) {}

  get pid(): number | undefined {
    return this.child && !hasExited(this.child) ? this.child.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && !hasExited(this.child);
  }

  async start(): Promise<void> {
    if (this.running) throw new Error(`appnetd on ${this.host.name} is already running (pid ${this.pid})`);
    appendFileSync(this.logFile, `--- appnetd start ${new Date().toISOString()} ---\n`);
    const args = this.argv;
    // The real launcher runs as an executable, as operators start it, so that its shebang's node flags apply;
    // another entry (a stub) runs under this node.
    const [cmd, cmdArgs] = args[0] === APPNETD ? [APPNETD, args.slice(1)] : [process.execPath, args];
    const child = this.net.track(spawnIn(this.host.ns, cmd, cmdArgs, { logFile: this.logFile }));
    this.child = child;
    child.once('exit', (code, signal) => (this.lastExit = { code, signal }));
    const what = `appnetd on ${this.host.name} (${formatCommand('ip', ['netns', 'exec', this.host.ns, cmd, ...cmdArgs])})`;
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (hasExited(child)) {
        throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before /healthz answered; last 40 log lines:\n${this.logTail(40)}`);
      }
      const status = await unixRequest(this.adminSocket, 'GET', '/healthz', undefined, 1000).then((r) => r.status, () => 0);
      if (status === 200) return;
      if (Date.now() > deadline) {
        await stopProcess(child, { group: true, graceMs: 1000 });
        throw new Error(`${what}: /healthz did not answer 200 within 20 s (last: ${status || 'no answer'}); last 40 log lines:\n${this.logTail(40)}`);
      }
      await sleep(100);
    }
  }

  /** Any method; never throws on HTTP status. */
  request(method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: string }> {
    return unixRequest(this.adminSocket, method, urlPath, body, 10_000);
  }

  async get<T = any>(urlPath: string): Promise<T> {
    return this.json('GET', urlPath);
  }

  async post<T = any>(urlPath: string, body?: unknown): Promise<T> {
    return this.json('POST', urlPath, body);
  }

  /** SIGTERM, up to 5 s grace, then SIGKILL. */
  async stop(): Promise<ExitStatus> {
    if (this.child) this.lastExit = await stopProcess(this.child, { signal: 'SIGTERM', graceMs: 5000 });
    return this.lastExit;
  }

  /** Crash it: SIGKILL to the daemon alone, like an OOM kill. */
  async kill9(): Promise<void> {
    if (!this.child || hasExited(this.child)) return;
    this.child.kill('SIGKILL');
    if (!(await waitExit(this.child, 5000))) throw new Error(`appnetd pid ${this.child.pid} survived SIGKILL`);
  }

  async restart(): Promise<void> {
    if (this.running) await this.stop();
    await this.start();
  }

  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  logTail(lines: number): string {
    return this.log().trimEnd().split('\n').slice(-lines).join('\n');
  }

  private async json<T>(method: string, urlPath: string, body?: unknown): Promise<T> {
    const r = await this.request(method, urlPath, body);
    if (r.status < 200 || r.status > 299) throw new Error(`${method} ${urlPath} on appnetd ${this.host.name}: HTTP ${r.status} ${r.body}`);
    return (r.body.length > 0 ? JSON.parse(r.body) : null) as T;
  }
}

/** A running tcpdump. stop() ends it with SIGINT and returns the pcap file. */
export class Capture {
  constructor(
    private readonly child: ChildProcess,
    readonly file: string,
    private readonly out: Output,
  ) {}

  async stop(): Promise<string> {
    // Let tcpdump drain its socket first: on a busy machine the last packets of an exchange can still be
    // queued to it when the caller is done, and SIGINT would drop them. -U writes each packet at once, so
    // the file stops growing when the queue is empty (or after 2 s of steady traffic).
    let last = -1;
    for (let i = 0; i < 20; i++) {
      const size = statSync(this.file, { throwIfNoEntry: false })?.size ?? 0;
      if (size === last) break;
      last = size;
      await sleep(100);
    }
    const exit = await stopProcess(this.child, { signal: 'SIGINT', graceMs: 5000 });
    if (exit.code !== 0 && exit.signal !== 'SIGINT') throw new Error(`tcpdump failed (${exit.code ?? exit.signal}): ${this.out.stderr.trim()}`);
    return this.file;
  }

  /** For a capture with a packet count: waits up to `ms` for tcpdump to reach it and exit, else stops it. */
  async done(ms: number): Promise<string> {
    if (await waitExit(this.child, ms)) return this.file;
    return this.stop();
  }

  /** tcpdump's stderr (its "N packets captured" summary after stop). */
  output(): string {
    return this.out.stderr;
  }
}

/** `tshark -r file -T fields -e ...`, one row per packet (multiple occurrences joined by ','). Synchronous. */
export function tsharkFields(file: string, fields: string[], displayFilter?: string, decodeAs: string[] = []): string[][] {
  const args = ['-r', file, '-n', '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,'];
  for (const f of fields) args.push('-e', f);
  for (const d of decodeAs) args.push('-d', d);
  if (displayFilter) args.push('-Y', displayFilter);
  const r = spawnSync('tshark', args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.error || r.status !== 0) {
    throw new Error(`${formatCommand('tshark', args)} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr?.trim()}`);
  }
  const lines = r.stdout.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.map((l) => l.split('\t'));
}

/** Parse the summary of iputils ping; undefined when there is none (ping failed before sending). */
export function parsePing(output: string): PingResult | undefined {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(output);
  const loss = /([\d.]+)% packet loss/.exec(output);
  if (!m || !loss) return undefined;
  const rtt = /= [\d.]+\/([\d.]+)\/[\d.]+\/[\d.]+ ms/.exec(output);
  return {
    transmitted: Number(m[1]),
    received: Number(m[2]),
    lossPercent: Number(loss[1]),
    duplicates: Number(/\+(\d+) duplicates/.exec(output)?.[1] ?? 0),
    rttAvgMs: rtt ? Number(rtt[1]) : null,
    output,
  };
}

function unixRequest(socketPath: string, method: string, urlPath: string, body: unknown, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: http.OutgoingHttpHeaders = payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {};
    const req = http.request({ socketPath, method, path: urlPath, headers, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} via ${socketPath}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

interface Output { stdout: string; stderr: string; closed: boolean }

function collectOutput(child: ChildProcess): Output {
  const out: Output = { stdout: '', stderr: '', closed: false };
  child.stdout?.on('data', (b: Buffer) => (out.stdout += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (out.stderr += b.toString()));
  child.once('close', () => (out.closed = true)); // after 'exit', once the pipes are drained
  return out;
}

async function waitForText(child: ChildProcess, out: Output, stream: 'stdout' | 'stderr', re: RegExp, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!re.test(out[stream])) {
    if (out.closed) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before printing ${re}: ${out.stderr.trim()}`);
    if (Date.now() > deadline) throw new Error(`${what} did not print ${re} within ${timeoutMs} ms: ${out.stderr.trim()}`);
    await sleep(20);
  }
}

function lastJson(text: string): unknown {
  const line = text.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
  if (!line) throw new Error(`expected a JSON line in: ${text}`);
  return JSON.parse(line);
}
