// Store mode of appnetd: join the store, register this host under a lease, and serve the REST API.
// The reconciler converges the engine; after each of its passes the connection endpoint reports and
// the instances' hosts files follow (reconcile/connection-reports.ts, reconcile/netns-hosts.ts).
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApi } from '../api/app.ts';
import { registerHostRoutes } from '../api/hosts-route.ts';
import { registerCaptureRoutes } from '../api/captures-route.ts';
import { registerDnsRoutes } from '../api/dns-route.ts';
import { registerServicesRoutes } from '../api/services-routes.ts';
import { UsageReporter } from '../services/usage.ts';
import { EventPruner } from '../repo/event-pruner.ts';
import { Compactor, DEFAULT_COMPACTION } from '../store/compactor.ts';
import { NetworkServices } from '../services/network-services.ts';
import { NatService } from '../services/nat-service.ts';
import { registerNatRoutes } from '../api/nat-routes.ts';
import { HostRegistry } from '../repo/hosts.ts';
import { getConnection } from '../repo/connections.ts';
import { NetworkRepository } from '../repo/networks.ts';
import { StateView } from '../repo/state-view.ts';
import { Reconciler } from '../reconcile/reconciler.ts';
import { ConnectionReports } from '../reconcile/connection-reports.ts';
import { NetnsHosts, desiredHostsFiles, localNetns } from '../reconcile/netns-hosts.ts';
import { ConnectionRepository } from '../repo/connections.ts';
import { InstanceRepository } from '../repo/instances.ts';
import { DEFAULT_LINK_POOL } from '../connections/link-pool.ts';
import type { Engine, PuntedFrame } from '../../dataplane/engine.ts';
import { openStore } from '../store/index.ts';
import type { Store } from '../store/store.ts';
import type { DaemonMetrics } from '../metrics/daemon-metrics.ts';
import { timedStore } from '../metrics/timed-store.ts';
import { DEFAULT_CONNECTION_LIMITS, DEFAULT_EVENTS, advertisedApiUrl, type DaemonConfig } from './config.ts';
import { apiTls } from './api-tls.ts';
import type { LinkManager } from '../../dataplane/link/link-manager.ts';
import { HOST_EVENTS_PREFIX } from '../repo/keys.ts';

export interface ControlPlane {
  store: Store;
  hosts: HostRegistry;
  api: FastifyInstance;
  reconciler: Reconciler;
  connectionReports: ConnectionReports;
  services: NetworkServices;
  nat: NatService;
  close(): Promise<void>;
}

/**
 * The API's tokens: the configured ones, or else one system token shared by every appnetd on this
 * machine through `tokenFile` (created 0600 by whichever daemon starts first).
 */
export function loadTokens(cfg: DaemonConfig): Map<string, string> {
  if (Object.keys(cfg.tokens).length > 0) return new Map(Object.entries(cfg.tokens));
  mkdirSync(dirname(cfg.tokenFile), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(cfg.tokenFile, randomBytes(24).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const token = readFileSync(cfg.tokenFile, 'utf8').trim();
  if (token.length < 16) throw new Error(`token file ${cfg.tokenFile} holds no usable token (want >= 16 characters)`);
  return new Map([[token, 'system']]);
}

/**
 * The host's own CLI on plain HTTP at 127.0.0.1:port while the API serves TLS on the host's address: the same
 * app (fastify.routing runs a request's whole lifecycle), a second listening socket. Loopback never leaves
 * the machine, which is why it alone may be plain (api-tls.ts).
 */
async function listenLocal(api: FastifyInstance, port: number): Promise<Server> {
  const server = createServer((req, res) => api.routing(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}

export interface LinkContext {
  links?: LinkManager;
  publicKey?: Uint8Array;
  /** The daemon's punt consumers: the network services add theirs before any rule exists. */
  puntConsumers?: Array<(frames: PuntedFrame[]) => void>;
  /** The daemon's metrics: the control plane times its store, API and passes into them and serves GET /metrics. */
  metrics?: DaemonMetrics;
}

export async function startControlPlane(cfg: DaemonConfig, engine: Engine, log: Logger, link: LinkContext = {}): Promise<ControlPlane> {
  const opened = await openStore(cfg.store!, { etcd: cfg.etcd });
  const metrics = link.metrics;
  const store = metrics ? timedStore(opened, metrics.storeOps) : opened;
  const hosts = new HostRegistry(store);
  const view = new StateView(store);
  try {
    // TLS on any non-loopback address (api-tls.ts); peers pin the certificate the record publishes.
    const tls = await apiTls({ address: cfg.api.address, host: cfg.host, tls: cfg.api.tls, stateDir: cfg.stateDir ?? '/var/lib/appnet' });
    const apiUrl = advertisedApiUrl(cfg);
    await hosts.register({
      ...(tls ? { certificate: tls.chain } : {}),
      name: cfg.host,
      underlay_address: cfg.underlay.address,
      ...(link.publicKey ? { public_key: Buffer.from(link.publicKey).toString('base64') } : {}),
      api: apiUrl,
      ...(cfg.uplink ? { nat_uplink: true } : {}),
    });
    // One copy of the records in memory, for the reconciler's plans and the API's lists.
    await view.start();
    const linkPool = cfg.linkPool ?? DEFAULT_LINK_POOL;
    const api = buildApi({
      store, tokens: loadTokens(cfg), floatingPool: cfg.floatingPool, linkPool, view, ...cfg.auth, ...(tls ? { https: { cert: tls.cert, key: tls.key } } : {}),
      ...(metrics ? { metrics: { text: () => metrics.text(), requests: metrics.apiRequests, token: cfg.metricsToken } } : {}),
    });
    registerHostRoutes(api, hosts, store);
    const networks = new NetworkRepository({ store, floatingPool: cfg.floatingPool, fqdn: cfg.host, view });
    const connections = new ConnectionRepository({ store, instances: new InstanceRepository({ store, networks, view }), linkPool });
    await connections.init(); // refuses a pool other than the one the store's connections were made from
    let reconcilerRef: Reconciler | undefined;
    registerCaptureRoutes(api, {
      engine,
      host: cfg.host,
      networkVni: async (ref, namespace) => (await networks.resolve(ref, namespace)).vxid,
      connectionVni: async (id, namespace) => {
        const c = await getConnection(store, id, namespace);
        return { vni: c.vni, status: c.status, reason: c.reason };
      },
      port: (ref) => reconcilerRef?.port(ref),
      allowKeyExport: cfg.link.allowKeyExport,
      metrics,
      event: async (message, extra) => {
        log.warn({ ...extra }, message);
        await store.put(`${HOST_EVENTS_PREFIX}${cfg.host}/${Date.now().toString().padStart(15, '0')}`,
          JSON.stringify({ timestamp: new Date().toISOString(), host: cfg.host, message, ...extra }));
      },
    });
    registerDnsRoutes(api, { store, networks });
    const nat = new NatService({
      engine, view, store, networks, host: cfg.host, log, floatingPool: cfg.floatingPool, uplink: cfg.uplink, capacity: cfg.nat?.capacity,
      underlayMtu: cfg.underlay.mtu,
    });
    registerNatRoutes(api, { store, networks, natStats: () => nat.stats() });
    // Routes register before listen (fastify refuses them after); services exists by the first request.
    const services = new NetworkServices({ engine, store, view, host: cfg.host, log, dnsZone: cfg.dnsZone, dnsUpstream: cfg.dnsUpstream });
    registerServicesRoutes(api, { networks, view, services, host: cfg.host, ...(tls ? { identity: { cert: tls.cert, key: tls.key } } : {}) });
    await api.listen({ host: cfg.api.address, port: cfg.api.port });
    const local = tls && cfg.api.address !== '0.0.0.0' && cfg.api.local !== false ? await listenLocal(api, cfg.api.port) : undefined;
    await services.start();
    link.puntConsumers?.push((frames) => services.onPunts(frames));
    await nat.start();
    const links = link.links;
    const connectionReports = new ConnectionReports({
      store, host: cfg.host, log,
      state: () => view.state(),
      lease: () => hosts.lease,
      hasPort: (iface) => reconcilerRef?.hasPort(iface) ?? false,
      sessions: () => new Set((links?.peers() ?? []).filter((p) => p.current !== null).map((p) => p.vtep)),
      hooks: connections,
      portError: (iface) => reconcilerRef?.portError(iface),
      handshakeTimeoutMs: (cfg.connections ?? DEFAULT_CONNECTION_LIMITS).handshakeTimeoutSeconds * 1000,
      placementTimeoutMs: (cfg.connections ?? DEFAULT_CONNECTION_LIMITS).placementTimeoutSeconds * 1000,
    });
    const netnsHosts = new NetnsHosts({ host: cfg.host, log });
    const reconciler = new Reconciler({
      store, engine: nat.shareVnis(engine), networks, view, host: cfg.host, underlayMtu: cfg.underlay.mtu, log,
      // Only hosts registered in the store are authorised link peers.
      onLinkPeers: links
        ? (peers) => links.setPeers(peers.map((p) => ({
          vtep: p.vtep,
          publicKey: new Uint8Array(Buffer.from(p.publicKey, 'base64')),
          active: p.active,
        })))
        : undefined,
      onApplied: (plan, ports) => { services.apply(plan, ports); nat.apply(plan); },
      onPassTimed: metrics ? (seconds) => metrics.reconcilePasses.observe(seconds) : undefined,
      afterPass: async () => {
        const state = view.state();
        await netnsHosts.apply(desiredHostsFiles(cfg.host, state), localNetns(cfg.host, state));
        await connectionReports.update();
      },
    });
    reconcilerRef = reconciler;
    metrics?.attach({ engine, links, services, nat, view, pendingPorts: () => reconciler.pendingPorts });
    await reconciler.start();
    connectionReports.start();
    const usage = new UsageReporter({ store, engine, localPorts: () => services.localPorts(), host: cfg.host, intervalSeconds: cfg.usageIntervalSeconds ?? 60, log });
    usage.start();
    const events = cfg.events ?? DEFAULT_EVENTS;
    const pruner = new EventPruner({
      store, log, limits: events, intervalSeconds: events.pruneIntervalSeconds,
      isPruner: () => [...view.hosts.keys()].sort()[0] === cfg.host,
    });
    pruner.start();
    const compactor = new Compactor({ store, log, settings: cfg.compaction ?? DEFAULT_COMPACTION, isCompactor: () => [...view.hosts.keys()].sort()[0] === cfg.host });
    compactor.start();
    log.info({ store: cfg.store, api: apiUrl, tls: tls?.source, tokenFile: Object.keys(cfg.tokens).length ? undefined : cfg.tokenFile }, 'control plane ready');
    return {
      store, hosts, api, reconciler, services, nat, connectionReports,
      async close() {
        await api.close().catch(() => undefined);
        await new Promise((resolve) => (local ? local.close(resolve) : resolve(undefined)));
        await usage.close();
        await pruner.close();
        await compactor.close();
        await connectionReports.close();
        await reconciler.close();
        await netnsHosts.close();
        await nat.close();
        await services.close();
        await view.stop();
        await hosts.close();
        await store.close();
      },
    };
  } catch (e) {
    await view.stop().catch(() => undefined);
    await hosts.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw e;
  }
}
