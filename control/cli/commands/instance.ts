// `appnet instance …`: the /instances routes. Their shapes are not settled yet, so output tables pick
// whatever of the usual columns the API returns, and `--json` prints it verbatim.

import { Command, InvalidArgumentError, Option } from 'commander';
import { seg } from '../client.ts';
import { emit, globals, withJson } from '../context.ts';
import { type Column, formatLoose, formatRows } from '../table.ts';
import { INTERFACE_COLUMNS, type View, showObject } from './network.ts';

const INSTANCE_COLUMNS = ['uuid', 'name', 'namespace', 'host', 'netns', 'state'];

/**
 * One interface of `instance create`, as the in-progress /instances schema takes it:
 * `{network, address?, macaddr?}` (address "none" = no address).
 */
export interface InterfaceSpec {
  network: string;
  address?: string;
  macaddr?: string;
}

const SPEC_KEYS: Record<string, 'address' | 'macaddr'> = {
  address: 'address',
  ip: 'address',
  mac: 'macaddr',
  macaddr: 'macaddr',
  macaddress: 'macaddr',
};

/** `NETREF[,address=IP][,mac=MAC]` → interface spec. */
export function parseNetDesc(text: string): InterfaceSpec {
  const [ref, ...pairs] = text.split(',');
  if (ref === undefined || ref.trim() === '' || ref.includes('=')) {
    throw new InvalidArgumentError(`expected NETREF[,address=IP][,mac=MAC], got ${JSON.stringify(text)}`);
  }
  const spec: InterfaceSpec = { network: ref.trim() };
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair.trim() : pair.slice(0, eq).trim();
    const value = eq < 0 ? '' : pair.slice(eq + 1).trim();
    const field = SPEC_KEYS[key];
    if (field === undefined) throw new InvalidArgumentError(`unknown key ${JSON.stringify(key)} (accepted: address, mac)`);
    if (value === '') throw new InvalidArgumentError(`${key} needs a value`);
    spec[field] = value;
  }
  return spec;
}

function collect(text: string, previous: InterfaceSpec[] | undefined): InterfaceSpec[] {
  return [...(previous ?? []), parseNetDesc(text)];
}

/** `NAME:PORT[/tcp|udp]` → an inbound of POST /instances. */
export function parseInbound(text: string): { name: string; port: number; protocol?: string } {
  const m = /^([^:/]+):([0-9]+)(?:\/(tcp|udp))?$/.exec(text);
  if (m === null) throw new InvalidArgumentError(`expected NAME:PORT[/tcp|udp], got ${JSON.stringify(text)}`);
  return { name: m[1], port: Number(m[2]), ...(m[3] !== undefined ? { protocol: m[3] } : {}) };
}

/** `NAME[:required]` → an outbound of POST /instances. */
export function parseOutbound(text: string): { name: string; required: boolean } {
  const m = /^([^:]+)(?::(required|optional))?$/.exec(text);
  if (m === null) throw new InvalidArgumentError(`expected NAME[:required], got ${JSON.stringify(text)}`);
  return { name: m[1], required: m[2] === 'required' };
}

/** `OUTBOUND=TARGET:INBOUND` → a deploy-time connection of POST /instances. */
export function parseConnect(text: string): { outbound: string; target: string; inbound: string } {
  const m = /^([^=]+)=([^:]+):(.+)$/.exec(text);
  if (m === null) throw new InvalidArgumentError(`expected OUTBOUND=TARGET_INSTANCE:INBOUND, got ${JSON.stringify(text)}`);
  return { outbound: m[1], target: m[2], inbound: m[3] };
}

function collectWith<T>(parse: (text: string) => T) {
  return (text: string, previous: T[] | undefined): T[] => [...(previous ?? []), parse(text)];
}

/** FIELD/VALUE of the instance, then its interfaces as a table. */
export function showInstance(view: View | null | undefined): string {
  if (view === null || view === undefined) return '';
  const { interfaces, ...rest } = view;
  let text = showObject(rest, INSTANCE_COLUMNS);
  if (Array.isArray(interfaces)) {
    text += interfaces.length === 0 ? '\nno interfaces\n' : '\n' + formatLoose(interfaces as View[], INTERFACE_COLUMNS);
  }
  return text;
}

/** Nalej's connections block of `app inst get`: the instance's connections, either side. */
const CONNECTION_BLOCK: Column<View>[] = [
  { header: 'source', get: (c) => c.source_instance_name },
  { header: 'outbound', get: (c) => c.outbound_name },
  { header: 'target', get: (c) => c.target_instance_name },
  { header: 'inbound', get: (c) => c.inbound_name },
  { header: 'required', get: (c) => (c.outbound_required === true ? 'TRUE' : 'FALSE') },
  { header: 'status', get: (c) => c.status },
];

/** `instance show`: the instance and, under it, its connections (none: no block). */
export function showInstanceWithConnections({ instance, connections }: { instance: View; connections: View[] }): string {
  const mine = connections.filter((c) => c.source_instance_id === instance.uuid || c.target_instance_id === instance.uuid);
  return showInstance(instance) + (mine.length === 0 ? '' : '\n' + formatRows(CONNECTION_BLOCK, mine));
}

export function instanceCommand(): Command {
  const instance = new Command('instance').description('instances (network endpoints on a host)');

  withJson(instance.command('create'))
    .description('create an instance')
    .argument('<name>')
    .requiredOption('--host <host>', 'host to place it on')
    .option('--netns <ns>', 'network namespace of the instance on the host')
    .option('--namespace <ns>', 'namespace to create it in (system only for others)')
    .option('--network <netdesc>', 'NETREF[,address=IP][,mac=MAC]; repeat for more interfaces', collect)
    .option('--inbound <NAME:PORT[/PROTO]>', 'an inbound other instances may connect to; repeatable', collectWith(parseInbound))
    .option('--outbound <NAME[:required]>', 'an outbound this instance dials; repeatable', collectWith(parseOutbound))
    .option('--connect <OUTBOUND=TARGET:INBOUND>', 'connect an outbound at deploy time; repeatable (required outbounds must be)', collectWith(parseConnect))
    .action(async (name: string, opts: { host: string; netns?: string; namespace?: string; network?: InterfaceSpec[]; inbound?: unknown[]; outbound?: unknown[]; connect?: unknown[] }, cmd: Command) =>
      emit(
        cmd,
        (c) =>
          c.post<View>('/instances', {
            name,
            host: opts.host,
            ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
            ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
            interfaces: opts.network ?? [],
            ...(opts.inbound !== undefined ? { inbounds: opts.inbound } : {}),
            ...(opts.outbound !== undefined ? { outbounds: opts.outbound } : {}),
            ...(opts.connect !== undefined ? { connect: opts.connect } : {}),
          }),
        showInstance,
      ),
    );

  withJson(instance.command('list'))
    .description('list instances')
    .action(async (_opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.get<View[]>('/instances'), (rows) => formatLoose(rows, INSTANCE_COLUMNS)),
    );

  withJson(instance.command('show'))
    .description('show one instance')
    .argument('<ref>', 'instance UUID or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      if (globals(cmd).json) return emit(cmd, (c) => c.get<View>(`/instances/${seg(ref)}`), showInstance);
      return emit(cmd, async (c) => ({ instance: await c.get<View>(`/instances/${seg(ref)}`), connections: await c.get<View[]>('/connections') }), showInstanceWithConnections);
    });

  withJson(instance.command('delete'))
    .description('delete an instance (its connections are terminated)')
    .argument('<ref>', 'instance UUID or name')
    .option('--force', 'also when other instances are connected to its inbounds')
    .action(async (ref: string, opts: { force?: boolean }, cmd: Command) =>
      emit(
        cmd,
        (c) => c.request<View | null>('DELETE', `/instances/${seg(ref)}`, opts.force === true ? { query: { force: 'true' } } : {}),
        (v) => (v === null || v === undefined ? `instance ${ref} deleted\n` : showInstance(v)),
      ),
    );

  withJson(instance.command('interfaces'))
    .description('interfaces of an instance')
    .argument('<ref>', 'instance UUID or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.get<View[]>(`/instances/${seg(ref)}/interfaces`), (rows) => formatLoose(rows, INTERFACE_COLUMNS)),
    );

  withJson(instance.command('env'))
    .description('the APPNET_OUTBOUND_* variables of an instance, as NAME=VALUE lines (podman run --env-file)')
    .argument('<ref>', 'instance UUID or name')
    .addOption(new Option('--format <format>', 'env: NAME=VALUE lines; json: as --json').choices(['env', 'json']).default('env'))
    .action(async (ref: string, opts: { format: string }, cmd: Command) => {
      if (opts.format === 'json') cmd.setOptionValue('json', true);
      return emit(cmd, (c) => c.get<View[]>(`/instances/${seg(ref)}/env`), (rows) => rows.map((r) => `${String(r.name)}=${String(r.value)}\n`).join(''));
    });

  return instance;
}
