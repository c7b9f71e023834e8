// A real etcd cluster (Debian etcd-server) for tests, benchmarks and the demo: each member in its own network
// namespace, data and logs in a temp dir, everything removed on destroy (also when a test fails or the
// process dies: the 'exit' and signal handlers here, and the stale-namespace sweep of testnet.ts for
// namespaces of dead pids).
//
//   attach (e.g. a TestNet's underlay):          own segment (no attach):
//   <net>ul br0 -- veth -- e1 198.18.0.201        <prefix>eb br0 -- veth -- e1 198.18.R.11
//               -- veth -- e2 198.18.0.202                   -- veth -- e2 198.18.R.12 ...
//   rootAccess: a veth from the root namespace    rootAccess: root 198.18.R.1 on a veth into br0
//   into br0; root 198.18.R.1, each member also
//   198.18.R.(firstHost + i) on that segment
//
// R is a /24 in 198.18.200-254 that no other live cluster's root veth holds. Members are reached by
// daemons at url() and by the calling process at rootUrl().
import type { ExecutionContext } from 'ava';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { hasExited, run, signalGroup, spawnIn, stopProcess, waitExit } from './run.ts';

export interface EtcdMember {
  name: string;
  ns: string;
  /** Where daemons reach it (on the attached segment, or the root-access one). */
  ip: string;
  /** Where the calling process reaches it, when the cluster has root access. */
  rootIp?: string;
  clientUrl: string;
  running: boolean;
}

export interface EtcdClusterOptions {
  members?: number;
  attach?: { ns: string; bridge: string; subnet: string; firstHost: number };
  rootAccess?: boolean;
  dir?: string;
  etcdFlags?: string[];
}

const live = new Set<EtcdCluster>();
let counter = 0;
let safetyNet = false;

function installSafetyNet(): void {
  if (safetyNet) return;
  safetyNet = true;
  process.on('exit', () => { for (const c of live) c.destroySync(); });
  // A process killed by a signal emits no 'exit': without these, ^C on a benchmark left the members running.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      for (const c of live) c.destroySync();
      process.off(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig); // die by it, as without this handler
    };
    process.on(sig, onSignal);
  }
}

export class EtcdCluster {
  readonly members: EtcdMember[] = [];
  private readonly procs = new Map<EtcdMember, ChildProcess>();
  private readonly namespaces: string[] = [];
  private rootIf?: string;
  private destroying?: Promise<void>;

  private constructor(readonly prefix: string, readonly dir: string, private readonly flags: string[]) {}

  static async start(t: ExecutionContext | undefined, o: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const n = o.members ?? 3;
    const prefix = `an${process.pid}x${900 + ++counter}`;
    const dir = o.dir ?? await mkdtemp(path.join(os.tmpdir(), `appnet-etcd-${prefix}-`));
    const c = new EtcdCluster(prefix, dir, o.etcdFlags ?? []);
    installSafetyNet();
    live.add(c);
    t?.teardown(() => c.destroy());
    try {
      await c.build(n, o);
      await Promise.all(c.members.map((m) => c.spawnMember(m, 'new')));
      await c.waitHealthy();
    } catch (e) {
      await c.destroy();
      throw e;
    }
    return c;
  }

  private async build(n: number, o: EtcdClusterOptions): Promise<void> {
    let segNs: string;
    let bridge: string;
    const rootSubnet = o.rootAccess || !o.attach ? await freeRootSubnet() : undefined;
    if (o.attach) {
      segNs = o.attach.ns;
      bridge = o.attach.bridge;
    } else {
      segNs = `${this.prefix}eb`;
      bridge = 'br0';
      await this.addNs(segNs);
      await run('ip', ['-n', segNs, 'link', 'add', bridge, 'type', 'bridge']);
      await run('ip', ['-n', segNs, 'link', 'set', bridge, 'up']);
    }
    const first = o.attach?.firstHost ?? 11;
    const subnet = o.attach?.subnet ?? rootSubnet!;
    for (let i = 0; i < n; i++) {
      const name = `e${i + 1}`;
      const ns = `${this.prefix}${name}`;
      await this.addNs(ns);
      const ip = `${subnet}.${first + i}`;
      const peer = `${this.prefix.slice(-4)}${name}`; // in the segment namespace; unique per cluster
      await run('ip', ['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', peer, 'netns', segNs]);
      await run('ip', ['-n', segNs, 'link', 'set', peer, 'master', bridge, 'up']);
      await run('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      let rootIp: string | undefined;
      if (o.rootAccess && o.attach) {
        rootIp = `${rootSubnet}.${first + i}`;
        await run('ip', ['-n', ns, 'addr', 'add', `${rootIp}/24`, 'dev', 'eth0']);
      } else if (o.rootAccess) {
        rootIp = ip;
      }
      await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      this.members.push({ name, ns, ip, rootIp, clientUrl: `http://${ip}:2379`, running: false });
    }
    if (rootSubnet && o.rootAccess) {
      this.rootIf = `aer${process.pid % 100000}${counter}`.slice(0, 15);
      await run('ip', ['link', 'add', this.rootIf, 'type', 'veth', 'peer', 'name', `${this.prefix.slice(-4)}rt`, 'netns', segNs]);
      await run('ip', ['-n', segNs, 'link', 'set', `${this.prefix.slice(-4)}rt`, 'master', bridge, 'up']);
      await run('ip', ['addr', 'add', `${rootSubnet}.1/24`, 'dev', this.rootIf]);
      await run('ip', ['link', 'set', this.rootIf, 'up']);
    }
  }

  private async addNs(ns: string): Promise<void> {
    await run('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }

  private initialCluster(): string {
    return this.members.map((m) => `${m.name}=http://${m.ip}:2380`).join(',');
  }

  private async spawnMember(m: EtcdMember, state: 'new' | 'existing'): Promise<void> {
    const clientUrls = [`http://${m.ip}:2379`, ...(m.rootIp && m.rootIp !== m.ip ? [`http://${m.rootIp}:2379`] : [])].join(',');
    const args = [
      '--name', m.name, '--data-dir', path.join(this.dir, m.name),
      '--listen-peer-urls', `http://${m.ip}:2380`, '--initial-advertise-peer-urls', `http://${m.ip}:2380`,
      '--listen-client-urls', `${clientUrls},http://127.0.0.1:2379`, '--advertise-client-urls', `http://${m.ip}:2379`,
      '--initial-cluster', this.initialCluster(), '--initial-cluster-state', state, '--initial-cluster-token', this.prefix,
      // A loaded 2-core machine: a slower heartbeat keeps leaders from flapping; elections still take ~1-2 s.
      '--heartbeat-interval', '200', '--election-timeout', '2000',
      '--logger', 'zap', '--log-outputs', path.join(this.dir, `${m.name}.log`),
      ...this.flags,
    ];
    const child = spawnIn(m.ns, 'etcd', args);
    child.on('error', () => undefined);
    this.procs.set(m, child);
    m.running = true;
  }

  endpoints(): string[] {
    return this.members.map((m) => `${m.ip}:2379`);
  }

  url(): string {
    return `etcd://${this.endpoints().join(',')}`;
  }

  /** The URL the calling (root-namespace) process uses; needs rootAccess. */
  rootUrl(): string {
    if (this.members.some((m) => !m.rootIp)) throw new Error('EtcdCluster: rootUrl() needs rootAccess');
    return `etcd://${this.members.map((m) => `${m.rootIp}:2379`).join(',')}`;
  }

  /** etcdctl inside a running member's namespace, against every member. */
  async etcdctl(args: string[]): Promise<string> {
    const m = this.members.find((x) => x.running);
    if (!m) throw new Error('EtcdCluster: no member is running');
    const r = await run('ip', ['netns', 'exec', m.ns, 'etcdctl', '--endpoints', this.endpoints().join(','), '--command-timeout', '5s', ...args], { timeoutMs: 20_000 });
    return r.stdout;
  }

  private async status(): Promise<Array<{ Endpoint: string; Status: { header: { member_id: number }; leader: number; dbSize: number } }>> {
    const m = this.members.find((x) => x.running);
    if (!m) throw new Error('EtcdCluster: no member is running');
    const endpoints = this.members.filter((x) => x.running).map((x) => `${x.ip}:2379`).join(',');
    const r = await run('ip', ['netns', 'exec', m.ns, 'etcdctl', '--endpoints', endpoints, '--command-timeout', '3s', 'endpoint', 'status', '-w', 'json'], { reject: false, timeoutMs: 20_000 });
    // etcdctl prints the members that answered even when one did not (and then exits 1).
    const text = r.stdout.trim();
    return text.startsWith('[') ? JSON.parse(text) : [];
  }

  /** The current leader, once one is elected (waits up to 30 s). */
  async leader(): Promise<EtcdMember> {
    for (let i = 0; i < 150; i++) {
      for (const s of await this.status()) {
        if (s.Status.leader !== 0 && s.Status.leader === s.Status.header.member_id) {
          const m = this.members.find((x) => s.Endpoint.startsWith(`${x.ip}:`) || s.Endpoint.includes(`//${x.ip}:`));
          if (m) return m;
        }
      }
      await sleep(200);
    }
    throw new Error('EtcdCluster: no leader elected within 30 s');
  }

  /** The largest backend size among running members, in bytes. */
  async dbSize(): Promise<number> {
    return Math.max(0, ...(await this.status()).map((s) => s.Status.dbSize));
  }

  /** The pids of the running members (benchmarks read their CPU time). */
  pids(): number[] {
    return [...this.procs.values()].filter((c) => !hasExited(c) && c.pid !== undefined).map((c) => c.pid as number);
  }

  async kill9(m: EtcdMember): Promise<void> {
    const child = this.procs.get(m);
    if (child && !hasExited(child)) {
      child.kill('SIGKILL');
      if (!(await waitExit(child, 5000))) throw new Error(`etcd ${m.name} survived SIGKILL`);
    }
    m.running = false;
  }

  async stop(m: EtcdMember): Promise<void> {
    const child = this.procs.get(m);
    if (child) await stopProcess(child, { graceMs: 5000 });
    m.running = false;
  }

  /** Starts a stopped member again on its data dir; waits until it is healthy. */
  async start(m: EtcdMember): Promise<void> {
    if (m.running) return;
    await this.spawnMember(m, 'existing');
    await this.waitHealthy([m]);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.members.map((m) => this.stop(m)));
  }

  async startAll(): Promise<void> {
    const stopped = this.members.filter((m) => !m.running);
    for (const m of stopped) await this.spawnMember(m, 'existing');
    await this.waitHealthy(stopped);
  }

  private async waitHealthy(which: EtcdMember[] = this.members): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (const m of which) {
      for (;;) {
        const child = this.procs.get(m);
        if (child && hasExited(child)) throw new Error(`etcd ${m.name} exited (${child.exitCode ?? child.signalCode}); see ${path.join(this.dir, `${m.name}.log`)}`);
        const r = await run('ip', ['netns', 'exec', m.ns, 'etcdctl', '--endpoints', `${m.ip}:2379`, '--command-timeout', '2s', 'endpoint', 'health'], { reject: false, timeoutMs: 10_000 });
        if (r.code === 0) break;
        if (Date.now() > deadline) throw new Error(`etcd ${m.name} not healthy within 60 s: ${r.stderr.trim()}`);
        await sleep(200);
      }
    }
  }

  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      await Promise.all([...this.procs.values()].map((c) => stopProcess(c, { group: true, graceMs: 2000 }).catch(() => undefined)));
      for (const m of this.members) m.running = false;
      if (this.rootIf) await run('ip', ['link', 'del', this.rootIf], { reject: false });
      for (const ns of this.namespaces.splice(0).reverse()) await run('ip', ['netns', 'delete', ns], { reject: false });
      live.delete(this);
      await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
    })();
    return this.destroying;
  }

  /** Last resort from the 'exit' handler: synchronous, best effort. */
  destroySync(): void {
    for (const c of this.procs.values()) signalGroup(c, 'SIGKILL');
    const cmds: string[][] = [...(this.rootIf ? [['link', 'del', this.rootIf]] : []), ...this.namespaces.splice(0).reverse().map((ns) => ['netns', 'delete', ns])];
    for (const args of cmds) {
      try { execFileSync('ip', args, { stdio: 'ignore' }); } catch { /* swept by a later run */ }
    }
    live.delete(this);
  }
}

/** A /24 in 198.18.200-254 that no root-namespace address holds yet ('198.18.R'). */
async function freeRootSubnet(): Promise<string> {
  const { stdout } = await run('ip', ['-4', '-o', 'addr', 'show']);
  const used = new Set([...stdout.matchAll(/inet 198\.18\.(\d+)\./g)].map((m) => Number(m[1])));
  const start = 200 + ((process.pid * 7 + counter * 13) % 55);
  for (let k = 0; k < 55; k++) {
    const third = 200 + ((start - 200 + k) % 55);
    if (!used.has(third)) return `198.18.${third}`;
  }
  throw new Error('EtcdCluster: no free /24 left in 198.18.200-254 for root access');
}
