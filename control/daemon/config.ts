// The static configuration appnetd reads from a JSON file (and --flag overrides) until the
// control plane drives it from the store. Pure: parse and validate, no I/O.
import { availableParallelism } from 'node:os';
import { DEFAULT_LINK_POOL, parseLinkPool } from '../connections/link-pool.ts';
import { DEFAULT_COMPACTION, type CompactionSettings } from '../store/compactor.ts';
import { compilePortFilter, PortFilterError, type PortFilter } from '../../dataplane/wire/port-filter.ts';
import { showValue } from '../../dataplane/wire/errors.ts';

export type PortKind = 'tap' | 'tun';

export interface PortConfig {
  /** Device name, at most 15 bytes (IFNAMSIZ - 1). */
  name: string;
  kind: PortKind;
  vni: number;
  /** tap: the MAC of the device the instance sees; tun: the MAC the overlay sees for the instance. */
  mac?: string;
  /** Default: the VNI's MTU. */
  mtu?: number;
  /** tun only: the instance's IPv4 address, answered for in ARP by the engine. */
  ipv4?: string;
  /** Move the device into this network namespace: a name under /var/run/netns, or an absolute path. */
  netns?: string;
  /** An application connection's port: only its one conversation passes (docs/port-filter.md). */
  filter?: PortFilter;
}

export interface VniConfig {
  vni: number;
  /** Overlay MTU; default underlay MTU - 50. */
  mtu?: number;
  /** Underlay IPv4 addresses of the remote VTEPs that get BUM traffic (head-end replication). */
  flood?: string[];
  /** Carry this VNI only on encrypted links (its VTEPs must be link peers). */
  encrypted?: boolean;
}

export interface LinkConfig {
  /** Encrypted links on; off means no link socket, no host key, and no encrypted VNIs. */
  enabled: boolean;
  /** UDP port of the link socket, bound on every address. */
  port: number;
  /** This host's static X25519 key pair, created with mode 0600 on first start. */
  keyFile: string;
  /** Static mode: the peers (store mode takes them from the host registry). */
  peers: Array<{ address: string; publicKey: string }>;
  /** Rekey interval; WireGuard's 120 s unless an operator or a test forces it lower. */
  rekeyAfterSeconds: number;
  /** Let operators export session keys (to decrypt captures). Off by default. */
  allowKeyExport: boolean;
}

/** Bytes encryption adds on top of VXLAN: the link header (16) and the AEAD tag (16). */
export const LINK_OVERHEAD = 32;

export interface DaemonConfig {
  host: string;
  underlay: { address: string; port: number; mtu: number };
  /** Unix socket of the admin API (HTTP). */
  adminSocket: string;
  ageingSeconds: number;
  /** Entries per VNI's FDB (default 16384): new MACs off the wire beyond it are dropped as fdb_full. */
  fdbLimit?: number;
  /** Offload kill switches; all default to true (tapGro too when absent) but tapGroUdp, which is opt-in. */
  offloads: { udpGso: boolean; udpGro: boolean; tapOffload: boolean; tapGro?: boolean; tapGroUdp?: boolean; uplinkOffload?: boolean };
  /**
   * The engine's pipelines: `threads` of each kind (TX, RX, link RX), each TAP/TUN port with as many queues.
   * Default half the cores (at least 1): the instances and the kernel's share of each packet need the rest.
   * `cpus`: pin pipeline i's threads to cpus[i % length] (docs/engine-threads.md "Pinning"); default unpinned.
   */
  engine: { threads: number; cpus?: number[] };
  vnis: VniConfig[];
  ports: PortConfig[];
  /** Control-plane mode: the store URL (e.g. sqlite:/var/lib/appnet/appnet.db). Without it, static mode. */
  store?: string;
  /** How to reach etcd (etcds:// URLs take the TLS files; username and password for etcd's auth). */
  etcd?: { ca?: string; cert?: string; key?: string; username?: string; password?: string };
  /**
   * Where the REST API listens (store mode); loopback by default. Any other address is served over TLS
   * only: with `tls` (PEM files), or a certificate appnetd makes under `stateDir` (api-tls.ts). `advertise`
   * is the address other hosts reach it at (forwarded requests): by default `address`, or the underlay
   * address when listening on 0.0.0.0. A loopback API cannot be reached from another machine. `local`
   * (default true): when `address` is one non-loopback address, also serve plain HTTP on 127.0.0.1 at the
   * same port, for the host's own CLI.
   */
  api: { address: string; port: number; advertise?: string; tls?: { cert: string; key: string }; local?: boolean };
  /** Where appnetd keeps what it makes for itself (the API's CA and certificate); default /var/lib/appnet. */
  stateDir?: string;
  /** Pruning of append-only events (store mode): older than maxAgeSeconds, or beyond maxPerObject newest. */
  events?: { maxAgeSeconds: number; maxPerObject: number; pruneIntervalSeconds: number };
  /** Scheduled compaction of the store (store/compactor.ts; defaults DEFAULT_COMPACTION). */
  compaction?: CompactionSettings;
  /**
   * When a connection goes to ERROR on its own (store mode; 0 turns a limit off): its link has had no
   * session with a live peer host for handshakeTimeoutSeconds (default 120), or, never established, it has
   * waited placementTimeoutSeconds (default 300) for a side to be placed and attached.
   */
  connections?: { handshakeTimeoutSeconds: number; placementTimeoutSeconds: number };
  /** The floating pool's netblock (store mode). */
  floatingPool: string;
  /**
   * Link addresses of application connections (store mode); every daemon on a store must agree.
   * Parsing always sets it; optional so that configs built in code may leave it to the default.
   */
  linkPool?: string;
  /** Bearer tokens of the REST API: token -> namespace. Empty: one system token in tokenFile. */
  tokens: Record<string, string>;
  tokenFile: string;
  /** A bearer token that opens GET /metrics of the REST API and nothing else (for Prometheus), >= 16 characters. */
  metricsToken?: string;
  /** JWTs of POST /auth: lifetime (default 900 s) and signing-key rotation (default 3600 s); docs/api-auth.md. */
  auth?: { tokenSeconds: number; rotateSeconds: number };
  link: LinkConfig;
  /** DNS names of instances are `<instance>.<namespace>.<dnsZone>` (store mode); the parser fills in appnet.internal. */
  dnsZone?: string;
  /** `a.b.c.d[:port]` that names outside dnsZone are forwarded to; absent: they are REFUSED. */
  dnsUpstream?: string;
  /** The TUN device NAT traffic leaves through (store mode, docs/nat.md); absent: this host does no NAT. */
  uplink?: { device: string; mtu?: number };
  /** The NAT table: at most `capacity` tracked flows (default 65536). */
  nat?: { capacity: number };
  /** Seconds between usage events of each network with local ports (store mode); 0: none. Parsing fills in 60. */
  usageIntervalSeconds?: number;
}

export class ConfigError extends Error {
  constructor(path: string, message: string) {
    super(`config: ${path}: ${message}`);
    this.name = 'ConfigError';
  }
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

type Obj = Record<string, unknown>;

function obj(v: unknown, path: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(path, 'must be an object');
  return v as Obj;
}
function int(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(path, `must be an integer in ${min}..${max}, got ${showValue(v)}`);
  }
  return v;
}
function str(v: unknown, path: string, re?: RegExp, form?: string): string {
  if (typeof v !== 'string' || (re && !re.test(v))) {
    throw new ConfigError(path, `must be ${form ?? 'a string'}, got ${showValue(v)}`);
  }
  return v;
}
function arr(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) throw new ConfigError(path, 'must be an array');
  return v;
}

/** Validates a parsed config file; every error names the offending field. */
export function parseDaemonConfig(raw: unknown): DaemonConfig {
  const c = obj(raw, '(top)');
  const u = obj(c.underlay, 'underlay');
  const underlay = {
    address: str(u.address, 'underlay.address', IPV4, 'an IPv4 address'),
    port: u.port === undefined ? 4789 : int(u.port, 'underlay.port', 1, 65535),
    mtu: u.mtu === undefined ? 1500 : int(u.mtu, 'underlay.mtu', 576, 9216),
  };
  const link = parseLink(c.link, typeof c.host === 'string' ? c.host : 'localhost');
  const vnis = arr(c.vnis ?? [], 'vnis').map((v, i): VniConfig => {
    const o = obj(v, `vnis[${i}]`);
    const encrypted = o.encrypted === undefined ? false : bool(o.encrypted, `vnis[${i}].encrypted`);
    if (encrypted && !link.enabled) throw new ConfigError(`vnis[${i}].encrypted`, 'needs link.enabled');
    const maxMtu = underlay.mtu - 50 - (encrypted ? LINK_OVERHEAD : 0);
    return {
      vni: int(o.vni, `vnis[${i}].vni`, 1, 0xffffff),
      mtu: o.mtu === undefined ? maxMtu : int(o.mtu, `vnis[${i}].mtu`, 68, maxMtu),
      flood: arr(o.flood ?? [], `vnis[${i}].flood`).map((a, j) => str(a, `vnis[${i}].flood[${j}]`, IPV4, 'an IPv4 address')),
      encrypted,
    };
  });
  const seen = new Set<number>();
  for (const [i, v] of vnis.entries()) {
    if (seen.has(v.vni)) throw new ConfigError(`vnis[${i}].vni`, `VNI ${v.vni} is listed twice`);
    seen.add(v.vni);
  }
  const ports = arr(c.ports ?? [], 'ports').map((v, i): PortConfig => {
    const o = obj(v, `ports[${i}]`);
    const kind = str(o.kind, `ports[${i}].kind`, /^(tap|tun)$/, "'tap' or 'tun'") as PortKind;
    const vni = int(o.vni, `ports[${i}].vni`, 1, 0xffffff);
    const vc = vnis.find((x) => x.vni === vni);
    if (!vc) throw new ConfigError(`ports[${i}].vni`, `VNI ${vni} is not in vnis`);
    const port: PortConfig = {
      name: str(o.name, `ports[${i}].name`, IFNAME, '1-15 characters of [A-Za-z0-9_.-]'),
      kind,
      vni,
      mac: o.mac === undefined ? undefined : str(o.mac, `ports[${i}].mac`, MAC, 'a MAC like 02:00:00:00:00:01'),
      mtu: o.mtu === undefined ? vc.mtu : int(o.mtu, `ports[${i}].mtu`, 68, 9000),
      ipv4: o.ipv4 === undefined ? undefined : str(o.ipv4, `ports[${i}].ipv4`, IPV4, 'an IPv4 address'),
      netns: o.netns === undefined ? undefined : str(o.netns, `ports[${i}].netns`),
      filter: o.filter === undefined ? undefined : parseFilter(o.filter, `ports[${i}].filter`),
    };
    if (kind === 'tun' && !port.ipv4) throw new ConfigError(`ports[${i}].ipv4`, 'a tun port needs the instance address');
    return port;
  });
  const off = c.offloads === undefined ? {} : obj(c.offloads, 'offloads');
  const onOff = (k: string, dflt = true): boolean => {
    if (off[k] !== undefined && typeof off[k] !== 'boolean') throw new ConfigError(`offloads.${k}`, `must be true or false, got ${showValue(off[k])}`);
    return off[k] === undefined ? dflt : off[k] === true;
  };
  for (const k of Object.keys(off)) {
    if (!['udpGso', 'udpGro', 'tapOffload', 'tapGro', 'tapGroUdp', 'uplinkOffload'].includes(k)) throw new ConfigError(`offloads.${k}`, 'unknown offload; known: udpGso, udpGro, tapOffload, tapGro, tapGroUdp, uplinkOffload');
  }
  const eng = c.engine === undefined ? {} : obj(c.engine, 'engine');
  for (const k of Object.keys(eng)) if (k !== 'threads' && k !== 'cpus') throw new ConfigError(`engine.${k}`, 'unknown engine setting; known: threads, cpus');
  const api = c.api === undefined ? {} : obj(c.api, 'api');
  const tokens = c.tokens === undefined ? {} : obj(c.tokens, 'tokens');
  for (const [tok, ns] of Object.entries(tokens)) {
    if (tok.length < 16) throw new ConfigError('tokens', 'every token must be at least 16 characters');
    str(ns, `tokens[${JSON.stringify(tok.slice(0, 4))}…]`);
  }
  return {
    store: c.store === undefined ? undefined : str(c.store, 'store'),
    ...(c.etcd === undefined ? {} : { etcd: parseEtcd(c.etcd) }),
    api: {
      address: api.address === undefined ? '127.0.0.1' : str(api.address, 'api.address', IPV4, 'an IPv4 address'),
      port: api.port === undefined ? 7878 : int(api.port, 'api.port', 1, 65535),
      ...(api.advertise === undefined ? {} : { advertise: str(api.advertise, 'api.advertise', IPV4, 'an IPv4 address') }),
      ...(api.tls === undefined ? {} : { tls: apiTlsFiles(api.tls) }),
      ...(api.local === undefined ? {} : { local: bool(api.local, 'api.local') }),
    },
    events: parseEvents(c.events),
    compaction: parseCompaction(c.compaction),
    connections: parseConnections(c.connections),
    stateDir: c.stateDir === undefined ? '/var/lib/appnet' : str(c.stateDir, 'stateDir', /^\//, 'an absolute path'),
    floatingPool: c.floatingPool === undefined ? '198.19.0.0/24' : str(c.floatingPool, 'floatingPool'),
    linkPool: c.linkPool === undefined ? DEFAULT_LINK_POOL : linkPool(c.linkPool),
    tokens: tokens as Record<string, string>,
    tokenFile: c.tokenFile === undefined ? '/run/appnet/token' : str(c.tokenFile, 'tokenFile'),
    ...(c.metricsToken === undefined ? {} : { metricsToken: str(c.metricsToken, 'metricsToken', /^\S{16,}$/, 'a token of at least 16 characters without spaces') }),
    ...(c.auth === undefined ? {} : { auth: parseAuth(c.auth) }),
    offloads: { udpGso: onOff('udpGso'), udpGro: onOff('udpGro'), tapOffload: onOff('tapOffload'), tapGro: onOff('tapGro'), tapGroUdp: onOff('tapGroUdp', false), uplinkOffload: onOff('uplinkOffload') },
    engine: {
      threads: eng.threads === undefined ? defaultEngineThreads() : int(eng.threads, 'engine.threads', 1, 16),
      ...(eng.cpus === undefined ? {} : { cpus: cpuList(eng.cpus) }),
    },
    host: c.host === undefined ? 'localhost' : str(c.host, 'host'),
    underlay,
    adminSocket: c.adminSocket === undefined ? '/run/appnet/appnetd.sock' : str(c.adminSocket, 'adminSocket'),
    ageingSeconds: c.ageingSeconds === undefined ? 300 : int(c.ageingSeconds, 'ageingSeconds', 1, 86400),
    ...(c.fdbLimit === undefined ? {} : { fdbLimit: int(c.fdbLimit, 'fdbLimit', 1, 1_000_000) }),
    vnis,
    ports,
    link,
    dnsZone: c.dnsZone === undefined ? 'appnet.internal' : str(c.dnsZone, 'dnsZone', DNS_ZONE, 'a DNS name like appnet.internal'),
    ...(c.dnsUpstream === undefined ? {} : { dnsUpstream: upstream(c.dnsUpstream) }),
    ...(c.uplink === undefined ? {} : { uplink: parseUplink(c.uplink) }),
    ...(c.nat === undefined ? {} : { nat: { capacity: int(obj(c.nat, 'nat').capacity ?? 65536, 'nat.capacity', 1, 1 << 24) } }),
    usageIntervalSeconds: c.usageIntervalSeconds === undefined ? 60 : int(c.usageIntervalSeconds, 'usageIntervalSeconds', 0, 86400),
  };
}

function parseAuth(v: unknown): { tokenSeconds: number; rotateSeconds: number } {
  const a = obj(v, 'auth');
  for (const k of Object.keys(a)) if (k !== 'tokenSeconds' && k !== 'rotateSeconds') throw new ConfigError(`auth.${k}`, 'unknown field; known: tokenSeconds, rotateSeconds');
  return {
    tokenSeconds: a.tokenSeconds === undefined ? 900 : int(a.tokenSeconds, 'auth.tokenSeconds', 60, 86400),
    rotateSeconds: a.rotateSeconds === undefined ? 3600 : int(a.rotateSeconds, 'auth.rotateSeconds', 60, 30 * 86400),
  };
}

function apiTlsFiles(v: unknown): { cert: string; key: string } {
  const t = obj(v, 'api.tls');
  for (const k of Object.keys(t)) if (k !== 'cert' && k !== 'key') throw new ConfigError(`api.tls.${k}`, 'unknown field; known: cert, key');
  return { cert: str(t.cert, 'api.tls.cert', /^\//, 'an absolute path to a PEM certificate'), key: str(t.key, 'api.tls.key', /^\//, 'an absolute path to a PEM private key') };
}

function linkPool(v: unknown): string {
  try {
    return parseLinkPool(v, 'linkPool').text;
  } catch (e) {
    throw new ConfigError('linkPool', (e as Error).message);
  }
}

function parseUplink(v: unknown): { device: string; mtu?: number } {
  const u = obj(v, 'uplink');
  const device = str(u.device, 'uplink.device', /^[A-Za-z0-9_.-]{1,15}$/, '1-15 characters of [A-Za-z0-9_.-]');
  return u.mtu === undefined ? { device } : { device, mtu: int(u.mtu, 'uplink.mtu', 68, 9000) };
}

const DNS_ZONE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function upstream(v: unknown): string {
  const text = str(v, 'dnsUpstream', /^[0-9.]+(:\d{1,5})?$/, 'IPV4 or IPV4:PORT');
  const [address, port] = text.split(':');
  str(address, 'dnsUpstream', IPV4, 'IPV4 or IPV4:PORT');
  if (port !== undefined) int(Number(port), 'dnsUpstream port', 1, 65535);
  return text;
}

function parseFilter(v: unknown, path: string): PortFilter {
  const o = obj(v, path);
  for (const k of Object.keys(o)) {
    if (!['localAddress', 'peerAddress', 'protocol', 'port', 'side'].includes(k)) {
      throw new ConfigError(`${path}.${k}`, 'unknown field; known: localAddress, peerAddress, protocol, port, side');
    }
  }
  const f = o as unknown as PortFilter;
  try {
    compilePortFilter(f, path);
  } catch (e) {
    if (!(e instanceof PortFilterError)) throw e;
    throw new ConfigError(`${path}.${e.field}`, e.problem);
  }
  return { localAddress: f.localAddress, peerAddress: f.peerAddress, protocol: f.protocol, port: f.port, side: f.side };
}

function bool(v: unknown, path: string): boolean {
  if (typeof v !== 'boolean') throw new ConfigError(path, `must be true or false, got ${showValue(v)}`);
  return v;
}

function parseLink(raw: unknown, host: string): LinkConfig {
  const l = raw === undefined ? {} : obj(raw, 'link');
  for (const k of Object.keys(l)) {
    if (!['enabled', 'port', 'keyFile', 'peers', 'rekeyAfterSeconds', 'allowKeyExport'].includes(k)) {
      throw new ConfigError(`link.${k}`, 'unknown field; known: enabled, port, keyFile, peers, rekeyAfterSeconds, allowKeyExport');
    }
  }
  return {
    enabled: l.enabled === undefined ? true : bool(l.enabled, 'link.enabled'),
    port: l.port === undefined ? 51830 : int(l.port, 'link.port', 1, 65535),
    keyFile: l.keyFile === undefined ? `/var/lib/appnet/${host}.key` : str(l.keyFile, 'link.keyFile'),
    peers: arr(l.peers ?? [], 'link.peers').map((p, i) => {
      const o = obj(p, `link.peers[${i}]`);
      return {
        address: str(o.address, `link.peers[${i}].address`, IPV4, 'an IPv4 address'),
        publicKey: str(o.publicKey, `link.peers[${i}].publicKey`, /^[A-Za-z0-9+/]{43}=$/, 'a base64 X25519 public key (44 characters)'),
      };
    }),
    rekeyAfterSeconds: l.rekeyAfterSeconds === undefined ? 120 : int(l.rekeyAfterSeconds, 'link.rekeyAfterSeconds', 1, 120),
    allowKeyExport: l.allowKeyExport === undefined ? false : bool(l.allowKeyExport, 'link.allowKeyExport'),
  };
}

/** A locally administered, stable MAC for a port that did not name one. */
export function defaultMac(host: string, port: string): string {
  let h = 0x811c9dc5;
  for (const ch of `${host}/${port}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  const b = [0x02, 0x00, (h >>> 24) & 0xff, (h >>> 16) & 0xff, (h >>> 8) & 0xff, h & 0xff];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Defaults: a week of events, at most 1,000 per object, pruned every 5 minutes. */
export const DEFAULT_EVENTS = { maxAgeSeconds: 7 * 86400, maxPerObject: 1000, pruneIntervalSeconds: 300 };

function parseEvents(raw: unknown): NonNullable<DaemonConfig['events']> {
  if (raw === undefined) return { ...DEFAULT_EVENTS };
  const e = obj(raw, 'events');
  for (const k of Object.keys(e)) {
    if (!(k in DEFAULT_EVENTS)) throw new ConfigError(`events.${k}`, 'unknown field; known: maxAgeSeconds, maxPerObject, pruneIntervalSeconds');
  }
  return {
    maxAgeSeconds: e.maxAgeSeconds === undefined ? DEFAULT_EVENTS.maxAgeSeconds : int(e.maxAgeSeconds, 'events.maxAgeSeconds', 1, 10 * 365 * 86400),
    maxPerObject: e.maxPerObject === undefined ? DEFAULT_EVENTS.maxPerObject : int(e.maxPerObject, 'events.maxPerObject', 1, 1_000_000),
    pruneIntervalSeconds: e.pruneIntervalSeconds === undefined ? DEFAULT_EVENTS.pruneIntervalSeconds : int(e.pruneIntervalSeconds, 'events.pruneIntervalSeconds', 1, 86400),
  };
}

/** The API URL other hosts use for this host (its host record's `api`): https unless on loopback. */
export function advertisedApiUrl(cfg: Pick<DaemonConfig, 'api' | 'underlay'>): string {
  const host = cfg.api.advertise ?? (cfg.api.address === '0.0.0.0' ? cfg.underlay.address : cfg.api.address);
  return `${/^127\./.test(cfg.api.address) ? 'http' : 'https'}://${host}:${cfg.api.port}`;
}

const ETCD_FIELDS = ['ca', 'cert', 'key', 'username', 'password'] as const;

function parseEtcd(raw: unknown): NonNullable<DaemonConfig['etcd']> {
  const e = obj(raw, 'etcd');
  const out: NonNullable<DaemonConfig['etcd']> = {};
  for (const [k, v] of Object.entries(e)) {
    if (!(ETCD_FIELDS as readonly string[]).includes(k)) throw new ConfigError(`etcd.${k}`, `unknown field; known: ${ETCD_FIELDS.join(', ')}`);
    out[k as (typeof ETCD_FIELDS)[number]] = str(v, `etcd.${k}`, /./, 'a non-empty string');
  }
  if ((out.username === undefined) !== (out.password === undefined)) throw new ConfigError('etcd', 'username and password go together');
  return out;
}

export const DEFAULT_CONNECTION_LIMITS = { handshakeTimeoutSeconds: 120, placementTimeoutSeconds: 300 };

function parseConnections(raw: unknown): NonNullable<DaemonConfig['connections']> {
  if (raw === undefined) return { ...DEFAULT_CONNECTION_LIMITS };
  const c = obj(raw, 'connections');
  for (const k of Object.keys(c)) {
    if (!(k in DEFAULT_CONNECTION_LIMITS)) throw new ConfigError(`connections.${k}`, 'unknown field; known: handshakeTimeoutSeconds, placementTimeoutSeconds');
  }
  const field = (k: keyof typeof DEFAULT_CONNECTION_LIMITS) => (c[k] === undefined ? DEFAULT_CONNECTION_LIMITS[k] : int(c[k], `connections.${k}`, 0, 86400 * 7));
  return { handshakeTimeoutSeconds: field('handshakeTimeoutSeconds'), placementTimeoutSeconds: field('placementTimeoutSeconds') };
}

function parseCompaction(raw: unknown): CompactionSettings {
  if (raw === undefined) return { ...DEFAULT_COMPACTION };
  const c = obj(raw, 'compaction');
  for (const k of Object.keys(c)) {
    if (!(k in DEFAULT_COMPACTION)) throw new ConfigError(`compaction.${k}`, 'unknown field; known: intervalSeconds, retainRevisions, defragFreeBytes');
  }
  const field = (k: keyof CompactionSettings, min: number, max: number) => (c[k] === undefined ? DEFAULT_COMPACTION[k] : int(c[k], `compaction.${k}`, min, max));
  return {
    intervalSeconds: field('intervalSeconds', 1, 86400),
    retainRevisions: field('retainRevisions', 1, 100_000_000),
    defragFreeBytes: field('defragFreeBytes', 0, 2 ** 40),
  };
}

/** engine.cpus: distinct CPU numbers, at least one. */
function cpuList(v: unknown): number[] {
  if (!Array.isArray(v) || v.length === 0) throw new ConfigError('engine.cpus', `must be a non-empty list of CPU numbers, got ${showValue(v)}`);
  const cpus = v.map((c, i) => int(c, `engine.cpus[${i}]`, 0, 1023));
  if (new Set(cpus).size !== cpus.length) throw new ConfigError('engine.cpus', `lists a CPU twice: ${JSON.stringify(cpus)}`);
  return cpus;
}

/** Half the cores, at least one: what `engine.threads` is when the config does not say. */
export function defaultEngineThreads(): number {
  return Math.max(1, Math.floor(availableParallelism() / 2));
}
