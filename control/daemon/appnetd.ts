// appnetd: the per-host daemon. Static mode takes its ports, VNIs, VTEPs and link peers from a
// config file (flags override); store mode (--store) reconciles them from the store. Either way it
// runs the packet engine, the link handshakes, and the admin API on a unix socket.
import { readFileSync, unlinkSync } from 'node:fs';
import { Command } from 'commander';
import pino from 'pino';
import { Engine, type PuntedFrame } from '../../dataplane/engine.ts';
import { LinkManager } from '../../dataplane/link/link-manager.ts';
import { loadOrCreateKeyPair } from '../../dataplane/link/keys.ts';
import type { KeyPair } from '../../dataplane/link/noise-ik.ts';
import { startAdminApi } from './admin-api.ts';
import { ConfigError, defaultMac, parseDaemonConfig, type DaemonConfig } from './config.ts';
import { startControlPlane, type ControlPlane } from './control-plane.ts';
import { DaemonMetrics } from '../metrics/daemon-metrics.ts';

// While the store is away every periodic job fails the same way each tick: one line each, not a stack.
const log = pino({
  name: 'appnetd',
  serializers: {
    err: (err: unknown) => ((err as { code?: string } | null)?.code === 'EUNAVAILABLE'
      ? { code: 'EUNAVAILABLE', message: (err as Error).message.split('; tried')[0] }
      : pino.stdSerializers.err(err as Error)),
  },
});

function loadConfig(argv: string[]): DaemonConfig {
  const cmd = new Command('appnetd')
    .option('-c, --config <file>', 'JSON config file (optional with --store)')
    .option('--store <url>', 'control-plane mode: store URL, e.g. sqlite:/var/lib/appnet/appnet.db')
    .option('--api <address:port>', 'REST API listen address (store mode)', )
    .option('--floating-pool <cidr>', 'floating pool netblock (store mode)')
    .option('--link-pool <cidr>', 'link addresses of application connections, one /31 each (store mode; default 198.19.128.0/17)')
    .option('--token-file <path>', 'file holding the system API token (store mode)')
    .option('--host <name>', 'host name')
    .option('--underlay-address <ipv4>', 'underlay address to bind')
    .option('--underlay-port <port>', 'VXLAN UDP port', (v) => Number(v))
    .option('--admin-socket <path>', 'unix socket of the admin API')
    .exitOverride()
    .parse(argv);
  const o = cmd.opts();
  let raw: Record<string, any> = {};
  if (o.config) {
    try {
      raw = JSON.parse(readFileSync(o.config, 'utf8'));
    } catch (e) {
      throw new ConfigError(o.config, `cannot read JSON: ${(e as Error).message}`);
    }
  } else if (!o.store) {
    throw new ConfigError('(flags)', 'give --config FILE, or --store URL with --host and --underlay-address');
  }
  if (o.store) raw.store = o.store;
  if (o.floatingPool) raw.floatingPool = o.floatingPool;
  if (o.linkPool) raw.linkPool = o.linkPool;
  if (o.tokenFile) raw.tokenFile = o.tokenFile;
  if (o.api) {
    const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(o.api);
    if (!m) throw new ConfigError('--api', `must be IPV4:PORT, got ${JSON.stringify(o.api)}`);
    raw.api = { address: m[1], port: Number(m[2]) };
  }
  if (o.host) raw.host = o.host;
  if (o.adminSocket) raw.adminSocket = o.adminSocket;
  if (o.underlayAddress || o.underlayPort) {
    raw.underlay = { ...(raw.underlay ?? {}) };
    if (o.underlayAddress) raw.underlay.address = o.underlayAddress;
    if (o.underlayPort) raw.underlay.port = o.underlayPort;
  }
  return parseDaemonConfig(raw);
}

async function main(): Promise<void> {
  let cfg: DaemonConfig;
  try {
    cfg = loadConfig(process.argv);
  } catch (e) {
    process.stderr.write(`appnetd: ${(e as Error).message}\n`);
    process.exit(2);
  }
  let staticKey: KeyPair | undefined;
  if (cfg.link.enabled) {
    try {
      staticKey = loadOrCreateKeyPair(cfg.link.keyFile);
    } catch (e) {
      process.stderr.write(`appnetd: ${(e as Error).message}\n`);
      process.exit(1);
    }
  }
  // Punted frames go to whoever consumes them: the link handshake and the network services.
  const puntConsumers: Array<(frames: PuntedFrame[]) => void> = [];
  const engine = new Engine({
    underlayAddress: cfg.underlay.address,
    underlayPort: cfg.underlay.port,
    ageingSeconds: cfg.ageingSeconds,
    ...(cfg.fdbLimit !== undefined ? { fdbLimit: cfg.fdbLimit } : {}),
    offloads: cfg.offloads,
    threads: cfg.engine.threads,
    ...(cfg.engine.cpus ? { cpus: cfg.engine.cpus } : {}),
    linkPort: cfg.link.enabled ? cfg.link.port : 0,
    onPunt: (frames) => { for (const c of puntConsumers) c(frames); },
  });
  let links: LinkManager | undefined;
  if (staticKey) {
    links = await LinkManager.create({
      engine,
      staticKey,
      port: cfg.link.port,
      timers: { rekeyAfterTime: cfg.link.rekeyAfterSeconds * 1000 },
      // Look often enough that a short forced rekey interval is kept to, not rounded up a tick.
      tickMs: Math.min(1000, (cfg.link.rekeyAfterSeconds * 1000) / 4),
      log,
    });
    const lm = links;
    puntConsumers.push((frames) => lm.onPunts(frames));
  }
  const ports = new Map<string, number>();
  try {
    for (const v of cfg.vnis) {
      engine.addVni(v.vni, v.mtu!, { encrypted: v.encrypted });
      engine.setFlood(v.vni, v.flood ?? []);
    }
    // Static mode: clear VXLAN only from the configured VTEPs, when there are any (docs/security.md).
    const staticVteps = [...cfg.vnis.flatMap((v) => v.flood ?? []), ...cfg.link.peers.map((p) => p.address)];
    if (!cfg.store && staticVteps.length > 0) engine.setKnownVteps(staticVteps);
    if (links && cfg.link.peers.length > 0) {
      links.setPeers(cfg.link.peers.map((p) => ({
        vtep: p.address,
        publicKey: new Uint8Array(Buffer.from(p.publicKey, 'base64')),
        active: true,
      })));
    }
    for (const p of cfg.ports) {
      const id = engine.addPort({
        name: p.name, kind: p.kind, vni: p.vni, mtu: p.mtu!, ipv4: p.ipv4, netns: p.netns, filter: p.filter,
        mac: p.mac ?? defaultMac(cfg.host, p.name),
      });
      ports.set(p.name, id);
    }
    engine.start();
  } catch (e) {
    engine.stop();
    process.stderr.write(`appnetd: ${(e as Error).message}\n`);
    process.exit(1);
  }
  let control: ControlPlane | undefined;
  // Static mode has the engine's and links' families; store mode adds the control plane's (it attaches them).
  const metrics = new DaemonMetrics();
  metrics.attach({ engine, links });
  if (cfg.store) {
    try {
      control = await startControlPlane(cfg, engine, log, { links, publicKey: staticKey?.publicKey, puntConsumers, metrics });
    } catch (e) {
      engine.stop();
      process.stderr.write(`appnetd: ${(e as Error).message}\n`);
      process.exit(1);
    }
  }
  const api = await startAdminApi(cfg.adminSocket, { engine, host: cfg.host, ports, links, publicKey: staticKey?.publicKey, services: control?.services, metrics });
  log.info({ host: cfg.host, underlay: cfg.underlay, vnis: cfg.vnis.length, ports: [...ports.keys()], admin: cfg.adminSocket }, 'appnetd ready');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'appnetd stopping');
    await api.close().catch(() => undefined);
    await control?.close().catch((e) => log.error({ err: e }, 'control plane did not close cleanly'));
    links?.close();
    engine.stop();
    try { unlinkSync(cfg.adminSocket); } catch { /* gone */ }
    log.info('appnetd stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

await main();
