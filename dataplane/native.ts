// Finds and loads the compiled addon. The one place that knows where the .node file lives.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { CompiledPortFilter, FilterVerdict } from './wire/port-filter.ts';

// APPNET_ADDON: another build of the same addon (bench/asan.sh loads one made with ASan and UBSan).
const ADDON = process.env.APPNET_ADDON ?? fileURLToPath(new URL('../native/build/Release/appnet.node', import.meta.url));

export interface NativeCounterBlock {
  rx_packets: number;
  rx_bytes: number;
  tx_packets: number;
  tx_bytes: number;
  drops: Record<string, number>;
}

export interface NativePortSpec {
  name: string; kind: 'tap' | 'tun'; vni: number; mac: Buffer; mtu: number; ipv4?: number; netns?: string;
  filter?: CompiledPortFilter; addresses?: Array<[number, number]>; memory?: boolean;
}

export interface NativeEngine {
  start(): void;
  stop(): void;
  addVni(vni: number, mtu: number): void;
  removeVni(vni: number): void;
  setFlood(vni: number, remotes: number[]): void;
  setKnownVteps(vteps: number[]): void;
  addPort(spec: NativePortSpec): number;
  /** addPort with the device made on a libuv pool thread; rejects with the same errors. */
  addPortAsync(spec: NativePortSpec): Promise<number>;
  removePort(id: number): void;
  addFdb(vni: number, mac: Buffer, port: number, remote: number): void;
  removeFdb(vni: number, mac: Buffer): boolean;
  fdb(vni: number): Array<{ mac: Buffer; port: number; remote: number; ageMs: number; static: boolean }>;
  counters(): {
    wire: NativeCounterBlock;
    vnis: Record<string, NativeCounterBlock>;
    ports: Array<NativeCounterBlock & { id: number; name: string; vni: number }>;
    punt: { punted: number; dropped: number };
    offload: { udp_gso_fallbacks: number; tap_gro_fallbacks: number; uplink_gso_writes: number; uplink_gso_reads: number; uplink_gso_fallbacks: number };
    pipelines: Array<{ tx_reads: number; rx_datagrams: number; link_datagrams: number }>;
    links?: NativeLinkCounters;
    uplink?: NativeCounterBlock;
  };
  addPuntRule(rule: { ethertype?: number; ipProto?: number; dstIp?: number; dstPort?: number; vni?: number; consume?: boolean }): number;
  removePuntRule(id: number): boolean;
  drainPunts(): Array<{ rule: number; port: number; vni: number; remote: number; remotePort: number; frame: Buffer }>;
  injectToPort(port: number, frame: Buffer): void;
  injectToVni(vni: number, frame: Buffer): void;
  sendDatagram(ip: number, port: number, payload: Buffer): void;
  txSourcePorts(): number[];
  addVni(vni: number, mtu: number, encrypted?: boolean): void;
  linkAddPeer(vtep: number, ip: number, port: number): void;
  linkRemovePeer(vtep: number): boolean;
  linkInstall(vtep: number, s: { localIndex: number; remoteIndex: number; sendKey: Buffer; recvKey: Buffer; initiator: boolean }): void;
  linkExpire(): void;
  linkKeepalive(vtep: number): boolean;
  linkSend(ip: number, port: number, data: Buffer): void;
  linkPeers(withKeys?: boolean): NativeLinkPeer[];
  linkPort(): number;
  injectFromPort(port: number, frame: Buffer): void;
  captureStart(spec: { points: number; vni?: number; port?: number; snaplen?: number; ring?: number; filter?: string }): number;
  captureDrain(id: number): {
    /** Packed records (dataplane/capture-records.ts). */
    records: Buffer;
    count: number;
    captured: number;
    dropped: number;
    filtered: number;
  };
  captureStop(id: number): boolean;
  setUplink(name: string | null, mtu: number): void;
  /** A NatTable (dataplane/nat.ts) object, or null. */
  setNat(table: object | null): void;
  setGateway(vni: number, g: { ip: number; net: number; mask: number; mac: Buffer; nat: boolean } | null): void;
  addNeighbour(vni: number, ip: number, mac: Buffer): void;
  removeNeighbour(vni: number, ip: number): boolean;
  addRouted(vni: number, ip: number): void;
  removeRouted(ip: number): boolean;
  setUplinkMemory(mtu: number): void;
  memorySend(port: number | 'uplink', frame: Buffer): boolean;
  memoryReceive(port: number | 'uplink'): Buffer[];
}

export interface NativeLinkCounters {
  tx_packets: number;
  tx_bytes: number;
  rx_packets: number;
  rx_bytes: number;
  keepalives_tx: number;
  keepalives_rx: number;
  roams: number;
  handshakes_rx: number;
  drops: Record<string, number>;
}

export interface NativeLinkSession {
  localIndex: number;
  remoteIndex: number;
  initiator: boolean;
  ageMs: number;
  sendCounter: bigint;
  sendKey?: Buffer;
  recvKey?: Buffer;
}

export interface NativeLinkPeer extends NativeLinkCounters {
  vtep: number;
  endpointIp: number;
  endpointPort: number;
  lastTxAgoMs: number;
  lastRxAgoMs: number;
  wantSession: boolean;
  current: NativeLinkSession | null;
  previous: NativeLinkSession | null;
  next: NativeLinkSession | null;
}

/** RFC 6479 replay window of link data messages (native/src/replay.h); accepts up to 4032 behind the highest. */
export interface NativeReplayWindow {
  /** Would mark(c) accept c? Does not change the window. */
  check(c: bigint): boolean;
  /** Accepts and records c; false for a replay, a counter too old, or one >= REJECT_AFTER_MESSAGES. */
  mark(c: bigint): boolean;
  reset(): void;
}

export interface NativeBinding {
  Engine: new (
    opts: { underlayAddress: number; underlayPort: number; ageingMs: number; fdbLimit?: number; udpGso?: boolean; udpGro?: boolean; tapOffload?: boolean; tapGro?: boolean; tapGroUdp?: boolean; uplinkOffload?: boolean; linkPort?: number; threads?: number; cpus?: number[] },
    onPunt?: () => void,
  ) => NativeEngine;
  vxlanEncap(vni: number, frame: Buffer): Buffer;
  /** error: 0 ok, 1 short, 2 flags, 3 inner short, 4 inner ipv4, 5 inner arp. */
  vxlanDecap(datagram: Buffer): { vni: number; error: number };
  flowHash(frame: Buffer): number;
  /** The engine's TSO segmentation (native/src/offload.h), for differential tests. */
  tcp4Segment(frame: Buffer, mss: number): Buffer[] | null;
  /** The engine's port filter (native/src/port_filter.h); direction 0 send, 1 receive. */
  portFilterCheck(filter: CompiledPortFilter, frame: Buffer, direction: 0 | 1): FilterVerdict;
  /** The engine's partial-checksum completion, on a copy. */
  finishChecksum(frame: Buffer, csumStart: number, csumOffset: number): Buffer | null;
  /** Benchmark only: ns for `iterations` rounds of encap + decap + flow hash inside native code. */
  codecLoop(vni: number, frame: Buffer, iterations: number): number;
  /** Link data message (native/src/link_crypto.h), as dataplane/wire/link.ts sealData. Throws TypeError naming a bad argument. */
  linkSeal(key: Buffer, receiver: number, counter: bigint, plaintext: Buffer): Buffer;
  /** As dataplane/wire/link.ts openData. */
  linkOpen(key: Buffer, message: Buffer):
    | { receiver: number; counter: bigint; plaintext: Buffer }
    | { error: 'short' | 'type' | 'reserved' | 'tag' };
  /** Tests only: linkSeal through the engine's in-place layout (header into headroom, tag into tailroom). */
  linkSealInPlace(key: Buffer, receiver: number, counter: bigint, plaintext: Buffer): Buffer;
  /** Tests only: opens a copy of message in place; the plaintext, or null when header or tag is refused. */
  linkOpenInPlace(key: Buffer, message: Buffer): Buffer | null;
  ReplayWindow: new () => NativeReplayWindow;
  /** Benchmark only: ns for `iterations` seals or opens of a `size`-byte plaintext inside native code. */
  linkCryptoLoop(op: 'seal' | 'open', size: number, iterations: number): number;
}

function load(): NativeBinding {
  if (!existsSync(ADDON)) {
    throw new Error(`the native addon is not built (${ADDON} is missing): run 'npm run build:native'`);
  }
  return createRequire(import.meta.url)(ADDON) as NativeBinding;
}

export const native: NativeBinding = load();
