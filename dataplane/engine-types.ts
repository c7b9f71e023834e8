// The engine's vocabulary for TypeScript callers: drop reasons, counters, port and capture specs, punted frames.
// dataplane/engine.ts (the Engine class) re-exports all of it.
import type { NativeLinkCounters, NativeLinkSession } from './native.ts';
import type { CapturePointName, CaptureRecord } from './capture-records.ts';
import type { PortFilter } from './wire/port-filter.ts';

export type PortKind = 'tap' | 'tun';
/** filtered: refused by a port's filter (PortSpec.filter), counted on the port and on its VNI. */
/**
 * no_uplink: an off-net frame on a NAT network, on a host without an uplink. nat: the NAT table refused it
 * (its stats say why, e.g. conntrack_full). no_neighbour: from the uplink to an address no instance holds.
 */
export type DropReason = 'malformed' | 'unknown_vni' | 'no_destination' | 'queue_full' | 'oversize' | 'no_session' | 'unencrypted' | 'filtered'
  | 'no_uplink' | 'nat' | 'no_neighbour' | 'unknown_vtep' | 'vni_not_shared' | 'mac_conflict' | 'fdb_full';
export const DROP_REASONS: readonly DropReason[] = ['malformed', 'unknown_vni', 'no_destination', 'queue_full', 'oversize', 'no_session', 'unencrypted', 'filtered',
  'no_uplink', 'nat', 'no_neighbour', 'unknown_vtep', 'vni_not_shared', 'mac_conflict', 'fdb_full'];
export type LinkDropReason = 'malformed' | 'unknown_index' | 'expired' | 'replay' | 'bad_tag' | 'no_session' | 'counter_exhausted'
  | 'handshake_rate' | 'handshake_queue_full';

export interface CounterBlock {
  rx_packets: number;
  rx_bytes: number;
  tx_packets: number;
  tx_bytes: number;
  drops: Record<DropReason, number>;
}
export interface PortCounters extends CounterBlock {
  id: number;
  name: string;
  vni: number;
  /**
   * TAP receive coalescing (offloads.tapGro): frames that went into the instance inside a bigger write
   * (a TCP super-frame), and the number of such writes. tx_packets still counts every frame.
   */
  gro_merged: number;
  gro_writes: number;
}
export interface EngineCounters {
  /** Datagrams received on the underlay socket, and the ones dropped before reaching a VNI. */
  wire: CounterBlock;
  /** rx: frames decapsulated into the VNI; tx: datagrams sent to VTEPs. */
  vnis: Record<string, CounterBlock>;
  /** rx: frames the instance sent; tx: frames delivered to the instance. */
  ports: PortCounters[];
  punt: { punted: number; dropped: number };
  /**
   * udp_gso_fallbacks: times the TX pipeline found UDP GSO refused by the kernel (it then sends datagrams
   * singly). tap_gro_fallbacks: times a TAP refused a coalesced super-frame (that RX pipeline then writes
   * frames singly). uplink_gso_writes / uplink_gso_reads: TCP super-packets that went to and came from the
   * uplink whole (through NAT once each); uplink_gso_fallbacks: times the kernel or a TAP refused one (cut into
   * segments instead).
   */
  offload: { udp_gso_fallbacks: number; tap_gro_fallbacks: number; uplink_gso_writes: number; uplink_gso_reads: number; uplink_gso_fallbacks: number };
  /** Per pipeline (engine threads): reads from ports (TX), datagrams received (RX, link RX). */
  pipelines: Array<{ tx_reads: number; rx_datagrams: number; link_datagrams: number }>;
  /** Encrypted links, when enabled: drops that belong to no peer (unknown index, malformed). */
  links?: LinkCounters;
  /** The uplink, when open: rx read from it (before NAT), tx written to it (after). */
  uplink?: CounterBlock;
}

/** A NAT network's gateway as the engine's NAT stage sees it (docs/nat.md "Uplink and network node"). */
export interface GatewaySpec {
  /** The gateway address (.1) and the network's netblock, `a.b.c.d/p`. */
  ip: string;
  netblock: string;
  mac: string;
  /** Send off-net frames to the gateway MAC out of the uplink (this host is the network node). */
  nat: boolean;
}

/** Link counters (rx/tx, keepalives, roams: times an authenticated packet moved the peer's endpoint). */
export type LinkCounters = Omit<NativeLinkCounters, 'drops'> & { drops: Record<LinkDropReason, number> };

export type LinkSessionInfo = NativeLinkSession;

export interface LinkPeerInfo extends LinkCounters {
  /** The peer's identity: its registered underlay address. */
  vtep: string;
  endpoint: { address: string; port: number };
  /** ms since the last data or keepalive sent / received; null if never. */
  lastTxAgoMs: number | null;
  lastRxAgoMs: number | null;
  wantSession: boolean;
  current: LinkSessionInfo | null;
  previous: LinkSessionInfo | null;
  next: LinkSessionInfo | null;
}

export interface LinkSessionKeys {
  localIndex: number;
  remoteIndex: number;
  sendKey: Uint8Array;
  recvKey: Uint8Array;
  initiator: boolean;
}

export interface EngineOptions {
  underlayAddress: string;
  underlayPort?: number;
  ageingSeconds?: number;
  /** Entries per VNI's FDB (default 16384); new MACs off the wire beyond it are dropped as `fdb_full`. */
  fdbLimit?: number;
  /** Offloads, all on by default; each can be switched off if a kernel mishandles it. */
  offloads?: Offloads;
  /** Called with every batch of punted frames (never once per frame). */
  onPunt?: (frames: PuntedFrame[]) => void;
  /** UDP port of encrypted links (bound on every address); omitted or 0: no links. */
  linkPort?: number;
  /**
   * Pipelines of each kind (TX, RX, link RX), 1..16, default 1. With more than one, TAP and TUN ports are
   * multi-queue (one queue per TX pipeline) and the underlay and link sockets are SO_REUSEPORT groups.
   */
  threads?: number;
  /**
   * CPUs to pin pipelines to: pipeline i's TX, RX and link RX threads run on cpus[i % length]. Omitted: the
   * scheduler places them. Every CPU must be one the process may run on.
   */
  cpus?: number[];
}

export interface Offloads {
  /** Send runs of equal-size datagrams to one VTEP as one UDP_SEGMENT message. */
  udpGso?: boolean;
  /** Let the underlay socket receive coalesced runs of datagrams (UDP_GRO). */
  udpGro?: boolean;
  /** TAP ports take checksum and TCPv4 segmentation offload (IFF_VNET_HDR). */
  tapOffload?: boolean;
  /** Consecutive TCP segments to a TAP port are written as one super-frame (needs tapOffload). */
  tapGro?: boolean;
  /**
   * Runs of UDP datagrams of one flow and size to a TAP port are written as one GSO UDP_L4 super-frame too
   * (needs tapGro; off unless set): less CPU, but up to 64 datagrams reach the instance's socket at once.
   */
  tapGroUdp?: boolean;
  /** The uplink TUN takes and gives TCPv4 super-packets (IFF_VNET_HDR), so NAT works per super-frame. */
  uplinkOffload?: boolean;
}

export interface PortSpec {
  name: string;
  kind: PortKind;
  vni: number;
  mac: string;
  mtu: number;
  /** TUN ports: the instance's address, which the engine answers ARP for. */
  ipv4?: string;
  /** Move the device into this network namespace (a name under /run/netns, or a path). */
  netns?: string;
  /**
   * An application connection's port: it carries ARP between the two link addresses and the one TCP or UDP
   * conversation with the inbound's port, both ways; everything else is dropped as `filtered`
   * (docs/port-filter.md). Without it the port carries anything.
   */
  filter?: PortFilter;
  /** Interface addresses (IPv4 CIDRs, e.g. 198.18.4.2/26) the kernel side of the device gets, before it goes up. */
  addresses?: string[];
  /**
   * An in-memory device instead of TUN/TAP (no root, no namespace; netns and addresses do not apply): the test is
   * the instance, through memorySend and memoryReceive. For tests and fuzzing (docs/testing.md).
   */
  memory?: boolean;
}

export interface PuntRule {
  ethertype?: number;
  ipProto?: number;
  dstIp?: string;
  dstPort?: number;
  vni?: number;
  /** Default true: the frame goes to JS only. false: forwarded as usual, and a copy punted. */
  consume?: boolean;
}

export interface PuntedFrame {
  rule: number;
  /** The local port the frame came from, or null when it came from the wire. */
  port: number | null;
  vni: number;
  /** The remote VTEP it came from, when it came from the wire. */
  remote: string | null;
  /** For link handshake messages (rule LINK_PUNT_RULE): the source UDP port. */
  remotePort: number;
  frame: Buffer;
}

export interface CaptureSpec {
  points: CapturePointName[];
  /** Only this VNI. */
  vni?: number;
  /** Only this port id (port point). */
  port?: number;
  /** Bytes kept per packet; default 65535. */
  snaplen?: number;
  /** Records held until drained; copies beyond are dropped (and counted), never forwarding. */
  ring?: number;
  /** A tcpdump expression, compiled to BPF by libpcap. */
  filter?: string;
}

export interface CaptureBatch {
  records: CaptureRecord[];
  captured: number;
  dropped: number;
  filtered: number;
}

/** A drained batch as the engine packed it: what the API sends to a binary client untouched. */
export interface PackedCaptureBatch {
  records: Buffer;
  count: number;
  captured: number;
  dropped: number;
  filtered: number;
}


/** Punted datagrams with this rule id are link handshake messages (whole UDP payloads). */
export const LINK_PUNT_RULE = 0;

export interface FdbEntry {
  mac: string;
  port: number | null;
  remote: string | null;
  ageMs: number;
  static: boolean;
}

