// The I/O edge of the `appnet` CNI plugin: one command (ADD, DEL, CHECK, VERSION) against the REST API of
// this host's appnetd (netconf `api`). The pure parts are in netconf.ts.
//
// Contracts:
//   - ADD creates the container's instance (or adopts the one a repeated ADD made: same name, same netns),
//     waits until its interface is `created` (the daemon made the device in CNI_NETNS, with its address
//     and default route), and prints the result. If anything fails after the instance was created, the
//     instance is deleted before the error is printed: a failed ADD leaves no addresses behind. (If
//     appnetd itself dies meanwhile, the runtime's DEL, or a later ADD of the same name, removes it.)
//   - DEL is idempotent: no instance, no namespace or no appnetd at all is success.
//   - CHECK fails (code 100) when the instance, its interface or the address ADD returned is not there.
//   - STATUS (1.1.0) succeeds when appnetd answers and the netconf's network exists for the token: ADD
//     would work; else code 50 with the reason.
//   - GC (1.1.0) deletes the instances this plugin made on this host for this network configuration (their
//     interface metadata, CNI_METADATA) whose container the runtime no longer lists, as many as it can,
//     and reports the ones it could not (code 5).
import { existsSync, readFileSync } from 'node:fs';
import { ApiClient, ApiClientError } from '../cli/client.ts';
import {
  type AttachedInterface, type CniEnv, CniError, CNI_CODES, CNI_METADATA, type Netconf, PLUGIN_CODES,
  buildResult, checkAgainst, errorObject, instanceName, instanceRequest, parseEnv, parseNetconf, versionResult,
} from './netconf.ts';

/** How long ADD waits for the daemon to make the interface (the runtime's own timeout is usually longer). */
export const ADD_WAIT_MS = 30_000;
const POLL_MS = 100;

interface InstanceView {
  uuid: string;
  name: string;
  namespace: string;
  host: string;
  netns: string;
  interfaces: Array<{ uuid: string; network_uuid: string; macaddr: string; ipv4: string | null; state: string; device: string; metadata?: Record<string, string> }>;
}
interface NetworkView { uuid: string; netblock: string; provide_dns: boolean; namespace: string | null }
interface HostView { name: string; api?: string }

export interface CniOutcome {
  /** What goes to stdout (may be empty: DEL and CHECK print nothing on success). */
  stdout: string;
  exitCode: number;
}

function client(conf: Netconf): ApiClient {
  let token = conf.token;
  if (token === undefined) {
    try {
      token = readFileSync(conf.tokenFile, 'utf8').trim();
    } catch {
      // No file: the API answers 401, which names the problem.
    }
  }
  let ca: string | undefined;
  if (conf.ca !== undefined) {
    try {
      ca = readFileSync(conf.ca, 'utf8');
    } catch (e) {
      throw new CniError(CNI_CODES.invalidConfig, `netconf field ca: cannot read ${conf.ca}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  return new ApiClient(conf.api, token, ca);
}

/** ApiClientError -> CniError: unreachable is "try again later", a refusal names the API's reason. */
function fromApi(e: unknown, what: string): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof ApiClientError) {
    if (e.status === 0 || e.status === 503) return new CniError(CNI_CODES.tryAgain, `${what}: ${e.message}`);
    return new CniError(PLUGIN_CODES.apiRefused, `${what}: ${e.message}`, `HTTP ${e.status}`);
  }
  return new CniError(CNI_CODES.io, `${what}: ${(e as Error).message}`);
}

async function findInstance(api: ApiClient, name: string): Promise<InstanceView | null> {
  try {
    return await api.request<InstanceView>('GET', `/instances/${encodeURIComponent(name)}`);
  } catch (e) {
    if (e instanceof ApiClientError && e.status === 404) return null;
    throw e;
  }
}

/** This host's name: the netconf's `host`, else the live host whose registered API is the netconf's. */
async function thisHost(api: ApiClient, conf: Netconf): Promise<string> {
  if (conf.host) return conf.host;
  const hosts = await api.request<HostView[]>('GET', '/hosts');
  const mine = hosts.filter((h) => h.api?.replace(/\/$/, '') === conf.api);
  if (mine.length === 1) return mine[0]!.name;
  if (hosts.length === 1) return hosts[0]!.name;
  throw new CniError(CNI_CODES.invalidConfig, `cannot tell which of ${hosts.length} hosts is this one: set netconf field host`);
}

async function attached(api: ApiClient, inst: InstanceView): Promise<AttachedInterface> {
  const iface = inst.interfaces[0];
  if (!iface) throw new CniError(PLUGIN_CODES.notReady, `instance ${inst.name} has no interface`);
  const net = await api.request<NetworkView>('GET', `/networks/${iface.network_uuid}`);
  return {
    device: iface.device, macaddr: iface.macaddr, ipv4: iface.ipv4,
    netblock: net.netblock, provideDns: net.provide_dns, namespace: net.namespace, instanceNamespace: inst.namespace,
  };
}

async function waitCreated(api: ApiClient, uuid: string, deadline: number): Promise<InstanceView> {
  for (;;) {
    const inst = await api.request<InstanceView>('GET', `/instances/${uuid}`);
    const state = inst.interfaces[0]?.state;
    if (state === 'created') return inst;
    if (state === 'error') throw new CniError(PLUGIN_CODES.notReady, `appnetd could not make the interface of instance ${inst.name} (see its log)`);
    if (Date.now() > deadline) throw new CniError(CNI_CODES.tryAgain, `the interface of instance ${inst.name} was not made within ${ADD_WAIT_MS / 1000} s (state ${state})`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function add(conf: Netconf, env: CniEnv): Promise<string> {
  const api = client(conf);
  const name = instanceName(env);
  let inst: InstanceView | null;
  let created = false;
  try {
    inst = await findInstance(api, name);
    if (inst && inst.netns !== env.netns) {
      // Left by a container of the same name whose namespace is gone (a crash before DEL): replace it.
      if (existsSync(inst.netns)) throw new CniError(PLUGIN_CODES.apiRefused, `instance ${name} already exists for namespace ${inst.netns}`);
      await api.request('DELETE', `/instances/${inst.uuid}`, { query: { force: true } });
      inst = null;
    }
    if (!inst) {
      inst = await api.request<InstanceView>('POST', '/instances', { body: instanceRequest(conf, env, await thisHost(api, conf)) });
      created = true;
    }
  } catch (e) {
    throw fromApi(e, `instance ${name} not created`);
  }
  try {
    // Which container and network configuration the attachment is for: what GC goes by.
    const iface = inst.interfaces[0];
    if (iface) {
      for (const [key, value] of [[CNI_METADATA.containerId, env.containerId], [CNI_METADATA.network, conf.name]]) {
        if (iface.metadata?.[key] !== value) await api.request('POST', `/interfaces/${iface.uuid}/metadata`, { body: { key, value } });
      }
    }
    const ready = await waitCreated(api, inst.uuid, Date.now() + ADD_WAIT_MS);
    return JSON.stringify(buildResult(conf, env, await attached(api, ready)));
  } catch (e) {
    // Nothing half-done: the addresses and MAC go back to the pools.
    if (created) await api.request('DELETE', `/instances/${inst.uuid}`, { query: { force: true } }).catch(() => undefined);
    throw fromApi(e, `instance ${name} not attached`);
  }
}

async function del(conf: Netconf, env: CniEnv): Promise<void> {
  const api = client(conf);
  try {
    const inst = await findInstance(api, instanceName(env));
    // Another container's instance of the same name (both namespaces known and different): not ours.
    if (!inst || (env.netns !== '' && inst.netns !== env.netns && existsSync(inst.netns))) return;
    await api.request('DELETE', `/instances/${inst.uuid}`, { query: { force: true } });
  } catch (e) {
    if (e instanceof ApiClientError && (e.status === 0 || e.status === 404)) return; // appnetd or the instance already gone
    throw fromApi(e, 'instance not deleted');
  }
}

async function check(conf: Netconf, env: CniEnv): Promise<void> {
  const api = client(conf);
  const name = instanceName(env);
  let inst: InstanceView | null;
  try {
    inst = await findInstance(api, name);
    if (!inst || inst.netns !== env.netns) throw new CniError(CNI_CODES.unknownContainer, `no instance ${name} for namespace ${env.netns}`);
    if (inst.interfaces[0]?.state !== 'created') throw new CniError(PLUGIN_CODES.notReady, `the interface of instance ${name} is ${inst.interfaces[0]?.state ?? 'missing'}`);
    const why = checkAgainst(conf.prevResult!, await attached(api, inst));
    if (why) throw new CniError(PLUGIN_CODES.notReady, `instance ${name}: ${why}`);
  } catch (e) {
    throw fromApi(e, 'check failed');
  }
}

async function status(conf: Netconf): Promise<void> {
  const api = client(conf);
  try {
    await api.request('GET', `/networks/${encodeURIComponent(conf.network)}`);
  } catch (e) {
    const why = e instanceof ApiClientError && e.status === 0 ? `appnetd's API at ${conf.api} is not answering` : (e as Error).message;
    throw new CniError(CNI_CODES.notAvailable, `cannot attach containers to network ${conf.network}: ${why}`);
  }
}

async function gc(conf: Netconf): Promise<void> {
  const api = client(conf);
  const valid = new Set((conf.validAttachments ?? []).map((a) => a.containerID));
  let stale: InstanceView[];
  try {
    const host = await thisHost(api, conf);
    const all = await api.request<InstanceView[]>('GET', '/instances');
    stale = all.filter((inst) => {
      const md = inst.interfaces[0]?.metadata ?? {};
      return inst.host === host && md[CNI_METADATA.network] === conf.name && md[CNI_METADATA.containerId] !== undefined &&
        !valid.has(md[CNI_METADATA.containerId]!);
    });
  } catch (e) {
    throw fromApi(e, 'garbage collection not started');
  }
  const failed: string[] = [];
  for (const inst of stale) {
    try {
      await api.request('DELETE', `/instances/${inst.uuid}`, { query: { force: true } });
    } catch (e) {
      if (!(e instanceof ApiClientError && e.status === 404)) failed.push(`${inst.name}: ${(e as Error).message}`);
    }
  }
  if (failed.length > 0) throw new CniError(CNI_CODES.io, `${failed.length} of ${stale.length} stale attachments not removed`, failed.join('; '));
}

/** One plugin run: environment and stdin in, stdout and exit status out. Never throws. */
export async function runCni(envVars: Record<string, string | undefined>, stdin: string): Promise<CniOutcome> {
  let version = '1.0.0';
  try {
    const env = parseEnv(envVars);
    const conf = parseNetconf(stdin, env.command);
    version = conf.cniVersion;
    switch (env.command) {
      case 'VERSION':
        return { stdout: JSON.stringify(versionResult(conf.cniVersion)), exitCode: 0 };
      case 'ADD':
        return { stdout: await add(conf, env), exitCode: 0 };
      case 'DEL':
        await del(conf, env);
        return { stdout: '', exitCode: 0 };
      case 'CHECK':
        await check(conf, env);
        return { stdout: '', exitCode: 0 };
      case 'STATUS':
        await status(conf);
        return { stdout: '', exitCode: 0 };
      case 'GC':
        await gc(conf);
        return { stdout: '', exitCode: 0 };
    }
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(CNI_CODES.io, (e as Error).message);
    return { stdout: JSON.stringify(errorObject(version, err)), exitCode: 1 };
  }
}
