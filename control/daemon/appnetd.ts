// appnetd: the per-host daemon. In this stage it takes its ports, VNIs and VTEPs from a config
// file (flags override), runs the packet engine, and serves the admin API on a unix socket.
import { readFileSync, unlinkSync } from 'node:fs';
import { Command } from 'commander';
import pino from 'pino';
import { Engine } from '../../dataplane/engine.ts';
import { startAdminApi } from './admin-api.ts';
import { ConfigError, defaultMac, parseDaemonConfig, type DaemonConfig } from './config.ts';
import { startControlPlane, type ControlPlane } from './control-plane.ts';

const log = pino({ name: 'appnetd' });

function loadConfig(argv: string[]): DaemonConfig {
  const cmd = new Command('appnetd')
    .option('-c, --config <file>', 'JSON config file (optional with --store)')
    .option('--store <url>', 'control-plane mode: store URL, e.g. sqlite:/var/lib/appnet/appnet.db')
    .option('--api <address:port>', 'REST API listen address (store mode)', )
    .option('--floating-pool <cidr>', 'floating pool netblock (store mode)')
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
  const engine = new Engine({
    underlayAddress: cfg.underlay.address,
    underlayPort: cfg.underlay.port,
    ageingSeconds: cfg.ageingSeconds,
    offloads: cfg.offloads,
  });
  const ports = new Map<string, number>();
  try {
    for (const v of cfg.vnis) {
      engine.addVni(v.vni, v.mtu!);
      engine.setFlood(v.vni, v.flood ?? []);
    }
    for (const p of cfg.ports) {
      const id = engine.addPort({
        name: p.name, kind: p.kind, vni: p.vni, mtu: p.mtu!, ipv4: p.ipv4, netns: p.netns,
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
  if (cfg.store) {
    try {
      control = await startControlPlane(cfg, engine, log);
    } catch (e) {
      engine.stop();
      process.stderr.write(`appnetd: ${(e as Error).message}\n`);
      process.exit(1);
    }
  }
  const api = await startAdminApi(cfg.adminSocket, { engine, host: cfg.host, ports });
  log.info({ host: cfg.host, underlay: cfg.underlay, vnis: cfg.vnis.length, ports: [...ports.keys()], admin: cfg.adminSocket }, 'appnetd ready');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'appnetd stopping');
    await api.close().catch(() => undefined);
    await control?.close().catch((e) => log.error({ err: e }, 'control plane did not close cleanly'));
    engine.stop();
    try { unlinkSync(cfg.adminSocket); } catch { /* gone */ }
    log.info('appnetd stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

await main();
