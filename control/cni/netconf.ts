// The pure core of the `appnet` CNI plugin (CNI spec 1.1.0): the runtime's environment and network
// configuration in, the instance request and the CNI result or error object out. No I/O here; the edge
// (control/cni/plugin.ts) talks to appnetd's REST API.
//
// Contracts:
//   - every failure is a CniError with a spec code: 1 incompatible version, 2 unsupported field,
//     3 container unknown, 4 invalid environment variables, 5 I/O failure, 6 undecodable content,
//     7 invalid network configuration, 11 try again later, 50 not available (STATUS); 100+ are ours
//     (PLUGIN_CODES).
//   - the instance for a container is named after the pod (K8S_POD_NAME, which podman sets to the
//     container's name) when that is a valid instance name, else `cni-<first 12 of the container id>`;
//     the name and netns identify it, so ADD is repeatable (it adopts). Its interface's metadata records
//     the container id and the network configuration's name (CNI_METADATA), which is how GC (1.1.0)
//     finds the attachments this plugin made and the runtime no longer lists.
//   - STATUS and GC exist from 1.1.0 on and need only CNI_COMMAND (and the netconf).

export const SPEC_VERSION = '1.1.0';
/** Versions whose configuration and result formats we read and write (0.4.0 to 1.1.0 differ only in fields we do not use). */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
/** Interface metadata keys by which the plugin knows the attachments it made. */
export const CNI_METADATA = { containerId: 'cni.container_id', network: 'cni.network' } as const;
export const DEFAULT_API = 'http://127.0.0.1:7878';
export const DEFAULT_TOKEN_FILE = '/run/appnet/token';
export const DEFAULT_DNS_ZONE = 'appnet.internal';

export const CNI_CODES = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnv: 4,
  io: 5,
  decode: 6,
  invalidConfig: 7,
  tryAgain: 11,
  notAvailable: 50,
} as const;
/** Plugin-specific codes (the spec reserves 100 and up for plugins). */
export const PLUGIN_CODES = { apiRefused: 100, notReady: 101 } as const;

export class CniError extends Error {
  override name = 'CniError';
  constructor(
    readonly code: number,
    message: string,
    readonly details = '',
  ) {
    super(message);
  }
}

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';
const COMMANDS = new Set<string>(['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC']);
/** Commands about the network, not one container: CNI_COMMAND (and CNI_PATH) is all they get. */
const NETWORK_COMMANDS = new Set<string>(['VERSION', 'STATUS', 'GC']);

export interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  args: Map<string, string>;
}

/** CNI_* variables. VERSION needs only the command; DEL tolerates an empty CNI_NETNS (the namespace may be gone). */
export function parseEnv(env: Record<string, string | undefined>): CniEnv {
  const command = env.CNI_COMMAND ?? '';
  if (!COMMANDS.has(command)) throw new CniError(CNI_CODES.invalidEnv, `CNI_COMMAND ${JSON.stringify(command)} is not one of ${[...COMMANDS].join(', ')}`);
  const out: CniEnv = { command: command as CniCommand, containerId: env.CNI_CONTAINERID ?? '', netns: env.CNI_NETNS ?? '', ifname: env.CNI_IFNAME ?? '', args: new Map() };
  if (NETWORK_COMMANDS.has(command)) return out;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(out.containerId)) throw new CniError(CNI_CODES.invalidEnv, 'CNI_CONTAINERID is missing or not alphanumeric with _ . -');
  if (out.ifname === '') throw new CniError(CNI_CODES.invalidEnv, 'CNI_IFNAME is missing');
  if (command !== 'DEL' && !out.netns.startsWith('/')) throw new CniError(CNI_CODES.invalidEnv, 'CNI_NETNS must be an absolute path');
  out.args = parseCniArgs(env.CNI_ARGS ?? '');
  return out;
}

/** `K=V;K=V`; an unknown key is refused unless IgnoreUnknown is true (1, true). */
export function parseCniArgs(text: string): Map<string, string> {
  const args = new Map<string, string>();
  for (const part of text.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CniError(CNI_CODES.invalidEnv, `CNI_ARGS entry ${JSON.stringify(part)} is not KEY=VALUE`);
    args.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const known = new Set(['IgnoreUnknown', 'K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID']);
  const ignore = /^(1|true)$/i.test(args.get('IgnoreUnknown') ?? '');
  const unknown = [...args.keys()].find((k) => !known.has(k));
  if (unknown !== undefined && !ignore) throw new CniError(CNI_CODES.invalidEnv, `CNI_ARGS key ${unknown} is not known (set IgnoreUnknown=1 to pass it)`);
  return args;
}

export interface Netconf {
  cniVersion: string;
  name: string;
  network: string;
  api: string;
  token?: string;
  tokenFile: string;
  /** A PEM file of the CA that signed the API's certificate (an https api): only it is trusted. */
  ca?: string;
  host?: string;
  dnsZone: string;
  inbounds?: unknown[];
  outbounds?: unknown[];
  /** runtimeConfig.mac: the interface's MAC, as the `mac` capability asks. */
  mac?: string;
  /** runtimeConfig.ips: the address to reserve (the first IPv4 one). */
  address?: string;
  prevResult?: CniResult;
  /** GC: the attachments the runtime still has (`cni.dev/valid-attachments`). */
  validAttachments?: Array<{ containerID: string; ifname: string }>;
}

const NETCONF_FIELDS = new Set([
  'cniVersion', 'name', 'type', 'network', 'api', 'token', 'tokenFile', 'ca', 'host', 'dnsZone', 'inbounds', 'outbounds',
  'args', 'runtimeConfig', 'capabilities', 'prevResult', 'dns', 'ipam', 'cniVersions', 'disableCheck', 'disableGC',
  'cni.dev/valid-attachments', 'cni.dev/attachments',
]);

function field<T>(o: Record<string, unknown>, key: string, type: string): T | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== type) throw new CniError(CNI_CODES.invalidConfig, `netconf field ${key} must be a ${type}`);
  return v as T;
}

/** The network configuration on stdin (for VERSION only cniVersion is read). */
export function parseNetconf(text: string, command: CniCommand): Netconf {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CniError(CNI_CODES.decode, 'the network configuration on stdin is not JSON', (e as Error).message);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new CniError(CNI_CODES.decode, 'the network configuration must be a JSON object');
  const o = raw as Record<string, unknown>;
  const cniVersion = field<string>(o, 'cniVersion', 'string') ?? '';
  if (!SUPPORTED_VERSIONS.includes(cniVersion)) {
    throw new CniError(CNI_CODES.incompatibleVersion, `cniVersion ${JSON.stringify(cniVersion)} is not supported; supported: ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  const stub: Netconf = { cniVersion, name: '', network: '', api: DEFAULT_API, tokenFile: DEFAULT_TOKEN_FILE, dnsZone: DEFAULT_DNS_ZONE };
  if (command === 'VERSION') return stub;
  const unknown = Object.keys(o).find((k) => !NETCONF_FIELDS.has(k));
  if (unknown !== undefined) throw new CniError(CNI_CODES.unsupportedField, `netconf field ${unknown} is not supported`);
  if (o.type !== 'appnet') throw new CniError(CNI_CODES.invalidConfig, 'netconf field type must be "appnet"');
  const name = field<string>(o, 'name', 'string');
  if (!name) throw new CniError(CNI_CODES.invalidConfig, 'netconf field name is required');
  const network = field<string>(o, 'network', 'string');
  if (!network) throw new CniError(CNI_CODES.invalidConfig, 'netconf field network is required (an appnet network name or uuid)');
  const api = field<string>(o, 'api', 'string') ?? DEFAULT_API;
  if (!/^https?:\/\/[^/]+\/?$/.test(api)) throw new CniError(CNI_CODES.invalidConfig, 'netconf field api must be http(s)://host:port');
  const conf: Netconf = { ...stub, name, network, api: api.replace(/\/$/, '') };
  const token = field<string>(o, 'token', 'string');
  if (token !== undefined) conf.token = token;
  conf.tokenFile = field<string>(o, 'tokenFile', 'string') ?? DEFAULT_TOKEN_FILE;
  const ca = field<string>(o, 'ca', 'string');
  if (ca !== undefined) {
    if (!api.startsWith('https:')) throw new CniError(CNI_CODES.invalidConfig, 'netconf field ca needs an https api');
    conf.ca = ca;
  }
  const host = field<string>(o, 'host', 'string');
  if (host !== undefined) conf.host = host;
  conf.dnsZone = field<string>(o, 'dnsZone', 'string') ?? DEFAULT_DNS_ZONE;
  for (const k of ['inbounds', 'outbounds'] as const) {
    if (o[k] === undefined) continue;
    if (!Array.isArray(o[k])) throw new CniError(CNI_CODES.invalidConfig, `netconf field ${k} must be an array`);
    conf[k] = o[k] as unknown[];
  }
  const rc = o.runtimeConfig;
  if (rc !== undefined) {
    if (rc === null || typeof rc !== 'object') throw new CniError(CNI_CODES.invalidConfig, 'netconf field runtimeConfig must be an object');
    const r = rc as Record<string, unknown>;
    if (typeof r.mac === 'string') conf.mac = r.mac;
    if (Array.isArray(r.ips)) {
      const v4 = r.ips.find((ip): ip is string => typeof ip === 'string' && /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(ip));
      if (v4 !== undefined) conf.address = v4.split('/')[0];
    }
  }
  if (o.prevResult !== undefined) conf.prevResult = o.prevResult as CniResult;
  if (command === 'CHECK' && conf.prevResult === undefined) throw new CniError(CNI_CODES.invalidConfig, 'CHECK needs prevResult');
  if ((command === 'STATUS' || command === 'GC') && SUPPORTED_VERSIONS.indexOf(cniVersion) < SUPPORTED_VERSIONS.indexOf('1.1.0')) {
    throw new CniError(CNI_CODES.incompatibleVersion, `${command} needs cniVersion 1.1.0 or later, got ${cniVersion}`);
  }
  if (command === 'GC') conf.validAttachments = parseAttachments(o['cni.dev/valid-attachments'] ?? o['cni.dev/attachments']);
  return conf;
}

/** The instance name for a container (see the contracts above). */
export function instanceName(env: CniEnv): string {
  const pod = env.args.get('K8S_POD_NAME');
  const ns = env.args.get('K8S_POD_NAMESPACE');
  const valid = (s: string) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(s) && !/^[0-9a-f]{8}-/.test(s);
  // Kubernetes pods: the namespace keeps two pods of one name apart; podman sets both to the container's name.
  const full = pod && ns && ns !== pod ? `${ns}.${pod}` : pod;
  if (full && valid(full)) return full;
  return `cni-${env.containerId.slice(0, 12)}`;
}

/** `cni.dev/valid-attachments`: [{containerID, ifname}]; absent is none (GC then removes every attachment of the network here). */
function parseAttachments(v: unknown): Array<{ containerID: string; ifname: string }> {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new CniError(CNI_CODES.invalidConfig, 'netconf field cni.dev/valid-attachments must be an array');
  return v.map((a, i) => {
    const o = (a ?? {}) as Record<string, unknown>;
    if (typeof o.containerID !== 'string' || o.containerID === '') {
      throw new CniError(CNI_CODES.invalidConfig, `netconf field cni.dev/valid-attachments.${i}.containerID must be a non-empty string`);
    }
    return { containerID: o.containerID, ifname: typeof o.ifname === 'string' ? o.ifname : '' };
  });
}

/** The POST /instances body for ADD. */
export function instanceRequest(conf: Netconf, env: CniEnv, host: string): Record<string, unknown> {
  // The device is named as the runtime asks (CNI_IFNAME, e.g. eth0), as the spec requires.
  const iface: Record<string, unknown> = { network: conf.network, device: env.ifname };
  if (conf.address) iface.address = conf.address;
  if (conf.mac) iface.macaddr = conf.mac;
  return {
    name: instanceName(env),
    host,
    netns: env.netns,
    interfaces: [iface],
    ...(conf.inbounds ? { inbounds: conf.inbounds } : {}),
    ...(conf.outbounds ? { outbounds: conf.outbounds } : {}),
  };
}

export interface CniResult {
  cniVersion: string;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: Array<{ address: string; gateway?: string; interface?: number; version?: string }>;
  routes?: Array<{ dst: string; gw?: string }>;
  dns?: { nameservers?: string[]; domain?: string; search?: string[] };
}

/** What the API tells of the instance's first interface and its network. */
export interface AttachedInterface {
  device: string;
  macaddr: string;
  ipv4: string | null;
  netblock: string;
  provideDns: boolean;
  namespace: string | null;
  instanceNamespace: string;
}

/** The gateway: index 1 of the netblock, as IPAM reserves it. */
export function gatewayOf(netblock: string): string {
  const [base] = netblock.split('/');
  const n = base!.split('.').map(Number);
  const v = ((n[0]! << 24) | (n[1]! << 16) | (n[2]! << 8) | n[3]!) + 1;
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

/** The CNI result of ADD, in the version the runtime asked for. */
export function buildResult(conf: Netconf, env: CniEnv, a: AttachedInterface): CniResult {
  const prefix = a.netblock.split('/')[1];
  const gateway = gatewayOf(a.netblock);
  const result: CniResult = {
    cniVersion: conf.cniVersion,
    interfaces: [{ name: a.device, mac: a.macaddr, sandbox: env.netns }],
    ips: a.ipv4 ? [{ address: `${a.ipv4}/${prefix}`, gateway, interface: 0 }] : [],
    routes: a.ipv4 ? [{ dst: '0.0.0.0/0', gw: gateway }] : [],
    dns: {},
  };
  // 0.3.x results name the IP version; 0.4.0 and 1.0.0 dropped the field.
  if (conf.cniVersion.startsWith('0.3.')) for (const ip of result.ips!) ip.version = '4';
  if (a.provideDns) {
    const domain = `${a.namespace ?? a.instanceNamespace}.${conf.dnsZone}`;
    result.dns = { nameservers: [gateway], domain, search: [domain] };
  }
  return result;
}

/** CHECK: what ADD returned must still hold (same address and MAC on the same interface). */
export function checkAgainst(prev: CniResult, a: AttachedInterface): string | null {
  const name = prev.interfaces?.[0]?.name;
  if (name !== undefined && name !== a.device) return `interface is ${a.device}, ADD gave ${name}`;
  const want = prev.ips?.[0]?.address?.split('/')[0] ?? null;
  if (want !== a.ipv4) return `address is ${a.ipv4 ?? 'none'}, ADD gave ${want ?? 'none'}`;
  const mac = prev.interfaces?.[0]?.mac;
  if (mac !== undefined && mac.toLowerCase() !== a.macaddr.toLowerCase()) return `MAC is ${a.macaddr}, ADD gave ${mac}`;
  return null;
}

/** The error object on stdout (and the exit status is non-zero). */
export function errorObject(cniVersion: string, e: CniError): { cniVersion: string; code: number; msg: string; details?: string } {
  return { cniVersion, code: e.code, msg: e.message, ...(e.details ? { details: e.details } : {}) };
}

export function versionResult(cniVersion: string): { cniVersion: string; supportedVersions: string[] } {
  return { cniVersion: SUPPORTED_VERSIONS.includes(cniVersion) ? cniVersion : SPEC_VERSION, supportedVersions: SUPPORTED_VERSIONS };
}
