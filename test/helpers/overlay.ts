// Fixtures for data-plane tests: hosts running appnetd with one TAP instance each on a VNI,
// flooding to every other host, as the "two hosts, one instance each" topology.
import type { ExecutionContext } from 'ava';
import type { EngineCounters, PortCounters } from '../../dataplane/engine.ts';
import type { DaemonConfig, PortConfig } from '../../control/daemon/config.ts';
import { TestNet, type Daemon, type Host, type Instance } from './testnet.ts';

export interface OverlayInstance {
  host: Host;
  inst: Instance;
  addr: string;
  mac: string;
}

export interface Overlay {
  net: TestNet;
  daemons: Daemon[];
  instances: OverlayInstance[];
}

export const instanceMac = (host: number, vni: number, n = 0): string =>
  `02:00:00:${(vni & 0xff).toString(16).padStart(2, '0')}:${n.toString(16).padStart(2, '0')}:${host.toString(16).padStart(2, '0')}`;

/**
 * N hosts; on each, appnetd with the given VNIs and one TAP instance per VNI (address
 * 198.18.<vni & 0xff>.<host index>/24 unless `addr` says otherwise), flooding to every other host.
 */
export async function buildOverlay(
  t: ExecutionContext,
  opts: {
    hosts: number; machines?: boolean; vnis?: number[]; ageingSeconds?: number; offloads?: Partial<DaemonConfig['offloads']>; addr?: (host: number, vni: number) => string;
    extraPorts?: (h: Host, net: TestNet) => Promise<PortConfig[]>;
    /** More of every daemon's config. */
    daemon?: Partial<DaemonConfig>;
    /** More of one host's daemon config (after `daemon`). */
    daemonFor?: (h: Host) => Partial<DaemonConfig>;
  },
): Promise<Overlay> {
  const vnis = opts.vnis ?? [42];
  const net = await TestNet.create(t, { hosts: opts.hosts, machines: opts.machines });
  const instances: OverlayInstance[] = [];
  const daemons: Daemon[] = [];
  for (const h of net.hosts) {
    const ports: PortConfig[] = [];
    const mine: OverlayInstance[] = [];
    for (const vni of vnis) {
      const inst = await net.addInstance(`${h.name}v${vni}`, { host: h });
      const mac = instanceMac(h.index, vni);
      ports.push({ name: `tap${vni}`, kind: 'tap', vni, mac, netns: inst.ns });
      mine.push({ host: h, inst, mac, addr: opts.addr ? opts.addr(h.index, vni) : `198.18.${vni & 0xff}.${h.index}` });
    }
    ports.push(...((await opts.extraPorts?.(h, net)) ?? []));
    const others = net.hosts.filter((o) => o !== h).map((o) => o.underlayIp);
    daemons.push(await net.startAppnetd(h, {
      vnis: vnis.map((vni) => ({ vni, flood: others })),
      ports,
      ...(opts.ageingSeconds ? { ageingSeconds: opts.ageingSeconds } : {}),
      ...(opts.offloads ? { offloads: { udpGso: true, udpGro: true, tapOffload: true, ...opts.offloads } } : {}),
      ...opts.daemon,
      ...opts.daemonFor?.(h),
    }));
    for (const [i, m] of mine.entries()) await net.configureInstance(m.inst, `tap${vnis[i]}`, `${m.addr}/24`);
    instances.push(...mine);
  }
  return { net, daemons, instances };
}

export async function counters(d: Daemon): Promise<EngineCounters> {
  return (await d.get('/engine/counters')) as EngineCounters;
}

export function port(c: EngineCounters, name: string): PortCounters {
  const p = c.ports.find((x) => x.name === name);
  if (!p) throw new Error(`no port ${name} in counters: ${c.ports.map((x) => x.name).join(', ')}`);
  return p;
}

export const totalDrops = (b: { drops: Record<string, number> }): number =>
  Object.values(b.drops).reduce((a, n) => a + n, 0);
