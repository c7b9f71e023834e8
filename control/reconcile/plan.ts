// What one host's engine should hold, computed from the desired state in the store. Pure.
//
// - A local port for every live interface whose instance is placed on this host.
// - A VNI for every network with a local port, flooding to the underlay addresses of the other
//   live hosts that have interfaces on that network (never to this host itself).
// - Link peers: every other live host with a public key; active when it shares an encrypted
//   network with this host (its VNI's MTU is smaller by the link overhead).
import { parseCidr } from '../net/ipv4-cidr.ts';
import type { NetworkRecord } from '../networks/network.ts';
import type { InstanceRecord } from '../instances/instance.ts';
import type { InterfaceRecord } from '../instances/interface.ts';
import type { HostRecord } from '../repo/hosts.ts';

export interface DesiredPort {
  /** Device name: `an` + the first 8 hex digits of the interface uuid (unique, <= 15 bytes). */
  name: string;
  iface: string;
  network: string;
  vni: number;
  mac: string;
  netns: string;
  /** Address with prefix length, or null for an interface without one. */
  cidr: string | null;
  mtu: number;
}

export interface DesiredVni {
  vni: number;
  network: string;
  mtu: number;
  /** Carried on encrypted links: every host in `flood` is an active link peer. */
  encrypted: boolean;
  /** Sorted underlay addresses of the other hosts on this network. */
  flood: string[];
}

/** Another live host this one may hold an encrypted link with. */
export interface DesiredLinkPeer {
  host: string;
  vtep: string;
  publicKey: string;
  /** It shares an encrypted network with this host: keep a session up. */
  active: boolean;
}

export interface HostPlan {
  vnis: DesiredVni[];
  ports: DesiredPort[];
  /** Every other live host with a public key is authorised; the active ones get sessions. */
  linkPeers: DesiredLinkPeer[];
}

/** Bytes an encrypted link adds to a VXLAN datagram (docs/link-transport.md). */
export const LINK_OVERHEAD = 32;

export interface DesiredState {
  networks: NetworkRecord[];
  instances: InstanceRecord[];
  interfaces: InterfaceRecord[];
  hosts: HostRecord[];
}

const LIVE_NETWORK = new Set(['initial', 'created', 'delete-wait']);

export function portName(ifaceUuid: string): string {
  return `an${ifaceUuid.replace(/-/g, '').slice(0, 8)}`;
}

export function planHost(host: string, state: DesiredState, underlayMtu: number): HostPlan {
  const mtuOf = (n: NetworkRecord): number => underlayMtu - 50 - (n.encrypt ? LINK_OVERHEAD : 0);
  const networks = new Map(state.networks.filter((n) => LIVE_NETWORK.has(n.state) && n.vxid > 0).map((n) => [n.uuid, n]));
  const instances = new Map(state.instances.map((i) => [i.uuid, i]));
  const liveHosts = new Map(state.hosts.map((h) => [h.name, h]));
  const live = state.interfaces.filter((i) => i.state !== 'deleted' && networks.has(i.network_uuid) && instances.has(i.instance_uuid));

  const ports: DesiredPort[] = [];
  const hostsOnNetwork = new Map<string, Set<string>>();
  for (const iface of live) {
    const inst = instances.get(iface.instance_uuid)!;
    const net = networks.get(iface.network_uuid)!;
    let on = hostsOnNetwork.get(net.uuid);
    if (!on) hostsOnNetwork.set(net.uuid, (on = new Set()));
    on.add(inst.host);
    if (inst.host !== host) continue;
    ports.push({
      name: portName(iface.uuid),
      iface: iface.uuid,
      network: net.uuid,
      vni: net.vxid,
      mac: iface.macaddr,
      netns: inst.netns,
      cidr: iface.ipv4 ? `${iface.ipv4}/${parseCidr(net.netblock).prefixLen}` : null,
      mtu: mtuOf(net),
    });
  }
  const vnis: DesiredVni[] = [];
  for (const netUuid of new Set(ports.map((p) => p.network))) {
    const net = networks.get(netUuid)!;
    const flood = [...hostsOnNetwork.get(netUuid)!]
      .filter((h) => h !== host && liveHosts.has(h))
      .map((h) => liveHosts.get(h)!.underlay_address)
      .sort();
    vnis.push({ vni: net.vxid, network: netUuid, mtu: mtuOf(net), encrypted: net.encrypt === true, flood });
  }
  ports.sort((a, b) => a.name.localeCompare(b.name));
  vnis.sort((a, b) => a.vni - b.vni);
  const activeVteps = new Set(vnis.filter((v) => v.encrypted).flatMap((v) => v.flood));
  const linkPeers = state.hosts
    .filter((h) => h.name !== host && h.public_key)
    .map((h) => ({ host: h.name, vtep: h.underlay_address, publicKey: h.public_key!, active: activeVteps.has(h.underlay_address) }))
    .sort((a, b) => a.host.localeCompare(b.host));
  return { vnis, ports, linkPeers };
}
