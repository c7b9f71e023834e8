/**
 * NAT policy: which host is the network node, and what every host must install in its engine for
 * egress NAT, floating and routed addresses (docs/nat.md "Uplink and network node"). Pure: records in,
 * the desired tables out; control/services/nat-service.ts installs them and allocates addresses.
 *
 * The rule (agreed, simplest): the live host with an uplink that sorts first by name serves NAT for
 * every provide_nat network. It holds every NAT network's VNI, answers off-net frames sent to the
 * gateway MAC, and owns the network's floating gateway address. Every other host sends such frames over
 * the VNI to it: a static FDB entry gateway MAC -> the network node's VTEP.
 */
import type { HostRecord } from '../repo/hosts.ts';
import type { InterfaceRecord } from '../instances/interface.ts';
import type { NetworkRecord } from '../networks/network.ts';
import { parseCidr, parseIpv4 } from '../net/ipv4-cidr.ts';
import { gatewayAddress, gatewayMac } from './gateway.ts';

export interface NatGatewayRule {
  vni: number;
  network: string;
  /** The gateway (.1) and the netblock. */
  ip: string;
  netblock: string;
  mac: string;
}

export interface NatSnatRule {
  vni: number;
  network: string;
  insideNet: number;
  prefix: number;
  /** The network's floating gateway. */
  external: number;
}

export interface NatFloatRule {
  vni: number;
  interface: string;
  inside: number;
  external: number;
}

export interface NatNeighbour {
  vni: number;
  ip: string;
  mac: string;
}

export interface NatRoute {
  vni: number;
  network: string;
  address: string;
}

/** What one host installs. Everything but `remoteGateways` is empty unless the host is the network node. */
export interface NatPlan {
  natNode: string | null;
  isNatNode: boolean;
  gateways: NatGatewayRule[];
  snat: NatSnatRule[];
  floats: NatFloatRule[];
  neighbours: NatNeighbour[];
  routes: NatRoute[];
  /** provide_nat networks still without a floating gateway: the network node allocates one. */
  needGateway: string[];
  /** Other hosts: where the gateway MAC of each NAT network lives (the network node's VTEP). */
  remoteGateways: Array<{ vni: number; mac: string; remote: string }>;
}

export interface NatPolicyInput {
  host: string;
  /** Live hosts. A host with `nat_uplink` set has an uplink. */
  hosts: Iterable<HostRecord>;
  networks: Iterable<NetworkRecord>;
  interfaces: Iterable<InterfaceRecord>;
  /** Routed addresses by network uuid (reservations of type `routed` in the floating pool). */
  routed?: ReadonlyMap<string, readonly string[]>;
}

/** The network node: the live host with an uplink whose name sorts first; null when none has one. */
export function natNode(hosts: Iterable<HostRecord>): HostRecord | null {
  let best: HostRecord | null = null;
  for (const h of hosts) if (h.nat_uplink && (best === null || h.name < best.name)) best = h;
  return best;
}

/** A network whose traffic the NAT stage handles: it asked for NAT and is not being torn down. */
export function isNatNetwork(n: NetworkRecord): boolean {
  return n.provideNat && n.vxid > 0 && (n.state === 'initial' || n.state === 'created' || n.state === 'delete-wait');
}

export function planNat(input: NatPolicyInput): NatPlan {
  const node = natNode(input.hosts);
  const isNatNode = node !== null && node.name === input.host;
  const plan: NatPlan = {
    natNode: node?.name ?? null, isNatNode, gateways: [], snat: [], floats: [], neighbours: [], routes: [], needGateway: [], remoteGateways: [],
  };
  if (node === null) return plan;
  const nat = new Map<string, NetworkRecord>();
  for (const n of input.networks) if (isNatNetwork(n)) nat.set(n.uuid, n);
  for (const n of nat.values()) {
    if (!isNatNode) {
      plan.remoteGateways.push({ vni: n.vxid, mac: gatewayMac(n.vxid), remote: node.underlay_address });
      continue;
    }
    const cidr = parseCidr(n.netblock);
    plan.gateways.push({ vni: n.vxid, network: n.uuid, ip: gatewayAddress(n.netblock), netblock: n.netblock, mac: gatewayMac(n.vxid) });
    if (n.floatingGateway === null) plan.needGateway.push(n.uuid);
    else plan.snat.push({ vni: n.vxid, network: n.uuid, insideNet: cidr.network, prefix: cidr.prefixLen, external: parseIpv4(n.floatingGateway) });
    for (const address of input.routed?.get(n.uuid) ?? []) plan.routes.push({ vni: n.vxid, network: n.uuid, address });
  }
  if (!isNatNode) return plan;
  for (const i of input.interfaces) {
    const n = nat.get(i.network_uuid);
    if (!n || i.state === 'deleted' || i.ipv4 === null) continue;
    plan.neighbours.push({ vni: n.vxid, ip: i.ipv4, mac: i.macaddr.toLowerCase() });
    if (i.floating !== null) plan.floats.push({ vni: n.vxid, interface: i.uuid, inside: parseIpv4(i.ipv4), external: parseIpv4(i.floating) });
  }
  // A routed address is claimed by whichever instance configures it: every instance of the network is a
  // candidate, so the neighbour for it is learnt, not planned (docs/nat.md).
  return plan;
}
