// Hosts that share nothing but etcd and the underlay: the topology of the multi-machine tests, the
// `npm run demo -- --etcd` demo and the etcd control-plane benchmark.
//
//   <prefix>ul: br0 (the underlay, 198.18.0.0/24)
//     |-- <prefix>h1 machine 198.18.0.11   appnetd --store etcd://198.18.0.201:2379,...  API https://198.18.0.11:7878
//     |-- <prefix>h2 machine 198.18.0.12   appnetd ...
//     |-- <prefix>h3 machine 198.18.0.13   appnetd ...
//     |-- etcd member e1 198.18.0.201 (its own namespace)
//     |-- etcd member e2 198.18.0.202
//     '-- etcd member e3 198.18.0.203
//
// Each host is a machine (TestNet `machines: true`): its own network, mount and UTS namespaces, with
// private /var/lib/appnet, /run/appnet, /tmp and /etc/netns. The daemons reach etcd over the underlay
// only, and each other's APIs at the addresses their host records advertise (TLS, pinned to the certificate
// each record carries); the host's own CLI uses plain HTTP on its loopback.
import type { ExecutionContext } from 'ava';
import { TEST_TOKEN } from './api-in-ns.ts';
import { EtcdCluster } from './etcd-cluster.ts';
import { TestNet, type Daemon, type DaemonConfigInput, type Host } from './testnet.ts';

export interface ClusterNet {
  net: TestNet;
  etcd: EtcdCluster;
  daemons: Daemon[];
  /** The config every daemon was started with (before `perHost`). */
  config: DaemonConfigInput;
}

export interface ClusterNetOptions {
  hosts?: number;
  members?: number;
  /** Extra config for every daemon. */
  daemon?: DaemonConfigInput;
  /** Extra config for one host's daemon. */
  perHost?: (h: Host) => DaemonConfigInput;
  /** Do not start daemons (the caller starts them, e.g. after adding an uplink). */
  noDaemons?: boolean;
}

/** The daemon config of every host on the cluster: the etcd URL and the test token. */
export function clusterConfig(etcd: EtcdCluster, extra: DaemonConfigInput = {}): DaemonConfigInput {
  return { store: etcd.url(), tokens: { [TEST_TOKEN]: 'system' }, ...extra };
}

/** Starts `h`'s daemon with `config` and an API other hosts reach: TLS on its underlay address, plain on its loopback. */
export function startClusterDaemon(net: TestNet, h: Host, config: DaemonConfigInput, extra: DaemonConfigInput = {}): Promise<Daemon> {
  return net.startAppnetd(h, { ...config, api: { address: h.underlayIp, port: 7878 }, ...extra });
}

export async function buildClusterNet(t: ExecutionContext, o: ClusterNetOptions = {}): Promise<ClusterNet> {
  const net = await TestNet.create(t, { hosts: o.hosts ?? 3, machines: true });
  const etcd = await EtcdCluster.start(t, {
    members: o.members ?? 3,
    attach: { ns: net.underlayNs, bridge: 'br0', subnet: '198.18.0', firstHost: 201 },
  });
  const config = clusterConfig(etcd, o.daemon);
  const daemons: Daemon[] = [];
  if (!o.noDaemons) {
    for (const h of net.hosts) daemons.push(await startClusterDaemon(net, h, config, o.perHost?.(h)));
  }
  return { net, etcd, daemons, config };
}
