// `appnet network …`: the /networks routes.

import { Command, InvalidArgumentError } from 'commander';
import { seg } from '../client.ts';
import { commandOf, emit, isoTime, withJson } from '../context.ts';
import { type Column, formatLoose, formatObject, formatRows, formatTable } from '../table.ts';

export type View = Record<string, unknown>;

export const NETWORK_COLUMNS: Column<View>[] = [
  { header: 'uuid', get: (n) => n.uuid },
  { header: 'name', get: (n) => n.name },
  { header: 'namespace', get: (n) => n.namespace },
  { header: 'netblock', get: (n) => n.netblock },
  { header: 'state', get: (n) => n.state },
  { header: 'vxlan_id', get: (n) => n.vxlan_id },
  { header: 'dhcp', get: (n) => n.provide_dhcp },
  { header: 'nat', get: (n) => n.provide_nat },
  { header: 'dns', get: (n) => n.provide_dns },
  { header: 'encrypt', get: (n) => n.encrypt },
];

const SHOW_ORDER = [
  'uuid', 'name', 'namespace', 'netblock', 'state', 'vxlan_id', 'provide_dhcp', 'provide_nat', 'provide_dns', 'encrypt',
  'floating_gateway', 'metadata', 'version',
];

export const INTERFACE_COLUMNS = ['uuid', 'network_uuid', 'instance_uuid', 'macaddr', 'ipv4', 'order', 'model', 'floating', 'state'];

export function showObject(view: View | null | undefined, order: string[] = SHOW_ORDER): string {
  if (view === null || view === undefined) return '';
  return formatObject(view, order);
}

export function metadataTable(meta: Record<string, unknown> | null | undefined): string {
  return formatTable(['key', 'value'], Object.entries(meta ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function positiveInt(text: string): number {
  if (!/^[0-9]+$/.test(text) || Number(text) < 1) throw new InvalidArgumentError('expected a positive integer');
  return Number(text);
}

/** `<noun> metadata REF`, `… set REF KEY VALUE`, `… delete REF KEY` over `<base>/{ref}/metadata`. */
export function metadataCommand(base: string, what: string): Command {
  const meta = withJson(new Command('metadata'))
    .description(`show the metadata of a ${what}; or set/delete a key`)
    .argument('<ref>', `${what} reference`)
    .action(async (ref: string, ...rest: unknown[]) =>
      emit(commandOf(rest), (c) => c.get<Record<string, unknown>>(`${base}/${seg(ref)}/metadata`), metadataTable),
    );
  withJson(meta.command('set'))
    .description(`set one metadata key of a ${what}`)
    .argument('<ref>', `${what} reference`)
    .argument('<key>')
    .argument('<value>')
    .action(async (ref: string, key: string, value: string, ...rest: unknown[]) =>
      emit(commandOf(rest), (c) => c.put<Record<string, unknown>>(`${base}/${seg(ref)}/metadata/${seg(key)}`, { value }), metadataTable),
    );
  withJson(meta.command('delete'))
    .description(`delete one metadata key of a ${what}`)
    .argument('<ref>', `${what} reference`)
    .argument('<key>')
    .action(async (ref: string, key: string, ...rest: unknown[]) =>
      emit(commandOf(rest), (c) => c.delete<Record<string, unknown>>(`${base}/${seg(ref)}/metadata/${seg(key)}`), metadataTable),
    );
  return meta;
}

export function networkCommand(): Command {
  const network = new Command('network').description('virtual networks');

  withJson(network.command('create'))
    .description('create a network')
    .argument('<name>')
    .argument('<netblock>', 'IPv4 CIDR, e.g. 10.0.0.0/24')
    .option('--no-dhcp', 'do not provide DHCP')
    .option('--no-nat', 'do not provide NAT egress')
    .option('--dns', 'provide DNS', false)
    .option('--encrypt', 'carry the network on encrypted links between hosts', false)
    .option('--namespace <ns>', 'namespace to create it in (system only for others)')
    .action(async (name: string, netblock: string, opts: { dhcp: boolean; nat: boolean; dns: boolean; encrypt: boolean; namespace?: string }, cmd: Command) =>
      emit(
        cmd,
        (c) =>
          c.post<View>('/networks', {
            name,
            netblock,
            provide_dhcp: opts.dhcp,
            provide_nat: opts.nat,
            provide_dns: opts.dns,
            ...(opts.encrypt ? { encrypt: true } : {}),
            ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
          }),
        (v) => showObject(v),
      ),
    );

  withJson(network.command('list'))
    .description('list networks')
    .option('--all', 'include deleted networks', false)
    .action(async (opts: { all: boolean }, cmd: Command) =>
      emit(cmd, (c) => c.get<View[]>('/networks', opts.all ? { all: 'true' } : undefined), (rows) => formatRows(NETWORK_COLUMNS, rows)),
    );

  withJson(network.command('show'))
    .description('show one network')
    .argument('<ref>', 'network UUID or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) => emit(cmd, (c) => c.get<View>(`/networks/${seg(ref)}`), (v) => showObject(v)));

  withJson(network.command('delete'))
    .description('delete a network')
    .argument('<ref>', 'network UUID or name')
    .option('--namespace <ns>', 'only if the network is in this namespace')
    .action(async (ref: string, opts: { namespace?: string }, cmd: Command) =>
      emit(
        cmd,
        (c) => c.delete<View | null>(`/networks/${seg(ref)}`, opts.namespace !== undefined ? { namespace: opts.namespace } : undefined),
        (v) => (v === null || v === undefined ? `network ${ref} was already deleted\n` : showObject(v)),
      ),
    );

  withJson(network.command('route'))
    .description('route a floating-pool address to the network, untranslated (an instance must configure it)')
    .argument('<ref>', 'network UUID or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.post<string>(`/networks/${seg(ref)}/route`), (a) => `${a}\n`));

  withJson(network.command('unroute'))
    .description('stop routing an address to the network; it returns to the pool')
    .argument('<ref>', 'network UUID or name')
    .argument('<address>', 'the routed address')
    .action(async (ref: string, address: string, _opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.delete<null>(`/networks/${seg(ref)}/route/${seg(address)}`), () => `${address} no longer routed to ${ref}\n`));

  withJson(network.command('events'))
    .description('events of a network, newest first')
    .argument('<ref>', 'network UUID or name')
    .option('--type <type>', 'only events of this type')
    .option('--limit <n>', 'at most this many events', positiveInt)
    .action(async (ref: string, opts: { type?: string; limit?: number }, cmd: Command) =>
      emit(
        cmd,
        (c) => c.get<View[]>(`/networks/${seg(ref)}/events`, { event_type: opts.type, limit: opts.limit }),
        (rows) =>
          formatRows(
            [
              { header: 'time', get: (e) => isoTime(e.timestamp) },
              { header: 'type', get: (e) => e.type },
              { header: 'fqdn', get: (e) => e.fqdn },
              { header: 'duration', get: (e) => e.duration },
              { header: 'message', get: (e) => e.message },
            ],
            rows,
          ),
      ),
    );

  withJson(network.command('interfaces'))
    .description('interfaces on a network')
    .argument('<ref>', 'network UUID or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.get<View[]>(`/networks/${seg(ref)}/interfaces`), (rows) => formatLoose(rows, INTERFACE_COLUMNS)),
    );

  withJson(network.command('addresses'))
    .description('address reservations of a network')
    .argument('<ref>', 'network UUID or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) =>
      emit(
        cmd,
        (c) => c.get<View[]>(`/networks/${seg(ref)}/addresses`),
        (rows) =>
          formatRows(
            [
              { header: 'address', get: (r) => r.address },
              { header: 'type', get: (r) => r.type },
              { header: 'user', get: (r) => (Array.isArray(r.user) ? r.user.join('/') : r.user) },
              { header: 'when', get: (r) => isoTime(r.when) },
              { header: 'comment', get: (r) => r.comment },
            ],
            rows,
          ),
      ),
    );

  withJson(network.command('ping'))
    .description('ping an address from the network\'s gateway (.1): ping -c 10 output, whether or not it answers')
    .argument('<ref>', 'network UUID or name')
    .argument('<address>', 'IPv4 address inside the network block')
    .option('--count <n>', 'probes to send (default 10, at most 100)', positiveInt)
    .action(async (ref: string, address: string, opts: { count?: number }, cmd: Command) =>
      emit(
        cmd,
        (c) => c.get<{ stdout: string[]; stderr: string[] }>(`/networks/${seg(ref)}/ping/${seg(address)}`, opts.count !== undefined ? { count: opts.count } : undefined),
        (r) => {
          for (const line of r.stderr) process.stderr.write(line + '\n');
          return r.stdout.map((line) => line + '\n').join('');
        },
      ),
    );

  network.addCommand(metadataCommand('/networks', 'network'));
  network.addCommand(dnsCommand());
  return network;
}

const DNS_COLUMNS: Column<View>[] = [
  { header: 'name', get: (e) => e.name },
  { header: 'address', get: (e) => e.address },
];

/** `appnet network dns list|add|remove`: the extra DNS entries the network's DNS answers. */
function dnsCommand(): Command {
  const dns = new Command('dns').description('extra DNS entries of a network (names under <namespace>.<zone> unless dotted)');
  withJson(dns.command('list'))
    .description('list the extra DNS entries')
    .argument('<network>', 'network UUID or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.get<View[]>(`/networks/${seg(ref)}/dns`), (rows) => formatRows(DNS_COLUMNS, rows)),
    );
  withJson(dns.command('add'))
    .description('add or replace an entry: NAME resolves to ADDRESS (and ADDRESS back to NAME)')
    .argument('<network>', 'network UUID or name')
    .argument('<name>', 'a label (relative to the network\'s domain) or a dotted name')
    .argument('<address>', 'IPv4 address')
    .action(async (ref: string, name: string, address: string, _opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.post<View>(`/networks/${seg(ref)}/dns`, { name, address }), (v) => formatRows(DNS_COLUMNS, [v])),
    );
  withJson(dns.command('remove'))
    .description('remove an entry')
    .argument('<network>', 'network UUID or name')
    .argument('<name>')
    .action(async (ref: string, name: string, _opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.delete<View>(`/networks/${seg(ref)}/dns/${seg(name)}`), (v) => formatRows(DNS_COLUMNS, [v])),
    );
  return dns;
}
