// The control-plane benchmark's fleet scenario (bench/controlplane.ts, on etcd): five real daemons on five test
// hosts, a three-member etcd cluster on their underlay, 1,000 networks and 1,000 instances of 5 interfaces
// (1,000 interfaces per daemon, every network on every host), created through h1's API with 8 requests in
// flight. The figure: from the first POST until every daemon has converged (its engine ports, its observed
// status, every interface `created`, every TAP up in its instance). Target: < 30 s.
import { openStore } from '../control/store/index.ts';
import type { Store } from '../control/store/store.ts';
import { EtcdCluster } from '../test/helpers/etcd-cluster.ts';
import { TestNet, type Daemon } from '../test/helpers/testnet.ts';
import { IFACES_PER_INSTANCE } from './controlplane-load.ts';
import { benchTokens, runLoad, waitConverged, type Expect } from './controlplane-harness.ts';
import { shim } from './path-measure.ts';
import { etcdCalls } from './controlplane-breakdown.ts';
import { INSTANCES_PREFIX, INTERFACES_PREFIX } from '../control/repo/keys.ts';

const HOSTS = 5;
const log = (s: string) => process.stderr.write(`controlplane bench: fleet: ${s}\n`);

export interface FleetResult {
  daemons: number; interfaces: number; per_daemon: number; converge_ms: number;
  /** From the first POST to the last one answered (the rest of converge_ms is the daemons catching up). */
  creates_ms: number;
  /** Calls etcd's members handled from the first POST to converged, by gRPC method (every client). */
  etcd_calls: Record<string, number>;
  target_30s_met: boolean; rss_mb: number[];
}

export async function runFleet(scale: number): Promise<FleetResult> {
  const networks = Math.round(1000 * scale);
  const instancesPerHost = networks / IFACES_PER_INSTANCE;
  const cleanups: Array<() => unknown> = [];
  const t = shim(cleanups);
  let store: Store | undefined;
  try {
    const net = await TestNet.create(t, { hosts: HOSTS });
    const etcd = await EtcdCluster.start(t, { members: 3, rootAccess: true, attach: { ns: net.underlayNs, bridge: 'br0', subnet: '198.18.0', firstHost: 201 } });
    log(`creating ${instancesPerHost * HOSTS} instance namespaces`);
    const nsOf: string[] = [];
    for (let k = 0; k < instancesPerHost * HOSTS; k++) nsOf.push((await net.addInstance(`i${String(k).padStart(4, '0')}`)).ns);
    const daemons: Daemon[] = [];
    for (const h of net.hosts) daemons.push(await net.startAppnetd(h, { store: etcd.url(), tokens: benchTokens(), floatingPool: '198.19.255.0/24' }));
    store = await openStore(etcd.rootUrl());

    log(`creating ${networks} networks and ${instancesPerHost * HOSTS} instances (${networks * HOSTS} interfaces) through h1's API`);
    const metricsUrls = etcd.members.map((m) => `http://${m.rootIp}:2379/metrics`);
    const callsBefore = await etcdCalls(metricsUrls);
    const t0 = performance.now();
    await runLoad(net, net.hosts[0].ns, {
      api: 'http://127.0.0.1:7878', networks, instances: instancesPerHost * HOSTS, instancesPerHost, netnsPrefix: `${net.prefix}-i`, phase: 'create',
    });
    const createsMs = performance.now() - t0;
    // Which interfaces and namespaces each daemon must show, from the store.
    const instances = (await store.range(INSTANCES_PREFIX)).kvs.map((kv) => JSON.parse(kv.value) as { uuid: string; host: string; netns: string; interfaces: string[] });
    const ifaceKeys = new Set((await store.range(INTERFACES_PREFIX)).kvs.map((kv) => kv.key.slice(INTERFACES_PREFIX.length)));
    const expects: Expect[] = daemons.map((daemon) => {
      const mine = instances.filter((i) => i.host === daemon.host.name);
      return {
        store: store!, daemon, host: daemon.host.name, pid: () => daemon.pid,
        ifaces: new Set(mine.flatMap((i) => i.interfaces).filter((u) => ifaceKeys.has(u))),
        namespaces: new Map(mine.map((i) => [i.netns, i.interfaces.length])),
      };
    });
    const converge = await waitConverged(expects, t0);
    const callsAfter = await etcdCalls(metricsUrls);
    const calls = Object.fromEntries([...callsAfter].map(([m, n]) => [m, n - (callsBefore.get(m) ?? 0)]).filter(([, n]) => (n as number) > 0));
    const rss = await Promise.all(daemons.map(async (d) => Math.round((await d.get('/engine/stats')).rssBytes / 2 ** 20)));
    log(`all ${HOSTS} daemons converged ${Math.round(converge)} ms after the first POST (the POSTs took ${Math.round(createsMs)} ms); ` +
      `etcd calls meanwhile: ${Object.entries(calls).map(([m, n]) => `${m} ${n}`).join(', ')}`);
    return {
      daemons: HOSTS, interfaces: networks * HOSTS, per_daemon: networks, converge_ms: Math.round(converge), creates_ms: Math.round(createsMs), etcd_calls: calls as Record<string, number>, target_30s_met: converge < 30_000, rss_mb: rss,
    };
  } catch (e) {
    t.passed = false;
    throw e;
  } finally {
    await store?.close();
    for (const fn of cleanups.reverse()) await fn();

  }
}
