// What one host's engine should hold, computed from the desired state in the store. Pure.
//
// - A local port for every live interface whose instance is placed on this host.
// - A VNI for every network with a local port, flooding to the underlay addresses of the other
//   live hosts that have interfaces on that network (never to this host itself).
// - Link peers: every other live host with a public key; active when it shares an encrypted
//   network with this host (its VNI's MTU is smaller by the link overhead).
// - Application connections (connections/realise.ts): for every realisable connection with an
//   endpoint instance here, that side's filtered TAP port on the connection's own VNI, always
//   encrypted, flooding to the other endpoint's host (nobody when both are here: the engine
//   switches the frames between the two ports, and the link never leaves this sidecar's memory).
//   The other host thus becomes an active link peer, and a session stays up for the connection.
import type { NetworkRecord } from '../networks/network.ts';
import { type InstanceRecord, isNetnsPath } from '../instances/instance.ts';
import { gatewayAddress } from '../services/gateway.ts';
import { type InterfaceRecord, deviceName } from '../instances/interface.ts';
import type { HostRecord } from '../repo/hosts.ts';
import type { ConnectionRecord } from '../connections/model.ts';
import {
  ENDPOINT_SIDES, connectionCidr, connectionFilter, connectionMac, connectionPortName, isRealisable,
  type ConnectionFilter, type EndpointSide,
} from '../connections/realise.ts';

export interface DesiredPort {
  /** Device name in the instance: the interface's chosen one, else `an` + 8 hex digits of its uuid (<= 15 bytes). */
  name: string;
  iface: string;
  network: string;
  vni: number;
  mac: string;
  netns: string;
  /**
   * Address with prefix length, or null for an interface without one, or on a network that provides
   * DHCP (the instance asks for its address; the daemon does not set it).
   */
  cidr: string | null;
  /**
   * The gateway a default route goes to, set for the first interface of an instance whose namespace a
   * container runtime made (a path): nothing there asks our DHCP for the address and route.
   */
  defaultVia?: string;
  mtu: number;
  /** Connection ports: what the engine lets through (the inbound's protocol and port only). */
  filter?: ConnectionFilter;
  /** Connection ports: which connection and side; `iface` is then `<connection id>/<side>`. */
  connection?: { id: string; side: EndpointSide };
}

export interface DesiredVni {
  vni: number;
  network: string;
  mtu: number;
  /** Carried on encrypted links: every host in `flood` is an active link peer. */
  encrypted: boolean;
  /** Sorted underlay addresses of the other hosts on this network. */
  flood: string[];
  /** A connection's VNI (then `network` is `connection/<id>`). */
  connection?: string;
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

/**
 * The desired state, by id, with the groupings a plan looks up (StateView keeps them current), so a
 * host's plan costs its own instances and their networks' interfaces, not every record.
 */
export interface DesiredState {
  networks: ReadonlyMap<string, NetworkRecord>;
  instances: ReadonlyMap<string, InstanceRecord>;
  interfaces: ReadonlyMap<string, InterfaceRecord>;
  /** By host name. */
  hosts: ReadonlyMap<string, HostRecord>;
  /** Uuids of the instances placed on a host. */
  instancesOnHost(host: string): Iterable<string>;
  /** Uuids of the interfaces whose instance_uuid is this one. */
  interfacesOfInstance(instanceUuid: string): Iterable<string>;
  /** Hosts of the instances with a live (not `deleted`) interface on the network. */
  hostsOnNetwork(networkUuid: string): Iterable<string>;
  /** Application connections by id (absent: none). */
  connections?: ReadonlyMap<string, ConnectionRecord>;
}

/** A DesiredState over plain record lists (tests, tools); StateView keeps its groupings instead. */
export function desiredState(records: {
  networks: NetworkRecord[]; instances: InstanceRecord[]; interfaces: InterfaceRecord[]; hosts: HostRecord[]; connections?: ConnectionRecord[];
}): DesiredState {
  const group = <T>(items: T[], key: (t: T) => string, value: (t: T) => string | undefined) => {
    const m = new Map<string, Set<string>>();
    for (const t of items) {
      const v = value(t);
      if (v !== undefined) m.set(key(t), (m.get(key(t)) ?? new Set()).add(v));
    }
    return (k: string) => m.get(k) ?? [];
  };
  const instances = new Map(records.instances.map((i) => [i.uuid, i]));
  return {
    networks: new Map(records.networks.map((n) => [n.uuid, n])),
    instances,
    interfaces: new Map(records.interfaces.map((i) => [i.uuid, i])),
    hosts: new Map(records.hosts.map((h) => [h.name, h])),
    instancesOnHost: group(records.instances, (i) => i.host, (i) => i.uuid),
    interfacesOfInstance: group(records.interfaces, (i) => i.instance_uuid, (i) => i.uuid),
    hostsOnNetwork: group(records.interfaces, (i) => i.network_uuid, (i) => (i.state === 'deleted' ? undefined : instances.get(i.instance_uuid)?.host)),
    connections: new Map((records.connections ?? []).map((c) => [c.connection_id, c])),
  };
}

const LIVE_NETWORK = new Set(['initial', 'created', 'delete-wait']);

export function portName(ifaceUuid: string): string {
  return deviceName({ uuid: ifaceUuid });
}

/**
 * Live interfaces are those not `deleted`, on a live network with a VNI, of a known instance. Ports:
 * the live interfaces of this host's instances. Flood: for each network with a port here, the
 * underlay addresses of the other live hosts with a live interface on it.
 */
export function planHost(host: string, state: DesiredState, underlayMtu: number): HostPlan {
  const mtuOf = (n: NetworkRecord): number => underlayMtu - 50 - (n.encrypt ? LINK_OVERHEAD : 0);
  const liveNetwork = (uuid: string): NetworkRecord | undefined => {
    const n = state.networks.get(uuid);
    return n && LIVE_NETWORK.has(n.state) && n.vxid > 0 ? n : undefined;
  };
  const ports: DesiredPort[] = [];
  const local = new Map<string, { net: NetworkRecord; prefixLen: string }>();
  for (const instUuid of state.instancesOnHost(host)) {
    const inst = state.instances.get(instUuid);
    if (!inst) continue;
    for (const ifaceUuid of state.interfacesOfInstance(instUuid)) {
      const iface = state.interfaces.get(ifaceUuid);
      if (!iface || iface.state === 'deleted') continue;
      let on = local.get(iface.network_uuid);
      if (!on) {
        const net = liveNetwork(iface.network_uuid);
        if (!net) continue;
        // A record's netblock is canonical CIDR text (validated on create).
        local.set(net.uuid, (on = { net, prefixLen: net.netblock.slice(net.netblock.indexOf('/') + 1) }));
      }
      ports.push({
        name: deviceName(iface),
        iface: iface.uuid,
        network: on.net.uuid,
        vni: on.net.vxid,
        mac: iface.macaddr,
        netns: inst.netns,
        cidr: iface.ipv4 && (!on.net.provideDhcp || isNetnsPath(inst.netns)) ? `${iface.ipv4}/${on.prefixLen}` : null,
        ...(iface.ipv4 && iface.order === 0 && isNetnsPath(inst.netns) ? { defaultVia: gatewayAddress(on.net.netblock) } : {}),
        mtu: mtuOf(on.net),
      });
    }
  }
  const vnis: DesiredVni[] = [];
  for (const { net } of local.values()) {
    const flood: string[] = [];
    for (const other of state.hostsOnNetwork(net.uuid)) {
      const address = other === host ? undefined : state.hosts.get(other)?.underlay_address;
      if (address !== undefined) flood.push(address);
    }
    flood.sort();
    vnis.push({ vni: net.vxid, network: net.uuid, mtu: mtuOf(net), encrypted: net.encrypt === true, flood });
  }
  planConnections(host, state, underlayMtu - 50 - LINK_OVERHEAD, ports, vnis);
  ports.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)); // 'an' + hex: code-unit order
  vnis.sort((a, b) => a.vni - b.vni);
  const activeVteps = new Set(vnis.filter((v) => v.encrypted).flatMap((v) => v.flood));
  const linkPeers = [...state.hosts.values()]
    .filter((h) => h.name !== host && h.public_key)
    .map((h) => ({ host: h.name, vtep: h.underlay_address, publicKey: h.public_key!, active: activeVteps.has(h.underlay_address) }))
    .sort((a, b) => a.host.localeCompare(b.host));
  return { vnis, ports, linkPeers };
}

/** Connection ports and VNIs of this host (see the top of this file), appended to `ports` and `vnis`. */
function planConnections(host: string, state: DesiredState, mtu: number, ports: DesiredPort[], vnis: DesiredVni[]): void {
  for (const c of state.connections?.values() ?? []) {
    if (!isRealisable(c)) continue;
    const ends = { outbound: state.instances.get(c.source_instance_id), inbound: state.instances.get(c.target_instance_id) };
    if (ends.outbound?.host !== host && ends.inbound?.host !== host) continue;
    for (const side of ENDPOINT_SIDES) {
      const inst = ends[side];
      if (inst?.host !== host) continue;
      ports.push({
        name: connectionPortName(c.connection_id, side),
        iface: `${c.connection_id}/${side}`,
        network: `connection/${c.connection_id}`,
        vni: c.vni,
        mac: connectionMac(c.connection_id, side),
        netns: inst.netns,
        cidr: connectionCidr(c, side),
        mtu,
        filter: connectionFilter(c, side),
        connection: { id: c.connection_id, side },
      });
    }
    const flood: string[] = [];
    for (const inst of [ends.outbound, ends.inbound]) {
      const address = inst === undefined || inst.host === host ? undefined : state.hosts.get(inst.host)?.underlay_address;
      if (address !== undefined) flood.push(address);
    }
    vnis.push({ vni: c.vni, network: `connection/${c.connection_id}`, mtu, encrypted: true, flood, connection: c.connection_id });
  }
}
